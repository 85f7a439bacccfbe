/* versions_store.c — the Postgres side of published versions and aliases: the snapshot a
 * version runs with, an alias's target, and the documents and statements of the routes
 * (versions-int.h). Each runs on the calling thread's connection, which the caller borrowed. */
#include "versions-int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "secretbox.h"

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* What $LATEST runs today: the active code revision's runtime and handler (the function's
 * own while none), as the registry's cache document (registry_store.c CACHE_JSON) says. */
#define LATEST_RUNTIME "coalesce(v.runtime, f.runtime)"
#define LATEST_HANDLER "coalesce(v.handler, f.handler)"
/* The function's description, once it has one (docs/versions.md: a field of the function
 * record; read through to_jsonb so this works with and without the column). */
#define FN_DESCRIPTION "coalesce(to_jsonb(f)->>'description', '')"

#define PUBLISHED_DOC                                                                          \
    "json_build_object('version', p.version::text, 'function_id', f.id, 'name', f.name,"         \
    " 'namespace', f.namespace, 'code_revision', p.code_revision, 'runtime', p.runtime,"         \
    " 'runtime_version', to_jsonb(f)->'runtime_version', 'handler', p.handler,"                 \
    " 'memory_mb', p.memory_mb, 'timeout_s', p.timeout_s, 'env', p.env, 'network', p.network,"   \
    " 'description', p.description, 'artifact', json_build_object('sha256', v.artifact_sha256,"  \
    " 'size_bytes', v.artifact_size), 'created_at', " ISO("p.created_at") ")"
#define PUBLISHED_FROM                                                                         \
    " FROM published_versions p JOIN functions f ON f.id = p.function_id"                       \
    " JOIN function_versions v ON v.function_id = p.function_id AND v.version = p.code_revision"

#define LATEST_DOC                                                                             \
    "json_build_object('version', '$LATEST', 'function_id', f.id, 'name', f.name,"               \
    " 'namespace', f.namespace, 'code_revision', f.active_version, 'runtime', " LATEST_RUNTIME "," \
    " 'runtime_version', to_jsonb(f)->'runtime_version', 'handler', " LATEST_HANDLER ","        \
    " 'memory_mb', f.memory_mb, 'timeout_s', f.timeout_s, 'env', f.env, 'network', f.network,"   \
    " 'description', " FN_DESCRIPTION ", 'artifact', CASE WHEN v.version IS NOT NULL THEN"      \
    " json_build_object('sha256', v.artifact_sha256, 'size_bytes', v.artifact_size) END,"       \
    " 'created_at', " ISO("f.updated_at") ")"
#define LATEST_FROM                                                                            \
    " FROM functions f LEFT JOIN function_versions v ON v.function_id = f.id"                   \
    " AND v.version = f.active_version"

#define ALIAS_DOC                                                                              \
    "json_build_object('name', a.name, 'function_id', a.function_id,"                            \
    " 'version', coalesce(a.version::text, '$LATEST'), 'description', a.description,"          \
    " 'routing', CASE WHEN a.routing_version IS NULL THEN '{}'::json ELSE"                      \
    " json_build_object(a.routing_version::text, a.routing_weight) END,"                        \
    " 'created_at', " ISO("a.created_at") ", 'updated_at', " ISO("a.updated_at") ")"

/* Appends NAME=value to s's packed env. */
static int env_put(ver_snapshot *s, const char *name, const char *value)
{
    size_t kn = strlen(name), vn = strlen(value);

    if (s->env_len + kn + vn + 2 > sizeof(s->env))
        return ML_ERR;
    memcpy(s->env + s->env_len, name, kn);
    s->env[s->env_len + kn] = '=';
    memcpy(s->env + s->env_len + kn + 1, value, vn + 1);
    s->env_len += kn + vn + 2;
    s->env_count++;
    return ML_OK;
}

/* The version's env (sealed as stored) opened into s's packed block, as the registry does
 * for $LATEST (registry_rules.c): the sandbox gets the plaintext. */
