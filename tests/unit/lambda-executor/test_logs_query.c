/* Unit tests: GET /functions/{fn}/logs's parameters (logs_query.c) and the COPY text
 * encoding of a line (logs_store.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "logs-int.h"
#include "logs_query.h"

#define US 1000000LL
#define NOW (1796641200LL * US) /* 2026-12-07T11:00:00Z */

static const char *param(void *ud, const char *name)
{
    const char *const *kv = ud;

    for (; kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

/* The name logs_query_from reports as bad, "" when it accepts. */
static const char *bad_param(const char *const *kv, logs_query *lq)
{
    static char bad[32];

    bad[0] = '\0';
    logs_query_from(param, (void *)kv, NOW, lq, bad, sizeof(bad));
    return bad;
}

static void test_times(void **state)
{
    int64_t t;

    (void)state;
    assert_int_equal(logs_parse_time("2026-12-07T11:00:00Z", NOW, &t), ML_OK);
    assert_int_equal(t, NOW);
    assert_int_equal(logs_parse_time("2026-12-07T12:30:00.123456+01:30", NOW, &t), ML_OK);
    assert_int_equal(t, NOW + 123456);
    assert_int_equal(logs_parse_time("2026-12-07T11:00:00.5Z", NOW, &t), ML_OK);
    assert_int_equal(t, NOW + 500000);
    assert_int_equal(logs_parse_time("1796641200000", NOW, &t), ML_OK); /* epoch ms */
    assert_int_equal(t, NOW);
    assert_int_equal(logs_parse_time("10m", NOW, &t), ML_OK);
    assert_int_equal(t, NOW - 600 * US);
    assert_int_equal(logs_parse_time("2h", NOW, &t), ML_OK);
    assert_int_equal(t, NOW - 7200 * US);
    assert_int_equal(logs_parse_time("7d", NOW, &t), ML_OK);
    assert_int_equal(t, NOW - 7 * 86400 * US);
    assert_int_equal(logs_parse_time("30s", NOW, &t), ML_OK);
    assert_int_equal(t, NOW - 30 * US);
    const char *bad[] = { "", "d", "10x", "-5m", "2026-12-07", "2026-12-07T11:00:00",
                          "2026-13-07T11:00:00Z", "2026-12-07T11:00:00+0100", "yesterday", "1.5h" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (logs_parse_time(bad[i], NOW, &t) == ML_OK)
            fail_msg("accepted '%s'", bad[i]);
}

static void test_defaults(void **state)
{
    logs_query lq;

    (void)state;
    assert_string_equal(bad_param((const char *[]){ NULL }, &lq), "");
    assert_int_equal(lq.since_us, NOW - 3600 * US);
    assert_false(lq.has_until);
    assert_int_equal(lq.limit, 100);
    assert_false(lq.has_cursor);
    assert_false(lq.follow);
    assert_string_equal(lq.streams, "");
    /* a request id without since: the invocation's whole range */
    assert_string_equal(bad_param((const char *[]){ "request_id", "0b7e4a8c-2f3d-4e5f-8a9b-1c2d3e4f5a6b", NULL }, &lq), "");
    assert_int_equal(lq.since_us, 0);
    assert_string_equal(bad_param((const char *[]){ "stream", "platform,stdout,stdout", "follow", "1",
                                                    "limit", "1000", "cursor", "1796641200000000.42", NULL }, &lq), "");
    assert_string_equal(lq.streams, "{0,2}");
    assert_true(lq.follow);
    assert_int_equal(lq.limit, 1000);
    assert_int_equal(lq.cursor_us, NOW);
    assert_int_equal(lq.cursor_id, 42);
}

static void test_bad_parameters_named(void **state)
{
    logs_query lq;

    (void)state;
    assert_string_equal(bad_param((const char *[]){ "since", "soon", NULL }, &lq), "since");
    assert_string_equal(bad_param((const char *[]){ "until", "", NULL }, &lq), "until");
    assert_string_equal(bad_param((const char *[]){ "request_id", "42", NULL }, &lq), "request_id");
    assert_string_equal(bad_param((const char *[]){ "stream", "stdin", NULL }, &lq), "stream");
    assert_string_equal(bad_param((const char *[]){ "stream", "", NULL }, &lq), "stream");
    assert_string_equal(bad_param((const char *[]){ "limit", "0", NULL }, &lq), "limit");
    assert_string_equal(bad_param((const char *[]){ "limit", "1001", NULL }, &lq), "limit");
    assert_string_equal(bad_param((const char *[]){ "cursor", "abc", NULL }, &lq), "cursor");
    assert_string_equal(bad_param((const char *[]){ "cursor", "12.", NULL }, &lq), "cursor");
    assert_string_equal(bad_param((const char *[]){ "q", "\xff", NULL }, &lq), "q");
    assert_string_equal(bad_param((const char *[]){ "follow", "yes please", NULL }, &lq), "follow");
}

static void test_copy_text(void **state)
{
    static const char raw[] = "tab\there\nnl\\ \r \x01 \0 \xc3\xa9 \xed\xa0\x80 \xf0\x9f\x98\x80 \xc3";
    ml_buf b;

    (void)state;
    ml_buf_init(&b, 0);
    assert_int_equal(logs_copy_text(&b, raw, sizeof(raw) - 1), ML_OK);
    /* a surrogate (ED A0 80) is three bad bytes; a cut sequence at the end one */
    assert_string_equal(ml_buf_cstr(&b), "tab\\there\\nnl\\\\ \\r \x01 \xef\xbf\xbd \xc3\xa9 "
                                         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xf0\x9f\x98\x80 \xef\xbf\xbd");
    ml_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_parameters_named),
        cmocka_unit_test(test_copy_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
