/* gateway.c — the request path (see gateway.h). */
#include "gateway.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <time.h>

#include "auth.h"
#include "aws.h"
#include "awsctl.h"
#include "awsstream.h"
#include "batch.h"
#include "batchinv.h"
#include "bodycheck.h"
#include "fnspec.h"
#include "fnurl.h"
#include "gateway-int.h"
#include "headers.h"
#include "log.h"
#include "sigv4.h"
#include "tenant.h"
#include "token.h"

#define FN_LOOKUP_TIMEOUT_MS 2000
#define FN_LOOKUP_MAX_BYTES (256u * 1024u)
/* API.md: the longest a function may run (fnspec's timeout_s bound) */
#define MAX_FUNCTION_TIMEOUT_S (fnspec_field_get(FNSPEC_TIMEOUT_S)->max)
#define RL_KEY_PREFIX GW_RL_KEY_PREFIX

/* Query parameters the upstream APIs define (API.md, docs/logs.md); others are not
 * forwarded. Forwarded in the client's order, repeats included (?stream=stdout&stream=stderr). */
static const char *const query_params[] = { "limit", "cursor", "status", "wait", "timeout_s",
                                             "namespace", "qualifier", "since", "until",
                                             "request_id", "stream", "q", "follow", "after" };
#define WAIT_TIMEOUT_MAX_S 60 /* API.md: GET /functions/{fn}?wait=active&timeout_s=1..60 */

/* ---- the request's journey ----
 * HTTP thread: authenticate, prepare (body checks, cached function config, the upstream
 * request), hand over. Loop thread: [look the function up] -> [rate limit] -> proxy ->
 * complete. Every step ends in call_finish, which completes the HTTP request exactly once. */

/* One client request on its way through the gateway; freed when it completes. */
typedef struct gw_call {
    gw_task task;
    gw_app *app;
    const gw_route_def *def;
    httpd_req *req;
    httpd_resp *resp;
    gw_loop *loop;
    gw_xfer *x;                  /* the upstream exchange, prepared on the HTTP thread */
    unsigned cap;                /* the GW_CAP_* the serving instance needs */
    char rid[160];
    char inv_id[ML_UUID_LEN];    /* invoke: the id fixed here ("" for a sync invoke without one) */
    char ns[TENANT_MAX + 1];     /* the namespace the request acts in (docs/tenants.md) */
    /* invoke routes */
    char fn[GW_FN_NAME_MAX];
    gw_aws_fname aws_fn;         /* the AWS Invoke's FunctionName, parsed */
    char fnkey[TENANT_MAX + 1 + GW_FN_NAME_MAX]; /* "ns/fn": the function cache's key */
    gw_fncache_hit hit;
    gw_fn_info info;
    bool dry_run;
    /* the rate limit to apply, if any */
    bool limited;
    char limit_key[GW_SUB_MAX + TENANT_MAX + GW_FN_NAME_MAX + 32];
    const char *limit_kind, *limit_label;
    gcra_limit lim;
    /* the namespace's builds_per_minute, decided before the subject's limit */
    bool quota_limited;
    int64_t quota_n;
    char quota_key[sizeof(RL_KEY_PREFIX) + TENANT_MAX + 16];
    /* a max_concurrency slot held until the call ends */
    bool conc_held;
    char conc_id[ML_UUID_LEN];
    gw_srelay relay;             /* a streamed invocation's answer (awsstream.h) */
} gw_call;

static bool is_invoke(const gw_route_def *d)
{
    return d->kind == GW_KIND_INVOKE || d->kind == GW_KIND_AWS_INVOKE;
}

static void call_finish(gw_call *c)
{
    httpd_req *req = c->req;

    if (c->conc_held)
        gw_tn_conc_release(&c->app->tenants, c->ns, c->conc_id);
    gw_srelay_end(&c->relay);
    gw_xfer_free(c->x);
    free(c);
    if (req) /* NULL: answered already with a relayed stream */
        httpd_complete(req);
}

/* A gateway-made error of an invoke whose id is fixed: the id goes back with it (header and
 * body "invocation_id"), so that a client retrying with it is deduplicated by the executor
 * (the event may have been queued before the gateway gave up on the answer). */
static void stamp_invocation_id(const gw_call *c)
{
    httpd_resp *resp = c->resp;
    cJSON *doc;

    if (!c->inv_id[0])
        return;
    httpd_resp_header(resp, "X-Invocation-Id", c->inv_id);
    doc = resp->body.len ? cJSON_ParseWithLength(resp->body.data, resp->body.len) : NULL;
    if (cJSON_IsObject(doc) && !cJSON_HasObjectItem(doc, "invocation_id") &&
        cJSON_AddStringToObject(doc, "invocation_id", c->inv_id)) {
        httpd_resp_json(resp, resp->status, doc); /* frees doc */
        return;
    }
    cJSON_Delete(doc);
}

/* Ends the call with the error already written to its response. */
static void call_fail(gw_call *c)
{
    stamp_invocation_id(c);
    if (c->def->kind == GW_KIND_AWS_INVOKE)
        gw_aws_error(c->resp);
    call_finish(c);
}

/* Loop thread: the upstream answers with a stream (SSE, NDJSON): the client gets its status
 * and headers now, the body as it comes (proxy.h), and the request is no longer the
 * call's to complete. NULL (buffer as usual) when out of memory. */
