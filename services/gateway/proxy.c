/* proxy.c — curl multi + epoll event loops for upstream transfers (see proxy.h). */
#include "proxy.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "headers.h"
#include "health.h"
#include "intauth.h"
#include "invstream.h"
#include "log.h"

#define MAX_EVENTS 256
#define MAX_FREE_EASY 256
#define MAX_RESP_HEADER_BYTES (64u * 1024u)

/* epoll data.u64 of the non-curl descriptors; curl sockets carry their fd (< 2^31). */
#define TAG_WAKE (1ULL << 40)
#define TAG_REDIS (1ULL << 41)
#define TAG_HTTP (1ULL << 42)
#define TAG_HTTP_WAKE (1ULL << 43)

struct gw_loop {
    pthread_t thread;
    gw_proxy *proxy;
    httpd *http;                 /* runs daemon http_idx of this server, or NULL */
    unsigned http_idx;
    int http_wake;
    bool local_tasks;            /* tasks queued by this loop's own thread: do not sleep */
    bool inited, started;
    bool closed;                 /* loop thread gone: new work ends at once */
    bool env_proxy;              /* a proxy variable is set: let curl read the environment */
    atomic_bool check_paused;    /* a relayed stream's client caught up: see unpause_ready */
    CURLM *multi;
    gw_rl *rl;
    gw_limiter *limiter;
    int epfd, evfd;
    int64_t deadline_ms;         /* curl's timer; -1 = none. Loop thread only. */
    pthread_mutex_t lock;        /* guards queue and stopping */
    gw_task *queue_head, *queue_tail;
    bool stopping;
    gw_xfer *active;             /* transfers in the multi handle (loop thread only) */
    CURL *free_easy[MAX_FREE_EASY];
    size_t nfree;
    uint8_t *fds;                /* epoll state of curl's sockets by fd (FD_*); loop thread only */
    size_t nfds;
    gw_timer *timers;            /* armed timers, earliest first (loop thread only) */
    gw_timer *timers_tail;       /* the latest: deadlines mostly arrive in order, O(1) append */
    void *user;                  /* gw_loop_user */
};

/* A curl socket stays in the epoll set after curl lets go of it (an idle keep-alive
 * connection): its next request then needs no epoll_ctl at all. Events on a parked socket
 * (the upstream closed it) remove it for good. */
enum { FD_UNREGISTERED = 0, FD_IN = 1, FD_OUT = 2, FD_ACTIVE = 4 };

typedef gw_loop loop;

static _Thread_local loop *self; /* the loop this thread runs, if any */

struct gw_proxy {
    loop *loops;
    unsigned n;
    atomic_uint rr;
};

bool gw_xfer_upstream_ok(gw_xfer_result r, bool overloaded)
{
    if (r != GW_XFER_OK)
        return r == GW_XFER_TOO_LARGE || r == GW_XFER_SHUTDOWN; /* not the instance's fault */
    return !overloaded;
}

bool gw_xfer_overloaded(const ml_buf *resp_headers)
{
    const char *v = gw_hdr_pairs_get(resp_headers, HEALTH_OVERLOAD_HEADER);

    return v && strcmp(v, "1") == 0;
}

bool gw_xfer_stream_type(const char *ct)
{
    static const char *const types[] = { "text/event-stream", "application/x-ndjson" };
    size_t len = strcspn(ct, "; \t");

    for (size_t i = 0; i < ML_ARRAY_LEN(types); i++) {
        if (len == strlen(types[i]) && strncasecmp(ct, types[i], len) == 0)
            return true;
    }
    return false;
}

gw_xfer *gw_xfer_new(void)
{
    return calloc(1, sizeof(gw_xfer));
}

void gw_xfer_free(gw_xfer *x)
{
    if (!x)
        return;
    if (x->stream)
        httpd_stream_close(x->stream);
    free(x->path);
    curl_slist_free_all(x->headers);
    ml_buf_free(&x->resp_headers);
    ml_buf_free(&x->resp_body);
    free(x);
}

/* ---- relayed streams ---- */

static void wake(loop *l);

/* httpd_stream_notify_fn (a server thread, the stream's lock held): the client has read
 * down to the low water mark, or left. The loop unpauses the transfer (unpause_ready). */
