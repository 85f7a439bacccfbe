/* invoke.h — POST /functions/{fn}/invoke, the HTTP face of all three invocation types:
 * RequestResponse (sync: runs now through exec.h), Event (async: queued through async.h)
 * and DryRun (checks only). Scheduled (cron) invocations do not come through here: the
 * scheduler (schedules.h) queues them as async events. */
#ifndef EX_INVOKE_H
#define EX_INVOKE_H

#include "app.h"
#include "httpd.h"

typedef enum {
    EXEC_RAN,        /* res holds the outcome (a handler that failed to load: Runtime.InitError) */
    EXEC_SATURATED,  /* the function's concurrency stayed exhausted for wait_ms */
    EXEC_NO_CODE,    /* the artifact could not be fetched (err says why) */
    EXEC_NO_SANDBOX, /* no instance could be made for a platform reason (err says why) */
} exec_outcome;

/* Runs one event on a warm or new instance of fn's active version (shared by sync and async
 * invocations; trigger labels the metrics). *cold tells whether an instance had to start.
 * res: caller frees. */
exec_outcome invoke_exec(ex_app *app, deps *d, const fn_info *fn, const char *trigger,
                         const char *id, const char *event,
                         size_t len, int64_t wait_ms, bool *cold, sandbox_result *res, char *err,
                         size_t errlen);

/* Writes the invoke route(s) to out; returns how many. */
size_t invoke_routes(ex_app *app, httpd_route *out, size_t max);

#endif
