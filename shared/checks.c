/* checks.c — dependency health checks. */
#include "checks.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

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

struct check_pg_target {
    char *url;
    char app[64];
    int budget_ms;
    PGconn *conn; /* kept between checks; dropped after any failure */
};

check_pg_target *check_pg_target_new(const char *url, const char *app, int budget_ms)
{
    check_pg_target *t = calloc(1, sizeof(*t));

    if (!t || !(t->url = strdup(url))) {
        free(t);
        return NULL;
    }
    ml_strlcpy(t->app, app ? app : "minilambda", sizeof(t->app));
    t->budget_ms = budget_ms;
    return t;
}

void check_pg_target_free(check_pg_target *t)
{
    if (!t)
        return;
    if (t->conn)
        PQfinish(t->conn);
    free(t->url);
    free(t);
}

/* Closes the connection (a late answer must not be read as the next check's) and fails. */
static int pg_drop(check_pg_target *t, char *err, size_t errlen, const char *why)
{
    char msg[256];

    ml_strlcpy(msg, why, sizeof(msg)); /* why may point into the connection */
    msg[strcspn(msg, "\n")] = '\0';  /* libpq's messages end in a newline */
    if (t->conn)
        PQfinish(t->conn);
    t->conn = NULL;
    return fail(err, errlen, msg);
}

/* ML_OK once the connection's socket is ready to read (or write) before deadline. */
static int pg_wait(PGconn *c, bool write, int64_t deadline)
{
    struct pollfd p = { .fd = PQsocket(c), .events = write ? POLLOUT : POLLIN };
    int rc;

    do {
        int64_t left = deadline - ml_now_ms();
        if (p.fd < 0 || left <= 0)
            return ML_ERR;
        rc = poll(&p, 1, (int)left);
    } while (rc < 0 && errno == EINTR);
    return rc > 0 ? ML_OK : ML_ERR;
}

static int pg_connect_bounded(check_pg_target *t, int64_t deadline, char *err, size_t errlen)
{
    const char *keys[] = { "dbname", "application_name", NULL };
    const char *vals[] = { t->url, t->app, NULL };
    PostgresPollingStatusType st = PGRES_POLLING_WRITING; /* as libpq's docs say to start */

    t->conn = PQconnectStartParams(keys, vals, 1);
    if (!t->conn || PQstatus(t->conn) == CONNECTION_BAD)
        return pg_drop(t, err, errlen, t->conn ? PQerrorMessage(t->conn) : "out of memory");
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED)
            return pg_drop(t, err, errlen, PQerrorMessage(t->conn));
        if (pg_wait(t->conn, st == PGRES_POLLING_WRITING, deadline) != ML_OK)
            return pg_drop(t, err, errlen, "no connection within the health check budget");
        st = PQconnectPoll(t->conn);
    }
    return PQsetnonblocking(t->conn, 1) == 0 ? ML_OK : pg_drop(t, err, errlen, "cannot go non-blocking");
}

/* The next result of the query in flight (NULL: none left), waiting until deadline. */
static int pg_next_result(PGconn *c, int64_t deadline, PGresult **out)
{
    while (PQisBusy(c)) {
        if (pg_wait(c, false, deadline) != ML_OK || !PQconsumeInput(c))
            return ML_ERR;
    }
    *out = PQgetResult(c);
    return ML_OK;
}

int check_pg_bounded(void *ud, char *err, size_t errlen)
{
    check_pg_target *t = ud;
    int64_t deadline = ml_now_ms() + t->budget_ms;
    PGresult *r = NULL;
    bool ok = false;
    int rc;

    if (t->conn && PQstatus(t->conn) != CONNECTION_OK)
        pg_drop(t, err, errlen, "");
    if (!t->conn && pg_connect_bounded(t, deadline, err, errlen) != ML_OK)
        return ML_ERR;
    if (!PQsendQuery(t->conn, "SELECT 1"))
        return pg_drop(t, err, errlen, PQerrorMessage(t->conn));
    while ((rc = PQflush(t->conn)) == 1) {
        if (pg_wait(t->conn, true, deadline) != ML_OK)
            return pg_drop(t, err, errlen, "no answer within the health check budget");
    }
    while (rc == 0 && (rc = pg_next_result(t->conn, deadline, &r)) == ML_OK && r) {
        ok = ok || PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
    }
    if (rc != ML_OK)
        return pg_drop(t, err, errlen, PQstatus(t->conn) == CONNECTION_OK
                                           ? "no answer within the health check budget"
                                           : PQerrorMessage(t->conn));
    return ok ? ML_OK : pg_drop(t, err, errlen, PQerrorMessage(t->conn));
}
