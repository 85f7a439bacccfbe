/* test_fnlog.c — one invocation's function log (fnlog.h, docs/logs.md §1 "Capture"): bytes
 * split into lines at \n, partial lines carried across reads per stream, 64 KiB cuts, the
 * per-invocation limit with its marker, level detection, the platform lines in Lambda's form,
 * queue-full drops, a zeroed fnlog_inv that discards, and bytes that are not UTF-8. Lines are
 * seen through the sink hook (no store). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fnlog-t.h"
#include "sandbox.h"

#define CAP_MAX 4096

typedef struct cap_line {
    int stream;
    char level[16];
    char *msg;
    size_t len;
    int64_t ts;
    char rid[64], ns[32], fn[32], fid[40], ver[16];
} cap_line;

static cap_line cap[CAP_MAX];
static size_t ncap, nflush, refuse_first;

/* The test sink: copies every line (refuse_first: takes nothing of the first N batches). */
static size_t sink(const logq_line *lines, size_t n)
{
    nflush++;
    if (refuse_first > 0) {
        refuse_first--;
        return 0;
    }
    for (size_t i = 0; i < n && ncap < CAP_MAX; i++) {
        cap_line *c = &cap[ncap++];
        c->stream = lines[i].stream;
        snprintf(c->level, sizeof(c->level), "%s", lines[i].level);
        c->msg = malloc(lines[i].len + 1);
        memcpy(c->msg, lines[i].message, lines[i].len);
        c->msg[lines[i].len] = '\0';
        c->len = lines[i].len;
        c->ts = lines[i].ts_us;
        snprintf(c->rid, sizeof(c->rid), "%s", lines[i].request_id);
        snprintf(c->ns, sizeof(c->ns), "%s", lines[i].ns);
        snprintf(c->fn, sizeof(c->fn), "%s", lines[i].function);
        snprintf(c->fid, sizeof(c->fid), "%s", lines[i].function_id);
        snprintf(c->ver, sizeof(c->ver), "%s", lines[i].version);
    }
    return n;
}

static int reset(void **state)
{
    (void)state;
    for (size_t i = 0; i < ncap; i++)
        free(cap[i].msg);
    ncap = nflush = refuse_first = 0;
    return 0;
}

static void begin(fnlog_inv *inv, int64_t max_bytes)
{
    fnlog_meta m = { .request_id = "11111111-2222-3333-4444-555555555555", .ns = "team-a",
                     .function = "hello", .function_id = "9d0c2b1e-0000-4000-8000-000000000001",
                     .version = "$LATEST", .max_bytes = max_bytes, .sink = sink };
    fnlog_begin(inv, &m);
    assert_true(inv->on);
}

static void finish_ok(fnlog_inv *inv)
{
    fnlog_end e = { .status = SB_OK, .duration_us = 1000, .memory_mb = 128, .max_memory_bytes = 1 << 20 };
    fnlog_finish(inv, &e);
}

/* Index of the first captured line (from `from`) of stream s, or -1. */
static long find_stream(size_t from, int s)
{
    for (size_t i = from; i < ncap; i++)
        if (cap[i].stream == s)
            return (long)i;
    return -1;
}

/* The function's own lines (stdout/stderr) in order, joined with '|'. */
static void own_lines(char *out, size_t len, int stream)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < ncap; i++) {
        if (cap[i].stream != stream)
            continue;
        used += (size_t)snprintf(out + used, len - used, "%s%s", used ? "|" : "", cap[i].msg);
        assert_true(used < len);
    }
}

static void feed_str(fnlog_inv *inv, fnlog_stream s, const char *t)
{
    fnlog_feed(inv, s, t, strlen(t));
}

static void test_split_lines(void **state)
{
    fnlog_inv inv;
    char got[256];

    (void)state;
    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    feed_str(&inv, FNLOG_STDOUT, "one\ntwo\n\nthree");
    fnlog_flush(&inv);
    own_lines(got, sizeof(got), FNLOG_STDOUT);
    assert_string_equal(got, "one|two|");   /* "three" waits for its newline */
    finish_ok(&inv);
    own_lines(got, sizeof(got), FNLOG_STDOUT);
    assert_string_equal(got, "one|two||three");   /* the end flushes an unterminated line */
    assert_false(inv.on);   /* finish freed and zeroed it */
    for (size_t i = 0; i < ncap; i++) {
        assert_string_equal(cap[i].rid, "11111111-2222-3333-4444-555555555555");
        assert_string_equal(cap[i].ns, "team-a");
        assert_string_equal(cap[i].fn, "hello");
        assert_string_equal(cap[i].fid, "9d0c2b1e-0000-4000-8000-000000000001");
        assert_string_equal(cap[i].ver, "$LATEST");
        assert_true(cap[i].ts > 1700000000000000LL);   /* wall clock, microseconds */
    }
}

