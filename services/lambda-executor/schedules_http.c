/* schedules_http.c — the schedule endpoints: POST/GET /functions/{fn}/schedules and
 * DELETE /functions/{fn}/schedules/{id} (see schedules.h and docs/schedules.md). */
#include "schedules.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "log.h"
#include "pgpool.h"
#include "tenant.h"

/* Request bodies: a payload of SCHEDULES_MAX_PAYLOAD may arrive with generous whitespace. */
#define MAX_BODY (1024 * 1024)

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
/* A schedule as the API shows it; jsonb keeps payload numbers exact (cJSON would not). */
#define SCHEDULE_JSON                                                                          \
    "jsonb_build_object('id', s.id, 'function_id', s.function_id, 'cron', s.cron,"            \
    " 'payload', s.payload, 'enabled', s.enabled, 'next_fire_at', " ISO("s.next_fire_at") "," \
    " 'last_fired_at', " ISO("s.last_fired_at") ", 'created_at', " ISO("s.created_at") ")"
/* {fn}: $1 the id (or NULL), $2 the name (or NULL), ns the namespace's placeholder: another
 * namespace's function (by id too) is no match (docs/tenants.md). */
#define WHERE_FN(ns) " ((f.id = $1::uuid OR (f.namespace = " ns " AND f.name = $2)) AND f.namespace = " ns ")"

/* {fn} as WHERE_FN's parameters (an id when it looks like one: a name never does) and the
 * request's namespace into params[2] (backed by ns). ML_ERR with 400 written when the
 * namespace header is invalid. */
static int fn_params(httpd_req *req, httpd_resp *resp, char ns[TENANT_MAX + 1], const char *params[3])
{
    const char *fn = httpd_param(req, "fn");
    bool by_id = ml_uuid_valid(fn) == ML_OK;

    if (tenant_from_header(httpd_header(req, TENANT_HEADER), ns) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_namespace", "%s must be a namespace name", TENANT_HEADER);
        return ML_ERR;
    }
    params[0] = by_id ? fn : NULL;
    params[1] = by_id ? NULL : fn;
    params[2] = ns;
    return ML_OK;
}

/* Borrows this thread's connection for the handler's statements; NULL with 503 and
 * Retry-After written. A non-NULL result is given back with put_db(app). */
static pg_conn *need_db(ex_app *app, httpd_resp *resp)
{
    deps *d = app_thread_deps(app);

    return deps_db_acquire_http(d, resp, "function database") == ML_OK ? d->db : NULL;
}

/* Gives back what need_db lent (after the last pg_error use). */
static void put_db(ex_app *app)
{
    deps *d = app_thread_deps(app);

    if (d)
        deps_db_release(d);
}

/* Answers a failed statement: 503 when the database is unreachable; 400 for a body Postgres
 * rejects as JSON (data exception, class 22: e.g. \u0000, which jsonb cannot hold); else 500. */
static void db_fail(httpd_resp *resp, pg_conn *db, const char *what)
{
    if (pg_error_is_connection(db)) {
        ml_log_warn("schedules: %s: %s", what, pg_error(db));
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "function database unavailable: %s", pg_error(db));
    } else if (strncmp(pg_sqlstate(db), "22", 2) == 0) {
        const char *why = strstr(pg_error(db), "failed: "); /* drop pg.c's statement prefix */
        httpd_resp_error(resp, 400, "invalid_body", "the body is not valid JSON: %s", why ? why + 8 : pg_error(db));
    } else {
        ml_log_warn("schedules: %s: %s", what, pg_error(db));
        httpd_resp_error(resp, 500, "internal", "%s failed", what);
    }
}

/* The parts of a creation the handler uses; the payload is taken from the raw body by
 * Postgres (so numbers stay exact). */
typedef struct create_spec {
    cron_expr cron;
    bool enabled;
} create_spec;

static int check_fields(const cJSON *body, httpd_resp *resp)
{
    const cJSON *it;

    cJSON_ArrayForEach(it, body) {
        if (strcmp(it->string, "cron") != 0 && strcmp(it->string, "payload") != 0 &&
            strcmp(it->string, "enabled") != 0) {
            httpd_resp_error(resp, 400, "invalid_field", "unknown field '%.64s' (allowed: cron, payload, enabled)",
                             it->string);
            return ML_ERR;
        }
    }
    return ML_OK;
}

