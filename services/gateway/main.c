/* gateway — the public door: auth, rate limits, routing, upstream health (see API.md and
 * docs/gateway.md). */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "deps.h"
#include "gateway.h"
#include "intauth.h"
#include "log.h"
#include "service.h"
#include "token.h"

static gw_settings cfg;
static deps_config dcfg;
static gw_app app;
static ml_intauth_cfg icfg;
static const char *access_log_sample;

#define INT_VAR(name, def, min, max, help, dest) \
    (cfg_var){ name, CFG_INT, def, min, max, NULL, help, dest, false }

static size_t gateway_vars(cfg_var *v)
{
    size_t n = deps_cfg_vars(&dcfg, DEPS_REDIS, v, 4);

    v[n++] = (cfg_var){ "MINILAMBDA_JWT_SECRET", CFG_STR, NULL, 0, 0, NULL,
                        "HS256 secret that signs client JWTs", &cfg.jwt_secret, true };
    v[n++] = INT_VAR("MINILAMBDA_JWT_LEEWAY_S", "30", 0, 300, "clock skew allowed on a token's exp and nbf (seconds)", &cfg.jwt_leeway_s);
    v[n++] = (cfg_var){ "MINILAMBDA_BUILD_MASTER_URLS", CFG_STR, "http://127.0.0.1:8082", 0, 0,
                        NULL, "comma-separated build-master base URLs", &cfg.build_master_urls, false };
    v[n++] = (cfg_var){ "MINILAMBDA_EXECUTOR_URLS", CFG_STR, "http://127.0.0.1:8081", 0, 0,
                        NULL, "comma-separated lambda-executor base URLs", &cfg.executor_urls, false };
    v[n++] = INT_VAR("MINILAMBDA_DEFAULT_RATE_LIMIT_RPS", "100", 1, 1000000, "invocations per second per function without its own rate_limit", &cfg.default_rps);
    v[n++] = INT_VAR("MINILAMBDA_DEFAULT_RATE_LIMIT_BURST", "100", 1, 1000000, "burst per function without its own rate_limit", &cfg.default_burst);
    v[n++] = INT_VAR("MINILAMBDA_BUILD_RATE_LIMIT_PER_MIN", "30", 1, 100000, "build submissions (POST /functions, PUT code) per minute per token subject", &cfg.build_per_minute);
    v[n++] = INT_VAR("MINILAMBDA_BUILD_RATE_LIMIT_BURST", "10", 1, 100000, "burst of build submissions per token subject", &cfg.build_burst);
    v[n++] = INT_VAR("MINILAMBDA_GATEWAY_REDIS_TIMEOUT_MS", "100", 10, 10000, "Redis connect/command timeout for rate limiting before falling back to memory", &cfg.redis_timeout_ms);
    v[n++] = INT_VAR("MINILAMBDA_GATEWAY_FN_CACHE_TTL_MS", "5000", 100, 600000, "how long a function's timeout_s and rate_limit are cached", &cfg.fn_cache_ttl_ms);
    v[n++] = INT_VAR("MINILAMBDA_GATEWAY_UPSTREAM_TIMEOUT_S", "60", 1, 3600, "upstream timeout of non-invoke routes (seconds)", &cfg.upstream_timeout_s);
    v[n++] = INT_VAR("MINILAMBDA_GATEWAY_INVOKE_TIMEOUT_MARGIN_S", "10", 0, 600, "invoke routes wait the function's timeout_s plus this (seconds)", &cfg.invoke_margin_s);
    v[n++] = INT_VAR("MINILAMBDA_GATEWAY_CONNECT_TIMEOUT_MS", "1000", 10, 60000, "upstream connect timeout (ms)", &cfg.connect_timeout_ms);
    v[n++] = INT_VAR("MINILAMBDA_GATEWAY_MAX_RESPONSE_BYTES", "8388608", 1024, 268435456, "largest upstream response body relayed", &cfg.max_response_bytes);
    v[n++] = INT_VAR("MINILAMBDA_GATEWAY_HEALTH_INTERVAL_MS", "2000", 100, 60000, "interval of active upstream health checks (GET /health)", &cfg.health_interval_ms);
    v[n++] = INT_VAR("MINILAMBDA_GATEWAY_BREAKER_FAILURES", "5", 1, 1000, "consecutive failures that open an instance's circuit breaker", &cfg.breaker_failures);
    v[n++] = INT_VAR("MINILAMBDA_GATEWAY_BREAKER_OPEN_MS", "5000", 100, 600000, "how long an open breaker refuses traffic before half-open probes", &cfg.breaker_open_ms);
    v[n++] = INT_VAR("MINILAMBDA_GATEWAY_BREAKER_PROBES", "2", 1, 100, "half-open: concurrent probes, and successes needed to close", &cfg.breaker_probes);
    v[n++] = INT_VAR("MINILAMBDA_GATEWAY_KEEPALIVE_CONNECTIONS", "1024", 1, 100000, "idle keep-alive upstream connections kept per proxy thread", &cfg.keepalive_conns);
    v[n++] = INT_VAR("MINILAMBDA_FNURL_IP_RPS", "20", 1, 1000000, "requests per second per client IP on a public (auth NONE) function URL", &cfg.fnurl_ip_rps);
    v[n++] = INT_VAR("MINILAMBDA_FNURL_IP_BURST", "40", 1, 1000000, "burst per client IP on a public (auth NONE) function URL", &cfg.fnurl_ip_burst);
    v[n++] = INT_VAR("MINILAMBDA_METRICS_MAX_FUNCTIONS", "200", 1, 10000, "distinct function label values in metrics; the rest are counted as _other", &cfg.metric_max_functions);
    v[n++] = (cfg_var){ "MINILAMBDA_AWS_ACCESS_KEY", CFG_STR, "", 0, 0, NULL,
                        "access key id accepted with SigV4 on the AWS Invoke API (empty: Bearer only)",
                        &cfg.aws_access_key, false };
    v[n++] = (cfg_var){ "MINILAMBDA_AWS_SECRET_KEY", CFG_STR, "", 0, 0, NULL,
                        "secret key of MINILAMBDA_AWS_ACCESS_KEY", &cfg.aws_secret_key, true };
    v[n++] = (cfg_var){ "MINILAMBDA_AWS_REGION", CFG_STR, "us-east-1", 0, 0, NULL,
                        "the region the AWS API's ARNs name (docs/aws-compat.md)",
                        &cfg.aws_region, false };
    v[n++] = (cfg_var){ "MINILAMBDA_ACCESS_LOG", CFG_STR, "-", 0, 0, NULL,
                        "access log: - (stdout), off, or a file path (appended, reopened on SIGHUP)",
                        &cfg.access_log, false };
    v[n++] = (cfg_var){ "MINILAMBDA_ACCESS_LOG_SAMPLE", CFG_STR, "1.0", 0, 0, NULL,
                        "share (0..1) of successful requests in the access log; refused and failed ones are always logged",
                        &access_log_sample, false };
    n += ml_intauth_cfg_vars(&icfg, v + n, ML_INTAUTH_CFG_VARS); /* sent upstream by the proxy */
    return n;
}

