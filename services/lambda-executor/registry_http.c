/* registry_http.c — the functions endpoints (GET /functions, GET/PATCH/DELETE
 * /functions/{fn}, GET ...?wait=active through fnwait) and the registry's route table. */
#include "registry-int.h"

#include <stdlib.h>
#include <string.h>

#include "fnspec.h"
#include "log.h"
#include "secretbox.h"
#include "ssrf.h"
#include "tenant.h"

/* True when the gateway vouches for a caller that may read env values. */
static bool reveal_env(httpd_req *req)
{
    const char *v = req ? httpd_header(req, SECRETBOX_REVEAL_HEADER) : NULL;

    return v && strcmp(v, SECRETBOX_REVEAL_VALUE) == 0;
}


/* Postgres' json text is padded; re-serialise it compactly (keeps key order). env values,
 * stored sealed, become "***" or (reveal_env) their plaintext (docs/secrets.md); the
 * runtime_version comes from this executor's runtimes table. */
static void reply_json_text(const registry *r, httpd_req *req, httpd_resp *resp, int status,
                            const char *text)
{
    cJSON *o = cJSON_Parse(text);
    char err[256];

    if (!o) {
        httpd_resp_error(resp, 500, "internal", "malformed JSON from the database");
    } else if (reg_env_render(o, reveal_env(req), err, sizeof(err)) != ML_OK) {
        ml_log_error("registry: %s", err);
        cJSON_Delete(o);
        httpd_resp_error(resp, 500, "internal", "cannot decrypt env: %s", err);
    } else {
        reg_doc_decorate(r->cfg.runtimes, o);
        httpd_resp_json(resp, status, o);
    }
}

int registry_req_ns(httpd_req *req, httpd_resp *resp, char ns[FN_NS_MAX])
{
    const char *v = httpd_header(req, TENANT_HEADER);

    if (tenant_from_header(v, ns) == ML_OK)
        return ML_OK;
    httpd_resp_error(resp, 400, "invalid_namespace", "%s must be a namespace name (1-63 of [a-z0-9-], "
                     "no '-' at either end)", TENANT_HEADER);
    return ML_ERR;
}

/* {fn} within the request's namespace → WHERE_FN's parameters (ns and key hold them);
 * ML_ERR (400 or 404 written) if it can name nothing. */
static int fn_params(httpd_req *req, httpd_resp *resp, char ns[FN_NS_MAX], char key[FN_KEY_MAX],
                     reg_fn_ref *ref)
{
    const char *fn = httpd_param(req, "fn");
    bool by_id;

    if (registry_req_ns(req, resp, ns) != ML_OK)
        return ML_ERR;
    if (!fn || reg_fn_key(ns, fn, key, &by_id) != ML_OK) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", fn ? fn : "");
        return ML_ERR;
    }
    ref->params[0] = by_id ? key : NULL;
    ref->params[1] = by_id ? NULL : fn;
    ref->params[2] = ns;
    return ML_OK;
}

/* ?wait=active&timeout_s=N: ML_OK with *timeout_s (0 when not waiting); ML_ERR with 400. */
static int wait_query(httpd_req *req, httpd_resp *resp, int *timeout_s)
{
    const char *wait = httpd_query(req, "wait"), *ts = httpd_query(req, "timeout_s");
    int64_t t = 30;

    *timeout_s = 0;
    if (!wait && !ts)
        return ML_OK;
    if (!wait || strcmp(wait, "active") != 0 ||
        (ts && ml_parse_int64(ts, FNWAIT_TIMEOUT_MIN_S, FNWAIT_TIMEOUT_MAX_S, &t) != ML_OK)) {
        httpd_resp_error(resp, 400, "invalid_query", "wait must be \"active\" and timeout_s %d..%d",
                         FNWAIT_TIMEOUT_MIN_S, FNWAIT_TIMEOUT_MAX_S);
        return ML_ERR;
    }
    *timeout_s = (int)t;
    return ML_OK;
}

/* True when the API document says the function is still pending; id gets its id (what
 * fnwait waits on: resolved within the caller's namespace now, global afterwards). */
static bool doc_pending(const char *doc, char id[ML_UUID_LEN])
{
    cJSON *o = cJSON_Parse(doc);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
    const cJSON *fid = cJSON_GetObjectItemCaseSensitive(o, "id");
    bool pending = cJSON_IsString(st) && strcmp(st->valuestring, "pending") == 0 && cJSON_IsString(fid) &&
                   ml_strlcpy(id, fid->valuestring, ML_UUID_LEN) == ML_OK;

    cJSON_Delete(o);
    return pending;
}

