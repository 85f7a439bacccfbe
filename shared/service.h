/* service.h — what every daemon does the same way: configuration, logging, metrics,
 * /health and /metrics, signal handling and graceful shutdown. */
#ifndef ML_SERVICE_H
#define ML_SERVICE_H

#include <stdbool.h>

#include "config.h"
#include "health.h"
#include "httpd.h"
#include "metrics.h"

#define SVC_MAX_CONFIG 96

typedef struct svc {
    const char *name;
    metrics_registry *metrics;
    health health;
    httpd *http;
    httpd_route *routes; /* caller's routes + /health + /metrics */
    /* common configuration */
    int64_t port, http_threads, http_workers, drain_timeout_s, startup_timeout_s;
    const char *bind_addr, *log_level;
    bool http_external;  /* set before svc_start_http: the caller runs the HTTP loops */
    httpd_reject_fn http_shape_reject; /* optional, set before svc_start_http (httpd_config) */
    void *http_shape_reject_ud;
    httpd_guard_fn http_guard;   /* optional, set before svc_start_http (httpd_config) */
    void *http_guard_ud;
    httpd_done_fn http_done;     /* optional, set before svc_start_http (httpd_config) */
    void *http_done_ud;
    /* the effective table: service-specific variables plus the common ones */
    cfg_var vars[SVC_MAX_CONFIG];
    size_t nvars;
} svc;

/* Loads config (service vars + common ones; port_var names this daemon's port variable),
 * sets up logging and metrics. Blocks SIGTERM/SIGINT/SIGPIPE in the calling thread so threads
 * started afterwards inherit the mask and only svc_run receives them.
 * With argv "--print-config" it prints the Markdown config table and exits 0.
 * On a bad configuration it logs every problem and returns ML_ERR. Free with svc_free. */
int svc_init(svc *s, const char *name, const char *port_var, const char *default_port,
             const cfg_var *vars, size_t nvars, int argc, char **argv);

/* Serves routes plus GET /health, GET /ready/{cap} and GET /metrics, and (unless
 * http_external) starts the background health checks: register every check and the
 * capabilities (health_set_caps) before. The routes array must outlive the server. */
int svc_start_http(svc *s, const httpd_route *routes, size_t nroutes);
/* Blocks until SIGTERM/SIGINT (or svc_request_stop). */
void svc_wait_signal(svc *s);
/* Stops the health checks, drains in-flight requests and stops the HTTP server. */
void svc_stop_http(svc *s);

/* The usual life: start HTTP, wait for dependencies (serving 503 meanwhile), run until a
 * stop signal, drain. ML_ERR if HTTP could not start. */
int svc_serve(svc *s, const httpd_route *routes, size_t nroutes);

/* Starts the background health checks if not yet running, then waits until every required
 * check passes and every capability is available (logging what is still down, with
 * backoff), for at most MINILAMBDA_STARTUP_TIMEOUT_S. ML_ERR on timeout or shutdown.
 * HTTP keeps serving meanwhile: /health tells callers what is available. */
int svc_wait_ready(svc *s);

/* True once a stop signal arrived (checks pending signals, so it works before
 * svc_wait_signal runs); background loops poll it. */
bool svc_stopping(void);
/* Asks the daemon to stop, as SIGTERM would (tests, fatal errors in background threads). */
void svc_request_stop(void);

void svc_free(svc *s);

#endif
