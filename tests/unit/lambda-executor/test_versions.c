/* test_versions.c — the pure rules of versions and aliases (versions_rules.c): qualifier and
 * alias-name syntax, the routing object's validation, the weighted pick and its generator
 * (uniform, per-thread streams that differ). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "versions.h"

static void test_alias_names(void **state)
{
    char long_name[130];

    (void)state;
    assert_true(ver_alias_name_valid("live"));
    assert_true(ver_alias_name_valid("prod_v2-canary"));
    assert_true(ver_alias_name_valid("1a"));
    assert_true(ver_alias_name_valid("a1"));
    assert_false(ver_alias_name_valid("123"));      /* all digits: a version number */
    assert_false(ver_alias_name_valid("$LATEST"));
    assert_false(ver_alias_name_valid(""));
    assert_false(ver_alias_name_valid(NULL));
    assert_false(ver_alias_name_valid("a.b"));
    assert_false(ver_alias_name_valid("a b"));
    assert_false(ver_alias_name_valid("a/b"));
    memset(long_name, 'a', 128);
    long_name[128] = '\0';
    assert_true(ver_alias_name_valid(long_name));
    long_name[128] = 'a';
    long_name[129] = '\0';
    assert_false(ver_alias_name_valid(long_name)); /* 129 */
}

static void test_qualifier_kinds(void **state)
{
    int64_t n = 0;

    (void)state;
    assert_int_equal(ver_qualifier_kind(NULL, &n), QUAL_LATEST);
    assert_int_equal(ver_qualifier_kind("", &n), QUAL_LATEST);
    assert_int_equal(ver_qualifier_kind("$LATEST", &n), QUAL_LATEST);
    assert_int_equal(ver_qualifier_kind("7", &n), QUAL_NUMBER);
    assert_int_equal(n, 7);
    assert_int_equal(ver_qualifier_kind("2147483647", &n), QUAL_NUMBER);
    assert_int_equal(n, 2147483647);
    assert_int_equal(ver_qualifier_kind("2147483648", &n), QUAL_INVALID); /* all digits, too big */
    assert_int_equal(ver_qualifier_kind("0", &n), QUAL_INVALID);
    assert_int_equal(ver_qualifier_kind("007", &n), QUAL_INVALID);
    assert_int_equal(ver_qualifier_kind("live", &n), QUAL_ALIAS);
    assert_int_equal(ver_qualifier_kind("$latest", &n), QUAL_INVALID);
    assert_int_equal(ver_qualifier_kind("-1", &n), QUAL_ALIAS); /* a legal alias name */
}

/* ver_routing_parse of JSON text: its return code, *out filled. */
static int routing(const char *text, ver_routing *out)
{
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    char err[256];
    int rc = ver_routing_parse(o, out, err, sizeof(err));

    cJSON_Delete(o);
    return rc;
}

static void test_routing(void **state)
{
    ver_routing r;

    (void)state;
    assert_int_equal(routing(NULL, &r), ML_OK);
    assert_int_equal(r.extra, 0);
    assert_int_equal(routing("null", &r), ML_OK);
    assert_int_equal(r.extra, 0);
    assert_int_equal(routing("{}", &r), ML_OK);
    assert_int_equal(r.extra, 0);
    assert_int_equal(routing("{\"4\":0.1}", &r), ML_OK);
    assert_int_equal(r.extra, 4);
    assert_true(r.weight > 0.0999 && r.weight < 0.1001);
    assert_int_equal(routing("{\"4\":0}", &r), ML_OK);
    assert_int_equal(routing("{\"4\":0.999}", &r), ML_OK);
    assert_int_equal(routing("{\"4\":1}", &r), ML_ERR);          /* [0, 1) */
    assert_int_equal(routing("{\"4\":-0.1}", &r), ML_ERR);
    assert_int_equal(routing("{\"4\":\"0.1\"}", &r), ML_ERR);
    assert_int_equal(routing("{\"4\":0.1,\"5\":0.1}", &r), ML_ERR); /* at most one */
    assert_int_equal(routing("{\"$LATEST\":0.1}", &r), ML_ERR);  /* published versions only */
    assert_int_equal(routing("{\"live\":0.1}", &r), ML_ERR);
    assert_int_equal(routing("{\"0\":0.1}", &r), ML_ERR);
    assert_int_equal(routing("[1]", &r), ML_ERR);
    assert_int_equal(routing("0.1", &r), ML_ERR);
}

static void test_pick(void **state)
{
    ver_routing none = { 0 }, split = { .extra = 4, .weight = 0.25 }, zero = { .extra = 4, .weight = 0 };

    (void)state;
    assert_int_equal(ver_pick(3, &none, 0.0), 3);
    assert_int_equal(ver_pick(3, NULL, 0.0), 3);
    assert_int_equal(ver_pick(3, &split, 0.0), 4);
    assert_int_equal(ver_pick(3, &split, 0.2499), 4);
    assert_int_equal(ver_pick(3, &split, 0.25), 3);
    assert_int_equal(ver_pick(3, &split, 0.9999), 3);
    assert_int_equal(ver_pick(3, &zero, 0.0), 3);
    assert_int_equal(ver_pick(0, &none, 0.5), 0); /* $LATEST */
}

/* 100,000 draws: within [0, 1), each tenth holds 10 % +- 0.6 %, and a 10 % split lands
 * within +- 0.5 % of its weight. */
static void test_rand_uniform(void **state)
{
    enum { N = 100000 };
    int bins[10] = { 0 }, extra = 0;
    ver_routing split = { .extra = 2, .weight = 0.1 };

    (void)state;
    for (int i = 0; i < N; i++) {
        double d = ver_rand01();
        assert_true(d >= 0.0 && d < 1.0);
        bins[(int)(d * 10)]++;
        extra += ver_pick(1, &split, ver_rand01()) == 2;
    }
    for (int b = 0; b < 10; b++)
        assert_in_range(bins[b], N / 10 - 600, N / 10 + 600);
    assert_in_range(extra, N / 10 - 500, N / 10 + 500);
}

static void *first_draws(void *arg)
{
    double *out = arg;

    for (int i = 0; i < 4; i++)
        out[i] = ver_rand01();
    return NULL;
}

/* Every thread seeds its own stream: two threads do not draw the same sequence. */
static void test_rand_per_thread(void **state)
{
    double a[4], b[4];
    pthread_t ta, tb;

    (void)state;
    assert_int_equal(pthread_create(&ta, NULL, first_draws, a), 0);
    assert_int_equal(pthread_create(&tb, NULL, first_draws, b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_memory_not_equal(a, b, sizeof(a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alias_names),   cmocka_unit_test(test_qualifier_kinds),
        cmocka_unit_test(test_routing),       cmocka_unit_test(test_pick),
        cmocka_unit_test(test_rand_uniform),  cmocka_unit_test(test_rand_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