static void on_client_caught_up(void *ud)
{
    gw_xfer *x = ud;

    atomic_store(&x->unpause, true);
    atomic_store(&x->loop->check_paused, true);
    wake(x->loop);
}

/* Loop thread, header callback: the final response's headers are in. A stream goes to the
 * client from now on, paced by it, with timeout_ms as an idle timeout (a follow stream
 * lasts as long as it keeps talking: docs/logs.md's keepalives come every 15 s). */
static void maybe_relay(gw_xfer *x)
{
    const char *ct = gw_hdr_pairs_get(&x->resp_headers, "Content-Type");
    long status = 0, idle_s = x->timeout_ms / 1000;

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || !ct || !gw_xfer_stream_type(ct))
        return;
    x->status = status;
    if (!(x->stream = x->on_stream(x)))
        return;
    x->streamed = true;
    /* plain value options: curl reads them afresh at every check */
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, 0L);
    curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_TIME, idle_s > 0 ? idle_s : 1L);
    httpd_stream_notify(x->stream, GW_STREAM_HIGH_WATER / 2, on_client_caught_up, x);
}

/* Whether a Content-Type is INVSTREAM_CONTENT_TYPE, parameters and case aside. */
static bool invstream_type(const char *ct)
{
    size_t len = strcspn(ct, "; \t");

    return len == strlen(INVSTREAM_CONTENT_TYPE) && strncasecmp(ct, INVSTREAM_CONTENT_TYPE, len) == 0;
}

/* Loop thread, header callback: a final response framed as an invstream goes to on_chunk as
 * it arrives, with timeout_ms bounding the silence between bytes (as for a relayed stream). */
static void maybe_chunk(gw_xfer *x)
{
    const char *ct = gw_hdr_pairs_get(&x->resp_headers, "Content-Type");
    long status = 0, idle_s = x->timeout_ms / 1000;

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || !ct || !invstream_type(ct))
        return;
    x->status = status;
    x->chunked = true;
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, 0L);
    curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_TIME, idle_s > 0 ? idle_s : 1L);
}

/* The write callback's half for a relayed stream: pass the chunk on, or pause (curl keeps
 * it and offers it again after unpausing), or abort once the client has gone. */
/* Whether the client of s is too far behind: the transfer then pauses until it catches up. */
static bool lagging(gw_xfer *x, httpd_stream *s)
{
    atomic_store(&x->unpause, false); /* before looking: a catch-up after this is seen */
    if (httpd_stream_gone(s) || httpd_stream_pending(s) < GW_STREAM_HIGH_WATER)
        return false;
    x->paused = true;
    return true;
}

static size_t relay(gw_xfer *x, const char *p, size_t n)
{
    if (lagging(x, x->stream))
        return CURL_WRITEFUNC_PAUSE;
    if (httpd_stream_write(x->stream, p, n) != ML_OK) {
        ml_strlcpy(x->error, "the client went away", sizeof(x->error));
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    return n;
}

/* Loop thread: unpauses the relayed transfers whose clients caught up or left. */
static void unpause_ready(loop *l)
{
    if (!atomic_exchange(&l->check_paused, false))
        return;
    for (gw_xfer *x = l->active; x; x = x->next) {
        if (x->paused && atomic_exchange(&x->unpause, false)) {
            x->paused = false;
            curl_easy_pause(x->easy, CURLPAUSE_CONT); /* may call relay() at once */
        }
    }
}

void gw_xfer_pace(gw_xfer *x, httpd_stream *s)
{
    x->pace = s;
    if (s)
        httpd_stream_notify(s, GW_STREAM_HIGH_WATER / 2, on_client_caught_up, x);
}

/* ---- curl callbacks ---- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    gw_xfer *x = ud;
    size_t n = size * nmemb;

    if (x->stream)
        return relay(x, ptr, n);
    if (x->chunked && n && x->pace && lagging(x, x->pace))
        return CURL_WRITEFUNC_PAUSE; /* offered again once the client caught up */
    if (x->chunked) /* 0 aborts with CURLE_WRITE_ERROR; on_done names the consumer */
        return n == 0 || x->on_chunk(x, ptr, n) == ML_OK ? n : 0;
    if (ml_buf_append(&x->resp_body, ptr, n) != ML_OK) {
        x->too_large = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    gw_xfer *x = ud;
    size_t n = size * nmemb;

    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
        ml_buf_reset(&x->resp_headers); /* a new (final or interim 1xx) response begins */
        return n;
    }
    if ((n == 2 && ptr[0] == '\r') || (n == 1 && ptr[0] == '\n')) {
        /* the end of a response's headers */
        if (x->on_chunk && !x->chunked)
            maybe_chunk(x);
        if (x->on_stream && !x->stream && !x->chunked)
            maybe_relay(x);
        return n;
    }
    return gw_hdr_capture_line(&x->resp_headers, ptr, n) == ML_OK ? n : 0;
}

