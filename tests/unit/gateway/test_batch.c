/* Unit tests: services/gateway/batch.c and batch_send.c — per-route micro-batching against a
 * small fake executor inside the test (the shared httpd on an ephemeral loopback port,
 * answering POST /functions/{fn}/invoke with batch bodies: plainly, or streamed as invstream
 * frames of NDJSON records). The e2e (tests/integration/fnurl_batch_e2e.sh) runs the real
 * services. Covered: the size and window triggers, the dynamic wait curve, separate keys, a
 * missing item failing only itself, per-request deadlines, streamed records reaching their
 * callers as they arrive, function errors and timeouts, no executor, shutdown, and 1,000
 * concurrent requests with mixed keys on two loops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "httpc.h"
#include "httpd.h"
#include "invstream.h"
#include "proxy.h"

#define MAX_INVOKES 4096
#define STREAM_GAP_MS 200
#define SLOW_MS 400

/* ---- the fake executor ---- */

typedef struct invoke_rec {
    char fn[32];
    int size;          /* items in the body */
    int64_t at_ms;
    char first_value[32];
    bool mixed;        /* items of more than one tenant in one batch */
} invoke_rec;

static struct {
    pthread_mutex_t lock;
    invoke_rec inv[MAX_INVOKES];
    int ninv;
    int bad_headers;   /* a batch whose headers broke the contract */
} E;

static void record(const char *fn, const cJSON *batch, const httpd_req *req)
{
    const char *bs = httpd_header(req, "X-Minilambda-Batch-Size");
    const char *ns = httpd_header(req, "X-Minilambda-Namespace");
    const char *st = httpd_header(req, INVSTREAM_ACCEPT_HEADER);
    const char *rid = httpd_header(req, "X-Request-Id");
    const char *ct = httpd_header(req, "Content-Type");
    const cJSON *it, *first = cJSON_GetArrayItem(batch, 0);
    const cJSON *tenant0 = cJSON_GetObjectItemCaseSensitive(first, "tenant");
    const cJSON *v0 = cJSON_GetObjectItemCaseSensitive(first, "value");
    invoke_rec r = { .size = cJSON_GetArraySize(batch), .at_ms = ml_now_ms() };

    snprintf(r.fn, sizeof(r.fn), "%s", fn);
    snprintf(r.first_value, sizeof(r.first_value), "%s", cJSON_IsString(v0) ? v0->valuestring : "");
    cJSON_ArrayForEach(it, batch) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "tenant");
        if (cJSON_IsString(t) && cJSON_IsString(tenant0) && strcmp(t->valuestring, tenant0->valuestring) != 0)
            r.mixed = true;
    }
    pthread_mutex_lock(&E.lock);
    if (!bs || strtol(bs, NULL, 10) != r.size || !ns || strcmp(ns, "team-a") != 0 || !st || strcmp(st, "1") != 0 ||
        !rid || !rid[0] || !ct || strcmp(ct, "application/json") != 0)
        E.bad_headers++;
    if (E.ninv < MAX_INVOKES)
        E.inv[E.ninv++] = r;
    pthread_mutex_unlock(&E.lock);
}

/* {"v":1,"responses":[{"id","statusCode":200,"body":<value>}...]}, leaving out items whose
 * event has "fail":true. */
static void answer_plain(const cJSON *batch, httpd_resp *resp)
{
    cJSON *out = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(out, "responses");
    const cJSON *it;

    cJSON_AddNumberToObject(out, "v", 1);
    cJSON_ArrayForEach(it, batch) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
        cJSON *r;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "fail")))
            continue;
        r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "id", id->valuestring);
        cJSON_AddNumberToObject(r, "statusCode", 200);
        cJSON_AddStringToObject(r, "body", cJSON_IsString(v) ? v->valuestring : "");
        cJSON_AddItemToArray(arr, r);
    }
    httpd_resp_json(resp, 200, out);
}

