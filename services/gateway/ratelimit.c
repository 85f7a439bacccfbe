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

/* Decisions asked for during one loop iteration go to Redis together: one EVALSHA per
 * batch of at most MAX_BATCH decisions. The batch's decisions for one key under one limit
 * form a group; Redis admits each group as a whole and answers with the group's TAT before
 * the batch, from which the gateway replays each decision's result (gcra_decide). */
#define MAX_BATCH 128

/* One decision waiting for Redis. */
typedef struct pending {
    struct pending *next;
    char *key;
    gcra_limit lim;
    size_t group; /* index of its group in the batch last sent */
    gw_limit_fn done;
    void *ud;
} pending;

/* Decisions sent as one script call; batches in flight are linked in send order (replies
 * come back in that order). */
typedef struct batch {
    struct batch *prev, *next;
    gw_rl *rl;
    pending *head, *tail;
    size_t n, ngroups;
    int64_t deadline_ms;
    bool reloaded; /* EVAL sent after a NOSCRIPT */
} batch;

/* A batch's groups as send_batch builds them. */
typedef struct group {
    const char *key;
    gcra_limit lim;
    size_t key_index; /* in KEYS, from 1 */
    size_t count;
} group;

typedef struct groups {
    group g[MAX_BATCH];
    const char *keys[MAX_BATCH];
    size_t n, nkeys;
    uint16_t slots[2 * MAX_BATCH]; /* open addressing by key: group index + 1, 0 = free */
} groups;

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
    batch *staged;               /* decisions not yet sent; gw_rl_flush sends them */
    batch *head, *tail;          /* in flight */
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

static void link_tail(gw_rl *rl, batch *b)
{
    b->prev = rl->tail;
    b->next = NULL;
    if (rl->tail)
        rl->tail->next = b;
    else
        rl->head = b;
    rl->tail = b;
}

static void unlink_batch(gw_rl *rl, batch *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        rl->head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        rl->tail = b->prev;
    b->prev = b->next = NULL;
}

/* Hands the result over and frees p (already unlinked). */
static void complete(pending *p, const gcra_result *r)
{
    p->done(p->ud, r);
    free(p->key);
    free(p);
}

/* A decision made in memory. why: the reason Redis could not make it, counted and possibly
 * flipping the fallback flag; NULL when it is not Redis' doing. */
static void decide_in_memory(gw_rl *rl, const char *key, gcra_limit lim, gw_limit_fn done,
                             void *ud, const char *why)
{
    gcra_result r;

    if (why) {
        metric_inc(rl->shared->m_redis_errors, NULL);
        set_fallback(rl->shared, true, why);
    }
    gw_limiter_take_memory(rl->shared, key, lim, &r);
    done(ud, &r);
}

static void complete_in_memory(gw_rl *rl, pending *p, const char *why)
{
    decide_in_memory(rl, p->key, p->lim, p->done, p->ud, why);
    free(p->key);
    free(p);
}

/* Decides every decision of b (unlinked) in memory and frees b. */
static void batch_in_memory(gw_rl *rl, batch *b, const char *why)
{
    while (b->head) {
        pending *p = b->head;
        b->head = p->next;
        complete_in_memory(rl, p, why);
    }
    free(b);
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
        ml_snprintf_trunc(why, sizeof(why), "redis %s:%d: connect: %s", rl->shared->url.host,
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

    ml_snprintf_trunc(why, sizeof(why), "redis %s:%d: connection lost: %s", rl->shared->url.host,
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
        ml_snprintf_trunc(db, sizeof(db), "%d", u->db); /* 16 bytes hold any int: no cut */
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
        ml_snprintf_trunc(why, sizeof(why), "redis %s:%d: %s", u->host, u->port,
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

static int send_batch(gw_rl *rl, batch *b, bool eval);

/* The reply to one batch: per group, its TAT before the batch relative to Redis' now. */
static bool reply_ok(const redisReply *r, size_t ngroups)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != ngroups)
        return false;
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer < 0)
            return false;
    }
    return true;
}

