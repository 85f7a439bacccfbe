/* test_registry_rules.c — the registry's domain rules (registry_rules.c): names and lookup
 * keys, the cache document as an fn_info (function, tombstone, absence marker, malformed),
 * the PATCH field rules and their messages; and exec.c's error types per sandbox outcome. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "exec.h"
#include "fnspec.h"
#include "registry-int.h"
#include "runtimes.h"

static const char doc[] =
    "{\"id\":\"7B1D3C2A-1111-4222-8333-944455556666\",\"name\":\"resize\",\"state\":\"active\","
    "\"version\":3,\"runtime\":\"python3.12\",\"handler\":\"main.handler\","
    "\"artifact_prefix\":\"fn/7b/\",\"artifact_sha256\":\"ab\",\"artifact_size\":1024,"
    "\"memory_mb\":256,\"timeout_s\":30,\"concurrency\":null,\"rate_limit\":{\"rps\":2.5,\"burst\":5},"
    "\"max_retries\":2,\"max_event_age_s\":3600,\"on_success_url\":null,\"on_failure_url\":\"https://h/x\","
    "\"env\":{\"A\":\"1\",\"B\":\"two\"},\"generation\":17,\"build_id\":null}";

static void test_names_and_keys(void **state)
{
    char key[FN_KEY_MAX];
    bool by_id;

    (void)state;
    assert_int_equal(reg_fn_key(NULL, "resize-v2_x", key, &by_id), ML_OK);
    assert_string_equal(key, "default/resize-v2_x"); /* no namespace: default */
    assert_int_equal(reg_fn_key("team-a", "", key, &by_id), ML_ERR);
    assert_int_equal(reg_fn_key("team-a", "has space", key, &by_id), ML_ERR);
    assert_int_equal(reg_fn_key("team-a", "-x", key, &by_id), ML_ERR); /* fnspec's rule, as build-master's */
    assert_int_equal(reg_fn_key("team-a", "7B1D3C2A-1111-4222-8333-944455556666", key, &by_id), ML_OK);
    assert_true(by_id);
    assert_string_equal(key, "7b1d3c2a-1111-4222-8333-944455556666"); /* ids are global */
    assert_int_equal(reg_fn_key("team-a", "Resize", key, &by_id), ML_OK);
    assert_false(by_id);
    assert_string_equal(key, "team-a/Resize");
    assert_int_equal(reg_fn_key("team-a", "no/such", key, &by_id), ML_ERR);
    assert_int_equal(reg_fn_key("team-a", NULL, key, &by_id), ML_ERR);
    assert_int_equal(reg_fn_key("Team-A", "x", key, &by_id), ML_ERR); /* not a namespace name */
}

/* The same name in two namespaces never shares a cache key; a key splits back. */
static void test_name_keys_per_namespace(void **state)
{
    char a[FN_KEY_MAX], b[FN_KEY_MAX], ns[FN_NS_MAX], name[FN_NAME_MAX];
    char longns[FNSPEC_NS_MAX + 1], longname[FNSPEC_NAME_MAX + 1];
    bool by_id;

    (void)state;
    assert_int_equal(reg_fn_key("team-a", "hello", a, &by_id), ML_OK);
    assert_int_equal(reg_fn_key("team-b", "hello", b, &by_id), ML_OK);
    assert_string_not_equal(a, b);
    assert_int_equal(reg_name_key_split(b, ns, name), ML_OK);
    assert_string_equal(ns, "team-b");
    assert_string_equal(name, "hello");
    assert_int_equal(reg_name_key_split("hello", ns, name), ML_ERR);
    assert_int_equal(reg_name_key_split("/hello", ns, name), ML_ERR);
    /* the longest namespace and name fit, uncut */
    memset(longns, 'n', sizeof(longns) - 1);
    longns[sizeof(longns) - 1] = '\0';
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(reg_name_key(longns, longname, a), ML_OK);
    assert_int_equal(strlen(a), FNSPEC_NS_MAX + 1 + FNSPEC_NAME_MAX);
    assert_int_equal(reg_name_key_split(a, ns, name), ML_OK);
    assert_string_equal(ns, longns);
}

/* A cache document carries its namespace (registry_get compares it for lookups by id). */
static void test_document_namespace(void **state)
{
    static fn_info f;
    char with_ns[sizeof(doc) + 32];

    (void)state;
    assert_int_equal(ml_snprintf(with_ns, sizeof(with_ns), "{\"namespace\":\"team-a\",%s", doc + 1), ML_OK);
    assert_int_equal(reg_fn_parse(with_ns, strlen(with_ns), &f), ML_OK);
    assert_string_equal(f.ns, "team-a");
    assert_string_equal(f.name, "resize");
}