/* The state slot of fd, grown on demand; NULL when out of memory. */
static uint8_t *fd_slot(loop *l, curl_socket_t s)
{
    size_t want = (size_t)s + 1, n = l->nfds ? l->nfds : 64;
    uint8_t *p;

    if (want <= l->nfds)
        return &l->fds[s];
    while (n < want)
        n *= 2;
    if (!(p = realloc(l->fds, n)))
        return NULL;
    memset(p + l->nfds, 0, n - l->nfds);
    l->fds = p;
    l->nfds = n;
    return &l->fds[s];
}

/* A new curl socket: whatever the fd number held before is gone from epoll with its close. */
static int on_sockopt(void *ud, curl_socket_t s, curlsocktype purpose)
{
    uint8_t *st = fd_slot(ud, s);

    ML_UNUSED(purpose);
    if (st)
        *st = FD_UNREGISTERED;
    return st ? CURL_SOCKOPT_OK : CURL_SOCKOPT_ERROR;
}

static void fd_forget(loop *l, curl_socket_t s)
{
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, s, NULL);
    l->fds[s] = FD_UNREGISTERED;
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    loop *l = userp;
    struct epoll_event ev = { 0 };
    uint8_t *st = fd_slot(l, s), want;

    ML_UNUSED(e);
    ML_UNUSED(socketp);
    if (!st)
        return -1;
    if (what == CURL_POLL_REMOVE) {
        *st &= (uint8_t)~FD_ACTIVE; /* parked; see FD_* */
        return 0;
    }
    want = (uint8_t)(((what & CURL_POLL_IN) ? FD_IN : 0) | ((what & CURL_POLL_OUT) ? FD_OUT : 0));
    ev.events = ((want & FD_IN) ? EPOLLIN : 0) | ((want & FD_OUT) ? EPOLLOUT : 0);
    ev.data.u64 = (uint64_t)s;
    if (*st != FD_UNREGISTERED && (*st & (FD_IN | FD_OUT)) == want) {
        *st = want | FD_ACTIVE;
        return 0;
    }
    if ((*st == FD_UNREGISTERED || epoll_ctl(l->epfd, EPOLL_CTL_MOD, s, &ev) != 0) &&
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, s, &ev) != 0) {
        ml_log_warn("proxy: epoll_ctl(ADD, %d): %s", (int)s, strerror(errno));
        return -1;
    }
    *st = want | FD_ACTIVE;
    return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
    loop *l = userp;

    ML_UNUSED(m);
    l->deadline_ms = timeout_ms < 0 ? -1 : ml_now_ms() + timeout_ms;
    return 0;
}

/* ---- transfers ---- */

static void active_add(loop *l, gw_xfer *x)
{
    x->next = l->active;
    l->active = x;
}

static void active_remove(loop *l, gw_xfer *x)
{
    for (gw_xfer **pp = &l->active; *pp; pp = &(*pp)->next) {
        if (*pp == x) {
            *pp = x->next;
            x->next = NULL;
            return;
        }
    }
}

/* Whether any variable libcurl consults for a proxy is set. Read once: the environment does
 * not change after start, and curl would otherwise getenv() them on every transfer. */
static bool env_has_proxy(void)
{
    static const char *const names[] = { "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy",
                                          "ALL_PROXY", "no_proxy", "NO_PROXY" };

    for (size_t i = 0; i < ML_ARRAY_LEN(names); i++) {
        if (getenv(names[i]))
            return true;
    }
    return false;
}

