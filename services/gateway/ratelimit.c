/* ratelimit.c — GCRA in Redis over hiredis async, with an in-memory fallback (see
 * ratelimit.h). */
#include "ratelimit.h"

#include <errno.h>
#include <hiredis/async.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

/* One decision waiting for Redis; linked in send order (replies come back in that order). */
typedef struct pending {
    struct pending *prev, *next;
    gw_rl *rl;
    char *key;
    gcra_limit lim;
    gw_limit_fn done;
    void *ud;
    int64_t deadline_ms;
    bool reloaded; /* EVAL sent after a NOSCRIPT */
} pending;

struct gw_rl {
    gw_limiter *shared;
    redisAsyncContext *ac;
    bool connected, freeing;
    int epfd, fd;
    uint64_t tag;
    uint32_t mask, registered_mask;
    bool registered;
    bool write_due;              /* commands appended, written by gw_rl_flush */
    bool flushing;
    pending *head, *tail;
    int64_t connect_deadline_ms, retry_at_ms, backoff_ms;
    char last_error[160];
};

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the shared part ---- */

int gw_limiter_init(gw_limiter *l, const char *redis_url, int timeout_ms, metrics_registry *reg,
                    char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    l->redis_enabled = redis_url && *redis_url;
    if (l->redis_enabled && rds_url_parse(redis_url, &l->url, err, errlen) != ML_OK)
        return ML_ERR;
    l->timeout_ms = timeout_ms > 0 ? timeout_ms : 100;
    rds_script_init(&l->script, gcra_lua);
    gcra_mem_init(&l->mem, 0);
    atomic_init(&l->fallback, !l->redis_enabled);
    atomic_init(&l->last_ok_ms, 0);
    if (reg) {
        l->m_fallback = metrics_gauge(reg, "minilambda_gateway_ratelimit_fallback",
                                      "1 while rate limits are decided per instance in memory "
                                      "because Redis is unreachable.", NULL);
        l->m_redis_errors = metrics_counter(reg, "minilambda_gateway_ratelimit_redis_errors_total",
                                            "Rate-limit decisions Redis could not make (made in memory).",
                                            NULL);
        metric_set(l->m_fallback, NULL, l->redis_enabled ? 0 : 1);
    }
    return ML_OK;
}

void gw_limiter_free(gw_limiter *l)
{
    gcra_mem_free(&l->mem);
}

bool gw_limiter_in_fallback(gw_limiter *l)
{
    return atomic_load(&l->fallback);
}

void gw_limiter_take_memory(gw_limiter *l, const char *key, gcra_limit lim, gcra_result *out)
{
    gcra_mem_take(&l->mem, key, now_us(), lim, out);
}

/* Logs and exports a switch between Redis and memory, once per transition. */
static void set_fallback(gw_limiter *l, bool on, const char *why)
{
    int64_t now = ml_now_ms();

    if (!on)
        atomic_store(&l->last_ok_ms, now);
    else if (now - atomic_load(&l->last_ok_ms) < GW_LIMITER_GRACE_MS)
        return;
    if (atomic_exchange(&l->fallback, on) == on)
        return;
    metric_set(l->m_fallback, NULL, on ? 1 : 0);
    if (on)
        ml_log_kv(ML_LOG_WARN, "rate limiter: Redis unavailable, limiting per instance in memory",
                  "error", why ? why : "", NULL);
    else
        ml_log_info("rate limiter: Redis is back, limits are shared again");
}

/* ---- pending decisions ---- */

static void link_tail(gw_rl *rl, pending *p)
{
    p->prev = rl->tail;
    p->next = NULL;
    if (rl->tail)
        rl->tail->next = p;
    else
        rl->head = p;
    rl->tail = p;
}

static void unlink_pending(gw_rl *rl, pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        rl->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        rl->tail = p->prev;
    p->prev = p->next = NULL;
}

/* Hands the result over and frees p (already unlinked). */
static void complete(pending *p, const gcra_result *r)
{
    p->done(p->ud, r);
    free(p->key);
    free(p);
}

static void complete_in_memory(gw_rl *rl, pending *p, const char *why)
{
    gcra_result r;

    metric_inc(rl->shared->m_redis_errors, NULL);
    set_fallback(rl->shared, true, why);
    gw_limiter_take_memory(rl->shared, p->key, p->lim, &r);
    complete(p, &r);
}

/* ---- the connection ---- */

static void update_epoll(gw_rl *rl)
{
    struct epoll_event ev = { .events = rl->mask, .data.u64 = rl->tag };

    if (rl->registered && rl->registered_mask == rl->mask)
        return;
    if (epoll_ctl(rl->epfd, rl->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, rl->fd, &ev) == 0) {
        rl->registered = true;
        rl->registered_mask = rl->mask;
    } else {
        ml_log_warn("rate limiter: epoll_ctl: %s", strerror(errno));
    }
}

static void ev_add_read(void *d) { gw_rl *rl = d; rl->mask |= EPOLLIN; update_epoll(rl); }
static void ev_del_read(void *d) { gw_rl *rl = d; rl->mask &= ~(uint32_t)EPOLLIN; update_epoll(rl); }

