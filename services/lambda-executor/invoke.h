/* invoke.h — POST /functions/{fn}/invoke, the HTTP face of all three invocation types:
 * RequestResponse (sync: runs now through exec.h), Event (async: queued through async.h)
 * and DryRun (checks only). Scheduled (cron) invocations do not come through here: the
 * scheduler (schedules.h) queues them as async events. */
#ifndef EX_INVOKE_H
#define EX_INVOKE_H

#include "app.h"
#include "httpd.h"

/* Writes the invoke route(s) to out; returns how many. */
size_t invoke_routes(ex_app *app, httpd_route *out, size_t max);

#endif