static void test_partial_lines_per_stream(void **state)
{
    fnlog_inv inv;
    char got[256];

    (void)state;
    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    feed_str(&inv, FNLOG_STDOUT, "hel");
    feed_str(&inv, FNLOG_STDERR, "oops ");
    feed_str(&inv, FNLOG_STDOUT, "lo\nwor");
    feed_str(&inv, FNLOG_STDERR, "it broke\n");
    feed_str(&inv, FNLOG_STDOUT, "ld\n");
    finish_ok(&inv);
    own_lines(got, sizeof(got), FNLOG_STDOUT);
    assert_string_equal(got, "hello|world");
    own_lines(got, sizeof(got), FNLOG_STDERR);
    assert_string_equal(got, "oops it broke");
    /* ordered by when each line was completed */
    assert_true(find_stream(0, FNLOG_STDERR) < (long)ncap);
    assert_string_equal(cap[find_stream(0, FNLOG_STDOUT)].msg, "hello");
}

static void test_long_line_cut(void **state)
{
    fnlog_inv inv;
    size_t big = 150 * 1024;
    char *line = malloc(big + 1);
    long i;

    (void)state;
    for (size_t k = 0; k < big; k++)
        line[k] = (char)('a' + k % 26);
    line[big] = '\n';
    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    /* in uneven reads, as a pipe gives them */
    fnlog_feed(&inv, FNLOG_STDOUT, line, 10000);
    fnlog_feed(&inv, FNLOG_STDOUT, line + 10000, big + 1 - 10000);
    memset(line, 'z', FNLOG_LINE_MAX);
    line[FNLOG_LINE_MAX] = '\n';
    fnlog_feed(&inv, FNLOG_STDOUT, line, FNLOG_LINE_MAX + 1);   /* exactly 64 KiB: one line */
    finish_ok(&inv);
    assert_int_equal(FNLOG_LINE_MAX, 65536);
    i = find_stream(0, FNLOG_STDOUT);
    assert_true(i >= 0);
    assert_int_equal(cap[i].len, FNLOG_LINE_MAX);
    assert_int_equal(cap[i].msg[0], 'a');
    assert_int_equal(cap[i + 1].stream, FNLOG_STDOUT);
    assert_int_equal(cap[i + 1].len, FNLOG_LINE_MAX);
    assert_int_equal(cap[i + 1].msg[0], 'a' + FNLOG_LINE_MAX % 26);   /* continues where cut */
    assert_int_equal(cap[i + 2].len, big - 2 * FNLOG_LINE_MAX);
    assert_int_equal(cap[i + 3].len, FNLOG_LINE_MAX);
    assert_int_equal(cap[i + 3].msg[0], 'z');
    assert_int_equal(find_stream((size_t)i + 4, FNLOG_STDOUT), -1);   /* no empty piece after */
    free(line);
}

static void test_limit_and_marker(void **state)
{
    fnlog_inv inv;
    char line[100];
    fnlog_counts c;
    size_t kept = 0;

    (void)state;
    memset(line, 'x', 99);
    line[99] = '\n';
    begin(&inv, 1000);
    for (int i = 0; i < 100; i++)
        fnlog_feed(&inv, i % 2 ? FNLOG_STDERR : FNLOG_STDOUT, line, 100);
    feed_str(&inv, FNLOG_STDOUT, "unterminated tail");   /* dropped too: one more line */
    fnlog_get_counts(&inv, &c);
    assert_int_equal(c.kept_bytes, 1000);
    fnlog_finish(&inv, &(fnlog_end){ .status = SB_OK, .duration_us = 1, .memory_mb = 128 });
    for (size_t i = 0; i < ncap; i++)
        kept += cap[i].stream != FNLOG_PLATFORM;
    assert_int_equal(kept, 10);   /* exactly the 1000 bytes that fit */
    for (size_t i = 0; i < ncap; i++) {
        if (strncmp(cap[i].msg, "[minilambda]", 12) != 0)
            continue;
        assert_string_equal(cap[i].msg, "[minilambda] log output truncated: 9017 bytes in 91 lines "
                                        "dropped (limit 1000 bytes per invocation)");
        assert_int_equal(cap[i].stream, FNLOG_PLATFORM);
        assert_string_equal(cap[i].level, "warn");
        assert_int_equal(strncmp(cap[i + 1].msg, "END RequestId: ", 15), 0);   /* right before END */
        return;
    }
    fail_msg("no truncation marker");
}

