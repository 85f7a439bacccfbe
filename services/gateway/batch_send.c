/* batch_send.c — one micro-batch's invoke and the routing of its answer (batch.h): the body
 * {"v":1,"batch":[...]} with each item's id, the executor's plain answer
 * {"v":1,"responses":[...]} or its streamed one (invstream frames whose data are NDJSON
 * response records, each routed the moment its line is complete), and the failures that
 * end every item still waiting. */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "batch-int.h"
#include "fnspec.h"
#include "headers.h"
#include "log.h"
#include "sigv4.h"
#include "tenant.h"

/* ---- the body and the id index ---- */

static uint64_t id_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Appends s as a JSON string (quoted, escaped). */
static int json_str(ml_buf *b, const char *s)
{
    int rc = ml_buf_append(b, "\"", 1);

    for (; rc == ML_OK && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            rc = ml_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            rc = ml_buf_printf(b, "\\u%04x", c);
        else
            rc = ml_buf_append(b, s, 1);
    }
    return rc == ML_OK ? ml_buf_append(b, "\"", 1) : rc;
}

/* One item of the batch: its event with "id" first. */
static int body_item(ml_buf *b, const gw_bitem *it)
{
    const char *e = (const char *)memchr(it->event, '{', it->event_len) + 1; /* item_new checked */
    size_t rest = it->event_len - (size_t)(e - it->event), skip = 0;

    while (skip < rest && (e[skip] == ' ' || e[skip] == '\t' || e[skip] == '\r' || e[skip] == '\n'))
        skip++;
    if (ml_buf_append(b, "{\"id\":", 6) != ML_OK || json_str(b, it->id) != ML_OK)
        return ML_ERR;
    if (skip < rest && e[skip] != '}' && ml_buf_append(b, ",", 1) != ML_OK)
        return ML_ERR;
    return ml_buf_append(b, e + skip, rest - skip);
}

/* The body over the unanswered items, and the index from their ids to them. */
static int build(gw_bbatch *b)
{
    bool first = true;

    b->index_cap = 16;
    while (b->index_cap < b->live * 2)
        b->index_cap *= 2;
    if (!(b->index = malloc(b->index_cap * sizeof(*b->index))))
        return ML_ERR;
    memset(b->index, 0xff, b->index_cap * sizeof(*b->index)); /* -1: empty */
    if (ml_buf_append_str(&b->body, "{\"v\":1,\"batch\":[") != ML_OK)
        return ML_ERR;
    for (size_t i = 0; i < b->n; i++) {
        const gw_bitem *it = b->items[i];
        size_t slot;
        if (it->answered)
            continue;
        if ((!first && ml_buf_append(&b->body, ",", 1) != ML_OK) || body_item(&b->body, it) != ML_OK)
            return ML_ERR;
        first = false;
        for (slot = id_hash(it->id, strlen(it->id)) & (b->index_cap - 1); b->index[slot] >= 0;
             slot = (slot + 1) & (b->index_cap - 1))
            ;
        b->index[slot] = (int32_t)i;
    }
    return ml_buf_append_str(&b->body, "]}");
}

/* The unanswered item with this id, or NULL (unknown, or answered already: a late or repeated
 * record is dropped). */
static gw_bitem *find(gw_bbatch *b, const char *id, size_t len)
{
    for (size_t slot = id_hash(id, len) & (b->index_cap - 1); b->index[slot] >= 0;
         slot = (slot + 1) & (b->index_cap - 1)) {
        gw_bitem *it = b->items[b->index[slot]];
        if (strlen(it->id) == len && memcmp(it->id, id, len) == 0 && !it->answered)
            return it;
    }
    return NULL;
}

