/* checks.c — dependency health checks. */
#include "checks.h"

#include "httpc.h"
#include "mq.h"
#include "pg.h"
#include "redis.h"
#include "s3.h"

static int fail(char *err, size_t errlen, const char *why)
{
    ml_strlcpy(err, why && *why ? why : "unreachable", errlen);
    return ML_ERR;
}

int check_pg(void *ud, char *err, size_t errlen)
{
    return pg_ping(ud) == ML_OK ? ML_OK : fail(err, errlen, pg_error(ud));
}

int check_redis(void *ud, char *err, size_t errlen)
{
    return rds_ping(ud) == ML_OK ? ML_OK : fail(err, errlen, rds_error(ud));
}

int check_mq(void *ud, char *err, size_t errlen)
{
    return mq_ping(ud) == ML_OK ? ML_OK : fail(err, errlen, mq_error(ud));
}

int check_s3(void *ud, char *err, size_t errlen)
{
    s3_list_page page = { 0 };
    int rc = s3_list(ud, "", NULL, 1, &page);

    s3_list_page_free(&page);
    return rc == ML_OK ? ML_OK : fail(err, errlen, s3_error(ud));
}

int check_http(void *ud, char *err, size_t errlen)
{
    check_http_target *t = ud;
    char url[512];
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    int rc;

    if (ml_snprintf(url, sizeof(url), "%s/health", t->base_url) != ML_OK)
        return fail(err, errlen, "URL too long");
    req.url = url;
    req.connect_timeout_ms = 500;
    req.timeout_ms = 2000;
    req.max_body = 64 * 1024;
    rc = httpc_do(t->client, &req, &resp);
    if (rc != ML_OK)
        rc = fail(err, errlen, httpc_error(t->client));
    else if (resp.status != 200) {
        ml_snprintf_trunc(err, errlen, "GET /health answered %ld", resp.status);
        rc = ML_ERR;
    }
    httpc_response_free(&resp);
    return rc;
}
