/* egress.c — the build sandbox's egress proxy (egress.h; docs/network.md "Egress proxy").
 *
 * One thread per proxy. It makes the namespace by unshare(CLONE_NEWNET) on itself (a network
 * namespace belongs to a thread, so no other thread notices; shared/netns.c does the same),
 * brings lo up, opens the listener there and the namespace's fd, and setns()es back: sockets
 * keep the namespace they were made in, so the listener stays inside while every upstream
 * socket made afterwards is in the worker's namespace. Then it serves every connection from
 * one poll loop.
 *
 * Upstream names are resolved with getaddrinfo in the loop (it may block it for a resolver
 * timeout; a build has one proxy and few connections, and the allow-list holds the operator's
 * registries). Connects are non-blocking and try each address in turn. */
#include "egress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress-int.h"
#include "log.h"
#include "ml.h"
#include "netns.h"

#define EGRESS_CONNECT_MS 15000   /* per upstream, all its addresses together */
#define EGRESS_LINGER_MS 2000     /* reading what a refused client still sends, so the answer
                                     is not lost to a reset */
#define EGRESS_DENIED_KEEP 8
#define EGRESS_DENIED_LEN 512
#define EGRESS_BUF EGRESS_OUT_MAX /* each direction: a rewritten head plus what followed it */

typedef enum { C_HEAD, C_CONNECTING, C_RELAY, C_CLOSING, C_DRAINING } conn_state;

typedef struct conn {
    conn_state st;
    int cfd, ufd;                 /* client (inside the namespace), upstream (outside) */
    int64_t last_ms;              /* last byte moved */
    int64_t deadline_ms;          /* C_CONNECTING: give up; C_DRAINING: close */
    bool c_eof, u_eof, c_shut, u_shut;
    int cpi, upi;                 /* their pollfd slots this round, -1: none */
    egress_req req;
    struct addrinfo *ai, *ai_next;
    int connect_errno;
    size_t c2u_len, u2c_len;
    char c2u[EGRESS_BUF];         /* the head while C_HEAD, then client → upstream */
    char u2c[EGRESS_BUF];         /* our answers, then upstream → client */
} conn;

struct egress {
    pthread_t thread;
    pthread_mutex_t lock;         /* start handshake and the denied list */
    pthread_cond_t started;
    int start_rc;                 /* 1 while starting, then ML_OK / ML_ERR */
    char start_err[256];
    egress_rule rules[EGRESS_MAX_ALLOW];
    size_t nrules;
    int lfd, nsfd, origfd, wakefd;
    int port;
    atomic_int_least64_t allowed, denied, idle_ms;
    atomic_int nconns;
    int64_t accept_pause_until;
    char denied_list[EGRESS_DENIED_LEN];
    int ndenied;
    conn *conns[EGRESS_MAX_CONNS];
    char scratch[EGRESS_OUT_MAX];
};

/* ---------------------------------------------------------------- set-up (in the thread) */

