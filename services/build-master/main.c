/* build-master — accepts function packages, stores them in S3, records builds in Postgres
 * and publishes build jobs to RabbitMQ (see API.md). */
#include <pthread.h>

#include "api.h"
#include "buildlog_http.h"
#include "deliveries_http.h"
#include "intauth.h"
#include "log.h"
#include "pgpool.h"
#include "queuestats.h"
#include "service.h"
#include "sweeper.h"
#include "topology.h"
#include "webhook.h"

static bm_app app;
static ml_intauth_cfg icfg;

static const char *const stats_queues[] = { TOPO_BUILD_QUEUE, TOPO_BUILD_DEAD_QUEUE };

int main(int argc, char **argv)
{
    cfg_var vars[28];
    httpd_route routes[16];
    size_t nroutes;
    size_t n = deps_cfg_vars(&app.deps, BM_NEED, vars, ML_ARRAY_LEN(vars));
    svc s;
    deps d = { 0 };
    pthread_t sweeper;
    qstats *stats = NULL;
    qstats_config qc = { .queues = stats_queues, .nqueues = ML_ARRAY_LEN(stats_queues),
                         .connection_name = "build-master queue stats" };
    char err[256];
    int rc = 1;

    n += deps_pool_cfg_vars(&app.deps, vars + n, ML_ARRAY_LEN(vars) - n);
    vars[n++] = (cfg_var){ "MINILAMBDA_EXECUTOR_WEBHOOK_URL", CFG_URL, "http://127.0.0.1:8081",
                           0, 0, "http|https", "lambda-executor base URL that receives build-status webhooks",
                           &app.executor_url, false };
    vars[n++] = (cfg_var){ "MINILAMBDA_INTERNAL_WEBHOOK_SECRET", CFG_STR, "", 0, 0, NULL,
                           "whsec_ secret signing build-status webhooks to the lambda-executor; here: the"
                           " queued event sent before 202 (unset: the outbox alone delivers it)",
                           &app.internal_secret, true };
    vars[n++] = (cfg_var){ "MINILAMBDA_BUILD_SWEEP_AFTER_S", CFG_INT, "30", 1, 86400, NULL,
                           "republish a queued build whose job was never confirmed after this long",
                           &app.sweep_after_s, false };
    vars[n++] = (cfg_var){ "MINILAMBDA_QUEUE_STATS_INTERVAL_MS", CFG_INT, "5000", 100, 600000, NULL,
                           "how often the queue depth gauges (broker queues; executor: also the DLQ size) are refreshed",
                           &qc.interval_ms, false };
    n += bm_secrets_cfg_vars(&app, vars + n, ML_ARRAY_LEN(vars) - n);
    n += ml_intauth_cfg_vars(&icfg, vars + n, ML_ARRAY_LEN(vars) - n);
    if (httpc_global_init() != ML_OK ||
        svc_init(&s, "build-master", "MINILAMBDA_BUILD_MASTER_PORT", "8082", vars, n, argc,
                 argv) != ML_OK || ml_intauth_start(&icfg) != ML_OK)
        return 1;
    ml_intauth_protect(&s); /* every route but /health, /ready/{cap}, /metrics */
    bmr_init(&app.runtimes);
    if (app.internal_secret && app.internal_secret[0] &&
        webhook_secret_valid(app.internal_secret) != ML_OK) {
        ml_log_error("MINILAMBDA_INTERNAL_WEBHOOK_SECRET must be whsec_ + base64 of 24..64 bytes");
        svc_free(&s);
        return 1;
    }
    app.m_accepted = metrics_counter(s.metrics, "minilambda_builds_submitted_total",
                                     "Build submissions by result (accepted, conflict, *_unavailable).",
                                     "result");
    qc.amqp_url = app.deps.amqp_url;
    qc.metrics = s.metrics;
    if (deps_open(&d, &app.deps, BM_NEED, &topo_builds, false, &s) != ML_OK || bm_health_caps(&s) != ML_OK ||
        deps_pool_start(&app.db_pool, &app.deps, BM_NEED, &s) != ML_OK || bm_secrets_start(&app) != ML_OK)
        goto out;
    if (!(stats = qstats_start(&qc, err, sizeof(err)))) {
        ml_log_error("%s", err);
        goto out;
    }
    if (pthread_create(&sweeper, NULL, sweeper_main, &app) != 0)
        goto out;
    nroutes = api_routes(&app, routes, ML_ARRAY_LEN(routes));
    nroutes += bm_buildlog_routes(&app, routes + nroutes, ML_ARRAY_LEN(routes) - nroutes);
    nroutes += bm_deliveries_routes(&app, routes + nroutes, ML_ARRAY_LEN(routes) - nroutes);
    rc = svc_serve(&s, routes, nroutes) == ML_OK ? 0 : 1;
    svc_request_stop();
    bm_buildlog_wait_followers(2000); /* each sees svc_stopping within one poll */
    pthread_join(sweeper, NULL);
out:
    qstats_stop(stats);
    /* after the HTTP workers and the sweeper (they borrow from it), before the metrics go */
    pgpool_close(&app.db_pool, 5000);
    deps_close(&d);
    bmr_free(&app.runtimes);
    svc_free(&s);
    return rc;
}