/* A line that crosses the limit is dropped whole, also what was carried of it. */
static void test_limit_cuts_carried_line(void **state)
{
    fnlog_inv inv;
    char got[256];

    (void)state;
    begin(&inv, 10);
    feed_str(&inv, FNLOG_STDOUT, "abc\nde");
    feed_str(&inv, FNLOG_STDOUT, "fghijk\nlm\n");
    finish_ok(&inv);
    own_lines(got, sizeof(got), FNLOG_STDOUT);
    assert_string_equal(got, "abc");
    assert_true(find_stream(0, FNLOG_PLATFORM) >= 0);
    for (size_t i = 0; i < ncap; i++)
        if (strstr(cap[i].msg, "truncated"))
            assert_string_equal(cap[i].msg, "[minilambda] log output truncated: 12 bytes in 2 lines "
                                            "dropped (limit 10 bytes per invocation)");
}

static void test_levels(void **state)
{
    static const struct {
        fnlog_stream s;
        const char *msg, *level;
    } cases[] = {
        { FNLOG_STDOUT, "hello", "info" },
        { FNLOG_STDERR, "hello", "error" },
        { FNLOG_PLATFORM, "START RequestId: x", "info" },
        { FNLOG_STDOUT, "ERROR something broke", "error" },
        { FNLOG_STDOUT, "[ERROR]\t2026-12-07T11:00:00Z\tboom", "error" },
        { FNLOG_STDERR, "WARN: disk almost full", "warn" },
        { FNLOG_STDERR, "[WARNING] careful", "warn" },
        { FNLOG_STDERR, "INFO started", "info" },
        { FNLOG_STDERR, "DEBUG x=1", "debug" },
        { FNLOG_STDOUT, "TRACE", "trace" },
        { FNLOG_STDOUT, "FATAL out of cheese", "fatal" },
        { FNLOG_STDOUT, "[CRITICAL] db down", "critical" },
        { FNLOG_STDOUT, "ERRORS are fine", "info" },          /* not the token */
        { FNLOG_STDOUT, "[ERROR boom", "info" },              /* unclosed bracket */
        { FNLOG_STDOUT, "error lower case", "info" },         /* tokens are upper case */
        { FNLOG_STDERR, " INFO leading space", "error" },
        { FNLOG_STDOUT, "{\"level\":\"warn\",\"msg\":\"x\"}", "warn" },
        { FNLOG_STDERR, "{\"msg\":\"x\",\"level\":\"DEBUG\"}", "debug" },
        { FNLOG_STDERR, "{\"msg\":\"x\",\"level\":\"loud\"}", "error" },   /* unknown: by stream */
        { FNLOG_STDOUT, "{\"nested\":{\"level\":\"error\"}}", "info" },   /* top level only */
        { FNLOG_STDOUT, "{\"level\":\"error\"", "info" },                /* not JSON */
    };

    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(cases); i++) {
        const char *l = fnlog_level(cases[i].s, cases[i].msg, strlen(cases[i].msg));
        if (strcmp(l, cases[i].level) != 0)
            fail_msg("\"%s\" on stream %d: level %s, want %s", cases[i].msg, cases[i].s, l,
                     cases[i].level);
    }
}

/* Levels reach the sink with each line. */
static void test_levels_on_lines(void **state)
{
    fnlog_inv inv;

    (void)state;
    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    feed_str(&inv, FNLOG_STDOUT, "[ERROR] Exception: boom\nplain\n");
    feed_str(&inv, FNLOG_STDERR, "Traceback (most recent call last):\n");
    finish_ok(&inv);
    assert_string_equal(cap[find_stream(0, FNLOG_STDOUT)].level, "error");
    assert_string_equal(cap[find_stream((size_t)find_stream(0, FNLOG_STDOUT) + 1, FNLOG_STDOUT)].level, "info");
    assert_string_equal(cap[find_stream(0, FNLOG_STDERR)].level, "error");
}

