/* Unit tests: shared/fnspec.c — the function contract's rules, field table and the
 * build.status codec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fnspec.h"
#include "ml.h"

#define BID "0b7f1c1e-3a51-4bd3-9a8e-2d3f4c5b6a79"
#define FID "1c8e2d2f-4b62-4ce4-8b9f-3e4a5d6c7b8a"

static void test_is_ident(void **state)
{
    (void)state;
    assert_int_equal(fnspec_is_ident("a", 1), ML_OK);
    assert_int_equal(fnspec_is_ident("_", 1), ML_OK);
    assert_int_equal(fnspec_is_ident("A_9z", 4), ML_OK);
    assert_int_equal(fnspec_is_ident("ab.c", 2), ML_OK); /* only the first n bytes count */
    assert_int_equal(fnspec_is_ident("", 0), ML_ERR);
    assert_int_equal(fnspec_is_ident("9a", 2), ML_ERR);
    assert_int_equal(fnspec_is_ident("a-b", 3), ML_ERR);
    assert_int_equal(fnspec_is_ident("a b", 3), ML_ERR);
    assert_int_equal(fnspec_is_ident("\xc3\xa9", 2), ML_ERR);
    assert_int_equal(fnspec_is_ident(NULL, 1), ML_ERR);
}

static void test_name(void **state)
{
    char n64[65], n65[66];
    (void)state;
    memset(n64, 'a', 64);
    n64[64] = '\0';
    memset(n65, 'a', 65);
    n65[65] = '\0';
    assert_int_equal(fnspec_name_valid("a"), ML_OK);
    assert_int_equal(fnspec_name_valid("0"), ML_OK);
    assert_int_equal(fnspec_name_valid("my-fn_1"), ML_OK);
    assert_int_equal(fnspec_name_valid(n64), ML_OK);
    assert_int_equal(fnspec_name_valid(n65), ML_ERR);
    assert_int_equal(fnspec_name_valid(""), ML_ERR);
    assert_int_equal(fnspec_name_valid(NULL), ML_ERR);
    assert_int_equal(fnspec_name_valid("-x"), ML_ERR); /* the executor's old rule took these */
    assert_int_equal(fnspec_name_valid("_x"), ML_ERR);
    assert_int_equal(fnspec_name_valid("a/b"), ML_ERR);
    assert_int_equal(fnspec_name_valid("a.b"), ML_ERR);
    assert_int_equal(fnspec_name_valid(BID), ML_ERR); /* would shadow an id in {fn} */
    assert_int_equal(fnspec_name_valid("0B7F1C1E-3A51-4BD3-9A8E-2D3F4C5B6A79"), ML_ERR);
    assert_int_equal(fnspec_name_valid("0b7f1c1e-3a51-4bd3-9a8e-2d3f4c5b6a7"), ML_OK); /* 35 chars */
    /* namespaces: DNS labels */
    n64[63] = '\0';
    assert_int_equal(fnspec_ns_valid("default"), ML_OK);
    assert_int_equal(fnspec_ns_valid("team-a"), ML_OK);
    assert_int_equal(fnspec_ns_valid("0"), ML_OK);
    assert_int_equal(fnspec_ns_valid(n64), ML_OK);
    n64[63] = 'a';
    assert_int_equal(fnspec_ns_valid(n64), ML_ERR);
    assert_int_equal(fnspec_ns_valid(""), ML_ERR);
    assert_int_equal(fnspec_ns_valid(NULL), ML_ERR);
    assert_int_equal(fnspec_ns_valid("-a"), ML_ERR);
    assert_int_equal(fnspec_ns_valid("a-"), ML_ERR);
    assert_int_equal(fnspec_ns_valid("Team"), ML_ERR);
    assert_int_equal(fnspec_ns_valid("a_b"), ML_ERR);
    assert_int_equal(fnspec_ns_valid("a:b"), ML_ERR); /* would split a Redis key */
    assert_int_equal(fnspec_ns_valid("a\"b"), ML_ERR);
}