typedef struct producer {
    httpd_stream *s;
    char ids[8][64];
    int n;
    bool fail_end;
} producer;

static void write_frame(httpd_stream *s, char type, const char *data)
{
    ml_buf b = { 0 };

    invstream_frame(&b, type, data, strlen(data));
    httpd_stream_write(s, b.data, b.len);
    ml_buf_free(&b);
}

/* One record per item, STREAM_GAP_MS apart, each split over two frames (a line assembles
 * across frames); fail_end: one record, then the function raises. */
static void *produce(void *arg)
{
    producer *p = arg;
    char line[160];

    write_frame(p->s, INVSTREAM_META, "{\"content_type\":\"application/x-ndjson\"}");
    for (int i = 0; i < p->n; i++) {
        size_t half;
        if (i > 0)
            ml_sleep_ms(STREAM_GAP_MS);
        if (p->fail_end && i == 1)
            break;
        snprintf(line, sizeof(line), "{\"id\":\"%s\",\"statusCode\":200,\"body\":\"rec%d\"}\n", p->ids[i], i);
        half = strlen(line) / 2;
        {
            char first[160];
            snprintf(first, sizeof(first), "%.*s", (int)half, line);
            write_frame(p->s, INVSTREAM_DATA, first);
            write_frame(p->s, INVSTREAM_DATA, line + half);
        }
    }
    write_frame(p->s, INVSTREAM_END, p->fail_end ? "{\"errorType\":\"ValueError\",\"errorMessage\":\"boom\"}" : "{}");
    httpd_stream_close(p->s);
    free(p);
    return NULL;
}

static void answer_stream(const cJSON *batch, httpd_resp *resp, bool fail_end)
{
    producer *p = calloc(1, sizeof(*p));
    const cJSON *it;
    pthread_t t;

    cJSON_ArrayForEach(it, batch) {
        if (p->n < 8)
            snprintf(p->ids[p->n++], sizeof(p->ids[0]), "%s",
                     cJSON_GetObjectItemCaseSensitive(it, "id")->valuestring);
    }
    p->fail_end = fail_end;
    p->s = httpd_resp_stream(resp, INVSTREAM_CONTENT_TYPE);
    if (pthread_create(&t, NULL, produce, p) == 0)
        pthread_detach(t);
}

static httpd_result h_invoke(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *fn = httpd_param(req, "fn");
    cJSON *doc = cJSON_Parse(httpd_body(req, NULL));
    const cJSON *batch = cJSON_GetObjectItemCaseSensitive(doc, "batch");
    (void)ud;
    if (!cJSON_IsArray(batch) || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(doc, "v"))) {
        httpd_resp_error(resp, 400, "bad_batch", "not a batch");
        cJSON_Delete(doc);
        return HTTPD_DONE;
    }
    record(fn, batch, req);
    if (strcmp(fn, "slow") == 0)
        ml_sleep_ms(SLOW_MS);
    if (strcmp(fn, "stream") == 0 || strcmp(fn, "streamerr") == 0) {
        answer_stream(batch, resp, strcmp(fn, "streamerr") == 0);
    } else if (strcmp(fn, "err") == 0 || strcmp(fn, "tmo") == 0) {
        bool tmo = strcmp(fn, "tmo") == 0;
        httpd_resp_text(resp, tmo ? 504 : 502, "application/json",
                        tmo ? "{\"errorType\":\"TimeoutError\",\"errorMessage\":\"Task timed out\"}"
                            : "{\"errorType\":\"ValueError\",\"errorMessage\":\"boom\"}");
        httpd_resp_header(resp, "X-Function-Error", tmo ? "TimeoutError" : "Unhandled");
    } else if (strcmp(fn, "gone") == 0) {
        httpd_resp_error(resp, 404, "function_not_found", "no function 'gone'");
    } else {
        answer_plain(batch, resp);
    }
    cJSON_Delete(doc);
    return HTTPD_DONE;
}