/* Routes one response record (JSON object text with "id") to its item. */
static void route_record(gw_bbatch *b, const cJSON *rec, const char *text, size_t len)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(rec, "id");
    gw_bitem *it;
    gw_fnout out = { .kind = GW_FNOUT_RESULT, .json = text, .len = len };

    if (!cJSON_IsObject(rec) || !cJSON_IsString(id) ||
        !(it = find(b, id->valuestring, strlen(id->valuestring))))
        return; /* malformed or unknown: its item, if any, ends as missing */
    b->from_fn++;
    gw_bitem_answer(it, &out);
}

/* ---- the streamed answer ---- */

static void route_line(gw_bbatch *b, const char *line, size_t len)
{
    cJSON *rec;

    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (len == 0)
        return;
    if ((rec = cJSON_ParseWithLength(line, len))) {
        route_record(b, rec, line, len);
        cJSON_Delete(rec);
    }
}

/* The function's bytes: every complete line is a record, routed now. */
static int on_data(gw_bbatch *b, const char *p, size_t len)
{
    const char *nl;

    while ((nl = memchr(p, '\n', len))) {
        size_t n = (size_t)(nl - p);
        if (b->line.len == 0) {
            route_line(b, p, n);
        } else {
            if (ml_buf_append(&b->line, p, n) != ML_OK)
                return ML_ERR;
            route_line(b, b->line.data, b->line.len);
            ml_buf_reset(&b->line);
        }
        p += n + 1;
        len -= n + 1;
    }
    return len ? ml_buf_append(&b->line, p, len) : ML_OK;
}

static int on_frame(void *ud, char type, const char *data, size_t len)
{
    gw_bbatch *b = ud;

    if (type == INVSTREAM_DATA)
        return on_data(b, data, len);
    if (type == INVSTREAM_END) {
        b->ended = true;
        return ml_buf_append(&b->end, data, len);
    }
    return ML_OK; /* 'M': the records carry their own HTTP metadata */
}

static int on_chunk(gw_xfer *x, const char *data, size_t len)
{
    gw_bbatch *b = x->ud;

    return invstream_feed(&b->dec, data, len, on_frame, b);
}

/* ---- the outcome ---- */

/* The function failed as a whole: every unanswered item shares its error. */
static const char *fail_function(gw_bbatch *b, const char *type, const char *json, size_t len)
{
    bool timeout = type && strcmp(type, "TimeoutError") == 0;
    gw_fnout out = { .kind = timeout ? GW_FNOUT_TIMEOUT : GW_FNOUT_FUNCTION_ERROR, .json = json,
                     .len = len, .message = "the function timed out" };

    gw_bbatch_fail(b, &out);
    return timeout ? "timeout" : "function_error";
}

/* The items the answer left out fail alone. */
static const char *fail_missing(gw_bbatch *b)
{
    bool missing = b->live > 0;

    gw_bbatch_fail_gw(b, 502, "batch_item_missing", "the function's batch answer had no response for this request");
    return missing ? "partial" : "ok";
}

/* As the gateway answers a failed exchange (gateway.c proxy_error). */
static const char *fail_transport(gw_bbatch *b, const gw_xfer *x)
{
    char msg[CURL_ERROR_SIZE + 96];
    const char *svc = b->pool->service;

    ml_log_kv(ML_LOG_WARN, "batch invoke failed", "upstream", svc, "instance", x->inst->base_url,
              "error", x->error, NULL);
    switch (x->result) {
    case GW_XFER_CONNECT:
        ml_snprintf_trunc(msg, sizeof(msg), "cannot connect to any %s instance", svc);
        gw_bbatch_fail_gw(b, 503, "upstream_unavailable", msg);
        break;
    case GW_XFER_TIMEOUT:
        ml_snprintf_trunc(msg, sizeof(msg), "%s did not answer within %ld ms", svc, x->timeout_ms);
        gw_bbatch_fail_gw(b, 504, "upstream_timeout", msg);
        break;
    case GW_XFER_TOO_LARGE:
        ml_snprintf_trunc(msg, sizeof(msg), "the %s response exceeds %zu bytes", svc, x->max_response);
        gw_bbatch_fail_gw(b, 502, "upstream_response_too_large", msg);
        break;
    case GW_XFER_SHUTDOWN:
        gw_bbatch_fail_gw(b, 503, "shutting_down", "the gateway is shutting down");
        break;
    default:
        ml_snprintf_trunc(msg, sizeof(msg), "%s failed: %s", svc,
                          b->dec.failed ? b->dec.error : x->error);
        gw_bbatch_fail_gw(b, 502, "bad_gateway", msg);
        break;
    }
    return "upstream_error";
}

