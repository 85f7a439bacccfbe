/* app.c — creates, hands down and frees the executor's dependencies (see app.h). */
#include "app.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "fnlog.h"
#include "log.h"
#include "netns.h"
#include "pgpool.h"
#include "runtimes_http.h"
#include "sandbox.h"
#include "topology.h"

/* What deps_thread makes; the thread's Redis client is the registry's (below). */
#define THREAD_NEED (EX_NEED & ~DEPS_REDIS)

/* The executor's capabilities (docs/health.md): what each family of routes needs.
 * A sync invoke needs the function's code (from S3, or already unpacked on this host), a
 * sandbox and room in the audit log; its metadata comes from any cache, so neither Postgres
 * nor Redis. An Event invoke needs the broker; reads the database or the Redis cache;
 * writes (PUT/PATCH/DELETE, build-status webhooks) the database. */
static const health_cap ex_caps[] = {
    { "invoke", { "sandbox", "audit_log" }, { "s3", "artifacts" } },
    { "async", { "rabbitmq" }, { NULL } },
    { "read", { NULL }, { "postgres", "redis" } },
    { "write", { "postgres" }, { NULL } },
};

/* A Redis client for the invoke path (the registry's lookups): a frozen Redis costs an
 * invocation at most EX_REDIS_TIMEOUT_MS, once, before the registry's breaker skips Redis
 * (registry_cache.c). NULL (logged) if it cannot be made, which only costs the cache. */
static rds_conn *lookup_redis(const ex_app *app)
{
    rds_options o = { .connect_timeout_ms = EX_REDIS_TIMEOUT_MS,
                      .command_timeout_ms = EX_REDIS_TIMEOUT_MS };
    char err[256];
    rds_conn *c = rds_new(app->deps.redis_url, &o, err, sizeof(err));

    if (!c)
        ml_log_error("cannot create a Redis client: %s", err);
    return c;
}

deps *app_thread_deps(ex_app *app)
{
    deps *d = deps_thread_pooled(&app->deps, THREAD_NEED, &topo_invoke, "lambda-executor",
                                 &app->db_pool);

    if (d && !d->redis) /* freed with the rest of d when the thread exits */
        d->redis = lookup_redis(app);
    return d;
}

static deps *thread_deps(void *ud)
{
    return app_thread_deps(ud);
}

/* The audit log's thread_db callback (ud: the ex_app): borrows this thread's connection
 * (NULL when there is none, or no pooled one came free in time). */
static pg_conn *thread_db(void *ud)
{
    deps *d = app_thread_deps(ud);

    return d && deps_db_acquire(d) == PGPOOL_OK ? d->db : NULL;
}

/* The audit log's thread_db_release callback: gives back what thread_db lent. */
static void thread_db_release(void *ud)
{
    deps *d = app_thread_deps(ud);

    if (d)
        deps_db_release(d);
}

