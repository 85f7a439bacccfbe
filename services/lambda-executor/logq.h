/* logq.h — the bounded queue between function-log capture (fnlog.h) and the store writer
 * (docs/logs.md §1 "Store"): capture pushes complete lines and never blocks; one writer thread
 * per executor drains the queue into Postgres (COPY, day partitions) and, when configured, Loki.
 * Lines that do not fit (queue full, logging off) are dropped and counted. */
#ifndef EX_LOGQ_H
#define EX_LOGQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"

/* One line as capture hands it over: every pointer is borrowed for the call (copied). */
typedef struct logq_line {
    int64_t ts_us;              /* wall clock when read, microseconds since the epoch */
    int stream;                 /* fnlog_stream */
    const char *level;          /* "info", "error", ... (docs/logs.md) */
    const char *request_id;     /* the invocation id */
    const char *ns, *function, *function_id, *version;
    const char *message;        /* without its newline; any bytes (the writer makes it UTF-8) */
    size_t len;
} logq_line;

/* The writer's configuration (logq_cfg_vars fills it from the environment). */
typedef struct logq_config {
    bool enabled;               /* MINILAMBDA_FUNCTION_LOGS */
    int64_t queue_bytes;        /* MINILAMBDA_LOG_QUEUE_BYTES */
    const char *loki_url;       /* MINILAMBDA_LOKI_URL; "" for none */
    const char *db_url;         /* the lambda DB (set by the caller) */
    int64_t flush_ms;           /* batch age before a write; 0: LOGQ_FLUSH_MS */
} logq_config;

#define LOGQ_FLUSH_MS 20        /* a batch is written at most this long after its first line */
#define LOGQ_BATCH_LINES 5000   /* ... or as soon as it holds this many lines */

/* Appends the writer's configuration variables to vars; returns how many (at most max). */
size_t logq_cfg_vars(logq_config *c, cfg_var *vars, size_t max);

/* Registers the metrics in reg (may be NULL) and, when c->enabled, starts the writer thread
 * (its own Postgres connection, made lazily). ML_ERR (logged) if the thread cannot start.
 * One writer per process; logq_stop before starting again. */
int logq_start(const logq_config *c, metrics_registry *reg);

/* Writes what is queued (at most timeout_ms more), stops and joins the writer; the queue is
 * emptied (what was left is counted as dropped, reason "shutdown"). No-op when not started. */
void logq_stop(int64_t timeout_ms);

/* Waits until every line pushed before the call is written (or dropped): true, or false after
 * timeout_ms. For readers that want their own lines, and tests. */
bool logq_wait_idle(int64_t timeout_ms);

/* Queues n lines (all or a prefix); returns how many were taken — the rest were dropped and
 * counted (reason "queue_full", or none taken when function logs are off). Never blocks on I/O;
 * any thread. */
size_t logq_push(const logq_line *lines, size_t n);

/* Whether function logs are stored (MINILAMBDA_FUNCTION_LOGS); capture skips work when not. */
bool logq_enabled(void);

/* Counts n lines dropped for reason ("invocation_limit", ...) in the dropped-lines metric. */
void logq_count_dropped(const char *reason, double n);

/* total() reports the lines capture dropped at the per-invocation limit so far (it counts
 * them without metrics); each scrape adds the growth to the invocation_limit series. */
void logq_watch_limit_drops(uint64_t (*total)(void));

/* Bytes now queued (the queue-bytes gauge). */
size_t logq_queued_bytes(void);

#endif
