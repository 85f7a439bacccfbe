/* Unit tests: shared/jsoncheck.c — strict JSON + UTF-8 validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsoncheck.h"
#include "ml.h"

typedef struct sample {
    const char *text;
    size_t len; /* 0: strlen(text) */
} sample;

#define S(lit) { lit, sizeof(lit) - 1 }

static int check(const sample *c, jsoncheck_error *err)
{
    return jsoncheck_validate(c->text, c->len ? c->len : strlen(c->text), err);
}

static void test_valid_documents(void **state)
{
    static const sample ok[] = {
        S("{}"), S("[]"), S("0"), S("-0"), S("1.5e-3"), S("-12.25E+10"), S("1E5"), S("\"\""),
        S("true"), S("false"), S("null"), S(" \t\r\n{ \"a\" : [ 1 , 2 , { } , [ ] ] } \n"),
        S("{\"k\":\"v\",\"n\":null,\"o\":{\"x\":[true,false]}}"),
        S("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\""),
        S("\"h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80 \xEF\xBF\xBF \xF4\x8F\xBF\xBF\""),
        S("[\"0123456789abcdef0123456789abcdef\"]"),
        S("{\"\":0}"),
    };
    jsoncheck_error err;

    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(ok); i++) {
        int rc = check(&ok[i], &err);
        if (rc != ML_OK)
            fail_msg("valid #%zu '%s' refused at %zu: %s", i, ok[i].text, err.offset, err.why);
    }
}

static void test_invalid_documents(void **state)
{
    static const sample bad[] = {
        S(""), S("   "), S("{"), S("["), S("}"), S("[1,]"), S("[,1]"), S("{\"a\":1,}"),
        S("{\"a\"}"), S("{\"a\" 1}"), S("{1:2}"), S("{'a':1}"), S("[1 2]"), S("01"), S("-"),
        S("1."), S("1e"), S("1e+"), S(".5"), S("+1"), S("NaN"), S("Infinity"), S("-Infinity"),
        S("tru"), S("nul"), S("True"), S("\"abc"), S("\"a\\x\""), S("\"\\u12\""), S("\"\\u12G4\""),
        S("\"\\uD800\""), S("\"\\uDC00\""), S("\"\\uD800\\u0041\""), S("\"\\uD800x\""),
        S("{} {}"), S("1 2"), S("[] x"), S("/* c */ 1"), S("hello"), S("\xEF\xBB\xBF{}"),
        S("\"tab\there\""), S("\"nl\nhere\""), { "\"nul\0\"", 6 }, { "{}\0", 3 },
        S("\"\x80\""), S("\"\xC0\xAF\""), S("\"\xC1\xBF\""), S("\"\xE0\x80\xAF\""),
        S("\"\xED\xA0\x80\""), S("\"\xF0\x80\x80\xAF\""), S("\"\xF4\x90\x80\x80\""),
        S("\"\xF5\x80\x80\x80\""), S("\"\xFF\""), S("\"\xC3\""), S("\"\xE2\x82\""),
        S("\"\xC3\x28\""), S("\xC3\xA9"), S("[1]]"), S("{\"a\":1}}"),
    };
    jsoncheck_error err;

    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(bad); i++) {
        err.why = NULL;
        if (check(&bad[i], &err) == ML_OK)
            fail_msg("invalid #%zu '%s' accepted", i, bad[i].text);
        assert_non_null(err.why);
        assert_true(err.offset <= (bad[i].len ? bad[i].len : strlen(bad[i].text)));
    }
}

static void test_error_offset_and_reason(void **state)
{
    jsoncheck_error err;

    (void)state;
    assert_int_equal(jsoncheck_validate("{\"a\":tru}", 9, &err), ML_ERR);
    assert_int_equal(err.offset, 5);
    assert_string_equal(err.why, "invalid literal");
    assert_int_equal(jsoncheck_validate("\"ab\xFF\"", 5, &err), ML_ERR);
    assert_int_equal(err.offset, 3);
    assert_string_equal(err.why, "invalid UTF-8");
    assert_int_equal(jsoncheck_validate("", 0, &err), ML_ERR);
    assert_string_equal(err.why, "empty document");
    assert_int_equal(jsoncheck_validate("[1] [", 5, NULL), ML_ERR); /* err is optional */
}

