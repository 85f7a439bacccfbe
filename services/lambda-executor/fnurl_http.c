/* fnurl_http.c — PUT/GET/DELETE /functions/{fn}/url (fnurl.h, docs/http.md): the URL
 * configuration of a function in the request's namespace, stored in function_urls. One
 * statement per request, so a replace and a delete of the function never interleave badly
 * (the row hangs off the function by a cascading foreign key). */
#include "fnurl.h"

#include <stdbool.h>
#include <string.h>

#include "log.h"
#include "pg.h"
#include "pgpool.h"
#include "registry.h"

/* The function named {fn} in $3, as WHERE_FN in registry_store.c: $1 its id, $2 its name. */
#define FN_MATCH " (f.id = $1::uuid OR (f.namespace = $3 AND f.name = $2)) AND f.namespace = $3"

typedef struct target {
    char ns[FN_NS_MAX];
    const char *params[4];
} target;

/* {fn} and the namespace into t; ML_ERR with 400 written. */
static int target_of(httpd_req *req, httpd_resp *resp, target *t)
{
    const char *fn = httpd_param(req, "fn");

    if (registry_req_ns(req, resp, t->ns) != ML_OK)
        return ML_ERR;
    t->params[0] = ml_uuid_valid(fn) == ML_OK ? fn : NULL;
    t->params[1] = fn;
    t->params[2] = t->ns;
    return ML_OK;
}

/* This thread's connection, borrowed; NULL with a 503 written. Give back with put_db. */
static deps *need_db(ex_app *app, httpd_resp *resp)
{
    deps *d = app_thread_deps(app);
    pgpool_status st = d ? deps_db_acquire(d) : PGPOOL_CONNECT_FAILED;

    if (st == PGPOOL_OK && d->db)
        return d;
    if (st == PGPOOL_OK) /* unpooled and the thread has no connection */
        deps_db_release(d);
    httpd_resp_header(resp, "Retry-After", "5");
    httpd_resp_error(resp, 503, "service_unavailable", "cannot reach the function database");
    return NULL;
}

static void db_fail(httpd_resp *resp, deps *d, const char *what)
{
    ml_log_warn("function urls: %s: %s", what, pg_error(d->db));
    if (pg_error_is_connection(d->db)) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "function database unavailable");
    } else {
        httpd_resp_error(resp, 500, "internal", "%s failed", what);
    }
}

/* Re-serialises the database's document (jsonb text) as the answer. */
static void reply_doc(httpd_resp *resp, int status, const char *text)
{
    cJSON *o = cJSON_Parse(text);

    if (o)
        httpd_resp_json(resp, status, o);
    else
        httpd_resp_error(resp, 500, "internal", "malformed JSON from the database");
}

/* 400 invalid_field naming the field ({"error":{...,"field"}}). */
static void invalid(httpd_resp *resp, const char *field, const char *why)
{
    cJSON *doc, *err;

    httpd_resp_error(resp, 400, "invalid_field", "%s: %s", field, why);
    doc = cJSON_ParseWithLength(resp->body.data, resp->body.len);
    err = cJSON_GetObjectItemCaseSensitive(doc, "error");
    if (cJSON_IsObject(err) && cJSON_AddStringToObject(err, "field", field)) {
        httpd_resp_json(resp, 400, doc); /* frees doc */
        return;
    }
    cJSON_Delete(doc);
}

/* 404 naming what is missing: the function (no row) or its URL. */
static void not_found(httpd_req *req, httpd_resp *resp, bool no_function)
{
    if (no_function)
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", httpd_param(req, "fn"));
    else
        httpd_resp_error(resp, 404, "not_found", "function '%s' has no URL", httpd_param(req, "fn"));
}

