/* Unit tests: services/gateway/proxy.c — the curl multi event loop against a local HTTP
 * server (the shared httpd on an ephemeral loopback port): methods and bodies, keep-alive
 * reuse, timeouts, size caps, connect-failure retry, breaker reporting, many slow transfers
 * at once without delaying a fast one, shutdown with transfers in flight, invstream bodies
 * handed to on_chunk as they arrive, and the loop's timers and per-loop pointer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headers.h"
#include "health.h"
#include "httpc.h"
#include "httpd.h"
#include "invstream.h"
#include "proxy.h"

#define MAX_DONE 512
#define SLOW_MS 300

/* ---- the upstream ---- */

static httpd_result h_ok(httpd_req *req, httpd_resp *resp, void *ud)
{
    (void)req;
    (void)ud;
    httpd_resp_header(resp, "X-Invocation-Id", "inv-1");
    httpd_resp_text(resp, 200, "application/json", "{\"ok\":true}");
    return HTTPD_DONE;
}

static httpd_result h_echo(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *ct = httpd_header(req, "Content-Type"), *xff = httpd_header(req, "X-Forwarded-For");
    (void)ud;
    resp->status = 200;
    ml_buf_printf(&resp->body, "%s|%s|%s|%s", httpd_method(req), httpd_body(req, NULL),
                  ct ? ct : "-", xff ? xff : "-");
    return HTTPD_DONE;
}

static httpd_result h_slow(httpd_req *req, httpd_resp *resp, void *ud)
{
    (void)req;
    (void)ud;
    ml_sleep_ms(SLOW_MS);
    httpd_resp_text(resp, 200, "text/plain", "slow");
    return HTTPD_DONE;
}

static httpd_result h_big(httpd_req *req, httpd_resp *resp, void *ud)
{
    (void)req;
    (void)ud;
    resp->status = 200;
    for (int i = 0; i < 4096; i++)
        ml_buf_append(&resp->body, "x", 1);
    return HTTPD_DONE;
}

static httpd_result h_fail(httpd_req *req, httpd_resp *resp, void *ud)
{
    (void)req;
    (void)ud;
    httpd_resp_error(resp, 500, "internal", "broken");
    return HTTPD_DONE;
}

/* The service's explicit overload signal (a 503 with X-Minilambda-Overloaded: 1). */
static httpd_result h_overloaded(httpd_req *req, httpd_resp *resp, void *ud)
{
    (void)req;
    (void)ud;
    httpd_resp_error(resp, 503, "overloaded", "too busy");
    httpd_resp_header(resp, HEALTH_OVERLOAD_HEADER, "1");
    return HTTPD_DONE;
}

/* A streamed invocation: M, D "first", a pause of INV_GAP_MS, D "second", E — written by a
 * producer thread after the handler has returned (so the headers go out first). */
#define INV_GAP_MS 250

static void *inv_producer(void *arg)
{
    httpd_stream *s = arg;
    ml_buf b = { 0 };

    invstream_frame(&b, INVSTREAM_META, "{\"content_type\":\"text/plain\"}", 29);
    invstream_frame(&b, INVSTREAM_DATA, "first", 5);
    httpd_stream_write(s, b.data, b.len);
    ml_buf_reset(&b);
    ml_sleep_ms(INV_GAP_MS);
    invstream_frame(&b, INVSTREAM_DATA, "second", 6);
    invstream_frame(&b, INVSTREAM_END, "{}", 2);
    httpd_stream_write(s, b.data, b.len);
    ml_buf_free(&b);
    httpd_stream_close(s);
    return NULL;
}

static httpd_result h_inv(httpd_req *req, httpd_resp *resp, void *ud)
{
    httpd_stream *s = httpd_resp_stream(resp, INVSTREAM_CONTENT_TYPE);
    pthread_t t;
    (void)req;
    (void)ud;
    if (s && pthread_create(&t, NULL, inv_producer, s) == 0)
        pthread_detach(t);
    else if (s)
        httpd_stream_close(s);
    return HTTPD_DONE;
}

