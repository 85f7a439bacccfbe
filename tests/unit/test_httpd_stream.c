/* Unit tests: shared/httpd.c streamed responses — a real server on an ephemeral port (both
 * threading modes), libcurl clients in threads, producers writing from their own threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "ext_loop.h"
#include "httpd.h"

#define MAX_SLOTS 128
#define MAX_CHUNKS 256

/* ---- the server side: GET /stream?id=N makes a stream and parks it in slot N ---- */

static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_cv = PTHREAD_COND_INITIALIZER;
static httpd_stream *slots[MAX_SLOTS];

static httpd_result h_stream(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *id = httpd_query(req, "id");
    long n = id ? strtol(id, NULL, 10) : -1;
    httpd_stream *s;
    (void)ud;
    if (n < 0 || n >= MAX_SLOTS) {
        httpd_resp_error(resp, 400, "bad", "id");
        return HTTPD_DONE;
    }
    httpd_resp_header(resp, "Cache-Control", "no-cache");
    s = httpd_resp_stream(resp, "text/event-stream"); /* NULL: take_slot fails the test */
    pthread_mutex_lock(&slot_mu);
    slots[n] = s;
    pthread_cond_broadcast(&slot_cv);
    pthread_mutex_unlock(&slot_mu);
    return HTTPD_DONE;
}

/* Writes past the buffer limit before the response even goes out (nobody reads yet). */
static size_t flood_accepted;
static int flood_rc_after;
static bool flood_gone, flood_pending_ok;

static httpd_result h_flood(httpd_req *req, httpd_resp *resp, void *ud)
{
    static char piece[64 * 1024];
    httpd_stream *s = httpd_resp_stream(resp, "application/x-ndjson");
    (void)req;
    (void)ud;
    memset(piece, 'x', sizeof(piece));
    flood_accepted = 0;
    for (int i = 0; i < 64; i++) {
        if (httpd_stream_write(s, piece, sizeof(piece)) != ML_OK)
            break;
        flood_accepted += sizeof(piece);
    }
    flood_pending_ok = httpd_stream_pending(s) <= HTTPD_STREAM_MAX_BUFFERED; /* asserted by the test */
    flood_rc_after = httpd_stream_write(s, "y", 1);
    flood_gone = httpd_stream_gone(s);
    httpd_stream_close(s);
    return HTTPD_DONE;
}

static httpd_result h_plain(httpd_req *req, httpd_resp *resp, void *ud)
{
    (void)req;
    (void)ud;
    httpd_resp_text(resp, 200, "text/plain", "plain");
    return HTTPD_DONE;
}

static const httpd_route routes[] = {
    { "GET", "/stream", h_stream, NULL, 0, false },
    { "GET", "/flood", h_flood, NULL, 0, false },
    { "GET", "/plain", h_plain, NULL, 0, false },
};

/* The stream parked in slot id (waits up to 5 s for the request to arrive). */
static httpd_stream *take_slot(int id)
{
    httpd_stream *s;
    int64_t until = ml_now_ms() + 5000;

    pthread_mutex_lock(&slot_mu);
    while (!slots[id] && ml_now_ms() < until) {
        pthread_mutex_unlock(&slot_mu);
        ml_sleep_ms(2);
        pthread_mutex_lock(&slot_mu);
    }
    s = slots[id];
    slots[id] = NULL;
    pthread_mutex_unlock(&slot_mu);
    assert_non_null(s);
    return s;
}

/* ---- a server in either mode (external: two ext_loop threads, as the gateway runs it) ---- */

typedef struct server {
    httpd *h;
    bool external;
    ext_loop loops[2];
} server;

static void server_start(server *sv, bool external)
{
    httpd_config cfg = { .service = "test", .bind_addr = "127.0.0.1", .threads = 2, .workers = 2,
                         .external = external, .drain_timeout_s = 10 };
    char err[128];

    memset(sv, 0, sizeof(*sv));
    sv->external = external;
    sv->h = httpd_start(&cfg, routes, ML_ARRAY_LEN(routes), err, sizeof(err));
    assert_non_null(sv->h);
    for (unsigned i = 0; external && i < 2; i++) {
        sv->loops[i].h = sv->h;
        sv->loops[i].idx = i;
        pthread_create(&sv->loops[i].t, NULL, ext_loop_main, &sv->loops[i]);
    }
}

static void server_stop(server *sv)
{
    assert_true(httpd_drain(sv->h));
    for (unsigned i = 0; sv->external && i < 2; i++) {
        atomic_store(&sv->loops[i].stop, true);
        pthread_join(sv->loops[i].t, NULL);
    }
    httpd_stop(sv->h);
}

/* ---- the client side ---- */

typedef struct sclient {
    char url[256];
    int abort_after;             /* give up after this many chunks (0: read to the end) */
    long status;
    CURLcode rc;
    ml_buf body;
    ml_buf headers;
    int nchunks;
    int64_t chunk_ms[MAX_CHUNKS];
    size_t chunk_end[MAX_CHUNKS]; /* body length after each chunk */
    pthread_t t;
} sclient;

