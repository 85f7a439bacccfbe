/* audit_http.c — the GET endpoints that read the audit log back, after a bounded flush so a
 * caller sees its own invocations. */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "audit-int.h"
#include "crypto.h"
#include "log.h"
#include "tenant.h"

#define READ_FLUSH_MS 1000       /* GET handlers wait this long for their rows to be written */
#define PAGE_DEFAULT 20
#define PAGE_MAX 100

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define INVOCATION_JSON                                                                        \
    "json_build_object('id', i.id, 'function_id', i.function_id, 'version', i.version,"        \
    " 'trigger', i.trigger, 'status', i.status, 'attempts', i.attempts,"                       \
    " 'cold_start', i.cold_start, 'executed_version', i.executed_version, 'alias', i.alias,"   \
    " 'duration_ms', i.duration_ms,"                                                            \
    " 'memory_used_mb', i.memory_used_mb, 'payload_size', i.payload_size,"                      \
    " 'response_size', i.response_size, 'error_type', i.error_type,"                           \
    " 'error_message', i.error_message, 'request_id', i.request_id,"                           \
    " 'created_at', " ISO("i.created_at") ", 'started_at', " ISO("i.started_at") ","          \
    " 'finished_at', " ISO("i.finished_at")

/* Borrows the thread's connection (thread_db); NULL with 503 written. Pair with put_db. */
static pg_conn *need_db(audit *a, httpd_resp *resp)
{
    pg_conn *db = a->cfg.thread_db(a->cfg.thread_db_ud);

    if (!db) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable",
                         "cannot reach the function database (or no free connection)");
    }
    return db;
}

/* Gives back what need_db lent (after the last pg_error use). */
static void put_db(audit *a)
{
    if (a->cfg.thread_db_release)
        a->cfg.thread_db_release(a->cfg.thread_db_ud);
}

static void db_fail(httpd_resp *resp, pg_conn *db, const char *what)
{
    ml_log_warn("audit: %s: %s", what, pg_error(db));
    httpd_resp_header(resp, "Retry-After", "5");
    httpd_resp_error(resp, pg_error_is_connection(db) ? 503 : 500,
                     pg_error_is_connection(db) ? "service_unavailable" : "internal", "%s failed: %s",
                     what, pg_error(db));
}

/* The request's namespace (tenant.h) into ns; ML_ERR with 400 written when invalid. */
static int req_ns(httpd_req *req, httpd_resp *resp, char ns[TENANT_MAX + 1])
{
    if (tenant_from_header(httpd_header(req, TENANT_HEADER), ns) == ML_OK)
        return ML_OK;
    httpd_resp_error(resp, 400, "invalid_namespace", "%s must be a namespace name", TENANT_HEADER);
    return ML_ERR;
}

/* The stored result: its JSON if it is JSON, else a string if it is UTF-8, else base64
 * under result_base64. */
static void add_result(cJSON *o, const char *data, size_t len)
{
    cJSON *v = cJSON_ParseWithLength(data, len);
    size_t i = 0, n;

    if (v) {
        cJSON_AddItemToObject(o, "result", v);
        return;
    }
    while (i < len && data[i] && (n = (unsigned char)data[i] < 0x80 ? 1 : audit_utf8_len((const unsigned char *)data + i, len - i)))
        i += n;
    if (i == len) {
        char *s = strndup(data, len);
        cJSON_AddItemToObject(o, "result", cJSON_CreateString(s ? s : ""));
        free(s);
    } else {
        char *b = malloc(CRYPTO_BASE64_ENC_SIZE(len));
        if (b && crypto_base64_encode(data, len, b, CRYPTO_BASE64_ENC_SIZE(len)) == ML_OK)
            cJSON_AddStringToObject(o, "result_base64", b);
        free(b);
    }
}

/* "logs": {"href": "/functions/<fn>/logs?request_id=<id>"} (docs/logs.md §1 "Read"); the
 * name is a function name (no characters a URL path must escape). */
static void add_logs_link(cJSON *o, const char *fn, const char *id)
{
    char href[256];
    cJSON *logs;

    if (ml_snprintf(href, sizeof(href), "/functions/%s/logs?request_id=%s", fn, id) != ML_OK)
        return;
    logs = cJSON_AddObjectToObject(o, "logs");
    if (logs)
        cJSON_AddStringToObject(logs, "href", href);
}

