/* fnurl.c — the function URL request path (see fnurl.h, docs/http.md).
 *
 * HTTP thread: the namespace, the cached function. Loop thread: [look the function up] ->
 * no URL: 404 -> CORS preflight: 204 -> auth (JWT mode) -> the function's rate limit -> (NONE)
 * the client IP's -> invoke (alone, streamed or buffered; or in a batch, batch.h) -> the
 * response (fnurl_resp.c) with CORS headers. Every path ends in url_finish, which
 * completes the HTTP request exactly once (unless a stream already answered it). */
#include "fnurl.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "accesslog.h"
#include "auth.h"
#include "awsarn.h"
#include "batch.h"
#include "fnspec.h"
#include "gateway-int.h"
#include "headers.h"
#include "intauth.h"
#include "invstream.h"
#include "log.h"
#include "sigv4.h"
#include "tenant.h"

#define LOOKUP_TIMEOUT_MS 2000
#define LOOKUP_MAX_BYTES (256u * 1024u)
#define MAX_EVENT_HEADERS 200 /* more request headers than this: the rest are not passed */
#define MAX_EVENT_QUERY 200
#define ORIGIN_MAX 512
#define URL_MAX (16 + TENANT_MAX + GW_FN_NAME_MAX)

typedef struct url_call {
    gw_task task;
    gw_app *app;
    const gw_route_def *def;
    httpd_req *req;              /* NULL once a stream has answered */
    httpd_resp *resp;
    gw_loop *loop;
    char rid[160];
    char ns[TENANT_MAX + 1];
    bool ns_explicit;            /* from the path or the header, not from a token */
    char fn[GW_FN_NAME_MAX];
    char fnkey[TENANT_MAX + 1 + GW_FN_NAME_MAX];
    char url[URL_MAX];           /* "/fn/x": for messages */
    char origin[ORIGIN_MAX];     /* "" : none */
    int64_t arrived_ms;          /* wall clock (the event's time and timeEpoch) */
    gw_fncache_hit hit;
    gw_fn_info info;
    gw_principal who;
    bool conc_held;              /* a max_concurrency slot, given back in url_finish */
    char conc_id[ML_UUID_LEN];
    char limit_key[GW_SUB_MAX + TENANT_MAX + GW_FN_NAME_MAX + 64];
    char *event;                 /* the v2 event (owned) */
    size_t event_len;
    /* a streamed answer (invstream.h) */
    invstream_dec dec;
    httpd_stream *stream;
    bool stream_failed;          /* the function failed after the stream began */
    char *end_json;              /* an 'E' error before any 'M' */
    const char *head_error;      /* the 'M' frame broke a mapping rule */
} url_call;

static const char *auth_name(const url_call *c)
{
    return !c->info.url.enabled ? "-" : c->info.url.auth == GW_FNURL_AUTH_NONE ? "NONE" : "JWT";
}

/* Ends the call: the outcome metric, then the request is completed (unless streamed). */
static void url_finish(url_call *c, const char *result)
{
    httpd_req *req = c->req;

    if (c->conc_held)
        gw_tn_conc_release(&c->app->tenants, c->ns, c->conc_id);
    metric_inc(c->app->m_fnurl_requests,
               (const char *[]){ c->ns[0] ? c->ns : "-", metrics_function_label(c->fn), auth_name(c), result });
    invstream_dec_free(&c->dec);
    free(c->end_json);
    free(c->event);
    free(c);
    if (req)
        httpd_complete(req);
}

static int add_line(struct curl_slist **list, const char *fmt, const char *value)
{
    char line[512];
    struct curl_slist *n;

    if (ml_snprintf(line, sizeof(line), fmt, value) != ML_OK || !(n = curl_slist_append(*list, line)))
        return ML_ERR;
    *list = n;
    return ML_OK;
}

/* The outcome label of a finished response, from its status. */
static const char *result_of(int status)
{
    switch (status) {
    case 429: return "throttled";
    case 502: return "bad_gateway";
    case 503: return "unavailable";
    case 504: return "timeout";
    default: return status >= 500 ? "error" : "ok";
    }
}

