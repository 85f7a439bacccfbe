/* Integration tests: the gateway's batched GCRA (services/gateway/ratelimit.c + gcra_lua)
 * against the real Redis at MINILAMBDA_REDIS_URL. Every decision asked for in one loop
 * iteration goes to Redis as one script call; its answers must equal gcra_decide's, one
 * request after another, whatever mix of keys and limits the batch holds. Keys carry a
 * per-run prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpc.h"
#include "proxy.h"
#include "ratelimit.h"
#include "redis.h"
#include "ml.h"

#define MAX_ASKS 400
#define SEC 1000000LL

static const char *g_url;
static char g_prefix[64];

/* One decision to ask for: key (without the run prefix) under lim. */
typedef struct ask {
    const char *key;
    gcra_limit lim;
} ask;

/* Decisions asked for from one loop task, so they share a loop iteration: one batch, or
 * several in order when there are more than a batch holds. */
typedef struct run run;
typedef struct slot {
    run *r;
    int idx;
} slot;

struct run {
    gw_task task;
    const ask *asks;
    int n;
    pthread_mutex_t lock;
    int done;
    int order[MAX_ASKS]; /* indexes in completion order */
    gcra_result results[MAX_ASKS];
    slot slots[MAX_ASKS];
};

static void on_result(void *ud, const gcra_result *res)
{
    slot *s = ud;

    pthread_mutex_lock(&s->r->lock);
    s->r->results[s->idx] = *res;
    s->r->order[s->r->done++] = s->idx;
    pthread_mutex_unlock(&s->r->lock);
}

static void run_task(gw_loop *l, gw_task *t, bool cancelled)
{
    run *r = (run *)t;
    char key[128];

    for (int i = 0; i < r->n && !cancelled; i++) {
        r->slots[i] = (slot){ r, i };
        ml_snprintf(key, sizeof(key), "%s%s", g_prefix, r->asks[i].key);
        gw_loop_limit(l, key, r->asks[i].lim, on_result, &r->slots[i]);
    }
}

/* Asks for n decisions on proxy p in one task and waits for all of them. */
static void decide(gw_proxy *p, const ask *asks, int n, run *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->task.run = run_task;
    r->asks = asks;
    r->n = n;
    gw_proxy_run(p, &r->task);
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&r->lock);
        int done = r->done;
        pthread_mutex_unlock(&r->lock);
        if (done == n)
            break;
        ml_sleep_ms(10);
    }
    pthread_mutex_destroy(&r->lock);
    assert_int_equal(r->done, n);
}

static gw_proxy *start(gw_limiter *l, metrics_registry *reg)
{
    gw_proxy_config pc = { 1, 0, l, NULL };
    char err[256] = "";
    gw_proxy *p;

    assert_int_equal(gw_limiter_init(l, g_url, 1000, reg, err, sizeof(err)), ML_OK);
    p = gw_proxy_start(&pc, err, sizeof(err));
    assert_non_null(p);
    return p;
}

static void stop(gw_proxy *p, gw_limiter *l)
{
    gw_proxy_stop(p);
    gw_limiter_free(l);
}

/* The results gcra_decide gives asks (fresh keys, all at one instant), in order. */
static void model(const ask *asks, int n, gcra_result *out)
{
    struct key_tat {
        const char *key;
        int64_t tat;
    } keys[16];
    int nkeys = 0;

    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < nkeys && strcmp(keys[k].key, asks[i].key) != 0)
            k++;
        if (k == nkeys)
            keys[nkeys++] = (struct key_tat){ asks[i].key, 0 };
        gcra_decide(&keys[k].tat, 0, asks[i].lim, &out[i]);
    }
}

static void assert_result(const gcra_result *got, const gcra_result *want, int i)
{
    if (got->allowed != want->allowed || got->remaining != want->remaining ||
        got->limit != want->limit || got->retry_after_us != want->retry_after_us ||
        got->reset_after_us != want->reset_after_us)
        fail_msg("decision %d: got allowed=%d remaining=%lld retry=%lld reset=%lld, want "
                 "allowed=%d remaining=%lld retry=%lld reset=%lld", i, got->allowed,
                 (long long)got->remaining, (long long)got->retry_after_us,
                 (long long)got->reset_after_us, want->allowed, (long long)want->remaining,
                 (long long)want->retry_after_us, (long long)want->reset_after_us);
}

static double counter(metrics_registry *reg, const char *name)
{
    ml_buf text = { 0 };
    const char *at;
    double v = -1;

    metrics_render(reg, &text);
    at = strstr(text.data, name);
    while (at && at[strlen(name)] != ' ')
        at = strstr(at + 1, name);
    if (at)
        v = strtod(at + strlen(name) + 1, NULL);
    ml_buf_free(&text);
    return v;
}

/* Two keys, and one key whose limit changes inside the batch (a function's config edited):
 * the TAT one limit left is what the next one starts from. */
