/* Unit tests: shared/httpd.c — a real server on an ephemeral port, driven with libcurl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "health.h"
#include "ext_loop.h"
#include "httpd.h"

typedef struct reply {
    long status;
    ml_buf body;
    ml_buf headers;
} reply;

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    ml_buf_append(ud, p, sz * n);
    return sz * n;
}

/* Performs one request; extra is a "Name: value" header or NULL; body NULL for none. */
static void request(uint16_t port, const char *method, const char *path, const char *extra,
                    const char *body, long chunked, reply *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char url[256];

    memset(r, 0, sizeof(*r));
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    if (extra)
        hdrs = curl_slist_append(hdrs, extra);
    if (chunked)
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
}

static void reply_free(reply *r)
{
    ml_buf_free(&r->body);
    ml_buf_free(&r->headers);
}

static httpd_result h_echo(httpd_req *req, httpd_resp *resp, void *ud)
{
    cJSON *o = cJSON_CreateObject();
    size_t len;
    (void)ud;
    cJSON_AddStringToObject(o, "fn", httpd_param(req, "fn"));
    cJSON_AddStringToObject(o, "route", httpd_route_pattern(req));
    cJSON_AddStringToObject(o, "q", httpd_query(req, "q") ? httpd_query(req, "q") : "");
    cJSON_AddStringToObject(o, "body", httpd_body(req, &len));
    cJSON_AddNumberToObject(o, "len", (double)len);
    httpd_resp_header(resp, "X-Test", "yes");
    httpd_resp_json(resp, 201, o);
    return HTTPD_DONE;
}

static httpd_result h_json(httpd_req *req, httpd_resp *resp, void *ud)
{
    cJSON *o = httpd_body_json(req, resp);
    (void)ud;
    if (!o)
        return HTTPD_DONE;
    httpd_resp_json(resp, 200, o);
    return HTTPD_DONE;
}

/* The blocking handler waits until the fast one ran: with a single MHD thread this only
 * finishes if blocking handlers really run off the event loop. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int fast_done, slow_started;

static httpd_result h_slow(httpd_req *req, httpd_resp *resp, void *ud)
{
    struct timespec dl;
    (void)req;
    (void)ud;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&mu);
    slow_started = 1;
    pthread_cond_broadcast(&cv);
    while (!fast_done && pthread_cond_timedwait(&cv, &mu, &dl) == 0)
        ;
    pthread_mutex_unlock(&mu);
    httpd_resp_text(resp, fast_done ? 200 : 500, "text/plain", fast_done ? "slow" : "starved");
    return HTTPD_DONE;
}

static httpd_result h_fast(httpd_req *req, httpd_resp *resp, void *ud)
{
    (void)req;
    (void)ud;
    pthread_mutex_lock(&mu);
    fast_done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    httpd_resp_text(resp, 200, "text/plain", "fast");
    return HTTPD_DONE;
}

static void *complete_later(void *arg)
{
    httpd_req *req = arg;
    ml_sleep_ms(50);
    httpd_complete(req);
    return NULL;
}

static httpd_result h_async(httpd_req *req, httpd_resp *resp, void *ud)
{
    pthread_t t;
    (void)ud;
    httpd_resp_text(resp, 202, "text/plain", "later");
    pthread_create(&t, NULL, complete_later, req);
    pthread_detach(t);
    return HTTPD_ASYNC;
}

static httpd_result h_empty_header(httpd_req *req, httpd_resp *resp, void *ud)
{
    (void)req;
    (void)ud;
    httpd_resp_header(resp, "X-Empty", "");
    httpd_resp_text(resp, 200, "text/plain", "ok");
    return HTTPD_DONE;
}

/* Which worker threads ran the blocking /who route. */
static pthread_t seen[64];
static atomic_int nseen;

static httpd_result h_who(httpd_req *req, httpd_resp *resp, void *ud)
{
    pthread_t self = pthread_self();
    int n = atomic_load(&nseen), i = 0;
    (void)req;
    (void)ud;
    while (i < n && !pthread_equal(seen[i], self))
        i++;
    if (i == n && n < 64)
        seen[atomic_fetch_add(&nseen, 1)] = self;
    httpd_resp_text(resp, 200, "text/plain", "me");
    return HTTPD_DONE;
}

