/* Unit tests: tests/bench/hdr.c, the load generator's latency histogram. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hdr.h"

/* xorshift64*: reproducible values without rand(). */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The exact percentile of a sorted array, with hdr_percentile's rank rule. */
static int64_t exact_percentile(const int64_t *sorted, size_t n, double p)
{
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)n - 1e-9);
    if (want < 1)
        want = 1;
    return sorted[want - 1];
}

static hdr_hist *new_hist(void)
{
    hdr_hist *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    return h;
}

static void test_empty(void **state)
{
    hdr_hist *h = new_hist();
    (void)state;
    assert_int_equal(hdr_percentile(h, 50), 0);
    assert_true(hdr_mean(h) == 0.0);
    free(h);
}

/* Every value below 2,048 has its own counter, so small values come back exactly. */
static void test_exact_small_values(void **state)
{
    hdr_hist *h = new_hist();
    (void)state;
    for (int64_t v = 0; v < HDR_SUB_COUNT; v++) {
        assert_int_equal(hdr_index(v), v);
        assert_int_equal(hdr_lowest_equivalent(hdr_index(v)), v);
        assert_int_equal(hdr_highest_equivalent(hdr_index(v)), v);
        hdr_record(h, v);
    }
    assert_int_equal(h->total, HDR_SUB_COUNT);
    /* rank k (1-based) is value k - 1 */
    for (int k = 1; k <= HDR_SUB_COUNT; k++)
        assert_int_equal(hdr_percentile(h, 100.0 * k / HDR_SUB_COUNT), k - 1);
    assert_int_equal(h->min, 0);
    assert_int_equal(h->max, HDR_SUB_COUNT - 1);
    free(h);
}

/* Every value in range lies within its counter, and the counter is narrower than 1/1,024 of
 * it; counters are contiguous and increasing. */
static void test_bucket_bounds(void **state)
{
    (void)state;
    for (int i = 1; i <= hdr_index(HDR_MAX_VALUE); i++) {
        int64_t lo = hdr_lowest_equivalent(i), hi = hdr_highest_equivalent(i);
        assert_int_equal(lo, hdr_highest_equivalent(i - 1) + 1);
        assert_int_equal(hdr_index(lo), i);
        assert_int_equal(hdr_index(hi), i);
        assert_true((hi - lo + 1) * 1024 <= lo || lo < HDR_SUB_COUNT);
    }
    assert_true(hdr_index(HDR_MAX_VALUE) < HDR_COUNTS);
}

/* 10^6 log-uniform values from 1 µs to 100 s: every percentile is within 0.1 % of the exact
 * one from the sorted array, and never below it. */
static void test_relative_error_random(void **state)
{
    enum { N = 1000000 };
    hdr_hist *h = new_hist();
    int64_t *vals = malloc(N * sizeof(*vals));
    uint64_t seed = 0x9e3779b97f4a7c15u;
    (void)state;
    assert_non_null(vals);
    for (size_t i = 0; i < N; i++) {
        double u = (double)(rng_next(&seed) >> 11) / 9007199254740992.0; /* [0,1) */
        vals[i] = (int64_t)exp(u * log((double)HDR_MAX_VALUE));
        hdr_record(h, vals[i]);
    }
    qsort(vals, N, sizeof(*vals), cmp_i64);
    assert_int_equal(h->min, vals[0]);
    assert_int_equal(h->max, vals[N - 1]);
    for (double p = 0.0; p <= 100.0; p += 0.25) {
        int64_t want = exact_percentile(vals, N, p), got = hdr_percentile(h, p);
        assert_true(got >= want);
        assert_true((double)(got - want) <= (double)want / 1000.0);
    }
    static const double tail[] = { 99.9, 99.99, 99.999, 99.9999 };
    for (size_t i = 0; i < sizeof(tail) / sizeof(tail[0]); i++) {
        int64_t want = exact_percentile(vals, N, tail[i]), got = hdr_percentile(h, tail[i]);
        assert_true(got >= want && (double)(got - want) <= (double)want / 1000.0);
    }
    free(vals);
    free(h);
}