/* Validates the body into *spec; ML_ERR with a 400 written. */
static int parse_create(httpd_req *req, httpd_resp *resp, create_spec *spec)
{
    cJSON *body = httpd_body_json(req, resp);
    const cJSON *cron, *enabled;
    char err[256];
    int64_t next;
    int rc = ML_ERR;

    if (!body)
        return ML_ERR;
    if (!cJSON_IsObject(body)) {
        httpd_resp_error(resp, 400, "invalid_body", "the request body must be a JSON object");
        goto out;
    }
    if (check_fields(body, resp) != ML_OK)
        goto out;
    cron = cJSON_GetObjectItemCaseSensitive(body, "cron");
    enabled = cJSON_GetObjectItemCaseSensitive(body, "enabled");
    if (!cJSON_IsString(cron)) {
        httpd_resp_error(resp, 400, "invalid_field",
                         "cron is required: a 5-field cron expression in UTC, e.g. \"*/5 * * * *\"");
    } else if (cron_parse(cron->valuestring, &spec->cron, err, sizeof(err)) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_cron", "%s", err);
    } else if (cron_next(&spec->cron, ml_wall_ms() / 1000, &next) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_cron", "cron expression '%s' never fires (no date matches it)",
                         spec->cron.text);
    } else if (enabled && !cJSON_IsBool(enabled)) {
        httpd_resp_error(resp, 400, "invalid_field", "enabled must be true or false");
    } else {
        spec->enabled = !enabled || cJSON_IsTrue(enabled);
        rc = ML_OK;
    }
out:
    cJSON_Delete(body);
    return rc;
}

/* Locks the function row (serialising creations for one function, so the count limit
 * holds) and reads Postgres' clock. ML_OK, or ML_ERR with the answer (404, 503, ...)
 * written. Runs inside the caller's transaction. */
static int lock_function(pg_conn *db, httpd_req *req, httpd_resp *resp, char id[ML_UUID_LEN], int64_t *now)
{
    const char *params[3];
    char ns[TENANT_MAX + 1];
    PGresult *r;
    int rc = ML_ERR;

    if (fn_params(req, resp, ns, params) != ML_OK)
        return ML_ERR;
    r = pg_query(db, "sch_lock_fn",
                 "SELECT f.id, floor(extract(epoch FROM now()))::bigint FROM functions f"
                 " WHERE" WHERE_FN("$3") " FOR NO KEY UPDATE",
                 3, params);
    if (!r) {
        db_fail(resp, db, "creating a schedule");
    } else if (PQntuples(r) == 0) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", httpd_param(req, "fn"));
    } else if (pg_get_text_copy(r, 0, 0, id, ML_UUID_LEN) != ML_OK || pg_get_int64(r, 0, 1, now) != ML_OK) {
        httpd_resp_error(resp, 500, "internal", "unexpected function row");
    } else {
        rc = ML_OK;
    }
    PQclear(r);
    return rc;
}

/* Inserts the schedule (limits checked in the same statement) and answers 201/409/413. */
static int insert_schedule(pg_conn *db, httpd_req *req, httpd_resp *resp, const create_spec *spec,
                           const char *fn_id, int64_t now)
{
    char next_s[24], limit_s[16], max_s[16];
    const char *params[7] = { fn_id, spec->cron.text, httpd_body(req, NULL), spec->enabled ? "true" : "false",
                              NULL, limit_s, max_s };
    PGresult *r;
    int64_t next = 0, count = 0;
    int rc = ML_ERR;

    if (spec->enabled) {
        if (cron_next(&spec->cron, now, &next) != ML_OK) {
            httpd_resp_error(resp, 400, "invalid_cron", "cron expression '%s' never fires", spec->cron.text);
            return ML_ERR;
        }
        params[4] = next_s;
    }
    if ((spec->enabled && ml_snprintf(next_s, sizeof(next_s), "%lld", (long long)next) != ML_OK) ||
        ml_snprintf(limit_s, sizeof(limit_s), "%d", SCHEDULES_MAX_PER_FUNCTION) != ML_OK ||
        ml_snprintf(max_s, sizeof(max_s), "%d", SCHEDULES_MAX_PAYLOAD) != ML_OK) {
        httpd_resp_error(resp, 500, "internal", "cannot format the schedule's parameters");
        return ML_ERR;
    }
    r = pg_query(db, "sch_insert",
                 "WITH c AS (SELECT count(*) AS n FROM schedules WHERE function_id = $1::uuid),"
                 " p AS (SELECT coalesce($3::jsonb -> 'payload', '{}'::jsonb) AS v),"
                 " ins AS (INSERT INTO schedules (function_id, cron, payload, enabled, next_fire_at)"
                 "  SELECT $1::uuid, $2, p.v, $4::boolean, to_timestamp($5::bigint) FROM p, c"
                 "  WHERE c.n < $6::int AND octet_length(p.v::text) <= $7::int RETURNING *)"
                 " SELECT (SELECT n FROM c), (SELECT " SCHEDULE_JSON " FROM ins s)::text",
                 7, params);
    if (!r)
        db_fail(resp, db, "creating a schedule");
    else if (pg_get_int64(r, 0, 0, &count) != ML_OK)
        httpd_resp_error(resp, 500, "internal", "unexpected result creating a schedule");
    else if (pg_is_null(r, 0, 1) && count >= SCHEDULES_MAX_PER_FUNCTION)
        httpd_resp_error(resp, 409, "too_many_schedules", "the function already has %lld schedules (at most %d)",
                         (long long)count, SCHEDULES_MAX_PER_FUNCTION);
    else if (pg_is_null(r, 0, 1))
        httpd_resp_error(resp, 413, "payload_too_large", "payload exceeds %d KiB", SCHEDULES_MAX_PAYLOAD / 1024);
    else if (httpd_resp_text(resp, 201, "application/json", pg_get_text(r, 0, 1)) == ML_OK)
        rc = ML_OK;
    PQclear(r);
    return rc;
}