static health hs;
static int dep_up = 1;
static int check_dep(void *ud, char *err, size_t len)
{
    (void)ud;
    if (dep_up)
        return ML_OK;
    ml_snprintf(err, len, "connection refused");
    return ML_ERR;
}

static metrics_registry *reg;
static const httpd_route routes[] = {
    { "POST", "/functions/{fn}/invoke", h_echo, NULL, 64, false },
    { "GET", "/functions/{fn}", h_echo, NULL, 0, false },
    { "DELETE", "/functions/{fn}", h_echo, NULL, 0, false },
    { "POST", "/json", h_json, NULL, 0, true },
    { "GET", "/slow", h_slow, NULL, 0, true },
    { "GET", "/fast", h_fast, NULL, 0, false },
    { "GET", "/async", h_async, NULL, 0, false },
    { "GET", "/health", health_handler, &hs, 0, true },
    { "GET", "/who", h_who, NULL, 0, true },
    { "GET", "/empty-header", h_empty_header, NULL, 0, false },
};

static httpd *start(void)
{
    httpd_config cfg = { .service = "test", .bind_addr = "127.0.0.1", .threads = 1, .workers = 2,
                         .metrics = reg };
    char err[128];
    httpd *h = httpd_start(&cfg, routes, ML_ARRAY_LEN(routes), err, sizeof(err));
    assert_non_null(h);
    return h;
}

static void test_routes_params_and_request_id(void **state)
{
    httpd *h = start();
    reply r;
    cJSON *o;
    (void)state;
    request(httpd_port(h), "POST", "/functions/my-fn/invoke?q=1", "X-Request-Id: abc-123", "{\"a\":1}", 0, &r);
    assert_int_equal(r.status, 201);
    o = cJSON_Parse(r.body.data);
    assert_string_equal(cJSON_GetObjectItem(o, "fn")->valuestring, "my-fn");
    assert_string_equal(cJSON_GetObjectItem(o, "route")->valuestring, "/functions/{fn}/invoke");
    assert_string_equal(cJSON_GetObjectItem(o, "q")->valuestring, "1");
    assert_string_equal(cJSON_GetObjectItem(o, "body")->valuestring, "{\"a\":1}");
    assert_non_null(strstr(r.headers.data, "X-Request-Id: abc-123"));
    assert_non_null(strstr(r.headers.data, "X-Test: yes"));
    cJSON_Delete(o);
    reply_free(&r);
    /* a hostile request id is replaced by a generated one */
    request(httpd_port(h), "GET", "/functions/x", "X-Request-Id: bad id<script>", NULL, 0, &r);
    assert_int_equal(r.status, 201);
    assert_null(strstr(r.headers.data, "script"));
    assert_non_null(strstr(r.headers.data, "X-Request-Id: "));
    reply_free(&r);
    httpd_stop(h);
}

static void test_404_405_json_errors(void **state)
{
    httpd *h = start();
    reply r;
    cJSON *o, *e;
    (void)state;
    request(httpd_port(h), "GET", "/nope", "X-Request-Id: rid-9", NULL, 0, &r);
    assert_int_equal(r.status, 404);
    o = cJSON_Parse(r.body.data);
    e = cJSON_GetObjectItem(o, "error");
    assert_string_equal(cJSON_GetObjectItem(e, "code")->valuestring, "not_found");
    assert_string_equal(cJSON_GetObjectItem(e, "request_id")->valuestring, "rid-9");
    cJSON_Delete(o);
    reply_free(&r);
    request(httpd_port(h), "PUT", "/functions/abc", NULL, "x", 0, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.headers.data, "Allow: GET, DELETE"));
    reply_free(&r);
    request(httpd_port(h), "GET", "/functions//invoke", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 404); /* empty segment never matches a parameter */
    reply_free(&r);
    request(httpd_port(h), "POST", "/json", NULL, "{not json", 0, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body.data, "invalid_json"));
    reply_free(&r);
    httpd_stop(h);
}

static void test_body_cap(void **state)
{
    httpd *h = start();
    char big[200];
    reply r;
    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    request(httpd_port(h), "POST", "/functions/f/invoke", NULL, big, 0, &r); /* Content-Length */
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body.data, "payload_too_large"));
    reply_free(&r);
    request(httpd_port(h), "POST", "/functions/f/invoke", NULL, big, 1, &r); /* chunked */
    assert_int_equal(r.status, 413);
    reply_free(&r);
    request(httpd_port(h), "POST", "/functions/f/invoke", NULL, "small", 1, &r);
    assert_int_equal(r.status, 201);
    reply_free(&r);
    httpd_stop(h);
}