static void test_document(void **state)
{
    static fn_info f;

    (void)state;
    assert_int_equal(reg_fn_parse(doc, strlen(doc), &f), ML_OK);
    assert_string_equal(f.name, "resize");
    assert_string_equal(f.ns, "default"); /* an entry from before namespaces */
    assert_int_equal(f.state, FN_ACTIVE);
    assert_int_equal(f.version, 3);
    assert_int_equal(f.memory_mb, 256);
    assert_int_equal(f.concurrency, 0);
    assert_true(f.rate_rps == 2.5);
    assert_int_equal(f.rate_burst, 5);
    assert_string_equal(f.on_success_url, "");
    assert_string_equal(f.on_failure_url, "https://h/x");
    assert_int_equal(f.env_count, 2);
    assert_memory_equal(f.env, "A=1\0B=two\0", f.env_len);
    assert_int_equal(f.generation, 17);
}

static void test_markers_and_malformed(void **state)
{
    static fn_info f;
    const char *tomb = "{\"deleted\":true,\"id\":\"x\",\"name\":\"y\"}", *absent = "{\"absent\":true}";

    (void)state;
    assert_int_equal(reg_fn_parse(tomb, strlen(tomb), &f), REGISTRY_NOT_FOUND);
    assert_int_equal(reg_fn_parse(absent, strlen(absent), &f), REGISTRY_ABSENT);
    assert_int_equal(reg_fn_parse("[1]", 3, &f), ML_ERR);
    assert_int_equal(reg_fn_parse("{\"id\":1}", 8, &f), ML_ERR);
    assert_int_equal(reg_fn_parse("{", 1, &f), ML_ERR);
}

static int check(const char *json, bool strict, char *err, size_t errlen)
{
    cJSON *o = cJSON_Parse(json);
    int rc = fnspec_config_check(o, strict, err, errlen);

    cJSON_Delete(o);
    return rc;
}

static void test_fields(void **state)
{
    char err[512];

    (void)state;
    assert_int_equal(check("{\"memory_mb\":128,\"env\":{\"K_1\":\"v\"},\"concurrency\":null,"
                           "\"rate_limit\":{\"rps\":1},\"on_success_url\":\"http://a/b\"}", true, err,
                           sizeof(err)), ML_OK);
    assert_int_equal(check("{\"memory_mb\":63}", true, err, sizeof(err)), ML_ERR);
    assert_string_equal(err, "memory_mb must be an integer from 64 to 4096");
    assert_int_equal(check("{\"timeout_s\":1.5}", true, err, sizeof(err)), ML_ERR);
    assert_int_equal(check("{\"env\":{\"1BAD\":\"v\"}}", true, err, sizeof(err)), ML_ERR);
    assert_int_equal(check("{\"rate_limit\":{\"rps\":1,\"extra\":2}}", true, err, sizeof(err)), ML_ERR);
    assert_int_equal(check("{\"on_failure_url\":\"ftp://h\"}", true, err, sizeof(err)), ML_ERR);
    assert_int_equal(check("{\"memory_mb\":null}", true, err, sizeof(err)), ML_ERR);
    assert_int_equal(check("{\"color\":1}", true, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "unknown field 'color'"));
    assert_int_equal(check("{\"color\":1}", false, err, sizeof(err)), ML_OK);
}

static void test_error_types(void **state)
{
    (void)state;
    assert_null(exec_error_type(SB_OK));
    assert_string_equal(exec_error_type(SB_HANDLER_ERROR), "Unhandled");
    assert_string_equal(exec_error_type(SB_TIMEOUT), "TimeoutError");
    assert_string_equal(exec_error_type(SB_CRASH), "Runtime.ExitError");
    assert_string_equal(exec_error_type(SB_OOM), "Runtime.OutOfMemory");
}

/* A table with python3.11 (and its alias) and provided only. */
static void small_table(runtimes_table *t)
{
    runtimes_init(t);
    for (size_t i = 0; i < t->n; i++) {
        runtimes_entry *e = &t->e[i];
        if (!strcmp(e->name, "python3.11") || !strcmp(e->name, "python3"))
            e->available = true, ml_strlcpy(e->version, "Python 3.11.2", sizeof(e->version));
        if (!strcmp(e->family, "provided"))
            e->available = true, ml_strlcpy(e->version, "provided", sizeof(e->version));
    }
}

