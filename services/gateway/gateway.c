/* gateway.c — the request path (see gateway.h). */
#include "gateway.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "aws.h"
#include "headers.h"
#include "httpc.h"
#include "log.h"
#include "sigv4.h"

#define FN_LOOKUP_TIMEOUT_MS 2000
#define MAX_FUNCTION_TIMEOUT_S 900 /* API.md: timeout_s is at most 900 */
#define RL_KEY_PREFIX "ml:gw:rl:"
#define REALM "Bearer realm=\"minilambda\""

/* One client request on its way through the proxy; freed when it completes. */
typedef struct gw_call {
    httpd_req *req;
    httpd_resp *resp;
    gw_app *app;
    const gw_route_def *def;
} gw_call;

/* Query parameters the upstream APIs define (API.md); others are not forwarded. */
static const char *const query_params[] = { "limit", "cursor", "status" };

static const char *req_header(void *ud, const char *name)
{
    return httpd_header(ud, name);
}

static int64_t ceil_s(int64_t us)
{
    return (us + 999999) / 1000000;
}

static void header_int(httpd_resp *resp, const char *name, int64_t v)
{
    char s[24];

    snprintf(s, sizeof(s), "%" PRId64, v);
    httpd_resp_header(resp, name, s);
}

/* ---- auth ---- */

static gw_auth_result auth_sigv4(gw_app *a, httpd_req *req, const char *authz, gw_principal *who)
{
    gw_sigv4_creds creds = { a->cfg.aws_access_key, a->cfg.aws_secret_key, "lambda" };
    gw_sigv4_request r = { 0 };
    const char *qualifier = httpd_query(req, "Qualifier");
    ml_buf query = { 0 };
    char err[256];
    int rc;

    r.method = httpd_method(req);
    r.path = httpd_path(req);
    r.authorization = authz;
    r.header = req_header;
    r.header_ud = req;
    r.body = httpd_body(req, &r.body_len);
    if (qualifier && (ml_buf_append_str(&query, "Qualifier=") != ML_OK ||
                      gw_sigv4_uri_encode(qualifier, strlen(qualifier), &query) != ML_OK)) {
        ml_buf_free(&query);
        return GW_AUTH_SIGNATURE_V4;
    }
    r.query = ml_buf_cstr(&query);
    rc = gw_sigv4_verify(&r, &creds, (int64_t)time(NULL), err, sizeof(err));
    ml_buf_free(&query);
    if (rc != ML_OK) {
        ml_log_kv(ML_LOG_INFO, "SigV4 request rejected", "error", err, NULL);
        return GW_AUTH_SIGNATURE_V4;
    }
    snprintf(who->sub, sizeof(who->sub), "aws:%s", a->cfg.aws_access_key);
    who->scopes = GW_SCOPE_INVOKE;
    return GW_AUTH_OK;
}

/* ML_OK with *who set, or ML_ERR with a 401/403 written to resp. */
static int authenticate(gw_app *a, const gw_route_def *d, httpd_req *req, httpd_resp *resp,
                        gw_principal *who)
{
    const char *authz = httpd_header(req, "Authorization");
    gw_auth_result r;
    char challenge[160];

    memset(who, 0, sizeof(*who));
    if (d->kind == GW_KIND_AWS_INVOKE && gw_sigv4_present(authz))
        r = auth_sigv4(a, req, authz, who);
    else
        r = gw_auth_bearer(authz, a->cfg.jwt_secret, (int64_t)time(NULL), a->cfg.jwt_leeway_s, who);
    if (r == GW_AUTH_OK && !(who->scopes & d->scope))
        r = GW_AUTH_SCOPE;
    if (r == GW_AUTH_OK)
        return ML_OK;
    metric_inc(a->m_auth_failures, (const char *[]){ gw_auth_reason(r) });
    if (r == GW_AUTH_SCOPE) {
        snprintf(challenge, sizeof(challenge), REALM ", error=\"insufficient_scope\", scope=\"%s\"",
                 gw_scope_name(d->scope));
        httpd_resp_error(resp, 403, "forbidden", "%s (needs %s)", gw_auth_message(r),
                         gw_scope_name(d->scope));
    } else {
        snprintf(challenge, sizeof(challenge), "%s", r == GW_AUTH_MISSING ? REALM : REALM ", error=\"invalid_token\"");
        httpd_resp_error(resp, 401, "unauthorized", "%s", gw_auth_message(r));
    }
    httpd_resp_header(resp, "WWW-Authenticate", challenge);
    return ML_ERR;
}

