/* buildstate.c — status events and webhook outbox rows for build transitions. The body is
 * fnspec_build_event_encode's, stored once per target so every target gets the same bytes. */
#include "buildstate.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "fnspec.h"
#include "log.h"

/* The event row, and what the payload needs: the function's definition and, once
 * completed, the artifact (the lambda side needs both to register it). No row when there
 * is no such build. */
static const char event_sql[] =
    "WITH b AS ("
    "  SELECT b.id, b.function_id, b.runtime, b.handler, b.artifact_prefix, b.artifact_sha256,"
    "         b.artifact_size, b.artifact_files, f.name, f.config"
    "  FROM builds b JOIN build_functions f ON f.id = b.function_id WHERE b.id = $1),"
    " ev AS (INSERT INTO build_status_events (build_id, status, error)"
    "        SELECT id, $2, $3 FROM b RETURNING at)"
    " SELECT b.id, b.function_id, b.name, b.runtime, b.handler, b.config::text,"
    "        to_char(ev.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "        b.artifact_prefix, b.artifact_sha256, b.artifact_size, b.artifact_files"
    " FROM b CROSS JOIN ev";

/* A delivery per target that has a URL, all carrying the same bytes ($5). $3 the
 * executor's base URL ('' = none), $4 hold. */
static const char deliveries_sql[] =
    "INSERT INTO webhook_deliveries (build_id, function_id, target, event_status, seq, url,"
    "                                payload, next_attempt_at)"
    " SELECT b.id, b.function_id, t.target, $2,"
    "        CASE $2 WHEN 'queued' THEN 1 WHEN 'building' THEN 2 ELSE 3 END, t.url, $5,"
    "        CASE WHEN $4::bool THEN 'infinity'::timestamptz ELSE now() END"
    " FROM builds b JOIN build_functions f ON f.id = b.function_id"
    " CROSS JOIN LATERAL (VALUES ('user', f.webhook_url),"
    "   ('lambda', NULLIF($3, '') || '/webhooks/build-status/' || b.id)) AS t (target, url)"
    " WHERE b.id = $1 AND t.url IS NOT NULL"
    " ON CONFLICT (build_id, target, event_status) DO NOTHING";

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

/* The event row res (of event_sql) as a build.status body: ML_OK with *body (free()). */
static int event_body(const PGresult *res, const char *status, const char *error, char **body)
{
    fnspec_build_event ev = { 0 };
    int rc = ML_ERR;

    *body = NULL;
    if (pg_get_text_copy(res, 0, 0, ev.build_id, sizeof(ev.build_id)) != ML_OK ||
        pg_get_text_copy(res, 0, 1, ev.function_id, sizeof(ev.function_id)) != ML_OK ||
        pg_get_text_copy(res, 0, 2, ev.name, sizeof(ev.name)) != ML_OK ||
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
    rc = fnspec_build_event_encode(&ev, body);
out:
    fnspec_build_event_free(&ev);
    return rc;
}

int buildstate_record(pg_conn *db, const char *build_id, const char *status, const char *error,
                      const char *executor_url, bool hold)
{
    const char *params[] = { build_id, status, error };
    const char *dparams[] = { build_id, status, executor_url ? executor_url : "", hold ? "true" : "false", NULL };
    PGresult *res = pg_query(db, "buildstate_event", event_sql, 3, params);
    char *body = NULL;
    int rc;

    if (!res)
        return ML_ERR;
    if (PQntuples(res) == 0) { /* no such build: nothing to tell */
        PQclear(res);
        return ML_OK;
    }
    rc = event_body(res, status, error, &body);
    PQclear(res);
    if (rc != ML_OK) {
        ml_log_error("buildstate: cannot encode the %s event of build %s", status, build_id);
        return ML_ERR;
    }
    dparams[4] = body;
    rc = pg_exec(db, "buildstate_deliveries", deliveries_sql, 5, dparams, NULL);
    free(body);
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