static httpd_stream *on_upstream_stream(gw_xfer *x)
{
    gw_call *c = x->ud;
    httpd_stream *s;

    c->resp->status = (int)x->status;
    gw_hdr_copy_response(&x->resp_headers, c->resp);
    if (!(s = httpd_resp_stream(c->resp, c->resp->content_type)))
        return NULL;
    gw_alog_upstream(c->req, x->pool->service, (ml_now_ms() - x->started_ms) * 1000);
    httpd_complete(c->req);
    c->req = NULL;
    return s;
}

/* InvokeWithResponseStream (awsstream.h): its answer is an AWS event stream. */
static bool aws_events(const gw_route_def *d)
{
    return d->aws_op && strcmp(d->aws_op, GW_EVS_OPERATION) == 0;
}

/* Loop thread, at a streamed invocation's 'M' frame: the client's answer starts now —
 * 200, the executor's headers (the AWS names on AWS routes), the stream's content type
 * (an event stream for InvokeWithResponseStream) — and the request is the relay's. */
static httpd_stream *relay_start(void *ud, const char *content_type)
{
    gw_xfer *x = ud;
    gw_call *c = x->ud;
    httpd_stream *s;

    c->resp->status = 200;
    if (c->def->kind == GW_KIND_AWS_INVOKE)
        gw_aws_invoke_response(&x->resp_headers, c->resp);
    else
        gw_hdr_copy_response(&x->resp_headers, c->resp);
    c->resp->content_type = aws_events(c->def) ? GW_EVS_CONTENT_TYPE : gw_ctype_intern(content_type);
    if (!(s = httpd_resp_stream(c->resp, c->resp->content_type)))
        return NULL;
    gw_xfer_pace(x, s);
    gw_alog_upstream(c->req, x->pool->service, (ml_now_ms() - x->started_ms) * 1000);
    httpd_complete(c->req);
    c->req = NULL;
    return s;
}

/* Loop thread: the executor's invstream bytes as they arrive. */
static int on_upstream_chunk(gw_xfer *x, const char *data, size_t len)
{
    gw_call *c = x->ud;

    return gw_srelay_feed(&c->relay, data, len);
}

/* A whole (non-streamed) 200 answer of InvokeWithResponseStream as an event stream: the
 * result in one PayloadChunk, then InvokeComplete (a function error in it instead). */
static void events_of_result(httpd_resp *resp)
{
    ml_buf b = { 0 };
    char code[64], details[512];
    bool failed = gw_hdr_resp_has(resp, "X-Amz-Function-Error");

    if (resp->status != 200)
        return;
    if (failed)
        gw_evs_error_of(resp->body.data, resp->body.len, code, sizeof(code), details, sizeof(details));
    if ((!failed && gw_evs_payload_chunk(&b, resp->body.data, resp->body.len) != ML_OK) ||
        gw_evs_invoke_complete(&b, failed ? code : NULL, failed ? details : NULL, NULL) != ML_OK) {
        ml_buf_free(&b);
        httpd_resp_error(resp, 500, "internal", "cannot encode the event stream");
        gw_aws_error(resp);
        return;
    }
    ml_buf_free(&resp->body);
    resp->body = b;
    resp->content_type = GW_EVS_CONTENT_TYPE;
}

/* Loop thread: the upstream answered (or could not). */
static void on_upstream_done(gw_xfer *x)
{
    gw_call *c = x->ud;
    httpd_resp *resp = c->resp;
    bool aws = c->def->kind == GW_KIND_AWS_INVOKE;

    ml_log_set_request_id(c->rid);
    metric_observe(c->app->m_upstream_seconds, (const char *[]){ x->pool->service },
                   (double)(ml_now_ms() - x->started_ms) / 1000.0);
    gw_alog_upstream(c->req, x->pool->service, (ml_now_ms() - x->started_ms) * 1000); /* NULL: streamed */
    gw_xfer_pace(x, NULL); /* the relay closes the client's stream now */
    if (x->chunked && gw_srelay_end(&c->relay)) { /* relayed: the end says how it ended */
        if (x->result != GW_XFER_OK)
            ml_log_kv(ML_LOG_INFO, "streamed invocation broke off", "error", x->error, NULL);
    } else if (x->chunked && x->result == GW_XFER_OK) { /* ended before its start */
        httpd_resp_error(resp, 502, "bad_gateway", "the executor's stream ended before it began");
        stamp_invocation_id(c);
        if (aws)
            gw_aws_error(resp);
    } else if (x->streamed) { /* relayed: the client has had all there was */
        if (x->result != GW_XFER_OK)
            ml_log_kv(ML_LOG_INFO, "relayed stream ended", "upstream", x->pool->service,
                      "error", x->error, NULL);
    } else if (x->result == GW_XFER_OK) {
        resp->status = (int)x->status;
        ml_buf_free(&resp->body);
        resp->body = x->resp_body;
        memset(&x->resp_body, 0, sizeof(x->resp_body));
        if (aws)
            gw_aws_invoke_response(&x->resp_headers, resp);
        else
            gw_hdr_copy_response(&x->resp_headers, resp);
        if (aws_events(c->def))
            events_of_result(resp);
    } else {
        gw_call_proxy_error(c->app, x, resp);
        stamp_invocation_id(c);
        if (aws)
            gw_aws_error(resp);
    }
    ml_log_set_request_id(NULL);
    gw_xfer_free(x);
    call_finish(c);
}

