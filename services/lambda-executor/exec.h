/* exec.h — runs one invocation: the function's code from the artifact cache, an instance
 * from its warm pool, the event in the sandbox, the invocation metrics. The one place every
 * kind of invocation runs: the sync HTTP route (invoke.h) and the async consumer (async.h),
 * which also runs the events the scheduler (schedules.h) and DLQ replays queue.
 *
 * Owns nothing between calls: the caller owns the sandbox_result and the audit row. */
#ifndef EX_EXEC_H
#define EX_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"

typedef enum {
    EXEC_RAN,        /* res holds the outcome (a handler that failed to load: Runtime.InitError) */
    EXEC_SATURATED,  /* the function's concurrency stayed exhausted for wait_ms */
    EXEC_NO_CODE,    /* the artifact could not be fetched (err says why) */
    EXEC_NO_SANDBOX, /* no instance could be made for a platform reason (err says why) */
} exec_outcome;

/* One invocation to run. Strings are borrowed for the call. */
typedef struct exec_request {
    const fn_info *fn;     /* what runs: $LATEST, or a published version (qualifier_resolve) */
    const char *executed_version; /* "$LATEST" (NULL too) or the version number: its pool */
    const char *trigger;   /* metrics label: http_sync, http_async, cron, dlq_replay */
    const char *id;        /* the invocation id */
    const char *event;     /* JSON */
    size_t len;
    int64_t wait_ms;       /* how long to wait for a busy function's instance */
    const sandbox_stream_sink *stream; /* a streaming function's response as it runs (NULL:
                                          collected into the result, sandbox.h) */
} exec_request;

/* Runs rq on a warm or new instance, using d's S3 client for the code (d: this thread's,
 * app_thread_deps). *cold tells whether an instance had to start. res: zeroed by the caller,
 * freed by the caller (sandbox_result_free) whatever the outcome. */
exec_outcome exec_run(ex_app *app, deps *d, const exec_request *rq, bool *cold,
                      sandbox_result *res, char *err, size_t errlen);

/* The contract's error type of an outcome ("Unhandled", "TimeoutError", ...); NULL for SB_OK. */
const char *exec_error_type(sandbox_status s);

/* The errorMessage inside a failed result's {"errorType","errorMessage"} payload; NULL when
 * there is none. Caller frees. */
char *exec_error_message(const sandbox_result *res);

/* Copies what a result tells the audit log (sizes, log tail, duration, memory) into rec;
 * rec keeps pointers into res. */
void exec_audit_result(audit_record *rec, const sandbox_result *res);

#endif
