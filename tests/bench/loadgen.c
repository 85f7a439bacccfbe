/* loadgen — an HTTP/1.1 load generator for latency figures (docs/benchmarks-method.md).
 *
 *   loadgen [-X M] [-H "N: v"]... [-b BODY | -B FILE] [-c N] [-R RATE] [-d S] [-w S] [-t T]
 *           [-T S] [--json] http://IPv4-or-localhost[:port]/path
 *
 * Open loop (-R): request i is due at start + i/RATE whether or not earlier ones were answered,
 * and its latency runs from that due time, so time spent queued behind a stalled server counts
 * (no coordinated omission). Closed loop (no -R): each of the N connections sends its next
 * request as soon as the previous answer arrives; only good for saturation throughput.
 *
 * One process, T threads, each an epoll loop over its own keep-alive connections (no libcurl:
 * the client must cost little next to what it measures). Sleeps are a timerfd armed 50 µs
 * before the next due time, then a busy poll of epoll for the rest, so the client stays
 * punctual without burning a core at low rates. Exit 0 when it ran (errors included), 2 on
 * bad usage, 1 when it could not start. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "hdr.h"
#include "ml.h"

#define LG_MAX_HEADERS 64
#define LG_MAX_CONNS 20000
#define LG_HEAD_MAX 8192              /* response head (status line + headers) */
#define LG_BUSY_NS INT64_C(50000)      /* busy-poll only the last 50 µs before a deadline */
#define LG_SWEEP_NS INT64_C(10000000)  /* timeouts and reconnect back-off checked every 10 ms */
#define LG_BACKOFF_NS INT64_C(10000000) /* a failed connection waits 10 ms before reconnecting */
#define LG_NS INT64_C(1000000000)
#define LG_TIMER_EV UINT64_MAX         /* epoll data of the timerfd; a connection's is gen<<32|index */

typedef struct lg_opts {
    const char *url, *method, *headers[LG_MAX_HEADERS];
    int nheaders;
    char *body; /* owned (malloc) */
    size_t body_len;
    int conns, threads;
    double rate; /* 0: closed loop */
    double duration, warmup, timeout;
    bool json, spectrum;
    struct sockaddr_in addr;
    char hostport[300], path[2048];
} lg_opts;

typedef enum { C_CLOSED, C_CONNECTING, C_IDLE, C_BUSY, C_BACKOFF } lg_cstate;
typedef enum { P_HEAD, P_BODY, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_CRLF, P_TRAILERS, P_UNTIL_CLOSE } lg_pstate;

typedef struct lg_conn {
    int fd;
    uint32_t gen;       /* bumped per socket: an event for a closed socket is ignored */
    lg_cstate st;
    bool free;          /* on the worker's free list */
    int64_t t0;         /* latency origin: the due time (open loop) or the send time */
    int64_t sent;       /* when the request went out (for the timeout) */
    int64_t freed;      /* when it last became free (for the client's own lateness) */
    int64_t retry_at;   /* C_BACKOFF: when it may connect again */
    bool in_window;     /* open loop: due inside the measured window */
    size_t woff;        /* bytes of the request written */
    lg_pstate ps;
    int status;
    bool close_after;
    int64_t remain;     /* body or chunk bytes still to skip */
    size_t hlen;        /* bytes in head (or of the current chunk-size / trailer line) */
    char head[LG_HEAD_MAX];
} lg_conn;

typedef struct lg_worker {
    const lg_opts *o;
    const char *req;
    size_t req_len;
    int id, ep, tfd, nconns, nfree;
    lg_conn *conns;
    int *freelist;
    int64_t start, win_start, win_end, armed, next_sweep;
    uint64_t next; /* open loop: this thread's next request number */
    hdr_hist *lat, *late;
    uint64_t ok, non2xx, errors, done_in_window;
    int inflight;
    char rbuf[65536];
    pthread_t th;
} lg_worker;

static pthread_barrier_t g_ready, g_go;
static int64_t g_start;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * LG_NS + ts.tv_nsec;
}

/* Open loop: the due time of this thread's request j. The threads interleave: request
 * number j*T + id of the whole run, due at start + (j*T + id)/RATE. */
static int64_t due_of(const lg_worker *w, uint64_t j)
{
    double k = (double)j * w->o->threads + w->id;
    return w->start + (int64_t)llround(k * 1e9 / w->o->rate);
}

static bool is_open(const lg_worker *w)
{
    return w->o->rate > 0;
}