/* The options every transfer of this loop shares: set once per easy handle, which keeps
 * them (easy_put does not reset it), instead of once per transfer. */
static int configure_fixed(loop *l, CURL *e)
{
    if (curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, on_sockopt) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, l) != CURLE_OK)
        return ML_ERR;
    /* no proxy in the environment: say so, which spares curl its getenv() calls */
    if (!l->env_proxy && (curl_easy_setopt(e, CURLOPT_PROXY, "") != CURLE_OK ||
                          curl_easy_setopt(e, CURLOPT_NOPROXY, "") != CURLE_OK))
        return ML_ERR;
    return ML_OK;
}

/* A handle from the loop's free list, or a new one (NULL when out of memory). The caller
 * owns it until easy_put. */
static CURL *easy_get(loop *l)
{
    CURL *e;

    if (l->nfree)
        return l->free_easy[--l->nfree];
    if ((e = curl_easy_init()) && configure_fixed(l, e) != ML_OK) {
        curl_easy_cleanup(e);
        e = NULL;
    }
    return e;
}

/* Takes e back. Its fixed options stay; the pointers into the finished transfer go, so the
 * idle handle refers to nothing freed; configure sets them (and the rest) again. */
static void easy_put(loop *l, CURL *e)
{
    if (l->nfree < MAX_FREE_EASY &&
        curl_easy_setopt(e, CURLOPT_PRIVATE, NULL) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL) == CURLE_OK) {
        l->free_easy[l->nfree++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

static int set_method(CURL *e, const gw_xfer *x)
{
    CURLcode rc = CURLE_OK;

    /* a reused handle may carry the last transfer's custom method */
    if (strcmp(x->method, "GET") == 0)
        return curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL) == CURLE_OK &&
                       curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK
                   ? ML_OK
                   : ML_ERR;
    rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(x->method, "POST") != 0 ? x->method : NULL);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body ? x->body : "");
    return rc == CURLE_OK ? ML_OK : ML_ERR;
}

/* Points the easy handle at x's current instance. */
static int configure(CURL *e, gw_xfer *x)
{
    ml_buf url = { 0 };
    int rc = ML_ERR;

    if (ml_buf_printf(&url, "%s%s", x->inst->base_url, x->path) != ML_OK)
        goto out;
    if (curl_easy_setopt(e, CURLOPT_URL, url.data) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PRIVATE, x) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HEADERDATA, x) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->error) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, x->timeout_ms) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, x->connect_timeout_ms) != CURLE_OK ||
        /* a relayed or chunked stream before on this handle set an idle limit: none here */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 0L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 0L) != CURLE_OK ||
        set_method(e, x) != ML_OK)
        goto out;
    rc = ML_OK;
out:
    ml_buf_free(&url);
    return rc;
}

static void finish(loop *l, gw_xfer *x, gw_xfer_result result)
{
    x->result = result;
    x->paused = false;
    if (x->stream) { /* the client's body ends after what it has been sent */
        httpd_stream_close(x->stream);
        x->stream = NULL;
    }
    if (x->easy) {
        easy_put(l, x->easy);
        x->easy = NULL;
    }
    x->done(x);
}

/* Every upstream is a sibling behind the internal credential (intauth.h): the line goes on
 * x's own header list once, before its first attempt. ML_ERR when out of memory. */
static int add_internal_auth(gw_xfer *x)
{
    const char *line = ml_intauth_header_line();
    struct curl_slist *n;

    if (!line || x->attempts != 1)
        return ML_OK;
    if (!(n = curl_slist_append(x->headers, line)))
        return ML_ERR;
    x->headers = n;
    return ML_OK;
}