static httpd_result h_get(httpd_req *req, httpd_resp *resp, void *ud)
{
    registry *r = ud;
    char ns[FN_NS_MAX], key[FN_KEY_MAX], id[ML_UUID_LEN];
    reg_fn_ref ref;
    PGresult *res;
    pg_conn *db;
    int timeout_s;
    httpd_result hr = HTTPD_DONE;

    if (fn_params(req, resp, ns, key, &ref) != ML_OK || wait_query(req, resp, &timeout_s) != ML_OK ||
        !(db = reg_need_db(r, resp)))
        return HTTPD_DONE;
    res = reg_store_get(db, &ref);
    if (!res)
        reg_db_fail(resp, db, "reading a function");
    else if (PQntuples(res) == 0)
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", httpd_param(req, "fn"));
    reg_put_db(r); /* not held while parked: fnwait borrows for its own fetches */
    if (res && PQntuples(res) > 0 && timeout_s > 0 && doc_pending(pg_get_text(res, 0, 0), id))
        hr = fnwait_park(r->waits, req, resp, id, timeout_s);
    else if (res && PQntuples(res) > 0)
        reply_json_text(r, req, resp, 200, pg_get_text(res, 0, 0));
    PQclear(res);
    return hr;
}

static httpd_result h_list(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *limit_s = httpd_query(req, "limit"), *cursor = httpd_query(req, "cursor");
    char us[24], id[ML_UUID_LEN], limit[8], ns[FN_NS_MAX];
    int64_t n = PAGE_DEFAULT;
    PGresult *res;
    pg_conn *db;

    if (registry_req_ns(req, resp, ns) != ML_OK)
        return HTTPD_DONE;
    if ((limit_s && ml_parse_int64(limit_s, 1, PAGE_MAX, &n) != ML_OK) ||
        (cursor && ml_cursor_parse(cursor, us, id) != ML_OK)) {
        httpd_resp_error(resp, 400, "invalid_query", "limit must be 1..%d and cursor a value from next_cursor", PAGE_MAX);
        return HTTPD_DONE;
    }
    if (ml_snprintf(limit, sizeof(limit), "%lld", (long long)n) != ML_OK) {
        httpd_resp_error(resp, 500, "internal", "cannot format the page limit");
        return HTTPD_DONE;
    }
    if (!(db = reg_need_db(ud, resp)))
        return HTTPD_DONE;
    res = reg_store_list(db, ns, cursor ? us : NULL, cursor ? id : NULL, limit);
    if (!res)
        reg_db_fail(resp, db, "listing functions");
    else
        reply_json_text(ud, req, resp, 200, pg_get_text(res, 0, 0));
    PQclear(res);
    reg_put_db(ud);
    return HTTPD_DONE;
}

/* on_success_url / on_failure_url against the SSRF policy, at PATCH as at delivery
 * (docs/secrets.md): ML_ERR with 400 invalid_url written when refused. A name that does
 * not resolve now is accepted (delivery checks again). */
static int urls_allowed(const registry *r, const cJSON *body, httpd_resp *resp)
{
    static const char *const fields[] = { "on_success_url", "on_failure_url" };
    char why[256];

    for (size_t i = 0; i < ML_ARRAY_LEN(fields); i++) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(body, fields[i]);
        ssrf_result sr;
        if (!cJSON_IsString(u) || !u->valuestring[0])
            continue;
        sr = ssrf_check_url(u->valuestring, &r->cfg.ssrf, NULL, why, sizeof(why));
        if (sr != SSRF_OK && sr != SSRF_UNRESOLVED) {
            httpd_resp_error(resp, 400, "invalid_url", "%s: %s", fields[i], why);
            return ML_ERR;
        }
    }
    return ML_OK;
}

/* A PATCH's env is stored sealed; ML_ERR with 500 written. */
static int seal_env(cJSON *body, httpd_resp *resp)
{
    char err[256];

    if (secretbox_env_seal(secretbox_global(), cJSON_GetObjectItemCaseSensitive(body, "env"), NULL, err,
                           sizeof(err)) == ML_OK)
        return ML_OK;
    ml_log_error("registry: %s", err);
    httpd_resp_error(resp, 500, "internal", "cannot encrypt env");
    return ML_ERR;
}

/* The record members (runtime, handler, description, tags) against the function as it is
 * now (read only when they depend on it). ML_ERR: answered (400, 404 or 503). */
static int record_ok(registry *r, const reg_fn_ref *ref, httpd_req *req, httpd_resp *resp,
                     const cJSON *body)
{
    const char *code = "invalid_field";
    char err[512];
    cJSON *cur = NULL;
    PGresult *res = NULL;
    pg_conn *db;
    int rc = ML_ERR;

    if (reg_record_needs_current(body)) {
        if (!(db = reg_need_db(r, resp)))
            return ML_ERR;
        if (!(res = reg_store_get(db, ref)))
            reg_db_fail(resp, db, "reading a function");
        reg_put_db(r);
        if (!res)
            return ML_ERR;
        if (PQntuples(res) == 0) {
            httpd_resp_error(resp, 404, "not_found", "no function '%s'", httpd_param(req, "fn"));
            goto out;
        }
        cur = cJSON_Parse(pg_get_text(res, 0, 0));
    }
    if (reg_record_check(r->cfg.runtimes, body, cur, &code, err, sizeof(err)) != ML_OK)
        httpd_resp_error(resp, 400, code, "%s", err);
    else
        rc = ML_OK;
out:
    cJSON_Delete(cur);
    PQclear(res);
    return rc;
}

/* The fnspec table's members of a PATCH body (strict: an unknown member is an error).
 * ML_ERR: answered. */