static const httpd_route routes[] = {
    { "GET", "/inv", h_inv, NULL, 0, false },
    { "GET", "/ok", h_ok, NULL, 0, false },
    { "POST", "/echo", h_echo, NULL, 0, false },
    { "PUT", "/echo", h_echo, NULL, 0, false },
    { "DELETE", "/echo", h_echo, NULL, 0, false },
    { "GET", "/slow", h_slow, NULL, 0, true },
    { "GET", "/big", h_big, NULL, 0, false },
    { "GET", "/fail", h_fail, NULL, 0, false },
    { "GET", "/overloaded", h_overloaded, NULL, 0, false },
};

/* ---- fixture ---- */

typedef struct fixture {
    httpd *server;
    char url[64], dead[64];
    gw_proxy *proxy;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    gw_xfer *done[MAX_DONE];
    int64_t done_ms[MAX_DONE];
    int ndone;
} fixture;

static fixture F;

static void on_done(gw_xfer *x)
{
    pthread_mutex_lock(&F.lock);
    F.done_ms[F.ndone] = ml_now_ms();
    F.done[F.ndone++] = x;
    pthread_cond_broadcast(&F.cond);
    pthread_mutex_unlock(&F.lock);
}

/* Waits until n transfers have completed (fails the test after timeout_ms). */
static void wait_done(int n, int64_t timeout_ms)
{
    int64_t deadline = ml_now_ms() + timeout_ms;

    pthread_mutex_lock(&F.lock);
    while (F.ndone < n && ml_now_ms() < deadline) {
        pthread_mutex_unlock(&F.lock);
        ml_sleep_ms(2);
        pthread_mutex_lock(&F.lock);
    }
    pthread_mutex_unlock(&F.lock);
    assert_true(F.ndone >= n);
}

static void reset_done(void)
{
    for (int i = 0; i < F.ndone; i++)
        gw_xfer_free(F.done[i]);
    F.ndone = 0;
}

static gw_xfer *mk(gw_pool *p, const char *method, const char *path, const char *body,
                   long timeout_ms)
{
    gw_xfer *x = gw_xfer_new();

    assert_non_null(x);
    x->pool = p;
    x->cap = GW_CAP_READ;
    x->inst = gw_pool_pick(p, x->cap, NULL, ml_now_ms(), &x->admit);
    assert_non_null(x->inst);
    x->method = method;
    x->path = strdup(path);
    x->headers = curl_slist_append(NULL, "Content-Type: application/json");
    x->headers = curl_slist_append(x->headers, "X-Forwarded-For: 10.9.8.7");
    x->body = body;
    x->body_len = body ? strlen(body) : 0;
    x->timeout_ms = timeout_ms;
    x->connect_timeout_ms = 500;
    x->max_response = 1024 * 1024;
    x->done = on_done;
    return x;
}

static int setup(void **state)
{
    httpd_config hc = { .bind_addr = "127.0.0.1", .workers = 256 };
    gw_proxy_config pc = { 1, 0, NULL, NULL };
    char err[256];
    (void)state;
    pthread_mutex_init(&F.lock, NULL);
    pthread_cond_init(&F.cond, NULL);
    F.server = httpd_start(&hc, routes, ML_ARRAY_LEN(routes), err, sizeof(err));
    F.proxy = gw_proxy_start(&pc, err, sizeof(err));
    if (!F.server || !F.proxy)
        return -1;
    snprintf(F.url, sizeof(F.url), "http://127.0.0.1:%u", httpd_port(F.server));
    snprintf(F.dead, sizeof(F.dead), "http://127.0.0.1:1"); /* nothing listens on port 1 */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gw_proxy_stop(F.proxy);
    reset_done();
    httpd_stop(F.server);
    pthread_mutex_destroy(&F.lock);
    pthread_cond_destroy(&F.cond);
    return 0;
}

