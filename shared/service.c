/* service.c — the common daemon life cycle. */
#include "service.h"

#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"

static atomic_bool svc_stop_flag;
static sigset_t svc_signals;

bool svc_stopping(void)
{
    sigset_t pending;

    if (atomic_load(&svc_stop_flag))
        return true;
    if (sigpending(&pending) == 0 &&
        (sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1))
        atomic_store(&svc_stop_flag, true);
    return atomic_load(&svc_stop_flag);
}

void svc_request_stop(void)
{
    atomic_store(&svc_stop_flag, true);
    kill(getpid(), SIGTERM);
}

/* ML_ERR when the table is full: a setting that did not fit would be ignored silently. */
static int add_common_vars(svc *s, const char *port_var, const char *default_port)
{
    const cfg_var common[] = {
        { port_var, CFG_INT, default_port, 1, 65535, NULL, "TCP port of this daemon's HTTP server", &s->port, false },
        { "MINILAMBDA_BIND_ADDR", CFG_STR, "0.0.0.0", 0, 0, NULL, "IPv4 address the HTTP servers listen on", &s->bind_addr, false },
        { "MINILAMBDA_LOG_LEVEL", CFG_STR, "info", 0, 0, NULL, "debug, info, warn or error", &s->log_level, false },
        { "MINILAMBDA_HTTP_THREADS", CFG_INT, "2", 1, 256, NULL, "HTTP event-loop threads (epoll pool)", &s->http_threads, false },
        { "MINILAMBDA_HTTP_WORKERS", CFG_INT, "32", 1, 4096, NULL, "worker threads for HTTP handlers that block (database, S3)", &s->http_workers, false },
        { "MINILAMBDA_DRAIN_TIMEOUT_S", CFG_INT, "30", 1, 3600, NULL, "on SIGTERM, how long to wait for in-flight requests", &s->drain_timeout_s, false },
        { "MINILAMBDA_STARTUP_TIMEOUT_S", CFG_INT, "120", 1, 3600, NULL, "how long to wait for dependencies at start-up before giving up", &s->startup_timeout_s, false },
    };

    /* a service may declare a common variable itself, to give it another default */
    for (size_t i = 0; i < ML_ARRAY_LEN(common); i++) {
        bool declared = false;
        for (size_t k = 0; k < s->nvars && !declared; k++)
            declared = strcmp(s->vars[k].name, common[i].name) == 0;
        if (declared)
            continue;
        if (s->nvars == SVC_MAX_CONFIG)
            return ML_ERR;
        s->vars[s->nvars++] = common[i];
    }
    return ML_OK;
}

/* Lets the gateway and executor hold thousands of connections. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int svc_init(svc *s, const char *name, const char *port_var, const char *default_port,
             const cfg_var *vars, size_t nvars, int argc, char **argv)
{
    ml_buf err = { 0 }, table = { 0 };
    ml_log_level level;
    int rc = ML_ERR;

    memset(s, 0, sizeof(*s));
    s->name = name;
    ml_log_init(name, ML_LOG_INFO);
    for (size_t i = 0; i < nvars && s->nvars < SVC_MAX_CONFIG; i++)
        s->vars[s->nvars++] = vars[i];
    if (nvars > s->nvars || add_common_vars(s, port_var, default_port) != ML_OK) {
        ml_log_error("%s declares more settings than SVC_MAX_CONFIG (%d): raise it", name, SVC_MAX_CONFIG);
        goto out;
    }
    if (argc > 1 && strcmp(argv[1], "--print-config") == 0) {
        cfg_markdown(s->vars, s->nvars, &table);
        fputs(ml_buf_cstr(&table), stdout);
        ml_buf_free(&table);
        exit(0);
    }
    if (cfg_load(s->vars, s->nvars, &err) != ML_OK) {
        ml_log_kv(ML_LOG_ERROR, "invalid configuration", "errors", ml_buf_cstr(&err), NULL);
        goto out;
    }
    if (ml_log_parse_level(s->log_level, &level) != ML_OK) {
        ml_log_error("MINILAMBDA_LOG_LEVEL=%s must be debug, info, warn or error", s->log_level);
        goto out;
    }
    ml_log_init(name, level);
    cfg_log(s->vars, s->nvars);
    s->metrics = metrics_new();
    if (!s->metrics || metrics_register_process(s->metrics) != ML_OK)
        goto out;
    sigemptyset(&svc_signals);
    sigaddset(&svc_signals, SIGTERM);
    sigaddset(&svc_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &svc_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    /* glibc gives each busy thread its own arena (8 per core); with hundreds of worker threads
     * freed memory stays spread over them and RSS creeps. Two arenas keep it flat (measured
     * in docs/benchmarks.md) at no visible cost in throughput. */
    mallopt(M_ARENA_MAX, 2);
    rc = ML_OK;