static int config_ok(const registry *r, const cJSON *body, httpd_resp *resp)
{
    cJSON *config = reg_config_part(body);
    char err[512];
    int rc = ML_ERR;

    if (!config)
        httpd_resp_error(resp, 500, "internal", "out of memory");
    else if (fnspec_config_check(config, true, err, sizeof(err)) != ML_OK)
        httpd_resp_error(resp, 400, "invalid_field", "%s", err);
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "network")) && !r->cfg.network_allowed)
        httpd_resp_error(resp, 400, "invalid_field", "network is not available on this platform "
                         "(the operator's MINILAMBDA_FUNCTION_NETWORK is off)");
    else
        rc = ML_OK;
    cJSON_Delete(config);
    return rc;
}

static httpd_result h_patch(httpd_req *req, httpd_resp *resp, void *ud)
{
    registry *r = ud;
    char ns[FN_NS_MAX], key[FN_KEY_MAX], *patch = NULL;
    reg_fn_ref ref;
    cJSON *body = NULL;
    PGresult *res = NULL;
    pg_conn *db;

    if (fn_params(req, resp, ns, key, &ref) != ML_OK || !(body = httpd_body_json(req, resp)))
        goto out;
    if (!cJSON_IsObject(body)) {
        httpd_resp_error(resp, 400, "invalid_body", "the request body must be a JSON object");
        goto out;
    }
    if (config_ok(r, body, resp) != ML_OK || record_ok(r, &ref, req, resp, body) != ML_OK)
        goto out;
    if (urls_allowed(r, body, resp) != ML_OK || seal_env(body, resp) != ML_OK)
        goto out;
    if (!(patch = cJSON_PrintUnformatted(body))) {
        httpd_resp_error(resp, 500, "internal", "out of memory");
        goto out;
    }
    if (!(db = reg_need_db(r, resp)))
        goto out;
    res = reg_store_patch(db, &ref, patch);
    if (!res)
        reg_db_fail(resp, db, "updating a function");
    reg_put_db(r); /* the rest is Redis and the reply */
    if (res && PQntuples(res) == 0) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", httpd_param(req, "fn"));
    } else if (res) {
        fn_info *f = malloc(sizeof(*f));
        const char *cache = pg_get_text(res, 0, 1);
        if (f && reg_fn_parse(cache, strlen(cache), f) == ML_OK)
            reg_publish_change(r, f->id, f->ns, f->name, cache);
        free(f);
        reply_json_text(r, req, resp, 200, pg_get_text(res, 0, 0));
    }
out:
    PQclear(res);
    cJSON_free(patch);
    cJSON_Delete(body);
    return HTTPD_DONE;
}

static httpd_result h_delete(httpd_req *req, httpd_resp *resp, void *ud)
{
    registry *r = ud;
    char ns[FN_NS_MAX], key[FN_KEY_MAX], tomb[320];
    reg_fn_ref ref;
    PGresult *res = NULL;
    pg_conn *db;

    if (fn_params(req, resp, ns, key, &ref) != ML_OK || !(db = reg_need_db(r, resp)))
        return HTTPD_DONE;
    if (reg_store_delete(db, &ref, &res) != ML_OK)
        reg_db_fail(resp, db, "deleting a function");
    reg_put_db(r); /* the rest is Redis and the reply */
    if (res && PQntuples(res) == 0) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", httpd_param(req, "fn"));
    } else if (res) {
        const char *id = pg_get_text(res, 0, 0), *name = pg_get_text(res, 0, 1);
        char nk[FN_KEY_MAX] = "";
        if (name[0] && reg_name_key(ns, name, nk) != ML_OK)
            nk[0] = '\0';
        if (ml_snprintf(tomb, sizeof(tomb), "{\"deleted\":true,\"id\":\"%s\",\"namespace\":\"%s\",\"name\":\"%s\"}",
                        id, ns, name) == ML_OK) {
            reg_publish_change(r, id, ns, name[0] ? name : NULL, tomb);
        } else { /* a cut tombstone is no JSON: drop every copy instead (Redis later) */
            registry_forget(r, id, ns, name[0] ? name : NULL);
            reg_redis_owe(r, id, nk);
        }
        ml_log_kv(ML_LOG_INFO, strcmp(pg_get_text(res, 0, 2), "t") == 0
                                   ? "function deleted" : "function tombstoned before it arrived",
                  "function_id", id, "namespace", ns, "name", name, NULL);
        resp->status = 204;
    }
    PQclear(res);
    return HTTPD_DONE;
}

size_t registry_routes(registry *r, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "POST", "/webhooks/build-status/{build_id}", reg_webhook_handler, r, 0, true },
        { "GET", "/functions", h_list, r, 0, true },
        { "GET", "/functions/{fn}", h_get, r, 0, true },
        { "PATCH", "/functions/{fn}", h_patch, r, 0, true },
        { "DELETE", "/functions/{fn}", h_delete, r, 0, true },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}

void registry_decorate(registry *r, cJSON *doc)
{
    reg_doc_decorate(r->cfg.runtimes, doc);
}