static void push_free(lg_worker *w, lg_conn *c, int64_t now)
{
    if (c->free)
        return;
    c->free = true;
    c->freed = now;
    w->freelist[w->nfree++] = (int)(c - w->conns);
}

/* Counts an error for the request c carried (if it counts) and closes the connection; it
 * reconnects after a short back-off, so a refusing server is not hammered in a loop. */
static void conn_fail(lg_worker *w, lg_conn *c, int64_t now)
{
    if (c->st == C_BUSY || c->st == C_CONNECTING) {
        bool counts = is_open(w) ? c->in_window : (now >= w->win_start && now < w->win_end);
        if (counts)
            w->errors++;
        w->inflight--;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->st = C_BACKOFF;
    c->retry_at = now + LG_BACKOFF_NS;
}

/* A connection the server closed between requests: no error, reopened on next use. */
static void conn_drop_idle(lg_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->st = C_CLOSED;
}

static int conn_open(lg_worker *w, lg_conn *c)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
    int one = 1;

    c->gen++;
    ev.data.u64 = (uint64_t)c->gen << 32 | (uint64_t)(c - w->conns);

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return ML_ERR;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (const struct sockaddr *)&w->o->addr, sizeof(w->o->addr)) != 0 &&
        errno != EINPROGRESS)
        return ML_ERR;
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        return ML_ERR;
    c->st = C_CONNECTING;
    return ML_OK;
}

static void try_write(lg_worker *w, lg_conn *c, int64_t now)
{
    while (c->woff < w->req_len) {
        ssize_t n = send(c->fd, w->req + c->woff, w->req_len - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_fail(w, c, now);
            return; /* EAGAIN: EPOLLOUT (edge) resumes it */
        }
        c->woff += (size_t)n;
    }
}

/* Sends the next request on free connection c; t0 is where its latency starts. */
static void send_request(lg_worker *w, lg_conn *c, int64_t t0, bool in_window, int64_t now)
{
    c->t0 = t0;
    c->sent = now;
    c->in_window = in_window;
    c->woff = 0;
    c->ps = P_HEAD;
    c->hlen = 0;
    c->status = 0;
    c->close_after = false;
    w->inflight++;
    if (c->fd < 0) {
        if (conn_open(w, c) != ML_OK) {
            c->st = C_CONNECTING; /* so the failure counts this request */
            conn_fail(w, c, now);
        }
        return; /* the write starts when the connect completes (EPOLLOUT) */
    }
    c->st = C_BUSY;
    try_write(w, c, now);
}

/* A whole response arrived on c. */
static void complete(lg_worker *w, lg_conn *c, int64_t now)
{
    bool in_win = now >= w->win_start && now < w->win_end;
    bool counts = is_open(w) ? c->in_window : in_win;

    if (counts) {
        hdr_record(w->lat, (now - c->t0 + 500) / 1000);
        if (c->status >= 200 && c->status < 300)
            w->ok++;
        else
            w->non2xx++;
    }
    if (in_win)
        w->done_in_window++;
    w->inflight--;
    if (c->close_after)
        conn_drop_idle(c);
    else
        c->st = C_IDLE;
    if (!is_open(w) && now < w->win_end) { /* closed loop: the next one at once */
        send_request(w, c, now, false, now);
        return;
    }
    push_free(w, c, now);
}

/* Parses the status line and headers in c->head[0..len); sets status, body mode. */
static int parse_head(lg_worker *w, lg_conn *c, size_t len)
{
    const char *p = c->head, *end = c->head + len;
    bool chunked = false, have_len = false, http10 = false;
    int64_t clen = 0;

    if (len < 12 || strncmp(p, "HTTP/1.", 7) != 0)
        return ML_ERR;
    http10 = p[7] == '0';
    c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (c->status < 100 || c->status > 599)
        return ML_ERR;
    c->close_after = http10;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *v = memchr(p, ':', (size_t)(end - p));
        if (!eol || !v || v > eol)
            continue;
        size_t nlen = (size_t)(v - p), vlen = (size_t)(eol - v);
        char val[64] = "";
        memcpy(val, v + 1, vlen - 1 < sizeof(val) - 1 ? vlen - 1 : sizeof(val) - 1);
        if (nlen == 14 && strncasecmp(p, "content-length", 14) == 0) {
            char *e;
            clen = strtoll(val, &e, 10);
            if (clen < 0 || (*e != '\r' && *e != '\0' && *e != ' '))
                return ML_ERR;
            have_len = true;
        } else if (nlen == 17 && strncasecmp(p, "transfer-encoding", 17) == 0) {
            chunked = strcasestr(val, "chunked") != NULL;
        } else if (nlen == 10 && strncasecmp(p, "connection", 10) == 0) {
            if (strcasestr(val, "close"))
                c->close_after = true;
            else if (strcasestr(val, "keep-alive"))
                c->close_after = false;
        }
    }
    c->hlen = 0;
    if (strcmp(w->o->method, "HEAD") == 0 || c->status == 204 || c->status == 304 ||
        c->status < 200) {
        c->remain = 0;
        c->ps = P_BODY;
    } else if (chunked) {
        c->ps = P_CHUNK_SIZE;
    } else if (have_len) {
        c->remain = clen;
        c->ps = P_BODY;
    } else {
        c->ps = P_UNTIL_CLOSE;
        c->close_after = true;
    }
    return ML_OK;
}

