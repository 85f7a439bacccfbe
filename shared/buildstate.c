/* buildstate.c — status events and webhook outbox rows for build transitions. */
#include "buildstate.h"

#include <stdlib.h>
#include <string.h>

/* One statement: the event row, the payload built by Postgres (so every target gets the same
 * bytes), and a delivery per target that has a URL. The payload carries the function's
 * definition and, once completed, the artifact: the lambda side needs both to register it. */
static const char record_sql[] =
    "WITH b AS ("
    "  SELECT b.id, b.function_id, b.runtime, b.handler, b.artifact_prefix, b.artifact_sha256,"
    "         b.artifact_size, b.artifact_files, f.name, f.webhook_url, f.config"
    "  FROM builds b JOIN build_functions f ON f.id = b.function_id WHERE b.id = $1),"
    " ev AS (INSERT INTO build_status_events (build_id, status, error)"
    "        SELECT id, $2, $3 FROM b RETURNING at),"
    " p AS (SELECT json_build_object("
    "   'type', 'build.status', 'build_id', b.id, 'function_id', b.function_id,"
    "   'status', $2::text, 'error', $3::text,"
    "   'timestamp', to_char((SELECT at FROM ev) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "   'function', json_build_object('name', b.name, 'runtime', b.runtime, 'handler', b.handler,"
    "                                 'config', b.config),"
    "   'artifact', CASE WHEN $2 = 'completed' THEN json_build_object("
    "       'prefix', b.artifact_prefix, 'sha256', b.artifact_sha256,"
    "       'size_bytes', b.artifact_size, 'files', b.artifact_files) END"
    "   )::text AS body FROM b)"
    " INSERT INTO webhook_deliveries (build_id, function_id, target, event_status, seq, url,"
    "                                 payload, next_attempt_at)"
    " SELECT b.id, b.function_id, t.target, $2,"
    "        CASE $2 WHEN 'queued' THEN 1 WHEN 'building' THEN 2 ELSE 3 END, t.url, p.body,"
    "        CASE WHEN $5::bool THEN 'infinity'::timestamptz ELSE now() END"
    " FROM b CROSS JOIN p CROSS JOIN LATERAL (VALUES ('user', b.webhook_url),"
    "   ('lambda', NULLIF($4, '') || '/webhooks/build-status/' || b.id)) AS t (target, url)"
    " WHERE t.url IS NOT NULL"
    " ON CONFLICT (build_id, target, event_status) DO NOTHING";

int buildstate_record(pg_conn *db, const char *build_id, const char *status, const char *error,
                      const char *executor_url, bool hold)
{
    const char *params[] = { build_id, status, error, executor_url ? executor_url : "",
                             hold ? "true" : "false" };

    return pg_exec(db, "buildstate_record", record_sql, 5, params, NULL);
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