/* Namespace, lo, listener, and back; on ML_ERR err says which step failed. */
static int ns_setup(egress *e, char *err, size_t errlen)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t salen = sizeof(sa);
    const char *step = "open /proc/thread-self/ns/net";
    bool inside = false;
    int rc = ML_ERR;

    e->origfd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (e->origfd < 0)
        goto out;
    step = "unshare(CLONE_NEWNET)";
    if (unshare(CLONE_NEWNET) != 0)
        goto out;
    inside = true;
    step = "open the new namespace";
    if ((e->nsfd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
        goto out;
    step = "bring lo up";
    if (netns_lo_up() != ML_OK)
        goto out;
    step = "listen on 127.0.0.1";
    e->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (e->lfd < 0 || bind(e->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(e->lfd, 128) != 0 || getsockname(e->lfd, (struct sockaddr *)&sa, &salen) != 0)
        goto out;
    e->port = ntohs(sa.sin_port);
    rc = ML_OK;
out:
    if (rc != ML_OK)
        ml_snprintf_trunc(err, errlen, "egress: %s: %s", step, strerror(errno));
    if (inside && setns(e->origfd, CLONE_NEWNET) != 0) {
        /* the thread would connect out from the empty namespace: nothing would work */
        ml_snprintf_trunc(err, errlen, "egress: setns back to the worker's namespace: %s",
                          strerror(errno));
        rc = ML_ERR;
    }
    return rc;
}

/* ---------------------------------------------------------------- connections */

static void conn_free(egress *e, int i)
{
    conn *c = e->conns[i];

    if (!c)
        return;
    if (c->cfd >= 0)
        close(c->cfd);
    if (c->ufd >= 0)
        close(c->ufd);
    if (c->ai)
        freeaddrinfo(c->ai);
    free(c);
    e->conns[i] = NULL;
    atomic_fetch_sub(&e->nconns, 1);
}

/* Queues a one-line plain-text answer and moves to C_CLOSING. */
static void respond(conn *c, int status, const char *reason, const char *body)
{
    int64_t now = ml_now_ms();
    size_t blen = strlen(body);

    if (ml_snprintf(c->u2c, sizeof(c->u2c), "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", status, reason, blen,
                    body) != ML_OK)
        c->u2c[0] = '\0';   /* cannot happen: bodies are one short line */
    c->u2c_len = strlen(c->u2c);
    c->st = C_CLOSING;
    c->last_ms = now;
}

static void refuse(egress *e, conn *c, int status, const char *why)
{
    char body[256];

    atomic_fetch_add(&e->denied, 1);
    ml_snprintf_trunc(body, sizeof(body), "egress proxy: %s\n",
                      status == EGRESS_PARSE_TOO_LARGE ? "request head larger than 16 KiB" : why);
    respond(c, status, status == EGRESS_PARSE_TOO_LARGE ? "Request Header Fields Too Large"
                                                            : "Bad Request", body);
}

static void note_denied(egress *e, const char *target)
{
    size_t used, tl = strlen(target);

    pthread_mutex_lock(&e->lock);
    used = strlen(e->denied_list);
    if (e->ndenied < EGRESS_DENIED_KEEP && used + tl + 2 < sizeof(e->denied_list)) {
        bool seen = false;
        for (const char *p = e->denied_list; *p && !seen; ) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            seen = n == tl && memcmp(p, target, n) == 0;
            p += n + (comma ? 1 : 0);
        }
        if (!seen) {
            if (used)
                e->denied_list[used++] = ',';
            memcpy(e->denied_list + used, target, tl + 1);
            e->ndenied++;
        }
    }
    pthread_mutex_unlock(&e->lock);
}

/* Starts a connect to the next address; ML_ERR when none is left. */
static int connect_next(conn *c)
{
    while (c->ai_next) {
        struct addrinfo *a = c->ai_next;
        int fd;

        c->ai_next = a->ai_next;
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            c->connect_errno = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
            c->ufd = fd;
            return ML_OK;
        }
        c->connect_errno = errno;
        close(fd);
    }
    return ML_ERR;
}

static void bad_gateway(conn *c, const char *what)
{
    char body[512];

    ml_snprintf_trunc(body, sizeof(body), "egress proxy: cannot connect to %s:%d: %s\n",
                      c->req.host, c->req.port, what);
    respond(c, 502, "Bad Gateway", body);
}

/* The head is complete and valid: decide, then connect or refuse. */
static void route(egress *e, conn *c, size_t rest_off, size_t out_len)
{
    char target[EGRESS_HOST_MAX + 8], body[EGRESS_HOST_MAX + 96], host[EGRESS_HOST_MAX], port[8];
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    size_t rest = c->c2u_len - rest_off, hl = strlen(c->req.host);
    int rc;

    ml_snprintf_trunc(target, sizeof(target), "%s:%d", c->req.host, c->req.port);
    if (!egress_allowed_target(e->rules, e->nrules, c->req.host, c->req.port)) {
        atomic_fetch_add(&e->denied, 1);
        note_denied(e, target);
        ml_log_kv(ML_LOG_WARN, "egress denied", "target", target, NULL);
        ml_snprintf_trunc(body, sizeof(body), "egress proxy: %s is not on this build's "
                          "allow-list\n", target);
        respond(c, 403, "Forbidden", body);
        return;
    }
    atomic_fetch_add(&e->allowed, 1);
    /* What follows the head (a body, early TLS bytes) goes after the head we send. */
    if (c->req.kind == EGRESS_FORWARD) {
        memmove(c->c2u + out_len, c->c2u + rest_off, rest);
        memcpy(c->c2u, e->scratch, out_len);
        c->c2u_len = out_len + rest;
    } else {
        memmove(c->c2u, c->c2u + rest_off, rest);
        c->c2u_len = rest;
    }
    if (c->req.host[0] == '[') {   /* a literal: no brackets, no DNS */
        memcpy(host, c->req.host + 1, hl - 2);
        host[hl - 2] = '\0';
        hints.ai_flags |= AI_NUMERICHOST;
    } else {
        memcpy(host, c->req.host, hl + 1);
    }
    ml_snprintf_trunc(port, sizeof(port), "%d", c->req.port);
    rc = getaddrinfo(host, port, &hints, &c->ai);
    if (rc != 0) {
        c->ai = NULL;
        bad_gateway(c, gai_strerror(rc));
        return;
    }
    c->ai_next = c->ai;
    c->connect_errno = ECONNREFUSED;
    if (connect_next(c) != ML_OK) {
        bad_gateway(c, strerror(c->connect_errno));
        return;
    }
    c->st = C_CONNECTING;
    c->deadline_ms = ml_now_ms() + EGRESS_CONNECT_MS;
}