/* Starts (or restarts, after a failed connect) x on its instance. */
static void start(loop *l, gw_xfer *x)
{
    x->loop = l;
    if (l->closed) {
        gw_pool_report(x->inst, x->admit, true, ml_now_ms()); /* give a probe slot back */
        finish(l, x, GW_XFER_SHUTDOWN);
        return;
    }
    x->attempts++;
    x->error[0] = '\0';
    x->too_large = false;
    x->chunked = false;
    x->status = 0;
    ml_buf_free(&x->resp_headers);
    ml_buf_free(&x->resp_body);
    ml_buf_init(&x->resp_headers, MAX_RESP_HEADER_BYTES);
    ml_buf_init(&x->resp_body, x->max_response);
    if (!x->easy)
        x->easy = easy_get(l);
    if (!x->easy || add_internal_auth(x) != ML_OK || configure(x->easy, x) != ML_OK ||
        curl_multi_add_handle(l->multi, x->easy) != CURLM_OK) {
        ml_strlcpy(x->error, "cannot set up the upstream request", sizeof(x->error));
        gw_pool_report(x->inst, x->admit, true, ml_now_ms()); /* not the instance's fault */
        finish(l, x, GW_XFER_TRANSPORT);
        return;
    }
    active_add(l, x);
}

static gw_xfer_result classify(gw_xfer *x, CURLcode code, bool *request_sent)
{
    long sent = 0;

    curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent);
    curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &x->new_connections);
    *request_sent = sent > 0;
    if (code == CURLE_OK) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
        return GW_XFER_OK;
    }
    if (code == CURLE_WRITE_ERROR && x->too_large)
        return GW_XFER_TOO_LARGE;
    if (!*request_sent && (code == CURLE_COULDNT_CONNECT || code == CURLE_OPERATION_TIMEDOUT ||
                           code == CURLE_COULDNT_RESOLVE_HOST))
        return GW_XFER_CONNECT;
    return code == CURLE_OPERATION_TIMEDOUT ? GW_XFER_TIMEOUT : GW_XFER_TRANSPORT;
}

/* A transfer left the multi handle: retry a failed connect elsewhere, or complete it. */
static void on_done(loop *l, CURL *e, CURLcode code)
{
    gw_xfer *x = NULL;
    gw_xfer_result r;
    bool sent;
    int64_t now = ml_now_ms();

    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    curl_multi_remove_handle(l->multi, e);
    active_remove(l, x);
    r = classify(x, code, &sent);
    if (x->chunked && code == CURLE_WRITE_ERROR) /* only on_chunk's ML_ERR fails a chunk write */
        ml_strlcpy(x->error, "aborted by the consumer", sizeof(x->error));
    /* a relayed or consumed stream's end (its client left, it fell silent) says nothing
     * about the instance, which did answer */
    gw_pool_report(x->inst, x->admit,
                   x->streamed || x->chunked ||
                       gw_xfer_upstream_ok(r, r == GW_XFER_OK && gw_xfer_overloaded(&x->resp_headers)),
                   now);
    if (r == GW_XFER_CONNECT && (size_t)x->attempts < x->pool->n) {
        /* nothing reached the upstream, so another instance may safely take it */
        gw_instance *next = gw_pool_pick(x->pool, x->cap, x->inst, now, &x->admit);
        if (next) {
            ml_log_warn("proxy: %s unreachable (%s), retrying on %s", x->inst->base_url,
                        x->error, next->base_url);
            x->inst = next;
            start(l, x);
            return;
        }
    }
    finish(l, x, r);
}

static void drain_done(loop *l)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(l->multi, &left))) {
        if (m->msg == CURLMSG_DONE)
            on_done(l, m->easy_handle, m->data.result);
    }
}

/* Detaches the submitted tasks; *stopping receives the loop's stop flag. */
static gw_task *pop_queue(loop *l, bool *stopping)
{
    gw_task *q;

    pthread_mutex_lock(&l->lock);
    q = l->queue_head;
    l->queue_head = l->queue_tail = NULL;
    *stopping = l->stopping;
    pthread_mutex_unlock(&l->lock);
    return q;
}

static void run_tasks(loop *l, gw_task *q, bool cancelled)
{
    while (q) {
        gw_task *next = q->next;
        q->next = NULL;
        q->run(l, q, cancelled);
        q = next;
    }
}

/* Runs the submitted tasks (cancelled when stopping); false once the loop must stop. */
static bool take_queue(loop *l)
{
    bool stopping = false;
    gw_task *q = pop_queue(l, &stopping);

    run_tasks(l, q, stopping);
    return !stopping;
}

