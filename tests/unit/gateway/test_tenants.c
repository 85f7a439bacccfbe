/* Unit tests: services/gateway/tenants.c — the access-key and namespace caches and the
 * executor documents they hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "routes.h"
#include "tenants.h"

static void test_akey_parse(void **state)
{
    gw_tn_akey k;
    const char *ok = "{\"access_key_id\":\"AKIA1\",\"secret_access_key\":\"s3\",\"namespace\":\"team-a\","
                     "\"scopes\":\"functions:invoke functions:read\",\"status\":\"active\"}";
    const char *bad[] = {
        "{\"secret_access_key\":\"s3\",\"namespace\":\"Team\",\"status\":\"active\"}",
        "{\"secret_access_key\":\"\",\"namespace\":\"a\",\"status\":\"active\"}",
        "{\"namespace\":\"a\",\"status\":\"active\"}",
        "{\"secret_access_key\":\"s\",\"namespace\":\"a\"}",
        "[]", "not json",
    };
    (void)state;
    assert_int_equal(gw_tn_akey_parse(ok, strlen(ok), &k), ML_OK);
    assert_string_equal(k.secret, "s3");
    assert_string_equal(k.ns, "team-a");
    assert_int_equal(k.scopes, GW_SCOPE_INVOKE | GW_SCOPE_READ);
    assert_true(k.active);
    /* a key never carries admin, whatever its document says */
    const char *adm = "{\"secret_access_key\":\"s\",\"namespace\":\"a\",\"scopes\":\"admin\",\"status\":\"disabled\"}";
    assert_int_equal(gw_tn_akey_parse(adm, strlen(adm), &k), ML_OK);
    assert_int_equal(k.scopes & GW_SCOPE_ADMIN, 0);
    assert_false(k.active);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(gw_tn_akey_parse(bad[i], strlen(bad[i]), &k), ML_ERR);
        assert_string_equal(k.secret, "");
    }
}

static void test_quotas_parse(void **state)
{
    gw_tn_quotas q;
    const char *doc = "{\"name\":\"a\",\"quotas\":{\"max_functions\":10,\"max_concurrency\":null,"
                      "\"builds_per_minute\":0},\"created\":true}";
    (void)state;
    assert_int_equal(gw_tn_quotas_parse(doc, strlen(doc), &q), ML_OK);
    assert_int_equal(q.max_functions, 10);
    assert_int_equal(q.max_concurrency, GW_TN_UNLIMITED);
    assert_int_equal(q.builds_per_minute, 0); /* zero is a limit, not "none" */
    assert_int_equal(gw_tn_quotas_parse("{}", 2, &q), ML_OK);
    assert_int_equal(q.max_functions, GW_TN_UNLIMITED);
    assert_int_equal(gw_tn_quotas_parse("{\"max_concurrency\":3}", 21, &q), ML_OK);
    assert_int_equal(q.max_concurrency, 3);
    assert_int_equal(gw_tn_quotas_parse("nope", 4, &q), ML_ERR);
    assert_int_equal(q.builds_per_minute, GW_TN_UNLIMITED);
}

/* Found entries are fresh for 5 s, not-found ones for 1 s; then stale, then gone. */
static void test_cache_ttls(void **state)
{
    gw_tn_cache c;
    gw_tn_entry e = { .status = 200 }, got;
    (void)state;
    gw_tn_cache_init(&c, GW_TN_KEY_TTL_MS, GW_TN_MISSING_TTL_MS);
    ml_strlcpy(e.key.secret, "s", sizeof(e.key.secret));
    gw_tn_cache_put(&c, "AKIA1", &e, 1000);
    e.status = 404;
    gw_tn_cache_put(&c, "AKIA2", &e, 1000);
    assert_int_equal(gw_tn_cache_get(&c, "AKIA1", 5999, &got), GW_TN_FRESH);
    assert_string_equal(got.key.secret, "s");
    assert_int_equal(gw_tn_cache_get(&c, "AKIA1", 6000, &got), GW_TN_STALE);
    assert_int_equal(gw_tn_cache_get(&c, "AKIA2", 1999, &got), GW_TN_FRESH);
    assert_int_equal(got.status, 404);
    assert_int_equal(gw_tn_cache_get(&c, "AKIA2", 2000, &got), GW_TN_STALE);
    assert_int_equal(gw_tn_cache_get(&c, "AKIA1", 1000 + GW_TN_MAX_STALE_MS, &got), GW_TN_MISS);
    assert_int_equal(gw_tn_cache_get(&c, "AKIA3", 1000, &got), GW_TN_MISS);
    /* replacing keeps one entry */
    e.status = 200;
    gw_tn_cache_put(&c, "AKIA1", &e, 7000);
    assert_int_equal(c.n, 2);
    assert_int_equal(gw_tn_cache_get(&c, "AKIA1", 7001, &got), GW_TN_FRESH);
    gw_tn_cache_free(&c);
}

static void test_cache_bounded(void **state)
{
    gw_tn_cache c;
    gw_tn_entry e = { .status = 404 }, got;
    char id[32];
    (void)state;
    gw_tn_cache_init(&c, 5000, 1000);
    for (int i = 0; i < GW_TN_CACHE_MAX * 2 + 5; i++) {
        ml_snprintf_trunc(id, sizeof(id), "K%d", i);
        gw_tn_cache_put(&c, id, &e, 0);
        assert_true(c.n <= GW_TN_CACHE_MAX);
    }
    assert_int_equal(gw_tn_cache_get(&c, id, 1, &got), GW_TN_FRESH); /* the newest stays */
    gw_tn_cache_free(&c);
}

static gw_tn_cache shared;

static void *hammer(void *arg)
{
    char id[32];
    gw_tn_entry e = { .status = 200 }, got;

    for (int i = 0; i < 20000; i++) {
        ml_snprintf_trunc(id, sizeof(id), "T%ld-%d", (long)(intptr_t)arg, i % 300);
        gw_tn_cache_put(&shared, id, &e, i);
        gw_tn_cache_get(&shared, id, i, &got);
    }
    return NULL;
}

/* Threads share one cache (run under make asan / tsan as well). */
static void test_cache_threads(void **state)
{
    pthread_t t[4];
    (void)state;
    gw_tn_cache_init(&shared, 5000, 1000);
    for (intptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, (void *)i), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(shared.n <= GW_TN_CACHE_MAX);
    gw_tn_cache_free(&shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_akey_parse),
        cmocka_unit_test(test_quotas_parse),
        cmocka_unit_test(test_cache_ttls),
        cmocka_unit_test(test_cache_bounded),
        cmocka_unit_test(test_cache_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