int main(int argc, char **argv)
{
    cfg_var vars[48]; /* room to spare: gateway_vars writes without a bound check */
    httpd_route routes[GW_MAX_ROUTES];
    size_t n;
    svc s;
    deps d = { 0 };
    char err[256];
    int rc = 1;

    if (argc > 1 && strcmp(argv[1], "token") == 0)
        return token_main(argc, argv);
    n = gateway_vars(vars);
    if (httpc_global_init() != ML_OK ||
        svc_init(&s, "gateway", "MINILAMBDA_GATEWAY_PORT", "8080", vars, n, argc, argv) != ML_OK ||
        ml_intauth_start(&icfg) != ML_OK)
        return 1;
    /* A handful of threads do all the allocating here, so the two shared arenas svc_init keeps
     * for thread-heavy daemons only make the loops contend: one arena each, plus the rest
     * (measured: +10% requests/s). */
    mallopt(M_ARENA_MAX, (int)s.http_threads + 2);
    cfg.redis_url = dcfg.redis_url;
    if (gw_alog_parse_sample(access_log_sample, &cfg.access_log_sample) != ML_OK) {
        ml_log_error("gateway: MINILAMBDA_ACCESS_LOG_SAMPLE must be a number from 0 to 1");
        goto out;
    }
    if (gw_app_init(&app, &cfg, s.metrics, err, sizeof(err)) != ML_OK) {
        ml_log_error("gateway: %s", err);
        goto out;
    }
    /* upstreams and Redis only degrade the gateway: it keeps answering (503/fallback) */
    if (health_add(&s.health, "build-master", gw_app_check_pool, &app.pools[GW_SVC_BUILD_MASTER], false) != ML_OK ||
        health_add(&s.health, "lambda-executor", gw_app_check_pool, &app.pools[GW_SVC_EXECUTOR], false) != ML_OK ||
        deps_open(&d, &dcfg, DEPS_REDIS, NULL, true, &s) != ML_OK)
        goto out;
    /* MINILAMBDA_HTTP_THREADS loops, each serving its share of client connections and their
     * upstream transfers; nothing is served before gw_app_start runs them */
    s.http_external = true;
    s.http_shape_reject = gw_aws_shape_reject; /* e.g. 413 RequestTooLargeException */
    s.http_done = gw_alog_done; /* every request, refused before routing too */
    s.http_done_ud = app.alog;
    if (svc_start_http(&s, routes, gw_app_routes(&app, routes, ML_ARRAY_LEN(routes))) != ML_OK)
        goto out;
    if (gw_app_start(&app, s.http, err, sizeof(err)) != ML_OK) {
        ml_log_error("gateway: %s", err);
        goto out;
    }
    svc_wait_ready(&s); /* nothing is required: this only logs what is still down */
    svc_wait_signal(&s);
    gw_app_drain(&app);
    httpd_drain(s.http); /* the loops answer what is in flight, then stop */
    gw_app_stop(&app);
    svc_stop_http(&s);
    rc = 0;
out:
    /* the HTTP server has drained: no handler can hand over a request any more */
    gw_app_stop(&app);
    gw_app_free(&app);
    deps_close(&d);
    svc_free(&s);
    httpc_global_cleanup();
    return rc;
}