/* Replays b's decisions from the groups' TATs as Redis saw them (time 0 = Redis' now):
 * the same arithmetic gives the same answers the script admitted. Each key's new TAT is
 * mirrored into the memory table (see gcra_mem_raise): a Redis that freezes mid-burst then
 * costs at most the decisions in flight, not an extra burst per key. */
static void complete_batch(gw_rl *rl, batch *b, const redisReply *r)
{
    int64_t tat[MAX_BATCH], now = now_us();

    for (size_t i = 0; i < b->ngroups; i++)
        tat[i] = r->element[i]->integer;
    while (b->head) {
        pending *p = b->head;
        gcra_result res;
        b->head = p->next;
        gcra_decide(&tat[p->group], 0, p->lim, &res);
        if (res.allowed)
            gcra_mem_raise(&rl->shared->mem, p->key, now, now + tat[p->group]);
        complete(p, &res);
    }
    free(b);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    batch *b = privdata;
    gw_rl *rl = b->rl;
    redisReply *r = reply;
    char why[200];

    ML_UNUSED(ac);
    unlink_batch(rl, b);
    if (reply_ok(r, b->ngroups)) {
        rl->backoff_ms = BACKOFF_MIN_MS;
        set_fallback(rl->shared, false, NULL);
        complete_batch(rl, b, r);
        return;
    }
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0 && !b->reloaded) {
        b->reloaded = true; /* EVAL runs the source and puts it back in the script cache */
        if (send_batch(rl, b, true) == ML_OK)
            return;
    }
    ml_snprintf_trunc(why, sizeof(why), "%s", !r ? rl->last_error
                                              : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected script reply");
    batch_in_memory(rl, b, why[0] ? why : "no reply");
}

/* The index in gs of p's group (its key under its limit), added if new. */
static size_t group_of(groups *gs, const pending *p)
{
    uint32_t h = 2166136261u;
    size_t mask = 2 * MAX_BATCH - 1, i, key_index = 0;

    for (const unsigned char *c = (const unsigned char *)p->key; *c; c++)
        h = (h ^ *c) * 16777619u;
    for (i = h & mask; gs->slots[i]; i = (i + 1) & mask) {
        group *g = &gs->g[gs->slots[i] - 1];
        if (strcmp(g->key, p->key) != 0)
            continue;
        if (g->lim.interval_us == p->lim.interval_us && g->lim.burst == p->lim.burst)
            return gs->slots[i] - 1;
        key_index = g->key_index; /* the same key under another limit (a config change) */
    }
    if (!key_index) {
        gs->keys[gs->nkeys] = p->key;
        key_index = ++gs->nkeys;
    }
    gs->g[gs->n] = (group){ p->key, p->lim, key_index, 0 };
    gs->slots[i] = (uint16_t)++gs->n;
    return gs->n - 1;
}

/* Queues EVALSHA (or EVAL) for b: KEYS are its distinct keys, ARGV four numbers per group
 * (key index, interval, burst, count; see gcra_lua). On failure b is left unlinked for the
 * caller. */