static httpd_result h_create(httpd_req *req, httpd_resp *resp, void *ud)
{
    create_spec spec;
    char fn_id[ML_UUID_LEN];
    int64_t now;
    pg_conn *db;

    if (parse_create(req, resp, &spec) != ML_OK || !(db = need_db(ud, resp)))
        return HTTPD_DONE;
    if (pg_begin(db) != ML_OK) {
        db_fail(resp, db, "creating a schedule");
        put_db(ud);
        return HTTPD_DONE;
    }
    if (lock_function(db, req, resp, fn_id, &now) == ML_OK &&
        insert_schedule(db, req, resp, &spec, fn_id, now) == ML_OK) {
        if (pg_commit(db) != ML_OK)
            db_fail(resp, db, "creating a schedule");
        else
            ml_log_kv(ML_LOG_INFO, "schedule created", "function_id", fn_id, "cron", spec.cron.text, NULL);
    }
    if (pg_in_transaction(db))
        pg_rollback(db);
    put_db(ud);
    return HTTPD_DONE;
}

static httpd_result h_list(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *params[3];
    char ns[TENANT_MAX + 1];
    PGresult *r;
    pg_conn *db;

    if (fn_params(req, resp, ns, params) != ML_OK || !(db = need_db(ud, resp)))
        return HTTPD_DONE;
    r = pg_query(db, "sch_list",
                 "SELECT jsonb_build_object('schedules', coalesce((SELECT jsonb_agg(" SCHEDULE_JSON
                 " ORDER BY s.created_at, s.id) FROM schedules s WHERE s.function_id = f.id),"
                 " '[]'::jsonb))::text FROM functions f WHERE" WHERE_FN("$3"),
                 3, params);
    if (!r)
        db_fail(resp, db, "listing schedules");
    else if (PQntuples(r) == 0)
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", httpd_param(req, "fn"));
    else
        httpd_resp_text(resp, 200, "application/json", pg_get_text(r, 0, 0));
    PQclear(r);
    put_db(ud);
    return HTTPD_DONE;
}

static httpd_result h_delete(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *id = httpd_param(req, "id"), *fn = httpd_param(req, "fn");
    const char *params[4] = { NULL, NULL, NULL, id };
    char ns[TENANT_MAX + 1];
    int64_t deleted = 0;
    pg_conn *db;

    if (fn_params(req, resp, ns, params) != ML_OK)
        return HTTPD_DONE;
    if (ml_uuid_valid(id) != ML_OK) {
        httpd_resp_error(resp, 404, "not_found", "no schedule '%s' for function '%s'", id, fn);
        return HTTPD_DONE;
    }
    if (!(db = need_db(ud, resp)))
        return HTTPD_DONE;
    if (pg_exec(db, "sch_delete",
                "DELETE FROM schedules s USING functions f"
                " WHERE s.id = $4::uuid AND s.function_id = f.id AND" WHERE_FN("$3"),
                4, params, &deleted) != ML_OK) {
        db_fail(resp, db, "deleting a schedule");
    } else if (deleted == 0) {
        httpd_resp_error(resp, 404, "not_found", "no schedule '%s' for function '%s'", id, fn);
    } else {
        ml_log_kv(ML_LOG_INFO, "schedule deleted", "schedule_id", id, "function", fn, NULL);
        resp->status = 204;
    }
    put_db(ud);
    return HTTPD_DONE;
}

size_t schedules_routes(ex_app *app, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "POST", "/functions/{fn}/schedules", h_create, app, MAX_BODY, true },
        { "GET", "/functions/{fn}/schedules", h_list, app, 0, true },
        { "DELETE", "/functions/{fn}/schedules/{id}", h_delete, app, 0, true },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}