static size_t on_chunk(char *p, size_t sz, size_t n, void *ud)
{
    sclient *c = ud;

    ml_buf_append(&c->body, p, sz * n);
    if (c->nchunks < MAX_CHUNKS) {
        c->chunk_ms[c->nchunks] = ml_now_ms();
        c->chunk_end[c->nchunks] = c->body.len;
    }
    c->nchunks++;
    return c->abort_after && c->nchunks >= c->abort_after ? 0 : sz * n;
}

static size_t on_hdr(char *p, size_t sz, size_t n, void *ud)
{
    ml_buf_append(ud, p, sz * n);
    return sz * n;
}

static void *client_main(void *arg)
{
    sclient *c = arg;
    CURL *e = curl_easy_init();

    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_chunk);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_hdr);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &c->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    c->rc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &c->status);
    curl_easy_cleanup(e);
    return NULL;
}

static void client_start(sclient *c, const server *sv, const char *path, int abort_after)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->url, sizeof(c->url), "http://127.0.0.1:%u%s", httpd_port(sv->h), path);
    c->abort_after = abort_after;
    pthread_create(&c->t, NULL, client_main, c);
}

static void client_join(sclient *c)
{
    pthread_join(c->t, NULL);
}

static void client_free(sclient *c)
{
    ml_buf_free(&c->body);
    ml_buf_free(&c->headers);
}

/* ---- tests ---- */

/* Events written with gaps arrive one by one, in order, before the stream ends. */
static void incremental(bool external)
{
    server sv;
    sclient c;
    httpd_stream *s;
    int64_t wrote_ms[5];
    char ev[64];
    ml_buf want = { 0 };

    server_start(&sv, external);
    client_start(&c, &sv, "/stream?id=1", 0);
    s = take_slot(1);
    for (int i = 0; i < 5; i++) {
        snprintf(ev, sizeof(ev), "id: %d\ndata: {\"n\":%d}\n\n", i, i);
        ml_buf_append_str(&want, ev);
        wrote_ms[i] = ml_now_ms();
        assert_int_equal(httpd_stream_write(s, ev, strlen(ev)), ML_OK);
        ml_sleep_ms(100);
    }
    assert_false(httpd_stream_gone(s));
    httpd_stream_close(s);
    client_join(&c);
    assert_int_equal(c.rc, CURLE_OK);
    assert_int_equal(c.status, 200);
    assert_non_null(strcasestr(ml_buf_cstr(&c.headers), "Content-Type: text/event-stream"));
    assert_non_null(strcasestr(ml_buf_cstr(&c.headers), "Cache-Control: no-cache"));
    assert_string_equal(ml_buf_cstr(&c.body), ml_buf_cstr(&want));
    /* the events came as they were written, not in one piece at the end */
    assert_true(c.nchunks >= 4);
    assert_true(c.chunk_ms[0] < wrote_ms[4]);
    for (int i = 1; i < 4; i++) /* event i was in the client's hands before event i+1 was written */
        assert_true(c.chunk_end[i - 1] < c.body.len && c.chunk_ms[i - 1] <= wrote_ms[i + 1]);
    client_free(&c);
    ml_buf_free(&want);
    server_stop(&sv);
}

static void test_incremental(void **state)
{
    (void)state;
    incremental(false);
}

static void test_incremental_external(void **state)
{
    (void)state;
    incremental(true);
}

/* A client that disconnects: a later write fails and the stream says gone. */
static void client_gone(bool external)
{
    server sv;
    sclient c;
    httpd_stream *s;
    int rc = ML_OK, writes = 0;

    server_start(&sv, external);
    client_start(&c, &sv, "/stream?id=2", 1);
    s = take_slot(2);
    assert_int_equal(httpd_stream_write(s, "data: first\n\n", 13), ML_OK);
    client_join(&c);
    assert_int_equal(c.rc, CURLE_WRITE_ERROR);
    /* the disconnect is noticed when the server next sends: within a few writes */
    while (rc == ML_OK && writes++ < 500) {
        rc = httpd_stream_write(s, "data: more\n\n", 12);
        ml_sleep_ms(10);
    }
    assert_int_equal(rc, ML_ERR);
    assert_true(httpd_stream_gone(s));
    assert_int_equal(httpd_stream_write(s, "x", 1), ML_ERR);
    httpd_stream_close(s);
    client_free(&c);
    server_stop(&sv);
}

static void test_client_gone(void **state)
{
    (void)state;
    client_gone(false);
}

static void test_client_gone_external(void **state)
{
    (void)state;
    client_gone(true);
}

/* More than HTTPD_STREAM_MAX_BUFFERED unsent: the write fails, the client gets a cut body. */
static void test_buffer_limit(void **state)
{
    server sv;
    sclient c;
    (void)state;

    server_start(&sv, false);
    client_start(&c, &sv, "/flood", 0);
    client_join(&c);
    assert_true(flood_accepted <= HTTPD_STREAM_MAX_BUFFERED);
    assert_true(flood_pending_ok);
    assert_true(flood_accepted > HTTPD_STREAM_MAX_BUFFERED - 64 * 1024);
    assert_int_equal(flood_rc_after, ML_ERR);
    assert_true(flood_gone);
    assert_int_not_equal(c.rc, CURLE_OK); /* no clean end: the client knows it lost data */
    client_free(&c);
    server_stop(&sv);
}