/* Feeds n received bytes to c's response parser: 1 when the response is complete, 0 for
 * more, ML_ERR for a malformed one. Bytes after a complete response are dropped (no
 * pipelining, so there are none from a correct server). */
static int feed(lg_worker *w, lg_conn *c, const char *p, size_t n)
{
    while (n > 0 || (c->ps == P_BODY && c->remain == 0)) {
        switch (c->ps) {
        case P_HEAD: {
            size_t from = c->hlen > 3 ? c->hlen - 3 : 0, take = n;
            if (take > LG_HEAD_MAX - c->hlen)
                take = LG_HEAD_MAX - c->hlen;
            memcpy(c->head + c->hlen, p, take);
            c->hlen += take;
            char *e = memmem(c->head + from, c->hlen - from, "\r\n\r\n", 4);
            if (!e) {
                if (c->hlen == LG_HEAD_MAX)
                    return ML_ERR;
                return 0;
            }
            size_t hl = (size_t)(e - c->head) + 4, used = take - (c->hlen - hl);
            if (parse_head(w, c, hl) != ML_OK)
                return ML_ERR;
            p += used, n -= used;
            if (c->status < 200) /* 100 Continue and friends: the real answer follows */
                c->ps = P_HEAD;
            break;
        }
        case P_BODY:
            if (c->remain == 0)
                return 1;
            if ((int64_t)n >= c->remain) {
                p += c->remain, n -= (size_t)c->remain;
                c->remain = 0;
                return 1;
            }
            c->remain -= (int64_t)n;
            return 0;
        case P_UNTIL_CLOSE:
            return 0; /* the body ends when the server closes */
        case P_CHUNK_SIZE:
        case P_TRAILERS: {
            const char *nl = memchr(p, '\n', n);
            size_t take = nl ? (size_t)(nl - p) + 1 : n;
            if (c->hlen + take > 1024)
                return ML_ERR;
            memcpy(c->head + c->hlen, p, take);
            c->hlen += take;
            p += take, n -= take;
            if (!nl)
                return 0;
            size_t ll = c->hlen;
            c->hlen = 0;
            if (c->ps == P_TRAILERS) {
                if (ll <= 2) /* the empty line */
                    return 1;
                break;
            }
            char *e;
            c->head[ll] = '\0';
            long long sz = strtoll(c->head, &e, 16);
            if (e == c->head || sz < 0 || (*e != '\r' && *e != ';' && *e != '\n' && *e != ' '))
                return ML_ERR;
            c->remain = sz;
            c->ps = sz == 0 ? P_TRAILERS : P_CHUNK_DATA;
            break;
        }
        case P_CHUNK_DATA: {
            size_t take = (int64_t)n < c->remain ? n : (size_t)c->remain;
            p += take, n -= take;
            c->remain -= (int64_t)take;
            if (c->remain == 0) {
                c->remain = 2; /* the CRLF after the data */
                c->ps = P_CHUNK_CRLF;
            }
            break;
        }
        case P_CHUNK_CRLF: {
            size_t take = (int64_t)n < c->remain ? n : (size_t)c->remain;
            p += take, n -= take;
            c->remain -= (int64_t)take;
            if (c->remain == 0)
                c->ps = P_CHUNK_SIZE;
            break;
        }
        }
    }
    return 0;
}

