/* lambda-executor — function registry, sandboxed warm pools, invocations, audit log
 * (see API.md). */
#include <stdio.h>
#include <string.h>

#include <pthread.h>

#include "async.h"
#include "dlq.h"
#include "invoke.h"
#include "outbox.h"
#include "queuestats.h"
#include "schedules.h"
#include "log.h"
#include "service.h"
#include "topology.h"

#define MAX_ROUTES 24
#define MAX_CONSUMERS 64

static ex_app app;

static const char *const stats_queues[] = { TOPO_INVOKE_QUEUE, TOPO_INVOKE_RETRY1,
                                            TOPO_INVOKE_RETRY2, TOPO_INVOKE_DEAD_QUEUE };

deps *ex_deps(ex_app *a)
{
    return deps_thread(&a->deps, EX_NEED, &topo_invoke, "lambda-executor");
}

static pg_conn *thread_db(void *ud)
{
    deps *d = ex_deps(ud);
    return d ? d->db : NULL;
}

static size_t executor_vars(svc *s, cfg_var *vars, size_t max)
{
    size_t n = deps_cfg_vars(&app.deps, EX_NEED, vars, max);
    const cfg_var own[] = {
        { "MINILAMBDA_ARTIFACT_CACHE_DIR", CFG_STR, "/tmp/minilambda-artifacts", 0, 0, NULL,
          "where the executor keeps unpacked function code, one directory per artifact sha256", &app.artifact_dir, false },
        { "MINILAMBDA_RUNTIMES_DIR", CFG_STR, "services/lambda-executor/runtimes", 0, 0, NULL,
          "the runtime bootstraps (python3/bootstrap.py, nodejs/bootstrap.js)", &app.runtimes_dir, false },
        { "MINILAMBDA_POOL_IDLE_TTL_S", CFG_INT, "300", 1, 86400, NULL,
          "idle sandboxed instances are stopped after this long", &app.idle_ttl_s, false },
        { "MINILAMBDA_POOL_MAX_INSTANCES", CFG_INT, "256", 1, 100000, NULL,
          "sandboxed instances on this executor, all functions together", &app.max_instances, false },
        { "MINILAMBDA_POOL_QUEUE_WAIT_MS", CFG_INT, "100", 0, 60000, NULL,
          "how long an invocation waits for a busy function's instance before 429", &app.queue_wait_ms, false },
        { "MINILAMBDA_FUNCTION_PIDS_MAX", CFG_INT, "64", 4, 4096, NULL,
          "processes and threads one function instance may have", &app.pids_max, false },
        { "MINILAMBDA_FUNCTION_NETWORK", CFG_BOOL, "false", 0, 0, NULL,
          "give functions network access (default: an empty network namespace)", &app.network, false },
        { "MINILAMBDA_ASYNC_CONSUMERS", CFG_INT, "4", 1, MAX_CONSUMERS, NULL,
          "threads running queued (Event, cron, replay) invocations on this executor", &app.async_consumers, false },
        { "MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK", CFG_BOOL, "false", 0, 0, NULL,
          "let users' webhook URLs reach loopback addresses (local stack only)", &app.allow_loopback, false },
        { "MINILAMBDA_WEBHOOK_ALLOW_PRIVATE", CFG_BOOL, "false", 0, 0, NULL,
          "let users' webhook URLs reach private networks (10/8, 172.16/12, 192.168/16 ...)", &app.allow_private, false },
        { "MINILAMBDA_QUEUE_STATS_INTERVAL_MS", CFG_INT, "5000", 100, 600000, NULL,
          "how often the queue depth gauges (broker queues; executor: also the DLQ size) are refreshed", &app.queue_stats_interval_ms, false },
        { "MINILAMBDA_METRICS_MAX_FUNCTIONS", CFG_INT, "200", 1, 10000, NULL,
          "distinct function label values in metrics; the rest are counted as _other", &app.metrics_max_functions, false },
        /* each in-flight invocation holds a worker thread while it waits for its sandbox */
        { "MINILAMBDA_HTTP_WORKERS", CFG_INT, "512", 1, 4096, NULL,
          "worker threads for HTTP handlers that block (database, S3, waiting on a sandbox)", &s->http_workers, false },
    };

    for (size_t i = 0; i < ML_ARRAY_LEN(own) && n < max; i++)
        vars[n++] = own[i];
    n += registry_cfg_vars(&app.registry_cfg, vars + n, max - n);
    n += audit_cfg_vars(&app.audit_cfg, vars + n, max - n);
    return n;
}

static void register_metrics(metrics_registry *reg)
{
    app.m_invocations = metrics_counter(reg, "minilambda_invocations_total",
                                        "Invocations by function, trigger and outcome.",
                                        "function,trigger,status");
    app.m_duration = metrics_histogram(reg, "minilambda_invocation_duration_seconds",
                                       "Handler run time per invocation.", "function", NULL, 0);
    app.m_starts = metrics_counter(reg, "minilambda_invocation_starts_total",
                                   "Invocations served by a new (cold) or reused (warm) instance.",
                                   "function,kind");
    app.m_kills = metrics_counter(reg, "minilambda_sandbox_kills_total",
                                  "Instances killed or lost, by reason (timeout, memory, pids, crash).",
                                  "function,reason");
    app.m_dlq = metrics_gauge(reg, "minilambda_dlq_messages",
                              "Dead-lettered events neither replayed nor deleted (absent while "
                              "Postgres is unreachable).", NULL);
}