static const httpd_route routes[] = {
    { "POST", "/functions/{fn}/invoke", h_invoke, NULL, 0, true },
};

/* ---- the callers ---- */

typedef struct res {
    int calls;
    gw_fnout_kind kind;
    int status;
    char code[48];
    char body[64];     /* the response's "body", or the error's errorType */
    int64_t at_ms;
} res;

static pthread_mutex_t R_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_done(void *ud, const gw_fnout *out)
{
    res *r = ud;
    cJSON *doc = out->json ? cJSON_ParseWithLength(out->json, out->len) : NULL;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(doc, "body");
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(doc, "errorType");

    pthread_mutex_lock(&R_lock);
    r->calls++;
    r->kind = out->kind;
    r->status = out->status;
    r->at_ms = ml_now_ms();
    snprintf(r->code, sizeof(r->code), "%s", out->code ? out->code : "");
    snprintf(r->body, sizeof(r->body), "%s",
             cJSON_IsString(b) ? b->valuestring : cJSON_IsString(et) ? et->valuestring : "");
    pthread_mutex_unlock(&R_lock);
    cJSON_Delete(doc);
}

/* A task adding items [0, n) on whichever loop runs it. */
typedef struct job {
    gw_task task;
    gw_batch_target t;
    size_t n;
    char (*keys)[64];
    char (*events)[128];
    char (*ids)[48];
    int64_t *deadline;
    res *res;
    int failed_adds;
} job;

static void run_job(gw_loop *l, gw_task *task, bool cancelled)
{
    job *j = (job *)task;

    assert_false(cancelled);
    for (size_t i = 0; i < j->n; i++) {
        if (gw_batch_add(l, &j->t, j->keys[i], j->events[i], strlen(j->events[i]), j->ids[i],
                         j->deadline[i], on_done, &j->res[i]) != ML_OK)
            j->failed_adds++;
    }
}

static job *job_new(size_t n, const gw_batch_target *t)
{
    job *j = calloc(1, sizeof(*j));

    j->t = *t;
    j->n = n;
    j->keys = calloc(n, sizeof(*j->keys));
    j->events = calloc(n, sizeof(*j->events));
    j->ids = calloc(n, sizeof(*j->ids));
    j->deadline = calloc(n, sizeof(*j->deadline));
    j->res = calloc(n, sizeof(*j->res));
    j->task.run = run_job;
    for (size_t i = 0; i < n; i++) {
        snprintf(j->ids[i], sizeof(j->ids[i]), "id-%p-%zu", (void *)j, i);
        snprintf(j->keys[i], sizeof(j->keys[i]), "team-a/%s:", t->fn);
        snprintf(j->events[i], sizeof(j->events[i]), "{\"value\":\"v%zu\"}", i);
        j->deadline[i] = ml_now_ms() + 10000;
    }
    return j;
}

static void job_free(job *j)
{
    free(j->keys);
    free(j->events);
    free(j->ids);
    free(j->deadline);
    free(j->res);
    free(j);
}

/* Waits until every item of the jobs has had its done (fails the test after timeout_ms). */
static void wait_jobs(job **jobs, size_t njobs, int64_t timeout_ms)
{
    int64_t end = ml_now_ms() + timeout_ms;
    bool all = false;

    while (!all && ml_now_ms() < end) {
        all = true;
        pthread_mutex_lock(&R_lock);
        for (size_t k = 0; k < njobs && all; k++) {
            for (size_t i = 0; i < jobs[k]->n && all; i++)
                all = jobs[k]->res[i].calls > 0;
        }
        pthread_mutex_unlock(&R_lock);
        if (!all)
            ml_sleep_ms(2);
    }
    assert_true(all);
}

/* ---- fixture ---- */

static struct {
    httpd *server;
    char url[64];
    gw_proxy *proxy;
    gw_pool pool;
    int64_t t0;
} F;