static void pool_of(gw_pool *p, const char *urls)
{
    gw_breaker_cfg b = { 3, 60000, 1 };
    char err[256];

    assert_int_equal(gw_pool_init(p, "test", urls, &b, 1000, NULL, err, sizeof(err)), ML_OK);
}

/* ---- tests ---- */

static void test_get_and_keepalive(void **state)
{
    gw_pool p;
    (void)state;
    pool_of(&p, F.url);
    for (int i = 0; i < 5; i++) {
        gw_proxy_submit(F.proxy, mk(&p, "GET", "/ok", NULL, 2000));
        wait_done(i + 1, 2000);
    }
    for (int i = 0; i < 5; i++) {
        gw_xfer *x = F.done[i];
        assert_int_equal(x->result, GW_XFER_OK);
        assert_int_equal(x->status, 200);
        assert_string_equal(ml_buf_cstr(&x->resp_body), "{\"ok\":true}");
        assert_string_equal(gw_hdr_pairs_get(&x->resp_headers, "X-Invocation-Id"), "inv-1");
        assert_string_equal(gw_hdr_pairs_get(&x->resp_headers, "Content-Type"), "application/json");
        /* one connection, then reused for every later exchange */
        assert_int_equal(x->new_connections, i == 0 ? 1 : 0);
    }
    reset_done();
    gw_pool_free(&p);
}

static void test_methods_and_bodies(void **state)
{
    gw_pool p;
    /* one after another, so each reuses the last one's curl handle: the POST after the
     * DELETE must not keep the custom method before it */
    const char *methods[] = { "POST", "PUT", "DELETE", "POST" };
    char want[128];
    (void)state;
    pool_of(&p, F.url);
    for (int i = 0; i < (int)ML_ARRAY_LEN(methods); i++) {
        bool body = strcmp(methods[i], "DELETE") != 0;

        gw_proxy_submit(F.proxy, mk(&p, methods[i], "/echo", body ? "{\"a\":1}" : NULL, 2000));
        wait_done(i + 1, 2000);
        snprintf(want, sizeof(want), "%s|%s|application/json|10.9.8.7", methods[i], body ? "{\"a\":1}" : "");
        assert_int_equal(F.done[i]->status, 200);
        assert_string_equal(ml_buf_cstr(&F.done[i]->resp_body), want);
    }
    reset_done();
    gw_pool_free(&p);
}

static void test_timeout_and_breaker(void **state)
{
    gw_pool p;
    gw_xfer *x;
    (void)state;
    pool_of(&p, F.url);
    gw_proxy_submit(F.proxy, mk(&p, "GET", "/slow", NULL, 100));
    wait_done(1, 2000);
    x = F.done[0];
    assert_int_equal(x->result, GW_XFER_TIMEOUT);
    assert_int_equal(p.inst[0].breaker.failures, 1);
    gw_proxy_submit(F.proxy, mk(&p, "GET", "/fail", NULL, 2000));
    wait_done(2, 2000);
    assert_int_equal(F.done[1]->result, GW_XFER_OK);
    /* relayed; the service's own 5xx is about the request: it resets the count like any answer */
    assert_int_equal(F.done[1]->status, 500);
    assert_int_equal(p.inst[0].breaker.failures, 0);
    gw_proxy_submit(F.proxy, mk(&p, "GET", "/overloaded", NULL, 2000));
    wait_done(3, 2000);
    assert_int_equal(F.done[2]->status, 503); /* relayed, and the overload signal counts */
    assert_int_equal(p.inst[0].breaker.failures, 1);
    gw_proxy_submit(F.proxy, mk(&p, "GET", "/ok", NULL, 2000));
    wait_done(4, 2000);
    assert_int_equal(p.inst[0].breaker.failures, 0); /* a success resets the count */
    reset_done();
    gw_pool_free(&p);
}

