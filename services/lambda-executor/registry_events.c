/* registry_events.c — POST /webhooks/build-status/{build_id}: a signed build event is
 * applied in one transaction (receipt for idempotency, tombstone check, the function created
 * on first sight, the build's status only moving forward, a completed build becoming a
 * version, the function's state recomputed), then published to the caches and to the
 * requests waiting in fnwait. */
#include "registry-int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "webhook.h"

typedef struct build_event {
    const char *build_id, *function_id, *status, *error, *timestamp;
    const char *name, *runtime, *handler;
    const cJSON *config;
    const char *prefix, *sha256;
    char size[24], files[24];
} build_event;

static const char *obj_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

#define BAD(...)                                                                               \
    do {                                                                                       \
        ml_snprintf(err, errlen, __VA_ARGS__);                                                 \
        return ML_ERR;                                                                         \
    } while (0)

/* Pulls the fields out of a build.status body; ML_ERR with a message when malformed. */
static int event_parse(const cJSON *body, const char *path_build_id, build_event *ev, char *err,
                       size_t errlen)
{
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(body, "function");
    const cJSON *art = cJSON_GetObjectItemCaseSensitive(body, "artifact");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(body, "error");
    const char *t = obj_str(body, "type");

    memset(ev, 0, sizeof(*ev));
    ev->build_id = obj_str(body, "build_id");
    ev->function_id = obj_str(body, "function_id");
    ev->status = obj_str(body, "status");
    ev->timestamp = obj_str(body, "timestamp");
    ev->error = cJSON_IsString(e) ? e->valuestring : NULL;
    ev->name = obj_str(fn, "name");
    ev->runtime = obj_str(fn, "runtime");
    ev->handler = obj_str(fn, "handler");
    ev->config = cJSON_GetObjectItemCaseSensitive(fn, "config");
    if (!t || strcmp(t, "build.status") != 0)
        BAD("type must be \"build.status\"");
    if (!ev->build_id || ml_uuid_valid(ev->build_id) != ML_OK || strcasecmp(ev->build_id, path_build_id) != 0)
        BAD("build_id must be the UUID in the path");
    if (!ev->function_id || ml_uuid_valid(ev->function_id) != ML_OK)
        BAD("function_id must be a UUID");
    if (!ev->status || (strcmp(ev->status, "queued") && strcmp(ev->status, "building") &&
                        strcmp(ev->status, "completed") && strcmp(ev->status, "failed")))
        BAD("status must be queued, building, completed or failed");
    if (!ev->timestamp)
        BAD("timestamp is required");
    if (!ev->name || !reg_name_valid(ev->name) || !ev->runtime || !ev->handler)
        BAD("function must carry name, runtime and handler");
    if (ev->config && (!cJSON_IsObject(ev->config) || reg_fields_check(ev->config, false, err, errlen) != ML_OK))
        return ML_ERR;
    if (strcmp(ev->status, "completed") == 0) {
        int64_t size, files;
        ev->prefix = obj_str(art, "prefix");
        ev->sha256 = obj_str(art, "sha256");
        if (!ev->prefix || !ev->sha256 || reg_json_int(art, "size_bytes", &size, false) != ML_OK ||
            reg_json_int(art, "files", &files, false) != ML_OK)
            BAD("a completed build must carry artifact prefix, sha256, size_bytes and files");
        ml_snprintf(ev->size, sizeof(ev->size), "%lld", (long long)size);
        ml_snprintf(ev->files, sizeof(ev->files), "%lld", (long long)files);
    }
    return ML_OK;
}

/* The config member as text (NULL when absent), for the INSERT. */
static char *config_text(const cJSON *config, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, k);

    return v && !cJSON_IsNull(v) ? cJSON_PrintUnformatted(v) : NULL;
}