out:
    ml_buf_free(&err);
    return rc;
}

int svc_start_http(svc *s, const httpd_route *routes, size_t nroutes)
{
    httpd_config hc = { 0 };
    char err[256];

    s->routes = calloc(nroutes + 3, sizeof(*s->routes));
    if (!s->routes)
        return ML_ERR;
    if (nroutes)
        memcpy(s->routes, routes, nroutes * sizeof(*routes));
    /* not blocking: they answer from the background checks' results, so a busy worker pool
     * cannot delay them past a caller's health check timeout */
    s->routes[nroutes] = (httpd_route){ "GET", "/health", health_handler, &s->health, 0, false };
    s->routes[nroutes + 1] =
        (httpd_route){ "GET", "/ready/{cap}", health_ready_handler, &s->health, 0, false };
    s->routes[nroutes + 2] =
        (httpd_route){ "GET", "/metrics", httpd_metrics_handler, s->metrics, 0, false };
    hc.service = s->name;
    hc.bind_addr = s->bind_addr;
    hc.port = (uint16_t)s->port;
    hc.threads = (unsigned)s->http_threads;
    hc.workers = (unsigned)s->http_workers;
    hc.drain_timeout_s = (unsigned)s->drain_timeout_s;
    hc.metrics = s->metrics;
    hc.external = s->http_external;
    hc.shape_reject = s->http_shape_reject;
    hc.shape_reject_ud = s->http_shape_reject_ud;
    hc.guard = s->http_guard;
    hc.guard_ud = s->http_guard_ud;
    hc.done = s->http_done;
    hc.done_ud = s->http_done_ud;
    /* a service whose caller runs the HTTP loops (the gateway) starts the checks in
     * svc_wait_ready, once everything they read exists */
    if (!s->http_external && health_start(&s->health) != ML_OK) {
        ml_log_error("cannot start the health check thread");
        return ML_ERR;
    }
    s->http = httpd_start(&hc, s->routes, nroutes + 3, err, sizeof(err));
    if (!s->http) {
        ml_log_error("cannot start HTTP server: %s", err);
        health_stop(&s->health);
        return ML_ERR;
    }
    ml_log_info("%s listening on %s:%u", s->name, s->bind_addr, httpd_port(s->http));
    return ML_OK;
}

void svc_wait_signal(svc *s)
{
    int sig = 0;

    while (!atomic_load(&svc_stop_flag)) {
        if (sigwait(&svc_signals, &sig) == 0)
            atomic_store(&svc_stop_flag, true);
    }
    ml_log_info("%s: stop requested (signal %d), shutting down", s->name, sig);
}

void svc_stop_http(svc *s)
{
    /* before the callers free what the checks use (deps_close) */
    health_stop(&s->health);
    httpd_stop(s->http);
    s->http = NULL;
    ml_log_info("%s stopped", s->name);
}

/* Logs what is still down (json: the /health body). */
static void log_not_ready(svc *s, bool give_up)
{
    cJSON *json = NULL;
    char *text;

    health_evaluate(&s->health, &json);
    text = cJSON_PrintUnformatted(json);
    ml_log_kv(give_up ? ML_LOG_ERROR : ML_LOG_WARN,
              give_up ? "dependencies not ready, giving up" : "waiting for dependencies",
              "health", text ? text : "", NULL);
    free(text);
    cJSON_Delete(json);
}

int svc_wait_ready(svc *s)
{
    int64_t deadline = ml_now_ms() + s->startup_timeout_s * 1000, log_every = 100;
    int64_t next_log = ml_now_ms() + log_every;

    if (health_start(&s->health) != ML_OK) {
        ml_log_error("cannot start the health check thread");
        return ML_ERR;
    }
    for (;;) {
        /* the first round of checks is still running: nothing to report yet */
        bool first = atomic_load(&s->health.rounds) == 0 && ml_now_ms() < deadline;
        bool give_up = svc_stopping() || ml_now_ms() >= deadline;

        if (!first && health_all_ready(&s->health))
            return ML_OK;
        if (give_up || (!first && ml_now_ms() >= next_log)) {
            log_not_ready(s, give_up);
            if (give_up)
                return ML_ERR;
            log_every = log_every * 2 > 5000 ? 5000 : log_every * 2;
            next_log = ml_now_ms() + log_every;
        }
        ml_sleep_ms(50);
    }
}

int svc_serve(svc *s, const httpd_route *routes, size_t nroutes)
{
    if (svc_start_http(s, routes, nroutes) != ML_OK)
        return ML_ERR;
    svc_wait_ready(s);
    svc_wait_signal(s);
    svc_stop_http(s);
    return ML_OK;
}

void svc_free(svc *s)
{
    health_stop(&s->health);
    free(s->routes);
    s->routes = NULL;
    metrics_free(s->metrics);
    s->metrics = NULL;
}
