/* Integration tests for pgpool.c against a real Postgres.
 * Needs MINILAMBDA_BUILD_DB_URL (fails without it). Each test gives its pool a unique
 * application_name so it can count the pool's server-side backends in pg_stat_activity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deps.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "pgpool.h"
#include "service.h"

static const char *db_url;

/* ---- helpers ---- */

static pg_conn *open_admin(void)
{
    pg_conn *c = pg_new(db_url, NULL);

    assert_non_null(c);
    if (pg_connect(c) != ML_OK)
        fail_msg("connect: %s", pg_error(c));
    return c;
}

/* One int64 from a query with up to 1 text param; fails the test on error. */
static int64_t query_int(pg_conn *c, const char *sql, const char *p1)
{
    const char *v[1] = { p1 };
    PGresult *r = pg_query(c, NULL, sql, p1 ? 1 : 0, v);
    int64_t out = -1;

    if (!r)
        fail_msg("%s: %s", sql, pg_error(c));
    assert_int_equal(PQntuples(r), 1);
    assert_int_equal(pg_get_int64(r, 0, 0, &out), ML_OK);
    PQclear(r);
    return out;
}

static int64_t backend_pid(pg_conn *c)
{
    return query_int(c, "SELECT pg_backend_pid()", NULL);
}

/* Backends the server has for application_name app. */
static int64_t server_conns(pg_conn *admin, const char *app)
{
    return query_int(admin, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                     app);
}

/* Waits up to 2 s for the server to show `want` backends for app; returns the last count. */
static int64_t await_server_conns(pg_conn *admin, const char *app, int64_t want)
{
    int64_t n = -1;

    for (int i = 0; i < 200; i++) {
        if ((n = server_conns(admin, app)) == want)
            break;
        ml_sleep_ms(10);
    }
    return n;
}