static const char create_sql[] =
    "INSERT INTO functions (id, name, runtime, handler, memory_mb, timeout_s, env, rate_limit, concurrency)"
    " VALUES ($1, $2, $3, $4, coalesce($5::int, 128), coalesce($6::int, 30), coalesce($7::jsonb, '{}'),"
    " $8::jsonb, $9::int) ON CONFLICT (id) DO NOTHING";

/* Creates the function from the event unless it exists. */
static int ev_create(pg_conn *db, const build_event *ev)
{
    static const char *const keys[] = { "memory_mb", "timeout_s", "env", "rate_limit", "concurrency" };
    char *vals[ML_ARRAY_LEN(keys)] = { 0 };
    const char *params[9] = { ev->function_id, ev->name, ev->runtime, ev->handler };
    int rc;

    for (size_t i = 0; i < ML_ARRAY_LEN(keys); i++)
        params[4 + i] = vals[i] = config_text(ev->config, keys[i]);
    rc = pg_exec(db, "reg_ev_create", create_sql, 9, params, NULL);
    for (size_t i = 0; i < ML_ARRAY_LEN(keys); i++)
        cJSON_free(vals[i]);
    return rc;
}

/* The build's status only moves forward (queued < building < completed | failed); queued_at
 * keeps the earliest timestamp seen. */
#define BUILD_RANK(s) "CASE " s " WHEN 'queued' THEN 1 WHEN 'building' THEN 2 ELSE 3 END"
#define BUILD_NEWER "(" BUILD_RANK("EXCLUDED.status") " > " BUILD_RANK("b.status") ")"
static const char build_sql[] =
    "INSERT INTO function_builds AS b (build_id, function_id, status, error, queued_at)"
    " VALUES ($1, $2, $3, $4, $5::timestamptz)"
    " ON CONFLICT (build_id) DO UPDATE SET"
    "  status = CASE WHEN " BUILD_NEWER " THEN EXCLUDED.status ELSE b.status END,"
    "  error = CASE WHEN " BUILD_NEWER " THEN EXCLUDED.error ELSE b.error END,"
    "  queued_at = least(b.queued_at, EXCLUDED.queued_at)";

/* A completed build becomes a version (once: build_id is unique), numbered last_version+1. */
static const char version_sql[] =
    "WITH n AS (UPDATE functions SET last_version = last_version + 1 WHERE id = $1"
    "  AND NOT EXISTS (SELECT 1 FROM function_versions WHERE build_id = $2) RETURNING last_version)"
    " INSERT INTO function_versions (function_id, version, build_id, runtime, handler, artifact_prefix,"
    "  artifact_sha256, artifact_size, artifact_files)"
    " SELECT $1, n.last_version, $2, $3, $4, $5, $6, $7::bigint, $8::int FROM n";

/* State from the builds seen: the version of the newest completed build is active; without
 * one, the newest build decides between pending and failed (with its error). */
static const char state_sql[] =
    "UPDATE functions f SET active_version = c.active, state = c.state, state_reason = c.reason"
    " FROM (SELECT a.version AS active,"
    "   CASE WHEN a.version IS NOT NULL THEN 'active' WHEN nb.status = 'failed' THEN 'failed'"
    "        ELSE 'pending' END AS state,"
    "   CASE WHEN a.version IS NULL AND nb.status = 'failed' THEN nb.error END AS reason"
    "  FROM (SELECT 1) one"
    "  LEFT JOIN LATERAL (SELECT fv.version FROM function_versions fv"
    "    JOIN function_builds fb ON fb.build_id = fv.build_id WHERE fv.function_id = $1"
    "    ORDER BY fb.queued_at DESC, fv.version DESC LIMIT 1) a ON true"
    "  LEFT JOIN LATERAL (SELECT status, error FROM function_builds WHERE function_id = $1"
    "    ORDER BY queued_at DESC LIMIT 1) nb ON true) c"
    " WHERE f.id = $1 AND (f.active_version, f.state, f.state_reason)"
    "  IS DISTINCT FROM (c.active, c.state, c.reason)";