static void test_response_cap(void **state)
{
    gw_pool p;
    gw_xfer *x;
    (void)state;
    pool_of(&p, F.url);
    x = mk(&p, "GET", "/big", NULL, 2000);
    x->max_response = 1024;
    gw_proxy_submit(F.proxy, x);
    wait_done(1, 2000);
    assert_int_equal(F.done[0]->result, GW_XFER_TOO_LARGE);
    assert_true(F.done[0]->resp_body.len <= 1024);
    assert_int_equal(p.inst[0].breaker.failures, 0); /* not the instance's fault */
    reset_done();
    gw_pool_free(&p);
}

static void test_connect_retry(void **state)
{
    gw_pool p;
    char urls[160];
    gw_xfer *x;
    (void)state;
    snprintf(urls, sizeof(urls), "%s,%s", F.dead, F.url);
    pool_of(&p, urls);
    x = mk(&p, "POST", "/echo", "{}", 2000);
    x->inst = &p.inst[0]; /* force the dead one first */
    gw_proxy_submit(F.proxy, x);
    wait_done(1, 3000);
    x = F.done[0];
    assert_int_equal(x->result, GW_XFER_OK);
    assert_int_equal(x->attempts, 2);
    assert_ptr_equal(x->inst, &p.inst[1]);
    assert_int_equal(p.inst[0].breaker.failures, 1);
    reset_done();
    gw_pool_free(&p);
    /* nowhere to go */
    pool_of(&p, F.dead);
    gw_proxy_submit(F.proxy, mk(&p, "GET", "/ok", NULL, 2000));
    wait_done(1, 3000);
    assert_int_equal(F.done[0]->result, GW_XFER_CONNECT);
    reset_done();
    gw_pool_free(&p);
}

static void test_slow_ones_do_not_delay_a_fast_one(void **state)
{
    gw_pool p;
    int n = 200, fast = -1;
    int64_t t0 = ml_now_ms();
    (void)state;
#ifdef __SANITIZE_THREAD__
    skip(); /* a timing bound: under TSan submitting 200 transfers outlasts SLOW_MS */
#endif
    pool_of(&p, F.url);
    for (int i = 0; i < n; i++)
        gw_proxy_submit(F.proxy, mk(&p, "GET", "/slow", NULL, 10000));
    ml_sleep_ms(50);
    int64_t fast_start = ml_now_ms();
    gw_proxy_submit(F.proxy, mk(&p, "GET", "/ok", NULL, 2000));
    wait_done(n + 1, 10000);
    for (int i = 0; i <= n; i++) {
        assert_int_equal(F.done[i]->result, GW_XFER_OK);
        if (strcmp(F.done[i]->path, "/ok") == 0)
            fast = i;
    }
    assert_int_equal(fast, 0); /* finished before any slow one */
    assert_true(F.done_ms[fast] - fast_start < 100);
    /* all 200 ran at once: about one SLOW_MS, not 200 of them */
    assert_true(F.done_ms[n] - t0 < SLOW_MS * 5);
    reset_done();
    gw_pool_free(&p);
}

static void test_shutdown_ends_in_flight(void **state)
{
    gw_pool p;
    gw_proxy_config pc = { 2, 0, NULL, NULL };
    char err[256];
    gw_proxy *px = gw_proxy_start(&pc, err, sizeof(err));
    (void)state;
    assert_non_null(px);
    pool_of(&p, F.url);
    gw_proxy_submit(px, mk(&p, "GET", "/slow", NULL, 10000));
    gw_proxy_submit(px, mk(&p, "GET", "/slow", NULL, 10000));
    ml_sleep_ms(50);
    gw_proxy_stop(px);
    assert_int_equal(F.ndone, 2);
    assert_int_equal(F.done[0]->result, GW_XFER_SHUTDOWN);
    assert_int_equal(F.done[1]->result, GW_XFER_SHUTDOWN);
    reset_done();
    gw_pool_free(&p);
}