/* Terminates backend pid from admin and waits until it is gone. */
static void terminate(pg_conn *admin, int64_t pid)
{
    char p[24];

    ml_snprintf(p, sizeof(p), "%lld", (long long)pid);
    assert_int_equal(query_int(admin, "SELECT pg_terminate_backend($1::int)::int", p), 1);
    for (int i = 0; i < 200; i++) {
        if (query_int(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", p) == 0)
            return;
        ml_sleep_ms(10);
    }
    fail_msg("backend %lld still there after terminate", (long long)pid);
}

static void unique_app(char *out, size_t size)
{
    char id[ML_UUID_LEN];

    ml_uuid(id);
    ml_snprintf(out, size, "pgpool_test_%.8s", id);
}

/* Starts p with a fresh application_name, written to app (64 bytes). */
static void start_pool(pgpool *p, int size, char *app, pgpool_options *extra)
{
    pgpool_options o = { 0 };

    unique_app(app, 64);

    if (extra)
        o = *extra;
    o.size = size;
    o.pg.application_name = app;
    o.pg.connect_timeout_s = 3;
    assert_int_equal(pgpool_start(p, db_url, &o), ML_OK);
}

static pg_conn *acquire_ok(pgpool *p, int timeout_ms)
{
    pg_conn *c = NULL;
    pgpool_status st = pgpool_acquire(p, timeout_ms, &c);
    char err[256];

    if (st != PGPOOL_OK) {
        pgpool_error(p, err, sizeof(err));
        fail_msg("acquire: %s (%s)", pgpool_status_str(st), err);
    }
    assert_non_null(c);
    return c;
}

/* Acquires, reads the backend pid, releases; *conn (may be NULL) gets the connection used. */
static int64_t use_once(pgpool *p, pg_conn **conn)
{
    pg_conn *c = acquire_ok(p, 1000);
    int64_t pid = backend_pid(c);

    pgpool_release(p, c);
    if (conn)
        *conn = c;
    return pid;
}

/* ---- tests ---- */

static void test_zeroed_pool_is_empty_and_stopped(void **state)
{
    pgpool p = { 0 };
    pgpool_stats st;
    pg_conn *c = (pg_conn *)&p; /* must be overwritten with NULL */
    char err[16] = "x";

    (void)state;
    assert_int_equal(pgpool_acquire(&p, 100, &c), PGPOOL_STOPPED);
    assert_null(c);
    pgpool_release(&p, NULL);
    pgpool_sweep(&p);
    pgpool_stop(&p);
    pgpool_get_stats(&p, &st);
    assert_int_equal(st.size, 0);
    assert_int_equal(st.in_use + st.idle, 0);
    pgpool_error(&p, err, sizeof(err));
    assert_string_equal(err, "");
    assert_int_equal(pgpool_close(&p, 0), PGPOOL_OK);
    assert_int_equal(pgpool_start(&p, "", NULL), ML_ERR);
    assert_false(p.started);
    assert_string_equal(pgpool_status_str(PGPOOL_TIMEOUT), "timeout");
}

typedef struct bound_run {
    pgpool *pool;
    atomic_int in_use, max_in_use, done, errors;
    int iterations;
} bound_run;

static void *bound_worker(void *arg)
{
    bound_run *r = arg;

    for (int i = 0; i < r->iterations; i++) {
        pg_conn *c = NULL;
        PGresult *res;
        int now, max;

        if (pgpool_acquire(r->pool, 20000, &c) != PGPOOL_OK) {
            atomic_fetch_add(&r->errors, 1);
            continue;
        }
        now = atomic_fetch_add(&r->in_use, 1) + 1;
        max = atomic_load(&r->max_in_use);
        while (now > max && !atomic_compare_exchange_weak(&r->max_in_use, &max, now))
            ;
        res = pg_query(c, "pgpool_t_sleep", "SELECT pg_backend_pid(), pg_sleep(0.003)", 0, NULL);
        if (!res)
            atomic_fetch_add(&r->errors, 1);
        PQclear(res);
        atomic_fetch_sub(&r->in_use, 1);
        pgpool_release(r->pool, c);
    }
    atomic_fetch_add(&r->done, 1);
    return NULL;
}

/* 12 threads share a pool of 3: never more than 3 connections, on our side or the server's. */
static void test_bound_respected_under_more_threads(void **state)
{
    enum { SIZE = 3, THREADS = 12 };
    pgpool p = { 0 };
    bound_run r = { .pool = &p, .iterations = 15 };
    pthread_t t[THREADS];
    pg_conn *admin = open_admin();
    char app[64];
    int64_t server_max = 0;
    pgpool_stats st;

    (void)state;
    start_pool(&p, SIZE, app, NULL);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, bound_worker, &r), 0);
    while (atomic_load(&r.done) < THREADS) {
        int64_t n = server_conns(admin, app);

        if (n > server_max)
            server_max = n;
        pgpool_get_stats(&p, &st);
        assert_true(st.in_use + st.idle + st.opening + st.closing <= SIZE);
        ml_sleep_ms(2);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pgpool_get_stats(&p, &st);
    print_message("bound: max in use %d (size %d, %d threads), server max %lld, opened %llu\n",
                  atomic_load(&r.max_in_use), SIZE, THREADS, (long long)server_max,
                  (unsigned long long)st.opened);
    assert_int_equal(atomic_load(&r.errors), 0);
    assert_true(atomic_load(&r.max_in_use) <= SIZE);
    assert_int_equal(atomic_load(&r.max_in_use), SIZE); /* 12 threads do fill it */
    assert_true(server_max <= SIZE);
    assert_true(st.opened <= SIZE);
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.idle, (int)st.opened);
    assert_int_equal(pgpool_close(&p, 1000), PGPOOL_OK);
    assert_int_equal(await_server_conns(admin, app, 0), 0);
    pg_close(admin);
}

