/* batchinv.h — POST /batch-invoke at the gateway (docs/http.md "Batch invoke"): the
 * caller's invocations of one or several functions in one request. The body is parsed on
 * the HTTP thread; on a proxy loop each item (DryRun aside) spends its function's rate
 * limit — the same Redis key and configuration as POST /functions/{fn}/invoke, from the
 * function cache when fresh, else the defaults — and a throttled item is answered here
 * (status 429, rate_limited) and left out of the request the executor gets. The executor's
 * per-item results are merged back in the caller's order. Threads: as gateway.h. */
#ifndef GW_BATCHINV_H
#define GW_BATCHINV_H

#include "gateway.h"
#include "httpd.h"
#include "routes.h"

/* HTTP thread, after authentication: ns is the namespace the request acts in. HTTPD_DONE
 * with a refusal in resp, or HTTPD_ASYNC (the request is completed on a loop). */
httpd_result gw_batchinv_handle(gw_app *a, const gw_route_def *d, httpd_req *req, httpd_resp *resp,
                                const char *ns);

#endif
