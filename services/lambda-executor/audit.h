/* audit.h — the invocation audit log: one row per invocation in `invocations`.
 *
 * The invoke path calls audit_submit(), which only encodes the record and appends it to a
 * bounded in-memory queue: it never waits on Postgres. A writer thread upserts queued records
 * in batches (one INSERT ... SELECT FROM json_to_recordset ... ON CONFLICT (id) DO UPDATE per
 * batch). While Postgres is down the records stay in memory; past a threshold the oldest ones
 * go to an append-only spill file (JSON lines, fsync'd per batch), which is replayed before
 * anything newer once Postgres is back — and at start-up, if a crash left one behind.
 * audit_stop() writes everything out (to Postgres, or to the spill file if it is down).
 *
 * Records of one invocation may be submitted several times as it moves on (async: queued →
 * running → queued (retry) → running → final); a stored row is replaced only by a record that
 * is not older, ordering by (attempts, phase) with phase running < queued < final. Replays
 * are therefore idempotent. See docs/executor-registry.md. */
#ifndef LE_AUDIT_H
#define LE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "fnspec-t.h"
#include "httpd.h"
#include "ml.h"
#include "pg.h"
#include "service.h"

typedef enum {
    AUDIT_QUEUED = 0,     /* async: accepted, waiting (also between retries) */
    AUDIT_RUNNING,        /* an executor holds it */
    AUDIT_SUCCEEDED,      /* final states from here on */
    AUDIT_FAILED,
    AUDIT_TIMED_OUT,
    AUDIT_DEAD_LETTERED,
} audit_status;

typedef enum {
    AUDIT_HTTP_SYNC = 0,
    AUDIT_HTTP_ASYNC,
    AUDIT_CRON,
    AUDIT_DLQ_REPLAY,
} audit_trigger;

#define AUDIT_LOG_TAIL_MAX 4096
#define AUDIT_BODY_MAX FNSPEC_MAX_INVOKE_BODY

/* One invocation's state. Pointers are borrowed: audit_submit copies what it needs.
 * Unknown numbers are -1, unknown times 0; NULL pointers are SQL NULL. */
typedef struct audit_record {
    char id[ML_UUID_LEN];          /* the invocation id (required) */
    char function_id[ML_UUID_LEN]; /* required */
    int version;                   /* 0: not resolved yet (async while queued) */
    audit_trigger trigger;
    audit_status status;
    int attempts;                  /* attempts started so far (sync: 1) */
    int cold_start;                /* -1 unknown, 0 warm, 1 cold */
    const char *request_id;        /* <= 128 chars, or NULL */
    int64_t payload_size;          /* request body bytes */
    int64_t response_size;         /* -1 unknown; bytes of the result returned */
    char payload_sha256[65];       /* hex sha256 of the event; "" when not computed */
    const void *payload;           /* the event, kept for async/cron/replay; NULL: not stored */
    size_t payload_len;
    const void *result;            /* the handler's return value; NULL: not stored */
    size_t result_len;
    const char *error_type;        /* "Unhandled", "TimeoutError", ...; NULL on success */
    const char *error_message;
    const void *log_tail;          /* last bytes of output; only the last 4 KiB are kept */
    size_t log_tail_len;
    int64_t duration_ms;           /* -1 unknown */
    int64_t memory_used_mb;        /* measured peak; -1 unknown */
    int64_t created_ms;            /* wall-clock ms; 0: now */
    int64_t started_ms;            /* 0: unknown (status running: now) */
    int64_t finished_ms;           /* 0: unknown (final status: now) */
    const char *replay_of;         /* UUID of the dead-lettered invocation replayed, or NULL */
    const char *schedule_id;       /* UUID of the schedule that fired it, or NULL */
} audit_record;

typedef struct audit audit;