/* ---- the invoke's answer ---- */

/* Streamed (invstream.h): 'M' starts the client's response, 'D' goes on, 'E' ends. */
static int start_stream(url_call *c, const char *data, size_t len)
{
    cJSON *meta = cJSON_ParseWithLength(data, len);
    const cJSON *http = cJSON_GetObjectItemCaseSensitive(meta, "http");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(meta, "content_type");
    const char *ctype = NULL;
    httpd_resp *resp = c->resp;
    int rc = ML_ERR;

    if (!cJSON_IsObject(meta)) {
        c->head_error = "the stream's metadata is not a JSON object";
        goto out;
    }
    if (http && !cJSON_IsNull(http)) {
        if (gw_fnurl_head(resp, http, &ctype, &c->head_error) != ML_OK)
            goto out;
    } else {
        resp->status = 200;
    }
    if (!ctype && httpd_resp_content_type(resp, cJSON_IsString(ct) ? ct->valuestring : "application/json") != ML_OK)
        goto out;
    gw_fnurl_cors_actual(resp, &c->info.url.cors, c->origin[0] ? c->origin : NULL);
    if (!(c->stream = httpd_resp_stream(resp, resp->content_type)))
        goto out;
    httpd_complete(c->req); /* the head goes now, the body as it comes */
    c->req = NULL;
    rc = ML_OK;
out:
    cJSON_Delete(meta);
    return rc;
}

static int on_frame(void *ud, char type, const char *data, size_t len)
{
    url_call *c = ud;

    switch (type) {
    case INVSTREAM_META:
        return c->stream ? ML_ERR : start_stream(c, data, len);
    case INVSTREAM_DATA:
        return c->stream && httpd_stream_write(c->stream, data, len) == ML_OK ? ML_OK : ML_ERR;
    default: /* INVSTREAM_END: {} or the function's error */
        if (len > 2) {
            if (c->stream) {
                c->stream_failed = true;
                ml_log_kv(ML_LOG_WARN, "function failed while streaming", "function", c->fn,
                          "error", data, NULL);
            } else if (!c->end_json) {
                c->end_json = strndup(data, len);
            }
        }
        return ML_OK;
    }
}

static int on_chunk(gw_xfer *x, const char *data, size_t len)
{
    url_call *c = x->ud;
    bool started = c->stream != NULL;

    if (invstream_feed(&c->dec, data, len, on_frame, c) == ML_OK) {
        if (!started && c->stream)
            gw_xfer_pace(x, c->stream);
        return ML_OK;
    }
    if (!c->head_error)
        ml_log_kv(ML_LOG_WARN, "streamed invocation aborted", "function", c->fn, "error",
                  c->dec.error[0] ? c->dec.error : "the client has gone", NULL);
    return ML_ERR;
}

/* The end of a streamed answer. */
static void stream_done(url_call *c, gw_xfer *x)
{
    gw_fnout out = { .kind = GW_FNOUT_FUNCTION_ERROR };

    gw_xfer_pace(x, NULL);
    if (c->stream) {
        bool clean = x->result == GW_XFER_OK && c->dec.ended && !c->stream_failed;
        if (clean)
            httpd_stream_close(c->stream);
        else /* the client must see that the body is incomplete */
            httpd_stream_abort(c->stream);
        c->stream = NULL;
        url_finish(c, clean ? "ok" : "stream_error");
        return;
    }
    if (c->head_error) {
        httpd_resp_error(c->resp, 502, "invalid_function_response",
                         "the function's response is invalid: %s", c->head_error);
        url_finish(c, "invalid_response");
        return;
    }
    if (c->end_json) {
        out.json = c->end_json;
        out.len = strlen(c->end_json);
        gw_fnurl_answer(c->resp, &out);
        gw_fnurl_cors_actual(c->resp, &c->info.url.cors, c->origin[0] ? c->origin : NULL);
        url_finish(c, "function_error");
        return;
    }
    if (x->result != GW_XFER_OK)
        gw_call_proxy_error(c->app, x, c->resp);
    else
        httpd_resp_error(c->resp, 502, "bad_gateway", "the streamed invocation ended early");
    url_finish(c, "bad_gateway");
}