static gw_fnurl_batching cfg_of(int64_t wait_ms, int64_t size)
{
    gw_fnurl_batching c = { .enabled = true, .max_wait_ms = wait_ms, .max_batch_size = size };

    return c;
}

static gw_batch_target target(const char *fn, const gw_fnurl_batching *cfg)
{
    gw_batch_target t = { &F.pool, "team-a", fn, "", cfg, 5, 1, 500, 1024 * 1024 };

    return t;
}

static int setup(void **state)
{
    httpd_config hc = { .bind_addr = "127.0.0.1", .workers = 128 };
    gw_proxy_config pc = { 1, 0, NULL, NULL };
    gw_breaker_cfg b = { 1000, 60000, 1 };
    char err[256];
    (void)state;
    pthread_mutex_init(&E.lock, NULL);
    F.server = httpd_start(&hc, routes, ML_ARRAY_LEN(routes), err, sizeof(err));
    F.proxy = gw_proxy_start(&pc, err, sizeof(err));
    if (!F.server || !F.proxy)
        return -1;
    snprintf(F.url, sizeof(F.url), "http://127.0.0.1:%u", httpd_port(F.server));
    return gw_pool_init(&F.pool, "lambda-executor", F.url, &b, 1000, NULL, err, sizeof(err)) == ML_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    gw_proxy_stop(F.proxy);
    httpd_stop(F.server);
    gw_pool_free(&F.pool);
    return 0;
}

static int reset(void **state)
{
    (void)state;
    pthread_mutex_lock(&E.lock);
    E.ninv = 0;
    E.bad_headers = 0;
    pthread_mutex_unlock(&E.lock);
    F.t0 = ml_now_ms();
    return 0;
}

static int ninvokes(void)
{
    int n;

    pthread_mutex_lock(&E.lock);
    n = E.ninv;
    pthread_mutex_unlock(&E.lock);
    return n;
}

static void assert_own_answers(const job *j)
{
    char want[32];

    for (size_t i = 0; i < j->n; i++) {
        snprintf(want, sizeof(want), "v%zu", i);
        assert_int_equal(j->res[i].calls, 1);
        assert_int_equal(j->res[i].kind, GW_FNOUT_RESULT);
        assert_string_equal(j->res[i].body, want);
    }
}

/* ---- tests ---- */

/* Full batches go at once (no window wait): 8 requests, batches of 4 -> two invokes. */
static void test_size_trigger(void **state)
{
    gw_fnurl_batching c = cfg_of(1000, 4);
    gw_batch_target t = target("echo", &c);
    job *j = job_new(8, &t);
    (void)state;
    gw_proxy_run(F.proxy, &j->task);
    wait_jobs(&j, 1, 3000);
    assert_int_equal(j->failed_adds, 0);
    assert_own_answers(j);
    assert_int_equal(ninvokes(), 2);
    assert_int_equal(E.inv[0].size, 4);
    assert_int_equal(E.inv[1].size, 4);
    assert_int_equal(E.bad_headers, 0);
    for (size_t i = 0; i < j->n; i++)
        assert_true(j->res[i].at_ms - F.t0 < 500); /* not the 1 s window */
    job_free(j);
}

/* A batch that does not fill goes when its window ends, not before. */
static void test_window_trigger(void **state)
{
    gw_fnurl_batching c = cfg_of(120, 100);
    gw_batch_target t = target("echo", &c);
    job *j = job_new(3, &t);
    (void)state;
    gw_proxy_run(F.proxy, &j->task);
    wait_jobs(&j, 1, 3000);
    assert_own_answers(j);
    assert_int_equal(ninvokes(), 1);
    assert_int_equal(E.inv[0].size, 3);
    assert_true(E.inv[0].at_ms - F.t0 >= 120);
    assert_true(E.inv[0].at_ms - F.t0 < 120 + 200);
    job_free(j);
}

/* The sigmoid: near 0 when light, half at rate_mid, max_wait_ms when heavy, never falling;
 * a width of 0 is a step. And a lone request with dynamic wait does not wait the max. */