/* Loop thread: picks an instance and starts the exchange. */
static void call_proxy(gw_call *c)
{
    gw_app *a = c->app;
    gw_pool *pool = &a->pools[c->def->service];
    gw_admit how;
    gw_instance *in = gw_pool_pick(pool, c->cap, NULL, ml_now_ms(), &how);
    gw_xfer *x = c->x;

    if (!in) {
        gw_call_no_upstream(a, pool, c->cap, c->resp);
        call_fail(c);
        return;
    }
    c->x = NULL;
    x->pool = pool;
    x->cap = c->cap;
    x->inst = in;
    x->admit = how;
    if (is_invoke(c->def)) /* a long function must never die at a gateway default */
        x->timeout_ms = (long)((gw_fn_timeout_s(&c->info) +
                                a->cfg.invoke_margin_s) * 1000);
    gw_loop_start(c->loop, x);
}

/* Loop thread: the rate-limit decision. */
static void on_limit(void *ud, const gcra_result *r)
{
    gw_call *c = ud;
    int64_t retry;

    metric_inc(c->app->m_decisions,
               (const char *[]){ c->ns, c->limit_kind, c->limit_label,
                                 r->allowed ? "allowed" : "throttled" });
    gw_alog_ratelimit(c->req, r->allowed ? "allowed" : "limited");
    if (r->allowed) {
        gw_call_limit_headers(c->resp, r);
        call_proxy(c);
        return;
    }
    retry = gw_call_ceil_s(r->retry_after_us);
    retry = retry < 1 ? 1 : retry;
    httpd_resp_error(c->resp, 429, "rate_limited", "%s rate limit exceeded: retry in %" PRId64 " s",
                     c->limit_kind, retry);
    gw_call_header_int(c->resp, "Retry-After", retry);
    gw_call_limit_headers(c->resp, r);
    call_fail(c);
}

static void call_limit(gw_call *c);

/* Loop thread: the namespace's builds_per_minute decision. */
static void on_quota(void *ud, const gcra_result *r)
{
    gw_call *c = ud;

    if (!r->allowed) {
        gw_alog_ratelimit(c->req, "limited");
        gw_call_quota_error(c->app, c->resp, c->ns, "builds_per_minute", c->quota_n,
                    gw_call_ceil_s(r->retry_after_us));
        call_fail(c);
        return;
    }
    c->quota_limited = false;
    call_limit(c);
}

static void call_limit(gw_call *c)
{
    gw_app *a = c->app;

    if (c->quota_limited) {
        gw_loop_limit(c->loop, c->quota_key,
                      gcra_limit_per_minute(c->quota_n, c->quota_n), on_quota, c);
        return;
    }
    /* a dry run invokes nothing, so it spends no budget */
    if (is_invoke(c->def) && !c->dry_run) {
        c->limited = true;
        c->lim = c->info.has_rate_limit
                     ? gcra_limit_rps(c->info.rps, c->info.burst)
                     : gcra_limit_rps((double)a->cfg.default_rps, a->cfg.default_burst);
        /* the id when known, so a function's name and id share one budget */
        if (ml_snprintf(c->limit_key, sizeof(c->limit_key), RL_KEY_PREFIX "fn:%s:%s", c->ns,
                        c->info.id[0] ? c->info.id : c->fn) != ML_OK) {
            /* a cut key would share another function's budget (limit_key is sized to fit) */
            gw_alog_ratelimit(c->req, "error");
            httpd_resp_error(c->resp, 500, "internal", "cannot build the rate limit key");
            call_fail(c);
            return;
        }
        c->limit_kind = "function";
        c->limit_label = metrics_function_label(c->info.name[0] ? c->info.name : c->fn);
    }
    if (!c->limited) {
        call_proxy(c);
        return;
    }
    gw_loop_limit(c->loop, c->limit_key, c->lim, on_limit, c);
}

/* True when the executor answered about the function: 200 (parsed into *out) or 404. */
static bool lookup_answered(const gw_xfer *lx, gw_fn_info *out)
{
    memset(out, 0, sizeof(*out));
    if (lx->result != GW_XFER_OK)
        return false;
    if (lx->status == 200 && gw_fn_info_parse(lx->resp_body.data, lx->resp_body.len, out) != ML_OK)
        return false;
    out->status = (int)lx->status;
    return lx->status == 200 || lx->status == 404;
}

/* The function's configuration could not be fetched: the last known one, else the
 * defaults. The invoke goes on: its own route decides whether it can be served. */
static void lookup_fallback(gw_call *c, const char *where, const char *why)
{
    ml_log_set_request_id(c->rid);
    ml_log_warn("function lookup on %s failed (%s): using %s configuration", where, why,
                c->hit == GW_FNCACHE_STALE ? "the last known" : "the default");
    ml_log_set_request_id(NULL);
    if (c->hit != GW_FNCACHE_STALE)
        memset(&c->info, 0, sizeof(c->info));
    else /* stale-if-error for one more TTL: not one failing lookup per invoke in an outage */
        gw_fncache_put(&c->app->fns, c->fnkey, &c->info, ml_now_ms());
    metric_inc(c->app->m_fn_lookups,
               (const char *[]){ c->hit == GW_FNCACHE_STALE ? "stale" : "default" });
}

