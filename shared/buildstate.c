/* buildstate.c — status events and webhook outbox rows for build transitions. The body is
 * fnspec_build_event_encode's. The user's copy shows env names only ("***" values); the
 * lambda-executor's copy has the same config plus function.sealed: the env values and the
 * function's whsec_ secret as stored, sealed (docs/secrets.md). Neither carries a value in
 * clear, and this side needs no key to write them (the build-workers have none). */
#include "buildstate.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "fnspec.h"
#include "log.h"
#include "secretbox.h"

/* The event row, and what the payload needs: the function's definition (with its namespace,
 * column 12: the executor creates the function there, docs/tenants.md) and, once
 * completed, the artifact (the lambda side needs both to register it). No row when there
 * is no such build. */
static const char event_sql[] =
    "WITH b AS ("
    "  SELECT b.id, b.function_id, b.runtime, b.handler, b.artifact_prefix, b.artifact_sha256,"
    "         b.artifact_size, b.artifact_files, f.name, f.config, f.webhook_secret_sealed,"
    "         f.namespace"
    "  FROM builds b JOIN build_functions f ON f.id = b.function_id WHERE b.id = $1),"
    " ev AS (INSERT INTO build_status_events (build_id, status, error)"
    "        SELECT id, $2, $3 FROM b RETURNING at)"
    " SELECT b.id, b.function_id, b.name, b.runtime, b.handler, b.config::text,"
    "        to_char(ev.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "        b.artifact_prefix, b.artifact_sha256, b.artifact_size, b.artifact_files,"
    "        b.webhook_secret_sealed, b.namespace"
    " FROM b CROSS JOIN ev";

/* A delivery per target that has a URL: the user's body $5, the executor's $6. $3 the
 * executor's base URL ('' = none), $4 hold. */
static const char deliveries_sql[] =
    "INSERT INTO webhook_deliveries (build_id, function_id, target, event_status, seq, url,"
    "                                payload, next_attempt_at)"
    " SELECT b.id, b.function_id, t.target, $2,"
    "        CASE $2 WHEN 'queued' THEN 1 WHEN 'building' THEN 2 ELSE 3 END, t.url,"
    "        CASE t.target WHEN 'user' THEN $5 ELSE $6 END,"
    "        CASE WHEN $4::bool THEN 'infinity'::timestamptz ELSE now() END"
    " FROM builds b JOIN build_functions f ON f.id = b.function_id"
    " CROSS JOIN LATERAL (VALUES ('user', f.webhook_url),"
    "   ('lambda', NULLIF($3, '') || '/webhooks/build-status/' || b.id)) AS t (target, url)"
    " WHERE b.id = $1 AND t.url IS NOT NULL"
    " ON CONFLICT (build_id, target, event_status) WHERE redelivery_of IS NULL DO NOTHING";

static char *dup_or_null(const char *s)
{
    size_t n;
    char *d;

    if (!s)
        return NULL;
    n = strlen(s) + 1;
    if ((d = malloc(n)))
        memcpy(d, s, n);
    return d;
}

/* ev's config with env values shown as "***"; the values and the function's sealed
 * webhook secret (res column 11, may be NULL) into ev->sealed. */
static int split_sealed(fnspec_build_event *ev, const PGresult *res)
{
    cJSON *env = cJSON_DetachItemFromObjectCaseSensitive(ev->config, "env"), *shown;
    const char *ws = PQgetisnull(res, 0, 11) ? NULL : pg_get_text(res, 0, 11);

    if (!(ev->sealed = cJSON_CreateObject()))
        goto fail;
    if (env) {
        if (!(shown = cJSON_Duplicate(env, 1)) || !cJSON_AddItemToObject(ev->config, "env", shown)) {
            cJSON_Delete(shown);
            goto fail;
        }
        secretbox_env_render(NULL, shown, false, NULL, 0); /* no key needed to redact */
        cJSON_AddItemToObject(ev->sealed, "env", env);
        env = NULL;
    }
    if (ws && secretbox_is_sealed(ws) && !cJSON_AddStringToObject(ev->sealed, "webhook_secret", ws))
        goto fail;
    return ML_OK;
fail:
    cJSON_Delete(env);
    return ML_ERR;
}