static int env_open(const char *text, ver_snapshot *s)
{
    cJSON *env = cJSON_Parse(text);
    const cJSON *e;
    char err[256];
    int rc = cJSON_IsObject(env) ? ML_OK : ML_ERR;

    s->env_count = s->env_len = 0;
    cJSON_ArrayForEach(e, env)
    {
        char *pt = NULL;

        if (rc != ML_OK || !cJSON_IsString(e)) {
            rc = ML_ERR;
            break;
        }
        if (secretbox_is_sealed(e->valuestring) &&
            secretbox_open(secretbox_global(), e->string, e->valuestring, &pt, err, sizeof(err)) != ML_OK) {
            ml_log_warn("versions: env %s of version %lld: %s", e->string, (long long)s->version, err);
            rc = ML_ERR;
            break;
        }
        rc = env_put(s, e->string, pt ? pt : e->valuestring);
        if (pt) {
            explicit_bzero(pt, strlen(pt));
            free(pt);
        }
    }
    cJSON_Delete(env);
    return rc;
}

int ver_store_snapshot(pg_conn *db, const char *fn_id, int64_t n, ver_snapshot *out)
{
    char num[24];
    PGresult *res;
    int64_t rev = 0, size = 0, mem = 0, tmo = 0;
    int rc = ML_ERR;

    if (ml_snprintf(num, sizeof(num), "%lld", (long long)n) != ML_OK)
        return ML_ERR;
    res = pg_query(db, "ver_snapshot",
                   "SELECT p.code_revision, p.runtime, p.handler, v.artifact_prefix, v.artifact_sha256,"
                   " v.artifact_size, p.memory_mb, p.timeout_s, p.network, p.env::text"
                   " FROM published_versions p JOIN function_versions v ON v.function_id = p.function_id"
                   " AND v.version = p.code_revision WHERE p.function_id = $1::uuid AND p.version = $2::int",
                   2, (const char *[]){ fn_id, num });
    if (!res) {
        ml_log_warn("versions: reading version %s: %s", num, pg_error(db));
        return ML_ERR;
    }
    if (PQntuples(res) == 0) {
        rc = REGISTRY_NOT_FOUND;
        goto out;
    }
    out->version = n;
    if (pg_get_int64(res, 0, 0, &rev) || pg_get_text_copy(res, 0, 1, out->runtime, sizeof(out->runtime)) ||
        pg_get_text_copy(res, 0, 2, out->handler, sizeof(out->handler)) ||
        pg_get_text_copy(res, 0, 3, out->artifact_prefix, sizeof(out->artifact_prefix)) ||
        pg_get_text_copy(res, 0, 4, out->artifact_sha256, sizeof(out->artifact_sha256)) ||
        pg_get_int64(res, 0, 5, &size) || pg_get_int64(res, 0, 6, &mem) || pg_get_int64(res, 0, 7, &tmo) ||
        env_open(pg_get_text(res, 0, 9), out) != ML_OK)
        goto out;
    out->code_revision = (int)rev;
    out->artifact_size = size;
    out->memory_mb = (int)mem;
    out->timeout_s = (int)tmo;
    out->network = strcmp(pg_get_text(res, 0, 8), "t") == 0;
    rc = ML_OK;
out:
    PQclear(res);
    return rc;
}

int ver_store_alias(pg_conn *db, const char *fn_id, const char *name, ver_alias *out)
{
    PGresult *res = pg_query(db, "ver_alias",
                             "SELECT coalesce(version, 0), coalesce(routing_version, 0), coalesce(routing_weight, 0)"
                             " FROM function_aliases WHERE function_id = $1::uuid AND name = $2",
                             2, (const char *[]){ fn_id, name });
    int rc = ML_ERR;

    if (!res) {
        ml_log_warn("versions: reading alias %s: %s", name, pg_error(db));
        return ML_ERR;
    }
    if (PQntuples(res) == 0)
        rc = REGISTRY_NOT_FOUND;
    else if (pg_get_int64(res, 0, 0, &out->version) == ML_OK &&
             pg_get_int64(res, 0, 1, &out->routing.extra) == ML_OK) {
        out->routing.weight = strtod(pg_get_text(res, 0, 2), NULL);
        rc = ML_OK;
    }
    PQclear(res);
    return rc;
}

PGresult *ver_store_doc(pg_conn *db, const char *fn_id, int64_t n)
{
    char num[24];

    if (n == 0)
        return pg_query(db, "ver_doc_latest", "SELECT " LATEST_DOC "::text" LATEST_FROM " WHERE f.id = $1::uuid",
                        1, (const char *[]){ fn_id });
    if (ml_snprintf(num, sizeof(num), "%lld", (long long)n) != ML_OK)
        return NULL;
    return pg_query(db, "ver_doc", "SELECT " PUBLISHED_DOC "::text" PUBLISHED_FROM
                    " WHERE p.function_id = $1::uuid AND p.version = $2::int", 2, (const char *[]){ fn_id, num });
}