typedef enum { EV_APPLIED = 0, EV_DUPLICATE, EV_GONE, EV_FAILED } ev_outcome;

/* Applies one event in the open transaction. */
static ev_outcome ev_apply(pg_conn *db, const build_event *ev, const char *webhook_id)
{
    const char *rcpt[] = { webhook_id, ev->build_id, ev->function_id, ev->status };
    const char *fid[] = { ev->function_id };
    const char *build[] = { ev->build_id, ev->function_id, ev->status, ev->error, ev->timestamp };
    int64_t n = 0;
    PGresult *res;

    if (pg_exec(db, "reg_ev_receipt",
                "INSERT INTO build_webhook_receipts (webhook_id, build_id, function_id, status)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (webhook_id) DO NOTHING",
                4, rcpt, &n) != ML_OK)
        return EV_FAILED;
    if (n == 0)
        return EV_DUPLICATE;
    /* one function's events and its delete by id take turns: otherwise a delete that found no
     * row yet and an event creating the row could both commit, the tombstone unseen */
    if (pg_exec(db, "reg_ev_fnlock", FN_XACT_LOCK, 1, fid, NULL) != ML_OK)
        return EV_FAILED;
    if (!(res = pg_query(db, "reg_ev_deleted", "SELECT 1 FROM deleted_functions WHERE id = $1", 1, fid)))
        return EV_FAILED;
    n = PQntuples(res);
    PQclear(res);
    if (n > 0)
        return EV_GONE;
    if (ev_create(db, ev) != ML_OK)
        return EV_FAILED;
    /* serialise events of one function: version numbers and state are read-modify-write */
    if (!(res = pg_query(db, "reg_ev_lock", "SELECT 1 FROM functions WHERE id = $1 FOR UPDATE", 1, fid)))
        return EV_FAILED;
    n = PQntuples(res);
    PQclear(res);
    if (n == 0)
        return EV_GONE; /* deleted meanwhile */
    if (pg_exec(db, "reg_ev_build", build_sql, 5, build, NULL) != ML_OK)
        return EV_FAILED;
    if (strcmp(ev->status, "completed") == 0) {
        const char *ver[] = { ev->function_id, ev->build_id, ev->runtime, ev->handler,
                              ev->prefix, ev->sha256, ev->size, ev->files };
        if (pg_exec(db, "reg_ev_version", version_sql, 8, ver, NULL) != ML_OK)
            return EV_FAILED;
    }
    return pg_exec(db, "reg_ev_state", state_sql, 1, fid, NULL) == ML_OK ? EV_APPLIED : EV_FAILED;
}

/* Re-reads the function after a change and publishes it (Redis write-through, local drop). */
static void refresh_after_change(registry *r, pg_conn *db, const char *id)
{
    char *json = NULL, err[256];
    fn_info *f = malloc(sizeof(*f));

    if (f && reg_db_fetch_json(db, id, true, &json, err, sizeof(err)) == ML_OK &&
        reg_fn_parse(json, strlen(json), f) == ML_OK) {
        reg_publish_change(r, f->id, f->name, json);
    } else {
        /* cannot tell the new state: make sure nobody keeps the old one */
        registry_forget(r, id, NULL);
        reg_redis_owe(r, id, "");
    }
    free(json);
    free(f);
}

static void count_webhook(registry *r, const char *status, const char *result)
{
    const char *labels[] = { status, result };

    metric_inc(r->m_webhooks, labels);
}

/* Error for a failed event: unreachable database 503 (retried), a name held by another
 * function 409, data the schema refuses 400, else 500. */