/* Loop thread: the executor's answer about the function (or the lack of one). */
static void on_lookup_done(gw_xfer *lx)
{
    gw_call *c = lx->ud;
    gw_fn_info fresh;
    bool ok = lookup_answered(lx, &fresh);

    if (lx->result == GW_XFER_SHUTDOWN) {
        gw_call_proxy_error(c->app, lx, c->resp);
        gw_xfer_free(lx);
        call_fail(c);
        return;
    }
    if (ok) {
        /* never cache a 404: a function created a moment later must be invocable at once */
        if (fresh.status == 200)
            gw_fncache_put(&c->app->fns, c->fnkey, &fresh, ml_now_ms());
        c->info = fresh;
        metric_inc(c->app->m_fn_lookups, (const char *[]){ "fetched" });
    } else {
        lookup_fallback(c, lx->inst->base_url,
                        lx->result == GW_XFER_OK ? "unexpected answer" : lx->error);
    }
    gw_xfer_free(lx);
    if (c->info.status == 404) {
        httpd_resp_error(c->resp, 404, "not_found", "no function '%s'", c->fn);
        call_fail(c);
        return;
    }
    call_limit(c);
}

/* The lookup of c's function (GET /functions/{fn}), not yet bound to an instance; NULL
 * when out of memory. */
static gw_xfer *lookup_xfer(gw_call *c)
{
    gw_xfer *lx = gw_xfer_new();
    ml_buf path = { 0 };
    char rid[200], ns[sizeof(TENANT_HEADER) + TENANT_MAX + 2];

    /* the function as the caller's namespace sees it: another namespace's is a 404 */
    if (!lx || ml_buf_append_str(&path, "/functions/") != ML_OK ||
        gw_sigv4_uri_encode(c->fn, strlen(c->fn), &path) != ML_OK ||
        ml_snprintf(rid, sizeof(rid), "X-Request-Id: %s", c->rid) != ML_OK ||
        ml_snprintf(ns, sizeof(ns), TENANT_HEADER ": %s", c->ns) != ML_OK ||
        gw_call_append_header(&lx->headers, rid) != ML_OK || gw_call_append_header(&lx->headers, ns) != ML_OK) {
        gw_xfer_free(lx);
        ml_buf_free(&path);
        return NULL;
    }
    lx->path = ml_buf_steal(&path, NULL);
    lx->method = "GET";
    lx->timeout_ms = FN_LOOKUP_TIMEOUT_MS;
    lx->connect_timeout_ms = (long)c->app->cfg.connect_timeout_ms;
    lx->max_response = FN_LOOKUP_MAX_BYTES;
    lx->done = on_lookup_done;
    lx->ud = c;
    return lx;
}

/* Loop thread: asks an executor for the function's timeout_s and rate_limit. */
static void start_lookup(gw_call *c)
{
    gw_pool *pool = &c->app->pools[GW_SVC_EXECUTOR];
    gw_xfer *lx = lookup_xfer(c);

    if (!lx) {
        httpd_resp_error(c->resp, 500, "internal", "cannot prepare the function lookup");
        call_fail(c);
        return;
    }
    lx->pool = pool;
    lx->cap = GW_CAP_READ;
    lx->inst = gw_pool_pick(pool, GW_CAP_READ, NULL, ml_now_ms(), &lx->admit);
    if (!lx->inst) {
        /* no executor can read right now (e.g. its database is down): an invoke that an
         * executor can still serve from its own caches must not fail on that */
        gw_xfer_free(lx);
        lookup_fallback(c, pool->service, "no instance can read");
        call_limit(c);
        return;
    }
    gw_loop_start(c->loop, lx);
}

/* Loop thread: the call's first step. */
static void call_run(gw_loop *l, gw_task *t, bool cancelled)
{
    gw_call *c = (gw_call *)((char *)t - offsetof(gw_call, task));

    c->loop = l;
    if (cancelled) {
        httpd_resp_error(c->resp, 503, "shutting_down", "the gateway is shutting down");
        gw_call_header_int(c->resp, "Retry-After", 1);
        call_fail(c);
    } else if (is_invoke(c->def) && c->hit != GW_FNCACHE_FRESH) {
        start_lookup(c);
    } else {
        call_limit(c);
    }
}

/* ---- the HTTP thread's part ---- */

static const char *invocation_type(const gw_route_def *d, httpd_req *req)
{
    const char *t = httpd_header(req, d->kind == GW_KIND_AWS_INVOKE ? "X-Amz-Invocation-Type"
                                                                     : "X-Invocation-Type");
    return t ? t : "RequestResponse";
}

/* Fixes the invocation id: the client's X-Invocation-Id (a UUID, so that it is safe as a
 * key and a header) or, for an Event, a new one; forwarded to the executor, which honours
 * and deduplicates it. ML_ERR with a 400 in resp for an id that is not a UUID. */
static int fix_invocation_id(gw_call *c, bool event)
{
    const char *id = httpd_header(c->req, "X-Invocation-Id");
    char line[sizeof("X-Invocation-Id: ") + ML_UUID_LEN];
    struct curl_slist *n;

    if (id && ml_uuid_valid(id) != ML_OK) {
        httpd_resp_error(c->resp, 400, "invalid_invocation_id",
                         "X-Invocation-Id must be a UUID (8-4-4-4-12 hex digits)");
        return ML_ERR;
    }
    if (id)
        ml_strlcpy(c->inv_id, id, sizeof(c->inv_id)); /* a valid UUID fits */
    else if (event)
        ml_uuid(c->inv_id);
    else
        return ML_OK;
    if (ml_snprintf(line, sizeof(line), "X-Invocation-Id: %s", c->inv_id) != ML_OK ||
        !(n = curl_slist_append(c->x->headers, line))) {
        httpd_resp_error(c->resp, 500, "internal", "cannot prepare the upstream request");
        return ML_ERR;
    }
    c->x->headers = n;
    return ML_OK;
}