static void drain_wake(int evfd)
{
    uint64_t v;

    if (read(evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        ml_log_warn("proxy: eventfd read: %s", strerror(errno));
}

/* ---- timers ---- */

/* Unlinks t from the armed list (it must be on it). */
static void timer_unlink(loop *l, gw_timer *t)
{
    gw_timer *prev = NULL;

    for (gw_timer *c = l->timers; c; prev = c, c = c->next) {
        if (c != t)
            continue;
        if (prev)
            prev->next = t->next;
        else
            l->timers = t->next;
        if (l->timers_tail == t)
            l->timers_tail = prev;
        break;
    }
    t->next = NULL;
    t->armed = false;
}

void gw_loop_timer_set(gw_loop *l, gw_timer *t, int64_t at_ms)
{
    gw_timer *prev = NULL, *c;

    if (t->armed)
        timer_unlink(l, t);
    c = l->timers; /* after the unlink: t may have been the head */
    t->at_ms = at_ms;
    t->armed = true;
    if (l->timers_tail && l->timers_tail->at_ms <= at_ms) { /* the usual case: latest yet */
        l->timers_tail->next = t;
        t->next = NULL;
        l->timers_tail = t;
        return;
    }
    /* equal times keep their arming order: a timer goes after the ones already due with it */
    while (c && c->at_ms <= at_ms) {
        prev = c;
        c = c->next;
    }
    t->next = c;
    if (prev)
        prev->next = t;
    else
        l->timers = t;
    if (!c)
        l->timers_tail = t;
}

void gw_loop_timer_cancel(gw_loop *l, gw_timer *t)
{
    if (t->armed)
        timer_unlink(l, t);
}

void *gw_loop_user(gw_loop *l)
{
    return l->user;
}

void gw_loop_set_user(gw_loop *l, void *p)
{
    l->user = p;
}

/* Runs the timers due by now, earliest first: at most as many as were due on entry, so a
 * callback that re-arms a timer for a time already past cannot spin the loop (it waits for
 * the next turn). */
static void run_timers(loop *l)
{
    int64_t now = ml_now_ms();
    size_t due = 0;

    for (gw_timer *c = l->timers; c && c->at_ms <= now; c = c->next)
        due++;
    while (due-- > 0 && l->timers && l->timers->at_ms <= now) {
        gw_timer *t = l->timers;

        timer_unlink(l, t);
        t->fn(l, t, false);
    }
}

/* The proxy is stopping: every armed timer runs cancelled, once. */
static void cancel_timers(loop *l)
{
    while (l->timers) {
        gw_timer *t = l->timers;

        timer_unlink(l, t);
        t->fn(l, t, true);
    }
}

/* epoll timeout: until curl's timer, the first loop timer or the Redis connection's next
 * deadline. */
static int wait_ms(loop *l)
{
    int64_t now = ml_now_ms(), rl_due = l->rl ? gw_rl_tick(l->rl, now) : -1, due = l->deadline_ms;
    int64_t http = l->http ? httpd_loop_timeout_ms(l->http, l->http_idx) : -1, left;

    if (l->local_tasks)
        return 0;
    if (l->timers && (due < 0 || l->timers->at_ms < due))
        due = l->timers->at_ms;
    if (rl_due >= 0 && (due < 0 || rl_due < due))
        due = rl_due;
    if (http >= 0 && (due < 0 || now + http < due))
        due = now + http;
    if (due < 0)
        return -1;
    left = due - now;
    return left < 0 ? 0 : (left > 60000 ? 60000 : (int)left);
}

static void dispatch(loop *l, const struct epoll_event *ev)
{
    int flags = 0, running = 0;

    if (ev->data.u64 == TAG_WAKE) {
        drain_wake(l->evfd);
        return;
    }
    if (ev->data.u64 == TAG_HTTP_WAKE || ev->data.u64 == TAG_HTTP) {
        if (ev->data.u64 == TAG_HTTP_WAKE)
            drain_wake(l->http_wake);
        httpd_loop_run(l->http, l->http_idx);
        return;
    }
    if (ev->data.u64 == TAG_REDIS) {
        gw_rl_io(l->rl, ev->events);
        return;
    }
    if ((size_t)ev->data.u64 < l->nfds && !(l->fds[ev->data.u64] & FD_ACTIVE)) {
        fd_forget(l, (curl_socket_t)ev->data.u64); /* a parked connection closed or errored */
        return;
    }
    flags |= (ev->events & EPOLLIN) ? CURL_CSELECT_IN : 0;
    flags |= (ev->events & EPOLLOUT) ? CURL_CSELECT_OUT : 0;
    flags |= (ev->events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0;
    curl_multi_socket_action(l->multi, (curl_socket_t)ev->data.u64, flags, &running);
}

static void *loop_main(void *arg)
{
    loop *l = arg;
    struct epoll_event evs[MAX_EVENTS];
    int running = 0;
    bool go = true;

    self = l;
    while (go) {
        int n = epoll_wait(l->epfd, evs, MAX_EVENTS, wait_ms(l));

        for (int i = 0; i < n; i++)
            dispatch(l, &evs[i]);
        l->local_tasks = false;
        go = take_queue(l);
        run_timers(l);
        unpause_ready(l); /* before the timer: an unpause asks curl to run at once */
        if (l->deadline_ms >= 0 && ml_now_ms() >= l->deadline_ms) {
            l->deadline_ms = -1;
            curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        drain_done(l);
        /* responses completed above go out now; n == 0: the server's own timers */
        if (l->http && (n == 0 || httpd_loop_again(l->http, l->http_idx)))
            httpd_loop_run(l->http, l->http_idx);
        gw_rl_flush(l->rl);
    }
    return NULL;
}

/* ---- life cycle ---- */

/* Adds daemon idx of an external-mode server to l's epoll set. */
static int attach_http(loop *l, httpd *http, unsigned idx)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_HTTP };
    struct epoll_event wev = { .events = EPOLLIN, .data.u64 = TAG_HTTP_WAKE };
    int wake = -1, fd = idx < httpd_loops(http) ? httpd_loop_fd(http, idx, &wake) : -1;

    if (fd < 0 || wake < 0)
        return ML_ERR;
    l->http = http;
    l->http_idx = idx;
    l->http_wake = wake;
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 &&
                   epoll_ctl(l->epfd, EPOLL_CTL_ADD, wake, &wev) == 0
               ? ML_OK
               : ML_ERR;
}

static int loop_init(loop *l, gw_proxy *p, unsigned idx, const gw_proxy_config *cfg)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_WAKE };

    l->inited = true;
    l->deadline_ms = -1;
    l->env_proxy = env_has_proxy();
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->multi = curl_multi_init();
    l->limiter = cfg->limiter;
    l->proxy = p;
    pthread_mutex_init(&l->lock, NULL);
    if (l->epfd < 0 || l->evfd < 0 || !l->multi)
        return ML_ERR;
    if (l->limiter && !(l->rl = gw_rl_new(l->limiter, l->epfd, TAG_REDIS)))
        return ML_ERR;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) != 0 ||
        curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l) != CURLM_OK ||
        curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
        curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l) != CURLM_OK ||
        curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS,
                          cfg->max_connections > 0 ? cfg->max_connections : 1024L) != CURLM_OK)
        return ML_ERR;
    if (cfg->http && attach_http(l, cfg->http, idx) != ML_OK)
        return ML_ERR;
    if (pthread_create(&l->thread, NULL, loop_main, l) != 0)
        return ML_ERR;
    l->started = true;
    return ML_OK;
}

