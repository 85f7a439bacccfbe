/* app.h — the lambda-executor's shared state. */
#ifndef EX_APP_H
#define EX_APP_H

#include "artifacts.h"
#include "audit.h"
#include "deps.h"
#include "metrics.h"
#include "pool.h"
#include "registry.h"

#define EX_NEED (DEPS_LAMBDA_DB | DEPS_REDIS | DEPS_AMQP | DEPS_S3)
#define EX_MAX_SYNC_BODY (6 * 1024 * 1024)

typedef struct ex_app {
    deps_config deps;
    registry_config registry_cfg;
    audit_config audit_cfg;
    registry *registry;
    audit *audit;
    artifacts artifacts;
    pool *pool;
    const char *artifact_dir, *runtimes_dir; /* runtimes_dir: the staged copy, after start-up */
    char runtimes_staged[4096];   /* artifacts_stage_runtimes */
    int64_t idle_ttl_s, max_instances, queue_wait_ms, pids_max;
    bool network;                 /* functions may use the network */
    int64_t async_consumers;      /* threads running queued events */
    int64_t queue_stats_interval_ms; /* refresh of the queue and DLQ depth gauges */
    int64_t metrics_max_functions;   /* distinct function label values (metrics.h) */
    bool allow_loopback, allow_private; /* destinations (on_success/on_failure) SSRF policy */
    metric *m_invocations, *m_duration, *m_starts, *m_kills, *m_dlq;
} ex_app;

/* This thread's clients (see deps_thread); NULL when they cannot be created. */
deps *ex_deps(ex_app *app);

#endif
