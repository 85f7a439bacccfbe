/* Unit tests: services/gateway/accesslog.c (the line's fields and escaping, sampling, the
 * writer: file, reopen on SIGHUP, drop-and-count when the output is stuck). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accesslog.h"

static gw_alog_line sample_line(void)
{
    return (gw_alog_line){ .ts_ms = 1796641200123, .request_id = "rid-1", .client = "10.0.0.7",
                           .subject = "alice", .ns = "team-a", .auth = "allowed",
                           .method = "POST", .route = "/functions/{fn}/invoke", .function = "hello",
                           .status = 200, .bytes_in = 17, .bytes_out = 42, .duration_us = 1234,
                           .upstream = "lambda-executor", .upstream_us = 1001,
                           .ratelimit = "allowed" };
}

/* The line parsed; asserts it is one JSON object ending in exactly one newline. */
static cJSON *parse_line(const char *buf, size_t n)
{
    cJSON *doc;

    assert_true(n > 2 && n <= GW_ALOG_LINE_MAX);
    assert_int_equal(buf[n - 1], '\n');
    assert_null(memchr(buf, '\n', n - 1));
    doc = cJSON_ParseWithLength(buf, n);
    assert_true(cJSON_IsObject(doc));
    return doc;
}

static const char *str(const cJSON *doc, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static double num(const cJSON *doc, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void test_fields(void **state)
{
    static const char *const want[][2] = {
        { "ts", "2026-12-07T11:00:00.123Z" }, { "type", "access" }, { "request_id", "rid-1" },
        { "level", "info" }, { "service", "gateway" }, { "msg", "access" },
        { "client", "10.0.0.7" }, { "subject", "alice" }, { "namespace", "team-a" },
        { "auth", "allowed" }, { "method", "POST" }, { "route", "/functions/{fn}/invoke" },
        { "function", "hello" }, { "upstream", "lambda-executor" }, { "ratelimit", "allowed" },
    };
    gw_alog_line l = sample_line();
    char buf[GW_ALOG_LINE_MAX];
    cJSON *doc;

    (void)state;
    doc = parse_line(buf, gw_alog_format(&l, buf));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_string_equal(str(doc, want[i][0]), want[i][1]);
    assert_false(cJSON_HasObjectItem(doc, "auth_error"));
    assert_int_equal((int)num(doc, "status"), 200);
    assert_int_equal((int)num(doc, "bytes_in"), 17);
    assert_int_equal((int)num(doc, "bytes_out"), 42);
    assert_true(num(doc, "duration_ms") > 1.2335 && num(doc, "duration_ms") < 1.2345);
    assert_true(num(doc, "upstream_ms") > 1.0005 && num(doc, "upstream_ms") < 1.0015);
    cJSON_Delete(doc);

    /* refused before anything was known: nulls, auth_error present, no upstream_ms */
    l = (gw_alog_line){ .ts_ms = 0, .auth = "refused", .auth_error = "expired",
                        .status = 401, .upstream_us = -1 };
    doc = parse_line(buf, gw_alog_format(&l, buf));
    assert_string_equal(str(doc, "ts"), "1970-01-01T00:00:00.000Z");
    assert_string_equal(str(doc, "auth_error"), "expired");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(doc, "subject")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(doc, "upstream")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(doc, "request_id")));
    assert_string_equal(str(doc, "ratelimit"), "off");
    assert_false(cJSON_HasObjectItem(doc, "upstream_ms"));
    cJSON_Delete(doc);
}

static void test_escaping(void **state)
{
    gw_alog_line l = sample_line();
    char buf[GW_ALOG_LINE_MAX];
    cJSON *doc;

    (void)state;
    /* quotes, backslash, control characters, DEL; invalid UTF-8: a stray byte, an overlong
     * '/', a surrogate, a cut sequence; valid multi-byte characters kept */
    l.subject = "a\"b\\c\x01\n\x1f\x7f|\xff|\xc0\xaf|\xed\xa0\x80|\xe2\x82|\xc3\xa9\xf0\x9f\x98\x80";
    l.function = "}{\",\"status\":999,\"x\":\"";
    doc = parse_line(buf, gw_alog_format(&l, buf));
    assert_string_equal(str(doc, "subject"),
                        "a\"b\\c\x01\n\x1f\x7f|\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
                        "\xc3\xa9\xf0\x9f\x98\x80");
    assert_string_equal(str(doc, "function"), "}{\",\"status\":999,\"x\":\"");
    assert_int_equal((int)num(doc, "status"), 200);
    for (size_t i = 0; buf[i] != '\n'; i++)
        assert_true((unsigned char)buf[i] >= 0x20); /* no raw control byte in the line */
    cJSON_Delete(doc);
}

static void test_bounded(void **state)
{
    char *big = malloc(20000);
    gw_alog_line l = sample_line();
    char buf[GW_ALOG_LINE_MAX];
    cJSON *doc;

    (void)state;
    assert_non_null(big);
    memset(big, 0x01, 19999); /* each byte escapes to six */
    big[19999] = '\0';
    l.request_id = l.client = l.subject = l.ns = l.method = l.route = l.function = big;
    l.auth_error = big;
    doc = parse_line(buf, gw_alog_format(&l, buf));
    assert_int_equal((int)num(doc, "status"), 200); /* the tail survives long values */
    assert_true(num(doc, "upstream_ms") > 1.0);
    cJSON_Delete(doc);
    free(big);
}