static void on_head(egress *e, conn *c)
{
    const char *why = "";
    ssize_t n = recv(c->cfd, c->c2u + c->c2u_len, EGRESS_HEAD_MAX - c->c2u_len, 0);
    int st;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {   /* gone before a whole head: nothing to answer */
        c->c_eof = true;
        return;
    }
    c->c2u_len += (size_t)n;
    c->last_ms = ml_now_ms();
    st = egress_parse_head(c->c2u, c->c2u_len, &c->req, e->scratch, sizeof(e->scratch), &why);
    if (st == EGRESS_PARSE_OK)
        route(e, c, c->req.head_len, c->req.out_len);
    else if (st != EGRESS_PARSE_MORE)
        refuse(e, c, st, why);
}

static void on_connecting(conn *c, bool timed_out)
{
    int err = 0;
    socklen_t el = sizeof(err);

    if (timed_out)
        err = ETIMEDOUT;
    else if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
        err = errno;
    if (err == EINPROGRESS || err == EALREADY)
        return;
    if (err == 0) {
        freeaddrinfo(c->ai);
        c->ai = c->ai_next = NULL;
        c->st = C_RELAY;
        c->last_ms = ml_now_ms();
        if (c->req.kind == EGRESS_CONNECT) {
            static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
            memcpy(c->u2c, ok, sizeof(ok) - 1);
            c->u2c_len = sizeof(ok) - 1;
        }
        return;
    }
    close(c->ufd);
    c->ufd = -1;
    c->connect_errno = err;
    if (!timed_out && connect_next(c) == ML_OK)
        return;
    bad_gateway(c, strerror(c->connect_errno));
}

/* Moves what it can between the buffers and sockets; false when the connection is over. */
static bool pump(int from, bool *eof, char *buf, size_t *len, size_t cap, int64_t *last)
{
    ssize_t n;

    if (*eof || *len == cap)
        return true;
    n = recv(from, buf + *len, cap - *len, 0);
    if (n > 0) {
        *len += (size_t)n;
        *last = ml_now_ms();
    } else if (n == 0) {
        *eof = true;
    } else if (errno != EAGAIN && errno != EINTR) {
        return false;
    }
    return true;
}

static bool drain(int to, char *buf, size_t *len, int64_t *last)
{
    ssize_t n;

    if (*len == 0)
        return true;
    n = send(to, buf, *len, MSG_NOSIGNAL);
    if (n > 0) {
        memmove(buf, buf + n, *len - (size_t)n);
        *len -= (size_t)n;
        *last = ml_now_ms();
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return false;
    }
    return true;
}

static bool on_relay(conn *c)
{
    if (!pump(c->cfd, &c->c_eof, c->c2u, &c->c2u_len, sizeof(c->c2u), &c->last_ms) ||
        !drain(c->ufd, c->c2u, &c->c2u_len, &c->last_ms) ||
        !pump(c->ufd, &c->u_eof, c->u2c, &c->u2c_len, sizeof(c->u2c), &c->last_ms) ||
        !drain(c->cfd, c->u2c, &c->u2c_len, &c->last_ms))
        return false;
    /* Half-closes pass through, so a client may end its upload and still read the answer. */
    if (c->c_eof && !c->c2u_len && !c->u_shut) {
        shutdown(c->ufd, SHUT_WR);
        c->u_shut = true;
    }
    if (c->u_eof && !c->u2c_len && !c->c_shut) {
        shutdown(c->cfd, SHUT_WR);
        c->c_shut = true;
    }
    return !(c->c_shut && c->u_shut);
}

