/* fnlog.h — one invocation's function log (docs/logs.md §1 "Capture"): raw stdout/stderr
 * bytes split into bounded, timestamped lines, platform lines (START/END/REPORT), the
 * per-invocation limit with its truncation marker; complete lines go to the writer's queue
 * (logq.h) in batches. (The 4 KiB merged tail for X-Log-Result stays the sandbox's.)
 *
 * A zeroed fnlog_inv is valid and discards everything (logging off or no invocation); every
 * function takes NULL too. Used by one thread at a time: the one running the invocation. */
#ifndef EX_FNLOG_H
#define EX_FNLOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "logq.h"
#include "ml.h"

typedef enum { FNLOG_STDOUT = 0, FNLOG_STDERR = 1, FNLOG_PLATFORM = 2 } fnlog_stream;

#define FNLOG_LINE_MAX (64 * 1024)   /* longer lines are cut into pieces of this size */
#define FNLOG_MAX_BYTES_DEFAULT (4 * 1024 * 1024)

typedef struct fnlog_inv fnlog_inv;  /* fnlog-t.h: callers may hold one by value */

/* Where complete lines go: logq_push's contract (returns how many it took; the rest count as
 * dropped because the queue was full). */
typedef size_t (*fnlog_sink)(const logq_line *lines, size_t n);

/* Who the lines belong to. Strings are borrowed: they must outlive the fnlog_inv's use. */
typedef struct fnlog_meta {
    const char *request_id, *ns, *function, *function_id, *version;
    int64_t max_bytes;    /* function output kept per invocation (raw bytes, newlines
                             included); beyond it bytes are counted and discarded */
    fnlog_sink sink;      /* NULL: logq_push, and nothing at all when !logq_enabled() */
} fnlog_meta;

/* How the invocation ended, for the lines before END and the REPORT. */
typedef struct fnlog_end {
    int status;               /* sandbox_status */
    const char *error_type;   /* the result's errorType / errorMessage (NULL: none) */
    const char *error_message;
    bool init_failed;         /* the handler could not load (no invocation ran) */
    int64_t duration_us;      /* of the invocation */
    int64_t memory_mb;        /* configured */
    int64_t max_memory_bytes; /* measured peak, < 0 unknown */
    int64_t init_us;          /* > 0: a cold start that took this long (start + handler load) */
} fnlog_end;

/* Starts inv for one invocation and queues its START line. Without logging (sink NULL and
 * logq off) or memory, inv stays zeroed: it discards. Allocates: fnlog_finish (or
 * fnlog_abandon) frees. */
void fnlog_begin(fnlog_inv *inv, const fnlog_meta *meta);

/* Bytes the function wrote on stream (FNLOG_STDOUT / FNLOG_STDERR), as read: complete lines
 * are queued in the batch, a partial one is carried to the next call. */
void fnlog_feed(fnlog_inv *inv, fnlog_stream stream, const char *data, size_t n);

/* inv as the sandbox's output sink (sandbox.h), NULL for NULL: what the sandbox drains is fed
 * to inv (fd 1 stdout, 2 stderr) and flushed per drain. Valid while inv is. */
const struct sandbox_sink *fnlog_as_sink(fnlog_inv *inv);

/* Hands the queued lines to the sink (never blocks: the queue drops what does not fit). */
void fnlog_flush(fnlog_inv *inv);

/* Ends the invocation's log: the unterminated partial lines, a timeout / crash / init-failure
 * line, the truncation markers, END and REPORT; flushes and frees (inv is zeroed). */
void fnlog_finish(fnlog_inv *inv, const fnlog_end *end);

/* fnlog_finish with what a sandbox result tells (status, errorType/errorMessage of its
 * payload, duration, peak memory); init_failed: res is a start failure (exec.c's init_error). */
struct sandbox_result;
void fnlog_finish_result(fnlog_inv *inv, const struct sandbox_result *res, int64_t memory_mb,
                         int64_t init_us, bool init_failed);

/* The invocation did not run after all (saturated, no code, no sandbox): drops the queued
 * lines if none reached the sink yet, else finishes with END; frees. */
void fnlog_abandon(fnlog_inv *inv);

/* The level of a line (docs/logs.md): a leading ERROR|WARN|WARNING|INFO|DEBUG|TRACE|FATAL|
 * CRITICAL token (or "[ERROR]"), or a JSON line's "level" field; else by stream. Static. */
const char *fnlog_level(fnlog_stream stream, const char *msg, size_t len);

/* Lines dropped by the per-invocation limit, all invocations together (for the
 * minilambda_function_log_lines_dropped_total{reason="invocation_limit"} series). */
uint64_t fnlog_limit_dropped_lines(void);

/* Counters of one invocation (tests, diagnostics). */
typedef struct fnlog_counts {
    int64_t kept_bytes, dropped_bytes, dropped_lines, queue_dropped, lines;
} fnlog_counts;
void fnlog_get_counts(const fnlog_inv *inv, fnlog_counts *out);

#endif