/* ---- rate limits ---- */

static void limit_headers(httpd_resp *resp, const gcra_result *r)
{
    header_int(resp, "RateLimit-Limit", r->limit);
    header_int(resp, "RateLimit-Remaining", r->remaining);
    header_int(resp, "RateLimit-Reset", ceil_s(r->reset_after_us));
}

/* Takes one request from key's budget; ML_ERR with a 429 in resp when it is spent. */
static int take(gw_app *a, const char *key, gcra_limit lim, const char *kind, const char *label,
                httpd_resp *resp)
{
    gcra_result r;
    int64_t retry;

    gw_limiter_take(&a->limiter, key, lim, &r);
    metric_inc(a->m_decisions, (const char *[]){ kind, label, r.allowed ? "allowed" : "throttled" });
    if (r.allowed) {
        limit_headers(resp, &r);
        return ML_OK;
    }
    retry = ceil_s(r.retry_after_us);
    retry = retry < 1 ? 1 : retry;
    httpd_resp_error(resp, 429, "rate_limited", "%s rate limit exceeded: retry in %" PRId64 " s",
                     kind, retry);
    header_int(resp, "Retry-After", retry);
    limit_headers(resp, &r);
    return ML_ERR;
}

static int limit_function(gw_app *a, const char *fn, const gw_fn_info *info, httpd_resp *resp)
{
    gcra_limit lim = info->has_rate_limit
                         ? gcra_limit_rps(info->rps, info->burst)
                         : gcra_limit_rps((double)a->cfg.default_rps, a->cfg.default_burst);
    char key[GW_FN_NAME_MAX + 32];

    /* the id when known, so a function's name and id share one budget */
    snprintf(key, sizeof(key), RL_KEY_PREFIX "fn:%s", info->id[0] ? info->id : fn);
    return take(a, key, lim, "function",
                gw_labelcap_get(&a->fn_labels, info->name[0] ? info->name : fn), resp);
}

static int limit_builds(gw_app *a, const gw_principal *who, httpd_resp *resp)
{
    char key[GW_SUB_MAX + 32];

    snprintf(key, sizeof(key), RL_KEY_PREFIX "build:%s", who->sub);
    return take(a, key, gcra_limit_per_minute(a->cfg.build_per_minute, a->cfg.build_burst),
                "build", "", resp);
}

/* ---- upstream selection ---- */

/* 503 right away: nothing to wait for, no connect attempt on a known-dead instance. */
static void no_upstream(gw_app *a, gw_pool *p, httpd_resp *resp)
{
    metric_inc(a->m_proxy_errors, (const char *[]){ p->service, "no_upstream" });
    httpd_resp_error(resp, 503, "upstream_unavailable", "no healthy %s instance is available",
                     p->service);
    header_int(resp, "Retry-After", gw_pool_retry_after_s(p, ml_now_ms()));
}

/* ---- function lookups ---- */

static void httpc_destroy(void *h)
{
    httpc_free(h);
}

static httpc *thread_httpc(gw_app *a)
{
    httpc *h = pthread_getspecific(a->httpc_key);

    if (!h && (h = httpc_new()))
        pthread_setspecific(a->httpc_key, h);
    return h;
}

typedef enum { FETCH_OK = 0, FETCH_FAILED, FETCH_NO_UPSTREAM } fetch_result;