/* One connection's turn; false when it is over. */
static bool conn_step(egress *e, conn *c, int64_t now)
{
    switch (c->st) {
    case C_HEAD:
        on_head(e, c);
        return !c->c_eof;
    case C_CONNECTING:
        on_connecting(c, false);
        if (c->st != C_RELAY)
            return true;
        /* the 200 (or the forwarded head) can go at once */
        return on_relay(c);
    case C_RELAY:
        return on_relay(c);
    case C_CLOSING:
        if (!drain(c->cfd, c->u2c, &c->u2c_len, &c->last_ms))
            return false;
        if (!c->u2c_len) {
            shutdown(c->cfd, SHUT_WR);
            c->st = C_DRAINING;
            c->deadline_ms = now + EGRESS_LINGER_MS;
        }
        return true;
    case C_DRAINING: {
        char sink[4096];
        ssize_t n = recv(c->cfd, sink, sizeof(sink), 0);
        return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
    }
    }
    return false;
}

/* When c must be looked at even without an event (ms, monotonic). */
static int64_t conn_deadline(const egress *e, const conn *c)
{
    int64_t idle = c->last_ms + atomic_load(&e->idle_ms);

    if (c->st == C_DRAINING)
        return c->deadline_ms;
    if (c->st == C_CONNECTING && c->deadline_ms < idle)
        return c->deadline_ms;
    return idle;
}

/* ---------------------------------------------------------------- the loop */

static void accept_all(egress *e, int64_t now)
{
    while (atomic_load(&e->nconns) < EGRESS_MAX_CONNS) {
        int fd = accept4(e->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), i;
        conn *c;

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                e->accept_pause_until = now + 100;   /* else poll would spin on the listener */
            return;
        }
        for (i = 0; i < EGRESS_MAX_CONNS && e->conns[i]; i++)
            ;
        c = i < EGRESS_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
        if (!c) {
            close(fd);
            e->accept_pause_until = now + 100;
            return;
        }
        c->st = C_HEAD;
        c->cfd = fd;
        c->ufd = -1;
        c->last_ms = now;
        e->conns[i] = c;
        atomic_fetch_add(&e->nconns, 1);
    }
}

static void set_events(conn *c, struct pollfd *pf, int *np)
{
    short ce = 0, ue = 0;

    switch (c->st) {
    case C_HEAD:
    case C_DRAINING:
        ce = POLLIN;
        break;
    case C_CONNECTING:
        ue = POLLOUT;
        break;
    case C_RELAY:
        ce = (short)((!c->c_eof && c->c2u_len < sizeof(c->c2u) ? POLLIN : 0) |
                     (c->u2c_len ? POLLOUT : 0));
        ue = (short)((!c->u_eof && c->u2c_len < sizeof(c->u2c) ? POLLIN : 0) |
                     (c->c2u_len ? POLLOUT : 0));
        break;
    case C_CLOSING:
        ce = POLLOUT;
        break;
    }
    /* An fd with nothing wanted is left out: its POLLHUP would wake the loop forever. */
    c->cpi = c->upi = -1;
    if (ce) {
        pf[*np] = (struct pollfd){ .fd = c->cfd, .events = ce };
        c->cpi = (*np)++;
    }
    if (ue) {
        pf[*np] = (struct pollfd){ .fd = c->ufd, .events = ue };
        c->upi = (*np)++;
    }
}