static void test_zeroed_discards(void **state)
{
    fnlog_inv inv;

    (void)state;
    memset(&inv, 0, sizeof(inv));
    feed_str(&inv, FNLOG_STDOUT, "nobody hears this\n");
    fnlog_flush(&inv);
    finish_ok(&inv);
    fnlog_abandon(&inv);
    fnlog_feed(NULL, FNLOG_STDOUT, "x\n", 2);
    fnlog_flush(NULL);
    fnlog_finish(NULL, NULL);
    assert_int_equal(nflush, 0);
    assert_int_equal(ncap, 0);
    /* without a sink, nothing is set up unless the queue is on */
    fnlog_begin(&inv, &(fnlog_meta){ .request_id = "r", .version = "$LATEST" });
    assert_int_equal(inv.on, logq_enabled());
    fnlog_abandon(&inv);
    assert_false(inv.on);
}

static void test_not_utf8_passes_through(void **state)
{
    static const char raw[] = "\xff\xfe ok \xc3\x28 \x00nul \xe2\x82\n";
    fnlog_inv inv;
    long i;

    (void)state;
    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    fnlog_feed(&inv, FNLOG_STDERR, raw, sizeof(raw) - 1);
    finish_ok(&inv);
    i = find_stream(0, FNLOG_STDERR);
    assert_true(i >= 0);
    assert_int_equal(cap[i].len, sizeof(raw) - 2);
    assert_memory_equal(cap[i].msg, raw, sizeof(raw) - 2);
}

static void test_platform_lines(void **state)
{
    fnlog_inv inv;
    const char *rid = "11111111-2222-3333-4444-555555555555";
    char want[256];

    (void)state;
    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    feed_str(&inv, FNLOG_STDOUT, "hi\n");
    fnlog_finish(&inv, &(fnlog_end){ .status = SB_OK, .duration_us = 12341, .memory_mb = 128,
                                     .max_memory_bytes = 41LL << 20, .init_us = 40123 });
    assert_int_equal(ncap, 4);
    assert_int_equal(cap[0].stream, FNLOG_PLATFORM);
    snprintf(want, sizeof(want), "START RequestId: %s Version: $LATEST", rid);
    assert_string_equal(cap[0].msg, want);
    assert_string_equal(cap[0].level, "info");
    assert_string_equal(cap[1].msg, "hi");
    snprintf(want, sizeof(want), "END RequestId: %s", rid);
    assert_string_equal(cap[2].msg, want);
    snprintf(want, sizeof(want), "REPORT RequestId: %s\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
             "Memory Size: 128 MB\tMax Memory Used: 41 MB\tInit Duration: 40.12 ms", rid);
    assert_string_equal(cap[3].msg, want);
    for (int i = 0; i < 4; i++)
        assert_true(cap[i].ts >= cap[0].ts);
    reset(NULL);

    /* warm: no Init Duration; a whole millisecond bills as itself */
    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    fnlog_finish(&inv, &(fnlog_end){ .status = SB_OK, .duration_us = 3000, .memory_mb = 256,
                                     .max_memory_bytes = -1 });
    snprintf(want, sizeof(want), "REPORT RequestId: %s\tDuration: 3.00 ms\tBilled Duration: 3 ms\t"
             "Memory Size: 256 MB\tMax Memory Used: 0 MB", rid);
    assert_string_equal(cap[ncap - 1].msg, want);
}