static void test_dynamic_wait(void **state)
{
    gw_fnurl_batching c = cfg_of(1000, 100);
    gw_batch_target t;
    job *j;
    double prev = -1;
    (void)state;
    c.dynamic = true;
    c.rate_mid = 100;
    c.rate_width = 20;
    assert_true(fabs(gw_batch_dynamic_wait_ms(&c, 100) - 500) < 1e-9);
    assert_true(gw_batch_dynamic_wait_ms(&c, 0) < 7);     /* 1000 / (1 + e^5) = 6.7 */
    assert_true(gw_batch_dynamic_wait_ms(&c, 1000) > 999);
    assert_true(fabs(gw_batch_dynamic_wait_ms(&c, 120) - 1000 / (1 + exp(-1.0))) < 1e-9);
    for (double r = 0; r <= 400; r += 5) {
        double w = gw_batch_dynamic_wait_ms(&c, r);
        assert_true(w >= prev && w >= 0 && w <= 1000);
        prev = w;
    }
    assert_true(gw_batch_dynamic_wait_ms(&c, -1e9) == 0); /* no overflow */
    c.rate_width = 0;
    assert_true(gw_batch_dynamic_wait_ms(&c, 99) == 0);
    assert_true(gw_batch_dynamic_wait_ms(&c, 100) == 1000);
    c.rate_width = 20;
    t = target("echo", &c);
    j = job_new(1, &t);
    gw_proxy_run(F.proxy, &j->task);
    wait_jobs(&j, 1, 3000);
    assert_own_answers(j);
    assert_true(j->res[0].at_ms - F.t0 < 200); /* a ~7 ms window, not 1 s */
    job_free(j);
}

static const char *lookup(void *ud, const char *kind, const char *name)
{
    const char *const *v = ud; /* header x-tenant-id, query region, method, path */

    if (strcmp(kind, "header") == 0 && strcmp(name, "x-tenant-id") == 0)
        return v[0];
    if (strcmp(kind, "query") == 0 && strcmp(name, "region") == 0)
        return v[1];
    if (strcmp(kind, "method") == 0)
        return v[2];
    return strcmp(kind, "path") == 0 ? v[3] : NULL;
}

static char *key_of(const gw_batch_target *t, const char *a, const char *b)
{
    const char *v[4] = { a, b, "GET", "/x" };
    char *k = NULL;

    assert_int_equal(gw_batch_key(t, lookup, v, &k), ML_OK);
    return k;
}

/* Keys: the configured dimensions separate batches, and no two different requests share a
 * key by accident (absent vs empty, values shifting across a boundary). */
static void test_keys_separate(void **state)
{
    gw_fnurl_batching c = cfg_of(1000, 3);
    gw_batch_target t = target("echo", &c);
    job *j = job_new(6, &t);
    char *k[6];
    (void)state;
    c.nkeys = 2;
    snprintf(c.keys[0], sizeof(c.keys[0]), "header:x-tenant-id");
    snprintf(c.keys[1], sizeof(c.keys[1]), "query:region");
    k[0] = key_of(&t, "a", "eu");
    k[1] = key_of(&t, "a", "eu");
    k[2] = key_of(&t, "ab", "");
    k[3] = key_of(&t, "a", "beu");
    k[4] = key_of(&t, NULL, "eu");
    k[5] = key_of(&t, "", "eu");
    assert_string_equal(k[0], k[1]);
    for (int x = 0; x < 6; x++) {
        for (int y = x + 1; y < 6; y++) {
            if (x != 0 || y != 1)
                assert_string_not_equal(k[x], k[y]);
        }
    }
    assert_non_null(strstr(k[0], "team-a/echo:"));
    c.nkeys = 1;
    snprintf(c.keys[0], sizeof(c.keys[0]), "cookie:x"); /* not a kind */
    {
        const char *v[4] = { "a", "b", "GET", "/" };
        char *bad = NULL;
        assert_int_equal(gw_batch_key(&t, lookup, v, &bad), ML_ERR);
        assert_null(bad);
    }
    /* two tenants interleaved: two batches of 3, each one tenant's */
    for (size_t i = 0; i < 6; i++) {
        snprintf(j->keys[i], sizeof(j->keys[i]), "%s", i % 2 ? k[0] : k[4]);
        snprintf(j->events[i], sizeof(j->events[i]), "{\"value\":\"v%zu\",\"tenant\":\"%s\"}", i,
                 i % 2 ? "a" : "none");
    }
    gw_proxy_run(F.proxy, &j->task);
    wait_jobs(&j, 1, 3000);
    assert_own_answers(j);
    assert_int_equal(ninvokes(), 2);
    assert_false(E.inv[0].mixed);
    assert_false(E.inv[1].mixed);
    assert_int_equal(E.inv[0].size + E.inv[1].size, 6);
    for (int x = 0; x < 6; x++)
        free(k[x]);
    job_free(j);
}