static void test_outcome_classification(void **state)
{
    ml_buf h = { 0 };
    const char *no = "x-minilambda-overloaded: 0\r\n", *yes = "X-MiniLambda-Overloaded: 1\r\n";
    (void)state;

    /* any answer is a success, whatever its status, unless it says it is overloaded */
    assert_true(gw_xfer_upstream_ok(GW_XFER_OK, false));
    assert_false(gw_xfer_upstream_ok(GW_XFER_OK, true));
    assert_false(gw_xfer_upstream_ok(GW_XFER_CONNECT, false));
    assert_false(gw_xfer_upstream_ok(GW_XFER_TIMEOUT, false));
    assert_false(gw_xfer_upstream_ok(GW_XFER_TRANSPORT, false));
    assert_true(gw_xfer_upstream_ok(GW_XFER_TOO_LARGE, false));
    assert_true(gw_xfer_upstream_ok(GW_XFER_SHUTDOWN, false));
    /* the signal: exactly X-Minilambda-Overloaded: 1, any case of the name */
    ml_buf_init(&h, 4096);
    assert_false(gw_xfer_overloaded(&h));
    assert_int_equal(gw_hdr_capture_line(&h, no, strlen(no)), ML_OK);
    assert_false(gw_xfer_overloaded(&h));
    ml_buf_reset(&h);
    assert_int_equal(gw_hdr_capture_line(&h, yes, strlen(yes)), ML_OK);
    assert_true(gw_xfer_overloaded(&h));
    ml_buf_free(&h);
}

/* which answers are relayed as streams (docs/logs.md): the two types, parameters and case aside */
static void test_stream_types(void **state)
{
    (void)state;
    assert_true(gw_xfer_stream_type("text/event-stream"));
    assert_true(gw_xfer_stream_type("text/event-stream; charset=utf-8"));
    assert_true(gw_xfer_stream_type("Text/Event-Stream"));
    assert_true(gw_xfer_stream_type("application/x-ndjson"));
    assert_false(gw_xfer_stream_type("application/json"));
    assert_false(gw_xfer_stream_type("text/event-streams"));
    assert_false(gw_xfer_stream_type("text/event"));
    assert_false(gw_xfer_stream_type(""));
}

/* ---- on_chunk ---- */

typedef struct chunks {
    ml_buf bytes;
    int calls;
    int64_t first_ms;
    long status_at_first;
    bool refuse;          /* answer ML_ERR */
} chunks;

static int on_chunk(gw_xfer *x, const char *data, size_t len)
{
    chunks *c = x->ud;

    assert_true(len > 0);
    if (c->calls++ == 0) {
        c->first_ms = ml_now_ms();
        c->status_at_first = x->status;
    }
    assert_int_equal(ml_buf_append(&c->bytes, data, len), ML_OK);
    return c->refuse ? ML_ERR : ML_OK;
}

static int on_frame(void *ud, char type, const char *data, size_t len)
{
    return ml_buf_printf(ud, "%c:%.*s|", type, (int)len, data);
}

/* An invstream answer goes to on_chunk as it arrives — the first frames long before the
 * last — and nothing into resp_body; done still runs once, with chunked set. */
static void test_chunks_as_they_arrive(void **state)
{
    gw_pool p;
    chunks c = { 0 };
    ml_buf frames = { 0 };
    invstream_dec d = { 0 };
    gw_xfer *x;
    int64_t t0;
    (void)state;
    pool_of(&p, F.url);
    x = mk(&p, "GET", "/inv", NULL, 3000);
    x->on_chunk = on_chunk;
    x->ud = &c;
    t0 = ml_now_ms();
    gw_proxy_submit(F.proxy, x);
    wait_done(1, 3000);
    assert_ptr_equal(F.done[0], x);
    assert_int_equal(x->result, GW_XFER_OK);
    assert_true(x->chunked);
    assert_int_equal(x->status, 200);
    assert_int_equal(c.status_at_first, 200);
    assert_int_equal(x->resp_body.len, 0);
    assert_true(c.calls >= 2);
    assert_true(c.first_ms - t0 < INV_GAP_MS / 2);     /* before the function went on */
    assert_true(F.done_ms[0] - t0 >= INV_GAP_MS - 10); /* and the end after it */
    assert_int_equal(invstream_feed(&d, c.bytes.data, c.bytes.len, on_frame, &frames), ML_OK);
    assert_string_equal(ml_buf_cstr(&frames),
                        "M:{\"content_type\":\"text/plain\"}|D:first|D:second|E:{}|");
    assert_true(d.ended);
    invstream_dec_free(&d);
    ml_buf_free(&frames);
    ml_buf_free(&c.bytes);
    reset_done();
    gw_pool_free(&p);
}

