/* audit.h — the invocation audit log: one row per invocation in `invocations`.
 *
 * The invoke path calls audit_submit(), which encodes the record and appends it to a
 * write-ahead log on local disk (one write(2) of a length + CRC framed record) before it
 * returns — so before the invocation's response is sent. It never waits on Postgres. The
 * page cache survives a kill -9 of the process; MINILAMBDA_AUDIT_FSYNC adds fdatasync for
 * power loss. A writer thread reads the log in order and upserts batches into Postgres,
 * then advances a checkpoint; segments wholly behind it are deleted. While Postgres is down
 * the rows simply wait in the log; at start-up the log is replayed from the checkpoint.
 * See docs/audit.md.
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

#include "audit_wal.h"
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
    const char *executed_version;  /* "$LATEST" or a published version number; NULL: unknown */
    const char *alias;             /* the alias invoked through, or NULL */
} audit_record;

typedef struct audit audit;

typedef struct audit_config {
    /* from the environment (audit_cfg_vars) */
    const char *spill_path;      /* MINILAMBDA_AUDIT_SPILL_PATH: the log's files are this path
                                  * plus ".lock", ".ckpt" and ".<16 hex>.wal" (one per process) */
    const char *fsync;           /* MINILAMBDA_AUDIT_FSYNC: off | batch | always */
    int64_t spill_max_mb;        /* MINILAMBDA_AUDIT_SPILL_MAX_MB: log size beyond which
                                  * audit_available() says no */
    int64_t batch_rows;          /* MINILAMBDA_AUDIT_BATCH_ROWS: rows per INSERT */
    int64_t flush_ms;            /* MINILAMBDA_AUDIT_FLUSH_MS: longest a row waits to be batched */
    int64_t segment_bytes;       /* size at which a log segment is closed; 0: 64 MiB (tests) */
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

/* Opens (and locks) the write-ahead log, counts the rows an earlier run left behind,
 * registers metrics and an optional "audit" health check on s (degraded while rows wait for
 * Postgres or the log is over its size), and starts the writer thread, which replays the log
 * from its checkpoint as soon as Postgres answers. NULL with a reason in err (e.g. the log is
 * locked by another process). Stop and free with audit_stop. */
audit *audit_start(const audit_config *cfg, svc *s, char *err, size_t errlen);

/* Gives the writer up to a few seconds to write what is logged to Postgres, stops it and
 * frees a; whatever is left stays in the log for the next start. Call after the HTTP server
 * has drained (so no more submits). NULL is fine. */
void audit_stop(audit *a);

/* Appends one record (encoded, framed) to the write-ahead log; when it returns ML_OK the
 * record survives a kill -9 of the process (and power loss, with MINILAMBDA_AUDIT_FSYNC
 * always). Never waits on Postgres. ML_ERR for an invalid record (reason logged) or when the
 * disk refused the write (counted as kind="overflow", logged). Thread-safe. */
int audit_submit(audit *a, const audit_record *rec);

/* false while the log is over MINILAMBDA_AUDIT_SPILL_MAX_MB or the disk refused its last
 * append (for a second): an invocation started now might not be audited, so callers that can
 * still refuse (before running anything) should answer 503. Thread-safe, cheap. */
bool audit_available(audit *a);

/* Blocks until every record submitted before the call is in Postgres, or timeout_ms passes.
 * ML_OK when flushed, ML_ERR on timeout. Used by the GET handlers for read-your-writes. */
int audit_flush(audit *a, int64_t timeout_ms);

/* Records in the log not yet in Postgres. Thread-safe. */
int64_t audit_backlog(audit *a);

/* Writes the routes GET /invocations/{id} and GET /functions/{fn}/invocations (blocking) to
 * out; returns how many (at most max; 2 are needed). */
size_t audit_routes(audit *a, httpd_route *out, size_t max);

/* --- The formats, exposed for tests and the fuzz target. ------------------------------ */

/* Validates rec and appends it to out as one JSON object without a newline: the element the
 * batch INSERT reads and the payload of a log record (bytes as base64). ML_ERR with a reason
 * in err when the record is invalid (out unchanged). */
int audit_encode(const audit_record *rec, ml_buf *out, char *err, size_t errlen);

/* The write-ahead log's record format: audit_wal.h. */

#endif