static httpd_result h_put(httpd_req *req, httpd_resp *resp, void *ud)
{
    ex_app *app = ud;
    target t;
    char field[FNURL_FIELD_MAX], why[256];
    cJSON *body = NULL, *cfg = NULL;
    char *text = NULL;
    PGresult *res = NULL;
    deps *d = NULL;

    if (target_of(req, resp, &t) != ML_OK || !(body = httpd_body_json(req, resp)))
        goto out;
    if (!(cfg = fnurl_rules_check(body, field, why, sizeof(why)))) {
        invalid(resp, field, why);
        goto out;
    }
    if (!(text = cJSON_PrintUnformatted(cfg))) {
        httpd_resp_error(resp, 500, "internal", "out of memory");
        goto out;
    }
    t.params[3] = text;
    if (!(d = need_db(app, resp)))
        goto out;
    res = pg_query(d->db, "fnurl_put",
                   "WITH f AS (SELECT f.id, f.name, f.namespace FROM functions f WHERE" FN_MATCH "),"
                   " u AS (INSERT INTO function_urls AS o (function_id, config) SELECT id, $4::jsonb FROM f"
                   " ON CONFLICT (function_id) DO UPDATE SET config = EXCLUDED.config, updated_at = now()"
                   " RETURNING o.*, (xmax = 0) AS inserted)"
                   " SELECT " FNURL_DOC_EXPR "::text, u.inserted FROM u JOIN f ON f.id = u.function_id",
                   4, t.params);
    if (!res)
        db_fail(resp, d, "storing a function URL");
    deps_db_release(d);
    if (res && PQntuples(res) == 0)
        not_found(req, resp, true);
    else if (res)
        reply_doc(resp, strcmp(pg_get_text(res, 0, 1), "t") == 0 ? 201 : 200, pg_get_text(res, 0, 0));
out:
    PQclear(res);
    cJSON_free(text);
    cJSON_Delete(cfg);
    cJSON_Delete(body);
    return HTTPD_DONE;
}

/* Runs one statement ($1..$3: the request's function, FN_MATCH) on the function database;
 * NULL with the refusal or failure in resp. Caller PQclears the result. */
static PGresult *query_fn(ex_app *app, httpd_req *req, httpd_resp *resp, const char *name,
                          const char *sql, const char *what)
{
    target t;
    PGresult *res;
    deps *d;

    if (target_of(req, resp, &t) != ML_OK || !(d = need_db(app, resp)))
        return NULL;
    if (!(res = pg_query(d->db, name, sql, 3, t.params)))
        db_fail(resp, d, what);
    deps_db_release(d);
    return res;
}

static httpd_result h_get(httpd_req *req, httpd_resp *resp, void *ud)
{
    PGresult *res = query_fn(ud, req, resp, "fnurl_get",
                             "SELECT " FNURL_DOC_SQL "::text FROM functions f WHERE" FN_MATCH,
                             "reading a function URL");

    if (res && (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)))
        not_found(req, resp, PQntuples(res) == 0);
    else if (res)
        reply_doc(resp, 200, pg_get_text(res, 0, 0));
    PQclear(res);
    return HTTPD_DONE;
}

static httpd_result h_delete(httpd_req *req, httpd_resp *resp, void *ud)
{
    PGresult *res = query_fn(ud, req, resp, "fnurl_delete",
                             "WITH f AS (SELECT f.id FROM functions f WHERE" FN_MATCH "),"
                             " d AS (DELETE FROM function_urls u USING f WHERE u.function_id = f.id RETURNING 1)"
                             " SELECT (SELECT count(*) FROM f)::text, (SELECT count(*) FROM d)::text",
                             "deleting a function URL");
    bool no_fn = res && strcmp(pg_get_text(res, 0, 0), "0") == 0;

    if (res && (no_fn || strcmp(pg_get_text(res, 0, 1), "0") == 0))
        not_found(req, resp, no_fn);
    else if (res)
        resp->status = 204;
    PQclear(res);
    return HTTPD_DONE;
}

size_t fnurl_routes(ex_app *app, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "PUT", "/functions/{fn}/url", h_put, app, 1024 * 1024, true },
        { "GET", "/functions/{fn}/url", h_get, app, 0, true },
        { "DELETE", "/functions/{fn}/url", h_delete, app, 0, true },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}
