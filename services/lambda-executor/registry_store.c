/* registry_store.c — the registry's Postgres side: the two documents of a function (the
 * cache JSON, parsed by reg_fn_parse, and the API JSON), and the statements that read,
 * patch and delete functions. Each runs on the calling thread's connection. */
#include "registry-int.h"

#include <stdlib.h>
#include <string.h>

#include "fnurl.h"
#include "log.h"
#include "secretbox.h"
#include "pgpool.h"

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* runtime and handler are the function's own: a PATCH takes effect for $LATEST at once
 * (docs/versions.md); each code revision keeps the pair it was built with in its row. */
/* The cache shape (parsed by fn_from_json). */
#define CACHE_JSON                                                                             \
    "json_build_object('id', f.id, 'namespace', f.namespace, 'name', f.name, 'state', f.state,"  \
    " 'version', f.active_version,"                                                             \
    " 'runtime', f.runtime, 'handler', f.handler,"                                              \
    " 'artifact_prefix', v.artifact_prefix, 'artifact_sha256', v.artifact_sha256,"              \
    " 'artifact_size', v.artifact_size, 'memory_mb', f.memory_mb, 'timeout_s', f.timeout_s,"   \
    " 'concurrency', f.concurrency, 'rate_limit', f.rate_limit, 'max_retries', f.max_retries,"  \
    " 'max_event_age_s', f.max_event_age_s, 'on_success_url', f.on_success_url,"                \
    " 'on_failure_url', f.on_failure_url, 'env', f.env, 'generation', f.generation,"           \
    " 'network', f.network,"                                                                    \
    " 'build_id', (SELECT b.build_id FROM function_builds b WHERE b.function_id = f.id"         \
    " ORDER BY b.queued_at DESC LIMIT 1))::text"

/* A value of the function's newest build b (NULL without builds). */
#define NEWEST_BUILD(expr) \
    "(SELECT " expr " FROM function_builds b WHERE b.function_id = f.id ORDER BY b.queued_at DESC LIMIT 1)"
/* AWS's LastUpdateStatus from the newest build: Failed when it failed, InProgress while a
 * build after the first is queued or building (the first is the function's creation: State
 * says Pending then), else Successful. */
#define LAST_UPDATE_STATUS                                                                     \
    "CASE WHEN b.status = 'failed' THEN 'Failed' WHEN b.status IN ('queued', 'building') AND"    \
    " EXISTS (SELECT 1 FROM function_builds o WHERE o.function_id = f.id AND o.build_id <>"    \
    " b.build_id) THEN 'InProgress' ELSE 'Successful' END"

/* The API shape (GET /functions, GET/PATCH /functions/{fn}); runtime_version is added by
 * reg_doc_decorate (the executor's runtimes table, not the database). */
#define API_JSON                                                                               \
    "json_build_object('id', f.id, 'namespace', f.namespace, 'name', f.name,"                    \
    " 'runtime', f.runtime, 'handler', f.handler, 'state', f.state,"                            \
    " 'version', f.active_version,"                                                             \
    " 'error', f.state_reason, 'memory_mb', f.memory_mb, 'timeout_s', f.timeout_s, 'env', f.env," \
    " 'rate_limit', f.rate_limit, 'concurrency', f.concurrency, 'max_retries', f.max_retries,"  \
    " 'max_event_age_s', f.max_event_age_s, 'on_success_url', f.on_success_url,"                \
    " 'on_failure_url', f.on_failure_url, 'network', f.network,"                                \
    " 'artifact', CASE WHEN v.version IS NOT NULL THEN json_build_object('sha256',"             \
    " v.artifact_sha256, 'size_bytes', v.artifact_size, 'files', v.artifact_files) END,"        \
    " 'last_build', (SELECT json_build_object('build_id', b.build_id, 'status', b.status,"      \
    " 'error', b.error, 'updated_at', " ISO("b.updated_at") ") FROM function_builds b"          \
    " WHERE b.function_id = f.id ORDER BY b.queued_at DESC LIMIT 1),"                           \
    " 'description', f.description, 'tags', f.tags,"                                            \
    " 'last_update_status', coalesce(" NEWEST_BUILD(LAST_UPDATE_STATUS) ", 'Successful'),"      \
    " 'last_update_reason', " NEWEST_BUILD("CASE WHEN b.status = 'failed' THEN b.error END") "," \
    " 'created_at', " ISO("f.created_at") ", 'updated_at', " ISO("f.updated_at") ","            \
    " 'url_config', " FNURL_DOC_SQL ")"

#define FROM_FN \
    " FROM functions f LEFT JOIN function_versions v ON v.function_id = f.id AND v.version = f.active_version"