static void test_runtime_and_handler(void **state)
{
    char h128[130], file[64];
    (void)state;
    assert_int_equal(fnspec_runtime_valid("python3"), ML_OK);
    assert_int_equal(fnspec_runtime_valid("nodejs"), ML_OK);
    assert_int_equal(fnspec_runtime_valid("provided"), ML_OK);
    assert_int_equal(fnspec_runtime_valid("python"), ML_ERR);
    assert_int_equal(fnspec_runtime_valid("Python3"), ML_ERR);
    assert_int_equal(fnspec_runtime_valid(""), ML_ERR);
    assert_int_equal(fnspec_runtime_valid(NULL), ML_ERR);
    /* AWS's names (docs/versions.md "Runtimes"), each in its family */
    assert_int_equal(fnspec_runtime_valid("python3.9"), ML_OK);
    assert_int_equal(fnspec_runtime_valid("python3.13"), ML_OK);
    assert_int_equal(fnspec_runtime_valid("nodejs18.x"), ML_OK);
    assert_int_equal(fnspec_runtime_valid("nodejs22.x"), ML_OK);
    assert_int_equal(fnspec_runtime_valid("provided.al2"), ML_OK);
    assert_int_equal(fnspec_runtime_valid("provided.al2023"), ML_OK);
    assert_int_equal(fnspec_runtime_valid("python3.8"), ML_ERR);
    assert_int_equal(fnspec_runtime_valid("python3.1"), ML_ERR);
    assert_int_equal(fnspec_runtime_valid("nodejs16.x"), ML_ERR);
    assert_int_equal(fnspec_runtime_valid("java21"), ML_ERR);
    assert_int_equal(fnspec_runtime_valid("provided.al2023x"), ML_ERR);
    assert_string_equal(fnspec_runtime_family("python3.12"), "python3");
    assert_string_equal(fnspec_runtime_family("nodejs20.x"), "nodejs");
    assert_string_equal(fnspec_runtime_family("provided.al2"), "provided");
    assert_null(fnspec_runtime_family("ruby3.2"));
    for (size_t i = 0; fnspec_runtime_name(i); i++) {
        assert_true(strlen(fnspec_runtime_name(i)) <= FNSPEC_RUNTIME_MAX);
        assert_non_null(strstr(FNSPEC_RUNTIME_RULE, fnspec_runtime_name(i)));
    }
    assert_int_equal(fnspec_handler_valid("python3.12", "app.handler"), ML_OK);
    assert_int_equal(fnspec_handler_valid("python3.12", "my-app.h"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("nodejs20.x", "my-file.handler"), ML_OK);
    assert_int_equal(fnspec_handler_valid("provided.al2023", "bootstrap"), ML_OK);
    assert_string_equal(fnspec_default_handler("provided.al2"), "bootstrap");
    assert_null(fnspec_default_handler("python3.11"));
    assert_non_null(strstr(fnspec_handler_form("nodejs18.x"), "file.export"));
    assert_string_equal(fnspec_default_handler("provided"), "bootstrap");
    assert_null(fnspec_default_handler("python3"));

    assert_int_equal(fnspec_handler_valid("python3", "app.handler"), ML_OK);
    assert_int_equal(fnspec_handler_valid("python3", "_a._b"), ML_OK);
    assert_int_equal(fnspec_handler_valid("python3", "app"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("python3", "my-app.h"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("python3", "a.b.c"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("python3", ".b"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("python3", "a."), ML_ERR);
    assert_int_equal(fnspec_handler_valid("python3", "1a.b"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("nodejs", "index.handler"), ML_OK);
    assert_int_equal(fnspec_handler_valid("nodejs", "my-file.handler"), ML_OK);
    assert_int_equal(fnspec_handler_valid("nodejs", "1.h"), ML_OK);
    assert_int_equal(fnspec_handler_valid("nodejs", "a.my-export"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("nodejs", ".h"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("nodejs", "a/b.h"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("provided", "bootstrap"), ML_OK);
    assert_int_equal(fnspec_handler_valid("provided", "run.sh"), ML_OK);
    assert_int_equal(fnspec_handler_valid("provided", ".hidden"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("provided", "bin/run"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("provided", ""), ML_ERR);
    assert_int_equal(fnspec_handler_valid("ruby", "a.b"), ML_ERR);
    assert_int_equal(fnspec_handler_valid("python3", NULL), ML_ERR);
    /* length: 128 accepted, 129 refused */
    memset(h128, 'a', 129);
    h128[1] = '.';
    h128[128] = '\0';
    assert_int_equal(fnspec_handler_valid("python3", h128), ML_OK);
    h128[128] = 'a';
    h128[129] = '\0';
    assert_int_equal(fnspec_handler_valid("python3", h128), ML_ERR);

    assert_int_equal(fnspec_handler_file("python3", "app.handler", file, sizeof(file)), ML_OK);
    assert_string_equal(file, "app.py");
    assert_int_equal(fnspec_handler_file("nodejs", "my-file.h", file, sizeof(file)), ML_OK);
    assert_string_equal(file, "my-file.js");
    assert_int_equal(fnspec_handler_file("provided", "bootstrap", file, sizeof(file)), ML_ERR);
    assert_int_equal(fnspec_handler_file("python3", "app", file, sizeof(file)), ML_ERR);
    assert_int_equal(fnspec_handler_file("python3.13", "app.h", file, sizeof(file)), ML_OK);
    assert_string_equal(file, "app.py");
    assert_int_equal(fnspec_handler_file("nodejs22.x", "index.h", file, sizeof(file)), ML_OK);
    assert_string_equal(file, "index.js");
    assert_int_equal(fnspec_handler_file("provided.al2", "bootstrap", file, sizeof(file)), ML_ERR);
    assert_int_equal(fnspec_handler_file("python3", "app.h", file, 6), ML_ERR); /* "app.py" needs 7 */
}

static int env_check(const char *json)
{
    cJSON *o = cJSON_Parse(json);
    char err[128];
    int rc;

    assert_non_null(o);
    rc = fnspec_env_valid(o, err, sizeof(err));
    cJSON_Delete(o);
    return rc;
}

static void test_env(void **state)
{
    char json[8192], big[4200];
    (void)state;
    assert_int_equal(env_check("{}"), ML_OK);
    assert_int_equal(env_check("{\"A\":\"b\",\"_x1\":\"\"}"), ML_OK);
    assert_int_equal(env_check("{\"1A\":\"v\"}"), ML_ERR);
    assert_int_equal(env_check("{\"A-B\":\"v\"}"), ML_ERR);
    assert_int_equal(env_check("{\"\":\"v\"}"), ML_ERR);
    assert_int_equal(env_check("{\"A\":1}"), ML_ERR);
    assert_int_equal(env_check("{\"A\":null}"), ML_ERR);
    assert_int_equal(env_check("[\"A\"]"), ML_ERR);
    assert_int_equal(env_check("\"A=b\""), ML_ERR);
    /* 4096 bytes of names and values: "K" + 4095 accepted, + 4096 refused */
    memset(big, 'v', sizeof(big));
    big[4095] = '\0';
    ml_snprintf(json, sizeof(json), "{\"K\":\"%s\"}", big);
    assert_int_equal(env_check(json), ML_OK);
    big[4095] = 'v';
    big[4096] = '\0';
    ml_snprintf(json, sizeof(json), "{\"K\":\"%s\"}", big);
    assert_int_equal(env_check(json), ML_ERR);
}

static int json_check(int (*fn)(const cJSON *), const char *json)
{
    cJSON *o = cJSON_Parse(json);
    int rc;

    assert_non_null(o);
    rc = fn(o);
    cJSON_Delete(o);
    return rc;
}

static void test_rate_limit(void **state)
{
    (void)state;
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":1}"), ML_OK);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":0.001}"), ML_OK);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":100000,\"burst\":100000}"), ML_OK);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":5,\"burst\":1}"), ML_OK);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":0}"), ML_ERR);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":-1}"), ML_ERR);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":100000.5}"), ML_ERR);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":\"5\"}"), ML_ERR);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"burst\":5}"), ML_ERR);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":5,\"burst\":0}"), ML_ERR);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":5,\"burst\":100001}"), ML_ERR);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":5,\"burst\":1.5}"), ML_ERR);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "{\"rps\":5,\"extra\":1}"), ML_ERR);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "null"), ML_ERR);
    assert_int_equal(json_check(fnspec_rate_limit_valid, "[1]"), ML_ERR);
}