/* GET /functions/{fn} from an executor: *out->status 200 or 404 on FETCH_OK. */
static fetch_result fetch_function(gw_app *a, const char *fn, const char *request_id,
                                   gw_fn_info *out)
{
    gw_admit how;
    gw_instance *in = gw_pool_pick(&a->pools[GW_SVC_EXECUTOR], NULL, ml_now_ms(), &how);
    httpc *h = thread_httpc(a);
    ml_buf url = { 0 };
    char rid[160];
    const char *headers[] = { rid, NULL };
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    fetch_result r = FETCH_FAILED;
    bool answered = false;

    if (!in)
        return FETCH_NO_UPSTREAM;
    snprintf(rid, sizeof(rid), "X-Request-Id: %s", request_id);
    if (h && ml_buf_printf(&url, "%s/functions/", in->base_url) == ML_OK &&
        gw_sigv4_uri_encode(fn, strlen(fn), &url) == ML_OK) {
        req.url = url.data;
        req.headers = headers;
        req.connect_timeout_ms = a->cfg.connect_timeout_ms;
        req.timeout_ms = FN_LOOKUP_TIMEOUT_MS;
        answered = httpc_do(h, &req, &resp) == ML_OK && resp.status < 500;
        if (!answered)
            ml_log_warn("function lookup on %s failed: %s", in->base_url,
                        resp.status ? "the executor answered 5xx" : httpc_error(h));
    }
    gw_pool_report(in, how, answered, ml_now_ms());
    if (answered && resp.status == 404) {
        memset(out, 0, sizeof(*out));
        out->status = 404;
        r = FETCH_OK;
    } else if (answered && resp.status == 200 &&
               gw_fn_info_parse(resp.body.data, resp.body.len, out) == ML_OK) {
        r = FETCH_OK;
    }
    httpc_response_free(&resp);
    ml_buf_free(&url);
    return r;
}

/* What the gateway knows about fn: cached, fetched, stale or (status 0) nothing, in which
 * case defaults apply. ML_ERR (503 written) only when no executor can be asked at all. */
static int lookup_function(gw_app *a, httpd_req *req, httpd_resp *resp, const char *fn,
                           gw_fn_info *info)
{
    int64_t now = ml_now_ms();
    gw_fncache_hit hit = gw_fncache_get(&a->fns, fn, now, info);
    gw_fn_info fresh;
    fetch_result fr;

    if (hit == GW_FNCACHE_FRESH) {
        metric_inc(a->m_fn_lookups, (const char *[]){ "cached" });
        return ML_OK;
    }
    fr = fetch_function(a, fn, httpd_request_id(req), &fresh);
    if (fr == FETCH_OK) {
        gw_fncache_put(&a->fns, fn, &fresh, ml_now_ms());
        *info = fresh;
        metric_inc(a->m_fn_lookups, (const char *[]){ "fetched" });
        return ML_OK;
    }
    if (fr == FETCH_NO_UPSTREAM) {
        no_upstream(a, &a->pools[GW_SVC_EXECUTOR], resp);
        return ML_ERR;
    }
    metric_inc(a->m_fn_lookups, (const char *[]){ hit == GW_FNCACHE_STALE ? "stale" : "default" });
    if (hit != GW_FNCACHE_STALE)
        memset(info, 0, sizeof(*info));
    return ML_OK;
}

/* ---- the invoke pre-flight ---- */

static const char *invocation_type(const gw_route_def *d, httpd_req *req)
{
    const char *t = httpd_header(req, d->kind == GW_KIND_AWS_INVOKE ? "X-Amz-Invocation-Type"
                                                                     : "X-Invocation-Type");
    return t ? t : "RequestResponse";
}

/* Size check, function lookup, rate limit; sets the upstream timeout from timeout_s so a
 * long function never dies at a gateway default. ML_ERR with the refusal in resp. */
static int preflight_invoke(gw_app *a, const gw_route_def *d, httpd_req *req, httpd_resp *resp,
                            long *timeout_ms)
{
    const char *fn = httpd_param(req, "fn"), *type = invocation_type(d, req);
    gw_fn_info info;
    size_t len;

    httpd_body(req, &len);
    if (strcmp(type, "Event") == 0 && len > GW_MAX_EVENT_BODY) {
        httpd_resp_error(resp, 413, "payload_too_large",
                         "an asynchronous event may be at most %u KiB", GW_MAX_EVENT_BODY >> 10);
        return ML_ERR;
    }
    if (strlen(fn) >= GW_FN_NAME_MAX) {
        httpd_resp_error(resp, 404, "not_found", "no function '%.64s...'", fn);
        return ML_ERR;
    }
    if (lookup_function(a, req, resp, fn, &info) != ML_OK)
        return ML_ERR;
    if (info.status == 404) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", fn);
        return ML_ERR;
    }
    /* a dry run invokes nothing, so it spends no budget */
    if (strcmp(type, "DryRun") != 0 && limit_function(a, fn, &info, resp) != ML_OK)
        return ML_ERR;
    *timeout_ms = (long)(((info.timeout_s > 0 ? info.timeout_s : MAX_FUNCTION_TIMEOUT_S) +
                          a->cfg.invoke_margin_s) * 1000);
    return ML_OK;
}