/* After the thread has exited: ends what is left (queued tasks cancelled, transfers with
 * GW_XFER_SHUTDOWN, pending decisions in memory), frees everything. */
static void loop_free(loop *l)
{
    bool stopping;

    if (!l->inited)
        return;
    l->closed = true;
    run_tasks(l, pop_queue(l, &stopping), true);
    gw_rl_free(l->rl);
    l->rl = NULL;
    while (l->active) {
        gw_xfer *x = l->active;
        curl_multi_remove_handle(l->multi, x->easy);
        active_remove(l, x);
        gw_pool_report(x->inst, x->admit, true, ml_now_ms());
        finish(l, x, GW_XFER_SHUTDOWN);
    }
    cancel_timers(l); /* last: ending a transfer above may have disarmed some */
    while (l->nfree)
        curl_easy_cleanup(l->free_easy[--l->nfree]);
    if (l->multi)
        curl_multi_cleanup(l->multi);
    free(l->fds);
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->evfd >= 0)
        close(l->evfd);
    pthread_mutex_destroy(&l->lock);
}

static void wake(loop *l)
{
    uint64_t one = 1;

    if (write(l->evfd, &one, sizeof(one)) < 0)
        ml_log_warn("proxy: eventfd write: %s", strerror(errno));
}

gw_proxy *gw_proxy_start(const gw_proxy_config *cfg, char *err, size_t errlen)
{
    gw_proxy *p = calloc(1, sizeof(*p));
    gw_proxy_config c = cfg ? *cfg : (gw_proxy_config){ 0 };

    if (!p)
        goto fail;
    p->n = c.threads ? c.threads : 1;
    p->loops = calloc(p->n, sizeof(loop));
    if (!p->loops)
        goto fail;
    for (unsigned i = 0; i < p->n; i++)
        p->loops[i].epfd = p->loops[i].evfd = -1;
    for (unsigned i = 0; i < p->n; i++) {
        if (loop_init(&p->loops[i], p, i, &c) != ML_OK) {
            ml_snprintf_trunc(err, errlen, "cannot start proxy loop %u: %s", i, strerror(errno));
            gw_proxy_stop(p);
            return NULL;
        }
    }
    return p;
fail:
    ml_snprintf_trunc(err, errlen, "out of memory");
    free(p);
    return NULL;
}