static size_t own_vars(ex_app *app, svc *s, cfg_var *vars, size_t max)
{
    const cfg_var own[] = {
        { "MINILAMBDA_ARTIFACT_CACHE_DIR", CFG_STR, "/tmp/minilambda-artifacts", 0, 0, NULL,
          "where the executor keeps unpacked function code, one directory per artifact sha256", &app->artifact_dir, false },
        { "MINILAMBDA_RUNTIMES_DIR", CFG_STR, "services/lambda-executor/runtimes", 0, 0, NULL,
          "the runtime bootstraps (python3/bootstrap.py, nodejs/bootstrap.js)", &app->runtimes_dir, false },
        { "MINILAMBDA_RUNTIMES", CFG_STR, "", 0, 0, NULL,
          "runtime interpreters: name=/path,... (python3.N, nodejsN.x); the rest are discovered "
          "(docs/versions.md \"Runtimes\")", &app->runtimes_cfg, false },
        { "MINILAMBDA_PYTHON", CFG_STR, "/usr/bin/python3", 0, 0, NULL,
          "the default python: the python3 runtime alias", &app->python_cfg, false },
        { "MINILAMBDA_NODE", CFG_STR, "", 0, 0, NULL,
          "the default node: the nodejs runtime alias (empty: node on the usual paths and PATH)",
          &app->node_cfg, false },
        { "MINILAMBDA_POOL_IDLE_TTL_S", CFG_INT, "300", 1, 86400, NULL,
          "idle sandboxed instances are stopped after this long", &app->idle_ttl_s, false },
        { "MINILAMBDA_POOL_MAX_INSTANCES", CFG_INT, "256", 1, 100000, NULL,
          "sandboxed instances on this executor, all functions together", &app->max_instances, false },
        { "MINILAMBDA_POOL_QUEUE_WAIT_MS", CFG_INT, "100", 0, 60000, NULL,
          "how long an invocation waits for a busy function's instance before 429", &app->queue_wait_ms, false },
        { "MINILAMBDA_STEM_CELLS", CFG_INT, "2", 0, 16, NULL,
          "sandboxes started ahead per runtime once it is used (stem cells: cold starts skip the "
          "interpreter's start-up; docs/sandbox.md); 0: none", &app->stem_cells, false },
        { "MINILAMBDA_FUNCTION_PIDS_MAX", CFG_INT, "64", 4, 4096, NULL,
          "processes and threads one function instance may have", &app->pids_max, false },
        { "MINILAMBDA_ASYNC_CONSUMERS", CFG_INT, "4", 1, EX_MAX_CONSUMERS, NULL,
          "threads running queued (Event, cron, replay) invocations on this executor", &app->async_consumers, false },
        { "MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK", CFG_BOOL, "false", 0, 0, NULL,
          "let users' webhook URLs reach loopback addresses (local stack only)", &app->allow_loopback, false },
        { "MINILAMBDA_WEBHOOK_ALLOW_PRIVATE", CFG_BOOL, "false", 0, 0, NULL,
          "let users' webhook URLs reach private networks (10/8, 172.16/12, 192.168/16 ...)", &app->allow_private, false },
        { "MINILAMBDA_QUEUE_STATS_INTERVAL_MS", CFG_INT, "5000", 100, 600000, NULL,
          "how often the queue depth gauges (broker queues; executor: also the DLQ size) are refreshed", &app->queue_stats_interval_ms, false },
        { "MINILAMBDA_METRICS_MAX_FUNCTIONS", CFG_INT, "200", 1, 10000, NULL,
          "distinct function label values in metrics; the rest are counted as _other", &app->metrics_max_functions, false },
        { "MINILAMBDA_LOG_MAX_BYTES_PER_INVOCATION", CFG_INT, "4194304", 0, 1073741824, NULL,
          "function output (stdout+stderr) kept in the function's log per invocation; the rest "
          "is counted and dropped (docs/logs.md)", &app->log_max_bytes, false },
        /* each in-flight invocation holds a worker thread while it waits for its sandbox */
        { "MINILAMBDA_HTTP_WORKERS", CFG_INT, "512", 1, 4096, NULL,
          "worker threads for HTTP handlers that block (database, S3, waiting on a sandbox)", &s->http_workers, false },
    };
    size_t n = 0;

    for (; n < ML_ARRAY_LEN(own) && n < max; n++)
        vars[n] = own[n];
    return n;
}

/* The functions' network (docs/network.md, netns.h). */
static size_t net_vars(ex_app *app, cfg_var *vars, size_t max)
{
    const cfg_var own[] = {
        { "MINILAMBDA_FUNCTION_NETWORK", CFG_BOOL, "false", 0, 0, NULL,
          "functions may ask for network (\"network\": true): each gets its own namespace behind "
          "a NAT with the egress policy; false: none may (400)", &app->network, false },
        { "MINILAMBDA_NETWORK_ALLOW", CFG_STR, "", 0, 0, NULL,
          "internal destinations network functions may reach anyway: comma-separated IPv4 CIDR[:port]",
          &app->net.allow, false },
        { "MINILAMBDA_NETWORK_DNS", CFG_STR, NETNS_SLIRP_DNS, 0, 0, NULL,
          "the functions' DNS server (default: the NAT's forwarder to the host's resolvers)", &app->net.dns, false },
        { "MINILAMBDA_NETWORK_UPSTREAM_NETNS", CFG_STR, "", 0, 0, NULL,
          "network namespace (path) the NAT sends from; empty: the executor's", &app->net.upstream, false },
        { "MINILAMBDA_NETWORK_POOL", CFG_INT, "4", 1, NETNS_MAX_POOL, NULL,
          "network namespaces kept ready (setting one up takes ~30 ms)", &app->net_pool, false },
        { "MINILAMBDA_NETWORK_HOST", CFG_BOOL, "false", 0, 0, NULL,
          "UNSAFE, local tests only: every function shares the executor's network namespace, no policy",
          &app->network_host, false },
    };
    size_t n = 0;

    for (; n < ML_ARRAY_LEN(own) && n < max; n++)
        vars[n] = own[n];
    return n;
}

