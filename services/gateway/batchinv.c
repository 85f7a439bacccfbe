/* batchinv.c — POST /batch-invoke (batchinv.h): rate limit per item on the loop, forward
 * the admitted items to one executor, merge the results with the throttled ones in order. */
#include "batchinv.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "bodycheck.h"
#include "fnspec.h"
#include "gateway-int.h"
#include "headers.h"
#include "jsoncheck.h"
#include "log.h"
#include "tenant.h"

#define BATCH_MAX_ITEMS 100

typedef struct bi_call bi_call;

typedef struct bi_item {
    bi_call *call;
    const cJSON *src;        /* the caller's item (in call->in) */
    const char *fn;          /* its "function", or NULL when malformed (the executor refuses) */
    bool limited;            /* spends the function's budget */
    bool sync;               /* runs now (RequestResponse), not queued or a dry run */
    int64_t timeout_s;       /* its function's timeout (the longest any may have, unknown) */
    bool throttled;
    int64_t retry_s;
    gcra_limit lim;
    char key[sizeof(GW_RL_KEY_PREFIX) + TENANT_MAX + 300];
    const char *label;
} bi_item;

struct bi_call {
    gw_task task;
    gw_app *a;
    httpd_req *req;
    httpd_resp *resp;
    gw_loop *loop;
    char ns[TENANT_MAX + 1];
    cJSON *in;               /* the caller's body */
    bi_item items[BATCH_MAX_ITEMS];
    size_t n, pending;
    int64_t timeout_s;       /* what the executor may take (batch_timeout_s) */
    char *body;              /* what the executor gets (owned) */
};

static void call_end(bi_call *c)
{
    httpd_req *req = c->req;

    cJSON_Delete(c->in);
    cJSON_free(c->body);
    free(c);
    httpd_complete(req);
}

/* A gateway-made result for item i: 429 rate_limited. */
static cJSON *throttled_result(const bi_item *it, size_t i)
{
    cJSON *o = cJSON_CreateObject(), *e;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(it->src, "id");
    char msg[96];

    ml_snprintf_trunc(msg, sizeof(msg), "function rate limit exceeded: retry in %" PRId64 " s", it->retry_s);
    cJSON_AddNumberToObject(o, "index", (double)i);
    if (cJSON_IsString(id))
        cJSON_AddStringToObject(o, "id", id->valuestring);
    else
        cJSON_AddNullToObject(o, "id");
    cJSON_AddStringToObject(o, "function", it->fn ? it->fn : "");
    cJSON_AddNumberToObject(o, "status", 429);
    e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "code", "rate_limited");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddNumberToObject(e, "retry_after_s", (double)it->retry_s);
    return o;
}

/* The caller's answer: the executor's results (in forwarded order; NULL when nothing was
 * forwarded) with the throttled items put back in their places. */
static void reply_merged(bi_call *c, cJSON *fwd_results)
{
    cJSON *out = cJSON_CreateObject(), *results = cJSON_AddArrayToObject(out, "results");
    cJSON *next = fwd_results ? fwd_results->child : NULL;

    for (size_t i = 0; i < c->n && results; i++) {
        cJSON *r;
        if (c->items[i].throttled) {
            r = throttled_result(&c->items[i], i);
        } else if (next) {
            cJSON *cur = next;
            next = next->next;
            r = cJSON_Duplicate(cur, true);
            cJSON_DeleteItemFromObjectCaseSensitive(r, "index");
            cJSON_AddNumberToObject(r, "index", (double)i);
        } else { /* the executor answered fewer results than it was sent: never expected */
            r = cJSON_CreateObject();
            cJSON_AddNumberToObject(r, "index", (double)i);
            cJSON_AddNumberToObject(r, "status", 502);
            cJSON_AddItemToObject(r, "error", cJSON_CreateObject());
            cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(r, "error"), "code", "bad_gateway");
        }
        cJSON_AddItemToArray(results, r);
    }
    httpd_resp_json(c->resp, 200, out);
}

static void upstream_error(bi_call *c, gw_xfer *x)
{
    switch (x->result) {
    case GW_XFER_CONNECT:
        httpd_resp_error(c->resp, 503, "upstream_unavailable", "cannot connect to any %s instance",
                         x->pool->service);
        httpd_resp_header(c->resp, "Retry-After", "1");
        break;
    case GW_XFER_TIMEOUT:
        httpd_resp_error(c->resp, 504, "upstream_timeout", "%s did not answer within %ld ms",
                         x->pool->service, x->timeout_ms);
        break;
    case GW_XFER_SHUTDOWN:
        httpd_resp_error(c->resp, 503, "shutting_down", "the gateway is shutting down");
        httpd_resp_header(c->resp, "Retry-After", "1");
        break;
    default:
        httpd_resp_error(c->resp, 502, "bad_gateway", "%s failed: %s", x->pool->service, x->error);
        break;
    }
}

/* Loop thread: the executor's answer. A non-200 (its 400 for a malformed item, a 503) is
 * the caller's answer as it is. */