static void test_dest_url_and_status(void **state)
{
    char url[2100];
    (void)state;
    assert_int_equal(fnspec_dest_url_valid("http://h"), ML_OK);
    assert_int_equal(fnspec_dest_url_valid("HTTPS://h/x?y=1"), ML_OK);
    assert_int_equal(fnspec_dest_url_valid("ftp://h"), ML_ERR);
    assert_int_equal(fnspec_dest_url_valid("http://"), ML_ERR);
    assert_int_equal(fnspec_dest_url_valid("http:///x"), ML_ERR);
    assert_int_equal(fnspec_dest_url_valid("http://?x"), ML_ERR);
    assert_int_equal(fnspec_dest_url_valid("http://h/a b"), ML_ERR);
    assert_int_equal(fnspec_dest_url_valid("http://h/\x7f"), ML_ERR);
    assert_int_equal(fnspec_dest_url_valid(NULL), ML_ERR);
    memcpy(url, "http://h/", 9);
    memset(url + 9, 'a', 2048 - 9);
    url[2048] = '\0';
    assert_int_equal(fnspec_dest_url_valid(url), ML_OK);
    url[2048] = 'a';
    url[2049] = '\0';
    assert_int_equal(fnspec_dest_url_valid(url), ML_ERR);

    assert_int_equal(fnspec_build_status_valid("queued"), ML_OK);
    assert_int_equal(fnspec_build_status_valid("building"), ML_OK);
    assert_int_equal(fnspec_build_status_valid("completed"), ML_OK);
    assert_int_equal(fnspec_build_status_valid("failed"), ML_OK);
    assert_int_equal(fnspec_build_status_valid("done"), ML_ERR);
    assert_int_equal(fnspec_build_status_valid(NULL), ML_ERR);
}