/* $1 the id (or NULL), $2 the name (or NULL), $3 the namespace: a function of another
 * namespace is no match (docs/tenants.md). $3 NULL only for the cache's fetch by id (ids are
 * global; registry_get checks the namespace). The name branch names the (namespace, name)
 * index's columns. */
#define WHERE_FN \
    " WHERE (f.id = $1::uuid OR (f.namespace = $3 AND f.name = $2)) AND ($3::text IS NULL OR f.namespace = $3)"

pg_conn *reg_need_db(registry *r, httpd_resp *resp)
{
    deps *d = r->cfg.thread_deps(r->cfg.thread_deps_ud);
    pgpool_status st = d ? deps_db_acquire(d) : PGPOOL_CONNECT_FAILED;
    pg_conn *db = st == PGPOOL_OK ? d->db : NULL;

    if (st == PGPOOL_OK && !db) /* unpooled and the thread has no connection */
        deps_db_release(d);
    if (!db && resp) {
        httpd_resp_header(resp, "Retry-After", "5");
        if (st == PGPOOL_TIMEOUT)
            httpd_resp_error(resp, 503, "service_unavailable",
                             "function database: no free connection (%s)", pgpool_status_str(st));
        else
            httpd_resp_error(resp, 503, "service_unavailable", "cannot reach the function database");
    }
    return db;
}

void reg_put_db(registry *r)
{
    deps *d = r->cfg.thread_deps(r->cfg.thread_deps_ud);

    if (d)
        deps_db_release(d);
}

/* Answers a failed statement: 503 when the database is unreachable, else 500. */
void reg_db_fail(httpd_resp *resp, pg_conn *db, const char *what)
{
    ml_log_warn("registry: %s: %s", what, pg_error(db));
    if (pg_error_is_connection(db)) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "function database unavailable: %s", pg_error(db));
    } else {
        httpd_resp_error(resp, 500, "internal", "%s failed", what);
    }
}

/* Cache JSON of one function by key (an id, or a name key "ns/name"): ML_OK with *json
 * (caller frees), REGISTRY_NOT_FOUND, ML_ERR (err written). */
int reg_db_fetch_json(pg_conn *db, const char *key, bool by_id, char **json, char *err, size_t errlen)
{
    char ns[FN_NS_MAX], name[FN_NAME_MAX];
    const char *params[] = { by_id ? key : NULL, by_id ? NULL : name, by_id ? NULL : ns };
    PGresult *res;
    int rc = ML_ERR;

    if (!by_id && reg_name_key_split(key, ns, name) != ML_OK)
        return REGISTRY_NOT_FOUND;
    res = pg_query(db, "reg_fetch", "SELECT " CACHE_JSON FROM_FN WHERE_FN, 3, params);
    if (!res)
        ml_snprintf_trunc(err, errlen, "function database: %s", pg_error(db));
    else if (PQntuples(res) == 0)
        rc = REGISTRY_NOT_FOUND;
    else if ((*json = strdup(pg_get_text(res, 0, 0))) != NULL)
        rc = ML_OK;
    else
        ml_snprintf_trunc(err, errlen, "out of memory");
    PQclear(res);
    return rc;
}

PGresult *reg_store_get(pg_conn *db, const reg_fn_ref *ref)
{
    return pg_query(db, "reg_get", "SELECT " API_JSON "::text" FROM_FN WHERE_FN, 3, ref->params);
}

/* Oldest first; one extra row tells whether there is a next page. */
PGresult *reg_store_list(pg_conn *db, const char *ns, const char *cursor_us, const char *cursor_id,
                         const char *limit)
{
    const char *params[] = { ns, cursor_us, cursor_id, limit };

    return pg_query(db, "reg_list",
                    "WITH page AS (SELECT f.id, f.created_at, " API_JSON " AS j" FROM_FN
                    " WHERE f.namespace = $1 AND ($2::bigint IS NULL OR (f.created_at, f.id) >"
                    " ('epoch'::timestamptz + $2::bigint * interval '1 microsecond', $3::uuid))"
                    " ORDER BY f.created_at, f.id LIMIT $4::int + 1),"
                    " numbered AS (SELECT *, row_number() OVER (ORDER BY created_at, id) AS rn FROM page)"
                    " SELECT json_build_object('functions', coalesce((SELECT json_agg(j ORDER BY rn)"
                    " FROM numbered WHERE rn <= $4::int), '[]'), 'next_cursor', (SELECT"
                    " (extract(epoch FROM created_at) * 1000000)::bigint || '.' || id FROM numbered"
                    " WHERE rn = $4::int AND (SELECT count(*) FROM numbered) > $4::int))::text",
                    4, params);
}

