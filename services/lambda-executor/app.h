/* app.h — the lambda-executor's dependencies, owned in one place and handed down.
 *
 * An ex_app owns the health-check connections, the sandbox set-up, the artifact cache, the
 * registry, the audit log, the warm pools and the invocation metrics. app_start creates them
 * in order and app_stop frees them in reverse. Every module receives the ex_app explicitly;
 * a thread reaches its own clients (Postgres, Redis, AMQP, S3) only through
 * app_thread_deps — the registry through a thread_deps callback and the audit log through
 * a thread_db callback, both app_thread_deps underneath. A zeroed ex_app is a valid empty app (app_stop is a
 * no-op on it). */
#ifndef EX_APP_H
#define EX_APP_H

#include "artifacts.h"
#include "audit.h"
#include "deps.h"
#include "logs.h"
#include "metrics.h"
#include "netns.h"
#include "pool.h"
#include "registry.h"
#include "versions.h"
#include "runtimes.h"

#define EX_NEED (DEPS_LAMBDA_DB | DEPS_REDIS | DEPS_AMQP | DEPS_S3)
#define EX_MAX_SYNC_BODY FNSPEC_MAX_INVOKE_BODY
#define EX_MAX_CONSUMERS 64
/* Redis connect/command timeout on the invoke path (the registry's lookups); within
 * REGISTRY_REDIS_TIMEOUT_MS, short enough that a frozen Redis is barely felt. */
#define EX_REDIS_TIMEOUT_MS 80

typedef struct ex_app {
    /* configuration (app_cfg_vars) */
    deps_config deps;
    registry_config registry_cfg;
    audit_config audit_cfg;
    logs_config logs_cfg;         /* function logs: writer, retention (logs.h) */
    const char *artifact_dir, *runtimes_dir; /* runtimes_dir: the staged copy, after start-up */
    const char *runtimes_cfg, *python_cfg, *node_cfg; /* MINILAMBDA_RUNTIMES, _PYTHON, _NODE */
    int64_t idle_ttl_s, max_instances, queue_wait_ms, pids_max;
    int64_t stem_cells;           /* stem cells kept ready per runtime (sandbox_stem.h), 0: none */
    sandbox_stem_pool *stems;     /* owned, made by app_start */
    bool network;                 /* functions may ask for network (master switch) */
    bool network_host;            /* UNSAFE legacy: every function on the host's network */
    netns_config net;             /* their namespaces and egress policy (netns.h) */
    int64_t net_pool;
    int64_t async_consumers;      /* threads running queued events */
    int64_t queue_stats_interval_ms; /* refresh of the queue and DLQ depth gauges */
    int64_t metrics_max_functions;   /* distinct function label values (metrics.h) */
    bool allow_loopback, allow_private; /* destinations (on_success/on_failure) SSRF policy */
    int64_t log_max_bytes;        /* function output logged per invocation (fnlog.h) */
    /* owned, made by app_start */
    deps health;                  /* the health checks' own connections */
    pgpool db_pool;               /* lambda_service_db connections the threads borrow
                                   * (deps_db_acquire); zeroed: each thread has its own.
                                   * Closed by app_stop after every thread using it stopped */
    char runtimes_staged[4096];   /* artifacts_stage_runtimes */
    runtimes_table runtimes;      /* rth_start; read-only afterwards (runtimes_http.h) */
    registry *registry;
    ver_ctx *versions;            /* published versions, aliases, qualifiers (versions.h) */
    audit *audit;
    artifacts artifacts;
    pool *pool;
    metric *m_invocations, *m_duration, *m_starts, *m_kills, *m_dlq;
} ex_app;

/* Appends the executor's configuration variables (destinations in app, and s's worker
 * count) to vars; returns how many (at most max). Call before svc_init. */
size_t app_cfg_vars(ex_app *app, svc *s, cfg_var *vars, size_t max);

/* After svc_init: registers the metrics, opens the health-check connections and creates
 * every dependency. ML_ERR logged; call app_stop either way. */
int app_start(ex_app *app, svc *s);

/* Frees what app_start made, in reverse (the audit log flushes every queued row). Call
 * after the HTTP server and every thread using app have stopped. */
void app_stop(ex_app *app);

/* This thread's own clients (see deps_thread_pooled), created on first use and freed when
 * the thread exits; NULL when they cannot be created (logged). ->redis is bounded to
 * EX_REDIS_TIMEOUT_MS (within the registry's REGISTRY_REDIS_TIMEOUT_MS) and may be NULL. ->db is lent by app->db_pool: it
 * is usable only between deps_db_acquire(d) (PGPOOL_OK) and deps_db_release(d), which
 * bracket one group of queries and never a sandbox run, an AMQP wait or an audit flush
 * (with MINILAMBDA_DB_POOL_SIZE=0 it is the thread's own and acquire/release do nothing).
 * The one way any executor thread reaches Postgres, Redis, AMQP or S3. */
deps *app_thread_deps(ex_app *app);

#endif