/* On a connected socket, commands appended during a loop iteration are written once at its
 * end (gw_rl_flush) without asking epoll for writability; only a write the socket could not
 * take whole, or a connect in progress, waits for EPOLLOUT. */
static void ev_add_write(void *d)
{
    gw_rl *rl = d;

    if (rl->connected && !rl->flushing) {
        rl->write_due = true;
        return;
    }
    rl->mask |= EPOLLOUT;
    update_epoll(rl);
}

static void ev_del_write(void *d)
{
    gw_rl *rl = d;

    rl->write_due = false;
    rl->mask &= ~(uint32_t)EPOLLOUT;
    update_epoll(rl);
}

static void ev_cleanup(void *d)
{
    gw_rl *rl = d;

    if (rl->registered)
        epoll_ctl(rl->epfd, EPOLL_CTL_DEL, rl->fd, NULL);
    rl->registered = false;
    rl->mask = rl->registered_mask = 0;
    rl->write_due = false;
}

/* The context is gone (hiredis frees it after these callbacks): schedule a reconnect. The
 * first one after losing a working connection is immediate; failed attempts back off. */
static void lost(gw_rl *rl, bool was_up, const char *why)
{
    int64_t now = ml_now_ms();

    rl->ac = NULL;
    rl->connected = false;
    ml_strlcpy(rl->last_error, why, sizeof(rl->last_error));
    rl->retry_at_ms = was_up ? now : now + rl->backoff_ms;
    if (!was_up)
        rl->backoff_ms = rl->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rl->backoff_ms * 2;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    gw_rl *rl = ac->data;

    if (status != REDIS_OK) {
        char why[160];
        ml_snprintf(why, sizeof(why), "redis %s:%d: connect: %s", rl->shared->url.host,
                 rl->shared->url.port, ac->errstr);
        lost(rl, false, why);
        return;
    }
    rl->connected = true; /* the backoff resets on the first reply: a hung server accepts too */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    gw_rl *rl = ac->data;
    char why[160];

    ml_snprintf(why, sizeof(why), "redis %s:%d: connection lost: %s", rl->shared->url.host,
             rl->shared->url.port, status == REDIS_OK ? "closed" : ac->errstr);
    lost(rl, rl->connected, why);
}

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *r = reply;

    ML_UNUSED(ac);
    if (r && r->type == REDIS_REPLY_ERROR)
        ml_log_warn("rate limiter: Redis %s failed: %s", (const char *)privdata, r->str);
}

/* AUTH and SELECT go first on a new connection; replies arrive before any decision's. */
static void setup_commands(gw_rl *rl)
{
    const rds_url *u = &rl->shared->url;
    char db[16];

    if (u->password[0]) {
        const char *argv[] = { "AUTH", u->user[0] ? u->user : u->password, u->password };
        redisAsyncCommandArgv(rl->ac, on_setup_reply, "AUTH", u->user[0] ? 3 : 2, argv, NULL);
    }
    if (u->db) {
        const char *argv[] = { "SELECT", db };
        snprintf(db, sizeof(db), "%d", u->db);
        redisAsyncCommandArgv(rl->ac, on_setup_reply, "SELECT", 2, argv, NULL);
    }
}

/* ML_OK when there is a connection (possibly still connecting) to send on. */
static int ensure_connection(gw_rl *rl, int64_t now)
{
    const rds_url *u = &rl->shared->url;

    if (rl->ac)
        return ML_OK;
    if (!rl->shared->redis_enabled || now < rl->retry_at_ms)
        return ML_ERR;
    rl->ac = redisAsyncConnect(u->host, u->port);
    if (!rl->ac || rl->ac->err) {
        char why[160];
        ml_snprintf(why, sizeof(why), "redis %s:%d: %s", u->host, u->port,
                 rl->ac ? rl->ac->errstr : "out of memory");
        if (rl->ac)
            redisAsyncFree(rl->ac);
        lost(rl, false, why);
        return ML_ERR;
    }
    rl->fd = rl->ac->c.fd;
    rl->ac->data = rl;
    rl->ac->ev.data = rl;
    rl->ac->ev.addRead = ev_add_read;
    rl->ac->ev.delRead = ev_del_read;
    rl->ac->ev.addWrite = ev_add_write;
    rl->ac->ev.delWrite = ev_del_write;
    rl->ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(rl->ac, on_connect);
    redisAsyncSetDisconnectCallback(rl->ac, on_disconnect);
    rl->connect_deadline_ms = now + rl->shared->timeout_ms;
    setup_commands(rl);
    return ML_OK;
}