/* Members present in the patch replace the column; JSON null clears a nullable one. */
PGresult *reg_store_patch(pg_conn *db, const reg_fn_ref *ref, const char *patch)
{
    const char *params[] = { ref->params[0], ref->params[1], ref->params[2], patch };

    return pg_query(db, "reg_patch",
                    "WITH u AS (UPDATE functions f SET"
                    " memory_mb = coalesce(($4::jsonb->>'memory_mb')::int, f.memory_mb),"
                    " timeout_s = coalesce(($4::jsonb->>'timeout_s')::int, f.timeout_s),"
                    " env = CASE WHEN $4::jsonb ? 'env' THEN $4::jsonb->'env' ELSE f.env END,"
                    " rate_limit = CASE WHEN $4::jsonb ? 'rate_limit'"
                    "   THEN nullif($4::jsonb->'rate_limit', 'null'::jsonb) ELSE f.rate_limit END,"
                    " concurrency = CASE WHEN $4::jsonb ? 'concurrency'"
                    "   THEN ($4::jsonb->>'concurrency')::int ELSE f.concurrency END,"
                    " max_retries = coalesce(($4::jsonb->>'max_retries')::int, f.max_retries),"
                    " max_event_age_s = coalesce(($4::jsonb->>'max_event_age_s')::int, f.max_event_age_s),"
                    " on_success_url = CASE WHEN $4::jsonb ? 'on_success_url'"
                    "   THEN $4::jsonb->>'on_success_url' ELSE f.on_success_url END,"
                    " on_failure_url = CASE WHEN $4::jsonb ? 'on_failure_url'"
                    "   THEN $4::jsonb->>'on_failure_url' ELSE f.on_failure_url END,"
                    " network = coalesce(($4::jsonb->>'network')::boolean, f.network),"
                    " runtime = coalesce($4::jsonb->>'runtime', f.runtime),"
                    " handler = coalesce($4::jsonb->>'handler', f.handler),"
                    " description = coalesce($4::jsonb->>'description', f.description),"
                    /* tags merge: a member set to null removes the tag */
                    " tags = CASE WHEN $4::jsonb ? 'tags'"
                    "   THEN jsonb_strip_nulls(f.tags || ($4::jsonb->'tags')) ELSE f.tags END"
                    WHERE_FN " RETURNING f.*)"
                    " SELECT " API_JSON "::text, " CACHE_JSON
                    " FROM u f LEFT JOIN function_versions v ON v.function_id = f.id AND v.version = f.active_version",
                    4, params);
}

/* Deletes the function and everything below it (ON DELETE CASCADE) and leaves a tombstone,
 * which keeps late build webhooks from bringing it back. By id, the tombstone is written
 * even when there was no row: the build side deletes a function whose queued event may not
 * have arrived yet, and that event must not create it afterwards. The cascade over a long
 * audit log may outlast the usual statement timeout, so this transaction gets a longer one.
 * ML_OK with *res holding (id, name, deleted: whether a row went, namespace) — no rows if
 * there was no such function and it was named by name, or the id is another namespace's. */
int reg_store_delete(pg_conn *db, const reg_fn_ref *ref, PGresult **res)
{
    const char *const *params = ref->params;

    *res = NULL;
    if (pg_begin(db) != ML_OK)
        return ML_ERR;
    if (pg_exec(db, "reg_delete_timeout", "SET LOCAL statement_timeout = '" DELETE_TIMEOUT "'", 0, NULL, NULL) != ML_OK ||
        (params[0] && pg_exec(db, "reg_delete_fnlock", FN_XACT_LOCK, 1, params, NULL) != ML_OK) ||
        !(*res = pg_query(db, "reg_delete",
                          "WITH d AS (DELETE FROM functions f" WHERE_FN " RETURNING f.id, f.name, f.namespace),"
                          " g AS (SELECT id, name, true AS deleted, namespace FROM d UNION ALL"
                          "  SELECT $1::uuid, '', false, $3 WHERE $1::uuid IS NOT NULL"
                          "  AND NOT EXISTS (SELECT 1 FROM d)"
                          /* never tombstone (or admit) another namespace's function */
                          "  AND NOT EXISTS (SELECT 1 FROM functions o WHERE o.id = $1::uuid)"
                          "  AND NOT EXISTS (SELECT 1 FROM deleted_functions o WHERE o.id = $1::uuid"
                          "   AND o.namespace <> $3)),"
                          " t AS (INSERT INTO deleted_functions (id, name, namespace) SELECT id, name, namespace"
                          "  FROM g ON CONFLICT (id) DO NOTHING)"
                          " SELECT id, name, deleted, namespace FROM g",
                          3, params)) ||
        pg_commit(db) != ML_OK) {
        pg_rollback(db);
        PQclear(*res);
        *res = NULL;
        return ML_ERR;
    }
    return ML_OK;
}

/* An API document with env names only (fnwait answers without looking at the caller's
 * headers, so never with values): a copy (caller frees), or NULL. */