static void on_done(gw_xfer *x)
{
    bi_call *c = x->ud;
    cJSON *doc = NULL, *results;

    gw_alog_upstream(c->req, x->pool->service, (ml_now_ms() - x->started_ms) * 1000);
    if (x->result != GW_XFER_OK) {
        upstream_error(c, x);
    } else if (x->status == 200 && (doc = cJSON_ParseWithLength(x->resp_body.data, x->resp_body.len)) &&
               cJSON_IsArray(results = cJSON_GetObjectItemCaseSensitive(doc, "results"))) {
        reply_merged(c, results);
    } else if (x->status == 200) {
        httpd_resp_error(c->resp, 502, "bad_gateway", "the executor's batch answer is malformed");
    } else {
        c->resp->status = (int)x->status;
        ml_buf_free(&c->resp->body);
        c->resp->body = x->resp_body;
        memset(&x->resp_body, 0, sizeof(x->resp_body));
        gw_hdr_copy_response(&x->resp_headers, c->resp);
    }
    cJSON_Delete(doc);
    gw_xfer_free(x);
    call_end(c);
}

/* The body the executor gets: the admitted items in order. ML_ERR when out of memory. */
static int forward_body(bi_call *c, size_t *nfwd)
{
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "invocations");

    *nfwd = 0;
    for (size_t i = 0; i < c->n && list; i++) {
        if (c->items[i].throttled)
            continue;
        cJSON_AddItemToArray(list, cJSON_Duplicate(c->items[i].src, true));
        (*nfwd)++;
    }
    c->body = list ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return c->body ? ML_OK : ML_ERR;
}

static int add_header(gw_xfer *x, const char *line)
{
    struct curl_slist *n = curl_slist_append(x->headers, line);

    if (!n)
        return ML_ERR;
    x->headers = n;
    return ML_OK;
}

/* Loop thread: every decision is in; forward what is admitted. */
static void forward(bi_call *c)
{
    gw_pool *pool = &c->a->pools[GW_SVC_EXECUTOR];
    gw_xfer *x = NULL;
    char line[sizeof(TENANT_HEADER) + TENANT_MAX + 4];
    size_t nfwd;

    if (forward_body(c, &nfwd) != ML_OK)
        goto internal;
    if (nfwd == 0) { /* every item throttled: nothing to ask */
        reply_merged(c, NULL);
        call_end(c);
        return;
    }
    if (!(x = gw_xfer_new()) || !(x->path = strdup("/batch-invoke")) ||
        gw_hdr_upstream_request(gw_call_req_header, c->req, false, httpd_client_ip(c->req), httpd_request_id(c->req),
                                &x->headers) != ML_OK ||
        ml_snprintf(line, sizeof(line), TENANT_HEADER ": %s", c->ns) != ML_OK || add_header(x, line) != ML_OK)
        goto internal;
    x->method = "POST";
    x->body = c->body;
    x->body_len = strlen(c->body);
    x->cap = GW_CAP_INVOKE;
    x->timeout_ms = (long)((c->timeout_s + c->a->cfg.invoke_margin_s) * 1000);
    x->connect_timeout_ms = (long)c->a->cfg.connect_timeout_ms;
    x->max_response = (size_t)c->a->cfg.max_response_bytes;
    x->done = on_done;
    x->ud = c;
    x->pool = pool;
    if (!(x->inst = gw_pool_pick(pool, GW_CAP_INVOKE, NULL, ml_now_ms(), &x->admit))) {
        gw_xfer_free(x);
        httpd_resp_error(c->resp, 503, "upstream_unavailable",
                         "no %s instance is available for 'invoke' right now", pool->service);
        httpd_resp_header(c->resp, "Retry-After", "1");
        call_end(c);
        return;
    }
    gw_loop_start(c->loop, x);
    return;
internal:
    gw_xfer_free(x);
    httpd_resp_error(c->resp, 500, "internal", "cannot prepare the upstream request");
    call_end(c);
}

/* Loop thread: one item's decision. */
static void on_limit(void *ud, const gcra_result *r)
{
    bi_item *it = ud;
    bi_call *c = it->call;

    metric_inc(c->a->m_decisions, (const char *[]){ c->ns, "function", it->label,
                                                    r->allowed ? "allowed" : "throttled" });
    if (!r->allowed) {
        int64_t retry = gw_call_ceil_s(r->retry_after_us);
        it->throttled = true;
        it->retry_s = retry < 1 ? 1 : retry;
        gw_alog_ratelimit(c->req, "limited");
    }
    if (--c->pending == 0)
        forward(c);
}

/* Loop thread: the decisions, one per limited item (all in flight at once). */
static void call_run(gw_loop *l, gw_task *t, bool cancelled)
{
    bi_call *c = (bi_call *)((char *)t - offsetof(bi_call, task));
    size_t i;

    c->loop = l;
    if (cancelled) {
        httpd_resp_error(c->resp, 503, "shutting_down", "the gateway is shutting down");
        httpd_resp_header(c->resp, "Retry-After", "1");
        call_end(c);
        return;
    }
    c->pending = 1; /* held until every decision is asked for: none may finish the call early */
    for (i = 0; i < c->n; i++)
        if (c->items[i].limited) {
            c->pending++;
            gw_loop_limit(l, c->items[i].key, c->items[i].lim, on_limit, &c->items[i]);
        }
    if (--c->pending == 0)
        forward(c);
}