static void on_readable(lg_worker *w, lg_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, w->rbuf, sizeof(w->rbuf), 0);
        int64_t now;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        now = now_ns();
        if (n <= 0) { /* the server closed (or reset) the connection */
            if (c->st == C_BUSY && n == 0 && c->ps == P_UNTIL_CLOSE && c->woff == w->req_len)
                complete(w, c, now); /* close_after: complete() closes it */
            else if (c->st == C_BUSY || c->st == C_CONNECTING)
                conn_fail(w, c, now);
            else
                conn_drop_idle(c);
            return;
        }
        if (c->st != C_BUSY)
            continue; /* stray bytes on an idle connection: ignore */
        int r = feed(w, c, w->rbuf, (size_t)n), fd = c->fd;
        if (r < 0) {
            conn_fail(w, c, now);
            return;
        }
        if (r == 1)
            complete(w, c, now);
        if (c->fd != fd)
            return; /* closed, or reopened for the next request: its own events follow */
    }
}

static void on_event(lg_worker *w, uint64_t data, uint32_t ev)
{
    int64_t now = now_ns();
    lg_conn *c = &w->conns[data & 0xffffffffu];

    if (c->fd < 0 || c->gen != (uint32_t)(data >> 32))
        return; /* an event of a socket closed earlier in this batch */
    if (c->st == C_CONNECTING && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            conn_fail(w, c, now);
            return;
        }
        c->st = C_BUSY;
    }
    if (c->st == C_BUSY && (ev & EPOLLOUT) && c->woff < w->req_len)
        try_write(w, c, now);
    if (c->fd >= 0 && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        on_readable(w, c);
}

/* Every 10 ms: requests past the timeout fail; backed-off connections become usable. */
static void sweep(lg_worker *w, int64_t now)
{
    int64_t limit = (int64_t)(w->o->timeout * 1e9);

    for (int i = 0; i < w->nconns; i++) {
        lg_conn *c = &w->conns[i];
        if ((c->st == C_BUSY || c->st == C_CONNECTING) && now - c->sent > limit)
            conn_fail(w, c, now);
        if (c->st == C_BACKOFF && now >= c->retry_at) {
            c->st = C_CLOSED;
            if (!is_open(w) && now < w->win_end)
                send_request(w, c, now, false, now);
            else
                push_free(w, c, now);
        }
    }
    w->next_sweep = now + LG_SWEEP_NS;
}

/* Open loop: every request now due goes out on a free connection; those that find none
 * wait (as numbers, not memory) and their wait counts in their latency. */
static void dispatch(lg_worker *w, int64_t now)
{
    while (w->nfree > 0) {
        int64_t due = due_of(w, w->next);
        if (due > now || due >= w->win_end)
            return;
        lg_conn *c = &w->conns[w->freelist[--w->nfree]];
        c->free = false;
        if (due >= w->win_start)
            hdr_record(w->late, (now - (due > c->freed ? due : c->freed) + 500) / 1000);
        send_request(w, c, due, due >= w->win_start, now);
        w->next++;
    }
}

static void arm_timer(lg_worker *w, int64_t at)
{
    struct itimerspec its = { 0 };

    if (at == w->armed)
        return;
    its.it_value.tv_sec = at / LG_NS;
    its.it_value.tv_nsec = at % LG_NS;
    timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    w->armed = at;
}

/* Opens every connection before the clock starts (failures reconnect later, lazily). */
static void preconnect(lg_worker *w)
{
    int64_t deadline = now_ns() + (int64_t)(fmin(w->o->timeout, 2.0) * 1e9);
    int pending = 0;
    struct epoll_event evs[64];

    for (int i = 0; i < w->nconns; i++)
        if (conn_open(w, &w->conns[i]) == ML_OK)
            pending++;
        else
            conn_drop_idle(&w->conns[i]);
    while (pending > 0 && now_ns() < deadline) {
        int n = epoll_wait(w->ep, evs, 64, 10);
        for (int i = 0; i < n; i++) {
            lg_conn *c = &w->conns[evs[i].data.u64 & 0xffffffffu];
            int err = 0;
            socklen_t len = sizeof(err);
            if (evs[i].data.u64 == LG_TIMER_EV || c->st != C_CONNECTING)
                continue;
            pending--;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
                conn_drop_idle(c);
            else
                c->st = C_IDLE;
        }
    }
    for (int i = 0; i < w->nconns; i++)
        if (w->conns[i].st == C_CONNECTING)
            conn_drop_idle(&w->conns[i]);
}

