/* gateway-int.h — the request path's steps that gateway.c and the function URL path (fnurl.c)
 * share, so that both answer alike (gwcall.c): authentication (401/403 JSON, the
 * auth-failure metric, the access log), upstream failures (503/504/502 JSON), quotas and the
 * rate-limit headers. Internal to the gateway; same threading as gateway.h. */
#ifndef GW_GATEWAY_INT_H
#define GW_GATEWAY_INT_H

#include "auth.h"
#include "gateway.h"

/* Every rate-limit key in Redis starts with this (one budget per key across paths). */
#define GW_RL_KEY_PREFIX "ml:gw:rl:"

/* httpd_header as a header lookup callback (ud: the httpd_req). */
const char *gw_call_req_header(void *ud, const char *name);
/* Microseconds rounded up to whole seconds (Retry-After, RateLimit-Reset). */
int64_t gw_call_ceil_s(int64_t us);
/* A header with an integer value (left out if it cannot be formatted). */
void gw_call_header_int(httpd_resp *resp, const char *name, int64_t v);
/* Appends line to *list, which stays intact (and the caller's to free) on failure. */
int gw_call_append_header(struct curl_slist **list, const char *line);

/* The Bearer (or, on AWS routes, SigV4) check of route d (its scope): ML_OK with *who set, or ML_ERR with the 401/403
 * written to resp. */
int gw_call_authenticate(gw_app *a, const gw_route_def *d, httpd_req *req, httpd_resp *resp,
                         gw_principal *who);
/* 503 upstream_unavailable with Retry-After: no instance of p can serve cap now. */
void gw_call_no_upstream(gw_app *a, gw_pool *p, unsigned cap, httpd_resp *resp);
/* The error of a transfer that did not end in a response (x->result != GW_XFER_OK). */
void gw_call_proxy_error(gw_app *a, gw_xfer *x, httpd_resp *resp);
/* RateLimit-Limit/-Remaining/-Reset of a decision. */
void gw_call_limit_headers(httpd_resp *resp, const gcra_result *r);
/* 429 quota_exceeded naming the namespace's quota and its limit (docs/tenants.md). */
void gw_call_quota_error(gw_app *a, httpd_resp *resp, const char *ns, const char *quota,
                         int64_t limit, int64_t retry_s);

#endif