/* The item's budget: the function's rate limit from the cache when fresh, else the
 * default; its timeout into the call's longest. */
static void plan_item(bi_call *c, bi_item *it)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(it->src, "invocation_type");
    gw_fn_info info;
    char fnkey[TENANT_MAX + 300];
    bool fresh = false;

    if (ml_snprintf(fnkey, sizeof(fnkey), "%s/%s", c->ns, it->fn) == ML_OK)
        fresh = gw_fncache_get(&c->a->fns, fnkey, ml_now_ms(), &info) == GW_FNCACHE_FRESH;
    if (!fresh)
        memset(&info, 0, sizeof(info));
    it->timeout_s = gw_fn_timeout_s(&info);
    it->sync = !cJSON_IsString(t) || strcmp(t->valuestring, "RequestResponse") == 0;
    /* a dry run invokes nothing, so it spends no budget (as on /invoke) */
    if (cJSON_IsString(t) && strcmp(t->valuestring, "DryRun") == 0)
        return;
    it->lim = info.has_rate_limit ? gcra_limit_rps(info.rps, info.burst)
                                  : gcra_limit_rps((double)c->a->cfg.default_rps, c->a->cfg.default_burst);
    /* sized to fit a namespace and any function name or id; a cut key is not used */
    it->limited = ml_snprintf(it->key, sizeof(it->key), GW_RL_KEY_PREFIX "fn:%s:%s", c->ns,
                              info.id[0] ? info.id : it->fn) == ML_OK;
    it->label = metrics_function_label(info.name[0] ? info.name : it->fn);
}

/* How long the executor may take: the longest item's function timeout, or — since the
 * executor runs a function's items no faster than its concurrency allows, one after another
 * at worst — the sum of one function's sync items' timeouts when that is longer. */
static int64_t batch_timeout_s(const bi_call *c)
{
    int64_t longest = 1;

    for (size_t i = 0; i < c->n; i++) {
        int64_t sum = 0;
        if (!c->items[i].fn)
            continue;
        for (size_t j = i; j < c->n && c->items[i].sync; j++)
            if (c->items[j].sync && c->items[j].fn && strcmp(c->items[j].fn, c->items[i].fn) == 0)
                sum += c->items[j].timeout_s;
        sum = sum > c->items[i].timeout_s ? sum : c->items[i].timeout_s;
        longest = sum > longest ? sum : longest;
    }
    return longest;
}

/* The caller's body into c: 1..100 items; an item without a usable "function" is
 * forwarded unlimited, for the executor to refuse the request. ML_ERR with a 400 written. */
static int parse(bi_call *c)
{
    size_t len = 0, at = 0;
    const char *body = httpd_body(c->req, &len);
    const cJSON *list, *o;

    /* as on /invoke (bodycheck.h), the payloads one level below {"invocations":[{...}]} */
    if (gw_bodycheck_depth(body, len, JSONCHECK_MAX_DEPTH + 3, &at) > JSONCHECK_MAX_DEPTH + 3) {
        httpd_resp_error(c->resp, 400, "invalid_request_content",
                         "a payload nests deeper than %d arrays/objects (at byte %zu)", JSONCHECK_MAX_DEPTH, at);
        return ML_ERR;
    }
    c->in = cJSON_ParseWithLength(body, len);
    list = cJSON_GetObjectItemCaseSensitive(c->in, "invocations");
    if (!cJSON_IsObject(c->in) || !cJSON_IsArray(list) || cJSON_GetArraySize(list) < 1 ||
        cJSON_GetArraySize(list) > BATCH_MAX_ITEMS) {
        httpd_resp_error(c->resp, 400, "invalid_field",
                         "invocations: must be an array of 1..%d invocations", BATCH_MAX_ITEMS);
        return ML_ERR;
    }
    cJSON_ArrayForEach(o, list) {
        bi_item *it = &c->items[c->n++];
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(o, "function");
        it->call = c;
        it->src = o;
        it->fn = cJSON_IsString(fn) && fn->valuestring[0] && strlen(fn->valuestring) < 256 ? fn->valuestring : NULL;
        if (it->fn)
            plan_item(c, it);
    }
    c->timeout_s = batch_timeout_s(c);
    return ML_OK;
}

httpd_result gw_batchinv_handle(gw_app *a, const gw_route_def *d, httpd_req *req, httpd_resp *resp,
                                const char *ns)
{
    bi_call *c = calloc(1, sizeof(*c));

    ML_UNUSED(d);
    if (!c) {
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return HTTPD_DONE;
    }
    c->a = a, c->req = req, c->resp = resp;
    c->task.run = call_run;
    ml_strlcpy(c->ns, ns, sizeof(c->ns)); /* a valid name: fits */
    if (parse(c) != ML_OK) {
        cJSON_Delete(c->in);
        free(c);
        return HTTPD_DONE;
    }
    gw_proxy_run(a->proxy, &c->task);
    return HTTPD_ASYNC;
}