/* The event row res (of event_sql) as build.status bodies for the user (*user) and the
 * lambda-executor (*lambda): ML_OK with both (free()). */
static int event_bodies(const PGresult *res, const char *status, const char *error, char **user,
                        char **lambda)
{
    fnspec_build_event ev = { 0 };
    cJSON *sealed;
    int rc = ML_ERR;

    *user = *lambda = NULL;
    if (pg_get_text_copy(res, 0, 0, ev.build_id, sizeof(ev.build_id)) != ML_OK ||
        pg_get_text_copy(res, 0, 1, ev.function_id, sizeof(ev.function_id)) != ML_OK ||
        pg_get_text_copy(res, 0, 2, ev.name, sizeof(ev.name)) != ML_OK ||
        pg_get_text_copy(res, 0, 12, ev.ns, sizeof(ev.ns)) != ML_OK ||
        pg_get_text_copy(res, 0, 3, ev.runtime, sizeof(ev.runtime)) != ML_OK ||
        pg_get_text_copy(res, 0, 4, ev.handler, sizeof(ev.handler)) != ML_OK ||
        pg_get_text_copy(res, 0, 6, ev.timestamp, sizeof(ev.timestamp)) != ML_OK ||
        ml_strlcpy(ev.status, status, sizeof(ev.status)) != ML_OK)
        goto out;
    if (!(ev.config = cJSON_Parse(pg_get_text(res, 0, 5))) || (error && !(ev.error = dup_or_null(error))))
        goto out;
    if (strcmp(status, "completed") == 0) {
        ev.has_artifact = true;
        if (!(ev.artifact_prefix = dup_or_null(pg_get_text(res, 0, 7))) ||
            pg_get_text_copy(res, 0, 8, ev.artifact_sha256, sizeof(ev.artifact_sha256)) != ML_OK ||
            pg_get_int64(res, 0, 9, &ev.artifact_size) != ML_OK ||
            pg_get_int64(res, 0, 10, &ev.artifact_files) != ML_OK)
            goto out;
    }
    if (split_sealed(&ev, res) != ML_OK || fnspec_build_event_encode(&ev, lambda) != ML_OK)
        goto out;
    sealed = ev.sealed; /* the user's copy: no sealed member */
    ev.sealed = NULL;
    rc = fnspec_build_event_encode(&ev, user);
    ev.sealed = sealed;
out:
    fnspec_build_event_free(&ev);
    if (rc != ML_OK) {
        free(*lambda);
        *lambda = NULL;
    }
    return rc;
}

int buildstate_record(pg_conn *db, const char *build_id, const char *status, const char *error,
                      const char *executor_url, bool hold)
{
    const char *params[] = { build_id, status, error };
    const char *dparams[] = { build_id, status, executor_url ? executor_url : "", hold ? "true" : "false", NULL, NULL };
    PGresult *res = pg_query(db, "buildstate_event", event_sql, 3, params);
    char *user = NULL, *lambda = NULL;
    int rc;

    if (!res)
        return ML_ERR;
    if (PQntuples(res) == 0) { /* no such build: nothing to tell */
        PQclear(res);
        return ML_OK;
    }
    rc = event_bodies(res, status, error, &user, &lambda);
    PQclear(res);
    if (rc != ML_OK) {
        ml_log_error("buildstate: cannot encode the %s event of build %s", status, build_id);
        return ML_ERR;
    }
    dparams[4] = user;
    dparams[5] = lambda;
    rc = pg_exec(db, "buildstate_deliveries", deliveries_sql, 6, dparams, NULL);
    free(user);
    free(lambda);
    return rc;
}

int buildstate_release(pg_conn *db, const char *build_id)
{
    const char *params[] = { build_id };

    if (pg_exec(db, "buildstate_published",
                "UPDATE builds SET published_at = now() WHERE id = $1 AND published_at IS NULL",
                1, params, NULL) != ML_OK)
        return ML_ERR;
    return pg_exec(db, "buildstate_release",
                   "UPDATE webhook_deliveries SET next_attempt_at = now()"
                   " WHERE build_id = $1 AND next_attempt_at = 'infinity'",
                   1, params, NULL);
}