/* The AWS Invoke's FunctionName (a name, name:qualifier or an ARN of the caller's account)
 * and Qualifier: the executor's path becomes /functions/<name>/invoke?qualifier=<q>
 * (docs/versions.md). *fn is set to the name. ML_ERR with the refusal in c->resp. */
static int aws_invoke_target(gw_call *c, const char **fn)
{
    const char *q = httpd_query(c->req, "Qualifier");
    char account[GW_AWS_ACCOUNT_LEN + 1];
    ml_buf b = { 0 };
    int rc;

    gw_awsarn_account(c->ns, account);
    if (gw_awsarn_parse(*fn, &c->aws_fn) != ML_OK || (q && gw_awsarn_qualifier_valid(q) != ML_OK) ||
        (q && c->aws_fn.qualifier[0] && strcmp(q, c->aws_fn.qualifier) != 0)) {
        httpd_resp_error(c->resp, 400, "invalid_field",
                         "FunctionName must be a name, name:qualifier or a function ARN, and "
                         "Qualifier a version or alias that agrees with it");
        httpd_resp_header(c->resp, "x-amzn-ErrorType", "InvalidParameterValueException");
        return ML_ERR;
    }
    if (c->aws_fn.account[0] && strcmp(c->aws_fn.account, account) != 0) {
        httpd_resp_error(c->resp, 404, "not_found", "no function '%s'", *fn);
        return ML_ERR;
    }
    q = q ? q : c->aws_fn.qualifier;
    *fn = c->aws_fn.name;
    rc = ml_buf_append_str(&b, "/functions/");
    rc = rc == ML_OK ? gw_sigv4_uri_encode(*fn, strlen(*fn), &b) : rc;
    rc = rc == ML_OK ? ml_buf_append_str(&b, "/invoke") : rc;
    rc = rc == ML_OK && q[0] ? ml_buf_append_str(&b, "?qualifier=") : rc;
    rc = rc == ML_OK && q[0] ? gw_sigv4_uri_encode(q, strlen(q), &b) : rc;
    if (rc != ML_OK) {
        ml_buf_free(&b);
        httpd_resp_error(c->resp, 500, "internal", "cannot prepare the upstream request");
        return ML_ERR;
    }
    free(c->x->path);
    c->x->path = ml_buf_steal(&b, NULL);
    return ML_OK;
}

/* Body checks, the invocation id and the cached function config. ML_ERR with the refusal
 * in resp. */
static int prepare_invoke(gw_call *c)
{
    const char *fn = httpd_param(c->req, "fn"), *type = invocation_type(c->def, c->req);
    bool event = strcmp(type, "Event") == 0;
    size_t len;

    if (c->def->kind == GW_KIND_AWS_INVOKE && aws_invoke_target(c, &fn) != ML_OK)
        return ML_ERR;
    if (aws_events(c->def) && event) { /* a stream is an answer: nothing to queue */
        httpd_resp_error(c->resp, 400, "invalid_field",
                         "X-Amz-Invocation-Type must be RequestResponse or DryRun");
        httpd_resp_header(c->resp, "x-amzn-ErrorType", "InvalidParameterValueException");
        return ML_ERR;
    }
    if (fix_invocation_id(c, event) != ML_OK)
        return ML_ERR;
    if (event) /* queued, not run: what it needs is the broker, not a sandbox */
        c->cap = GW_CAP_ASYNC;
    httpd_body(c->req, &len);
    if (event && len > GW_MAX_EVENT_BODY) {
        httpd_resp_error(c->resp, 413, "payload_too_large",
                         "an asynchronous event may be at most %u KiB", GW_MAX_EVENT_BODY >> 10);
        return ML_ERR;
    }
    if (ml_strlcpy(c->fn, fn, sizeof(c->fn)) != ML_OK) { /* longer than any id or name */
        httpd_resp_error(c->resp, 404, "not_found", "no function '%.64s...'", fn);
        return ML_ERR;
    }
    gw_alog_function(c->req, c->fn);
    c->dry_run = strcmp(type, "DryRun") == 0;
    if (ml_snprintf(c->fnkey, sizeof(c->fnkey), "%s/%s", c->ns, c->fn) != ML_OK) {
        httpd_resp_error(c->resp, 500, "internal", "cannot build the function cache key");
        return ML_ERR; /* sized to fit: never happens */
    }
    c->hit = gw_fncache_get(&c->app->fns, c->fnkey, ml_now_ms(), &c->info);
    if (c->hit != GW_FNCACHE_FRESH)
        return ML_OK;
    metric_inc(c->app->m_fn_lookups, (const char *[]){ "cached" });
    return ML_OK;
}

typedef struct query_fwd {
    ml_buf *b;
    int rc;
} query_fwd;