static httpd_result h_get_invocation(httpd_req *req, httpd_resp *resp, void *ud)
{
    audit *a = ud;
    const char *id = httpd_param(req, "id");
    char ns[TENANT_MAX + 1];
    const char *params[] = { id, ns };
    PGresult *res;
    pg_conn *db;
    cJSON *o;

    if (req_ns(req, resp, ns) != ML_OK)
        return HTTPD_DONE;
    if (ml_uuid_valid(id) != ML_OK) {
        httpd_resp_error(resp, 404, "not_found", "no invocation '%s'", id ? id : "");
        return HTTPD_DONE;
    }
    /* read-your-writes: rows submitted before this request are written first (bounded) */
    audit_flush(a, READ_FLUSH_MS);
    if (!(db = need_db(a, resp)))
        return HTTPD_DONE;
    /* binary results: the json text as is, the raw bytes of result and log_tail */
    res = pg_query_ex(db, "audit_get",
                      "SELECT " INVOCATION_JSON ")::text, i.result, i.log_tail, f.name FROM invocations i"
                      " JOIN functions f ON f.id = i.function_id WHERE i.id = $1 AND f.namespace = $2",
                      2, params, NULL, NULL, 1);
    if (!res) {
        db_fail(resp, db, "reading an invocation");
    } else if (PQntuples(res) == 0) {
        httpd_resp_error(resp, 404, "not_found", "no invocation '%s'", id);
    } else if (!(o = cJSON_ParseWithLength(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0)))) {
        httpd_resp_error(resp, 500, "internal", "malformed JSON from the database");
    } else {
        size_t tl = (size_t)PQgetlength(res, 0, 2);
        char tail[CRYPTO_BASE64_ENC_SIZE(AUDIT_LOG_TAIL_MAX)];
        if (!PQgetisnull(res, 0, 1))
            add_result(o, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
        if (!PQgetisnull(res, 0, 2) && tl <= AUDIT_LOG_TAIL_MAX &&
            crypto_base64_encode(PQgetvalue(res, 0, 2), tl, tail, sizeof(tail)) == ML_OK)
            cJSON_AddStringToObject(o, "log_tail", tail);
        else
            cJSON_AddNullToObject(o, "log_tail");
        add_logs_link(o, PQgetvalue(res, 0, 3), id);
        httpd_resp_json(resp, 200, o);
    }
    PQclear(res);
    put_db(a);
    return HTTPD_DONE;
}

/* $1 id, $2 name, $3 status, $4 cursor µs, $5 cursor id, $6 limit, $7 namespace (another
 * namespace's function is not found). Newest first; one extra row tells whether there is a
 * next page. */
#define LIST_SQL(status_pred)                                                                  \
    "WITH fn AS (SELECT id FROM functions WHERE (id = $1::uuid OR (namespace = $7 AND name = $2))" \
    "  AND namespace = $7),"                                                                   \
    " page AS (SELECT i.*, row_number() OVER (ORDER BY i.created_at DESC, i.id DESC) AS rn"      \
    "  FROM (SELECT i.* FROM invocations i WHERE i.function_id = (SELECT id FROM fn)"           \
    status_pred " AND ($4::bigint IS NULL OR (i.created_at, i.id) <"                            \
    "  ('epoch'::timestamptz + $4::bigint * interval '1 microsecond', $5::uuid))"               \
    "  ORDER BY i.created_at DESC, i.id DESC LIMIT $6::int + 1) i)"                             \
    " SELECT (SELECT count(*) FROM fn), json_build_object('invocations', coalesce((SELECT"      \
    " json_agg(" INVOCATION_JSON ") ORDER BY i.rn) FROM page i WHERE i.rn <= $6::int), '[]'),"  \
    " 'next_cursor', (SELECT (extract(epoch FROM created_at) * 1000000)::bigint || '.' || id"   \
    " FROM page WHERE rn = $6::int AND (SELECT count(*) FROM page) > $6::int))::text"

static httpd_result h_list_invocations(httpd_req *req, httpd_resp *resp, void *ud)
{
    audit *a = ud;
    const char *fn = httpd_param(req, "fn"), *status = httpd_query(req, "status");
    const char *limit_s = httpd_query(req, "limit"), *cursor = httpd_query(req, "cursor");
    char us[24], cid[ML_UUID_LEN], limit[8], ns[TENANT_MAX + 1];
    int64_t n = PAGE_DEFAULT;
    bool by_id = ml_uuid_valid(fn) == ML_OK;
    const char *params[] = { by_id ? fn : NULL, by_id ? NULL : fn, status, NULL, NULL, limit, ns };
    PGresult *res;
    pg_conn *db;

    if (req_ns(req, resp, ns) != ML_OK)
        return HTTPD_DONE;

    if ((limit_s && ml_parse_int64(limit_s, 1, PAGE_MAX, &n) != ML_OK) ||
        (cursor && ml_cursor_parse(cursor, us, cid) != ML_OK) || (status && !audit_status_valid(status))) {
        httpd_resp_error(resp, 400, "invalid_query",
                         "limit must be 1..%d, cursor a value from next_cursor, and status one of queued, "
                         "running, succeeded, failed, timed_out, dead_lettered", PAGE_MAX);
        return HTTPD_DONE;
    }
    if (cursor) {
        params[3] = us;
        params[4] = cid;
    }
    if (ml_snprintf(limit, sizeof(limit), "%lld", (long long)n) != ML_OK) {
        httpd_resp_error(resp, 500, "internal", "cannot format the page limit");
        return HTTPD_DONE;
    }
    audit_flush(a, READ_FLUSH_MS);
    if (!(db = need_db(a, resp)))
        return HTTPD_DONE;
    res = status ? pg_query(db, "audit_list_status", LIST_SQL(" AND i.status = $3"), 7, params)
                 : pg_query(db, "audit_list", LIST_SQL(" AND $3::text IS NULL"), 7, params);
    if (!res) {
        db_fail(resp, db, "listing invocations");
    } else if (strcmp(pg_get_text(res, 0, 0), "0") == 0) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", fn);
    } else {
        cJSON *o = cJSON_Parse(pg_get_text(res, 0, 1));
        if (o)
            httpd_resp_json(resp, 200, o);
        else
            httpd_resp_error(resp, 500, "internal", "malformed JSON from the database");
    }
    PQclear(res);
    put_db(a);
    return HTTPD_DONE;
}

size_t audit_routes(audit *a, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "GET", "/invocations/{id}", h_get_invocation, a, 0, true },
        { "GET", "/functions/{fn}/invocations", h_list_invocations, a, 0, true },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}