static void ev_fail(httpd_resp *resp, pg_conn *db, const build_event *ev)
{
    const char *st = pg_sqlstate(db);

    if (strcmp(st, PG_SQLSTATE_UNIQUE_VIOLATION) == 0) {
        ml_log_kv(ML_LOG_WARN, "build webhook refused: conflicts with another function", "function_id",
                  ev->function_id, "name", ev->name, "error", pg_error(db), NULL);
        httpd_resp_error(resp, 409, "conflict", "the event conflicts with another function (name '%s' or build %s"
                         " taken): %s", ev->name, ev->build_id, pg_error(db));
    } else if (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0) {
        httpd_resp_error(resp, 400, "invalid_body", "the event does not fit the schema: %s", pg_error(db));
    } else {
        reg_db_fail(resp, db, "applying a build event");
    }
}

/* Verifies the signature and parses the body into *ev (*json keeps its strings; caller
 * deletes). ML_ERR: answered (401 or 400) and counted. */
static int read_event(registry *r, httpd_req *req, httpd_resp *resp, cJSON **json,
                      build_event *ev)
{
    const char *wid = httpd_header(req, "webhook-id");
    char reason[128], err[256];
    size_t len;
    const char *body = httpd_body(req, &len);

    if (webhook_verify(r->cfg.webhook_secret, wid, httpd_header(req, "webhook-timestamp"),
                       httpd_header(req, "webhook-signature"), body, len, ml_wall_ms() / 1000, reason,
                       sizeof(reason)) != ML_OK) {
        count_webhook(r, "unknown", "unauthorized");
        httpd_resp_error(resp, 401, "invalid_signature", "webhook signature rejected: %s", reason);
        return ML_ERR;
    }
    if (!(*json = httpd_body_json(req, resp)))
        goto invalid;
    if (event_parse(*json, httpd_param(req, "build_id"), ev, err, sizeof(err)) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_body", "%s", err);
        goto invalid;
    }
    return ML_OK;
invalid:
    count_webhook(r, "unknown", "invalid");
    return ML_ERR;
}

/* Applies the event in its own transaction; EV_FAILED: answered. */
static ev_outcome apply_event(pg_conn *db, httpd_resp *resp, const build_event *ev,
                              const char *webhook_id)
{
    ev_outcome out = ev_apply(db, ev, webhook_id);

    if (out == EV_FAILED || out == EV_GONE || out == EV_DUPLICATE) {
        if (out == EV_FAILED)
            ev_fail(resp, db, ev);
        pg_rollback(db);
    } else if (pg_commit(db) != ML_OK) {
        out = EV_FAILED;
        reg_db_fail(resp, db, "committing a build event");
    }
    return out;
}

httpd_result reg_webhook_handler(httpd_req *req, httpd_resp *resp, void *ud)
{
    registry *r = ud;
    cJSON *json = NULL;
    build_event ev;
    ev_outcome out;
    pg_conn *db;

    if (read_event(r, req, resp, &json, &ev) != ML_OK)
        goto out;
    if (!(db = reg_need_db(r, resp)) || pg_begin(db) != ML_OK) {
        if (db)
            reg_db_fail(resp, db, "starting a transaction");
        count_webhook(r, ev.status, "error");
        goto out;
    }
    out = apply_event(db, resp, &ev, httpd_header(req, "webhook-id"));
    switch (out) {
    case EV_APPLIED:
        refresh_after_change(r, db, ev.function_id);
        fnwait_notify(r->waits);
        ml_log_kv(ML_LOG_INFO, "build event applied", "build_id", ev.build_id, "function_id",
                  ev.function_id, "status", ev.status, NULL);
        /* fallthrough */
    case EV_DUPLICATE:
        httpd_resp_json(resp, 200, cJSON_Parse(out == EV_APPLIED ? "{\"ok\":true}" : "{\"ok\":true,\"duplicate\":true}"));
        break;
    case EV_GONE:
        httpd_resp_error(resp, 410, "function_deleted", "function %s was deleted", ev.function_id);
        break;
    case EV_FAILED:
        break;
    }
    count_webhook(r, ev.status,
                  out == EV_APPLIED ? "applied" : out == EV_DUPLICATE ? "duplicate" : out == EV_GONE ? "gone" : "error");
out:
    cJSON_Delete(json);
    return HTTPD_DONE;
}