/* Loop thread: the executor answered (or could not). */
static void on_invoke_done(gw_xfer *x)
{
    url_call *c = x->ud;
    gw_app *a = c->app;
    const char *fe = x->result == GW_XFER_OK ? gw_hdr_pairs_get(&x->resp_headers, "X-Function-Error") : NULL;
    const char *retry = x->result == GW_XFER_OK ? gw_hdr_pairs_get(&x->resp_headers, "Retry-After") : NULL;
    gw_fnout out = { .kind = GW_FNOUT_RESULT, .json = ml_buf_cstr(&x->resp_body), .len = x->resp_body.len };
    const char *result;

    ml_log_set_request_id(c->rid);
    metric_observe(a->m_upstream_seconds, (const char *[]){ x->pool->service },
                   (double)(ml_now_ms() - x->started_ms) / 1000.0);
    if (c->req)
        gw_alog_upstream(c->req, x->pool->service, (ml_now_ms() - x->started_ms) * 1000);
    if (x->chunked) {
        stream_done(c, x);
        gw_xfer_free(x);
        ml_log_set_request_id(NULL);
        return;
    }
    if (x->result == GW_XFER_TIMEOUT) {
        out.kind = GW_FNOUT_TIMEOUT;
        gw_fnurl_answer(c->resp, &out);
    } else if (x->result != GW_XFER_OK) {
        gw_call_proxy_error(a, x, c->resp);
    } else if (fe || x->status == 200) {
        out.kind = !fe ? GW_FNOUT_RESULT
                   : strcmp(fe, "TimeoutError") == 0 ? GW_FNOUT_TIMEOUT : GW_FNOUT_FUNCTION_ERROR;
        gw_fnurl_answer(c->resp, &out);
    } else { /* the executor's own refusal (404, 409 build_in_progress, 429, 503): its JSON */
        c->resp->status = (int)x->status;
        c->resp->content_type = "application/json";
        ml_buf_free(&c->resp->body);
        c->resp->body = x->resp_body;
        memset(&x->resp_body, 0, sizeof(x->resp_body));
        if (retry)
            httpd_resp_header(c->resp, "Retry-After", retry);
    }
    result = fe ? (strcmp(fe, "TimeoutError") == 0 ? "timeout" : "function_error")
                : c->resp->status == 502 && x->result == GW_XFER_OK && x->status == 200 ? "invalid_response"
                                                                                    : result_of(c->resp->status);
    gw_fnurl_cors_actual(c->resp, &c->info.url.cors, c->origin[0] ? c->origin : NULL);
    gw_xfer_free(x);
    ml_log_set_request_id(NULL);
    url_finish(c, result);
}

static void on_batch_done(void *ud, const gw_fnout *out)
{
    url_call *c = ud;
    int status = gw_fnurl_answer(c->resp, out);

    gw_fnurl_cors_actual(c->resp, &c->info.url.cors, c->origin[0] ? c->origin : NULL);
    url_finish(c, out->kind == GW_FNOUT_FUNCTION_ERROR ? "function_error"
                  : out->kind == GW_FNOUT_TIMEOUT      ? "timeout"
                                                       : result_of(status));
}

/* ---- the event ---- */

typedef struct kv_list {
    gw_fnurl_kv kv[MAX_EVENT_HEADERS > MAX_EVENT_QUERY ? MAX_EVENT_HEADERS : MAX_EVENT_QUERY];
    size_t n, max;
    bool headers, jwt;
} kv_list;

static void kv_add(void *ud, const char *name, const char *value)
{
    kv_list *l = ud;

    /* never handed to function code: the platform's internal credential, and in JWT mode
     * the caller's platform token (its claims are in requestContext.authorizer instead) */
    if (l->headers && (strcasecmp(name, ML_INTAUTH_HEADER) == 0 ||
                       (l->jwt && strcasecmp(name, "Authorization") == 0)))
        return;
    if (l->n < l->max)
        l->kv[l->n++] = (gw_fnurl_kv){ name, value };
}