/* ---- forwarding ---- */

/* Each path segment percent-encoded again (the server decoded them), plus the known query
 * parameters; the AWS route maps onto the executor's invoke. Caller frees *out. */
static int upstream_path(const gw_route_def *d, httpd_req *req, char **out)
{
    ml_buf b = { 0 };
    const char *p = httpd_path(req), *fn = httpd_param(req, "fn");
    int rc = ML_OK;
    char sep = '?';

    if (d->kind == GW_KIND_AWS_INVOKE) {
        rc = ml_buf_append_str(&b, "/functions/");
        rc = rc == ML_OK ? gw_sigv4_uri_encode(fn, strlen(fn), &b) : rc;
        rc = rc == ML_OK ? ml_buf_append_str(&b, "/invoke") : rc;
    } else {
        while (*p && rc == ML_OK) {
            size_t len = strcspn(p + 1, "/");
            rc = ml_buf_append(&b, "/", 1);
            rc = rc == ML_OK ? gw_sigv4_uri_encode(p + 1, len, &b) : rc;
            p += 1 + len;
        }
        for (size_t i = 0; i < ML_ARRAY_LEN(query_params) && rc == ML_OK; i++) {
            const char *v = httpd_query(req, query_params[i]);
            if (!v)
                continue;
            rc = ml_buf_printf(&b, "%c%s=", sep, query_params[i]);
            rc = rc == ML_OK ? gw_sigv4_uri_encode(v, strlen(v), &b) : rc;
            sep = '&';
        }
    }
    if (rc != ML_OK) {
        ml_buf_free(&b);
        return ML_ERR;
    }
    *out = ml_buf_steal(&b, NULL);
    return ML_OK;
}

static void proxy_error(gw_app *a, gw_xfer *x, httpd_resp *resp)
{
    static const char *const kinds[] = { "ok", "connect", "timeout", "too_large", "transport",
                                         "shutdown" };
    const char *svc = x->pool->service, *kind = kinds[x->result];

    metric_inc(a->m_proxy_errors, (const char *[]){ svc, kind });
    ml_log_kv(ML_LOG_WARN, "upstream exchange failed", "upstream", svc, "instance",
              x->inst->base_url, "kind", kind, "error", x->error, NULL);
    switch (x->result) {
    case GW_XFER_CONNECT:
        httpd_resp_error(resp, 503, "upstream_unavailable", "cannot connect to any %s instance", svc);
        header_int(resp, "Retry-After", gw_pool_retry_after_s(x->pool, ml_now_ms()));
        break;
    case GW_XFER_TIMEOUT:
        httpd_resp_error(resp, 504, "upstream_timeout", "%s did not answer within %ld ms", svc,
                         x->timeout_ms);
        break;
    case GW_XFER_TOO_LARGE:
        httpd_resp_error(resp, 502, "upstream_response_too_large",
                         "the %s response exceeds %zu bytes", svc, x->max_response);
        break;
    case GW_XFER_SHUTDOWN:
        httpd_resp_error(resp, 503, "shutting_down", "the gateway is shutting down");
        header_int(resp, "Retry-After", 1);
        break;
    default:
        httpd_resp_error(resp, 502, "bad_gateway", "%s failed: %s", svc, x->error);
        break;
    }
}