/* Sends the request head and body bytes (as a naive client does: all of it, then read),
 * reads what comes back within 2 s into out; false if sending failed (a reset). */
static bool raw_exchange_body(uint16_t port, const char *head, const char *body, size_t blen,
                              char *out, size_t outlen)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    struct timeval tv = { 2, 0 };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    size_t got = 0, sent = 0;
    ssize_t k = 0;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    out[0] = '\0';
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    while (sent < blen && (k = send(fd, body + sent, blen - sent, MSG_NOSIGNAL)) > 0)
        sent += (size_t)k;
    while (got + 1 < outlen && (k = read(fd, out + got, outlen - 1 - got)) > 0)
        got += (size_t)k;
    out[got] = '\0';
    close(fd);
    return sent == blen && k >= 0;
}

static void raw_exchange(uint16_t port, const char *req, char *out, size_t outlen)
{
    raw_exchange_body(port, req, "", 0, out, outlen);
}

/* A body far over the cap, sent whole before reading (what Python's http.client, and so
 * boto3, does): the client must read the 413, not a reset — the server reads and drops the
 * body first. Content-Length and chunked. */
static void test_body_cap_read_before_413(void **state)
{
    httpd *h = start();
    size_t n = 4u << 20;
    char *big = malloc(n + 16), head[256], out[2048];
    (void)state;
    assert_non_null(big);
    memset(big, 'a', n);
    snprintf(head, sizeof(head), "POST /functions/f/invoke HTTP/1.1\r\nHost: x\r\n"
             "Connection: close\r\nContent-Length: %zu\r\n\r\n", n);
    assert_true(raw_exchange_body(httpd_port(h), head, big, n, out, sizeof(out)));
    assert_non_null(strstr(out, "HTTP/1.1 413"));
    assert_non_null(strstr(out, "payload_too_large"));
    memcpy(big + n, "\r\n0\r\n\r\n", 7);
    assert_true(raw_exchange_body(httpd_port(h), "POST /functions/f/invoke HTTP/1.1\r\nHost: x\r\n"
                                  "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n400000\r\n", big, n + 7,
                                  out, sizeof(out)));
    assert_non_null(strstr(out, "HTTP/1.1 413"));
    free(big);
    httpd_stop(h);
}

/* The client waits for 100 Continue, or announces more than the server would read: 413 at
 * once, never 100, and the connection closed (the read above ends before its timeout). */
static void test_body_cap_answered_at_once(void **state)
{
    httpd *h = start();
    char out[2048];
    struct timespec a, b;
    (void)state;
    clock_gettime(CLOCK_MONOTONIC, &a);
    raw_exchange(httpd_port(h), "POST /functions/f/invoke HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 413"));
    assert_null(strstr(out, "100 Continue"));
    raw_exchange(httpd_port(h), "POST /functions/f/invoke HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: 1000000000\r\n\r\n", out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 413"));
    assert_non_null(strstr(out, "payload_too_large"));
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_true(b.tv_sec - a.tv_sec < 2);
    httpd_stop(h);
}

static void shape(const httpd_req *req, httpd_resp *resp, void *ud)
{
    httpd_resp_header(resp, "X-Shaped", httpd_path(req));
    httpd_resp_text(resp, resp->status, "text/plain", ud);
}

/* The server's own refusals go through the dialect's hook; empty header values are sent. */
static void test_shape_reject_and_empty_header(void **state)
{
    httpd_config cfg = { .service = "test", .bind_addr = "127.0.0.1", .threads = 1, .workers = 2,
                         .shape_reject = shape, .shape_reject_ud = "shaped" };
    char err[128], big[200];
    httpd *h = httpd_start(&cfg, routes, ML_ARRAY_LEN(routes), err, sizeof(err));
    reply r;
    (void)state;
    assert_non_null(h);
    request(httpd_port(h), "GET", "/nope", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body.data, "shaped");
    assert_non_null(strstr(r.headers.data, "X-Shaped: /nope"));
    reply_free(&r);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    request(httpd_port(h), "POST", "/functions/f/invoke", NULL, big, 0, &r);
    assert_int_equal(r.status, 413);
    assert_string_equal(r.body.data, "shaped");
    reply_free(&r);
    request(httpd_port(h), "GET", "/empty-header", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers.data, "\r\nX-Empty:"));
    reply_free(&r);
    httpd_stop(h);
}