/* The verified token's claims (its payload segment), or NULL. Caller frees. */
static cJSON *token_claims(httpd_req *req)
{
    const char *authz = httpd_header(req, "Authorization"), *p, *end;
    unsigned char payload[GW_TOKEN_MAX];
    size_t n = 0;

    if (!authz || strncmp(authz, "Bearer ", 7) != 0 || !(p = strchr(authz + 7, '.')) ||
        !(end = strchr(p + 1, '.')) ||
        gw_base64url_decode(p + 1, (size_t)(end - p - 1), payload, sizeof(payload), &n) != ML_OK)
        return NULL;
    return cJSON_ParseWithLength((const char *)payload, n);
}

static int build_event(url_call *c)
{
    kv_list *hs = calloc(1, sizeof(*hs)), *qs = calloc(1, sizeof(*qs));
    const char *proxy = httpd_param(c->req, "proxy");
    char account[GW_AWS_ACCOUNT_LEN + 1], *path = NULL;
    cJSON *claims = NULL;
    gw_fnurl_req r = { 0 };
    int rc = ML_ERR;

    if (!hs || !qs || !(path = malloc(2 + (proxy ? strlen(proxy) : 0))))
        goto out;
    hs->max = MAX_EVENT_HEADERS;
    hs->headers = true;
    hs->jwt = c->info.url.auth == GW_FNURL_AUTH_JWT;
    qs->max = MAX_EVENT_QUERY;
    httpd_header_each(c->req, kv_add, hs);
    httpd_query_each(c->req, kv_add, qs);
    path[0] = '/';
    ml_strlcpy(path + 1, proxy ? proxy : "", 1 + (proxy ? strlen(proxy) : 0)); /* sized to fit */
    gw_awsarn_account(c->ns, account);
    if (c->info.url.auth == GW_FNURL_AUTH_JWT && !(claims = token_claims(c->req)))
        goto out;
    r = (gw_fnurl_req){ .method = httpd_method(c->req), .raw_path = path,
                        .raw_query = httpd_raw_query(c->req), .proxy = proxy,
                        .headers = hs->kv, .nheaders = hs->n, .query = qs->kv, .nquery = qs->n,
                        .source_ip = httpd_client_ip(c->req), .request_id = c->rid,
                        .account_id = account, .api_id = c->info.name[0] ? c->info.name : c->fn,
                        .time_ms = c->arrived_ms, .jwt_claims = claims };
    r.body = httpd_body(c->req, &r.body_len);
    rc = gw_fnurl_event(&r, &c->event, &c->event_len);
out:
    cJSON_Delete(claims);
    free(path);
    free(hs);
    free(qs);
    return rc;
}

/* ---- invoke ---- */

static int64_t function_timeout_s(const url_call *c)
{
    return gw_fn_timeout_s(&c->info);
}

/* gw_batch_lookup_fn over the request. */
static const char *batch_lookup(void *ud, const char *kind, const char *name)
{
    url_call *c = ud;
    const char *proxy;

    if (strcmp(kind, "header") == 0)
        return httpd_header(c->req, name);
    if (strcmp(kind, "query") == 0)
        return httpd_query(c->req, name);
    if (strcmp(kind, "method") == 0)
        return httpd_method(c->req);
    if (strcmp(kind, "path") == 0)
        return (proxy = httpd_param(c->req, "proxy")) ? proxy : "";
    return NULL;
}

static void invoke_batched(url_call *c)
{
    gw_app *a = c->app;
    gw_batch_target t = { &a->pools[GW_SVC_EXECUTOR], c->ns, c->info.name[0] ? c->info.name : c->fn,
                          c->info.url.qualifier, &c->info.url.batching, function_timeout_s(c),
                          a->cfg.invoke_margin_s, (long)a->cfg.connect_timeout_ms,
                          (size_t)a->cfg.max_response_bytes };
    char *key = NULL;
    int64_t deadline = ml_now_ms() + (function_timeout_s(c) + a->cfg.invoke_margin_s) * 1000;

    if (gw_batch_key(&t, batch_lookup, c, &key) != ML_OK ||
        gw_batch_add(c->loop, &t, key, c->event, c->event_len, c->rid, deadline, on_batch_done, c) != ML_OK) {
        free(key);
        httpd_resp_error(c->resp, 500, "internal", "cannot queue the request for its batch");
        url_finish(c, "error");
        return;
    }
    free(key);
}