/* An item the answer leaves out fails alone (502 batch_item_missing); the others are fine. */
static void test_missing_item(void **state)
{
    gw_fnurl_batching c = cfg_of(20, 100);
    gw_batch_target t = target("echo", &c);
    job *j = job_new(5, &t);
    (void)state;
    snprintf(j->events[2], sizeof(j->events[2]), "{ \"value\":\"v2\",\"fail\":true}");
    gw_proxy_run(F.proxy, &j->task);
    wait_jobs(&j, 1, 3000);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(j->res[i].calls, 1);
        if (i == 2) {
            assert_int_equal(j->res[i].kind, GW_FNOUT_GATEWAY);
            assert_int_equal(j->res[i].status, 502);
            assert_string_equal(j->res[i].code, "batch_item_missing");
        } else {
            assert_int_equal(j->res[i].kind, GW_FNOUT_RESULT);
        }
    }
    assert_int_equal(ninvokes(), 1);
    job_free(j);
}

/* Each request keeps its own deadline: a short one fails at its time while the batch runs
 * on; its late response is dropped (done ran once); the other one gets its answer. */
static void test_deadline(void **state)
{
    gw_fnurl_batching c = cfg_of(10, 100);
    gw_batch_target t = target("slow", &c);
    job *j = job_new(2, &t);
    (void)state;
    j->deadline[0] = ml_now_ms() + 100;
    gw_proxy_run(F.proxy, &j->task);
    wait_jobs(&j, 1, 3000);
    ml_sleep_ms(50);
    assert_int_equal(j->res[0].calls, 1);
    assert_int_equal(j->res[0].kind, GW_FNOUT_TIMEOUT);
    assert_true(j->res[0].at_ms - F.t0 >= 100 && j->res[0].at_ms - F.t0 < 300);
    assert_int_equal(j->res[1].calls, 1);
    assert_int_equal(j->res[1].kind, GW_FNOUT_RESULT);
    assert_true(j->res[1].at_ms - F.t0 >= SLOW_MS);
    job_free(j);
    /* a deadline that passes before the window ends: no invoke at all */
    reset(NULL);
    c = cfg_of(150, 100);
    t = target("echo", &c);
    j = job_new(1, &t);
    j->deadline[0] = ml_now_ms() + 30;
    gw_proxy_run(F.proxy, &j->task);
    wait_jobs(&j, 1, 3000);
    ml_sleep_ms(200);
    assert_int_equal(j->res[0].calls, 1);
    assert_int_equal(j->res[0].kind, GW_FNOUT_TIMEOUT);
    assert_int_equal(ninvokes(), 0);
    job_free(j);
}

/* Record-level streaming: each record reaches its caller as its line completes — the first
 * one STREAM_GAP_MS and more before the stream ends. */
