/* pgpool.c — bounded pool of pg_conn. See pgpool.h for the health and ownership rules.
 * Lock rule: p->mu guards the slots and counters; no I/O (connect, ping, close) happens
 * under it — a slot being worked on is marked OPENING/BUSY/CLOSING so it keeps its place
 * in the bound while the lock is released. */
#include "pgpool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

#define PGPOOL_DEFAULT_SIZE 8
#define PGPOOL_MAX_SIZE 4096
#define PGPOOL_DEFAULT_IDLE_CHECK_MS 30000
#define PGPOOL_DEFAULT_IDLE_CLOSE_MS 300000

const char *pgpool_status_str(pgpool_status s)
{
    switch (s) {
    case PGPOOL_OK: return "ok";
    case PGPOOL_TIMEOUT: return "timeout";
    case PGPOOL_STOPPED: return "stopped";
    case PGPOOL_CONNECT_FAILED: return "connect_failed";
    case PGPOOL_NOMEM: return "nomem";
    }
    return "unknown";
}

/* ---- metrics (called with mu held) ---- */

static void publish(pgpool *p)
{
    const char *in_use[2] = { p->opts.name, "in_use" };
    const char *idle[2] = { p->opts.name, "idle" };

    if (!p->m_conns)
        return;
    metric_set(p->m_conns, in_use, p->busy);
    metric_set(p->m_conns, idle, p->idle);
}

static void metrics_setup(pgpool *p)
{
    metrics_registry *reg = p->opts.metrics;

    if (!reg)
        return;
    p->m_conns = metrics_gauge(reg, "minilambda_pgpool_connections",
                               "Postgres pool connections by state (in_use, idle)", "pool,state");
    p->m_timeouts = metrics_counter(reg, "minilambda_pgpool_acquire_timeouts_total",
                                    "Postgres pool acquisitions that timed out", "pool");
    p->m_discarded = metrics_counter(reg, "minilambda_pgpool_discarded_total",
                                     "Broken Postgres connections the pool closed", "pool");
    publish(p);
}

/* ---- slots (mu held) ---- */

static int find_slot(const pgpool *p, const pg_conn *c)
{
    for (int i = 0; i < p->opts.size; i++) {
        if (p->slots[i].conn == c && p->slots[i].state == PGPOOL_SLOT_BUSY)
            return i;
    }
    return -1;
}

/* The idle slot released last (LIFO), or -1. */
static int newest_idle(const pgpool *p)
{
    int best = -1;

    for (int i = 0; i < p->opts.size; i++) {
        if (p->slots[i].state == PGPOOL_SLOT_IDLE &&
            (best < 0 || p->slots[i].idle_since_ms >= p->slots[best].idle_since_ms))
            best = i;
    }
    return best;
}

static int free_slot(const pgpool *p)
{
    for (int i = 0; i < p->opts.size; i++) {
        if (p->slots[i].state == PGPOOL_SLOT_FREE)
            return i;
    }
    return -1;
}

/* Leaves slot i (IDLE or BUSY) as CLOSING and returns its connection, which the caller
 * closes without the lock and then hands to slot_closed(). */
static pg_conn *slot_take_for_close(pgpool *p, int i)
{
    pgpool_slot *s = &p->slots[i];
    pg_conn *c = s->conn;

    if (s->state == PGPOOL_SLOT_IDLE)
        p->idle--;
    else if (s->state == PGPOOL_SLOT_BUSY)
        p->busy--;
    s->state = PGPOOL_SLOT_CLOSING;
    publish(p);
    return c;
}

static void slot_closed(pgpool *p, int i)
{
    p->slots[i].state = PGPOOL_SLOT_FREE;
    p->slots[i].conn = NULL;
    pthread_cond_broadcast(&p->cv);
}

/* Closes slot i's connection without holding the lock across the I/O (mu held on entry
 * and on return). */
static void close_slot(pgpool *p, int i)
{
    pg_conn *c = slot_take_for_close(p, i);

    pthread_mutex_unlock(&p->mu);
    pg_close(c);
    pthread_mutex_lock(&p->mu);
    slot_closed(p, i);
}