size_t app_cfg_vars(ex_app *app, svc *s, cfg_var *vars, size_t max)
{
    size_t n = deps_cfg_vars(&app->deps, EX_NEED, vars, max);

    n += deps_pool_cfg_vars(&app->deps, vars + n, max - n);

    n += own_vars(app, s, vars + n, max - n);
    n += net_vars(app, vars + n, max - n);
    n += registry_cfg_vars(&app->registry_cfg, vars + n, max - n);
    n += audit_cfg_vars(&app->audit_cfg, vars + n, max - n);
    n += logs_cfg_vars(&app->logs_cfg, vars + n, max - n);
    return n;
}

static void register_metrics(ex_app *app, metrics_registry *reg)
{
    app->m_invocations = metrics_counter(reg, "minilambda_invocations_total",
                                         "Invocations by function, trigger and outcome.",
                                         "function,trigger,status,namespace");
    app->m_duration = metrics_histogram(reg, "minilambda_invocation_duration_seconds",
                                        "Handler run time per invocation.", "function,namespace", NULL, 0);
    app->m_starts = metrics_counter(reg, "minilambda_invocation_starts_total",
                                    "Invocations served by a new (cold) or reused (warm) instance.",
                                    "function,kind,namespace");
    app->m_kills = metrics_counter(reg, "minilambda_sandbox_kills_total",
                                   "Instances killed or lost, by reason (timeout, memory, pids, crash).",
                                   "function,reason,namespace");
    app->m_dlq = metrics_gauge(reg, "minilambda_dlq_messages",
                               "Dead-lettered events neither replayed nor deleted (absent while "
                               "Postgres is unreachable).", NULL);
}

/* The sandbox and the artifact cache with its staged runtimes; ML_ERR logged. */
static int start_code(ex_app *app)
{
    char err[512], report[512];

    if (sandbox_init("minilambda", report, sizeof(report)) != ML_OK) {
        ml_log_error("sandbox unavailable: %s", report);
        return ML_ERR;
    }
    app->net.pool = (int)app->net_pool;
    if (app->network && !app->network_host && netns_init(&app->net, err, sizeof(err)) != ML_OK) {
        ml_log_error("function network unavailable (MINILAMBDA_FUNCTION_NETWORK=true): %s", err);
        return ML_ERR;
    }
    if (artifacts_init(&app->artifacts, app->artifact_dir) != ML_OK) {
        ml_log_error("cannot use artifact cache %s", app->artifact_dir);
        return ML_ERR;
    }
    if (artifacts_stage_runtimes(&app->artifacts, app->runtimes_dir, app->runtimes_staged,
                                 sizeof(app->runtimes_staged), err, sizeof(err)) != ML_OK) {
        ml_log_error("cannot stage the runtimes: %s", err);
        return ML_ERR;
    }
    app->runtimes_dir = app->runtimes_staged;
    return rth_start(app);
}

/* The registry, the audit log and the pools; ML_ERR logged. */
static int start_parts(ex_app *app, svc *s)
{
    char err[512] = "";
    pool_config pc = { .idle_ttl_ms = app->idle_ttl_s * 1000, .max_instances = app->max_instances,
                       .metrics = s->metrics };
    sandbox_stem_config sc = { .per_runtime = app->stem_cells, .pids_max = app->pids_max,
                               .metrics = s->metrics };

    app->registry_cfg.network_allowed = app->network;
    app->registry_cfg.runtimes = &app->runtimes;
    app->registry_cfg.thread_deps = thread_deps;
    app->registry_cfg.thread_deps_ud = app;
    app->registry_cfg.ssrf = (ssrf_policy){ app->allow_loopback, app->allow_private };
    app->audit_cfg.db_url = app->deps.lambda_db_url;
    app->audit_cfg.statement_timeout_ms = app->deps.db_statement_timeout_ms;
    app->audit_cfg.thread_db = thread_db;
    app->audit_cfg.thread_db_release = thread_db_release;
    app->audit_cfg.thread_db_ud = app;
    if (!(app->registry = registry_new(&app->registry_cfg, s, err, sizeof(err))) ||
        !(app->audit = audit_start(&app->audit_cfg, s, err, sizeof(err))) ||
        !(app->stems = pc.stems = sandbox_stem_pool_new(&sc)) || !(app->pool = pool_new(&pc)) ||
        !(app->versions = qualifier_new(app->registry, app->registry_cfg.local_ttl_ms, thread_deps, app))) {
        ml_log_error("cannot start the executor: %s", err);
        return ML_ERR;
    }
    registry_seal_at_rest(app->registry); /* logged; the next start tries again */
    return ML_OK;
}