static void test_stream_records_as_they_arrive(void **state)
{
    gw_fnurl_batching c = cfg_of(10, 3);
    gw_batch_target t = target("stream", &c);
    job *j = job_new(3, &t);
    (void)state;
    gw_proxy_run(F.proxy, &j->task);
    wait_jobs(&j, 1, 3000);
    for (size_t i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof(want), "rec%zu", i);
        assert_int_equal(j->res[i].calls, 1);
        assert_int_equal(j->res[i].kind, GW_FNOUT_RESULT);
        assert_string_equal(j->res[i].body, want);
    }
    assert_true(j->res[2].at_ms - j->res[0].at_ms >= 2 * STREAM_GAP_MS - 20);
    assert_true(j->res[1].at_ms - j->res[0].at_ms >= STREAM_GAP_MS - 20);
    job_free(j);
    /* a stream that answers one record, then fails: the rest share the function's error */
    reset(NULL);
    t = target("streamerr", &c);
    j = job_new(3, &t);
    gw_proxy_run(F.proxy, &j->task);
    wait_jobs(&j, 1, 3000);
    assert_int_equal(j->res[0].kind, GW_FNOUT_RESULT);
    assert_string_equal(j->res[0].body, "rec0");
    for (size_t i = 1; i < 3; i++) {
        assert_int_equal(j->res[i].kind, GW_FNOUT_FUNCTION_ERROR);
        assert_string_equal(j->res[i].body, "ValueError");
    }
    job_free(j);
}

/* A failed batch invoke fails every item alike: an error, a timeout, a refusal, no executor. */
static void test_batch_failures(void **state)
{
    static const struct {
        const char *fn;
        gw_fnout_kind kind;
        int status;
        const char *code;
    } cases[] = {
        { "err", GW_FNOUT_FUNCTION_ERROR, 0, "" },
        { "tmo", GW_FNOUT_TIMEOUT, 0, "" },
        { "gone", GW_FNOUT_GATEWAY, 404, "function_not_found" },
    };
    gw_fnurl_batching c = cfg_of(5, 100);
    (void)state;
    for (size_t k = 0; k < ML_ARRAY_LEN(cases); k++) {
        gw_batch_target t = target(cases[k].fn, &c);
        job *j = job_new(2, &t);
        gw_proxy_run(F.proxy, &j->task);
        wait_jobs(&j, 1, 3000);
        for (size_t i = 0; i < 2; i++) {
            assert_int_equal(j->res[i].calls, 1);
            assert_int_equal(j->res[i].kind, cases[k].kind);
            assert_int_equal(j->res[i].status, cases[k].status);
            assert_string_equal(j->res[i].code, cases[k].code);
        }
        job_free(j);
    }
    /* no executor can take it */
    {
        gw_batch_target t = target("echo", &c);
        job *j = job_new(2, &t);
        gw_pool_set_health(&F.pool.inst[0], 0, "down for the test");
        gw_proxy_run(F.proxy, &j->task);
        wait_jobs(&j, 1, 3000);
        gw_pool_set_health(&F.pool.inst[0], GW_CAP_ALL, NULL);
        for (size_t i = 0; i < 2; i++) {
            assert_int_equal(j->res[i].kind, GW_FNOUT_GATEWAY);
            assert_int_equal(j->res[i].status, 503);
            assert_string_equal(j->res[i].code, "upstream_unavailable");
        }
        job_free(j);
    }
}

/* Requests still waiting when the proxy stops end once, with 503. */
static void test_shutdown(void **state)
{
    gw_proxy_config pc = { 1, 0, NULL, NULL };
    char err[256];
    gw_proxy *px = gw_proxy_start(&pc, err, sizeof(err));
    gw_fnurl_batching c = cfg_of(1000, 100);
    gw_batch_target t = target("echo", &c);
    job *j = job_new(3, &t);
    (void)state;
    assert_non_null(px);
    gw_proxy_run(px, &j->task);
    ml_sleep_ms(50);
    gw_proxy_stop(px);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(j->res[i].calls, 1);
        assert_int_equal(j->res[i].kind, GW_FNOUT_GATEWAY);
        assert_int_equal(j->res[i].status, 503);
        assert_string_equal(j->res[i].code, "shutting_down");
    }
    assert_int_equal(ninvokes(), 0);
    job_free(j);
}