void gw_proxy_stop(gw_proxy *p)
{
    if (!p)
        return;
    for (unsigned i = 0; p->loops && i < p->n; i++) {
        loop *l = &p->loops[i];
        if (!l->started)
            continue;
        pthread_mutex_lock(&l->lock);
        l->stopping = true;
        pthread_mutex_unlock(&l->lock);
        wake(l);
        pthread_join(l->thread, NULL);
    }
    for (unsigned i = 0; p->loops && i < p->n; i++)
        loop_free(&p->loops[i]);
    free(p->loops);
    free(p);
}

void gw_proxy_run(gw_proxy *p, gw_task *t)
{
    bool here = self && self->proxy == p; /* runs after this loop's current batch: no wake */
    loop *l = here ? self : &p->loops[atomic_fetch_add(&p->rr, 1) % p->n];
    bool was_empty;

    t->next = NULL;
    pthread_mutex_lock(&l->lock);
    was_empty = l->queue_head == NULL;
    if (l->queue_tail)
        l->queue_tail->next = t;
    else
        l->queue_head = t;
    l->queue_tail = t;
    pthread_mutex_unlock(&l->lock);
    if (here)
        l->local_tasks = true;
    else if (was_empty)
        wake(l);
}

static void run_submitted(gw_loop *l, gw_task *t, bool cancelled)
{
    gw_xfer *x = (gw_xfer *)((char *)t - offsetof(gw_xfer, task));

    if (cancelled) {
        gw_pool_report(x->inst, x->admit, true, ml_now_ms());
        finish(l, x, GW_XFER_SHUTDOWN);
        return;
    }
    start(l, x);
}

void gw_proxy_submit(gw_proxy *p, gw_xfer *x)
{
    x->started_ms = ml_now_ms();
    x->task.run = run_submitted;
    gw_proxy_run(p, &x->task);
}

void gw_loop_start(gw_loop *l, gw_xfer *x)
{
    if (!x->started_ms)
        x->started_ms = ml_now_ms();
    start(l, x);
}

void gw_loop_limit(gw_loop *l, const char *key, gcra_limit lim, gw_limit_fn done, void *ud)
{
    gcra_result r = { true, lim.burst, lim.burst, 0, 0 };

    if (!l->limiter) {
        done(ud, &r);
        return;
    }
    if (l->closed || !l->rl) {
        gw_limiter_take_memory(l->limiter, key, lim, &r);
        done(ud, &r);
        return;
    }
    gw_rl_take(l->rl, key, lim, done, ud);
}