/* An exhausted pool answers PGPOOL_TIMEOUT after the timeout, counted in the metric. */
static void test_timeout_status_when_exhausted(void **state)
{
    pgpool p = { 0 };
    metrics_registry *reg = metrics_new();
    pgpool_options o = { .metrics = reg, .name = "tmo" };
    const char *lbl_pool[1] = { "tmo" };
    const char *lbl_in_use[2] = { "tmo", "in_use" };
    const char *lbl_idle[2] = { "tmo", "idle" };
    metric *timeouts, *conns;
    pg_conn *a, *b, *c = NULL;
    char app[64];
    int64_t t0, took;

    (void)state;
    assert_non_null(reg);
    start_pool(&p, 2, app, &o);
    a = acquire_ok(&p, 1000);
    b = acquire_ok(&p, 1000);
    assert_ptr_not_equal(a, b);
    conns = metrics_gauge(reg, "minilambda_pgpool_connections", "x", "pool,state");
    timeouts = metrics_counter(reg, "minilambda_pgpool_acquire_timeouts_total", "x", "pool");
    assert_int_equal((int)metric_value(conns, lbl_in_use), 2);
    assert_int_equal((int)metric_value(conns, lbl_idle), 0);

    t0 = ml_now_ms();
    assert_int_equal(pgpool_acquire(&p, 300, &c), PGPOOL_TIMEOUT);
    took = ml_now_ms() - t0;
    assert_null(c);
    assert_true(took >= 290 && took < 2000);
    t0 = ml_now_ms();
    assert_int_equal(pgpool_acquire(&p, 0, &c), PGPOOL_TIMEOUT); /* 0: no wait at all */
    assert_true(ml_now_ms() - t0 < 100);
    assert_int_equal((int)metric_value(timeouts, lbl_pool), 2);

    pgpool_release(&p, a);
    assert_int_equal((int)metric_value(conns, lbl_in_use), 1);
    assert_int_equal((int)metric_value(conns, lbl_idle), 1);
    c = acquire_ok(&p, 0);
    assert_ptr_equal(c, a);
    pgpool_release(&p, c);
    pgpool_release(&p, b);
    assert_int_equal(pgpool_close(&p, 1000), PGPOOL_OK);
    assert_int_equal((int)metric_value(conns, lbl_idle), 0);
    metrics_free(reg);
}

typedef struct waiter {
    pgpool *pool;
    pgpool_status st;
    int64_t took_ms;
} waiter;

static void *wait_acquire(void *arg)
{
    waiter *w = arg;
    pg_conn *c = NULL;
    int64_t t0 = ml_now_ms();

    w->st = pgpool_acquire(w->pool, -1, &c);
    w->took_ms = ml_now_ms() - t0;
    if (c)
        pgpool_release(w->pool, c);
    return NULL;
}

/* A waiter blocked on a full pool gets the connection as soon as another thread releases it. */
static void test_release_wakes_waiter(void **state)
{
    pgpool p = { 0 };
    waiter w = { .pool = &p, .st = PGPOOL_NOMEM };
    pthread_t t;
    pg_conn *a;
    char app[64];

    (void)state;
    start_pool(&p, 1, app, NULL);
    a = acquire_ok(&p, 1000);
    assert_int_equal(pthread_create(&t, NULL, wait_acquire, &w), 0);
    ml_sleep_ms(150);
    pgpool_release(&p, a);
    pthread_join(t, NULL);
    assert_int_equal(w.st, PGPOOL_OK);
    assert_true(w.took_ms >= 100);
    assert_int_equal(pgpool_close(&p, 1000), PGPOOL_OK);
}

/* Release then reacquire hands back the same connection: same backend pid. */
static void test_reacquire_reuses_connection(void **state)
{
    pgpool p = { 0 };
    pg_conn *a, *b, *c;
    int64_t pid_a, pid_b;
    char app[64];
    pgpool_stats st;

    (void)state;
    start_pool(&p, 4, app, NULL);
    pid_a = use_once(&p, &a);
    for (int i = 0; i < 5; i++) {
        c = acquire_ok(&p, 1000);
        assert_ptr_equal(c, a);
        assert_int_equal(backend_pid(c), pid_a);
        pgpool_release(&p, c);
    }
    /* Two at once are two backends; the newest released comes back first. */
    a = acquire_ok(&p, 1000);
    b = acquire_ok(&p, 1000);
    pid_b = backend_pid(b);
    assert_int_not_equal(pid_b, backend_pid(a));
    pgpool_release(&p, a);
    pgpool_release(&p, b);
    c = acquire_ok(&p, 1000);
    assert_int_equal(backend_pid(c), pid_b);
    pgpool_release(&p, c);
    pgpool_get_stats(&p, &st);
    assert_int_equal(st.opened, 2);
    assert_int_equal(st.discarded, 0);
    assert_int_equal(pgpool_close(&p, 1000), PGPOOL_OK);
}