static char *redacted_doc(const registry *r, const char *text)
{
    cJSON *o = cJSON_Parse(text);
    char *printed = NULL, *out = NULL, err[128];

    if (o)
        reg_doc_decorate(r->cfg.runtimes, o);
    if (o && reg_env_render(o, false, err, sizeof(err)) == ML_OK && (printed = cJSON_PrintUnformatted(o)))
        out = strdup(printed); /* fnwait frees with free() */
    cJSON_free(printed);
    cJSON_Delete(o);
    return out;
}

/* fnwait's fetch: every key's API document in one statement (see fnwait_fetch_fn). Keys
 * are function ids: h_get resolved the name within the caller's namespace before parking. */
int reg_wait_fetch(void *ud, const char *const *keys, size_t n, char **docs)
{
    registry *r = ud;
    pg_conn *db = reg_need_db(r, NULL);
    ml_buf arr;
    const char *params[1];
    PGresult *res = NULL;
    int rc = ML_ERR;

    ml_buf_init(&arr, 0);
    for (size_t i = 0; i < n; i++) /* keys are UUIDs or names: no quotes or backslashes */
        if (ml_buf_printf(&arr, "%c\"%s\"", i ? ',' : '{', keys[i]) != ML_OK)
            goto out;
    if (!db || ml_buf_append_str(&arr, n ? "}" : "{}") != ML_OK)
        goto out;
    params[0] = ml_buf_cstr(&arr);
    res = pg_query(db, "reg_wait",
                   "SELECT k.i, " API_JSON "::text FROM unnest($1::text[]) WITH ORDINALITY AS k (key, i)"
                   " JOIN functions f ON f.id = (CASE WHEN k.key ~"
                   " '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN k.key::uuid END)"
                   " LEFT JOIN function_versions v ON v.function_id = f.id AND v.version = f.active_version",
                   1, params);
    if (!res) {
        ml_log_warn("registry: reading waited-for functions: %s", pg_error(db));
        goto out;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t i = 0;
        if (pg_get_int64(res, row, 0, &i) == ML_OK && i >= 1 && (size_t)i <= n && !docs[i - 1])
            docs[i - 1] = redacted_doc(r, pg_get_text(res, row, 1));
    }
    rc = ML_OK;
out:
    if (rc != ML_OK)
        for (size_t i = 0; i < n; i++) {
            free(docs[i]);
            docs[i] = NULL;
        }
    PQclear(res);
    ml_buf_free(&arr);
    if (db)
        reg_put_db(r);
    return rc;
}

/* Seals one function's env (text) unless it changed meanwhile. */
static int seal_row(pg_conn *db, const char *id, const char *env_text)
{
    cJSON *env = cJSON_Parse(env_text);
    char err[256], *out = NULL;
    int rc = ML_ERR;

    if (!env || secretbox_env_seal(secretbox_global(), env, NULL, err, sizeof(err)) != ML_OK) {
        ml_log_warn("registry: cannot seal the env of function %s: %s", id, env ? err : "malformed");
        goto out;
    }
    if ((out = cJSON_PrintUnformatted(env)) != NULL)
        rc = pg_exec(db, "reg_seal", "UPDATE functions SET env = $2::jsonb WHERE id = $1 AND env = $3::jsonb",
                     3, (const char *[]){ id, out, env_text }, NULL);
out:
    cJSON_free(out);
    cJSON_Delete(env);
    return rc;
}

int registry_seal_at_rest(registry *r)
{
    char like[SECRETBOX_KID_LEN + 16];
    pg_conn *db = reg_need_db(r, NULL);
    PGresult *res = NULL;
    int sealed = 0, rc = ML_ERR;

    if (!db)
        return ML_ERR;
    if (ml_snprintf(like, sizeof(like), "%s%s:%%", SECRETBOX_PREFIX, secretbox_global()->cur.kid) != ML_OK ||
        !(res = pg_query(db, "reg_stale_env",
                         "SELECT id, env::text FROM functions WHERE EXISTS (SELECT 1 FROM"
                         " jsonb_each_text(env) e WHERE e.value NOT LIKE $1)", 1, (const char *[]){ like }))) {
        ml_log_warn("registry: reading env values to seal: %s", pg_error(db));
        goto out;
    }
    rc = ML_OK;
    for (int i = 0; i < PQntuples(res); i++) {
        if (seal_row(db, pg_get_text(res, i, 0), pg_get_text(res, i, 1)) == ML_OK)
            sealed++;
        else
            rc = ML_ERR;
    }
    ml_log_info("registry: env at rest under key id %s (%d function(s) sealed now)",
                secretbox_global()->cur.kid, sealed);
out:
    PQclear(res);
    reg_put_db(r);
    return rc;
}