/* httpd_query_each: appends a known parameter, encoded again ("?key" goes as "key="). */
static void forward_query_arg(void *ud, const char *key, const char *value)
{
    query_fwd *q = ud;
    size_t i = 0;

    while (i < ML_ARRAY_LEN(query_params) && strcmp(key, query_params[i]) != 0)
        i++;
    if (q->rc != ML_OK || i == ML_ARRAY_LEN(query_params))
        return;
    q->rc = ml_buf_printf(q->b, "%c%s=", strchr(ml_buf_cstr(q->b), '?') ? '&' : '?', key);
    if (q->rc == ML_OK && value)
        q->rc = gw_sigv4_uri_encode(value, strlen(value), q->b);
}

/* Each path segment percent-encoded again (the server decoded them), plus the known query
 * parameters; the AWS route maps onto the executor's invoke. Caller frees *out. */
static int upstream_path(const gw_route_def *d, httpd_req *req, char **out)
{
    ml_buf b = { 0 };
    const char *p = httpd_path(req), *fn = httpd_param(req, "fn");
    int rc = ML_OK;
    query_fwd q = { &b, ML_OK };

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
        if (rc == ML_OK)
            httpd_query_each(req, forward_query_arg, &q);
        rc = rc == ML_OK ? q.rc : rc;
    }
    if (rc != ML_OK) {
        ml_buf_free(&b);
        return ML_ERR;
    }
    *out = ml_buf_steal(&b, NULL);
    return ML_OK;
}

/* The upstream timeout: GET /functions/{fn}?wait=... may legitimately take its timeout_s
 * (at most 60 s) plus the margin, whatever the short default for plain routes. */
static long upstream_timeout_ms(const gw_app *a, const gw_route_def *d, httpd_req *req)
{
    int64_t t = a->cfg.upstream_timeout_s, wait = WAIT_TIMEOUT_MAX_S;
    const char *ts = httpd_query(req, "timeout_s");

    if (strcmp(d->method, "GET") == 0 && strcmp(d->pattern, "/functions/{fn}") == 0 &&
        httpd_query(req, "wait")) {
        if (ts && ml_parse_int64(ts, 1, WAIT_TIMEOUT_MAX_S, &wait) != ML_OK)
            wait = WAIT_TIMEOUT_MAX_S;
        if (wait + a->cfg.invoke_margin_s > t)
            t = wait + a->cfg.invoke_margin_s;
    }
    return (long)(t * 1000);
}

/* A call with its upstream request built from the client's; NULL when out of memory. */
static gw_call *call_new(gw_app *a, const gw_route_def *d, httpd_req *req, httpd_resp *resp)
{
    gw_call *c = calloc(1, sizeof(*c));
    gw_xfer *x = gw_xfer_new();

    if (!c || !x || upstream_path(d, req, &x->path) != ML_OK ||
        gw_hdr_upstream_request(gw_call_req_header, req, d->kind == GW_KIND_AWS_INVOKE,
                                httpd_client_ip(req), httpd_request_id(req), &x->headers) != ML_OK) {
        gw_xfer_free(x);
        free(c);
        return NULL;
    }
    c->app = a;
    c->def = d;
    c->cap = d->cap;
    c->req = req;
    c->resp = resp;
    c->task.run = call_run;
    ml_strlcpy(c->rid, httpd_request_id(req), sizeof(c->rid));
    x->method = d->kind == GW_KIND_AWS_INVOKE ? "POST" : httpd_method(req);
    x->body = httpd_body(req, &x->body_len);
    x->timeout_ms = upstream_timeout_ms(a, d, req);
    x->connect_timeout_ms = (long)a->cfg.connect_timeout_ms;
    x->max_response = (size_t)a->cfg.max_response_bytes;
    x->done = on_upstream_done;
    x->on_stream = d->kind == GW_KIND_PLAIN ? on_upstream_stream : NULL;
    if (is_invoke(d)) { /* a streaming function's answer is relayed as it runs */
        if (gw_call_append_header(&x->headers, INVSTREAM_ACCEPT_HEADER ": 1") != ML_OK) {
            gw_xfer_free(x);
            free(c);
            return NULL;
        }
        x->on_chunk = on_upstream_chunk;
        c->relay = (gw_srelay){ .mode = aws_events(d) ? GW_SRELAY_EVENTS : GW_SRELAY_RAW,
                                .start = relay_start, .ud = x };
    }
    x->ud = c;
    c->x = x;
    return c;
}

/* The namespace the request acts in (gw_auth_namespace) into ns; ML_ERR with the 400/403
 * in resp. */
static int choose_namespace(httpd_req *req, httpd_resp *resp, const gw_principal *who,
                            char ns[TENANT_MAX + 1])
{
    const char *hdr = httpd_header(req, TENANT_HEADER);
    int st = gw_auth_namespace(who, hdr, ns);

    if (st == 0)
        gw_alog_namespace(req, ns);
    else
        gw_alog_auth(req, who->sub, st == 400 ? "invalid_namespace" : "namespace_forbidden");
    if (st == 400)
        httpd_resp_error(resp, 400, "invalid_namespace",
                         TENANT_HEADER " must be a namespace name (1-63 of [a-z0-9-])");
    else if (st == 403)
        httpd_resp_error(resp, 403, "forbidden",
                         "this credential may act only in its own namespace");
    return st == 0 ? ML_OK : ML_ERR;
}

/* A build submission: the namespace's builds_per_minute (decided on the loop, in Redis)
 * and, on POST /functions, its max_functions for the build-master to enforce. ML_ERR with
 * the refusal in c->resp. */