/* $LATEST is ordinal 0, a version its number; one extra row tells there is a next page. */
PGresult *ver_store_list(pg_conn *db, const char *fn_id, const char *after, const char *limit)
{
    return pg_query(db, "ver_list",
                    "WITH page AS (SELECT * FROM (SELECT 0 AS o, " LATEST_DOC " AS j" LATEST_FROM
                    "  WHERE f.id = $1::uuid UNION ALL SELECT p.version, " PUBLISHED_DOC PUBLISHED_FROM
                    "  WHERE p.function_id = $1::uuid) u WHERE u.o > $2::int ORDER BY u.o LIMIT $3::int + 1),"
                    " numbered AS (SELECT *, row_number() OVER (ORDER BY o) AS rn FROM page)"
                    " SELECT json_build_object('versions', coalesce((SELECT json_agg(j ORDER BY rn) FROM numbered"
                    " WHERE rn <= $3::int), '[]'), 'next_cursor', (SELECT o::text FROM numbered WHERE rn = $3::int"
                    " AND (SELECT count(*) FROM numbered) > $3::int))::text",
                    3, (const char *[]){ fn_id, after, limit });
}

/* Under the function's row lock: is it publishable, and what the request checks against.
 * ML_OK, or a PUB_* refusal. */
static int publish_check(pg_conn *db, const char *fn_id, const char *sha)
{
    PGresult *res = pg_query(db, "ver_pub_check",
                             "SELECT f.state, (SELECT b.status FROM function_builds b WHERE b.function_id = f.id"
                             " ORDER BY b.queued_at DESC LIMIT 1), v.artifact_sha256" LATEST_FROM
                             " WHERE f.id = $1::uuid FOR NO KEY UPDATE OF f",
                             1, (const char *[]){ fn_id });
    int rc = ML_ERR;

    if (!res)
        return ML_ERR;
    if (PQntuples(res) == 0) {
        rc = PUB_NOT_FOUND;
    } else {
        const char *state = pg_get_text(res, 0, 0), *build = pg_get_text(res, 0, 1);
        const char *cur = pg_get_text(res, 0, 2);
        bool building = build && (strcmp(build, "queued") == 0 || strcmp(build, "building") == 0);
        rc = strcmp(state, "active") != 0 || building || !cur ? PUB_NOT_ACTIVE
             : sha && strcmp(sha, cur) != 0                  ? PUB_SHA_MISMATCH
                                                             : ML_OK;
    }
    PQclear(res);
    return rc;
}

/* The newest published version when it equals $LATEST (code revision and configuration), or
 * 0. ML_ERR on a failed statement. */
static int64_t publish_same(pg_conn *db, const char *fn_id)
{
    PGresult *res = pg_query(db, "ver_pub_same",
                             "SELECT p.version" LATEST_FROM " JOIN LATERAL (SELECT * FROM published_versions"
                             " WHERE function_id = f.id ORDER BY version DESC LIMIT 1) p ON true"
                             " WHERE f.id = $1::uuid AND p.code_revision = f.active_version"
                             " AND p.runtime = " LATEST_RUNTIME " AND p.handler = " LATEST_HANDLER
                             " AND p.memory_mb = f.memory_mb AND p.timeout_s = f.timeout_s"
                             " AND p.env = f.env AND p.network = f.network",
                             1, (const char *[]){ fn_id });
    int64_t n = 0;

    if (!res)
        return ML_ERR;
    if (PQntuples(res) > 0 && pg_get_int64(res, 0, 0, &n) != ML_OK)
        n = ML_ERR;
    PQclear(res);
    return n;
}

/* A new version: the next number of the function's counter, $LATEST copied. */
static int64_t publish_insert(pg_conn *db, const char *fn_id, const char *description)
{
    PGresult *res = pg_query(db, "ver_pub_insert",
                             "WITH c AS (INSERT INTO published_version_counters (function_id, last_version)"
                             " VALUES ($1::uuid, 1) ON CONFLICT (function_id) DO UPDATE SET last_version ="
                             " published_version_counters.last_version + 1 RETURNING last_version)"
                             " INSERT INTO published_versions (function_id, version, code_revision, runtime,"
                             " handler, memory_mb, timeout_s, env, network, description)"
                             " SELECT f.id, c.last_version, f.active_version, " LATEST_RUNTIME ", "
                             LATEST_HANDLER ", f.memory_mb, f.timeout_s, f.env, f.network,"
                             " left(coalesce($2, " FN_DESCRIPTION "), 256)" LATEST_FROM ", c"
                             " WHERE f.id = $1::uuid RETURNING version",
                             2, (const char *[]){ fn_id, description });
    int64_t n = ML_ERR;

    if (res && (PQntuples(res) != 1 || pg_get_int64(res, 0, 0, &n) != ML_OK))
        n = ML_ERR;
    PQclear(res);
    return n;
}