/* A server error leaves the connection usable (kept); an open transaction is rolled back. */
static void test_server_error_and_open_tx_keep_connection(void **state)
{
    pgpool p = { 0 };
    pg_conn *a, *c;
    int64_t pid;
    char app[64];
    pgpool_stats st;

    (void)state;
    start_pool(&p, 1, app, NULL);
    a = acquire_ok(&p, 1000);
    pid = backend_pid(a);
    assert_null(pg_query(a, NULL, "SELECT * FROM no_such_table_pgpool", 0, NULL));
    assert_string_equal(pg_sqlstate(a), "42P01");
    pgpool_release(&p, a);
    c = acquire_ok(&p, 1000);
    assert_int_equal(backend_pid(c), pid);
    assert_int_equal(pg_begin(c), ML_OK);
    assert_int_equal(pg_in_transaction(c), 1);
    pgpool_release(&p, c); /* forgot to commit: rolled back, not leaked to the next user */
    c = acquire_ok(&p, 1000);
    assert_int_equal(pg_in_transaction(c), 0);
    assert_int_equal(backend_pid(c), pid);
    pgpool_release(&p, c);
    pgpool_get_stats(&p, &st);
    assert_int_equal(st.discarded, 0);
    assert_int_equal(pgpool_close(&p, 1000), PGPOOL_OK);
}

/* A connection the server killed is never handed out again, and the pool recovers:
 *  (a) killed while idle in the pool: caught at acquire, before the caller sees it;
 *  (b) killed while checked out: the caller's query fails, release throws it away. */
static void test_broken_connection_not_handed_out(void **state)
{
    pgpool p = { 0 };
    pg_conn *admin = open_admin();
    pg_conn *c;
    int64_t pid1, pid2, pid3;
    char app[64];
    pgpool_stats st;

    (void)state;
    start_pool(&p, 1, app, NULL);

    pid1 = use_once(&p, NULL);
    terminate(admin, pid1); /* (a) */
    c = acquire_ok(&p, 1000);
    assert_true(pg_is_usable(c)); /* handed out healthy, before any query of ours */
    pid2 = backend_pid(c);
    assert_int_not_equal(pid2, pid1);
    pgpool_get_stats(&p, &st);
    assert_int_equal(st.discarded, 1);
    assert_int_equal(st.opened, 2);

    terminate(admin, pid2); /* (b) killed while checked out, given back unused */
    pgpool_release(&p, c);
    pgpool_get_stats(&p, &st);
    assert_int_equal(st.discarded, 2);
    assert_int_equal(st.idle, 0);
    c = acquire_ok(&p, 1000);
    assert_true(pg_is_usable(c));
    pid3 = backend_pid(c);
    assert_int_not_equal(pid3, pid2);
    assert_int_not_equal(pid3, pid1);
    { /* (c) the connection dies under a statement: the call fails with a connection error */
        PGresult *r = pg_query(c, NULL, "SELECT pg_terminate_backend(pg_backend_pid())", 0, NULL);

        assert_null(r);
        assert_true(pg_error_is_connection(c));
    }
    pgpool_release(&p, c);
    pgpool_get_stats(&p, &st);
    assert_int_equal(st.discarded, 3);
    c = acquire_ok(&p, 1000);
    assert_true(backend_pid(c) != pid3);
    pgpool_release(&p, c);
    assert_int_equal(await_server_conns(admin, app, 1), 1);
    assert_int_equal(pgpool_close(&p, 1000), PGPOOL_OK);
    pg_close(admin);
}

/* Idle connections past idle_close_ms are closed; past idle_check_ms they are pinged. */
static void test_idle_expiry(void **state)
{
    pgpool p = { 0 };
    pgpool_options o = { .idle_check_ms = 50, .idle_close_ms = 300 };
    pg_conn *admin = open_admin();
    pg_conn *c;
    int64_t pid;
    char app[64];
    pgpool_stats st;

    (void)state;
    start_pool(&p, 2, app, &o);
    pid = use_once(&p, NULL);
    ml_sleep_ms(100); /* past idle_check: pinged, still fine, same backend */
    c = acquire_ok(&p, 1000);
    assert_int_equal(backend_pid(c), pid);
    pgpool_release(&p, c);
    ml_sleep_ms(400); /* past idle_close */
    pgpool_sweep(&p);
    pgpool_get_stats(&p, &st);
    assert_int_equal(st.idle, 0);
    assert_int_equal(st.discarded, 0); /* expiry is not a discard */
    assert_int_equal(await_server_conns(admin, app, 0), 0);
    c = acquire_ok(&p, 1000);
    assert_int_not_equal(backend_pid(c), pid);
    pgpool_release(&p, c);
    assert_int_equal(pgpool_close(&p, 1000), PGPOOL_OK);
    pg_close(admin);
}

/* Stop with connections checked out: waiters get STOPPED, holders keep working, their
 * connections are closed on release, close waits for them. */