static int build_quotas(gw_call *c)
{
    gw_tn_quotas q;
    char line[sizeof(TENANT_QUOTA_FUNCTIONS_HEADER) + 32];

    gw_tn_quotas_get(&c->app->tenants, c->ns, &q);
    if (q.builds_per_minute == 0) {
        gw_alog_ratelimit(c->req, "limited");
        gw_call_quota_error(c->app, c->resp, c->ns, "builds_per_minute", 0, 60);
        return ML_ERR;
    }
    if (q.builds_per_minute > 0) {
        c->quota_limited = true;
        c->quota_n = q.builds_per_minute;
        if (ml_snprintf(c->quota_key, sizeof(c->quota_key), RL_KEY_PREFIX "nsbuild:%s",
                        c->ns) != ML_OK)
            goto fail; /* sized to fit */
    }
    if (q.max_functions >= 0 && strcmp(c->def->method, "POST") == 0 &&
        (ml_snprintf(line, sizeof(line), TENANT_QUOTA_FUNCTIONS_HEADER ": %" PRId64,
                     q.max_functions) != ML_OK ||
         gw_call_append_header(&c->x->headers, line) != ML_OK))
        goto fail;
    return ML_OK;
fail:
    httpd_resp_error(c->resp, 500, "internal", "cannot prepare the namespace's quotas");
    return ML_ERR;
}

/* A sync invoke in a namespace with a max_concurrency quota takes a slot (tenants.h) until
 * it ends; an Event or a dry run runs nothing here. ML_ERR with the 429 in c->resp. */
static int take_concurrency(gw_call *c)
{
    gw_app *a = c->app;
    gw_tn_quotas q;
    int64_t in_flight, hold_s;
    int got;

    if (c->cap == GW_CAP_ASYNC || c->dry_run)
        return ML_OK;
    gw_tn_quotas_get(&a->tenants, c->ns, &q);
    if (q.max_concurrency < 0)
        return ML_OK;
    /* the longest the call can hold it: its function's timeout (else the longest any
     * function may run) plus the margin; the slot expires by itself past that */
    hold_s = (c->hit == GW_FNCACHE_FRESH && c->info.timeout_s > 0 ? c->info.timeout_s
                                                                  : MAX_FUNCTION_TIMEOUT_S) +
             a->cfg.invoke_margin_s;
    ml_uuid(c->conc_id);
    got = gw_tn_conc_acquire(&a->tenants, c->ns, c->conc_id, q.max_concurrency, hold_s * 1000,
                             &in_flight);
    if (got == 0) {
        gw_alog_ratelimit(c->req, "limited");
        gw_call_quota_error(a, c->resp, c->ns, "max_concurrency", q.max_concurrency, 1);
        return ML_ERR;
    }
    c->conc_held = got == 1;
    return ML_OK;
}

/* POST /admin/tokens, answered here: nothing upstream knows the JWT secret. */
static httpd_result mint(gw_app *a, httpd_req *req, httpd_resp *resp, const char *ns)
{
    size_t len = 0;
    const char *body = httpd_body(req, &len);
    void *doc = NULL;
    char err[256];
    int st = token_admin_mint(a->cfg.jwt_secret, body, len, ns, (int64_t)time(NULL), &doc, err,
                              sizeof(err));

    if (st == 201)
        httpd_resp_json(resp, 201, (cJSON *)doc); /* frees doc */
    else
        httpd_resp_error(resp, st, st == 400 ? "invalid_field" : "internal", "%s", err);
    return HTTPD_DONE;
}