static int field_json(const char *name, const char *json)
{
    cJSON *v = cJSON_Parse(json);
    int rc;

    assert_non_null(v);
    rc = fnspec_field_check(fnspec_field_find(name), v);
    cJSON_Delete(v);
    return rc;
}

static void test_field_table(void **state)
{
    static const struct {
        const char *name;
        int64_t min, max, def;
        int nullable;
    } ints[] = {
        { "memory_mb", 64, 4096, 128, 0 },    { "timeout_s", 1, 900, 30, 0 },
        { "concurrency", 1, 1000, 10, 1 },    { "max_retries", 0, 2, 2, 0 },
        { "max_event_age_s", 60, 21600, 21600, 0 },
    };
    char v[32];
    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(ints); i++) {
        const fnspec_field *f = fnspec_field_find(ints[i].name);
        assert_non_null(f);
        assert_int_equal(f->kind, FNSPEC_KIND_INT);
        assert_int_equal(f->min, ints[i].min);
        assert_int_equal(f->max, ints[i].max);
        assert_true(f->has_def);
        assert_int_equal(f->def, ints[i].def);
        assert_int_equal(f->nullable, ints[i].nullable);
        /* boundaries: min and max in, one beyond each out, fractions and strings out */
        ml_snprintf(v, sizeof(v), "%lld", (long long)ints[i].min);
        assert_int_equal(field_json(ints[i].name, v), ML_OK);
        ml_snprintf(v, sizeof(v), "%lld", (long long)ints[i].max);
        assert_int_equal(field_json(ints[i].name, v), ML_OK);
        ml_snprintf(v, sizeof(v), "%lld", (long long)ints[i].min - 1);
        assert_int_equal(field_json(ints[i].name, v), ML_ERR);
        ml_snprintf(v, sizeof(v), "%lld", (long long)ints[i].max + 1);
        assert_int_equal(field_json(ints[i].name, v), ML_ERR);
        ml_snprintf(v, sizeof(v), "%lld.5", (long long)ints[i].min);
        assert_int_equal(field_json(ints[i].name, v), ML_ERR);
        ml_snprintf(v, sizeof(v), "\"%lld\"", (long long)ints[i].min);
        assert_int_equal(field_json(ints[i].name, v), ML_ERR);
        assert_int_equal(field_json(ints[i].name, "null"), ints[i].nullable ? ML_OK : ML_ERR);
    }
    assert_ptr_equal(fnspec_field_get(FNSPEC_CONCURRENCY), fnspec_field_find("concurrency"));
    assert_null(fnspec_field_get(FNSPEC_FIELD_COUNT));
    assert_null(fnspec_field_find("memory"));
    assert_null(fnspec_field_find(NULL));
    assert_int_equal(field_json("rate_limit", "null"), ML_OK);
    assert_int_equal(field_json("rate_limit", "{\"rps\":1}"), ML_OK);
    assert_int_equal(field_json("env", "null"), ML_ERR);
    assert_int_equal(field_json("env", "{\"A\":\"b\"}"), ML_OK);
    assert_int_equal(field_json("on_success_url", "null"), ML_OK);
    assert_int_equal(field_json("on_failure_url", "\"https://x\""), ML_OK);
    assert_int_equal(field_json("on_failure_url", "5"), ML_ERR);
    assert_int_equal(field_json("network", "true"), ML_OK);
    assert_int_equal(field_json("network", "false"), ML_OK);
    assert_int_equal(field_json("network", "1"), ML_ERR);
    assert_int_equal(field_json("network", "null"), ML_ERR);
    assert_int_equal(field_json("network", "\"true\""), ML_ERR);
    assert_int_equal(fnspec_field_check(NULL, NULL), ML_ERR);
}

