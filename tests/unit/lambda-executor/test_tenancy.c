/* test_tenancy.c — the namespace admin API's request checks (tenancy.c): configured
 * defaults, quota values, create and PATCH bodies (unknown members, names, types), ?limit=. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "jsoncheck.h"
#include "tenancy.h"

static const int64_t defs[TENANCY_NQUOTAS] = { 7, TENANCY_UNLIMITED, 30 };

static cJSON *parse(const char *text)
{
    cJSON *j = jsoncheck_parse(text, strlen(text), NULL);

    assert_non_null(j);
    return j;
}

/* The create body's verdict: ML_OK, or the error code (compared by the caller). */
static const char *create(const char *text, char name[TENANT_MAX + 1], tenancy_quotas *q)
{
    cJSON *j = parse(text);
    tenancy_err e = { 0 };
    int rc = tenancy_create_parse(j, defs, name, q, &e);

    cJSON_Delete(j);
    if (rc == ML_OK)
        return "ok";
    assert_int_equal(e.status, 400);
    assert_true(e.msg[0] != '\0');
    return e.code;
}

static const char *patch(const char *text, tenancy_quotas *q)
{
    cJSON *j = parse(text);
    tenancy_err e = { 0 };
    int rc = tenancy_patch_parse(j, defs, q, &e);

    cJSON_Delete(j);
    return rc == ML_OK ? "ok" : e.code;
}

static void test_defaults(void **state)
{
    int64_t v;

    (void)state;
    assert_int_equal(tenancy_default_parse("", &v), ML_OK);
    assert_int_equal(v, TENANCY_UNLIMITED);
    assert_int_equal(tenancy_default_parse(NULL, &v), ML_OK);
    assert_int_equal(v, TENANCY_UNLIMITED);
    assert_int_equal(tenancy_default_parse("12", &v), ML_OK);
    assert_int_equal(v, 12);
    assert_int_equal(tenancy_default_parse("2147483647", &v), ML_OK);
    assert_int_equal(tenancy_default_parse("0", &v), ML_ERR);
    assert_int_equal(tenancy_default_parse("-3", &v), ML_ERR);
    assert_int_equal(tenancy_default_parse("2147483648", &v), ML_ERR);
    assert_int_equal(tenancy_default_parse("5x", &v), ML_ERR);
    assert_int_equal(tenancy_default_parse(" ", &v), ML_ERR);
}

static void test_create_body(void **state)
{
    char name[TENANT_MAX + 1];
    tenancy_quotas q;

    (void)state;
    assert_string_equal(create("{\"name\":\"team-a\"}", name, &q), "ok");
    assert_string_equal(name, "team-a");
    for (int i = 0; i < TENANCY_NQUOTAS; i++) {
        assert_int_equal(q.val[i], defs[i]);
        assert_false(q.set[i]);
    }
    assert_string_equal(create("{\"name\":\"b\",\"quotas\":{\"max_functions\":3,\"builds_per_minute\":null}}",
                               name, &q), "ok");
    assert_int_equal(q.val[0], 3);
    assert_true(q.set[0]);
    assert_int_equal(q.val[1], TENANCY_UNLIMITED);
    assert_false(q.set[1]);
    assert_int_equal(q.val[2], TENANCY_UNLIMITED);
    assert_true(q.set[2]);
    assert_string_equal(create("{\"name\":\"c\",\"quotas\":{\"max_concurrency\":2147483647}}", name, &q), "ok");

    assert_string_equal(create("{}", name, &q), "missing_field");
    assert_string_equal(create("[]", name, &q), "invalid_body");
    assert_string_equal(create("\"team-a\"", name, &q), "invalid_body");
    assert_string_equal(create("{\"name\":\"Team\"}", name, &q), "invalid_namespace");
    assert_string_equal(create("{\"name\":\"a-\"}", name, &q), "invalid_namespace");
    assert_string_equal(create("{\"name\":\"\"}", name, &q), "invalid_namespace");
    assert_string_equal(create("{\"name\":7}", name, &q), "invalid_namespace");
    assert_string_equal(create("{\"name\":\"a\",\"owner\":\"x\"}", name, &q), "invalid_field");
    assert_string_equal(create("{\"name\":\"a\",\"quotas\":null}", name, &q), "invalid_field");
    assert_string_equal(create("{\"name\":\"a\",\"quotas\":{\"max_memory\":1}}", name, &q), "invalid_field");
    const char *bad[] = { "0", "-1", "1.5", "\"3\"", "true", "2147483648", "[1]", "{}", "1e300" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "{\"name\":\"a\",\"quotas\":{\"max_functions\":%s}}", bad[i]);
        assert_string_equal(create(text, name, &q), "invalid_field");
    }
}

static void test_patch_body(void **state)
{
    tenancy_quotas q;

    (void)state;
    assert_string_equal(patch("{\"quotas\":{}}", &q), "ok");
    assert_false(q.set[0] || q.set[1] || q.set[2]);
    assert_string_equal(patch("{\"quotas\":{\"max_concurrency\":4}}", &q), "ok");
    assert_true(q.set[1] && !q.set[0] && !q.set[2]);
    assert_int_equal(q.val[1], 4);
    assert_string_equal(patch("{}", &q), "missing_field");
    assert_string_equal(patch("{\"quotas\":{},\"name\":\"x\"}", &q), "invalid_field");
    assert_string_equal(patch("{\"quotas\":{\"max_functions\":0}}", &q), "invalid_field");
}

static void test_limit(void **state)
{
    tenancy_err e;
    int64_t n;

    (void)state;
    assert_int_equal(tenancy_limit_parse(NULL, &n, &e), ML_OK);
    assert_int_equal(n, TENANCY_LIST_DEFAULT);
    assert_int_equal(tenancy_limit_parse("1000", &n, &e), ML_OK);
    assert_int_equal(tenancy_limit_parse("0", &n, &e), ML_ERR);
    assert_string_equal(e.code, "invalid_query");
    assert_int_equal(tenancy_limit_parse("1001", &n, &e), ML_ERR);
    assert_int_equal(tenancy_limit_parse("", &n, &e), ML_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_create_body),
        cmocka_unit_test(test_patch_body),
        cmocka_unit_test(test_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
