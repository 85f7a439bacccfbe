/* Unit tests: services/build-master/validate.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include <stdio.h>

#include "ml.h"
#include "validate.h"

/* Validates a JSON document as a JSON body (form false) or form fields; returns the failing
 * field or "" on success. */
static const char *check_as(const char *json, bool form, fn_spec *spec)
{
    static char field[32];
    const char *f = NULL;
    char err[256];
    cJSON *o = cJSON_Parse(json);
    int rc;

    assert_non_null(o);
    rc = validate_function(o, form, spec, &f, err, sizeof(err));
    ml_strlcpy(field, rc == ML_OK ? "" : f, sizeof(field)); /* f may point into o */
    cJSON_Delete(o);
    return field;
}

static const char *check(const char *json, fn_spec *spec)
{
    return check_as(json, false, spec);
}

static const char *check_form(const char *json, fn_spec *spec)
{
    return check_as(json, true, spec);
}

static void test_valid_with_defaults(void **state)
{
    fn_spec s;
    (void)state;
    assert_string_equal(check("{\"name\":\"my-fn_1\",\"runtime\":\"python3\",\"handler\":\"app.handler\"}", &s), "");
    assert_string_equal(s.name, "my-fn_1");
    assert_int_equal(cJSON_GetObjectItem(s.config, "memory_mb")->valueint, 128);
    assert_int_equal(cJSON_GetObjectItem(s.config, "timeout_s")->valueint, 30);
    validate_free(&s);
    /* form fields arrive as strings */
    assert_string_equal(check_form("{\"name\":\"f\",\"runtime\":\"nodejs\",\"handler\":\"index.handler\","
                              "\"memory_mb\":\"256\",\"env\":\"{\\\"A\\\":\\\"b\\\"}\","
                              "\"rate_limit\":\"{\\\"rps\\\":5,\\\"burst\\\":10}\"}", &s), "");
    assert_int_equal(cJSON_GetObjectItem(s.config, "memory_mb")->valueint, 256);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(s.config, "env"), "A")->valuestring, "b");
    validate_free(&s);
    assert_string_equal(check("{\"name\":\"p\",\"runtime\":\"provided\"}", &s), "");
    assert_string_equal(s.handler, "bootstrap");
    assert_int_equal(cJSON_GetObjectItem(s.config, "concurrency")->valueint, 10);
    validate_free(&s);
    /* AWS's runtime names, description and tags (docs/versions.md) ride in the config */
    assert_string_equal(check("{\"name\":\"p\",\"runtime\":\"python3.12\",\"handler\":\"app.h\","
                              "\"description\":\"d\",\"tags\":{\"team\":\"a\"}}", &s), "");
    assert_string_equal(s.runtime, "python3.12");
    assert_string_equal(cJSON_GetObjectItem(s.config, "description")->valuestring, "d");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(s.config, "tags"), "team")->valuestring, "a");
    validate_free(&s);
    assert_string_equal(check_form("{\"name\":\"p\",\"runtime\":\"provided.al2023\",\"description\":\"d\","
                                   "\"tags\":\"{\\\"k\\\":\\\"v\\\"}\"}", &s), "");
    assert_string_equal(s.handler, "bootstrap");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(s.config, "tags"), "k")->valuestring, "v");
    validate_free(&s);
    assert_string_equal(check("{\"name\":\"p\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"tags\":{\"k\":null}}", &s), "tags");
    assert_string_equal(check("{\"name\":\"p\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"description\":7}", &s), "description");
    assert_string_equal(check("{\"name\":\"p\",\"runtime\":\"java21\",\"handler\":\"a.b\"}", &s), "runtime");
    /* concurrency null is "no cap", as PATCH takes it (fnspec's table) */
    assert_string_equal(check("{\"name\":\"p\",\"runtime\":\"provided\",\"concurrency\":null}", &s), "");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(s.config, "concurrency")));
    validate_free(&s);
}