static void test_config_check(void **state)
{
    cJSON *o;
    char err[512];
    (void)state;
    o = cJSON_Parse("{\"memory_mb\":256,\"concurrency\":null,\"env\":{},\"rate_limit\":null,\"other\":1}");
    assert_int_equal(fnspec_config_check(o, false, err, sizeof(err)), ML_OK);
    assert_int_equal(fnspec_config_check(o, true, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "unknown field 'other'"));
    cJSON_Delete(o);
    o = cJSON_Parse("{\"timeout_s\":901}");
    assert_int_equal(fnspec_config_check(o, false, err, sizeof(err)), ML_ERR);
    assert_string_equal(err, "timeout_s must be an integer from 1 to 900");
    cJSON_Delete(o);
    o = cJSON_Parse("[]");
    assert_int_equal(fnspec_config_check(o, false, err, sizeof(err)), ML_ERR);
    cJSON_Delete(o);
}

static void fill_event(fnspec_build_event *ev, const char *status)
{
    memset(ev, 0, sizeof(*ev));
    ml_strlcpy(ev->build_id, BID, sizeof(ev->build_id));
    ml_strlcpy(ev->function_id, FID, sizeof(ev->function_id));
    ml_strlcpy(ev->status, status, sizeof(ev->status));
    ml_strlcpy(ev->timestamp, "2026-12-06T02:46:22.123Z", sizeof(ev->timestamp));
    ml_strlcpy(ev->name, "my-fn", sizeof(ev->name));
    ml_strlcpy(ev->runtime, "python3", sizeof(ev->runtime));
    ml_strlcpy(ev->handler, "app.handler", sizeof(ev->handler));
    ml_strlcpy(ev->ns, "team-a", sizeof(ev->ns));
    ev->config = cJSON_Parse("{\"memory_mb\":128,\"timeout_s\":30,\"concurrency\":10,\"env\":{\"A\":\"\\u00e9\\\"\"},"
                             "\"rate_limit\":{\"rps\":0.5,\"burst\":3}}");
    assert_non_null(ev->config);
}