/* The eight-bytes-at-a-time path: a special byte in each lane of a long string. */
static void test_every_lane(void **state)
{
    static const unsigned char specials[] = { 0x00, 0x01, 0x1F, '"', '\\', 0x80, 0xFF };
    char buf[64];

    (void)state;
    for (size_t k = 0; k < sizeof(specials); k++) {
        for (size_t pos = 1; pos < 40; pos++) {
            memset(buf, 'a', sizeof(buf));
            buf[0] = '"';
            buf[pos] = (char)specials[k];
            buf[41] = '"';
            /* a lone control, backslash-a, high byte or an early quote never makes JSON */
            assert_int_equal(jsoncheck_validate(buf, 42, NULL), ML_ERR);
            buf[pos] = ' '; /* the same string with a plain byte is fine */
            assert_int_equal(jsoncheck_validate(buf, 42, NULL), ML_OK);
            if (specials[k] == 0x80) { /* a two-byte sequence straddling the lanes */
                buf[pos] = (char)0xC3, buf[pos + 1] = (char)0xA9;
                assert_int_equal(jsoncheck_validate(buf, 42, NULL), ML_OK);
            }
        }
    }
}

static void test_nesting_limit(void **state)
{
    size_t n = JSONCHECK_MAX_DEPTH;
    char *buf = malloc(2 * n + 4);
    jsoncheck_error err;

    (void)state;
    assert_non_null(buf);
    memset(buf, '[', n);
    memset(buf + n, ']', n);
    assert_int_equal(jsoncheck_validate(buf, 2 * n, NULL), ML_OK);
    memset(buf, '[', n + 1);
    memset(buf + n + 1, ']', n + 1);
    assert_int_equal(jsoncheck_validate(buf, 2 * n + 2, &err), ML_ERR);
    assert_string_equal(err.why, "nesting too deep");
    for (size_t i = 0; i < n; i++) /* objects count the same */
        buf[i] = '{', buf[n + i] = '}';
    assert_int_equal(jsoncheck_validate(buf, 2 * n, NULL), ML_ERR); /* {{ is not JSON */
    free(buf);
}

/* A payload like an API event: objects of short strings, numbers and one long text. */
static size_t build_payload(char *buf, size_t cap)
{
    size_t len = 0;

    len += (size_t)snprintf(buf, cap, "{\"records\":[");
    for (int i = 0; len + 512 < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len,
                                "%s{\"id\":%d,\"name\":\"user-%d caf\xC3\xA9\",\"score\":%d.%02d,"
                                "\"tags\":[\"a\",\"b\\n\"],\"active\":true,\"note\":\"lorem ipsum "
                                "dolor sit amet, consectetur adipiscing elit, sed do eiusmod\"}",
                                i ? "," : "", i, i, i % 97, i % 100);
    len += (size_t)snprintf(buf + len, cap - len, "]}");
    return len;
}

static void test_speed(void **state)
{
    size_t cap = 8u << 20, len;
    char *buf;
    struct timespec a, b;
    double ms, per_mib;
    const int rounds = 10;

    (void)state;
#ifdef __SANITIZE_THREAD__
    skip(); /* a speed bound; TSan makes the validator ~10x slower */
#endif
    buf = malloc(cap);
    assert_non_null(buf);
    len = build_payload(buf, cap);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < rounds; i++)
        assert_int_equal(jsoncheck_validate(buf, len, NULL), ML_OK);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    per_mib = ms / rounds / ((double)len / (1 << 20));
    fprintf(stderr, "# jsoncheck: %.2f MiB validated in %.2f ms (%.3f ms/MiB)\n",
            (double)len / (1 << 20), ms / rounds, per_mib);
    assert_true(per_mib < 20.0); /* a 6 MiB body must stay far below a request's budget */
    free(buf);
}