/* PATCH's record members (docs/versions.md "Function record additions"). */
static void test_record_check(void **state)
{
    runtimes_table t;
    cJSON *cur = cJSON_Parse("{\"runtime\":\"python3.11\",\"handler\":\"app.handler\",\"tags\":{\"a\":\"1\"}}");
    const char *code = NULL;
    char err[256];
    static const struct { const char *body, *code; } cases[] = {
        { "{\"handler\":\"app.other\"}", NULL },
        { "{\"runtime\":\"python3\"}", NULL },
        { "{\"runtime\":\"provided.al2\",\"handler\":\"bootstrap\"}", NULL },
        { "{\"description\":\"x\",\"tags\":{\"a\":null,\"b\":\"2\"}}", NULL },
        { "{\"runtime\":\"python3.9\"}", "invalid_runtime" },
        { "{\"runtime\":\"java21\"}", "invalid_runtime" },
        { "{\"runtime\":null}", "invalid_runtime" },
        { "{\"handler\":\"app\"}", "invalid_field" },
        { "{\"handler\":null}", "invalid_field" },
        { "{\"runtime\":\"provided\",\"handler\":\".x\"}", "invalid_field" },
        { "{\"description\":5}", "invalid_field" },
        { "{\"tags\":[]}", "invalid_field" },
        { "{\"tags\":{\"\":\"v\"}}", "invalid_field" },
        { "{\"tags\":{\"k\":1}}", "invalid_field" },
    };

    (void)state;
    small_table(&t);
    for (size_t i = 0; i < ML_ARRAY_LEN(cases); i++) {
        cJSON *b = cJSON_Parse(cases[i].body);
        int rc = reg_record_check(&t, b, cur, &code, err, sizeof(err));
        if (!cases[i].code) {
            assert_int_equal(rc, ML_OK);
        } else {
            assert_int_equal(rc, ML_ERR);
            assert_string_equal(code, cases[i].code);
        }
        cJSON_Delete(b);
    }
    cJSON *b = cJSON_Parse("{\"runtime\":\"python3.9\"}");
    assert_int_equal(reg_record_check(&t, b, cur, &code, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "python3.11"));   /* names what is available */
    cJSON_Delete(b);
    /* 50 tags after the merge: at most; the current one counts */
    b = cJSON_CreateObject();
    cJSON *tags = cJSON_AddObjectToObject(b, "tags");
    for (int i = 0; i < 49; i++) {
        char k[8];
        assert_int_equal(ml_snprintf(k, sizeof(k), "t%d", i), ML_OK);
        cJSON_AddStringToObject(tags, k, "v");
    }
    assert_int_equal(reg_record_check(&t, b, cur, &code, err, sizeof(err)), ML_OK);
    cJSON_AddStringToObject(tags, "one-more", "v");
    assert_int_equal(reg_record_check(&t, b, cur, &code, err, sizeof(err)), ML_ERR);
    cJSON_Delete(b);
    assert_true(reg_record_needs_current(cur));
    cJSON_Delete(cur);
}

static void test_config_part_and_decorate(void **state)
{
    runtimes_table t;
    cJSON *b = cJSON_Parse("{\"memory_mb\":256,\"runtime\":\"x\",\"handler\":\"y\",\"description\":\"d\",\"tags\":{}}");
    cJSON *c = reg_config_part(b);
    cJSON *page = cJSON_Parse("{\"functions\":[{\"runtime\":\"python3\"},{\"runtime\":\"python3.9\"}]}");

    (void)state;
    assert_int_equal(cJSON_GetArraySize(c), 1);
    assert_non_null(cJSON_GetObjectItem(c, "memory_mb"));
    small_table(&t);
    reg_doc_decorate(&t, page);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(page, "functions"), 0),
                                            "runtime_version")->valuestring, "Python 3.11.2");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(page, "functions"), 1),
                                                 "runtime_version")));
    cJSON_Delete(b);
    cJSON_Delete(c);
    cJSON_Delete(page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_keys),
        cmocka_unit_test(test_name_keys_per_namespace),
        cmocka_unit_test(test_document_namespace),
        cmocka_unit_test(test_document),
        cmocka_unit_test(test_markers_and_malformed),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_error_types),
        cmocka_unit_test(test_record_check),
        cmocka_unit_test(test_config_part_and_decorate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