/* A refusal of the invoke itself (404, 409, 413, 429, 503...): every item gets it. */
static const char *fail_refused(gw_bbatch *b, const gw_xfer *x)
{
    cJSON *doc = cJSON_ParseWithLength(x->resp_body.data, x->resp_body.len);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");

    gw_bbatch_fail_gw(b, (int)x->status, cJSON_IsString(code) ? code->valuestring : "upstream_error",
                      cJSON_IsString(msg) ? msg->valuestring : "the batch invoke was refused");
    cJSON_Delete(doc);
    return "upstream_error";
}

static const char *route_plain(gw_bbatch *b, const gw_xfer *x)
{
    const char *fe = gw_hdr_pairs_get(&x->resp_headers, "X-Function-Error");
    const char *body = ml_buf_cstr(&x->resp_body);
    cJSON *doc, *rec;
    const cJSON *responses;

    if (fe)
        return fail_function(b, fe, body, x->resp_body.len);
    if (x->status != 200)
        return fail_refused(b, x);
    doc = cJSON_ParseWithLength(body, x->resp_body.len);
    responses = cJSON_GetObjectItemCaseSensitive(doc, "responses");
    cJSON_ArrayForEach(rec, responses) {
        char *text = cJSON_IsArray(responses) ? cJSON_PrintUnformatted(rec) : NULL;
        if (text)
            route_record(b, rec, text, strlen(text));
        free(text);
    }
    cJSON_Delete(doc);
    return fail_missing(b);
}

static const char *route_stream(gw_bbatch *b)
{
    cJSON *end;
    const cJSON *type;
    const char *result;

    if (b->line.len > 0) { /* a last record without its newline */
        route_line(b, b->line.data, b->line.len);
        ml_buf_reset(&b->line);
    }
    if (!b->ended) {
        gw_bbatch_fail_gw(b, 502, "bad_gateway", "the batch's stream ended before the function did");
        return "upstream_error";
    }
    end = cJSON_ParseWithLength(b->end.data ? b->end.data : "{}", b->end.len ? b->end.len : 2);
    type = cJSON_GetObjectItemCaseSensitive(end, "errorType");
    result = cJSON_IsString(type) ? fail_function(b, type->valuestring, ml_buf_cstr(&b->end), b->end.len)
                                  : fail_missing(b);
    cJSON_Delete(end);
    return result;
}

static void on_done(gw_xfer *x)
{
    gw_bbatch *b = x->ud;
    const char *result;

    if (x->result != GW_XFER_OK)
        result = fail_transport(b, x);
    else if (x->chunked)
        result = route_stream(b);
    else
        result = route_plain(b, x);
    metric_inc(gw_batch_m_batches, (const char *[]){ result });
    b->x = NULL;
    gw_xfer_free(x);
    gw_bbatch_free(b);
}

/* ---- sending ---- */

/* The invoke's path, its name and qualifier encoded; caller frees. NULL when out of memory. */
static char *invoke_path(const gw_bbatch *b)
{
    ml_buf p = { 0 };

    if (ml_buf_append_str(&p, "/functions/") != ML_OK ||
        gw_sigv4_uri_encode(b->fn, strlen(b->fn), &p) != ML_OK ||
        ml_buf_append_str(&p, "/invoke") != ML_OK ||
        (b->qualifier[0] && (ml_buf_append_str(&p, "?qualifier=") != ML_OK ||
                             gw_sigv4_uri_encode(b->qualifier, strlen(b->qualifier), &p) != ML_OK))) {
        ml_buf_free(&p);
        return NULL;
    }
    return ml_buf_steal(&p, NULL);
}

