/* registry_events.c — POST /webhooks/build-status/{build_id}: a signed build event is
 * applied in one transaction (receipt for idempotency, tombstone check, the function created
 * on first sight, the build's status only moving forward, a completed build becoming a
 * version, the function's state recomputed), then published to the caches and to the
 * requests waiting in fnwait. */
#include "registry-int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fnspec.h"
#include "log.h"
#include "secretbox.h"
#include "webhook.h"

/* A decoded event (fnspec owns the rules and the strings) and its artifact numbers as text,
 * for the SQL parameters. A zeroed build_event is empty; build_event_free releases it. */
typedef struct build_event {
    fnspec_build_event s;
    char size[24], files[24];
} build_event;

/* Decodes a build.status body for the build in the path; ML_ERR with a message when
 * malformed (ev then owns nothing). */
static int event_parse(const char *body, size_t len, const char *path_build_id, build_event *ev,
                       char *err, size_t errlen)
{
    if (fnspec_build_event_decode(body, len, &ev->s, err, errlen) != ML_OK)
        return ML_ERR;
    if (!path_build_id || strcasecmp(ev->s.build_id, path_build_id) != 0) {
        ml_snprintf_trunc(err, errlen, "build_id must be the UUID in the path");
        goto bad;
    }
    if (ev->s.has_artifact &&
        (ml_snprintf(ev->size, sizeof(ev->size), "%" PRId64, ev->s.artifact_size) != ML_OK ||
         ml_snprintf(ev->files, sizeof(ev->files), "%" PRId64, ev->s.artifact_files) != ML_OK)) {
        ml_snprintf_trunc(err, errlen, "artifact size_bytes and files must be integers");
        goto bad;
    }
    return ML_OK;
bad:
    fnspec_build_event_free(&ev->s);
    return ML_ERR;
}

/* The config member as text (NULL when absent), for the INSERT. */
static char *config_text(const cJSON *config, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, k);

    return v && !cJSON_IsNull(v) ? cJSON_PrintUnformatted(v) : NULL;
}

static const char create_sql[] =
    "INSERT INTO functions (id, name, runtime, handler, memory_mb, timeout_s, env, rate_limit, concurrency,"
    " webhook_secret_sealed, namespace, description, tags)"
    " VALUES ($1, $2, $3, $4, coalesce($5::int, 128), coalesce($6::int, 30), coalesce($7::jsonb, '{}'),"
    " $8::jsonb, $9::int, $10, $11, coalesce($12, ''), coalesce($13::jsonb, '{}')) ON CONFLICT (id) DO NOTHING";

/* The env to store: the sealed values of the executor's copy (function.sealed.env), or, from
 * a build side older than that, config.env — sealed here. Text (caller frees), or NULL. */
static char *sealed_env_text(const build_event *ev)
{
    const cJSON *sealed = cJSON_GetObjectItemCaseSensitive(ev->s.sealed, "env");
    cJSON *env = cJSON_Duplicate(sealed ? sealed : cJSON_GetObjectItemCaseSensitive(ev->s.config, "env"), 1);
    char err[256], *text = NULL;

    if (env && secretbox_env_seal(secretbox_global(), env, NULL, err, sizeof(err)) != ML_OK)
        ml_log_warn("registry: function %s: %s", ev->s.function_id, err);
    else if (env)
        text = cJSON_PrintUnformatted(env);
    cJSON_Delete(env);
    return text;
}

/* Creates the function from the event, in the event's namespace (function.namespace; absent:
 * default), unless it exists: a later event never moves a function to another namespace. A
 * sealed whsec_ secret in the event is kept (functions from before get theirs with their
 * next event). */
