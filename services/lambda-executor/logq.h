/* logq.h — the bounded queue between function-log capture (fnlog.h) and the store writer
 * (docs/logs.md §1 "Store"): capture pushes complete lines and never blocks; one writer thread
 * per executor drains the queue into Postgres (COPY, day partitions) and, when configured, Loki.
 * Lines that do not fit (queue full, logging off) are dropped and counted. */
#ifndef EX_LOGQ_H
#define EX_LOGQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Queues n lines (all or a prefix); returns how many were taken — the rest were dropped and
 * counted (reason "queue_full", or none taken when function logs are off). Never blocks on I/O;
 * any thread. */
size_t logq_push(const logq_line *lines, size_t n);

/* Whether function logs are stored (MINILAMBDA_FUNCTION_LOGS); capture skips work when not. */
bool logq_enabled(void);

#endif
