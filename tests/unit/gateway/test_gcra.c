/* Unit tests: services/gateway/gcra.c — the GCRA math with an injected clock, and the
 * bounded in-memory limiter. (The Redis script is exercised against a real Redis by
 * tests/integration/gateway_e2e.py: shared budgets and the 2% accuracy run.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "gcra.h"

#define SEC 1000000LL

static void test_limit_conversions(void **state)
{
    gcra_limit l;
    (void)state;
    l = gcra_limit_rps(100, 10);
    assert_int_equal(l.interval_us, 10000);
    assert_int_equal(l.burst, 10);
    assert_int_equal(gcra_limit_rps(0.5, 1).interval_us, 2 * SEC);
    assert_int_equal(gcra_limit_rps(3, 0).burst, 1);         /* burst clamped to 1 */
    assert_true(gcra_limit_rps(0, 1).interval_us >= SEC);    /* no division by zero */
    assert_int_equal(gcra_limit_rps(1e9, 1).interval_us, 1); /* at least 1 us */
    assert_int_equal(gcra_limit_per_minute(30, 10).interval_us, 2 * SEC);
}

static void test_burst_then_refill(void **state)
{
    gcra_limit lim = gcra_limit_rps(1, 3);
    gcra_result r;
    int64_t tat = 0, t = 1000 * SEC;
    (void)state;
    for (int i = 0; i < 3; i++) {
        gcra_decide(&tat, t, lim, &r);
        assert_true(r.allowed);
        assert_int_equal(r.limit, 3);
        assert_int_equal(r.remaining, 2 - i);
        assert_int_equal(r.retry_after_us, 0);
        assert_int_equal(r.reset_after_us, (i + 1) * SEC); /* full again after i+1 intervals */
    }
    gcra_decide(&tat, t, lim, &r);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.retry_after_us, SEC);
    assert_int_equal(r.reset_after_us, 3 * SEC);
    /* a denied request costs nothing: the state is unchanged */
    assert_int_equal(tat, t + 3 * SEC);
    /* just before the retry time: still denied, with the remaining wait */
    gcra_decide(&tat, t + SEC - 1, lim, &r);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, 1);
    gcra_decide(&tat, t + SEC, lim, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    /* a long idle period refills the bucket, and no more than the burst */
    gcra_decide(&tat, t + 3600 * SEC, lim, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 2);
}

static void test_steady_rate(void **state)
{
    gcra_limit lim = gcra_limit_rps(10, 1);
    gcra_result r;
    int64_t tat = 0;
    (void)state;
    /* exactly at the rate: every request passes */
    for (int i = 0; i < 1000; i++) {
        gcra_decide(&tat, 5 * SEC + i * (SEC / 10), lim, &r);
        assert_true(r.allowed);
    }
}

/* The acceptance criterion in miniature: 100 rps, burst 10, offered 500 rps for 10 s. */
static void test_accuracy_over_offered_load(void **state)
{
    gcra_limit lim = gcra_limit_rps(100, 10);
    gcra_result r;
    int64_t tat = 0, allowed = 0;
    (void)state;
    for (int64_t k = 0; k < 5000; k++) {
        gcra_decide(&tat, 77 * SEC + k * 2000, lim, &r);
        allowed += r.allowed;
    }
    /* burst + rate x span (9.998 s) = 10 + 999.8 */
    assert_in_range(allowed, 1009, 1011);
}

static void test_mem_keys_are_independent(void **state)
{
    gcra_mem m;
    gcra_result r;
    gcra_limit lim = gcra_limit_rps(1, 2);
    (void)state;
    gcra_mem_init(&m, 0);
    gcra_mem_take(&m, "a", SEC, lim, &r);
    gcra_mem_take(&m, "a", SEC, lim, &r);
    assert_true(r.allowed);
    gcra_mem_take(&m, "a", SEC, lim, &r);
    assert_false(r.allowed);
    gcra_mem_take(&m, "b", SEC, lim, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 1);
    assert_int_equal(m.n, 2);
    gcra_mem_free(&m);
}

static void test_mem_raise_mirrors_shared_state(void **state)
{
    gcra_mem m;
    gcra_result r;
    gcra_limit lim = gcra_limit_rps(10, 5); /* T = 100 ms, burst 5 */
    (void)state;
    gcra_mem_init(&m, 0);
    /* Redis says the bucket is empty (TAT = now + 5 T): the fallback must not start full */
    gcra_mem_raise(&m, "k", SEC, SEC + 5 * lim.interval_us);
    gcra_mem_take(&m, "k", SEC, lim, &r);
    assert_false(r.allowed);
    gcra_mem_take(&m, "k", SEC + lim.interval_us, lim, &r); /* one refills per T */
    assert_true(r.allowed);
    /* never moved back; a full bucket stores nothing */
    gcra_mem_raise(&m, "k", SEC, SEC);
    gcra_mem_take(&m, "k", SEC + lim.interval_us, lim, &r);
    assert_false(r.allowed);
    gcra_mem_raise(&m, "other", SEC, SEC - 1);
    assert_int_equal(m.n, 1);
    gcra_mem_free(&m);
}

static void test_mem_bounded(void **state)
{
    gcra_mem m;
    gcra_result r;
    gcra_limit lim = gcra_limit_rps(1, 1);
    (void)state;
    gcra_mem_init(&m, 2);
    gcra_mem_take(&m, "a", SEC, lim, &r);
    gcra_mem_take(&m, "b", SEC, lim, &r);
    /* full of live keys: an unknown key is allowed but not tracked (fail open) */
    gcra_mem_take(&m, "c", SEC, lim, &r);
    assert_true(r.allowed);
    gcra_mem_take(&m, "c", SEC, lim, &r);
    assert_true(r.allowed);
    assert_int_equal(m.n, 2);
    /* once a and b have refilled they are swept and c gets a slot */
    gcra_mem_take(&m, "c", 10 * SEC, lim, &r);
    assert_true(r.allowed);
    gcra_mem_take(&m, "c", 10 * SEC, lim, &r);
    assert_false(r.allowed);
    assert_int_equal(m.n, 1);
    gcra_mem_free(&m);
}

static void test_lua_mirrors_c(void **state)
{
    (void)state;
    /* the script uses Redis time, keeps digits exact and expires its key */
    assert_non_null(strstr(gcra_lua, "redis.call('TIME')"));
    assert_non_null(strstr(gcra_lua, "string.format('%d', tats[k])"));
    assert_non_null(strstr(gcra_lua, "'PX'"));
    assert_null(strstr(gcra_lua, "tostring"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_conversions),
        cmocka_unit_test(test_burst_then_refill),
        cmocka_unit_test(test_steady_rate),
        cmocka_unit_test(test_accuracy_over_offered_load),
        cmocka_unit_test(test_mem_keys_are_independent),
        cmocka_unit_test(test_mem_raise_mirrors_shared_state),
        cmocka_unit_test(test_mem_bounded),
        cmocka_unit_test(test_lua_mirrors_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