/* JSONCHECK_NO_NUL: \u0000 refused (at its backslash), anywhere; other escapes kept. */
static void test_no_nul_flag(void **state)
{
    static const char *nul[] = { "\"a\\u0000b\"", "{\"a\\u0000\":1}", "[\"x\",{\"k\":\"\\u0000\"}]" };
    jsoncheck_error err;

    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(nul); i++) {
        assert_int_equal(jsoncheck_validate(nul[i], strlen(nul[i]), NULL), ML_OK);
        assert_int_equal(jsoncheck_validate_flags(nul[i], strlen(nul[i]), JSONCHECK_NO_NUL, &err), ML_ERR);
        assert_non_null(strstr(err.why, "NUL"));
        assert_int_equal(nul[i][err.offset], '\\');
    }
    assert_int_equal(jsoncheck_validate_flags("\"\\u0001\\u00e9\"", 14, JSONCHECK_NO_NUL, NULL), ML_OK);
}

static void test_text(void **state)
{
    jsoncheck_error err;

    (void)state;
    assert_int_equal(jsoncheck_text("h\xC3\xA9llo\tok\r\n", 11, NULL), ML_OK);
    assert_int_equal(jsoncheck_text("", 0, NULL), ML_OK);
    assert_int_equal(jsoncheck_text("ab\0c", 4, &err), ML_ERR);
    assert_int_equal(err.offset, 2);
    assert_int_equal(jsoncheck_text("a\x01", 2, NULL), ML_ERR);
    assert_int_equal(jsoncheck_text("a\xff", 2, &err), ML_ERR);
    assert_int_equal(err.offset, 1);
    assert_int_equal(jsoncheck_text("\xC3\x28", 2, NULL), ML_ERR);
    assert_int_equal(jsoncheck_text("\xED\xA0\x80", 3, NULL), ML_ERR);
    assert_int_equal(jsoncheck_text("\xC0\xAF", 2, NULL), ML_ERR);
}

/* Duplicate keys at any depth, in small (pairwise) and large (sorted) objects. */
static void test_unique_keys(void **state)
{
    char big[4096];
    size_t n = 0;
    jsoncheck_error err;
    cJSON *doc;

    (void)state;
    doc = jsoncheck_parse("{\"a\":1,\"b\":{\"a\":1,\"c\":[{\"a\":1}]}}", strlen("{\"a\":1,\"b\":{\"a\":1,\"c\":[{\"a\":1}]}}"), &err);
    assert_non_null(doc);
    cJSON_Delete(doc);
    assert_null(jsoncheck_parse("{\"a\":1,\"a\":1}", strlen("{\"a\":1,\"a\":1}"), &err));
    assert_non_null(strstr(err.why, "duplicate"));
    assert_null(jsoncheck_parse("[{\"x\":{\"k\":1,\"k\":2}}]", strlen("[{\"x\":{\"k\":1,\"k\":2}}]"), &err));
    assert_null(jsoncheck_parse("{\"a\":\"\\u0000\"}", strlen("{\"a\":\"\\u0000\"}"), &err));
    assert_null(jsoncheck_parse("{} x", strlen("{} x"), &err));
    assert_non_null(strstr(err.why, "data after"));
    /* 100 members, unique, then with the last one repeating the first */
    big[n++] = '{';
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    big[n++] = '}';
    doc = jsoncheck_parse(big, n, &err);
    assert_non_null(doc);
    cJSON_Delete(doc);
    n--;
    n += (size_t)snprintf(big + n, sizeof(big) - n, ",\"k0\":0}");
    assert_null(jsoncheck_parse(big, n, &err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents),
        cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_error_offset_and_reason),
        cmocka_unit_test(test_every_lane),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_speed),
        cmocka_unit_test(test_no_nul_flag),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_unique_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