/* Known distributions: uniform 1..10,000 and a 99 %/1 % bimodal one. */
static void test_known_distributions(void **state)
{
    hdr_hist *h = new_hist();
    (void)state;
    for (int64_t v = 1; v <= 10000; v++)
        hdr_record(h, v);
    assert_int_equal(hdr_percentile(h, 10), 1000); /* below 2,048: exact */
    assert_in_range(hdr_percentile(h, 50), 5000, 5005);
    assert_in_range(hdr_percentile(h, 99), 9900, 9909);
    assert_int_equal(hdr_percentile(h, 100), 10000);
    assert_true(fabs(hdr_mean(h) - 5000.5) < 1e-9);

    memset(h, 0, sizeof(*h));
    for (int i = 0; i < 990; i++)
        hdr_record(h, 150);
    for (int i = 0; i < 10; i++)
        hdr_record(h, 1000000); /* a 1 s stall */
    assert_int_equal(hdr_percentile(h, 50), 150);
    assert_int_equal(hdr_percentile(h, 99), 150);
    assert_in_range(hdr_percentile(h, 99.9), 1000000, 1000000); /* kept within max */
    assert_int_equal(hdr_percentile(h, 99.01), 1000000);
    assert_int_equal(hdr_count_le(h, 149), 0);
    assert_int_equal(hdr_count_le(h, 150), 990);
    assert_int_equal(hdr_count_le(h, 999000), 990);
    assert_int_equal(hdr_count_le(h, HDR_MAX_VALUE * 2), 1000);
    assert_int_equal(hdr_count_le(h, -1), 0);
    free(h);
}

static void test_merge(void **state)
{
    hdr_hist *all = new_hist(), *a = new_hist(), *b = new_hist(), *m = new_hist(), *empty = new_hist();
    uint64_t seed = 42;
    (void)state;
    for (int i = 0; i < 100000; i++) {
        int64_t v = (int64_t)(rng_next(&seed) % 5000000);
        hdr_record(all, v);
        hdr_record(i % 3 ? a : b, v);
    }
    hdr_merge(m, a); /* into an empty one */
    hdr_merge(m, b);
    hdr_merge(m, empty); /* an empty one changes nothing (nor its zero min) */
    assert_memory_equal(m->counts, all->counts, sizeof(all->counts));
    assert_int_equal(m->total, all->total);
    assert_int_equal(m->min, all->min);
    assert_int_equal(m->max, all->max);
    assert_true(fabs(m->sum - all->sum) < 1e-3);
    for (double p = 1; p <= 100; p += 1)
        assert_int_equal(hdr_percentile(m, p), hdr_percentile(all, p));
    free(all), free(a), free(b), free(m), free(empty);
}

/* min and max are the exact values, not their counters' bounds. */
static void test_min_max_exact(void **state)
{
    hdr_hist *h = new_hist();
    (void)state;
    hdr_record(h, 123457);
    hdr_record(h, 98765);
    hdr_record(h, 5000001);
    assert_int_equal(h->min, 98765);
    assert_int_equal(h->max, 5000001);
    assert_int_equal(hdr_percentile(h, 0), 98765 + (hdr_highest_equivalent(hdr_index(98765)) - 98765));
    assert_int_equal(hdr_percentile(h, 100), 5000001);
    free(h);
}

static void test_clamping(void **state)
{
    hdr_hist *h = new_hist();
    (void)state;
    hdr_record(h, HDR_MAX_VALUE * 10);
    hdr_record(h, INT64_MAX);
    hdr_record(h, -5);
    hdr_record(h, HDR_MAX_VALUE); /* the top itself is in range */
    assert_int_equal(h->total, 4);
    assert_int_equal(h->clamped, 3);
    assert_int_equal(h->max, HDR_MAX_VALUE);
    assert_int_equal(h->min, 0);
    assert_int_equal(h->counts[hdr_index(HDR_MAX_VALUE)], 3);
    assert_int_equal(h->counts[0], 1);
    assert_int_equal(hdr_percentile(h, 100), HDR_MAX_VALUE);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_exact_small_values),
        cmocka_unit_test(test_bucket_bounds),
        cmocka_unit_test(test_relative_error_random),
        cmocka_unit_test(test_known_distributions),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_min_max_exact),
        cmocka_unit_test(test_clamping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