/* The single invoke: POST /functions/{fn}/invoke[?qualifier=q], the event as its body. */
static gw_xfer *invoke_xfer(url_call *c)
{
    gw_xfer *x = gw_xfer_new();
    ml_buf path = { 0 };
    const char *q = c->info.url.qualifier;
    int rc;

    if (!x)
        return NULL;
    rc = ml_buf_append_str(&path, "/functions/");
    rc = rc == ML_OK ? gw_sigv4_uri_encode(c->fn, strlen(c->fn), &path) : rc;
    rc = rc == ML_OK ? ml_buf_append_str(&path, "/invoke") : rc;
    rc = rc == ML_OK && q[0] ? ml_buf_append_str(&path, "?qualifier=") : rc;
    rc = rc == ML_OK && q[0] ? gw_sigv4_uri_encode(q, strlen(q), &path) : rc;
    rc = rc == ML_OK ? add_line(&x->headers, "Content-Type: %s", "application/json") : rc;
    rc = rc == ML_OK ? add_line(&x->headers, INVSTREAM_ACCEPT_HEADER ": %s", "1") : rc;
    rc = rc == ML_OK ? add_line(&x->headers, TENANT_HEADER ": %s", c->ns) : rc;
    rc = rc == ML_OK ? add_line(&x->headers, "X-Request-Id: %s", c->rid) : rc;
    if (rc != ML_OK) {
        ml_buf_free(&path);
        gw_xfer_free(x);
        return NULL;
    }
    x->path = ml_buf_steal(&path, NULL);
    x->method = "POST";
    x->body = c->event;
    x->body_len = c->event_len;
    x->timeout_ms = (long)((function_timeout_s(c) + c->app->cfg.invoke_margin_s) * 1000);
    x->connect_timeout_ms = (long)c->app->cfg.connect_timeout_ms;
    x->max_response = (size_t)c->app->cfg.max_response_bytes;
    x->on_chunk = on_chunk;
    x->done = on_invoke_done;
    x->ud = c;
    return x;
}

static void invoke(url_call *c)
{
    gw_pool *pool = &c->app->pools[GW_SVC_EXECUTOR];
    gw_xfer *x;

    if (build_event(c) != ML_OK) {
        httpd_resp_error(c->resp, 500, "internal", "cannot build the function's event");
        url_finish(c, "error");
        return;
    }
    if (c->info.url.batching.enabled) {
        invoke_batched(c);
        return;
    }
    if (!(x = invoke_xfer(c))) {
        httpd_resp_error(c->resp, 500, "internal", "cannot prepare the upstream request");
        url_finish(c, "error");
        return;
    }
    x->pool = pool;
    x->cap = GW_CAP_INVOKE;
    if (!(x->inst = gw_pool_pick(pool, GW_CAP_INVOKE, NULL, ml_now_ms(), &x->admit))) {
        gw_xfer_free(x);
        gw_call_no_upstream(c->app, pool, GW_CAP_INVOKE, c->resp);
        url_finish(c, "unavailable");
        return;
    }
    gw_loop_start(c->loop, x);
}

/* ---- rate limits ---- */

static void on_limit(void *ud, const gcra_result *r);