/* Functions with an env value or a sealed secret not under the current key ($1: the
 * LIKE pattern of the current key's sealed form). */
static const char stale_sql[] =
    "SELECT id, coalesce(config->'env', '{}')::text, webhook_secret FROM build_functions"
    " WHERE webhook_secret_sealed IS NULL OR webhook_secret_sealed NOT LIKE $1"
    "  OR EXISTS (SELECT 1 FROM jsonb_each_text(CASE WHEN jsonb_typeof(config->'env') = 'object'"
    "   THEN config->'env' ELSE '{}'::jsonb END) e WHERE e.value NOT LIKE $1)";

#define PAYLOAD_ENV "(payload::jsonb #> '{function,config,env}')"
/* Payloads nobody will send again (and the user's copies) keep names only. */
static const char redact_sql[] =
    "UPDATE webhook_deliveries SET payload = jsonb_set(payload::jsonb, '{function,config,env}',"
    "  (SELECT coalesce(jsonb_object_agg(k, '***'), '{}'::jsonb) FROM jsonb_object_keys(" PAYLOAD_ENV ") k))::text"
    " WHERE (status <> 'pending' OR target = 'user') AND payload LIKE '%\"env\":{\"%'"
    "  AND jsonb_typeof(" PAYLOAD_ENV ") = 'object'"
    "  AND EXISTS (SELECT 1 FROM jsonb_each_text(" PAYLOAD_ENV ") e WHERE e.value <> '***')";

/* Seals one function's env (env_text) and whsec_ secret and stores both. */
static int seal_row(pg_conn *db, const secretbox *sb, const char *id, const char *env_text,
                    const char *whsec, char *err, size_t errlen)
{
    cJSON *env = cJSON_Parse(env_text);
    char *env_out = NULL, *ws = NULL;
    const char *params[3];
    int rc = ML_ERR;

    if (!env || secretbox_env_seal(sb, env, NULL, err, errlen) != ML_OK)
        goto out;
    if (!(env_out = cJSON_PrintUnformatted(env)) ||
        secretbox_seal(sb, "webhook_secret", whsec, strlen(whsec), &ws) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot seal function %s", id);
        goto out;
    }
    params[0] = id;
    params[1] = env_out;
    params[2] = ws;
    rc = pg_exec(db, "buildstate_seal",
                 "UPDATE build_functions SET config = jsonb_set(config, '{env}', $2::jsonb),"
                 " webhook_secret_sealed = $3 WHERE id = $1", 3, params, NULL);
    if (rc != ML_OK)
        ml_snprintf_trunc(err, errlen, "sealing function %s: %s", id, pg_error(db));
out:
    cJSON_Delete(env);
    cJSON_free(env_out);
    free(ws);
    return rc;
}

int buildstate_seal_at_rest(pg_conn *db, const secretbox *sb, int64_t *sealed, int64_t *redacted,
                            char *err, size_t errlen)
{
    char like[SECRETBOX_KID_LEN + 16];
    const char *params[] = { like };
    PGresult *res;
    int rc = ML_OK;

    *sealed = *redacted = 0;
    if (ml_snprintf(like, sizeof(like), "%s%s:%%", SECRETBOX_PREFIX, sb->cur.kid) != ML_OK ||
        !(res = pg_query(db, "buildstate_stale", stale_sql, 1, params))) {
        ml_snprintf_trunc(err, errlen, "reading functions to seal: %s", pg_error(db));
        return ML_ERR;
    }
    /* a row that cannot be sealed (a key id neither key knows) is left for the operator
     * (reported); the others are sealed all the same */
    for (int i = 0; i < PQntuples(res); i++) {
        if (seal_row(db, sb, pg_get_text(res, i, 0), pg_get_text(res, i, 1), pg_get_text(res, i, 2),
                     err, errlen) == ML_OK)
            (*sealed)++;
        else
            rc = ML_ERR;
    }
    PQclear(res);
    if (pg_exec(db, "buildstate_redact", redact_sql, 0, NULL, redacted) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "redacting webhook payloads: %s", pg_error(db));
        rc = ML_ERR;
    }
    return rc; /* err: the last failure */
}