/* 1,000 concurrent requests over 10 keys on two loops: every caller gets its own answer,
 * exactly once; the one designated failing item fails alone; batches never mix keys. */
#define NJOBS 20
#define PER_JOB 50
static void test_thousand_mixed(void **state)
{
    gw_proxy_config pc = { 2, 0, NULL, NULL };
    char err[256];
    gw_proxy *px = gw_proxy_start(&pc, err, sizeof(err));
    gw_fnurl_batching c = cfg_of(10, 32);
    gw_batch_target t = target("echo", &c);
    job *jobs[NJOBS];
    int total = 0, items = 0;
    (void)state;
    assert_non_null(px);
    for (int k = 0; k < NJOBS; k++) {
        jobs[k] = job_new(PER_JOB, &t);
        for (int i = 0; i < PER_JOB; i++) {
            int n = k * PER_JOB + i, tenant = n % 10;
            snprintf(jobs[k]->keys[i], sizeof(jobs[k]->keys[i]), "team-a/echo:\n1:%d", tenant);
            snprintf(jobs[k]->events[i], sizeof(jobs[k]->events[i]),
                     "{\"value\":\"v%d\",\"tenant\":\"t%d\"%s}", i, tenant, n == 777 ? ",\"fail\":true" : "");
        }
    }
    for (int k = 0; k < NJOBS; k++)
        gw_proxy_run(px, &jobs[k]->task);
    wait_jobs(jobs, NJOBS, 10000);
    ml_sleep_ms(30);
    for (int k = 0; k < NJOBS; k++) {
        assert_int_equal(jobs[k]->failed_adds, 0);
        for (int i = 0; i < PER_JOB; i++) {
            char want[16];
            res *r = &jobs[k]->res[i];
            snprintf(want, sizeof(want), "v%d", i);
            assert_int_equal(r->calls, 1);
            if (k * PER_JOB + i == 777) {
                assert_int_equal(r->kind, GW_FNOUT_GATEWAY);
                assert_string_equal(r->code, "batch_item_missing");
                continue;
            }
            assert_int_equal(r->kind, GW_FNOUT_RESULT);
            assert_string_equal(r->body, want);
        }
    }
    pthread_mutex_lock(&E.lock);
    for (int i = 0; i < E.ninv; i++) {
        assert_false(E.inv[i].mixed);
        assert_true(E.inv[i].size >= 1 && E.inv[i].size <= 32);
        items += E.inv[i].size;
    }
    total = E.ninv;
    assert_int_equal(E.bad_headers, 0);
    pthread_mutex_unlock(&E.lock);
    assert_int_equal(items, NJOBS * PER_JOB);
    assert_true(total < NJOBS * PER_JOB / 4); /* batched: well under one invoke per request */
    print_message("1,000 requests in %d invokes\n", total);
    gw_proxy_stop(px);
    for (int k = 0; k < NJOBS; k++)
        job_free(jobs[k]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_size_trigger, reset),
        cmocka_unit_test_setup(test_window_trigger, reset),
        cmocka_unit_test_setup(test_dynamic_wait, reset),
        cmocka_unit_test_setup(test_keys_separate, reset),
        cmocka_unit_test_setup(test_missing_item, reset),
        cmocka_unit_test_setup(test_deadline, reset),
        cmocka_unit_test_setup(test_stream_records_as_they_arrive, reset),
        cmocka_unit_test_setup(test_batch_failures, reset),
        cmocka_unit_test_setup(test_shutdown, reset),
        cmocka_unit_test_setup(test_thousand_mixed, reset),
    };
    int rc;

    if (httpc_global_init() != ML_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, setup, teardown);
    httpc_global_cleanup();
    return rc;
}
