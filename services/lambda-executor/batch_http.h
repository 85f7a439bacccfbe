/* batch_http.h — POST /batch-invoke (docs/http.md "Batch invoke"): up to BATCH_MAX_ITEMS
 * invocations of one or several functions, each with its own payload, qualifier and
 * invocation type, answered 200 {"results":[...]} in the request's order. Each item goes
 * through exactly the steps of POST /functions/{fn}/invoke (invoke.h: same audit row, same
 * error codes, an Event queued durably before its 202); items run concurrently on at most
 * BATCH_MAX_THREADS threads per request, and never more of one function's items at a time
 * than its concurrency setting allows, so that a function with concurrency 1 runs its items
 * one after another instead of refusing them. Threads: the route is blocking. */
#ifndef EX_BATCH_HTTP_H
#define EX_BATCH_HTTP_H

#include "app.h"
#include "httpd.h"

#define BATCH_MAX_ITEMS 100
#define BATCH_MAX_THREADS 16
#define BATCH_MAX_BODY (6u * 1024u * 1024u)
#define BATCH_ID_MAX 128 /* a client's correlation id, bytes */

/* Writes the batch route to out; returns how many (1 is needed). */
size_t batch_routes(ex_app *app, httpd_route *out, size_t max);

#endif