/* Closes idle connections past idle_close_ms (all of them if `all`). mu held. */
static void close_idle(pgpool *p, bool all)
{
    int64_t now = ml_now_ms();

    for (int i = 0; i < p->opts.size; i++) {
        pgpool_slot *s = &p->slots[i];

        if (s->state != PGPOOL_SLOT_IDLE)
            continue;
        if (all || (p->opts.idle_close_ms > 0 && now - s->idle_since_ms > p->opts.idle_close_ms))
            close_slot(p, i); /* drops the lock: later slots are re-read as they are */
    }
}

/* Waits on cv until deadline_ms (< 0: no limit). 1 if the deadline passed. mu held. */
static int wait_until(pgpool *p, int64_t deadline_ms)
{
    struct timespec ts;
    int64_t left;

    if (deadline_ms < 0) {
        pthread_cond_wait(&p->cv, &p->mu);
        return 0;
    }
    left = deadline_ms - ml_now_ms();
    if (left <= 0)
        return 1;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(left / 1000);
    ts.tv_nsec += (long)(left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT;
}

/* ---- lifecycle ---- */

int pgpool_start(pgpool *p, const char *url, const pgpool_options *opts)
{
    pthread_condattr_t ca;
    int rc = ML_ERR;
    bool mu_ok = false, cv_ok = false;

    if (!p || p->started || !url || !*url)
        return ML_ERR;
    memset(p, 0, sizeof(*p));
    if (opts)
        p->opts = *opts;
    if (p->opts.size <= 0)
        p->opts.size = PGPOOL_DEFAULT_SIZE;
    if (p->opts.size > PGPOOL_MAX_SIZE)
        p->opts.size = PGPOOL_MAX_SIZE;
    if (p->opts.idle_check_ms == 0)
        p->opts.idle_check_ms = PGPOOL_DEFAULT_IDLE_CHECK_MS;
    if (p->opts.idle_close_ms == 0)
        p->opts.idle_close_ms = PGPOOL_DEFAULT_IDLE_CLOSE_MS;
    ml_strlcpy(p->name_buf, opts && opts->name ? opts->name : "postgres", sizeof(p->name_buf));
    p->opts.name = p->name_buf;
    p->opts.pg.application_name = NULL; /* only valid during the call: copied below */
    if (opts && opts->pg.application_name)
        ml_strlcpy(p->app_buf, opts->pg.application_name, sizeof(p->app_buf));
    p->opts.pg.application_name = p->app_buf[0] ? p->app_buf : NULL;

    p->url = strdup(url);
    p->slots = calloc((size_t)p->opts.size, sizeof(*p->slots));
    if (!p->url || !p->slots)
        goto out;
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        goto out;
    mu_ok = true;
    if (pthread_condattr_init(&ca) != 0)
        goto out;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    cv_ok = pthread_cond_init(&p->cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!cv_ok)
        goto out;
    metrics_setup(p);
    p->started = true;
    rc = ML_OK;
out:
    if (rc != ML_OK) {
        if (mu_ok)
            pthread_mutex_destroy(&p->mu);
        free(p->url);
        free(p->slots);
        memset(p, 0, sizeof(*p));
    }
    return rc;
}

void pgpool_stop(pgpool *p)
{
    if (!p || !p->started)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    close_idle(p, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* 1 while anything is checked out, being opened/closed, or waiting. mu held. */
static int pool_active(const pgpool *p)
{
    if (p->waiters > 0)
        return 1;
    for (int i = 0; i < p->opts.size; i++) {
        if (p->slots[i].state != PGPOOL_SLOT_FREE && p->slots[i].state != PGPOOL_SLOT_IDLE)
            return 1;
    }
    return 0;
}

pgpool_status pgpool_close(pgpool *p, int wait_ms)
{
    int64_t deadline = wait_ms < 0 ? -1 : ml_now_ms() + wait_ms;
    pgpool_status st = PGPOOL_OK;

    if (!p || !p->started)
        return PGPOOL_OK;
    pgpool_stop(p);
    pthread_mutex_lock(&p->mu);
    while (pool_active(p)) {
        if (wait_until(p, deadline) && pool_active(p)) {
            st = PGPOOL_TIMEOUT;
            goto out;
        }
    }
    close_idle(p, true); /* released between stop and now: closed on release already */
    p->busy = p->idle = 0;
    publish(p);
out:
    pthread_mutex_unlock(&p->mu);
    if (st != PGPOOL_OK) {
        ml_log_kv(ML_LOG_WARN, "postgres pool closing with connections still checked out",
                  "pool", p->opts.name, NULL);
        return st;
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->slots);
    free(p->url);
    memset(p, 0, sizeof(*p));
    return PGPOOL_OK;
}

/* ---- acquire / release ---- */

/* Opens a connection for an OPENING slot (mu not held); NULL with *st and err set. */
static pg_conn *open_conn(pgpool *p, pgpool_status *st, char *err, size_t errlen)
{
    pg_conn *c = pg_new(p->url, &p->opts.pg);

    if (!c) {
        ml_strlcpy(err, "out of memory", errlen);
        *st = PGPOOL_NOMEM;
        return NULL;
    }
    if (pg_connect(c) != ML_OK) {
        ml_strlcpy(err, pg_error(c), errlen);
        pg_close(c);
        *st = PGPOOL_CONNECT_FAILED;
        return NULL;
    }
    return c;
}

/* 1 if the idle connection c (checked out by us, mu not held) may be handed out. */
static int idle_conn_ok(const pgpool *p, pg_conn *c, int64_t idle_ms)
{
    if (!pg_is_usable(c))
        return 0;
    if (p->opts.idle_check_ms > 0 && idle_ms > p->opts.idle_check_ms)
        return pg_ping(c) == ML_OK;
    return 1;
}

static void count_discard(pgpool *p, const char *why)
{
    const char *v[1] = { p->opts.name };

    p->discarded++;
    if (p->m_discarded)
        metric_inc(p->m_discarded, v);
    ml_log_kv(ML_LOG_WARN, "postgres pool discarded a connection", "pool", p->opts.name,
              "reason", why, NULL);
}

/* Lends idle slot i (called and returning with p->mu held; unlocked while checking it).
 * NULL when its connection had died: the slot is closed, look again. */
static pg_conn *lend_idle(pgpool *p, int i)
{
    int64_t idle_ms = ml_now_ms() - p->slots[i].idle_since_ms;
    pg_conn *c = p->slots[i].conn;

    p->slots[i].state = PGPOOL_SLOT_BUSY;
    p->idle--;
    p->busy++;
    publish(p);
    pthread_mutex_unlock(&p->mu);
    if (idle_conn_ok(p, c, idle_ms)) {
        pthread_mutex_lock(&p->mu);
        return c;
    }
    pthread_mutex_lock(&p->mu);
    count_discard(p, "closed by the server while idle");
    close_slot(p, i);
    return NULL;
}

/* Opens a new connection into free slot i (p->mu held, unlocked while connecting). */
static pgpool_status lend_new(pgpool *p, int i, pg_conn **out)
{
    pgpool_status st = PGPOOL_OK;
    char err[sizeof(p->err)];
    pg_conn *c;

    p->slots[i].state = PGPOOL_SLOT_OPENING;
    pthread_mutex_unlock(&p->mu);
    c = open_conn(p, &st, err, sizeof(err));
    pthread_mutex_lock(&p->mu);
    if (!c) {
        ml_strlcpy(p->err, err, sizeof(p->err));
        slot_closed(p, i);
        return st;
    }
    p->slots[i].conn = c;
    p->slots[i].state = PGPOOL_SLOT_BUSY;
    p->busy++;
    p->opened++;
    publish(p);
    if (p->stopping) { /* stopped while we were connecting */
        close_slot(p, i);
        return PGPOOL_STOPPED;
    }
    *out = c;
    return PGPOOL_OK;
}

static void count_timeout(pgpool *p)
{
    const char *v[1] = { p->opts.name };

    p->timeouts++;
    if (p->m_timeouts)
        metric_inc(p->m_timeouts, v);
}

pgpool_status pgpool_acquire(pgpool *p, int timeout_ms, pg_conn **out)
{
    int64_t deadline = timeout_ms < 0 ? -1 : ml_now_ms() + timeout_ms;
    pgpool_status st = PGPOOL_STOPPED;
    bool timed_out = false;
    int i;

    *out = NULL;
    if (!p || !p->started)
        return PGPOOL_STOPPED;
    pthread_mutex_lock(&p->mu);
    close_idle(p, false);
    while (!p->stopping) {
        if ((i = newest_idle(p)) >= 0) {
            if ((*out = lend_idle(p, i))) {
                st = PGPOOL_OK;
                break;
            }
            continue; /* try the next idle one, or open a new one */
        }
        if ((i = free_slot(p)) >= 0) {
            st = lend_new(p, i, out);
            break;
        }
        if (timed_out || timeout_ms == 0) {
            count_timeout(p);
            st = PGPOOL_TIMEOUT;
            break;
        }
        p->waiters++;
        timed_out = wait_until(p, deadline);
        p->waiters--;
        if (p->waiters == 0)
            pthread_cond_broadcast(&p->cv); /* pgpool_close may wait for the last waiter */
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

/* Gives c back; force closes it whatever its health. */
static void give_back(pgpool *p, pg_conn *c, bool force)
{
    const char *why = force ? "discarded by its user" : NULL;
    int i;

    if (!c)
        return;
    if (!p || !p->started) {
        ml_log_error("pgpool_release: the pool is not started; connection left alone");
        return;
    }
    pthread_mutex_lock(&p->mu);
    i = find_slot(p, c);
    pthread_mutex_unlock(&p->mu);
    if (i < 0) {
        ml_log_kv(ML_LOG_ERROR, "pgpool_release: connection not checked out from this pool",
                  "pool", p->opts.name, NULL);
        return;
    }
    /* The slot stays BUSY (ours) while we look at the connection without the lock. */
    if (!why && pg_in_transaction(c) && (pg_rollback(c) != ML_OK || pg_in_transaction(c)))
        why = "a transaction could not be rolled back";
    if (!why && pg_error_is_connection(c))
        why = "its last call lost the connection";
    if (!why && !pg_is_usable(c))
        why = "the link is down";
    pthread_mutex_lock(&p->mu);
    if (why)
        count_discard(p, why);
    if (why || p->stopping) {
        close_slot(p, i);
    } else {
        p->slots[i].state = PGPOOL_SLOT_IDLE;
        p->slots[i].idle_since_ms = ml_now_ms();
        p->busy--;
        p->idle++;
        publish(p);
        /* one connection came back: one waiter is enough (it re-checks before giving up) */
        pthread_cond_signal(&p->cv);
        close_idle(p, false);
    }
    pthread_mutex_unlock(&p->mu);
}

void pgpool_release(pgpool *p, pg_conn *c)
{
    give_back(p, c, false);
}

void pgpool_discard(pgpool *p, pg_conn *c)
{
    give_back(p, c, true);
}

void pgpool_sweep(pgpool *p)
{
    if (!p || !p->started)
        return;
    pthread_mutex_lock(&p->mu);
    close_idle(p, false);
    pthread_mutex_unlock(&p->mu);
}

void pgpool_get_stats(pgpool *p, pgpool_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (!p || !p->started)
        return;
    pthread_mutex_lock(&p->mu);
    st->size = p->opts.size;
    st->in_use = p->busy;
    st->idle = p->idle;
    for (int i = 0; i < p->opts.size; i++) {
        st->opening += p->slots[i].state == PGPOOL_SLOT_OPENING;
        st->closing += p->slots[i].state == PGPOOL_SLOT_CLOSING;
    }
    st->waiters = p->waiters;
    st->opened = p->opened;
    st->discarded = p->discarded;
    st->timeouts = p->timeouts;
    pthread_mutex_unlock(&p->mu);
}

void pgpool_error(pgpool *p, char *buf, size_t size)
{
    if (!size)
        return;
    buf[0] = '\0';
    if (!p || !p->started)
        return;
    pthread_mutex_lock(&p->mu);
    ml_strlcpy(buf, p->err, size);
    pthread_mutex_unlock(&p->mu);
}