static void limit(url_call *c, const char *kind)
{
    gw_app *a = c->app;
    gcra_limit lim;
    int rc;

    if (strcmp(kind, "function") == 0) {
        lim = c->info.has_rate_limit ? gcra_limit_rps(c->info.rps, c->info.burst)
                                     : gcra_limit_rps((double)a->cfg.default_rps, a->cfg.default_burst);
        /* the same key as POST /functions/{fn}/invoke: one budget per function */
        rc = ml_snprintf(c->limit_key, sizeof(c->limit_key), GW_RL_KEY_PREFIX "fn:%s:%s", c->ns,
                         c->info.id[0] ? c->info.id : c->fn);
    } else {
        lim = gcra_limit_rps((double)a->cfg.fnurl_ip_rps, a->cfg.fnurl_ip_burst);
        rc = ml_snprintf(c->limit_key, sizeof(c->limit_key), GW_RL_KEY_PREFIX "fnip:%s:%s:%s", c->ns,
                         c->fn, httpd_client_ip(c->req));
    }
    if (rc != ML_OK) { /* sized to fit; a cut key would share another's budget */
        httpd_resp_error(c->resp, 500, "internal", "cannot build the rate limit key");
        url_finish(c, "error");
        return;
    }
    gw_loop_limit(c->loop, c->limit_key, lim, on_limit, c);
}

static void on_limit(void *ud, const gcra_result *r)
{
    url_call *c = ud;
    bool ip = strstr(c->limit_key, ":fnip:") != NULL;
    int64_t retry;

    metric_inc(c->app->m_decisions,
               (const char *[]){ c->ns, ip ? "fnurl_ip" : "function", metrics_function_label(c->fn),
                                 r->allowed ? "allowed" : "throttled" });
    gw_alog_ratelimit(c->req, r->allowed ? "allowed" : "limited");
    if (!r->allowed) {
        retry = (r->retry_after_us + 999999) / 1000000;
        httpd_resp_error(c->resp, 429, "rate_limited", "%s rate limit exceeded: retry in %" PRId64 " s",
                         ip ? "client IP" : "function", retry < 1 ? 1 : retry);
        gw_call_header_int(c->resp, "Retry-After", retry < 1 ? 1 : retry);
        gw_call_limit_headers(c->resp, r);
        gw_fnurl_cors_actual(c->resp, &c->info.url.cors, c->origin[0] ? c->origin : NULL);
        url_finish(c, "throttled");
        return;
    }
    if (!ip)
        gw_call_limit_headers(c->resp, r); /* the function's budget is the one to show */
    if (!ip && c->info.url.auth == GW_FNURL_AUTH_NONE)
        limit(c, "ip");
    else
        invoke(c);
}

/* A namespace with a max_concurrency quota: one of its slots for as long as the call runs
 * (as for POST /functions/{fn}/invoke). ML_ERR with the 429 in c->resp. */
static int take_slot(url_call *c)
{
    gw_app *a = c->app;
    gw_tn_quotas q;
    int64_t in_flight;
    int got;

    gw_tn_quotas_get(&a->tenants, c->ns, &q);
    if (q.max_concurrency < 0)
        return ML_OK;
    ml_uuid(c->conc_id);
    got = gw_tn_conc_acquire(&a->tenants, c->ns, c->conc_id, q.max_concurrency,
                             (function_timeout_s(c) + a->cfg.invoke_margin_s) * 1000, &in_flight);
    if (got == 0) {
        gw_alog_ratelimit(c->req, "limited");
        gw_call_quota_error(a, c->resp, c->ns, "max_concurrency", q.max_concurrency, 1);
        return ML_ERR;
    }
    c->conc_held = got == 1;
    return ML_OK;
}

/* ---- the function is known ---- */