static void test_event_round_trip(void **state)
{
    fnspec_build_event ev, back;
    char *out = NULL, *again = NULL, err[256];
    (void)state;

    fill_event(&ev, "completed");
    ev.error = NULL;
    ev.has_artifact = true;
    ev.artifact_prefix = strdup("artifacts/" FID "/" BID "/");
    ml_strlcpy(ev.artifact_sha256, "ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01", sizeof(ev.artifact_sha256));
    ev.artifact_size = 9007199254740992LL; /* 2^53: the largest a JSON number keeps exact */
    ev.artifact_files = 10000;
    assert_int_equal(fnspec_build_event_encode(&ev, &out), ML_OK);
    /* the key order and shape consumers have always seen */
    assert_non_null(strstr(out, "{\"type\":\"build.status\",\"build_id\":\"" BID "\",\"function_id\":\"" FID
                                "\",\"status\":\"completed\",\"error\":null,\"timestamp\":\"2026-12-06T02:46:22.123Z\","
                                "\"function\":{\"namespace\":\"team-a\",\"name\":\"my-fn\",\"runtime\":\"python3\",\"handler\":\"app.handler\",\"config\":{"));
    assert_non_null(strstr(out, "\"artifact\":{\"prefix\":\"artifacts/"));
    assert_int_equal(fnspec_build_event_decode(out, strlen(out), &back, err, sizeof(err)), ML_OK);
    assert_string_equal(back.build_id, ev.build_id);
    assert_string_equal(back.function_id, ev.function_id);
    assert_string_equal(back.status, "completed");
    assert_null(back.error);
    assert_string_equal(back.timestamp, ev.timestamp);
    assert_string_equal(back.ns, "team-a");
    assert_string_equal(back.name, ev.name);
    assert_string_equal(back.runtime, ev.runtime);
    assert_string_equal(back.handler, ev.handler);
    assert_true(cJSON_Compare(back.config, ev.config, 1));
    assert_true(back.has_artifact);
    assert_string_equal(back.artifact_prefix, ev.artifact_prefix);
    assert_string_equal(back.artifact_sha256, ev.artifact_sha256);
    assert_int_equal(back.artifact_size, ev.artifact_size);
    assert_int_equal(back.artifact_files, 10000);
    /* the encoding is a fixed point */
    assert_int_equal(fnspec_build_event_encode(&back, &again), ML_OK);
    assert_string_equal(out, again);
    free(out);
    free(again);
    fnspec_build_event_free(&back);
    fnspec_build_event_free(&ev);

    /* failed, with an error and no artifact; no config */
    fill_event(&ev, "failed");
    cJSON_Delete(ev.config);
    ev.config = NULL;
    ev.error = strdup("zip entry '../x' escapes the package \"\\\n");
    assert_int_equal(fnspec_build_event_encode(&ev, &out), ML_OK);
    assert_non_null(strstr(out, "\"artifact\":null}"));
    assert_null(strstr(out, "\"config\""));
    assert_int_equal(fnspec_build_event_decode(out, strlen(out), &back, err, sizeof(err)), ML_OK);
    assert_string_equal(back.error, ev.error);
    assert_null(back.config);
    assert_false(back.has_artifact);
    assert_null(back.artifact_prefix);
    free(out);
    fnspec_build_event_free(&back);
    fnspec_build_event_free(&ev);
}

/* What buildstate.c wrote before it used the encoder: Postgres's json_build_object. */
static void test_event_decodes_postgres_form(void **state)
{
    static const char pg[] =
        "{\"type\" : \"build.status\", \"build_id\" : \"" BID "\", \"function_id\" : \"" FID "\", "
        "\"status\" : \"queued\", \"error\" : null, \"timestamp\" : \"2026-12-06T02:46:22.123Z\", "
        "\"function\" : {\"name\" : \"f\", \"runtime\" : \"provided\", \"handler\" : \"bootstrap\", "
        "\"config\" : {\"env\": {}, \"memory_mb\": 128, \"timeout_s\": 30, \"concurrency\": 10}}, "
        "\"artifact\" : null}";
    fnspec_build_event ev;
    char err[256];
    (void)state;
    assert_int_equal(fnspec_build_event_decode(pg, sizeof(pg) - 1, &ev, err, sizeof(err)), ML_OK);
    assert_string_equal(ev.status, "queued");
    assert_string_equal(ev.handler, "bootstrap");
    assert_int_equal(cJSON_GetObjectItem(ev.config, "concurrency")->valueint, 10);
    fnspec_build_event_free(&ev);
}