static int add_header(gw_xfer *x, const char *name, const char *value)
{
    char line[512];
    struct curl_slist *n;

    if (ml_snprintf(line, sizeof(line), "%s: %s", name, value) != ML_OK ||
        !(n = curl_slist_append(x->headers, line)))
        return ML_ERR;
    x->headers = n;
    return ML_OK;
}

/* The batch's transfer, all but its instance; caller frees with gw_xfer_free. NULL when out
 * of memory. */
static gw_xfer *xfer_new(gw_bbatch *b)
{
    gw_xfer *x = gw_xfer_new();
    char rid[ML_UUID_LEN], n[24];
    int64_t timeout_s = b->function_timeout_s > 0 ? b->function_timeout_s
                                                  : fnspec_field_get(FNSPEC_TIMEOUT_S)->max;

    ml_uuid(rid); /* one id for the batch: each item's own is its "id" */
    if (!x || !(x->path = invoke_path(b)) || ml_snprintf(n, sizeof(n), "%zu", b->live) != ML_OK ||
        add_header(x, "Content-Type", "application/json") != ML_OK ||
        add_header(x, TENANT_HEADER, b->ns) != ML_OK || add_header(x, "X-Request-Id", rid) != ML_OK ||
        add_header(x, INVSTREAM_ACCEPT_HEADER, "1") != ML_OK ||
        add_header(x, "X-Minilambda-Batch-Size", n) != ML_OK) {
        gw_xfer_free(x);
        return NULL;
    }
    x->pool = b->pool;
    x->cap = GW_CAP_INVOKE;
    x->method = "POST";
    x->body = b->body.data;
    x->body_len = b->body.len;
    x->timeout_ms = (long)((timeout_s + b->margin_s) * 1000);
    x->connect_timeout_ms = b->connect_timeout_ms;
    x->max_response = b->max_response;
    x->done = on_done;
    x->on_chunk = on_chunk;
    x->ud = b;
    return x;
}

void gw_bbatch_send(gw_loop *l, gw_bbatch *b)
{
    int64_t now = ml_now_ms();
    gw_xfer *x = NULL;
    char msg[128];

    if (b->live == 0) { /* every request's deadline passed while it waited */
        metric_inc(gw_batch_m_batches, (const char *[]){ "expired" });
        gw_bbatch_free(b);
        return;
    }
    metric_observe(gw_batch_m_size, NULL, (double)b->live);
    metric_observe(gw_batch_m_wait, NULL, (double)(now - b->opened_ms) / 1000.0);
    ml_buf_init(&b->body, 0);
    ml_buf_init(&b->line, b->max_response);
    if (build(b) != ML_OK || !(x = xfer_new(b))) {
        metric_inc(gw_batch_m_batches, (const char *[]){ "error" });
        gw_bbatch_fail_gw(b, 500, "internal", "out of memory building the batch invoke");
        gw_bbatch_free(b);
        return;
    }
    if (!(x->inst = gw_pool_pick(b->pool, GW_CAP_INVOKE, NULL, now, &x->admit))) {
        metric_inc(gw_batch_m_batches, (const char *[]){ "no_upstream" });
        ml_snprintf_trunc(msg, sizeof(msg), "no %s instance is available for 'invoke' right now",
                          b->pool->service);
        gw_bbatch_fail_gw(b, 503, "upstream_unavailable", msg);
        gw_xfer_free(x);
        gw_bbatch_free(b);
        return;
    }
    b->x = x;
    gw_loop_start(l, x); /* on_done frees b, perhaps before this returns */
}