static int send_batch(gw_rl *rl, batch *b, bool eval)
{
    groups grp, *gs = &grp; /* only n, nkeys and slots need a start value */
    const char **argv = malloc((3 + 5 * b->n) * sizeof(*argv));
    char *nums = malloc((4 * b->n + 1) * 24), *at = nums;
    size_t argc = 3;
    int rc = ML_ERR;

    if (rl->freeing || !argv || !nums || ensure_connection(rl, ml_now_ms()) != ML_OK)
        goto out;
    gs->n = gs->nkeys = 0;
    memset(gs->slots, 0, sizeof(gs->slots));
    for (pending *p = b->head; p; p = p->next) {
        p->group = group_of(gs, p);
        gs->g[p->group].count++;
    }
    argv[0] = eval ? "EVAL" : "EVALSHA";
    argv[1] = eval ? rl->shared->script.source : rl->shared->script.sha;
    argv[2] = at;
    if (ml_snprintf(at, 24, "%zu", gs->nkeys) != ML_OK)
        goto out;
    at += strlen(at) + 1;
    for (size_t i = 0; i < gs->nkeys; i++)
        argv[argc++] = gs->keys[i];
    for (size_t i = 0; i < gs->n; i++) {
        int64_t v[4] = { (int64_t)gs->g[i].key_index, gs->g[i].lim.interval_us,
                         gs->g[i].lim.burst, (int64_t)gs->g[i].count };
        for (int j = 0; j < 4; j++) {
            argv[argc++] = at;
            if (ml_snprintf(at, 24, "%" PRId64, v[j]) != ML_OK)
                goto out;
            at += strlen(at) + 1;
        }
    }
    b->ngroups = gs->n;
    b->deadline_ms = ml_now_ms() + rl->shared->timeout_ms;
    link_tail(rl, b);
    if (redisAsyncCommandArgv(rl->ac, on_reply, b, (int)argc, argv, NULL) != REDIS_OK) {
        unlink_batch(rl, b);
        goto out;
    }
    rc = ML_OK;
out:
    free(argv);
    free(nums);
    return rc;
}

/* Sends the staged decisions; those Redis cannot take now are decided in memory. */
static void send_staged(gw_rl *rl)
{
    batch *b = rl->staged;

    rl->staged = NULL;
    if (b && send_batch(rl, b, false) != ML_OK)
        batch_in_memory(rl, b, rl->last_error[0] ? rl->last_error : "cannot send to Redis");
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
    if (rl->staged)
        batch_in_memory(rl, rl->staged, rl->last_error);
    free(rl);
}

void gw_rl_take(gw_rl *rl, const char *key, gcra_limit lim, gw_limit_fn done, void *ud)
{
    pending *p = NULL;
    batch *b = rl->staged;

    if (!rl->shared->redis_enabled) {
        decide_in_memory(rl, key, lim, done, ud, NULL);
        return;
    }
    if (rl->freeing || ensure_connection(rl, ml_now_ms()) != ML_OK) {
        decide_in_memory(rl, key, lim, done, ud,
                         rl->last_error[0] ? rl->last_error : "cannot send to Redis");
        return;
    }
    if (!(p = calloc(1, sizeof(*p))) || !(p->key = strdup(key)) ||
        (!b && !(b = calloc(1, sizeof(*b))))) {
        if (p)
            free(p->key);
        free(p);
        decide_in_memory(rl, key, lim, done, ud, NULL); /* out of memory */
        return;
    }
    p->lim = lim;
    p->done = done;
    p->ud = ud;
    b->rl = rl;
    if (b->tail)
        b->tail->next = p;
    else
        b->head = p;
    b->tail = p;
    rl->staged = b;
    if (++b->n == MAX_BATCH)
        send_staged(rl);
}

void gw_rl_flush(gw_rl *rl)
{
    if (!rl)
        return;
    send_staged(rl);
    if (!rl->ac || !rl->write_due)
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
        ml_snprintf_trunc(why, sizeof(why), "redis %s:%d: connect timed out after %d ms",
                       rl->shared->url.host, rl->shared->url.port, rl->shared->timeout_ms);
        drop(rl, why);
    } else if (rl->head && now_ms >= rl->head->deadline_ms) {
        ml_snprintf_trunc(why, sizeof(why), "redis %s:%d: no reply within %d ms", rl->shared->url.host,
                       rl->shared->url.port, rl->shared->timeout_ms);
        drop(rl, why);
    }
    if (rl->ac && !rl->connected)
        return rl->connect_deadline_ms;
    return rl->head ? rl->head->deadline_ms : -1;
}