static void test_event_decode_rejects(void **state)
{
#define EV(type, bid, status, fn, art)                                                         \
    "{\"type\":" type ",\"build_id\":" bid ",\"function_id\":\"" FID "\",\"status\":" status \
    ",\"error\":null,\"timestamp\":\"2026-12-06T00:00:00.000Z\",\"function\":" fn ",\"artifact\":" art "}"
#define FN_OK "{\"name\":\"f\",\"runtime\":\"python3\",\"handler\":\"a.b\"}"
#define ART_OK "{\"prefix\":\"p/\",\"sha256\":\"ab\",\"size_bytes\":1,\"files\":1}"
    static const char *const bad[] = {
        "", "null", "[]", "{", "\"build.status\"",
        EV("\"build.stat\"", "\"" BID "\"", "\"queued\"", FN_OK, "null"),
        EV("null", "\"" BID "\"", "\"queued\"", FN_OK, "null"),
        EV("\"build.status\"", "\"not-a-uuid\"", "\"queued\"", FN_OK, "null"),
        EV("\"build.status\"", "1", "\"queued\"", FN_OK, "null"),
        EV("\"build.status\"", "\"" BID "\"", "\"done\"", FN_OK, "null"),
        EV("\"build.status\"", "\"" BID "\"", "\"queued\"", "null", "null"),
        EV("\"build.status\"", "\"" BID "\"", "\"queued\"", "{\"name\":\"-f\",\"runtime\":\"python3\",\"handler\":\"a.b\"}", "null"),
        EV("\"build.status\"", "\"" BID "\"", "\"queued\"", "{\"name\":\"f\",\"runtime\":\"ruby\",\"handler\":\"a.b\"}", "null"),
        EV("\"build.status\"", "\"" BID "\"", "\"queued\"", "{\"name\":\"f\",\"runtime\":\"python3\",\"handler\":\"ab\"}", "null"),
        EV("\"build.status\"", "\"" BID "\"", "\"queued\"", "{\"name\":\"f\",\"runtime\":\"python3\"}", "null"),
        EV("\"build.status\"", "\"" BID "\"", "\"queued\"", "{\"name\":\"f\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"config\":null}", "null"),
        EV("\"build.status\"", "\"" BID "\"", "\"queued\"", "{\"name\":\"f\",\"runtime\":\"python3\",\"handler\":\"a.b\",\"config\":{\"memory_mb\":1}}", "null"),
        EV("\"build.status\"", "\"" BID "\"", "\"completed\"", FN_OK, "null"),
        EV("\"build.status\"", "\"" BID "\"", "\"completed\"", FN_OK, "{\"prefix\":\"p/\",\"sha256\":\"ab\",\"size_bytes\":1.5,\"files\":1}"),
        EV("\"build.status\"", "\"" BID "\"", "\"completed\"", FN_OK, "{\"prefix\":\"p/\",\"sha256\":\"ab\",\"size_bytes\":\"1\",\"files\":1}"),
        EV("\"build.status\"", "\"" BID "\"", "\"completed\"", FN_OK, "{\"prefix\":\"p/\",\"size_bytes\":1,\"files\":1}"),
        EV("\"build.status\"", "\"" BID "\"", "\"completed\"", FN_OK, "{\"prefix\":\"p/\",\"sha256\":\"ab\",\"size_bytes\":1e300,\"files\":1}"),
    };
    static const char good[] = EV("\"build.status\"", "\"" BID "\"", "\"completed\"", FN_OK, ART_OK);
    fnspec_build_event ev;
    char err[256];
    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        if (fnspec_build_event_decode(bad[i], strlen(bad[i]), &ev, err, sizeof(err)) != ML_ERR)
            fail_msg("case %zu accepted: %s", i, bad[i]);
        assert_true(err[0] != '\0');
        assert_null(ev.config);
        assert_null(ev.error);
        assert_null(ev.artifact_prefix);
    }
    assert_int_equal(fnspec_build_event_decode(good, sizeof(good) - 1, &ev, err, sizeof(err)), ML_OK);
    fnspec_build_event_free(&ev);
    /* a length that cuts the text short is malformed */
    assert_int_equal(fnspec_build_event_decode(good, sizeof(good) - 2, &ev, err, sizeof(err)), ML_ERR);
    assert_int_equal(fnspec_build_event_decode(NULL, 0, &ev, err, sizeof(err)), ML_ERR);
#undef EV
#undef FN_OK
#undef ART_OK
}

static void test_size_limits(void **state)
{
    (void)state;
    assert_int_equal(FNSPEC_MAX_ZIP_BYTES, 50 * 1024 * 1024);
    assert_true(FNSPEC_MAX_UPLOAD_BODY >= (FNSPEC_MAX_ZIP_BYTES + 2) / 3 * 4);
    assert_int_equal(FNSPEC_MAX_INVOKE_BODY, 6 * 1024 * 1024);
    assert_int_equal(FNSPEC_MAX_EVENT_BODY, 256 * 1024);
    assert_int_equal(FNSPEC_MAX_UNPACKED_BYTES, 250LL * 1024 * 1024);
    assert_int_equal(FNSPEC_MAX_ZIP_ENTRIES, 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_ident),
        cmocka_unit_test(test_name),
        cmocka_unit_test(test_runtime_and_handler),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_dest_url_and_status),
        cmocka_unit_test(test_field_table),
        cmocka_unit_test(test_config_check),
        cmocka_unit_test(test_event_round_trip),
        cmocka_unit_test(test_event_decodes_postgres_form),
        cmocka_unit_test(test_event_decode_rejects),
        cmocka_unit_test(test_size_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