/* Everything but the HTTP server; ML_ERR logged. */
static int start_parts(svc *s)
{
    char err[512], report[512];
    pool_config pc = { .idle_ttl_ms = app.idle_ttl_s * 1000, .max_instances = app.max_instances,
                       .metrics = s->metrics };

    app.registry_cfg.redis_url = app.deps.redis_url;
    app.registry_cfg.thread_db = thread_db;
    app.registry_cfg.thread_db_ud = &app;
    app.audit_cfg.db_url = app.deps.lambda_db_url;
    app.audit_cfg.statement_timeout_ms = app.deps.db_statement_timeout_ms;
    app.audit_cfg.thread_db = thread_db;
    app.audit_cfg.thread_db_ud = &app;
    if (sandbox_init("minilambda", report, sizeof(report)) != ML_OK) {
        ml_log_error("sandbox unavailable: %s", report);
        return ML_ERR;
    }
    if (artifacts_init(&app.artifacts, app.artifact_dir) != ML_OK) {
        ml_log_error("cannot use artifact cache %s", app.artifact_dir);
        return ML_ERR;
    }
    if (artifacts_stage_runtimes(&app.artifacts, app.runtimes_dir, app.runtimes_staged,
                                 sizeof(app.runtimes_staged), err, sizeof(err)) != ML_OK) {
        ml_log_error("cannot stage the runtimes: %s", err);
        return ML_ERR;
    }
    app.runtimes_dir = app.runtimes_staged;
    if (!(app.registry = registry_new(&app.registry_cfg, s, err, sizeof(err))) ||
        !(app.audit = audit_start(&app.audit_cfg, s, err, sizeof(err))) ||
        !(app.pool = pool_new(&pc))) {
        ml_log_error("cannot start the executor: %s", err);
        return ML_ERR;
    }
    return ML_OK;
}

static void *destinations_main(void *arg)
{
    outbox_run(arg, 100);
    return NULL;
}

/* Depth and consumers of the async invocation queues (see queuestats.h). */
static qstats *start_queue_stats(svc *s, char *err, size_t errlen)
{
    qstats_config qc = { .amqp_url = app.deps.amqp_url, .queues = stats_queues,
                         .nqueues = ML_ARRAY_LEN(stats_queues),
                         .interval_ms = app.queue_stats_interval_ms,
                         .connection_name = "lambda-executor queue stats", .metrics = s->metrics };

    return qstats_start(&qc, err, errlen);
}

/* Async consumers, the destination dispatcher and the DLQ gauge; returns how many threads
 * started. */
static size_t start_workers(svc *s, pthread_t *threads, outbox **box)
{
    char err[256];
    size_t n = 0;
    outbox_config oc = { .kind = OUTBOX_DESTINATIONS, .db_url = app.deps.lambda_db_url,
                         .internal_secret = app.registry_cfg.webhook_secret, .metrics = s->metrics,
                         .ssrf = { app.allow_loopback, app.allow_private }, .should_stop = svc_stopping };

    for (int64_t i = 0; i < app.async_consumers; i++)
        if (pthread_create(&threads[n], NULL, async_main, &app) == 0)
            n++;
    if (pthread_create(&threads[n], NULL, schedules_main, &app) == 0)
        n++;
    if (pthread_create(&threads[n], NULL, dlq_gauge_main, &app) == 0)
        n++;
    if (!(*box = outbox_new(&oc, err, sizeof(err))))
        ml_log_error("destinations disabled: %s", err);
    else if (pthread_create(&threads[n], NULL, destinations_main, *box) == 0)
        n++;
    return n;
}

int main(int argc, char **argv)
{
    cfg_var vars[SVC_MAX_CONFIG];
    httpd_route routes[MAX_ROUTES];
    svc s;
    size_t n = executor_vars(&s, vars, ML_ARRAY_LEN(vars)), nroutes = 0, nthreads = 0;
    pthread_t threads[MAX_CONSUMERS + 3];
    outbox *box = NULL;
    qstats *stats = NULL;
    deps d = { 0 };
    char err[256];
    int rc = 1;

    if (httpc_global_init() != ML_OK ||
        svc_init(&s, "lambda-executor", "MINILAMBDA_EXECUTOR_PORT", "8081", vars, n, argc,
                 argv) != ML_OK)
        return 1;
    metrics_set_max_functions((size_t)app.metrics_max_functions);
    register_metrics(s.metrics);
    if (schedules_init(s.metrics) != ML_OK)
        goto out;
    /* Redis is a cache here: warm functions keep serving without it. */
    if (deps_open(&d, &app.deps, EX_NEED, &topo_invoke, true, &s) != ML_OK || start_parts(&s) != ML_OK)
        goto out;
    nroutes += invoke_routes(&app, routes + nroutes, MAX_ROUTES - nroutes);
    nroutes += registry_routes(app.registry, routes + nroutes, MAX_ROUTES - nroutes);
    nroutes += audit_routes(app.audit, routes + nroutes, MAX_ROUTES - nroutes);
    nroutes += dlq_routes(&app, routes + nroutes, MAX_ROUTES - nroutes);
    nroutes += schedules_routes(&app, routes + nroutes, MAX_ROUTES - nroutes);
    if (!(stats = start_queue_stats(&s, err, sizeof(err)))) {
        ml_log_error("%s", err);
        goto out;
    }
    nthreads = start_workers(&s, threads, &box);
    rc = svc_serve(&s, routes, nroutes) == ML_OK ? 0 : 1;
    svc_request_stop();
    for (size_t i = 0; i < nthreads; i++) /* each finishes the event in hand */
        pthread_join(threads[i], NULL);
    outbox_free(box);
out:
    qstats_stop(stats);
    pool_free(app.pool);
    audit_stop(app.audit);     /* flushes every queued audit row */
    registry_free(app.registry);
    deps_close(&d);
    svc_free(&s);
    return rc;
}