typedef struct audit_config {
    /* from the environment (audit_cfg_vars) */
    const char *spill_path;      /* MINILAMBDA_AUDIT_SPILL_PATH: one file per executor process */
    int64_t queue_max_rows;      /* MINILAMBDA_AUDIT_QUEUE_MAX_ROWS: hard bound in memory */
    int64_t queue_max_mb;        /* MINILAMBDA_AUDIT_QUEUE_MAX_MB: hard bound in memory */
    int64_t hold_rows;           /* MINILAMBDA_AUDIT_HOLD_ROWS: kept in memory while Postgres
                                  * is down before the oldest go to the spill file */
    int64_t spill_max_mb;        /* MINILAMBDA_AUDIT_SPILL_MAX_MB */
    int64_t batch_rows;          /* MINILAMBDA_AUDIT_BATCH_ROWS: rows per INSERT */
    int64_t flush_ms;            /* MINILAMBDA_AUDIT_FLUSH_MS: longest a row waits to be batched */
    /* set by main */
    const char *db_url;          /* lambda_service_db: the writer thread's own connection */
    int64_t statement_timeout_ms;/* for the writer's connection (0: server default) */
    /* The GET handlers' lambda_service_db connection: thread_db lends the calling thread one
     * (NULL: none to be had, answered 503) for one query, thread_db_release (optional)
     * gives it back; the audit log never keeps it across requests. */
    pg_conn *(*thread_db)(void *ud);
    void (*thread_db_release)(void *ud);
    void *thread_db_ud;
} audit_config;

/* Appends the audit log's configuration variables (destinations in c) to vars; returns how
 * many (at most max). Call before svc_init. */
size_t audit_cfg_vars(audit_config *c, cfg_var *vars, size_t max);

/* Opens (and locks) the spill file, registers metrics and an optional "audit" health check
 * on s (degraded while rows wait for Postgres), and starts the writer thread, which replays
 * a spill file left behind as soon as Postgres answers. NULL with a reason in err (e.g. the
 * spill file is locked by another process). Stop and free with audit_stop. */
audit *audit_start(const audit_config *cfg, svc *s, char *err, size_t errlen);

/* Writes every queued row (to Postgres, or to the spill file if Postgres does not answer
 * within a few seconds), stops the writer and frees a. Call after the HTTP server has
 * drained (so no more submits). NULL is fine. */
void audit_stop(audit *a);

/* Queues one record (copied). Never waits on Postgres; waits at most ~1 s for room only when
 * both the memory bound and the spill file are exhausted by a writer that cannot keep up,
 * then drops the record (counted, logged). ML_OK, or ML_ERR for an invalid record (reason
 * logged) or a dropped one. Thread-safe. */
int audit_submit(audit *a, const audit_record *rec);

/* Blocks until every record submitted before the call is in Postgres, or timeout_ms passes.
 * ML_OK when flushed, ML_ERR on timeout. Used by the GET handlers for read-your-writes. */
int audit_flush(audit *a, int64_t timeout_ms);

/* Records waiting (memory + spill file). Thread-safe. */
int64_t audit_backlog(audit *a);

/* Writes the routes GET /invocations/{id} and GET /functions/{fn}/invocations (blocking) to
 * out; returns how many (at most max; 2 are needed). */
size_t audit_routes(audit *a, httpd_route *out, size_t max);

/* --- The wire/spill format, exposed for tests. ---------------------------------------- */

/* Validates rec and appends it to out as one JSON object without a newline: the element the
 * batch INSERT reads and the line of the spill file (bytes as base64). ML_ERR with a reason
 * in err when the record is invalid (out unchanged). */
int audit_encode(const audit_record *rec, ml_buf *out, char *err, size_t errlen);

/* Reads a spill file, calling fn for each complete line (without its newline). A torn last
 * line (a crash mid-append) is ignored and reported through *torn_bytes (may be NULL).
 * A missing file is empty. fn returning ML_ERR stops the read with ML_ERR. */
typedef int (*audit_line_fn)(const char *line, size_t len, void *ud);
int audit_spill_read(const char *path, audit_line_fn fn, void *ud, size_t *torn_bytes,
                     char *err, size_t errlen);

#endif
