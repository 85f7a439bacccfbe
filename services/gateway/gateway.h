/* gateway.h — the gateway's request path: authenticate, limit, pick an upstream instance,
 * hand the exchange to the proxy loop, turn its outcome into the client's response.
 *
 * Threads: read routes run on the HTTP server's event loop (they only verify a token and
 * queue the transfer); routes that may block on Redis or on a function lookup (invoke, AWS
 * invoke, build submissions) run on its worker threads. Neither ever waits for an upstream:
 * every handler returns HTTPD_ASYNC and a proxy loop completes the request. */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <pthread.h>
#include <stdint.h>

#include "fncache.h"
#include "httpd.h"
#include "labelcap.h"
#include "metrics.h"
#include "proxy.h"
#include "ratelimit.h"
#include "routes.h"
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
    int64_t proxy_threads, keepalive_conns, metric_max_functions;
    const char *aws_access_key, *aws_secret_key;
} gw_settings;

struct gw_app;

/* What a route's handler needs: the app and the route's definition. */
typedef struct gw_route_ctx {
    struct gw_app *app;
    const gw_route_def *def;
} gw_route_ctx;

#define GW_MAX_ROUTES 32

typedef struct gw_app {
    gw_settings cfg;
    gw_pool pools[GW_NSVC];
    gw_pool *pool_list[GW_NSVC];
    gw_limiter limiter;
    gw_fncache fns;
    gw_labelcap fn_labels;
    gw_proxy *proxy;
    gw_health_checker *health;
    gw_route_ctx ctx[GW_MAX_ROUTES];
    pthread_key_t httpc_key;   /* each worker thread's client for function lookups */
    bool key_created;
    metric *m_auth_failures, *m_decisions, *m_proxy_errors, *m_upstream_seconds, *m_fn_lookups;
} gw_app;

/* Sets up pools, limiter, cache and metrics from cfg (copied); no threads yet. reg may be
 * NULL. ML_ERR with a reason in err. Free with gw_app_free (after gw_app_stop). */
int gw_app_init(gw_app *a, const gw_settings *cfg, metrics_registry *reg, char *err,
                size_t errlen);
/* Starts the proxy loops and the health checker. */
int gw_app_start(gw_app *a, char *err, size_t errlen);
/* Stops them; call after the HTTP server has drained. */
void gw_app_stop(gw_app *a);
void gw_app_free(gw_app *a);

/* Fills out with the public API's routes (handlers bound to a); returns how many. */
size_t gw_app_routes(gw_app *a, httpd_route *out, size_t max);

/* health_check_fn for one pool (ud: gw_pool *): ML_OK if an instance can take traffic. */
int gw_app_check_pool(void *pool, char *err, size_t errlen);

#endif