typedef struct bg {
    uint16_t port;
    const char *path;
    reply r;
} bg;

static void *bg_request(void *arg)
{
    bg *b = arg;
    request(b->port, "GET", b->path, NULL, NULL, 0, &b->r);
    return NULL;
}

static void test_blocking_routes_leave_event_loop_free(void **state)
{
    httpd *h = start();
    bg slow = { httpd_port(h), "/slow", { 0 } };
    pthread_t t;
    reply r;
    (void)state;
    fast_done = slow_started = 0;
    pthread_create(&t, NULL, bg_request, &slow);
    pthread_mutex_lock(&mu);
    while (!slow_started)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    request(httpd_port(h), "GET", "/fast", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    pthread_join(t, NULL);
    assert_int_equal(slow.r.status, 200);
    assert_string_equal(slow.r.body.data, "slow");
    reply_free(&r);
    reply_free(&slow.r);
    httpd_stop(h);
}

static void test_async_completion(void **state)
{
    httpd *h = start();
    reply r;
    (void)state;
    for (int i = 0; i < 20; i++) {
        request(httpd_port(h), "GET", "/async", NULL, NULL, 0, &r);
        assert_int_equal(r.status, 202);
        assert_string_equal(r.body.data, "later");
        reply_free(&r);
    }
    httpd_stop(h);
}

/* httpd_stop lets an in-flight request finish instead of cutting it off. */
/* A raw connection to 127.0.0.1:port, or -1 (errno set) when the connect fails. */
static int raw_connect(uint16_t port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    struct timeval tv = { 2, 0 };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Reads one response whose body has a Content-Length (or until EOF) into out. */
static void raw_read_response(int fd, char *out, size_t outlen)
{
    size_t got = 0, want = (size_t)-1;
    ssize_t k;

    out[0] = '\0';
    while (got < want && got + 1 < outlen && (k = read(fd, out + got, outlen - 1 - got)) > 0) {
        const char *end, *cl;
        got += (size_t)k;
        out[got] = '\0';
        if (want == (size_t)-1 && (end = strstr(out, "\r\n\r\n")) &&
            (cl = strcasestr(out, "\r\nContent-Length: ")) && cl < end)
            want = (size_t)(end + 4 - out) + strtoul(cl + 18, NULL, 10);
    }
}

/* What the prober saw while httpd_stop was draining. */
typedef struct drain_probe {
    uint16_t port;
    int keep_fd;            /* keep-alive connection opened before the drain */
    bool refused;           /* a new connection was refused */
    char on_keep[1024];     /* the response to a new request on keep_fd */
    int64_t released_at;    /* when the slow handler was let go (ml_now_ms) */
} drain_probe;

/* Waits until the server stops accepting (httpd_stop has begun draining), checks that an
 * open connection gets 503 for a new request, then lets the in-flight slow request finish. */
static void *probe_drain(void *arg)
{
    drain_probe *p = arg;
    const char *req = "GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int64_t deadline = ml_now_ms() + 4000;
    int fd;

    while (!p->refused && ml_now_ms() < deadline) {
        fd = raw_connect(p->port);
        if (fd < 0 && errno == ECONNREFUSED)
            p->refused = true;
        else
            ml_sleep_ms(2);
        if (fd >= 0)
            close(fd);
    }
    if (send(p->keep_fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req))
        raw_read_response(p->keep_fd, p->on_keep, sizeof(p->on_keep));
    ml_sleep_ms(100); /* httpd_stop is now waiting for the slow request */
    pthread_mutex_lock(&mu);
    p->released_at = ml_now_ms();
    fast_done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* httpd_stop is called while a blocking request is in flight: it must refuse new
 * connections, answer new requests on open connections with 503, and return only after the
 * in-flight request completed with its full response. The handler is released by a prober
 * thread only once the drain has visibly begun, so a stop that does not wait either returns
 * before the release or cuts the response off. */
static void test_graceful_stop(void **state)
{
    httpd *h = start();
    bg slow = { httpd_port(h), "/slow", { 0 } };
    drain_probe p = { .port = httpd_port(h) };
    const char *ka = "GET /empty-header HTTP/1.1\r\nHost: x\r\n\r\n";
    char first[1024];
    pthread_t t, pt;
    int64_t stopped_at;
    (void)state;
    p.keep_fd = raw_connect(p.port);
    assert_true(p.keep_fd >= 0);
    assert_int_equal(send(p.keep_fd, ka, strlen(ka), MSG_NOSIGNAL), (ssize_t)strlen(ka));
    raw_read_response(p.keep_fd, first, sizeof(first));
    assert_non_null(strstr(first, "HTTP/1.1 200"));
    fast_done = slow_started = 0;
    pthread_create(&t, NULL, bg_request, &slow);
    pthread_mutex_lock(&mu);
    while (!slow_started)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    pthread_create(&pt, NULL, probe_drain, &p);
    httpd_stop(h); /* the slow request is still blocked in its handler here */
    stopped_at = ml_now_ms();
    pthread_join(pt, NULL);
    pthread_join(t, NULL);
    close(p.keep_fd);
    assert_true(p.refused);
    assert_non_null(strstr(p.on_keep, "HTTP/1.1 503"));
    assert_true(p.released_at > 0 && p.released_at <= stopped_at);
    assert_int_equal(slow.r.status, 200);
    assert_non_null(slow.r.body.data);
    assert_string_equal(slow.r.body.data, "slow");
    reply_free(&slow.r);
}

/* Sequential blocking requests keep landing on the worker that was idle last, so a quiet
 * server touches one or two of its workers, not all of them in turn. */
static void test_workers_reused_lifo(void **state)
{
    httpd_config cfg = { .service = "test", .bind_addr = "127.0.0.1", .threads = 1, .workers = 8 };
    char err[128];
    httpd *h = httpd_start(&cfg, routes, ML_ARRAY_LEN(routes), err, sizeof(err));
    reply r;
    (void)state;
    assert_non_null(h);
    atomic_store(&nseen, 0);
    for (int i = 0; i < 40; i++) {
        request(httpd_port(h), "GET", "/who", NULL, NULL, 0, &r);
        assert_int_equal(r.status, 200);
        reply_free(&r);
        /* The worker returns to the idle stack just after the response left; on a loaded
         * machine the next request could arrive first and take another worker. */
        ml_sleep_ms(5);
    }
    assert_true(atomic_load(&nseen) <= 2);
    httpd_stop(h);
}

/* External mode: two loops of the test's own run the daemons; inline, blocking and
 * asynchronous routes all answer, and draining then stopping is clean. */
static void test_external_loops(void **state)
{
    httpd_config cfg = { .service = "test", .bind_addr = "127.0.0.1", .threads = 2, .workers = 2,
                         .external = true };
    char err[128];
    httpd *h = httpd_start(&cfg, routes, ML_ARRAY_LEN(routes), err, sizeof(err));
    ext_loop loops[2];
    reply r;
    (void)state;
    assert_non_null(h);
    assert_int_equal(httpd_loops(h), 2);
    for (unsigned i = 0; i < 2; i++) {
        loops[i] = (ext_loop){ .h = h, .idx = i };
        pthread_create(&loops[i].t, NULL, ext_loop_main, &loops[i]);
    }
    for (int i = 0; i < 10; i++) { /* connections spread over both daemons */
        request(httpd_port(h), "GET", "/functions/x", NULL, NULL, 0, &r);
        assert_int_equal(r.status, 201);
        reply_free(&r);
        request(httpd_port(h), "POST", "/json", NULL, "{\"k\":1}", 0, &r);
        assert_int_equal(r.status, 200);
        reply_free(&r);
        request(httpd_port(h), "GET", "/async", NULL, NULL, 0, &r);
        assert_int_equal(r.status, 202);
        reply_free(&r);
    }
    assert_true(httpd_drain(h));
    for (unsigned i = 0; i < 2; i++) {
        atomic_store(&loops[i].stop, true);
        pthread_join(loops[i].t, NULL);
    }
    httpd_stop(h);
}

static void test_health_and_metrics(void **state)
{
    httpd *h;
    reply r;
    (void)state;
    memset(&hs, 0, sizeof(hs));
    hs.cache_ms = 1;
    health_add(&hs, "postgres", check_dep, NULL, true);
    h = start();
    dep_up = 1;
    request(httpd_port(h), "GET", "/health", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "\"status\":\"ok\""));
    reply_free(&r);
    dep_up = 0;
    ml_sleep_ms(5);
    request(httpd_port(h), "GET", "/health", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body.data, "connection refused"));
    assert_non_null(strstr(r.body.data, "\"status\":\"unavailable\""));
    reply_free(&r);
    httpd_stop(h);
    assert_true(metric_value(metrics_counter(reg, "minilambda_unused_total", "", NULL), NULL) == 0);
    {
        ml_buf out = { 0 };
        metrics_render(reg, &out);
        /* route templates, never raw paths, label the series */
        assert_non_null(strstr(out.data, "route=\"/functions/{fn}/invoke\",method=\"POST\",code=\"201\""));
        assert_non_null(strstr(out.data, "route=\"unmatched\",method=\"GET\",code=\"404\""));
        assert_null(strstr(out.data, "my-fn"));
        ml_buf_free(&out);
    }
}


/* ---- strict input (docs/strict-input.md) ---- */

/* The response to one raw request (head and body in req). */
static void raw_one(uint16_t port, const char *req, char *out, size_t outlen)
{
    int fd = raw_connect(port);

    assert_true(fd >= 0);
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    raw_read_response(fd, out, outlen);
    close(fd);
}

/* Asserts a JSON error answer: status line, code, X-Request-Id, and Connection: close when
 * closes. */
static void assert_json_error(const char *out, const char *status_line, const char *code, bool closes)
{
    char want[96];

    if (strncmp(out, status_line, strlen(status_line)) != 0)
        fail_msg("want '%s', got: %s", status_line, out);
    snprintf(want, sizeof(want), "\"code\":\"%s\"", code);
    assert_non_null(strstr(out, want));
    assert_non_null(strcasestr(out, "\r\nX-Request-Id: "));
    assert_non_null(strcasestr(out, "\r\nContent-Type: application/json"));
    if (closes)
        assert_non_null(strcasestr(out, "\r\nConnection: close"));
}

/* Framing MHD would accept or hang on: JSON answer at once, connection closed. */
static void test_strict_framing(void **state)
{
    httpd *h = start();
    char out[4096];
    (void)state;
    raw_one(httpd_port(h), "POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            out, sizeof(out));
    assert_json_error(out, "HTTP/1.1 400", "invalid_framing", true);
    raw_one(httpd_port(h), "POST /json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            out, sizeof(out));
    assert_json_error(out, "HTTP/1.1 501", "not_implemented", true);
    raw_one(httpd_port(h), "POST /json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}", out, sizeof(out));
    assert_json_error(out, "HTTP/1.1 501", "not_implemented", true);
    raw_one(httpd_port(h), "POST /json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
            "2\r\n{}\r\n0\r\n\r\n", out, sizeof(out));
    assert_json_error(out, "HTTP/1.1 400", "invalid_framing", true);
    /* the same value twice is one length (RFC 9110 8.6) */
    raw_one(httpd_port(h), "POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            out, sizeof(out));
    assert_true(strncmp(out, "HTTP/1.1 200", 12) == 0);
    httpd_stop(h);
}

/* A chunked body far over the cap (no length to answer from) still gets its 413 JSON. */
static void test_chunked_413(void **state)
{
    httpd *h = start();
    size_t chunk = 1 << 20, total = 40u << 20;
    char *body = malloc(total + (total / chunk) * 16 + 16), out[2048], *w = body;
    (void)state;
    assert_non_null(body);
    for (size_t sent = 0; sent < total; sent += chunk) {
        w += snprintf(w, 16, "%zx\r\n", chunk);
        memset(w, ' ', chunk);
        w += chunk;
        memcpy(w, "\r\n", 2);
        w += 2;
    }
    memcpy(w, "0\r\n\r\n", 5);
    w += 5;
    assert_true(raw_exchange_body(httpd_port(h), "POST /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n", body, (size_t)(w - body), out, sizeof(out)));
    assert_json_error(out, "HTTP/1.1 413", "payload_too_large", false);
    free(body);
    httpd_stop(h);
}

/* NUL and invalid UTF-8 in the path or query: 400, never the cut name. */
static void test_strict_path_and_query(void **state)
{
    httpd *h = start();
    char out[4096];
    (void)state;
    raw_one(httpd_port(h), "GET /functions/hello%00x HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out));
    assert_json_error(out, "HTTP/1.1 400", "invalid_path", false);
    assert_null(strstr(out, "\"fn\""));
    raw_one(httpd_port(h), "GET /functions/hello%FFx HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out));
    assert_json_error(out, "HTTP/1.1 400", "invalid_path", false);
    raw_one(httpd_port(h), "GET /functions/a%0Ab HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out));
    assert_json_error(out, "HTTP/1.1 400", "invalid_path", false);
    raw_one(httpd_port(h), "GET /functions/ok?q=a%00b HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out));
    assert_json_error(out, "HTTP/1.1 400", "invalid_query", false);
    /* valid escapes still decode: UTF-8 é and a space */
    raw_one(httpd_port(h), "GET /functions/h%C3%A9%20y?q=%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out));
    assert_true(strncmp(out, "HTTP/1.1 201", 12) == 0);
    assert_non_null(strstr(out, "\"fn\":\"h\xC3\xA9 y\""));
    httpd_stop(h);
}

/* httpd_body_json is strict: one value, UTF-8, no \u0000, no duplicate keys. */
static void test_strict_json_body(void **state)
{
    httpd *h = start();
    static const char *bad[] = {
        "{\"a\":\"x\\u0000y\"}", "{\"a\\u0000\":1}", "{\"a\":1,\"a\":2}", "{\"o\":{\"k\":1,\"k\":1}}",
        "{} x", "{}{}", "{\"a\":\"\xff\"}", "[1,]", "",
    };
    reply r;
    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(bad); i++) {
        request(httpd_port(h), "POST", "/json", "Content-Type: application/json", bad[i], 0, &r);
        if (r.status != 400 || !strstr(r.body.data ? r.body.data : "", "invalid_json"))
            fail_msg("body #%zu '%s': %ld %s", i, bad[i], r.status, r.body.data);
        reply_free(&r);
    }
    request(httpd_port(h), "POST", "/json", "Content-Type: application/json",
            "{\"a\":\"\\u00e9\",\"b\":{\"a\":1},\"c\":[{\"a\":1},{\"a\":2}]}", 0, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    httpd_stop(h);
}

/* Any method on /any/{x}/{rest+}, except GET which has its own route: the exact method
 * wins whatever the order; the handler shows the route, the rest, the raw query, every
 * header and a copied content type. */
static void header_line(void *ud, const char *name, const char *value)
{
    ml_buf_printf(ud, "%s=%s;", name, value);
}

static httpd_result h_any(httpd_req *req, httpd_resp *resp, void *ud)
{
    ml_buf hdrs = { 0 };
    char ct[64];
    (void)ud;
    httpd_header_each(req, header_line, &hdrs);
    snprintf(ct, sizeof(ct), "text/x-%s", httpd_method(req));
    assert_int_equal(httpd_resp_content_type(resp, ct), ML_OK);
    ml_buf_reset(&resp->body);
    ml_buf_printf(&resp->body, "any %s rest=%s raw=%s hdrs=%s", httpd_method(req),
                  httpd_param(req, "rest") ? httpd_param(req, "rest") : "-", httpd_raw_query(req),
                  ml_buf_cstr(&hdrs));
    for (int i = 0; i < 40; i++) /* more than the old 16-header table */
        assert_int_equal(httpd_resp_header(resp, "Set-Cookie", "c=1"), ML_OK);
    ml_buf_free(&hdrs);
    return HTTPD_DONE;
}

static httpd_result h_any_get(httpd_req *req, httpd_resp *resp, void *ud)
{
    (void)ud;
    httpd_resp_text(resp, 200, "text/plain", "exact GET");
    ML_UNUSED(req);
    return HTTPD_DONE;
}

static void test_any_method_and_rest(void **state)
{
    static const httpd_route rts[] = {
        { "*", "/any/{x}", h_any, NULL, 0, false },
        { "*", "/any/{x}/{rest+}", h_any, NULL, 0, false },
        { "GET", "/any/{x}", h_any_get, NULL, 0, false },
    };
    httpd_config cfg = { .service = "test", .bind_addr = "127.0.0.1", .threads = 1, .metrics = reg };
    char err[128];
    httpd *h = httpd_start(&cfg, rts, ML_ARRAY_LEN(rts), err, sizeof(err));
    reply r;
    (void)state;
    assert_non_null(h);
    request(httpd_port(h), "GET", "/any/a", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "exact GET");
    reply_free(&r);
    request(httpd_port(h), "DELETE", "/any/a?b=%2C+c&b=2&&x", "X-Two: 2", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "any DELETE rest=- raw=b=%2C+c&b=2&&x hdrs="));
    assert_non_null(strstr(r.body.data, "X-Two=2;"));
    assert_non_null(strstr(r.headers.data, "Content-Type: text/x-DELETE"));
    assert_non_null(strstr(r.headers.data, "Set-Cookie: c=1"));
    reply_free(&r);
    request(httpd_port(h), "PATCH", "/any/a/b/c%2Fd/e", NULL, "x", 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "any PATCH rest=b/c/d/e raw= "));
    reply_free(&r);
    request(httpd_port(h), "GET", "/any/a/b", NULL, NULL, 0, &r); /* no GET rest route: any */
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "any GET rest=b "));
    reply_free(&r);
    request(httpd_port(h), "PUT", "/any/a/b/", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 404);
    reply_free(&r);
    request(httpd_port(h), "PUT", "/any", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 404);
    reply_free(&r);
    httpd_stop(h);
}

static void test_match(void **state)
{
    const char *names[HTTPD_MAX_PARAMS];
    char *values[HTTPD_MAX_PARAMS];
    size_t n;
    (void)state;
    assert_int_equal(httpd_match("/a/{x}/b/{y}", "/a/1/b/2", names, values, &n), ML_OK);
    assert_int_equal(n, 2);
    assert_string_equal(values[0], "1");
    assert_string_equal(values[1], "2");
    free(values[0]);
    free(values[1]);
    assert_int_equal(httpd_match("/a/{x}", "/a/1/extra", names, values, &n), ML_ERR);
    assert_int_equal(httpd_match("/a/{x}", "/a", names, values, &n), ML_ERR);
    assert_int_equal(httpd_match("/a", "/a/", names, values, &n), ML_ERR);
    assert_int_equal(httpd_match("/health", "/health", names, values, &n), ML_OK);
    assert_int_equal(n, 0);
    /* {name+}: the rest of the path, one or more segments */
    assert_int_equal(httpd_match("/fn/{fn}/{proxy+}", "/fn/f/a/b/c", names, values, &n), ML_OK);
    assert_int_equal(n, 2);
    assert_string_equal(values[0], "f");
    assert_string_equal(values[1], "a/b/c");
    free(values[0]);
    free(values[1]);
    assert_int_equal(httpd_match("/fn/{fn}/{proxy+}", "/fn/f/a", names, values, &n), ML_OK);
    assert_string_equal(values[1], "a");
    free(values[0]);
    free(values[1]);
    assert_int_equal(httpd_match("/fn/{fn}/{proxy+}", "/fn/f", names, values, &n), ML_ERR);
    assert_int_equal(httpd_match("/fn/{fn}/{proxy+}", "/fn/f/", names, values, &n), ML_ERR);
    assert_int_equal(httpd_match("/fn/{fn}/{proxy+}", "/fn/f/a//b", names, values, &n), ML_ERR);
    assert_int_equal(httpd_match("/fn/{fn}/{proxy+}", "/fn/f/a/", names, values, &n), ML_ERR);
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    reg = metrics_new();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    metrics_free(reg);
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strict_framing),
        cmocka_unit_test(test_chunked_413),
        cmocka_unit_test(test_strict_path_and_query),
        cmocka_unit_test(test_strict_json_body),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_any_method_and_rest),
        cmocka_unit_test(test_routes_params_and_request_id),
        cmocka_unit_test(test_404_405_json_errors),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_body_cap_read_before_413),
        cmocka_unit_test(test_body_cap_answered_at_once),
        cmocka_unit_test(test_shape_reject_and_empty_header),
        cmocka_unit_test(test_blocking_routes_leave_event_loop_free),
        cmocka_unit_test(test_async_completion),
        cmocka_unit_test(test_graceful_stop),
        cmocka_unit_test(test_workers_reused_lifo),
        cmocka_unit_test(test_external_loops),
        cmocka_unit_test(test_health_and_metrics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