/* Open loop: what is still queued or in flight when the drain time is up failed. */
static void drain_expired(lg_worker *w, int64_t now)
{
    for (uint64_t j = w->next; due_of(w, j) < w->win_end; j++)
        if (due_of(w, j) >= w->win_start)
            w->errors++;
    for (int i = 0; i < w->nconns; i++) {
        lg_conn *c = &w->conns[i];
        if (c->st == C_BUSY || c->st == C_CONNECTING)
            conn_fail(w, c, now);
    }
}

/* Connects, waits for every thread, sleeps until the common start and sends the first
 * requests; returns when the loop must stop (open loop: one timeout after the window). */
static int64_t worker_begin(lg_worker *w)
{
    struct epoll_event tev = { .events = EPOLLIN, .data.u64 = LG_TIMER_EV };
    struct timespec at;

    epoll_ctl(w->ep, EPOLL_CTL_ADD, w->tfd, &tev);
    preconnect(w);
    pthread_barrier_wait(&g_ready);
    pthread_barrier_wait(&g_go);
    w->start = g_start;
    w->win_start = w->start + (int64_t)(w->o->warmup * 1e9);
    w->win_end = w->win_start + (int64_t)(w->o->duration * 1e9);
    at.tv_sec = w->start / LG_NS;
    at.tv_nsec = w->start % LG_NS;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
        ;
    w->next_sweep = now_ns() + LG_SWEEP_NS;
    for (int i = 0; i < w->nconns; i++) {
        lg_conn *c = &w->conns[i];
        if (is_open(w))
            push_free(w, c, w->start);
        else
            send_request(w, c, now_ns(), false, now_ns());
    }
    return is_open(w) ? w->win_end + (int64_t)(w->o->timeout * 1e9) : w->win_end;
}

/* Sleeps until the next thing to do (a due time, the sweep, the end) or an event, and
 * handles the events. */
static void worker_wait(lg_worker *w, int64_t now, int64_t stop)
{
    struct epoll_event evs[256];
    int64_t wake = w->next_sweep < stop ? w->next_sweep : stop;
    int n, timeout = -1;
    bool precise = false; /* waking for a due time (not a sweep or the end) */

    if (is_open(w) && w->nfree > 0) {
        int64_t due = due_of(w, w->next);
        if (due < w->win_end && due < wake)
            wake = due, precise = true;
    }
    if (precise && wake - now <= LG_BUSY_NS)
        timeout = 0; /* the last few µs before a send: poll rather than trust a timer */
    else if (wake <= now)
        timeout = 0;
    else
        arm_timer(w, precise ? wake - LG_BUSY_NS : wake);
    n = epoll_wait(w->ep, evs, 256, timeout);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == LG_TIMER_EV) {
            uint64_t ticks;
            if (read(w->tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                perror("loadgen: timerfd");
            w->armed = 0;
            continue;
        }
        on_event(w, evs[i].data.u64, evs[i].events);
    }
}

static void *worker_main(void *arg)
{
    lg_worker *w = arg;
    int64_t stop = worker_begin(w);

    for (;;) {
        int64_t now = now_ns();

        if (now >= w->next_sweep)
            sweep(w, now);
        if (is_open(w))
            dispatch(w, now);
        if (now >= stop) {
            if (is_open(w))
                drain_expired(w, now);
            break;
        }
        if (is_open(w) && w->inflight == 0 && due_of(w, w->next) >= w->win_end)
            break; /* all sent and all answered */
        worker_wait(w, now, stop);
    }
    for (int i = 0; i < w->nconns; i++)
        if (w->conns[i].fd >= 0)
            close(w->conns[i].fd);
    return NULL;
}

static void usage(const char *msg)
{
    fprintf(stderr,
            "loadgen: %s\n"
            "usage: loadgen [options] http://HOST:PORT/PATH   (HOST: IPv4 address or localhost)\n"
            "  -X METHOD   default GET (POST with a body)   -H 'Name: value'  (repeatable)\n"
            "  -b BODY | -B FILE   request body\n"
            "  -c N        connections (default 10)          -t THREADS (default 1)\n"
            "  -R RATE     open loop at RATE req/s (latency from each request's due time);\n"
            "              without it: closed loop (N requests always in flight)\n"
            "  -d SECONDS  measured duration (default 10)   -w SECONDS warm-up (default 0)\n"
            "  -T SECONDS  per-request timeout (default 10)  --json  one JSON object\n"
            "  --percentiles  also the latency spectrum (percentile, ms, requests at or below)\n",
            msg);
    exit(2);
}