static void test_sampling(void **state)
{
    uint64_t rng = 42;
    int kept = 0;

    (void)state;
    assert_false(gw_alog_sampled(0.0, 200, &rng));
    assert_false(gw_alog_sampled(0.0, 399, &rng));
    assert_true(gw_alog_sampled(0.0, 401, &rng));
    assert_true(gw_alog_sampled(0.0, 403, &rng));
    assert_true(gw_alog_sampled(0.0, 429, &rng));
    assert_true(gw_alog_sampled(0.0, 503, &rng));
    assert_true(gw_alog_sampled(1.0, 200, &rng));
    for (int i = 0; i < 100000; i++)
        kept += gw_alog_sampled(0.25, 200, &rng);
    assert_true(kept > 23000 && kept < 27000);
    double v;
    assert_int_equal(gw_alog_parse_sample("0.5", &v), ML_OK);
    assert_true(v == 0.5);
    assert_int_equal(gw_alog_parse_sample("1", &v), ML_OK);
    assert_int_equal(gw_alog_parse_sample("1.01", &v), ML_ERR);
    assert_int_equal(gw_alog_parse_sample("-0.1", &v), ML_ERR);
    assert_int_equal(gw_alog_parse_sample("nan", &v), ML_ERR);
    assert_int_equal(gw_alog_parse_sample("0.5x", &v), ML_ERR);
    assert_int_equal(gw_alog_parse_sample("", &v), ML_ERR);
}

static size_t count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    int c;

    if (!f)
        return 0;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static void test_file_and_reopen(void **state)
{
    char dir[] = "/tmp/alogXXXXXX", path[64], rotated[64], err[256];
    gw_alog_line l = sample_line();
    gw_alog *log;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/access.log", dir);
    snprintf(rotated, sizeof(rotated), "%s/access.log.1", dir);
    log = gw_alog_start(path, 0.0, NULL, err, sizeof(err));
    assert_non_null(log);
    gw_alog_log(log, &l); /* 200 at sample 0: left out */
    l.status = 401;
    gw_alog_log(log, &l);
    gw_alog_flush(log);
    assert_int_equal(count_lines(path), 1);
    /* logrotate: move the file, SIGHUP; the next line lands in a new file */
    assert_int_equal(rename(path, rotated), 0);
    assert_int_equal(raise(SIGHUP), 0);
    gw_alog_log(log, &l);
    gw_alog_log(log, &l);
    gw_alog_stop(log);
    assert_int_equal(count_lines(rotated), 1);
    assert_int_equal(count_lines(path), 2);
    unlink(path);
    unlink(rotated);
    rmdir(dir);
    assert_null(gw_alog_start("/nonexistent-dir/x.log", 1.0, NULL, err, sizeof(err)));
    log = gw_alog_start("off", 1.0, NULL, err, sizeof(err));
    assert_non_null(log);
    gw_alog_log(log, &l);
    gw_alog_stop(log);
}

/* Reads the pipe until EOF, counting lines. */
static void *pipe_reader(void *arg)
{
    int fd = *(int *)arg;
    char buf[65536];
    size_t lines = 0;
    ssize_t n;

    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    }
    return (void *)(uintptr_t)lines;
}

static void test_stuck_output_drops(void **state)
{
    int p[2];
    char dest[64], err[256], *big = malloc(3001);
    gw_alog_line l = sample_line();
    gw_alog *log;
    pthread_t reader;
    void *read_lines;
    uint64_t written, dropped;
    const size_t total = 20000; /* ~12 MB: far more than the pipe and the buffers hold */

    (void)state;
    assert_non_null(big);
    memset(big, 'x', 3000);
    big[3000] = '\0';
    l.subject = big;
    assert_int_equal(pipe(p), 0);
    snprintf(dest, sizeof(dest), "/proc/self/fd/%d", p[1]);
    log = gw_alog_start(dest, 1.0, NULL, err, sizeof(err));
    assert_non_null(log);
    close(p[1]);
    /* nobody reads: the writer blocks in write(2), yet logging never waits */
    for (size_t i = 0; i < total; i++)
        gw_alog_log(log, &l);
    assert_int_equal(pthread_create(&reader, NULL, pipe_reader, &p[0]), 0);
    gw_alog_flush(log); /* after the writer's round: everything kept is out */
    written = gw_alog_lines(log);
    dropped = gw_alog_dropped(log);
    gw_alog_stop(log);
    assert_int_equal(pthread_join(reader, &read_lines), 0);
    close(p[0]);
    assert_true(dropped > 0);                      /* some were dropped ... */
    assert_int_equal(written + dropped, total);    /* ... and every one is accounted for */
    assert_int_equal((uintptr_t)read_lines, written);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_file_and_reopen),
        cmocka_unit_test(test_stuck_output_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