static void test_timeout_and_crash_lines(void **state)
{
    fnlog_inv inv;
    const char *rid = "11111111-2222-3333-4444-555555555555";
    char want[256];
    const char *m;

    (void)state;
    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    fnlog_finish(&inv, &(fnlog_end){ .status = SB_TIMEOUT, .error_type = "TimeoutError",
                                     .error_message = "Task timed out after 3.00 seconds",
                                     .duration_us = 3000500, .memory_mb = 128 });
    assert_int_equal(ncap, 4);   /* START, the timeout, END, REPORT */
    m = cap[1].msg;
    /* "2026-12-07T11:00:03.123Z <id> Task timed out after 3.00 seconds" */
    assert_int_equal(strlen(m), 24 + 1 + strlen(rid) + 1 + 33);
    assert_int_equal(m[10], 'T');
    assert_int_equal(m[23], 'Z');
    snprintf(want, sizeof(want), " %s Task timed out after 3.00 seconds", rid);
    assert_string_equal(m + 24, want);
    assert_int_equal(cap[1].stream, FNLOG_PLATFORM);
    assert_int_equal(strncmp(cap[2].msg, "END ", 4), 0);
    reset(NULL);

    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    snprintf(want, sizeof(want), "RequestId: %s Error: Runtime exited with error: signal: killed", rid);
    fnlog_finish(&inv, &(fnlog_end){ .status = SB_CRASH, .error_message = want, .memory_mb = 128 });
    assert_string_equal(cap[1].msg, want);
    reset(NULL);

    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    fnlog_finish(&inv, &(fnlog_end){ .status = SB_HANDLER_ERROR, .init_failed = true,
                                     .error_type = "Runtime.ImportModuleError", .init_us = 5000,
                                     .memory_mb = 128 });
    assert_string_equal(cap[1].msg, "INIT_REPORT Init Duration: 5.00 ms\tPhase: init\tStatus: error\t"
                                    "Error Type: Runtime.ImportModuleError");
    reset(NULL);

    /* a handler error gets no platform line of its own: the runtime printed it */
    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    fnlog_finish(&inv, &(fnlog_end){ .status = SB_HANDLER_ERROR, .error_type = "Exception",
                                     .error_message = "boom", .memory_mb = 128 });
    assert_int_equal(ncap, 3);
}

static void test_queue_full_marked(void **state)
{
    fnlog_inv inv;
    bool marked = false;

    (void)state;
    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    feed_str(&inv, FNLOG_STDOUT, "a\nb\nc\n");
    refuse_first = 1;
    fnlog_flush(&inv);   /* START, a, b, c refused */
    feed_str(&inv, FNLOG_STDOUT, "d\n");
    finish_ok(&inv);
    for (size_t i = 0; i < ncap; i++)
        if (strcmp(cap[i].msg, "[minilambda] log output truncated: 4 lines dropped (the log queue "
                               "was full)") == 0)
            marked = true;
    assert_true(marked);
    assert_string_equal(cap[0].msg, "d");
}

/* Many lines: batches are flushed as they fill, lines too long for the batch's arena go out
 * on their own, nothing lost, order kept. */
static void test_batches_in_order(void **state)
{
    fnlog_inv inv;
    char line[32], *big = malloc(12001);
    int next = 0, bigs = 0;

    (void)state;
    memset(big, 'q', 12000);
    big[12000] = '\n';
    begin(&inv, FNLOG_MAX_BYTES_DEFAULT);
    for (int i = 0; i < 3000; i++) {
        int n = snprintf(line, sizeof(line), "line %d\n", i);
        fnlog_feed(&inv, FNLOG_STDOUT, line, (size_t)n);
        if (i % 500 == 7)
            fnlog_feed(&inv, FNLOG_STDOUT, big, 12001);
    }
    finish_ok(&inv);
    assert_true(nflush > 3000 / FNLOG_BATCH);
    for (size_t i = 0; i < ncap; i++) {
        if (cap[i].stream != FNLOG_STDOUT)
            continue;
        if (cap[i].msg[0] == 'q') {
            assert_int_equal(cap[i].len, 12000);
            assert_string_equal(cap[i - 1].msg + 5, (snprintf(line, sizeof(line), "%d", next - 1), line));
            bigs++;
            continue;
        }
        snprintf(line, sizeof(line), "line %d", next++);
        assert_string_equal(cap[i].msg, line);
    }
    assert_int_equal(next, 3000);
    assert_int_equal(bigs, 6);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_split_lines, reset),
        cmocka_unit_test_teardown(test_partial_lines_per_stream, reset),
        cmocka_unit_test_teardown(test_long_line_cut, reset),
        cmocka_unit_test_teardown(test_limit_and_marker, reset),
        cmocka_unit_test_teardown(test_limit_cuts_carried_line, reset),
        cmocka_unit_test_teardown(test_levels, reset),
        cmocka_unit_test_teardown(test_levels_on_lines, reset),
        cmocka_unit_test_teardown(test_zeroed_discards, reset),
        cmocka_unit_test_teardown(test_not_utf8_passes_through, reset),
        cmocka_unit_test_teardown(test_platform_lines, reset),
        cmocka_unit_test_teardown(test_timeout_and_crash_lines, reset),
        cmocka_unit_test_teardown(test_queue_full_marked, reset),
        cmocka_unit_test_teardown(test_batches_in_order, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
