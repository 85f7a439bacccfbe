/* runtimes_check.c — the executor's runtimes, asked and cached (see runtimes_check.h). */
#include "runtimes_check.h"

#include <cJSON.h>
#include <string.h>

#include "httpc.h"
#include "intauth.h"
#include "log.h"
#include "fnspec.h"
#include "runtimes.h"
#include "tenant.h"

void bmr_init(bmr_cache *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
}

void bmr_free(bmr_cache *c)
{
    pthread_mutex_destroy(&c->mu);
}

/* GET {executor_url}/runtimes into t; ML_ERR (logged) when it cannot be had. Owns its
 * client and response. */
static int ask_executor(const char *executor_url, runtimes_table *t)
{
    char url[512];
    const char *headers[] = { ml_intauth_header_line(), NULL };
    httpc_request req = { .url = url, .headers = headers, .timeout_ms = BMR_TIMEOUT_MS,
                          .connect_timeout_ms = BMR_TIMEOUT_MS };
    httpc_response res = { 0 };
    httpc *h = NULL;
    cJSON *doc = NULL;
    int rc = ML_ERR;

    if (!executor_url || ml_snprintf(url, sizeof(url), "%s/runtimes", executor_url) != ML_OK ||
        !(h = httpc_new()))
        goto out;
    if (httpc_do(h, &req, &res) != ML_OK || res.status != 200) {
        if (res.status)
            ml_log_warn("runtimes: GET %s answered %ld (accepting any runtime name meanwhile)", url, res.status);
        else
            ml_log_warn("runtimes: %s (accepting any runtime name meanwhile)", httpc_error(h));
        goto out;
    }
    doc = cJSON_ParseWithLength(ml_buf_cstr(&res.body), res.body.len);
    if ((rc = runtimes_from_json(t, doc)) != ML_OK)
        ml_log_warn("runtimes: GET %s: not a runtimes document", url);
out:
    cJSON_Delete(doc);
    httpc_response_free(&res);
    httpc_free(h);
    return rc;
}

/* The cached answer into *t when fresh: 1 known, 0 unknown (accept), -1 stale (ask). */
static int cached(bmr_cache *c, runtimes_table *t)
{
    int out;

    pthread_mutex_lock(&c->mu);
    out = ml_now_ms() >= c->until_ms ? -1 : c->known ? 1 : 0;
    if (out == 1)
        *t = c->table;
    pthread_mutex_unlock(&c->mu);
    return out;
}

int bmr_check(bmr_cache *c, const char *executor_url, const char *runtime, httpd_resp *resp)
{
    runtimes_table t;
    char names[256];
    int state = cached(c, &t);

    if (state < 0) {
        bool ok = ask_executor(executor_url, &t) == ML_OK;
        pthread_mutex_lock(&c->mu);
        c->known = ok;
        if (ok)
            c->table = t;
        c->until_ms = ml_now_ms() + (ok ? BMR_TTL_MS : BMR_RETRY_MS);
        pthread_mutex_unlock(&c->mu);
        state = ok;
    }
    if (state == 0 || runtimes_available(&t, runtime) == ML_OK)
        return ML_OK;
    runtimes_names(&t, names, sizeof(names));
    httpd_resp_error(resp, 400, "invalid_runtime", "runtime %s is not available on this platform "
                     "(available: %s)", runtime, names);
    return ML_ERR;
}

/* The executor's record's runtime and handler, checked. */
static int current_from(const ml_buf *body, char *runtime, char *handler)
{
    cJSON *doc = cJSON_ParseWithLength(ml_buf_cstr(body), body->len);
    const char *rt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "runtime"));
    const char *hd = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "handler"));
    int rc = ML_ERR;

    if (fnspec_runtime_valid(rt) == ML_OK && fnspec_handler_valid(rt, hd) == ML_OK &&
        ml_strlcpy(runtime, rt, FNSPEC_RUNTIME_MAX + 1) == ML_OK &&
        ml_strlcpy(handler, hd, FNSPEC_HANDLER_MAX + 1) == ML_OK)
        rc = ML_OK;
    cJSON_Delete(doc);
    return rc;
}

/* Owns its client and response. */
int bmr_current(const char *executor_url, const char *ns, const char *id,
                char runtime[FNSPEC_RUNTIME_MAX + 1], char handler[FNSPEC_HANDLER_MAX + 1])
{
    char url[512], nsh[sizeof(TENANT_HEADER) + TENANT_MAX + 4];
    /* the namespace first: the token line is NULL when internal auth is off, ending the list */
    const char *headers[] = { nsh, ml_intauth_header_line(), NULL };
    httpc_request req = { .url = url, .headers = headers, .timeout_ms = BMR_TIMEOUT_MS,
                          .connect_timeout_ms = BMR_TIMEOUT_MS };
    httpc_response res = { 0 };
    httpc *h = NULL;
    int rc = ML_ERR;

    if (!executor_url || ml_snprintf(url, sizeof(url), "%s/functions/%s", executor_url, id) != ML_OK ||
        ml_snprintf(nsh, sizeof(nsh), "%s: %s", TENANT_HEADER, ns) != ML_OK || !(h = httpc_new()))
        goto out;
    if (httpc_do(h, &req, &res) == ML_OK && res.status == 200)
        rc = current_from(&res.body, runtime, handler);
    if (rc != ML_OK)   /* a function the executor has not seen yet, or it is away */
        ml_log_info("runtimes: function %s: building with the runtime and handler it was created with", id);
out:
    httpc_response_free(&res);
    httpc_free(h);
    return rc;
}