/* The consumer's ML_ERR aborts the transfer (GW_XFER_TRANSPORT, named as such) and is not
 * held against the instance; a non-invstream answer still lands in resp_body. */
static void test_chunk_abort_and_plain(void **state)
{
    gw_pool p;
    chunks c = { .refuse = true }, plain = { 0 };
    gw_xfer *x;
    (void)state;
    pool_of(&p, F.url);
    x = mk(&p, "GET", "/inv", NULL, 3000);
    x->on_chunk = on_chunk;
    x->ud = &c;
    gw_proxy_submit(F.proxy, x);
    wait_done(1, 3000);
    assert_int_equal(x->result, GW_XFER_TRANSPORT);
    assert_string_equal(x->error, "aborted by the consumer");
    assert_int_equal(c.calls, 1);
    assert_int_equal(p.inst[0].breaker.failures, 0);
    x = mk(&p, "GET", "/ok", NULL, 3000);
    x->on_chunk = on_chunk;
    x->ud = &plain;
    gw_proxy_submit(F.proxy, x);
    wait_done(2, 3000);
    assert_int_equal(x->result, GW_XFER_OK);
    assert_false(x->chunked);
    assert_int_equal(plain.calls, 0);
    assert_string_equal(ml_buf_cstr(&x->resp_body), "{\"ok\":true}");
    ml_buf_free(&c.bytes);
    reset_done();
    gw_pool_free(&p);
}

/* ---- timers and the per-loop pointer ---- */

#define NTIMERS 6

typedef struct ttest {
    gw_task task;
    gw_timer t[NTIMERS];
    int64_t armed_ms;
    int order[NTIMERS * 2];
    int64_t fired_ms[NTIMERS];
    int fired[NTIMERS], cancelled[NTIMERS];
    int nfired;
    void *user_seen;
} ttest;

static ttest T;

static void on_t(gw_loop *l, gw_timer *t, bool cancelled)
{
    int i = (int)(t - T.t);
    (void)l;
    pthread_mutex_lock(&F.lock);
    if (cancelled) {
        T.cancelled[i]++;
    } else {
        T.fired[i]++;
        T.fired_ms[i] = ml_now_ms();
        T.order[T.nfired++] = i;
    }
    pthread_mutex_unlock(&F.lock);
}

/* On the loop: t0 +60, t1 +20, t2 +40, t3 +30 then cancelled, t4 +10 moved to +50, t5 +0
 * (the head) moved to +45; and the per-loop pointer round trip. */
static void arm_task(gw_loop *l, gw_task *task, bool cancelled)
{
    static const int64_t at[NTIMERS] = { 60, 20, 40, 30, 10, 0 };
    (void)task;
    (void)cancelled;
    T.armed_ms = ml_now_ms();
    for (int i = 0; i < NTIMERS; i++) {
        T.t[i].fn = on_t;
        gw_loop_timer_set(l, &T.t[i], T.armed_ms + at[i]);
    }
    gw_loop_timer_cancel(l, &T.t[3]);
    gw_loop_timer_cancel(l, &T.t[3]); /* twice: a no-op */
    gw_loop_timer_set(l, &T.t[4], T.armed_ms + 50);
    gw_loop_timer_set(l, &T.t[5], T.armed_ms + 45); /* moving the head into the middle */
    assert_null(gw_loop_user(l));
    gw_loop_set_user(l, &T);
    T.user_seen = gw_loop_user(l);
    gw_loop_set_user(l, NULL);
}

