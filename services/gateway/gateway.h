/* gateway.h — the gateway's request path: authenticate, look the function up, rate limit,
 * pick an upstream instance, proxy, turn the outcome into the client's response.
 *
 * Threads: every route's handler runs on the HTTP server's event loop and does only CPU work
 * (token check, body checks, cached function config, building the upstream request), then
 * hands the request to a proxy loop and returns HTTPD_ASYNC. The proxy loop does all the
 * waiting without blocking: the function lookup (curl), the rate-limit decision (Redis,
 * asynchronously) and the upstream exchange (curl); it completes the request at the end.
 * No thread ever blocks on a request's behalf. */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "accesslog.h"
#include "fncache.h"
#include "httpd.h"
#include "metrics.h"
#include "proxy.h"
#include "ratelimit.h"
#include "routes.h"
#include "tenants.h"
#include "upstream.h"

/* Every knob, as loaded from the MINILAMBDA_* table in main.c. */
typedef struct gw_settings {
    const char *jwt_secret;
    int64_t jwt_leeway_s;
    const char *build_master_urls, *executor_urls, *redis_url;
    int64_t default_rps, default_burst;
    int64_t build_per_minute, build_burst;
    int64_t redis_timeout_ms, fn_cache_ttl_ms;
    int64_t upstream_timeout_s, connect_timeout_ms, invoke_margin_s, max_response_bytes;
    int64_t health_interval_ms, breaker_failures, breaker_open_ms, breaker_probes;
    int64_t keepalive_conns, metric_max_functions;
    const char *aws_access_key, *aws_secret_key;
    const char *aws_region; /* the region in the ARNs the AWS API shows */
    const char *access_log; /* "-", "off" or a path (docs/logs.md §2) */
    double access_log_sample;
    int64_t fnurl_ip_rps, fnurl_ip_burst; /* a public function URL's budget per client IP */
} gw_settings;

struct gw_app;

/* What a route's handler needs: the app and the route's definition. */
typedef struct gw_route_ctx {
    struct gw_app *app;
    const gw_route_def *def;
} gw_route_ctx;

#define GW_MAX_ROUTES 96

typedef struct gw_app {
    gw_settings cfg;
    gw_pool pools[GW_NSVC];
    gw_pool *pool_list[GW_NSVC];
    gw_limiter limiter;
    gw_fncache fns;
    gw_tenants tenants; /* access keys, namespace quotas, concurrency slots */
    gw_proxy *proxy;
    gw_health_checker *health;
    gw_alog *alog;      /* the access log (NULL: none) */
    gw_route_ctx ctx[GW_MAX_ROUTES];
    bool limiter_ready;
    atomic_bool draining;
    metric *m_auth_failures, *m_decisions, *m_proxy_errors, *m_upstream_seconds, *m_fn_lookups;
    metric *m_quota_refusals;
    metric *m_fnurl_requests; /* function URLs (fnurl.c) */
} gw_app;

/* Sets up pools, limiter, cache and metrics from cfg (copied); no threads yet. reg may be
 * NULL. ML_ERR with a reason in err. Free with gw_app_free (after gw_app_stop). */
int gw_app_init(gw_app *a, const gw_settings *cfg, metrics_registry *reg, char *err,
                size_t errlen);
/* Starts the proxy loops, one per daemon of the external-mode server http (which they then
 * run), and the health checker. */
int gw_app_start(gw_app *a, httpd *http, char *err, size_t errlen);
/* From now on every new request is answered at once with 503 and Connection: close, so no
 * connection gets suspended while the HTTP server drains (libmicrohttpd aborts when it is
 * stopped with a suspended connection, and keep-alive clients keep sending). */
void gw_app_drain(gw_app *a);
/* Stops them; call after the HTTP server has drained (httpd_drain) and before httpd_stop. */
void gw_app_stop(gw_app *a);
void gw_app_free(gw_app *a);

/* Fills out with the public API's routes (handlers bound to a); returns how many. */
size_t gw_app_routes(gw_app *a, httpd_route *out, size_t max);

/* health_check_fn for one pool (ud: gw_pool *): ML_OK if an instance can take traffic. */
int gw_app_check_pool(void *pool, char *err, size_t errlen);

#endif