int ver_store_publish(pg_conn *db, const char *fn_id, const char *description, const char *sha,
                      int64_t *version, bool *created)
{
    int rc;

    *created = false;
    if (pg_begin(db) != ML_OK)
        return ML_ERR;
    rc = publish_check(db, fn_id, sha);
    if (rc == ML_OK && (*version = publish_same(db, fn_id)) == 0) {
        *version = publish_insert(db, fn_id, description);
        *created = true;
    }
    if (rc == ML_OK && *version < 0)
        rc = ML_ERR;
    if (rc != ML_OK) {
        pg_rollback(db);
        return rc;
    }
    return pg_commit(db);
}

PGresult *ver_store_delete(pg_conn *db, const char *fn_id, const char *num)
{
    return pg_query(db, "ver_delete", "DELETE FROM published_versions WHERE function_id = $1::uuid"
                    " AND version = $2::int RETURNING version", 2, (const char *[]){ fn_id, num });
}

PGresult *ver_store_alias_doc(pg_conn *db, const char *fn_id, const char *name)
{
    return pg_query(db, "ver_alias_doc", "SELECT " ALIAS_DOC "::text FROM function_aliases a"
                    " WHERE a.function_id = $1::uuid AND a.name = $2", 2, (const char *[]){ fn_id, name });
}

PGresult *ver_store_alias_list(pg_conn *db, const char *fn_id, const char *after, const char *limit)
{
    return pg_query(db, "ver_alias_list",
                    "WITH page AS (SELECT a.name, " ALIAS_DOC " AS j FROM function_aliases a"
                    "  WHERE a.function_id = $1::uuid AND ($2::text IS NULL OR a.name > $2)"
                    "  ORDER BY a.name LIMIT $3::int + 1),"
                    " numbered AS (SELECT *, row_number() OVER (ORDER BY name) AS rn FROM page)"
                    " SELECT json_build_object('aliases', coalesce((SELECT json_agg(j ORDER BY rn) FROM numbered"
                    " WHERE rn <= $3::int), '[]'), 'next_cursor', (SELECT name FROM numbered WHERE rn = $3::int"
                    " AND (SELECT count(*) FROM numbered) > $3::int))::text",
                    3, (const char *[]){ fn_id, after, limit });
}

PGresult *ver_store_alias_delete(pg_conn *db, const char *fn_id, const char *name)
{
    return pg_query(db, "ver_alias_delete", "DELETE FROM function_aliases WHERE function_id = $1::uuid"
                    " AND name = $2 RETURNING name", 2, (const char *[]){ fn_id, name });
}

/* Parameters: $1 function, $2 name, $3 version given, $4 version (NULL: $LATEST),
 * $5 description given, $6 description, $7 routing given, $8 extra, $9 weight. */
PGresult *ver_store_alias_update(pg_conn *db, const char *const p[9])
{
    return pg_query(db, "ver_alias_update",
                    "UPDATE function_aliases a SET"
                    " version = CASE WHEN $3::boolean THEN $4::int ELSE a.version END,"
                    " description = CASE WHEN $5::boolean THEN $6 ELSE a.description END,"
                    " routing_version = CASE WHEN $7::boolean THEN $8::int ELSE a.routing_version END,"
                    " routing_weight = CASE WHEN $7::boolean THEN $9::float8 ELSE a.routing_weight END"
                    " WHERE a.function_id = $1::uuid AND a.name = $2 RETURNING " ALIAS_DOC "::text",
                    9, p);
}

/* The same parameters; no row when the alias exists. */
PGresult *ver_store_alias_create(pg_conn *db, const char *const p[9])
{
    return pg_query(db, "ver_alias_create",
                    "INSERT INTO function_aliases AS a (function_id, name, version, description,"
                    " routing_version, routing_weight) SELECT $1::uuid, $2, $4::int, coalesce($6, ''),"
                    " $8::int, $9::float8 WHERE $3::boolean AND $5::boolean IS NOT NULL AND $7::boolean IS NOT NULL"
                    " ON CONFLICT (function_id, name) DO NOTHING RETURNING " ALIAS_DOC "::text",
                    9, p);
}