/* Runs on a proxy loop thread: the upstream answered (or could not). */
static void on_upstream_done(gw_xfer *x)
{
    gw_call *c = x->ud;
    httpd_resp *resp = c->resp;
    bool aws = c->def->kind == GW_KIND_AWS_INVOKE;

    ml_log_set_request_id(httpd_request_id(c->req));
    metric_observe(c->app->m_upstream_seconds, (const char *[]){ x->pool->service },
                   (double)(ml_now_ms() - x->started_ms) / 1000.0);
    if (x->result == GW_XFER_OK) {
        resp->status = (int)x->status;
        ml_buf_free(&resp->body);
        resp->body = x->resp_body;
        memset(&x->resp_body, 0, sizeof(x->resp_body));
        if (aws)
            gw_aws_invoke_response(&x->resp_headers, resp);
        else
            gw_hdr_copy_response(&x->resp_headers, resp);
    } else {
        proxy_error(c->app, x, resp);
        if (aws)
            gw_aws_error(resp);
    }
    ml_log_set_request_id(NULL);
    httpd_complete(c->req);
    free(c);
    gw_xfer_free(x);
}

/* Queues the exchange on a proxy loop. ML_ERR with the error in resp. */
static int forward(gw_app *a, const gw_route_def *d, httpd_req *req, httpd_resp *resp,
                   long timeout_ms)
{
    gw_pool *pool = &a->pools[d->service];
    gw_admit how;
    gw_instance *in = gw_pool_pick(pool, NULL, ml_now_ms(), &how);
    gw_xfer *x = NULL;
    gw_call *c = NULL;

    if (!in) {
        no_upstream(a, pool, resp);
        return ML_ERR;
    }
    x = gw_xfer_new();
    c = calloc(1, sizeof(*c));
    if (!x || !c || upstream_path(d, req, &x->path) != ML_OK ||
        gw_hdr_upstream_request(req_header, req, d->kind == GW_KIND_AWS_INVOKE,
                                httpd_client_ip(req), httpd_request_id(req), &x->headers) != ML_OK) {
        gw_pool_report(in, how, true, ml_now_ms()); /* give a probe slot back */
        gw_xfer_free(x);
        free(c);
        httpd_resp_error(resp, 500, "internal", "cannot prepare the upstream request");
        return ML_ERR;
    }
    *c = (gw_call){ req, resp, a, d };
    x->pool = pool;
    x->inst = in;
    x->admit = how;
    x->method = d->kind == GW_KIND_AWS_INVOKE ? "POST" : httpd_method(req);
    x->body = httpd_body(req, &x->body_len);
    x->timeout_ms = timeout_ms;
    x->connect_timeout_ms = (long)a->cfg.connect_timeout_ms;
    x->max_response = (size_t)a->cfg.max_response_bytes;
    x->done = on_upstream_done;
    x->ud = c;
    gw_proxy_submit(a->proxy, x);
    return ML_OK;
}

static httpd_result handle(httpd_req *req, httpd_resp *resp, void *ud)
{
    gw_route_ctx *rc = ud;
    gw_app *a = rc->app;
    const gw_route_def *d = rc->def;
    gw_principal who;
    long timeout_ms = (long)(a->cfg.upstream_timeout_s * 1000);
    bool ok = authenticate(a, d, req, resp, &who) == ML_OK;

    if (ok && d->kind == GW_KIND_BUILD_SUBMIT)
        ok = limit_builds(a, &who, resp) == ML_OK;
    if (ok && (d->kind == GW_KIND_INVOKE || d->kind == GW_KIND_AWS_INVOKE))
        ok = preflight_invoke(a, d, req, resp, &timeout_ms) == ML_OK;
    if (ok && forward(a, d, req, resp, timeout_ms) == ML_OK)
        return HTTPD_ASYNC;
    if (d->kind == GW_KIND_AWS_INVOKE)
        gw_aws_error(resp);
    return HTTPD_DONE;
}

/* ---- life cycle ---- */

static void register_metrics(gw_app *a, metrics_registry *reg)
{
    if (!reg)
        return;
    a->m_auth_failures = metrics_counter(reg, "minilambda_gateway_auth_failures_total",
                                         "Requests refused by authentication or authorization, by reason.",
                                         "reason");
    a->m_decisions = metrics_counter(reg, "minilambda_gateway_ratelimit_decisions_total",
                                     "Rate-limit decisions by limit kind, function (capped; "
                                     "\"other\" beyond the cap) and decision.",
                                     "limit,function,decision");
    a->m_proxy_errors = metrics_counter(reg, "minilambda_gateway_proxy_errors_total",
                                        "Requests the gateway could not complete upstream, by kind.",
                                        "service,kind");
    a->m_upstream_seconds = metrics_histogram(reg, "minilambda_gateway_upstream_duration_seconds",
                                              "Time from queuing an upstream exchange to its end.",
                                              "service", NULL, 0);
    a->m_fn_lookups = metrics_counter(reg, "minilambda_gateway_function_lookups_total",
                                      "Function configuration lookups by source "
                                      "(cached, fetched, stale, default).",
                                      "source");
}