static void test_timers(void **state)
{
    static const int want[] = { 1, 2, 5, 4, 0 };
    gw_proxy_config pc = { 1, 0, NULL, NULL };
    char err[256];
    /* a fresh loop: no transfer ever ran on it, so no curl timer wakes it by chance */
    gw_proxy *px = gw_proxy_start(&pc, err, sizeof(err));
    (void)state;
    assert_non_null(px);
    memset(&T, 0, sizeof(T));
    T.task.run = arm_task;
    gw_proxy_run(px, &T.task);
    for (int64_t end = ml_now_ms() + 2000; ml_now_ms() < end;) {
        pthread_mutex_lock(&F.lock);
        int n = T.nfired;
        pthread_mutex_unlock(&F.lock);
        if (n >= 5)
            break;
        ml_sleep_ms(5);
    }
    ml_sleep_ms(30); /* nothing else may fire */
    pthread_mutex_lock(&F.lock);
    assert_int_equal(T.nfired, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(T.order[i], want[i]);
    assert_int_equal(T.fired[3], 0);
    assert_int_equal(T.fired[4], 1); /* moved, not doubled */
    assert_true(T.fired_ms[0] >= T.armed_ms + 60);
    assert_true(T.fired_ms[1] >= T.armed_ms + 20);
    assert_true(T.fired_ms[4] >= T.armed_ms + 50);
    assert_true(T.fired_ms[5] >= T.armed_ms + 45);
    assert_true(T.fired_ms[1] < T.armed_ms + 20 + 100); /* the loop woke for it */
    for (int i = 0; i < NTIMERS; i++)
        assert_int_equal(T.cancelled[i], 0);
    assert_ptr_equal(T.user_seen, &T);
    pthread_mutex_unlock(&F.lock);
    gw_proxy_stop(px);
}

/* Timers still armed when the proxy stops run once, cancelled. */
static void arm_far(gw_loop *l, gw_task *task, bool cancelled)
{
    (void)task;
    (void)cancelled;
    for (int i = 0; i < 2; i++) {
        T.t[i].fn = on_t;
        gw_loop_timer_set(l, &T.t[i], ml_now_ms() + 600000);
    }
}

static void test_timers_cancelled_on_stop(void **state)
{
    gw_proxy_config pc = { 1, 0, NULL, NULL };
    char err[256];
    gw_proxy *px = gw_proxy_start(&pc, err, sizeof(err));
    (void)state;
    assert_non_null(px);
    memset(&T, 0, sizeof(T));
    T.task.run = arm_far;
    gw_proxy_run(px, &T.task);
    ml_sleep_ms(50);
    gw_proxy_stop(px);
    assert_int_equal(T.cancelled[0], 1);
    assert_int_equal(T.cancelled[1], 1);
    assert_int_equal(T.nfired, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_and_keepalive),
        cmocka_unit_test(test_methods_and_bodies),
        cmocka_unit_test(test_timeout_and_breaker),
        cmocka_unit_test(test_response_cap),
        cmocka_unit_test(test_connect_retry),
        cmocka_unit_test(test_slow_ones_do_not_delay_a_fast_one),
        cmocka_unit_test(test_shutdown_ends_in_flight),
        cmocka_unit_test(test_outcome_classification),
        cmocka_unit_test(test_stream_types),
        cmocka_unit_test(test_chunks_as_they_arrive),
        cmocka_unit_test(test_chunk_abort_and_plain),
        cmocka_unit_test(test_timers),
        cmocka_unit_test(test_timers_cancelled_on_stop),
    };
    int rc;

    if (httpc_global_init() != ML_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, setup, teardown);
    httpc_global_cleanup();
    return rc;
}