static double num_arg(const char *s, double min, const char *what)
{
    char *e;
    double v = strtod(s, &e);
    char msg[128];

    if (e == s || *e != '\0' || !isfinite(v) || v < min) {
        ml_snprintf_trunc(msg, sizeof(msg), "bad %s: %s", what, s);
        usage(msg);
    }
    return v;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ml_buf b = { 0 };
    char chunk[65536];
    size_t n;

    if (!f)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (ml_buf_append(&b, chunk, n) != ML_OK)
            break;
    fclose(f);
    if (ml_buf_append(&b, "", 0) != ML_OK)
        return NULL;
    return ml_buf_steal(&b, len);
}

/* http://a.b.c.d[:port][/path] or localhost: fills addr, hostport and path. */
static int parse_url(lg_opts *o)
{
    const char *p = o->url, *slash, *colon;
    char host[256];
    int64_t port = 80;

    if (strncmp(p, "http://", 7) != 0)
        return ML_ERR;
    p += 7;
    slash = strchr(p, '/');
    if (!slash)
        slash = p + strlen(p);
    if (ml_snprintf(o->hostport, sizeof(o->hostport), "%.*s", (int)(slash - p), p) != ML_OK ||
        ml_snprintf(o->path, sizeof(o->path), "%s", *slash ? slash : "/") != ML_OK)
        return ML_ERR;
    colon = strchr(o->hostport, ':');
    if (ml_snprintf(host, sizeof(host), "%.*s",
                    (int)(colon ? (size_t)(colon - o->hostport) : strlen(o->hostport)),
                    o->hostport) != ML_OK ||
        (colon && ml_parse_int64(colon + 1, 1, 65535, &port) != ML_OK))
        return ML_ERR;
    o->addr.sin_family = AF_INET;
    o->addr.sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        return inet_pton(AF_INET, "127.0.0.1", &o->addr.sin_addr) == 1 ? ML_OK : ML_ERR;
    return inet_pton(AF_INET, host, &o->addr.sin_addr) == 1 ? ML_OK : ML_ERR;
}

static void parse_args(lg_opts *o, int argc, char **argv)
{
    static const struct option longs[] = { { "json", no_argument, NULL, 'j' },
                                           { "percentiles", no_argument, NULL, 'P' },
                                           { "help", no_argument, NULL, 'h' },
                                           { NULL, 0, NULL, 0 } };
    int64_t v;
    int opt;

    *o = (lg_opts){ .conns = 10, .threads = 1, .duration = 10, .timeout = 10 };
    while ((opt = getopt_long(argc, argv, "X:H:b:B:c:R:d:w:t:T:h", longs, NULL)) != -1) {
        switch (opt) {
        case 'X': o->method = optarg; break;
        case 'H':
            if (o->nheaders == LG_MAX_HEADERS || !strchr(optarg, ':'))
                usage("bad or too many -H");
            o->headers[o->nheaders++] = optarg;
            break;
        case 'b':
            free(o->body);
            o->body_len = strlen(optarg);
            o->body = strdup(optarg);
            break;
        case 'B':
            free(o->body);
            o->body = read_file(optarg, &o->body_len);
            if (!o->body)
                usage("cannot read the -B file");
            break;
        case 'c':
            if (ml_parse_int64(optarg, 1, LG_MAX_CONNS, &v) != ML_OK)
                usage("bad -c");
            o->conns = (int)v;
            break;
        case 't':
            if (ml_parse_int64(optarg, 1, 256, &v) != ML_OK)
                usage("bad -t");
            o->threads = (int)v;
            break;
        case 'R': o->rate = num_arg(optarg, 1e-9, "-R"); break;
        case 'd': o->duration = num_arg(optarg, 1e-3, "-d"); break;
        case 'w': o->warmup = num_arg(optarg, 0, "-w"); break;
        case 'T': o->timeout = num_arg(optarg, 1e-3, "-T"); break;
        case 'j': o->json = true; break;
        case 'P': o->spectrum = true; break;
        default: usage("bad option");
        }
    }
    if (optind != argc - 1)
        usage("one URL expected");
    o->url = argv[optind];
    if (parse_url(o) != ML_OK)
        usage("the URL must be http://IPv4-or-localhost[:port][/path]");
    if (o->threads > o->conns)
        usage("-t must not exceed -c");
    if (!o->method)
        o->method = o->body ? "POST" : "GET";
}

