/* Unit tests: services/gateway/proxy.c — the curl multi event loop against a local HTTP
 * server (the shared httpd on an ephemeral loopback port): methods and bodies, keep-alive
 * reuse, timeouts, size caps, connect-failure retry, breaker reporting, many slow transfers
 * at once without delaying a fast one, and shutdown with transfers in flight. */
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

static const httpd_route routes[] = {
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
    const char *methods[] = { "POST", "PUT", "DELETE" };
    char want[128];
    (void)state;
    pool_of(&p, F.url);
    for (int i = 0; i < 3; i++) {
        gw_proxy_submit(F.proxy, mk(&p, methods[i], "/echo", i == 2 ? NULL : "{\"a\":1}", 2000));
        wait_done(i + 1, 2000);
        snprintf(want, sizeof(want), "%s|%s|application/json|10.9.8.7", methods[i], i == 2 ? "" : "{\"a\":1}");
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
    };
    int rc;

    if (httpc_global_init() != ML_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, setup, teardown);
    httpc_global_cleanup();
    return rc;
}