static void proceed(url_call *c)
{
    httpd_req *req = c->req;
    const char *acrm = httpd_header(req, "Access-Control-Request-Method");
    char ns[TENANT_MAX + 1];
    int st;

    if (c->info.status != 200 || !c->info.url.enabled) {
        httpd_resp_error(c->resp, 404, "not_found", "no function URL '%s'", c->url);
        url_finish(c, "not_found");
        return;
    }
    if (strcmp(httpd_method(req), "OPTIONS") == 0 && c->origin[0] && acrm) {
        gw_fnurl_cors_preflight(c->resp, &c->info.url.cors, c->origin, acrm,
                                httpd_header(req, "Access-Control-Request-Headers"));
        url_finish(c, "preflight");
        return;
    }
    if (c->info.url.auth == GW_FNURL_AUTH_JWT) {
        if (gw_call_authenticate(c->app, c->def, req, c->resp, &c->who) != ML_OK) {
            gw_fnurl_cors_actual(c->resp, &c->info.url.cors, c->origin[0] ? c->origin : NULL);
            url_finish(c, c->resp->status == 403 ? "forbidden" : "unauthorized");
            return;
        }
        st = gw_auth_namespace(&c->who, c->ns_explicit ? c->ns : NULL, ns);
        if (st != 0 || strcmp(ns, c->ns) != 0) {
            gw_alog_auth(req, c->who.sub, "namespace_forbidden");
            httpd_resp_error(c->resp, 403, "forbidden", "this credential may act only in its own namespace");
            url_finish(c, "forbidden");
            return;
        }
    }
    if (take_slot(c) != ML_OK) {
        gw_fnurl_cors_actual(c->resp, &c->info.url.cors, c->origin[0] ? c->origin : NULL);
        url_finish(c, "throttled");
        return;
    }
    limit(c, "function");
}

/* ---- the lookup ---- */

static void on_lookup_done(gw_xfer *lx)
{
    url_call *c = lx->ud;
    gw_fn_info fresh;
    bool answered = lx->result == GW_XFER_OK && (lx->status == 404 ||
                    (lx->status == 200 && gw_fn_info_parse(lx->resp_body.data, lx->resp_body.len, &fresh) == ML_OK));

    if (answered && lx->status == 200) {
        gw_fncache_put(&c->app->fns, c->fnkey, &fresh, ml_now_ms());
        c->info = fresh;
    } else if (answered) {
        c->info.status = 404;
    }
    if (answered) {
        metric_inc(c->app->m_fn_lookups, (const char *[]){ "fetched" });
    } else if (c->hit == GW_FNCACHE_STALE && lx->result != GW_XFER_SHUTDOWN) {
        gw_fncache_put(&c->app->fns, c->fnkey, &c->info, ml_now_ms()); /* stale-if-error */
        metric_inc(c->app->m_fn_lookups, (const char *[]){ "stale" });
    } else {
        /* without its url_config nothing can be decided: the defaults are no answer here */
        if (lx->result != GW_XFER_OK)
            gw_call_proxy_error(c->app, lx, c->resp);
        else
            httpd_resp_error(c->resp, 502, "bad_gateway", "unexpected answer to the function lookup (%ld)",
                             lx->status);
        gw_xfer_free(lx);
        url_finish(c, result_of(c->resp->status));
        return;
    }
    gw_xfer_free(lx);
    proceed(c);
}

static void start_lookup(url_call *c)
{
    gw_pool *pool = &c->app->pools[GW_SVC_EXECUTOR];
    gw_xfer *lx = gw_xfer_new();
    ml_buf path = { 0 };

    if (!lx || ml_buf_append_str(&path, "/functions/") != ML_OK ||
        gw_sigv4_uri_encode(c->fn, strlen(c->fn), &path) != ML_OK ||
        add_line(&lx->headers, "X-Request-Id: %s", c->rid) != ML_OK ||
        add_line(&lx->headers, TENANT_HEADER ": %s", c->ns) != ML_OK) {
        gw_xfer_free(lx);
        ml_buf_free(&path);
        httpd_resp_error(c->resp, 500, "internal", "cannot prepare the function lookup");
        url_finish(c, "error");
        return;
    }
    lx->path = ml_buf_steal(&path, NULL);
    lx->method = "GET";
    lx->timeout_ms = LOOKUP_TIMEOUT_MS;
    lx->connect_timeout_ms = (long)c->app->cfg.connect_timeout_ms;
    lx->max_response = LOOKUP_MAX_BYTES;
    lx->done = on_lookup_done;
    lx->ud = c;
    lx->pool = pool;
    lx->cap = GW_CAP_READ;
    if (!(lx->inst = gw_pool_pick(pool, GW_CAP_READ, NULL, ml_now_ms(), &lx->admit))) {
        gw_xfer_free(lx);
        if (c->hit == GW_FNCACHE_STALE) {
            proceed(c);
            return;
        }
        gw_call_no_upstream(c->app, pool, GW_CAP_READ, c->resp);
        url_finish(c, "unavailable");
        return;
    }
    gw_loop_start(c->loop, lx);
}