/* The one request every connection sends. Ownership: the caller frees *out. */
static int build_request(const lg_opts *o, ml_buf *out)
{
    bool has_host = false, needs_len = o->body || strcmp(o->method, "POST") == 0 ||
                                       strcmp(o->method, "PUT") == 0 || strcmp(o->method, "PATCH") == 0;

    for (int i = 0; i < o->nheaders; i++)
        if (strncasecmp(o->headers[i], "host:", 5) == 0)
            has_host = true;
    if (ml_buf_printf(out, "%s %s HTTP/1.1\r\n", o->method, o->path) != ML_OK ||
        (!has_host && ml_buf_printf(out, "Host: %s\r\n", o->hostport) != ML_OK))
        return ML_ERR;
    for (int i = 0; i < o->nheaders; i++)
        if (ml_buf_printf(out, "%s\r\n", o->headers[i]) != ML_OK)
            return ML_ERR;
    if (needs_len && ml_buf_printf(out, "Content-Length: %zu\r\n", o->body_len) != ML_OK)
        return ML_ERR;
    if (ml_buf_append_str(out, "\r\n") != ML_OK ||
        (o->body_len && ml_buf_append(out, o->body, o->body_len) != ML_OK))
        return ML_ERR;
    return ML_OK;
}

/* The spectrum --percentiles prints: where the tail starts, and how many requests it holds. */
static const double spectrum_pcts[] = { 50, 75, 90, 95, 97.5, 99, 99.5, 99.9, 99.99, 100 };

static void print_spectrum(const lg_opts *o, const hdr_hist *lat)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(spectrum_pcts); i++) {
        int64_t v = hdr_percentile(lat, spectrum_pcts[i]);
        unsigned long long n = (unsigned long long)hdr_count_le(lat, v);
        if (o->json)
            printf("%s[%g,%.3f,%llu]", i ? "," : "", spectrum_pcts[i], v / 1000.0, n);
        else
            printf("  %7g%%  %12.3f ms  %12llu requests at or below, %llu above\n", spectrum_pcts[i],
                   v / 1000.0, n, (unsigned long long)lat->total - n);
    }
}

static void report(const lg_opts *o, const hdr_hist *lat, const hdr_hist *late, uint64_t ok,
                   uint64_t non2xx, uint64_t errors, uint64_t done_in_window)
{
    double thr = (double)done_in_window / o->duration, ms = 1000.0;
    double p50 = hdr_percentile(lat, 50) / ms, p90 = hdr_percentile(lat, 90) / ms;
    double p99 = hdr_percentile(lat, 99) / ms, p999 = hdr_percentile(lat, 99.9) / ms;
    double mx = lat->total ? lat->max / ms : 0, mean = hdr_mean(lat) / ms;
    double late99 = hdr_percentile(late, 99) / ms;
    bool open = o->rate > 0;

    if (o->json) {
        printf("{\"mode\":\"%s\",\"url\":\"", open ? "open" : "closed");
        for (const char *p = o->url; *p; p++) { /* a URL has no control characters to escape */
            if (*p == '"' || *p == '\\')
                putchar('\\');
            putchar(*p);
        }
        printf("\",\"conns\":%d,\"threads\":%d,\"rate\":", o->conns, o->threads);
        if (open)
            printf("%.17g", o->rate);
        else
            printf("null");
        printf(",\"duration_s\":%.17g,\"warmup_s\":%.17g,\"requests\":%llu,\"ok\":%llu,"
               "\"non2xx\":%llu,\"errors\":%llu,\"throughput\":%.3f,\"mean_ms\":%.3f,"
               "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,"
               "\"sent_late_p99_ms\":",
               o->duration, o->warmup, (unsigned long long)(ok + non2xx + errors),
               (unsigned long long)ok, (unsigned long long)non2xx, (unsigned long long)errors,
               thr, mean, p50, p90, p99, p999, mx);
        if (open)
            printf("%.3f", late99);
        else
            printf("null");
        if (o->spectrum) {
            printf(",\"spectrum\":[");
            print_spectrum(o, lat);
            printf("]");
        }
        printf("}\n");
        return;
    }
    if (open)
        printf("open loop at %.6g req/s", o->rate);
    else
        printf("closed loop");
    printf(", %d connection(s), %d thread(s), %.6g s measured after %.6g s warm-up: %s\n",
           o->conns, o->threads, o->duration, o->warmup, o->url);
    printf("  requests %llu: ok %llu, non-2xx %llu, errors %llu; throughput %.1f req/s\n",
           (unsigned long long)(ok + non2xx + errors), (unsigned long long)ok,
           (unsigned long long)non2xx, (unsigned long long)errors, thr);
    printf("  latency ms: mean %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f%s\n",
           mean, p50, p90, p99, p999, mx, open ? "  (from each request's due time)" : "");
    if (open)
        printf("  client sent late by (p99) %.3f ms\n", late99);
    if (o->spectrum)
        print_spectrum(o, lat);
}