/* The function-log writer and, when logs are stored, their retention; ML_ERR logged. */
static int start_logs(ex_app *app, svc *s)
{
    app->logs_cfg.q.db_url = app->deps.lambda_db_url;
    logq_watch_limit_drops(fnlog_limit_dropped_lines);
    if (logq_start(&app->logs_cfg.q, s->metrics) != ML_OK)
        return ML_ERR;
    if (logs_follow_start(&app->logs_cfg) != ML_OK)
        return ML_ERR;
    return app->logs_cfg.q.enabled ? logs_maint_start(&app->logs_cfg, s->metrics) : ML_OK;
}

/* Health check "sandbox": instances can be made (the staged runtimes are readable and the
 * code cache writable; sandbox_init itself passed at start). */
static int check_sandbox(void *ud, char *err, size_t errlen)
{
    const ex_app *app = ud;

    if (access(app->runtimes_dir, R_OK | X_OK) != 0 || access(app->artifact_dir, W_OK | X_OK) != 0) {
        ml_snprintf_trunc(err, errlen, "runtimes or code cache unusable: %s", strerror(errno));
        return ML_ERR;
    }
    return ML_OK;
}

/* Health check "artifacts": the code cache can be read, so invokes of the functions it holds
 * need no S3. An empty cache is no fault (it fills as functions run), so a fresh executor is
 * not "degraded"; with S3 down as well, only the uncached functions' invokes fail. */
static int check_artifacts(void *ud, char *err, size_t errlen)
{
    ex_app *app = ud;

    if (artifacts_cached(&app->artifacts, 1) >= 0)
        return ML_OK;
    ml_snprintf_trunc(err, errlen, "cannot read the code cache");
    return ML_ERR;
}

/* Health check "audit_log": the write-ahead log takes rows (an invocation needs one). */
static int check_audit_log(void *ud, char *err, size_t errlen)
{
    ex_app *app = ud;

    if (audit_available(app->audit))
        return ML_OK;
    ml_snprintf_trunc(err, errlen, "the audit log takes no more rows");
    return ML_ERR;
}

/* The executor's own checks and its capabilities, after every other check is added. */
static int start_health(ex_app *app, svc *s)
{
    if (health_add(&s->health, "sandbox", check_sandbox, app, false) != ML_OK ||
        health_add(&s->health, "artifacts", check_artifacts, app, false) != ML_OK ||
        health_add(&s->health, "audit_log", check_audit_log, app, false) != ML_OK ||
        health_set_caps(&s->health, ex_caps, ML_ARRAY_LEN(ex_caps)) != ML_OK) {
        ml_log_error("cannot register the health checks");
        return ML_ERR;
    }
    return ML_OK;
}

int app_start(ex_app *app, svc *s)
{
    metrics_set_max_functions((size_t)app->metrics_max_functions);
    register_metrics(app, s->metrics);
    /* Redis is a cache here: warm functions keep serving without it. */
    if (deps_open(&app->health, &app->deps, EX_NEED, &topo_invoke, true, s) != ML_OK ||
        deps_pool_start(&app->db_pool, &app->deps, EX_NEED, s) != ML_OK || start_code(app) != ML_OK ||
        start_parts(app, s) != ML_OK || start_logs(app, s) != ML_OK || start_health(app, s) != ML_OK)
        return ML_ERR;
    return ML_OK;
}

void app_stop(ex_app *app)
{
    pool_free(app->pool);
    app->pool = NULL;
    sandbox_stem_pool_free(app->stems);   /* after the pools: they borrow it */
    app->stems = NULL;
    netns_shutdown();   /* after the instances (no-op unless started) */
    logs_follow_stop(); /* the HTTP server has stopped: its streams are over */
    logs_maint_stop();
    logq_stop(2000);    /* after the instances: writes their last lines (bounded) */
    audit_stop(app->audit); /* flushes every queued audit row */
    app->audit = NULL;
    qualifier_free(app->versions);
    app->versions = NULL;
    registry_free(app->registry); /* joins the fnwait thread, the last borrower */
    app->registry = NULL;
    /* after every thread that borrows from it (HTTP workers and background threads were
     * joined before app_stop, the fnwait thread just now), before the metrics go */
    if (pgpool_close(&app->db_pool, 5000) != PGPOOL_OK)
        ml_log_warn("postgres pool: connections still borrowed at shutdown");
    deps_close(&app->health);
}