static int send_decision(gw_rl *rl, pending *p, bool eval);

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    pending *p = privdata;
    gw_rl *rl = p->rl;
    redisReply *r = reply;
    char why[200];

    ML_UNUSED(ac);
    unlink_pending(rl, p);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
        gcra_result res = { r->element[0]->integer == 1, p->lim.burst, r->element[1]->integer,
                            r->element[2]->integer, r->element[3]->integer };
        rl->backoff_ms = BACKOFF_MIN_MS;
        set_fallback(rl->shared, false, NULL);
        complete(p, &res);
        return;
    }
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0 && !p->reloaded) {
        p->reloaded = true; /* EVAL runs the source and puts it back in the script cache */
        if (send_decision(rl, p, true) == ML_OK)
            return;
    }
    ml_snprintf(why, sizeof(why), "%s", !r ? rl->last_error
                                        : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected script reply");
    complete_in_memory(rl, p, why[0] ? why : "no reply");
}

/* Queues EVALSHA (or EVAL) for p; on failure p is left unlinked for the caller. */
static int send_decision(gw_rl *rl, pending *p, bool eval)
{
    char iv[24], burst[24];
    const char *argv[6];

    if (rl->freeing || ensure_connection(rl, ml_now_ms()) != ML_OK)
        return ML_ERR;
    snprintf(iv, sizeof(iv), "%" PRId64, p->lim.interval_us);
    snprintf(burst, sizeof(burst), "%" PRId64, p->lim.burst);
    argv[0] = eval ? "EVAL" : "EVALSHA";
    argv[1] = eval ? rl->shared->script.source : rl->shared->script.sha;
    argv[2] = "1";
    argv[3] = p->key;
    argv[4] = iv;
    argv[5] = burst;
    p->deadline_ms = ml_now_ms() + rl->shared->timeout_ms;
    link_tail(rl, p);
    if (redisAsyncCommandArgv(rl->ac, on_reply, p, 6, argv, NULL) != REDIS_OK) {
        unlink_pending(rl, p);
        return ML_ERR;
    }
    return ML_OK;
}

gw_rl *gw_rl_new(gw_limiter *shared, int epfd, uint64_t tag)
{
    gw_rl *rl = calloc(1, sizeof(*rl));

    if (!rl)
        return NULL;
    rl->shared = shared;
    rl->epfd = epfd;
    rl->fd = -1;
    rl->tag = tag;
    rl->backoff_ms = BACKOFF_MIN_MS;
    return rl;
}

/* Drops a connection that stopped answering: every pending decision is made in memory
 * (hiredis calls each callback with no reply) and the reconnect backs off, since a server
 * that hangs still accepts connections. */
static void drop(gw_rl *rl, const char *why)
{
    redisAsyncContext *ac = rl->ac;

    if (!ac)
        return;
    ml_strlcpy(rl->last_error, why, sizeof(rl->last_error));
    rl->freeing = true;
    redisAsyncFree(ac);
    rl->freeing = false;
    lost(rl, false, why);
}

void gw_rl_free(gw_rl *rl)
{
    if (!rl)
        return;
    drop(rl, "the gateway is stopping");
    free(rl);
}

void gw_rl_take(gw_rl *rl, const char *key, gcra_limit lim, gw_limit_fn done, void *ud)
{
    pending *p = calloc(1, sizeof(*p));
    gcra_result r;

    if (!p || !(p->key = strdup(key))) {
        free(p);
        gw_limiter_take_memory(rl->shared, key, lim, &r);
        done(ud, &r);
        return;
    }
    p->rl = rl;
    p->lim = lim;
    p->done = done;
    p->ud = ud;
    if (send_decision(rl, p, false) == ML_OK)
        return;
    if (!rl->shared->redis_enabled) {
        gw_limiter_take_memory(rl->shared, key, lim, &r);
        complete(p, &r);
        return;
    }
    complete_in_memory(rl, p, rl->last_error[0] ? rl->last_error : "cannot send to Redis");
}

void gw_rl_flush(gw_rl *rl)
{
    if (!rl || !rl->ac || !rl->write_due)
        return;
    rl->write_due = false;
    rl->flushing = true;
    redisAsyncHandleWrite(rl->ac); /* may free the context on an error: see lost() */
    rl->flushing = false;
}

void gw_rl_io(gw_rl *rl, uint32_t events)
{
    if (rl->ac && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        redisAsyncHandleRead(rl->ac);
    if (rl->ac && (events & EPOLLOUT))
        redisAsyncHandleWrite(rl->ac);
}

int64_t gw_rl_tick(gw_rl *rl, int64_t now_ms)
{
    char why[200];

    if (rl->ac && !rl->connected && now_ms >= rl->connect_deadline_ms) {
        ml_snprintf(why, sizeof(why), "redis %s:%d: connect timed out after %d ms",
                 rl->shared->url.host, rl->shared->url.port, rl->shared->timeout_ms);
        drop(rl, why);
    } else if (rl->head && now_ms >= rl->head->deadline_ms) {
        ml_snprintf(why, sizeof(why), "redis %s:%d: no reply within %d ms", rl->shared->url.host,
                 rl->shared->url.port, rl->shared->timeout_ms);
        drop(rl, why);
    }
    if (rl->ac && !rl->connected)
        return rl->connect_deadline_ms;
    return rl->head ? rl->head->deadline_ms : -1;
}