int gw_app_init(gw_app *a, const gw_settings *cfg, metrics_registry *reg, char *err,
                size_t errlen)
{
    gw_breaker_cfg b;

    memset(a, 0, sizeof(*a));
    a->cfg = *cfg;
    b = (gw_breaker_cfg){ (int)cfg->breaker_failures, cfg->breaker_open_ms, (int)cfg->breaker_probes };
    gw_fncache_init(&a->fns, cfg->fn_cache_ttl_ms, 0);
    if (gw_pool_init(&a->pools[GW_SVC_BUILD_MASTER], "build-master", cfg->build_master_urls, &b,
                     cfg->health_interval_ms, reg, err, errlen) != ML_OK ||
        gw_pool_init(&a->pools[GW_SVC_EXECUTOR], "lambda-executor", cfg->executor_urls, &b,
                     cfg->health_interval_ms, reg, err, errlen) != ML_OK)
        return ML_ERR;
    for (size_t i = 0; i < GW_NSVC; i++)
        a->pool_list[i] = &a->pools[i];
    if (gw_limiter_init(&a->limiter, cfg->redis_url, (int)cfg->redis_timeout_ms, reg) != ML_OK ||
        gw_labelcap_init(&a->fn_labels, (size_t)cfg->metric_max_functions) != ML_OK ||
        pthread_key_create(&a->httpc_key, httpc_destroy) != 0) {
        ml_snprintf(err, errlen, "out of memory");
        return ML_ERR;
    }
    a->key_created = true;
    register_metrics(a, reg);
    return ML_OK;
}

int gw_app_start(gw_app *a, char *err, size_t errlen)
{
    gw_proxy_config pc = { (unsigned)a->cfg.proxy_threads, (long)a->cfg.keepalive_conns };

    a->proxy = gw_proxy_start(&pc, err, errlen);
    if (!a->proxy)
        return ML_ERR;
    a->health = gw_health_start(a->pool_list, GW_NSVC);
    if (!a->health) {
        ml_snprintf(err, errlen, "cannot start the health checker thread");
        return ML_ERR;
    }
    return ML_OK;
}

void gw_app_stop(gw_app *a)
{
    gw_health_stop(a->health);
    a->health = NULL;
    gw_proxy_stop(a->proxy);
    a->proxy = NULL;
}

void gw_app_free(gw_app *a)
{
    if (a->key_created) {
        httpc_free(pthread_getspecific(a->httpc_key));
        pthread_setspecific(a->httpc_key, NULL);
        pthread_key_delete(a->httpc_key);
        a->key_created = false;
    }
    gw_labelcap_free(&a->fn_labels);
    gw_limiter_free(&a->limiter);
    gw_fncache_free(&a->fns);
    for (size_t i = 0; i < GW_NSVC; i++)
        gw_pool_free(&a->pools[i]);
}

size_t gw_app_routes(gw_app *a, httpd_route *out, size_t max)
{
    size_t n = 0;

    for (; n < gw_nroutes && n < max && n < GW_MAX_ROUTES; n++) {
        const gw_route_def *d = &gw_routes[n];
        a->ctx[n] = (gw_route_ctx){ a, d };
        out[n] = (httpd_route){ d->method, d->pattern, handle, &a->ctx[n], d->max_body,
                                gw_route_blocking(d) };
    }
    return n;
}

int gw_app_check_pool(void *pool, char *err, size_t errlen)
{
    gw_pool *p = pool;
    char detail[512];

    if (gw_pool_available(p, detail, sizeof(detail)) > 0)
        return ML_OK;
    ml_snprintf(err, errlen, "no %s instance available: %s", p->service, detail);
    return ML_ERR;
}