static void test_each_bad_field_named(void **state)
{
    static const struct { const char *json, *field; } cases[] = {
        { "{\"runtime\":\"python3\",\"handler\":\"a.b\"}", "name" },
        { "{\"name\":\"-x\",\"runtime\":\"python3\",\"handler\":\"a.b\"}", "name" },
        { "{\"name\":\"a/b\",\"runtime\":\"python3\",\"handler\":\"a.b\"}", "name" },
        { "{\"name\":\"0b7f1c1e-3a51-4bd3-9a8e-2d3f4c5b6a79\",\"runtime\":\"python3\",\"handler\":\"a.b\"}", "name" },
        { "{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"runtime\":\"python3\",\"handler\":\"a.b\"}", "name" },
        { "{\"name\":\"x\",\"runtime\":\"ruby\",\"handler\":\"a.b\"}", "runtime" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"app\"}", "handler" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"my-app.h\"}", "handler" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"memory_mb\":63}", "memory_mb" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"memory_mb\":4097}", "memory_mb" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"memory_mb\":128.5}", "memory_mb" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"timeout_s\":0}", "timeout_s" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"timeout_s\":\"901\"}", "timeout_s" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"concurrency\":0}", "concurrency" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"env\":[1]}", "env" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"env\":{\"A\":1}}", "env" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"env\":{\"1A\":\"v\"}}", "env" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"rate_limit\":{\"rps\":0}}", "rate_limit" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"rate_limit\":\"nope\"}", "rate_limit" },
        /* the executor refuses a config whose rate_limit has other members: so does POST */
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"rate_limit\":{\"rps\":1,\"x\":1}}", "rate_limit" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"webhook_url\":\"ftp://h/x\"}", "webhook_url" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"webhook_url\":\"http://\"}", "webhook_url" },
    };
    fn_spec s;
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *f = check(cases[i].json, &s);
        if (strcmp(f, cases[i].field) != 0)
            fail_msg("case %zu: expected %s, got '%s'", i, cases[i].field, f);
    }
}

/* One schema for create and PATCH (fnspec): a JSON body's members must have their kind. */
static void test_json_kinds_strict(void **state)
{
    static const struct { const char *json, *field; } cases[] = {
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"timeout_s\":\"30\"}", "timeout_s" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"timeout_s\":null}", "timeout_s" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"memory_mb\":\"128\"}", "memory_mb" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"env\":null}", "env" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"env\":\"{}\"}", "env" },
        { "{\"name\":null,\"runtime\":\"python3\",\"handler\":\"a.b\"}", "name" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":5}", "handler" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"webhook_url\":null}", "webhook_url" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"max_retries\":1}", "max_retries" },
        { "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"nmae\":\"y\"}", "nmae" },
    };
    fn_spec s;
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *f = check(cases[i].json, &s);
        if (strcmp(f, cases[i].field) != 0)
            fail_msg("case %zu: expected %s, got '%s'", i, cases[i].field, f);
    }
    /* the same strings are fine from a form, and nullable rows take null in JSON */
    assert_string_equal(check_form("{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"timeout_s\":\"30\"}", &s), "");
    validate_free(&s);
    assert_string_equal(check("{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"rate_limit\":null,"
                              "\"concurrency\":null,\"code_base64\":\"UEsFBg==\"}", &s), "");
    validate_free(&s);
    /* a form's env text is parsed as strictly as a body: no \u0000, no duplicate keys */
    assert_string_equal(check_form("{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"env\":\"{\\\"A\\\":\\\"a\\\\u0000b\\\"}\"}", &s), "env");
    assert_string_equal(check_form("{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"env\":\"{\\\"A\\\":\\\"1\\\",\\\"A\\\":\\\"2\\\"}\"}", &s), "env");
}

static void test_env_size_limit(void **state)
{
    char json[8192], big[4200];
    fn_spec s;
    (void)state;
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(json, sizeof(json), "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"env\":{\"K\":\"%s\"}}", big);
    assert_string_equal(check(json, &s), "env");
    big[4000] = '\0';
    snprintf(json, sizeof(json), "{\"name\":\"x\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"env\":{\"K\":\"%s\"}}", big);
    assert_string_equal(check(json, &s), "");
    validate_free(&s);
}

/* X-Minilambda-Quota-Functions: absent = no limit; only an exact non-negative decimal */
static void test_quota_functions(void **state)
{
    static const char *const bad[] = { "", " 3", "3 ", "+3", "-1", "3.0", "0x3", "abc", "1000000001",
                                       "99999999999999999999" };
    int64_t n = 7;
    (void)state;
    assert_int_equal(validate_quota_functions(NULL, &n), ML_OK);
    assert_int_equal(n, -1);
    assert_int_equal(validate_quota_functions("0", &n), ML_OK);
    assert_int_equal(n, 0);
    assert_int_equal(validate_quota_functions("3", &n), ML_OK);
    assert_int_equal(n, 3);
    assert_int_equal(validate_quota_functions("1000000000", &n), ML_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (validate_quota_functions(bad[i], &n) == ML_OK)
            fail_msg("'%s' was taken as a quota", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_with_defaults),
        cmocka_unit_test(test_each_bad_field_named),
        cmocka_unit_test(test_json_kinds_strict),
        cmocka_unit_test(test_env_size_limit),
        cmocka_unit_test(test_quota_functions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