/* Fills in thread t's worker. Ownership: its buffers and descriptors are freed by main. */
static int setup_worker(lg_worker *w, const lg_opts *o, const ml_buf *req, int t)
{
    w->o = o;
    w->id = t;
    w->req = ml_buf_cstr(req);
    w->req_len = req->len;
    w->nconns = o->conns / o->threads + (t < o->conns % o->threads);
    w->conns = calloc((size_t)w->nconns, sizeof(*w->conns));
    w->freelist = calloc((size_t)w->nconns, sizeof(*w->freelist));
    w->lat = calloc(1, sizeof(*w->lat));
    w->late = calloc(1, sizeof(*w->late));
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!w->conns || !w->freelist || !w->lat || !w->late || w->ep < 0 || w->tfd < 0)
        return ML_ERR;
    for (int i = 0; i < w->nconns; i++)
        w->conns[i].fd = -1;
    return ML_OK;
}

/* Enough descriptors for -c connections (the soft limit is often 1,024). */
static void raise_nofile(int conns)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= (rlim_t)conns + 64)
        return;
    rl.rlim_cur = rl.rlim_max < (rlim_t)conns + 64 ? rl.rlim_max : (rlim_t)conns + 64;
    setrlimit(RLIMIT_NOFILE, &rl);
}

int main(int argc, char **argv)
{
    lg_opts o;
    ml_buf req = { 0 };
    lg_worker *ws = NULL;
    hdr_hist *lat = NULL, *late = NULL;
    uint64_t ok = 0, non2xx = 0, errors = 0, done = 0;
    int rc = 1, started = 0;

    parse_args(&o, argc, argv);
    ws = calloc((size_t)o.threads, sizeof(*ws));
    lat = calloc(1, sizeof(*lat));
    late = calloc(1, sizeof(*late));
    if (!ws || !lat || !late || build_request(&o, &req) != ML_OK) {
        fprintf(stderr, "loadgen: out of memory\n");
        goto out;
    }
    pthread_barrier_init(&g_ready, NULL, (unsigned)o.threads + 1);
    pthread_barrier_init(&g_go, NULL, (unsigned)o.threads + 1);
    raise_nofile(o.conns);
    for (int t = 0; t < o.threads; t++) {
        lg_worker *w = &ws[t];
        if (setup_worker(w, &o, &req, t) != ML_OK) {
            fprintf(stderr, "loadgen: cannot set up thread %d\n", t);
            goto out; /* the barriers would wait forever for the missing threads: exit */
        }
        if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
            fprintf(stderr, "loadgen: cannot start thread %d\n", t);
            goto out;
        }
        started++;
    }
    pthread_barrier_wait(&g_ready);
    g_start = now_ns() + 2000000; /* 2 ms: every thread is waiting on the same instant */
    pthread_barrier_wait(&g_go);
    for (int t = 0; t < o.threads; t++) {
        pthread_join(ws[t].th, NULL);
        hdr_merge(lat, ws[t].lat);
        hdr_merge(late, ws[t].late);
        ok += ws[t].ok, non2xx += ws[t].non2xx, errors += ws[t].errors;
        done += ws[t].done_in_window;
    }
    report(&o, lat, late, ok, non2xx, errors, done);
    rc = 0;
out:
    if (rc != 0 && started > 0)
        _exit(1); /* threads are parked on a barrier that will never fill */
    for (int t = 0; ws && t < o.threads; t++) {
        free(ws[t].conns), free(ws[t].freelist), free(ws[t].lat), free(ws[t].late);
        if (ws[t].ep > 0)
            close(ws[t].ep);
        if (ws[t].tfd > 0)
            close(ws[t].tfd);
    }
    free(ws), free(lat), free(late), free(o.body);
    ml_buf_free(&req);
    return rc;
}
