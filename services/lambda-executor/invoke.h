/* invoke.h — POST /functions/{fn}/invoke, the HTTP face of all three invocation types:
 * RequestResponse (sync: runs now through exec.h), Event (async: queued through async.h)
 * and DryRun (checks only). Scheduled (cron) invocations do not come through here: the
 * scheduler (schedules.h) queues them as async events. */
#ifndef EX_INVOKE_H
#define EX_INVOKE_H

#include "app.h"
#include "httpd.h"

/* One invocation's inputs, as POST /functions/{fn}/invoke reads them from its request
 * (batch_http.h builds them from a batch's items). Borrowed for the call. */
typedef struct invoke_input {
    const char *ns;          /* the namespace it acts in (valid) */
    const char *fn;          /* the function's name or id */
    const char *qualifier;   /* version or alias; NULL: $LATEST */
    const char *type;        /* RequestResponse, Event, DryRun; NULL: RequestResponse */
    const char *given_id;    /* X-Invocation-Id: an Event's id chosen by the client, or NULL */
    const char *log_type;    /* X-Log-Type ("Tail"), or NULL */
    const char *request_id;  /* for the audit row and error bodies; may be NULL */
    const char *event;       /* the payload (JSON; empty: {}) */
    size_t event_len;
} invoke_input;

/* Runs one invocation through exactly the steps of POST /functions/{fn}/invoke (lookup,
 * qualifier, audit, run or queue) and writes its answer — status, headers, body — to resp,
 * a zeroed httpd_resp the caller owns and frees (body and headers). Blocks for the run;
 * any thread (it uses app_thread_deps). */
void invoke_one(ex_app *app, const invoke_input *in, httpd_resp *resp);

/* Writes the invoke route(s) to out; returns how many. */
size_t invoke_routes(ex_app *app, httpd_route *out, size_t max);

#endif