/* Many streams at once, fed by one producer thread, each in order and complete; a plain
 * route answers meanwhile. */
#define NSTREAMS 64
static void test_many_streams(void **state)
{
    server sv;
    static sclient cs[NSTREAMS];
    httpd_stream *ss[NSTREAMS];
    sclient plain;
    char path[64], ev[64];
    (void)state;

    server_start(&sv, true);
    for (int i = 0; i < NSTREAMS; i++) {
        snprintf(path, sizeof(path), "/stream?id=%d", 10 + i);
        client_start(&cs[i], &sv, path, 0);
    }
    for (int i = 0; i < NSTREAMS; i++)
        ss[i] = take_slot(10 + i);
    /* every stream is open and idle (suspended): a plain request still gets through */
    client_start(&plain, &sv, "/plain", 0);
    client_join(&plain);
    assert_int_equal(plain.status, 200);
    assert_string_equal(ml_buf_cstr(&plain.body), "plain");
    client_free(&plain);
    for (int k = 0; k < 10; k++) {
        for (int i = 0; i < NSTREAMS; i++) {
            snprintf(ev, sizeof(ev), "data: %d.%d\n\n", i, k);
            assert_int_equal(httpd_stream_write(ss[i], ev, strlen(ev)), ML_OK);
        }
        ml_sleep_ms(5);
    }
    for (int i = 0; i < NSTREAMS; i++)
        httpd_stream_close(ss[i]);
    for (int i = 0; i < NSTREAMS; i++) {
        ml_buf want = { 0 };
        client_join(&cs[i]);
        for (int k = 0; k < 10; k++) {
            snprintf(ev, sizeof(ev), "data: %d.%d\n\n", i, k);
            ml_buf_append_str(&want, ev);
        }
        assert_int_equal(cs[i].rc, CURLE_OK);
        assert_string_equal(ml_buf_cstr(&cs[i].body), ml_buf_cstr(&want));
        ml_buf_free(&want);
        client_free(&cs[i]);
    }
    server_stop(&sv);
}

/* Draining ends an idle stream for its client (cleanly) so the server can stop; the
 * producer's next write fails. */
static void test_drain_ends_streams(void **state)
{
    server sv;
    sclient c;
    httpd_stream *s;
    (void)state;

    server_start(&sv, false);
    client_start(&c, &sv, "/stream?id=3", 0);
    s = take_slot(3);
    assert_int_equal(httpd_stream_write(s, "data: a\n\n", 9), ML_OK);
    ml_sleep_ms(50);
    server_stop(&sv); /* asserts the drain finished */
    client_join(&c);
    assert_int_equal(c.rc, CURLE_OK);
    assert_string_equal(ml_buf_cstr(&c.body), "data: a\n\n");
    assert_true(httpd_stream_gone(s));
    assert_int_equal(httpd_stream_write(s, "x", 1), ML_ERR);
    httpd_stream_close(s);
    client_free(&c);
}

/* The notify callback: once the client has read the queue down, and once when it goes. */
static atomic_int notified;

static void on_notify(void *ud)
{
    (void)ud;
    atomic_fetch_add(&notified, 1);
}

static void test_notify(void **state)
{
    server sv;
    sclient c;
    httpd_stream *s;
    static char big[256 * 1024];
    int rc = ML_OK;
    bool drained;
    (void)state;

    memset(big, 'z', sizeof(big));
    atomic_store(&notified, 0);
    server_start(&sv, true);
    client_start(&c, &sv, "/stream?id=4", 3);
    s = take_slot(4);
    httpd_stream_notify(s, 1024, on_notify, NULL);
    assert_int_equal(httpd_stream_write(s, big, sizeof(big)), ML_OK);
    for (int i = 0; i < 500 && atomic_load(&notified) == 0; i++)
        ml_sleep_ms(10);
    assert_int_equal(atomic_load(&notified), 1);
    /* The first notice is the drain, unless the client left before the server got the 256 KiB
     * out (a loaded machine): then it was the goodbye and no drain notice follows. */
    drained = httpd_stream_pending(s) <= 1024;
    client_join(&c); /* it gave up after 3 chunks */
    for (int i = 0; i < 500 && rc == ML_OK; i++) {
        rc = httpd_stream_write(s, "data: more\n\n", 12);
        ml_sleep_ms(10);
    }
    assert_int_equal(rc, ML_ERR);
    assert_int_equal(atomic_load(&notified), drained ? 2 : 1);
    httpd_stream_close(s);
    client_free(&c);
    server_stop(&sv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_incremental_external),
        cmocka_unit_test(test_client_gone),
        cmocka_unit_test(test_client_gone_external),
        cmocka_unit_test(test_buffer_limit),
        cmocka_unit_test(test_many_streams),
        cmocka_unit_test(test_drain_ends_streams),
        cmocka_unit_test(test_notify),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