static int ev_create(pg_conn *db, const build_event *ev)
{
    static const char *const keys[] = { "memory_mb", "timeout_s", "env", "rate_limit", "concurrency" };
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(ev->s.sealed, "webhook_secret");
    char *vals[ML_ARRAY_LEN(keys)] = { 0 };
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(ev->s.config, "description");
    char *tags = config_text(ev->s.config, "tags");   /* description, tags: docs/versions.md */
    const char *params[13] = { ev->s.function_id, ev->s.name, ev->s.runtime, ev->s.handler };
    int rc = ML_ERR;

    for (size_t i = 0; i < ML_ARRAY_LEN(keys); i++)
        params[4 + i] = vals[i] = i == 2 ? sealed_env_text(ev) : config_text(ev->s.config, keys[i]);
    if (cJSON_GetObjectItemCaseSensitive(ev->s.config, "env") && !vals[2])
        goto out; /* never store a value we could not seal */
    params[9] = cJSON_IsString(ws) ? ws->valuestring : NULL;
    params[10] = ev->s.ns[0] ? ev->s.ns : FNSPEC_NS_DEFAULT;
    params[11] = cJSON_IsString(desc) ? desc->valuestring : NULL;
    params[12] = tags;
    rc = pg_exec(db, "reg_ev_create", create_sql, 13, params, NULL);
    if (rc == ML_OK && params[9])
        rc = pg_exec(db, "reg_ev_whsec", "UPDATE functions SET webhook_secret_sealed = $2 WHERE id = $1"
                     " AND webhook_secret_sealed IS DISTINCT FROM $2", 2,
                     (const char *[]){ ev->s.function_id, params[9] }, NULL);
out:
    for (size_t i = 0; i < ML_ARRAY_LEN(keys); i++)
        cJSON_free(vals[i]);
    cJSON_free(tags);
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
    const char *rcpt[] = { webhook_id, ev->s.build_id, ev->s.function_id, ev->s.status };
    const char *fid[] = { ev->s.function_id };
    const char *build[] = { ev->s.build_id, ev->s.function_id, ev->s.status, ev->s.error, ev->s.timestamp };
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
    if (strcmp(ev->s.status, "completed") == 0) {
        const char *ver[] = { ev->s.function_id, ev->s.build_id, ev->s.runtime, ev->s.handler,
                              ev->s.artifact_prefix, ev->s.artifact_sha256, ev->size, ev->files };
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
        reg_publish_change(r, f->id, f->ns, f->name, json);
    } else {
        /* cannot tell the new state: make sure nobody keeps the old one */
        registry_forget(r, id, NULL, NULL);
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
                  ev->s.function_id, "name", ev->s.name, "error", pg_error(db), NULL);
        httpd_resp_error(resp, 409, "conflict", "the event conflicts with another function (name '%s' or build %s"
                         " taken): %s", ev->s.name, ev->s.build_id, pg_error(db));
    } else if (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0) {
        httpd_resp_error(resp, 400, "invalid_body", "the event does not fit the schema: %s", pg_error(db));
    } else {
        reg_db_fail(resp, db, "applying a build event");
    }
}

/* Verifies the signature and decodes the body into *ev (caller frees it). ML_ERR: answered
 * (401 or 400) and counted. */
static int read_event(registry *r, httpd_req *req, httpd_resp *resp, build_event *ev)
{
    const char *wid = httpd_header(req, "webhook-id");
    char reason[128], err[256];
    size_t len;
    const char *body = httpd_body(req, &len);
    cJSON *json;

    if (webhook_verify(r->cfg.webhook_secret, wid, httpd_header(req, "webhook-timestamp"),
                       httpd_header(req, "webhook-signature"), body, len, ml_wall_ms() / 1000, reason,
                       sizeof(reason)) != ML_OK) {
        count_webhook(r, "unknown", "unauthorized");
        httpd_resp_error(resp, 401, "invalid_signature", "webhook signature rejected: %s", reason);
        return ML_ERR;
    }
    if (!(json = httpd_body_json(req, resp))) /* not JSON: httpd's own 400 */
        goto invalid;
    cJSON_Delete(json);
    if (event_parse(body, len, httpd_param(req, "build_id"), ev, err, sizeof(err)) != ML_OK) {
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
    build_event ev = { 0 };
    ev_outcome out;
    pg_conn *db;

    if (read_event(r, req, resp, &ev) != ML_OK)
        goto out;
    if (!(db = reg_need_db(r, resp)) || pg_begin(db) != ML_OK) {
        if (db) {
            reg_db_fail(resp, db, "starting a transaction");
            reg_put_db(r);
        }
        count_webhook(r, ev.s.status, "error");
        goto out;
    }
    out = apply_event(db, resp, &ev, httpd_header(req, "webhook-id"));
    if (out == EV_APPLIED)
        refresh_after_change(r, db, ev.s.function_id);
    reg_put_db(r); /* the rest is the wake-up, logs and the reply */
    switch (out) {
    case EV_APPLIED:
        fnwait_notify(r->waits);
        ml_log_kv(ML_LOG_INFO, "build event applied", "build_id", ev.s.build_id, "function_id",
                  ev.s.function_id, "namespace", ev.s.ns, "status", ev.s.status, NULL);
        /* fallthrough */
    case EV_DUPLICATE:
        httpd_resp_json(resp, 200, cJSON_Parse(out == EV_APPLIED ? "{\"ok\":true}" : "{\"ok\":true,\"duplicate\":true}"));
        break;
    case EV_GONE:
        httpd_resp_error(resp, 410, "function_deleted", "function %s was deleted", ev.s.function_id);
        break;
    case EV_FAILED:
        break;
    }
    count_webhook(r, ev.s.status,
                  out == EV_APPLIED ? "applied" : out == EV_DUPLICATE ? "duplicate" : out == EV_GONE ? "gone" : "error");
out:
    fnspec_build_event_free(&ev.s);
    return HTTPD_DONE;
}