static void test_mixed_batch_matches_model(void **state)
{
    gcra_limit a3 = gcra_limit_rps(1, 3), b2 = gcra_limit_rps(2, 2), a6 = gcra_limit_rps(1, 6);
    const ask asks[] = { { "a", a3 }, { "b", b2 }, { "a", a3 }, { "a", a3 }, { "a", a3 },
                         { "b", b2 }, { "b", b2 }, { "a", a6 }, { "a", a6 }, { "a", a3 },
                         { "a", a6 }, { "a", a6 } };
    int n = (int)(sizeof(asks) / sizeof(asks[0]));
    gcra_result want[16];
    metrics_registry *reg = metrics_new();
    gw_limiter l;
    gw_proxy *p = start(&l, reg);
    static run r;
    (void)state;

    decide(p, asks, n, &r);
    /* the batch is replayed group by group: a3's, then b2's, then a6's decisions */
    const ask by_group[] = { asks[0], asks[2], asks[3], asks[4], asks[9], asks[1], asks[5],
                             asks[6], asks[7], asks[8], asks[10], asks[11] };
    const int idx[] = { 0, 2, 3, 4, 9, 1, 5, 6, 7, 8, 10, 11 };
    model(by_group, n, want);
    for (int i = 0; i < n; i++)
        assert_result(&r.results[idx[i]], &want[i], idx[i]);
    assert_int_equal(r.results[0].remaining, 2);
    assert_false(r.results[4].allowed);      /* the 4th request under burst 3 */
    assert_true(r.results[7].allowed);       /* burst 6 has room past the 3 a3 took */
    assert_false(gw_limiter_in_fallback(&l));
    assert_true(counter(reg, "minilambda_gateway_ratelimit_redis_errors_total") == 0);
    stop(p, &l);
    metrics_free(reg);
}

/* More decisions than one batch holds: several script calls, answered in order. */
static void test_batches_stay_in_order(void **state)
{
    static ask asks[300];
    gw_limiter l;
    gw_proxy *p = start(&l, NULL);
    static run r;
    (void)state;

    for (int i = 0; i < 300; i++)
        asks[i] = (ask){ "many", gcra_limit_rps(1, 1000) };
    decide(p, asks, 300, &r);
    for (int i = 0; i < 300; i++) {
        assert_true(r.results[i].allowed);
        assert_int_equal(r.results[i].remaining, 999 - i);
        assert_int_equal(r.order[i], i);
    }
    /* the stored TAT holds all 300: the next request sees 700 left minus itself */
    decide(p, asks, 1, &r);
    assert_true(r.results[0].remaining >= 698 && r.results[0].remaining <= 699);
    stop(p, &l);
}

/* Two loops (two gateway instances' connections) share one budget. */
static void test_budget_shared_across_connections(void **state)
{
    static ask asks[8];
    gw_limiter l1, l2;
    gw_proxy *p1 = start(&l1, NULL), *p2 = start(&l2, NULL);
    static run r1, r2;
    int allowed = 0;
    (void)state;

    for (int i = 0; i < 8; i++)
        asks[i] = (ask){ "shared", gcra_limit_rps(0.1, 5) };
    decide(p1, asks, 4, &r1);
    decide(p2, asks, 8, &r2);
    for (int i = 0; i < 4; i++)
        allowed += r1.results[i].allowed;
    for (int i = 0; i < 8; i++)
        allowed += r2.results[i].allowed;
    assert_int_equal(allowed, 5);
    assert_int_equal(r2.results[0].remaining, 0); /* p1 took 4 of 5 */
    stop(p1, &l1);
    stop(p2, &l2);
}

/* SCRIPT FLUSH (a Redis restart): the batch goes again with EVAL, still decided in Redis. */
static void test_noscript_reloads(void **state)
{
    const ask asks[] = { { "flush", gcra_limit_rps(1, 2) }, { "flush", gcra_limit_rps(1, 2) },
                         { "flush", gcra_limit_rps(1, 2) } };
    rds_options o = { .connect_timeout_ms = 1000, .command_timeout_ms = 1000 };
    char err[256] = "";
    rds_conn *c = rds_new(g_url, &o, err, sizeof(err));
    const char *argv[] = { "SCRIPT", "FLUSH" };
    metrics_registry *reg = metrics_new();
    gw_limiter l;
    gw_proxy *p = start(&l, reg);
    static run r;
    redisReply *rep;
    (void)state;

    assert_non_null(c);
    rep = rds_command(c, 2, argv, NULL);
    assert_non_null(rep);
    freeReplyObject(rep);
    decide(p, asks, 3, &r);
    assert_true(r.results[0].allowed && r.results[1].allowed && !r.results[2].allowed);
    assert_true(counter(reg, "minilambda_gateway_ratelimit_redis_errors_total") == 0);
    stop(p, &l);
    metrics_free(reg);
    rds_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_batch_matches_model),
        cmocka_unit_test(test_batches_stay_in_order),
        cmocka_unit_test(test_budget_shared_across_connections),
        cmocka_unit_test(test_noscript_reloads),
    };
    char id[ML_UUID_LEN];
    int rc;

    g_url = getenv("MINILAMBDA_REDIS_URL");
    if (!g_url || !*g_url) {
        fprintf(stderr, "MINILAMBDA_REDIS_URL is not set (run via tests/run.sh integration)\n");
        return 1;
    }
    ml_uuid(id);
    ml_snprintf(g_prefix, sizeof(g_prefix), "test:rl:%s:", id);
    if (httpc_global_init() != ML_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    httpc_global_cleanup();
    return rc;
}