static void test_stop_with_connections_checked_out(void **state)
{
    pgpool p = { 0 };
    waiter w = { .pool = &p, .st = PGPOOL_OK };
    pg_conn *admin = open_admin();
    pg_conn *a, *b, *c = NULL;
    pthread_t t;
    char app[64];
    pgpool_stats st;

    (void)state;
    start_pool(&p, 3, app, NULL);
    a = acquire_ok(&p, 1000);
    b = acquire_ok(&p, 1000);
    c = acquire_ok(&p, 1000);
    backend_pid(b);
    pgpool_release(&p, c); /* one idle */
    c = acquire_ok(&p, 1000);
    assert_int_equal(pthread_create(&t, NULL, wait_acquire, &w), 0);
    ml_sleep_ms(100); /* the waiter blocks: all 3 are out */
    pgpool_release(&p, c); /* ...and takes this one */
    ml_sleep_ms(50);
    pthread_join(t, NULL);
    assert_int_equal(w.st, PGPOOL_OK);

    /* now: a and b out, one idle. A new waiter blocks only if the pool is full: take it. */
    c = acquire_ok(&p, 1000);
    w.st = PGPOOL_OK;
    assert_int_equal(pthread_create(&t, NULL, wait_acquire, &w), 0);
    ml_sleep_ms(100);
    pgpool_stop(&p);
    pthread_join(t, NULL);
    assert_int_equal(w.st, PGPOOL_STOPPED);
    {
        pg_conn *x = NULL;

        assert_int_equal(pgpool_acquire(&p, 100, &x), PGPOOL_STOPPED);
        assert_null(x);
    }
    /* holders still work */
    assert_true(backend_pid(a) > 0);
    assert_int_equal(pgpool_close(&p, 100), PGPOOL_TIMEOUT); /* still out: nothing freed */
    assert_true(p.started);
    assert_int_equal(server_conns(admin, app), 3);
    pgpool_release(&p, a);
    pgpool_release(&p, c);
    assert_int_equal(await_server_conns(admin, app, 1), 1); /* closed on release */
    pgpool_get_stats(&p, &st);
    assert_int_equal(st.in_use, 1);
    assert_int_equal(st.idle, 0);
    pgpool_release(&p, b);
    assert_int_equal(pgpool_close(&p, 1000), PGPOOL_OK);
    assert_false(p.started);
    assert_int_equal(await_server_conns(admin, app, 0), 0);
    pg_close(admin);
}

/* close waits for a connection released from another thread a little later. */
typedef struct late_release {
    pgpool *pool;
    pg_conn *c;
} late_release;

static void *release_later(void *arg)
{
    late_release *l = arg;

    ml_sleep_ms(150);
    pgpool_release(l->pool, l->c);
    return NULL;
}

static void test_close_waits_for_release(void **state)
{
    pgpool p = { 0 };
    late_release l = { .pool = &p };
    pthread_t t;
    char app[64];

    (void)state;
    start_pool(&p, 2, app, NULL);
    l.c = acquire_ok(&p, 1000);
    assert_int_equal(pthread_create(&t, NULL, release_later, &l), 0);
    assert_int_equal(pgpool_close(&p, 5000), PGPOOL_OK);
    pthread_join(t, NULL);
    assert_false(p.started);
}

/* An unreachable server: PGPOOL_CONNECT_FAILED with a message, and the slot is given back. */
static void test_connect_failure(void **state)
{
    pgpool p = { 0 };
    pgpool_options o = { .size = 1 };
    pg_conn *c = NULL;
    char err[256];
    pgpool_stats st;

    (void)state;
    o.pg.connect_timeout_s = 1;
    o.pg.reconnect_attempts = 1;
    assert_int_equal(pgpool_start(&p, "postgresql://postgres@127.0.0.1:1/nodb", &o), ML_OK);
    assert_int_equal(pgpool_acquire(&p, 1000, &c), PGPOOL_CONNECT_FAILED);
    assert_null(c);
    pgpool_error(&p, err, sizeof(err));
    assert_non_null(strstr(err, "connect"));
    pgpool_get_stats(&p, &st);
    assert_int_equal(st.opening + st.in_use + st.idle, 0);
    assert_int_equal(pgpool_acquire(&p, 1000, &c), PGPOOL_CONNECT_FAILED); /* not TIMEOUT */
    assert_int_equal(pgpool_close(&p, 1000), PGPOOL_OK);
}