static httpd_result handle(httpd_req *req, httpd_resp *resp, void *ud)
{
    gw_route_ctx *rc = ud;
    gw_app *a = rc->app;
    const gw_route_def *d = rc->def;
    gw_principal who;
    gw_call *c = NULL;
    char ns[TENANT_MAX + 1], line[sizeof(TENANT_HEADER) + TENANT_MAX + 2];

    gw_alog_begin(a->alog, req);
    if (atomic_load(&a->draining)) {
        httpd_resp_error(resp, 503, "shutting_down", "the gateway is shutting down");
        gw_call_header_int(resp, "Retry-After", 1);
        httpd_resp_header(resp, "Connection", "close");
        goto refuse;
    }
    if (d->kind == GW_KIND_AWS_CODE)
        return gw_awscode_handle(a, req, resp);
    if (d->kind == GW_KIND_FNURL) /* its own auth, namespace and flow (fnurl.c) */
        return gw_fnurl_handle(a, d, req, resp);
    if (gw_call_authenticate(a, d, req, resp, &who) != ML_OK || choose_namespace(req, resp, &who, ns) != ML_OK)
        goto refuse;
    if (d->kind == GW_KIND_MINT)
        return mint(a, req, resp, ns);
    if (d->kind == GW_KIND_AWS_CTL)
        return gw_awsctl_handle(a, d, req, resp, &who, ns);
    if (d->kind == GW_KIND_BATCH_INVOKE)
        return gw_batchinv_handle(a, d, req, resp, ns);
    c = call_new(a, d, req, resp);
    if (!c || gw_hdr_reveal_secrets(&c->x->headers, who.scopes) != ML_OK ||
        ml_snprintf(line, sizeof(line), TENANT_HEADER ": %s", ns) != ML_OK ||
        gw_call_append_header(&c->x->headers, line) != ML_OK) {
        httpd_resp_error(resp, 500, "internal", "cannot prepare the upstream request");
        goto refuse;
    }
    ml_strlcpy(c->ns, ns, sizeof(c->ns)); /* a valid name: fits */
    if (d->kind == GW_KIND_BUILD_SUBMIT) {
        c->limited = true;
        c->lim = gcra_limit_per_minute(a->cfg.build_per_minute, a->cfg.build_burst);
        if (ml_snprintf(c->limit_key, sizeof(c->limit_key), RL_KEY_PREFIX "build:%s:%s",
                        ns, who.sub) != ML_OK) {
            httpd_resp_error(resp, 500, "internal", "cannot build the rate limit key");
            goto refuse;
        }
        c->limit_kind = "build";
        c->limit_label = "";
        if (build_quotas(c) != ML_OK)
            goto refuse;
    }
    if (is_invoke(d) && (gw_bodycheck_invoke(req, resp) != ML_OK || prepare_invoke(c) != ML_OK ||
                         take_concurrency(c) != ML_OK))
        goto refuse;
    gw_proxy_run(a->proxy, &c->task);
    return HTTPD_ASYNC;
refuse:
    if (c) {
        stamp_invocation_id(c);
        gw_xfer_free(c->x);
        free(c);
    }
    if (d->kind == GW_KIND_AWS_INVOKE || d->kind == GW_KIND_AWS_CTL)
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
                                     "Rate-limit decisions by namespace, limit kind, function "
                                     "(capped; _other beyond the cap) and decision.",
                                     "namespace,limit,function,decision");
    a->m_proxy_errors = metrics_counter(reg, "minilambda_gateway_proxy_errors_total",
                                        "Requests the gateway could not complete upstream, by kind.",
                                        "service,kind");
    a->m_upstream_seconds = metrics_histogram(reg, "minilambda_gateway_upstream_duration_seconds",
                                              "Time from queuing an upstream exchange to its end.",
                                              "service", NULL, 0);
    a->m_quota_refusals = metrics_counter(reg, "minilambda_gateway_quota_refusals_total",
                                          "Requests refused by a namespace quota, by namespace "
                                          "and quota (docs/tenants.md).",
                                          "namespace,quota");
    a->m_fn_lookups = metrics_counter(reg, "minilambda_gateway_function_lookups_total",
                                      "Function configuration lookups by source "
                                      "(cached, fetched, stale, default).",
                                      "source");
    a->m_fnurl_requests = metrics_counter(reg, "minilambda_gateway_fnurl_requests_total",
                                          "Function URL requests by namespace, function (capped), "
                                          "auth mode and outcome (docs/http.md).",
                                          "namespace,function,auth,result");
    if (gw_batch_metrics_init(reg) != ML_OK) /* function URL micro-batching (batch.h) */
        ml_log_warn("gateway: cannot register the batching metrics");
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
    if (gw_limiter_init(&a->limiter, cfg->redis_url, (int)cfg->redis_timeout_ms, reg, err,
                        errlen) != ML_OK)
        return ML_ERR;
    a->limiter_ready = true;
    if (gw_tenants_init(&a->tenants, &a->pools[GW_SVC_EXECUTOR], cfg->redis_url,
                        (int)cfg->redis_timeout_ms) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot set up the tenant caches");
        return ML_ERR;
    }
    metrics_set_max_functions((size_t)cfg->metric_max_functions);
    register_metrics(a, reg);
    a->alog = gw_alog_start(cfg->access_log ? cfg->access_log : "off", cfg->access_log_sample,
                            reg, err, errlen);
    return a->alog ? ML_OK : ML_ERR;
}

int gw_app_start(gw_app *a, httpd *http, char *err, size_t errlen)
{
    gw_proxy_config pc = { httpd_loops(http), (long)a->cfg.keepalive_conns, &a->limiter, http };

    a->proxy = gw_proxy_start(&pc, err, errlen);
    if (!a->proxy)
        return ML_ERR;
    a->health = gw_health_start(a->pool_list, GW_NSVC);
    if (!a->health) {
        ml_snprintf_trunc(err, errlen, "cannot start the health checker thread");
        return ML_ERR;
    }
    return ML_OK;
}

void gw_app_drain(gw_app *a)
{
    atomic_store(&a->draining, true);
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
    if (a->limiter_ready)
        gw_limiter_free(&a->limiter);
    a->limiter_ready = false;
    gw_tenants_free(&a->tenants);
    gw_fncache_free(&a->fns);
    gw_alog_stop(a->alog); /* the HTTP loops have stopped: no line comes any more */
    a->alog = NULL;
    for (size_t i = 0; i < GW_NSVC; i++)
        gw_pool_free(&a->pools[i]);
}

size_t gw_app_routes(gw_app *a, httpd_route *out, size_t max)
{
    size_t n = 0;

    for (; n < gw_nroutes && n < max && n < GW_MAX_ROUTES; n++) {
        const gw_route_def *d = &gw_routes[n];
        a->ctx[n] = (gw_route_ctx){ a, d };
        out[n] = (httpd_route){ d->method, d->pattern, handle, &a->ctx[n], d->max_body, false };
    }
    return n;
}

int gw_app_check_pool(void *pool, char *err, size_t errlen)
{
    gw_pool *p = pool;
    char detail[512];

    if (gw_pool_available(p, detail, sizeof(detail)) > 0)
        return ML_OK;
    ml_snprintf_trunc(err, errlen, "no %s instance available: %s", p->service, detail);
    return ML_ERR;
}