static void url_run(gw_loop *l, gw_task *t, bool cancelled)
{
    url_call *c = (url_call *)((char *)t - offsetof(url_call, task));

    c->loop = l;
    if (cancelled) {
        httpd_resp_error(c->resp, 503, "shutting_down", "the gateway is shutting down");
        gw_call_header_int(c->resp, "Retry-After", 1);
        url_finish(c, "unavailable");
    } else if (c->hit != GW_FNCACHE_FRESH) {
        start_lookup(c);
    } else {
        metric_inc(c->app->m_fn_lookups, (const char *[]){ "cached" });
        proceed(c);
    }
}

/* ---- the HTTP thread's part ---- */

/* The namespace: /ns/{ns}/..., else the header, else a valid token's, else "default".
 * ML_ERR with the 400 in resp. */
static int choose_namespace(url_call *c)
{
    const char *asked = httpd_param(c->req, "ns");
    gw_principal who;

    if (!asked)
        asked = httpd_header(c->req, TENANT_HEADER);
    if (asked) {
        c->ns_explicit = true;
        if (tenant_from_header(asked, c->ns) != ML_OK) {
            httpd_resp_error(c->resp, 400, "invalid_namespace",
                             "the namespace must be a namespace name (1-63 of [a-z0-9-])");
            return ML_ERR;
        }
    } else if (gw_auth_bearer(httpd_header(c->req, "Authorization"), c->app->cfg.jwt_secret,
                              (int64_t)time(NULL), c->app->cfg.jwt_leeway_s, &who) == GW_AUTH_OK) {
        ml_strlcpy(c->ns, who.ns, sizeof(c->ns)); /* a valid name: fits */
    } else {
        ml_strlcpy(c->ns, TENANT_DEFAULT, sizeof(c->ns));
    }
    gw_alog_namespace(c->req, c->ns);
    return ML_OK;
}

httpd_result gw_fnurl_handle(gw_app *a, const gw_route_def *d, httpd_req *req, httpd_resp *resp)
{
    url_call *c = calloc(1, sizeof(*c));
    const char *fn = httpd_param(req, "fn"), *pns = httpd_param(req, "ns");
    const char *origin = httpd_header(req, "Origin");

    if (!c) {
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return HTTPD_DONE;
    }
    c->app = a;
    c->def = d;
    c->req = req;
    c->resp = resp;
    c->task.run = url_run;
    c->arrived_ms = ml_wall_ms();
    ml_strlcpy(c->rid, httpd_request_id(req), sizeof(c->rid));
    if (origin && ml_strlcpy(c->origin, origin, sizeof(c->origin)) != ML_OK)
        c->origin[0] = '\0'; /* no origin that long is allowed */
    gw_alog_function(req, fn);
    if (ml_snprintf(c->url, sizeof(c->url), "%s%s/fn/%s", pns ? "/ns/" : "", pns ? pns : "", fn) != ML_OK ||
        ml_strlcpy(c->fn, fn, sizeof(c->fn)) != ML_OK) { /* longer than any name */
        httpd_resp_error(resp, 404, "not_found", "no function URL '/fn/%.64s...'", fn);
        url_finish(c, "not_found");
        return HTTPD_ASYNC;
    }
    if (choose_namespace(c) != ML_OK) {
        url_finish(c, "invalid_namespace");
        return HTTPD_ASYNC;
    }
    if (ml_snprintf(c->fnkey, sizeof(c->fnkey), "%s/%s", c->ns, c->fn) != ML_OK) { /* sized to fit */
        httpd_resp_error(resp, 500, "internal", "cannot build the function cache key");
        url_finish(c, "error");
        return HTTPD_ASYNC;
    }
    c->hit = gw_fncache_get(&a->fns, c->fnkey, ml_now_ms(), &c->info);
    gw_proxy_run(a->proxy, &c->task);
    return HTTPD_ASYNC;
}