/* deps: threads of a pooled service borrow d->db around query groups; nested borrows are one;
 * a thread exiting while holding it gives it back; pool size 0 means a connection a thread. */
typedef struct deps_run {
    deps_config *cfg;
    pgpool *pool;
    int64_t pid_outer, pid_inner;
    int null_before, null_after, acquire_st, hold_at_exit;
} deps_run;

static void *deps_thread_main(void *arg)
{
    deps_run *r = arg;
    deps *d = deps_thread_pooled(r->cfg, DEPS_BUILD_DB, NULL, "pgpool-test", r->pool);

    if (!d)
        return NULL;
    r->null_before = d->db == NULL;
    r->acquire_st = deps_db_acquire(d);
    if (r->acquire_st != PGPOOL_OK)
        return NULL;
    r->pid_outer = query_int(d->db, "SELECT pg_backend_pid()", NULL);
    if (deps_db_acquire(d) == PGPOOL_OK) { /* nested: same connection */
        r->pid_inner = query_int(d->db, "SELECT pg_backend_pid()", NULL);
        deps_db_release(d);
    }
    if (r->hold_at_exit)
        return NULL; /* the thread's deps destructor must give it back */
    deps_db_release(d);
    r->null_after = d->db == NULL;
    return NULL;
}

static void test_deps_pooled_threads(void **state)
{
    deps_config cfg = { .build_db_url = db_url, .db_pool_size = 2, .db_pool_timeout_ms = 1000 };
    metrics_registry *reg = metrics_new();
    svc s = { .name = "pgpool-deps-test", .metrics = reg };
    pgpool pool = { 0 };
    deps_run r = { .cfg = &cfg, .pool = &pool };
    pthread_t t;
    pgpool_stats st;

    (void)state;
    assert_int_equal(deps_pool_start(&pool, &cfg, DEPS_BUILD_DB, &s), ML_OK);
    assert_true(pool.started);
    for (int i = 0; i < 2; i++) {
        r.hold_at_exit = i;
        assert_int_equal(pthread_create(&t, NULL, deps_thread_main, &r), 0);
        pthread_join(t, NULL);
        assert_int_equal(r.acquire_st, PGPOOL_OK);
        assert_true(r.null_before);
        assert_true(r.pid_outer > 0);
        assert_int_equal(r.pid_inner, r.pid_outer);
        assert_true(i == 1 || r.null_after);
        pgpool_get_stats(&pool, &st);
        assert_int_equal(st.in_use, 0); /* given back, also by the exiting thread */
        assert_int_equal(st.idle, 1);
    }
    assert_int_equal(pgpool_close(&pool, 1000), PGPOOL_OK);

    cfg.db_pool_size = 0; /* no pool: each thread its own connection, acquire is a no-op */
    assert_int_equal(deps_pool_start(&pool, &cfg, DEPS_BUILD_DB, &s), ML_OK);
    assert_false(pool.started);
    r = (deps_run){ .cfg = &cfg, .pool = &pool };
    assert_int_equal(pthread_create(&t, NULL, deps_thread_main, &r), 0);
    pthread_join(t, NULL);
    assert_false(r.null_before);
    assert_int_equal(r.pid_inner, r.pid_outer);
    assert_false(r.null_after);
    metrics_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zeroed_pool_is_empty_and_stopped),
        cmocka_unit_test(test_bound_respected_under_more_threads),
        cmocka_unit_test(test_timeout_status_when_exhausted),
        cmocka_unit_test(test_release_wakes_waiter),
        cmocka_unit_test(test_reacquire_reuses_connection),
        cmocka_unit_test(test_server_error_and_open_tx_keep_connection),
        cmocka_unit_test(test_broken_connection_not_handed_out),
        cmocka_unit_test(test_idle_expiry),
        cmocka_unit_test(test_stop_with_connections_checked_out),
        cmocka_unit_test(test_close_waits_for_release),
        cmocka_unit_test(test_connect_failure),
        cmocka_unit_test(test_deps_pooled_threads),
    };

    db_url = getenv("MINILAMBDA_BUILD_DB_URL");
    if (!db_url || !*db_url) {
        fprintf(stderr, "MINILAMBDA_BUILD_DB_URL is not set\n");
        return 1;
    }
    ml_log_init("test_pgpool", ML_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