static void *egress_main(void *arg)
{
    egress *e = arg;
    struct pollfd pf[2 + 2 * EGRESS_MAX_CONNS];
    char err[256] = "";
    int rc = ns_setup(e, err, sizeof(err));

    pthread_mutex_lock(&e->lock);
    e->start_rc = rc;
    memcpy(e->start_err, err, sizeof(err));
    pthread_cond_signal(&e->started);
    pthread_mutex_unlock(&e->lock);
    if (rc != ML_OK)
        return NULL;
    for (;;) {
        int64_t now = ml_now_ms(), next = now + 1000;
        int np = 2, timeout;

        pf[0] = (struct pollfd){ .fd = e->wakefd, .events = POLLIN };
        pf[1] = (struct pollfd){ .fd = -1 };
        if (atomic_load(&e->nconns) < EGRESS_MAX_CONNS) {
            if (now >= e->accept_pause_until)
                pf[1] = (struct pollfd){ .fd = e->lfd, .events = POLLIN };
            else if (e->accept_pause_until < next)
                next = e->accept_pause_until;
        }
        for (int i = 0; i < EGRESS_MAX_CONNS; i++) {
            int64_t d;
            if (!e->conns[i])
                continue;
            set_events(e->conns[i], pf, &np);
            d = conn_deadline(e, e->conns[i]);
            if (d < next)
                next = d;
        }
        timeout = next > now ? (int)(next - now) : 0;
        if (poll(pf, (nfds_t)np, timeout) < 0 && errno != EINTR)
            break;
        if (pf[0].revents)
            break;   /* egress_stop */
        now = ml_now_ms();
        for (int i = 0; i < EGRESS_MAX_CONNS; i++) {
            conn *c = e->conns[i];
            bool ready, alive = true;
            if (!c)
                continue;
            ready = (c->cpi >= 0 && pf[c->cpi].revents) || (c->upi >= 0 && pf[c->upi].revents);
            if (ready)
                alive = conn_step(e, c, now);
            else if (now >= conn_deadline(e, c)) {
                if (c->st == C_CONNECTING && now >= c->deadline_ms)
                    on_connecting(c, true);   /* 502, then the usual close */
                else
                    alive = false;               /* idle, or done lingering */
            }
            if (!alive)
                conn_free(e, i);
        }
        if (pf[1].revents)
            accept_all(e, now);
    }
    for (int i = 0; i < EGRESS_MAX_CONNS; i++)
        conn_free(e, i);
    return NULL;
}

/* ---------------------------------------------------------------- API */

static void egress_free(egress *e)
{
    int fds[4] = { e->lfd, e->nsfd, e->origfd, e->wakefd };

    for (size_t i = 0; i < ML_ARRAY_LEN(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->started);
    free(e);
}

int egress_start(const egress_allow *allow, egress **out, char *err, size_t errlen)
{
    egress *e = calloc(1, sizeof(*e));
    int rc = ML_ERR;

    *out = NULL;
    if (!e) {
        ml_snprintf_trunc(err, errlen, "egress: out of memory");
        return ML_ERR;
    }
    e->lfd = e->nsfd = e->origfd = e->wakefd = -1;
    e->start_rc = 1;
    atomic_init(&e->allowed, 0);
    atomic_init(&e->denied, 0);
    atomic_init(&e->idle_ms, EGRESS_IDLE_MS);
    atomic_init(&e->nconns, 0);
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->started, NULL);
    if (egress_parse_allow(allow, e->rules, &e->nrules, err, errlen) != ML_OK)
        goto out;
    if ((e->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        ml_snprintf_trunc(err, errlen, "egress: eventfd: %s", strerror(errno));
        goto out;
    }
    if (pthread_create(&e->thread, NULL, egress_main, e) != 0) {
        ml_snprintf_trunc(err, errlen, "egress: cannot start its thread");
        goto out;
    }
    pthread_mutex_lock(&e->lock);
    while (e->start_rc == 1)
        pthread_cond_wait(&e->started, &e->lock);
    rc = e->start_rc;
    pthread_mutex_unlock(&e->lock);
    if (rc != ML_OK) {   /* the thread has returned already */
        ml_snprintf_trunc(err, errlen, "%s", e->start_err);
        pthread_join(e->thread, NULL);
    }
out:
    if (rc != ML_OK) {
        egress_free(e);
        return ML_ERR;
    }
    *out = e;
    return ML_OK;
}

int egress_netns_fd(const egress *e)
{
    return e->nsfd;
}

int egress_port(const egress *e)
{
    return e->port;
}

int64_t egress_allowed(const egress *e)
{
    return atomic_load(&((egress *)e)->allowed);
}

int64_t egress_denied(const egress *e)
{
    return atomic_load(&((egress *)e)->denied);
}

void egress_denied_targets(const egress *e, char *buf, size_t len)
{
    egress *m = (egress *)e;   /* the lock is not part of the value */

    pthread_mutex_lock(&m->lock);
    ml_snprintf_trunc(buf, len, "%s", m->denied_list);
    pthread_mutex_unlock(&m->lock);
}

void egress_set_idle_ms(egress *e, int64_t ms)
{
    atomic_store(&e->idle_ms, ms);
}

int egress_open_conns(const egress *e)
{
    return atomic_load(&((egress *)e)->nconns);
}

void egress_stop(egress *e)
{
    uint64_t one = 1;

    if (!e)
        return;
    while (write(e->wakefd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    pthread_join(e->thread, NULL);
    egress_free(e);
}
