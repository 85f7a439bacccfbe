/* test_sandbox_log.c — function logs captured from real sandboxed instances (docs/logs.md §1
 * "Capture"), seen through fnlog's sink hook the way exec_run wires them: START, what loading
 * printed (cold start), stdout and stderr lines complete, in order and marked, output between
 * invocations going to the next one, END and REPORT (Init Duration on the cold start only); a
 * handler error, a timeout and a crash with their lines; a 50 MB flood cut at the limit and
 * marked with exact counts, the executor's memory staying bounded.
 *
 * Needs root (as test_sandbox.c: it fails, never skips, without it). Runs from the repository
 * root or with ML_ROOT set. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "artifacts.h"
#include "fnlog-t.h"
#include "log.h"
#include "sandbox.h"

#define CAP_MAX 8192
#define RID "0a1b2c3d-0000-4000-8000-00000000000"   /* + one digit */

static char g_runtimes[1024];

/* What the sink saw: every line's stream, level and length; the text of short ones. */
typedef struct cap_line {
    int stream;
    char level[12];
    char rid[40];
    char text[200];   /* "" for long lines */
    size_t len;
    bool all_y;       /* a flood line: only 'y' */
} cap_line;

static cap_line *cap;
static size_t ncap, nseen;

static size_t sink(const logq_line *lines, size_t n)
{
    for (size_t i = 0; i < n; i++, nseen++) {
        cap_line *c;
        if (ncap == CAP_MAX)
            continue;
        c = &cap[ncap++];
        c->stream = lines[i].stream;
        c->len = lines[i].len;
        snprintf(c->level, sizeof(c->level), "%s", lines[i].level);
        snprintf(c->rid, sizeof(c->rid), "%s", lines[i].request_id);
        c->text[0] = '\0';
        if (lines[i].len < sizeof(c->text)) {
            memcpy(c->text, lines[i].message, lines[i].len);
            c->text[lines[i].len] = '\0';
        }
        c->all_y = lines[i].len > 0 && lines[i].message[0] == 'y' &&
                   memcmp(lines[i].message, lines[i].message + 1, lines[i].len - 1) == 0;
    }
    return n;
}

typedef struct fixture {
    char dir[64];
    sandbox_instance *inst;
    sandbox_result res;
    fnlog_inv log;
} fixture;

static int64_t self_rss_kb(void)
{
    char buf[4096];
    FILE *f = fopen("/proc/self/status", "r");
    size_t got;
    const char *k;

    if (!f)
        return -1;
    got = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[got] = '\0';
    k = strstr(buf, "VmRSS:");
    return k ? strtoll(k + 6, NULL, 10) : -1;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, 0644), 0);
    close(fd);
}

static void log_begin(fixture *f, char digit)
{
    static char rid[10][40];
    fnlog_meta m = { .request_id = rid[digit - '0'], .ns = "default", .function = "logfn",
                     .function_id = "6f1c0000-0000-4000-8000-000000000001", .version = "$LATEST",
                     .max_bytes = FNLOG_MAX_BYTES_DEFAULT, .sink = sink };

    snprintf(rid[digit - '0'], sizeof(rid[0]), "%s%c", RID, digit);
    fnlog_begin(&f->log, &m);
    assert_true(f->log.on);
}

/* Cold start of handler under invocation `digit`'s log, as pool_acquire does for exec_run. */
static void start(fixture *f, const char *handler, char digit)
{
    sandbox_spec s = { .runtime = "python3", .handler = handler, .code_dir = f->dir,
                       .runtimes_dir = g_runtimes, .function_name = "logfn",
                       .function_version = "$LATEST", .memory_mb = 1769, .timeout_s = 60,
                       .pids_max = 64, .log = &f->log };
    char err[1024] = "";

    log_begin(f, digit);
    if (sandbox_start(&s, &f->inst, err, sizeof(err)) != ML_OK)
        fail_msg("sandbox_start(%s): %s", handler, err);
}

/* One invocation under the log begun (start) or a new one (warm), finished as exec_run does. */
static sandbox_status invoke(fixture *f, const char *event, int64_t timeout_ms, char digit, bool cold)
{
    char rid[40];

    if (!cold)
        log_begin(f, digit);
    snprintf(rid, sizeof(rid), "%s%c", RID, digit);
    sandbox_result_free(&f->res);
    assert_int_equal(sandbox_invoke_logged(f->inst, &f->log, rid, event, strlen(event),
                                           ml_now_ms() + timeout_ms, 1u << 20, &f->res), ML_OK);
    fnlog_finish_result(&f->log, &f->res, 1769, cold ? sandbox_init_us(f->inst) : 0, false);
    return f->res.status;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (!f || geteuid() != 0) {
        fprintf(stderr, "test_sandbox_log needs root (namespaces, cgroups, uid switching)\n");
        free(f);
        return -1;
    }
    if (sandbox_features() != SANDBOX_F_ALL) {   /* the instances must be the real thing */
        fprintf(stderr, "full isolation unavailable\n");
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_sandbox_log_XXXXXX");
    if (!mkdtemp(f->dir) || chmod(f->dir, 0755) != 0) {
        free(f);
        return -1;
    }
    cap = calloc(CAP_MAX, sizeof(*cap));
    ncap = nseen = 0;
    *state = f;
    return cap ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char rm[128];

    sandbox_destroy(f->inst);
    sandbox_result_free(&f->res);
    fnlog_abandon(&f->log);
    snprintf(rm, sizeof(rm), "rm -rf '%s'", f->dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", f->dir);
    free(cap);
    cap = NULL;
    free(f);
    return 0;
}

/* Index of the line with exactly text (from `from`), or fails. */
static size_t find(size_t from, const char *text)
{
    for (size_t i = from; i < ncap; i++)
        if (strcmp(cap[i].text, text) == 0)
            return i;
    for (size_t i = from; i < ncap; i++)
        print_message("  [%zu] %d %s\n", i, cap[i].stream, cap[i].text);
    fail_msg("no line \"%s\"", text);
    return 0;
}

static bool has_prefix(size_t i, const char *p)
{
    return i < ncap && strncmp(cap[i].text, p, strlen(p)) == 0;
}

/* START first and END, REPORT last for invocation `digit` among cap[from..to). */
static void expect_frame(size_t from, size_t to, char digit, bool cold)
{
    char want[128];

    snprintf(want, sizeof(want), "START RequestId: %s%c Version: $LATEST", RID, digit);
    assert_string_equal(cap[from].text, want);
    snprintf(want, sizeof(want), "END RequestId: %s%c", RID, digit);
    assert_string_equal(cap[to - 2].text, want);
    snprintf(want, sizeof(want), "REPORT RequestId: %s%c\tDuration: ", RID, digit);
    assert_true(has_prefix(to - 1, want));
    assert_true(strstr(cap[to - 1].text, "\tMemory Size: 1769 MB\tMax Memory Used: ") != NULL);
    assert_int_equal(strstr(cap[to - 1].text, "\tInit Duration: ") != NULL, cold);
    for (size_t i = from; i < to; i++)
        assert_true(strstr(cap[i].rid, RID) && cap[i].rid[strlen(RID)] == digit);
}

static const char PRINTER[] =
    "import sys, os, threading, time\n"
    "print('loading stdout')\n"
    "print('loading stderr', file=sys.stderr)\n"
    "bg = None\n"
    "def later():\n"
    "    while not os.path.exists('/var/task/go') and not os.path.exists(os.environ.get('LAMBDA_TASK_ROOT', '') + '/go'):\n"
    "        time.sleep(0.01)\n"
    "    print('between invocations')\n"
    "def handler(event, context):\n"
    "    global bg\n"
    "    if event == 'join':\n"
    "        bg.join()\n"
    "    for i in range(200):\n"
    "        print('out %d' % i)\n"
    "        print('err %d' % i, file=sys.stderr)\n"
    "    sys.stdout.write('no newline at the end')\n"
    "    if event == 'start':\n"
    "        bg = threading.Thread(target=later)\n"
    "        bg.start()\n"
    "    return 'ok'\n";

/* stdout and stderr lines complete, in order, marked; init output in the cold invocation;
 * output between invocations in the next one. */
static void test_streams_in_order(void **state)
{
    fixture *f = *state;
    size_t first_end, i, o = 0, e = 0;
    char want[64];

    write_file(f->dir, "p.py", PRINTER);
    start(f, "p.handler", '1');
    assert_int_equal(invoke(f, "\"start\"", 20000, '1', true), SB_OK);
    first_end = ncap;
    expect_frame(0, first_end, '1', true);
    i = find(0, "loading stdout");
    assert_int_equal(cap[i].stream, FNLOG_STDOUT);
    assert_int_equal(cap[find(0, "loading stderr")].stream, FNLOG_STDERR);
    assert_string_equal(cap[find(0, "loading stderr")].level, "error");
    for (i = 1; i < first_end - 2; i++) {   /* every line whole, each stream in order */
        if (has_prefix(i, "out ")) {
            snprintf(want, sizeof(want), "out %zu", o++);
            assert_string_equal(cap[i].text, want);
            assert_int_equal(cap[i].stream, FNLOG_STDOUT);
            assert_string_equal(cap[i].level, "info");
        } else if (has_prefix(i, "err ")) {
            snprintf(want, sizeof(want), "err %zu", e++);
            assert_string_equal(cap[i].text, want);
            assert_int_equal(cap[i].stream, FNLOG_STDERR);
        }
    }
    assert_int_equal(o, 200);
    assert_int_equal(e, 200);
    /* the unterminated write ends the invocation as a line of its own */
    assert_int_equal(cap[find(0, "no newline at the end")].stream, FNLOG_STDOUT);

    /* the background thread prints while the instance idles (usually within these 300 ms; if
     * later, during the next invocation, before its handler prints: the next one either way) */
    write_file(f->dir, "go", "");
    ml_sleep_ms(300);
    assert_int_equal(invoke(f, "\"join\"", 20000, '2', false), SB_OK);
    expect_frame(first_end, ncap, '2', false);
    assert_int_equal(cap[find(first_end, "between invocations")].stream, FNLOG_STDOUT);
    for (i = 0; i < first_end; i++)
        assert_string_not_equal(cap[i].text, "between invocations");
    /* the 4 KiB tail is unchanged: merged, raw */
    assert_non_null(strstr(ml_buf_cstr(&f->res.log_tail), "err 199\n"));
}

static const char FAILER[] =
    "import os, signal, sys, time\n"
    "def boom(event, context):\n"
    "    print('about to fail')\n"
    "    raise Exception('boom')\n"
    "def slow(event, context):\n"
    "    print('before sleep')\n"
    "    time.sleep(30)\n"
    "def crash(event, context):\n"
    "    print('dying', file=sys.stderr)\n"
    "    os.kill(os.getpid(), signal.SIGKILL)\n";

static void test_error_timeout_crash(void **state)
{
    fixture *f = *state;
    char want[160];
    size_t i;

    write_file(f->dir, "f.py", FAILER);
    start(f, "f.boom", '1');
    assert_int_equal(invoke(f, "{}", 20000, '1', true), SB_HANDLER_ERROR);
    expect_frame(0, ncap, '1', true);
    i = find(0, "about to fail");
    i = find(i, "[ERROR] Exception: boom");
    assert_int_equal(cap[i].stream, FNLOG_STDERR);
    assert_string_equal(cap[i].level, "error");
    assert_int_equal(cap[find(i, "Exception: boom")].stream, FNLOG_STDERR);   /* the traceback */
    sandbox_destroy(f->inst);
    f->inst = NULL;

    ncap = 0;
    start(f, "f.slow", '2');
    assert_int_equal(invoke(f, "{}", 1000, '2', true), SB_TIMEOUT);
    expect_frame(0, ncap, '2', true);
    i = find(0, "before sleep");
    snprintf(want, sizeof(want), " %s2 Task timed out after 1.00 seconds", RID);
    assert_true(cap[ncap - 3].len > 24 && strcmp(cap[ncap - 3].text + 24, want) == 0);
    assert_int_equal(cap[ncap - 3].stream, FNLOG_PLATFORM);
    assert_true(i < ncap - 3);
    sandbox_destroy(f->inst);
    f->inst = NULL;

    ncap = 0;
    start(f, "f.crash", '3');
    assert_int_equal(invoke(f, "{}", 20000, '3', true), SB_CRASH);
    expect_frame(0, ncap, '3', true);
    assert_int_equal(cap[find(0, "dying")].stream, FNLOG_STDERR);
    snprintf(want, sizeof(want), "RequestId: %s3 Error: Runtime exited with error: signal: killed", RID);
    assert_true(has_prefix(ncap - 3, want));
}

static const char FLOOD[] =
    "import sys\n"
    "def handler(event, context):\n"
    "    line = 'y' * 1023\n"
    "    for i in range(event):\n"
    "        print(line)\n"
    "    print('THE-END')\n"
    "    return 'done'\n";

/* 50 MiB of output: 4 MiB kept as whole lines, the rest counted exactly and marked; the
 * executor's memory stays bounded (nothing past the limit is buffered). */
static void test_flood_cut_and_marked(void **state)
{
    fixture *f = *state;
    size_t kept = 0, i;
    int64_t rss_before, rss_after;
    char want[200];

    write_file(f->dir, "fl.py", FLOOD);
    start(f, "fl.handler", '1');
    assert_int_equal(invoke(f, "100", 20000, '1', true), SB_OK);   /* warm up allocations */
    ncap = nseen = 0;
    rss_before = self_rss_kb();
    assert_int_equal(invoke(f, "51200", 60000, '2', false), SB_OK);   /* 51200 KiB */
    rss_after = self_rss_kb();
    assert_string_equal(ml_buf_cstr(&f->res.payload), "\"done\"");
    expect_frame(0, ncap, '2', false);
    for (i = 0; i < ncap; i++) {
        if (cap[i].stream != FNLOG_STDOUT)
            continue;
        assert_true(cap[i].all_y);   /* whole lines only */
        assert_int_equal(cap[i].len, 1023);
        kept++;
    }
    assert_int_equal(kept, FNLOG_MAX_BYTES_DEFAULT / 1024);
    /* dropped: 47104 lines of 1024 bytes, and THE-END's 8 */
    snprintf(want, sizeof(want), "[minilambda] log output truncated: %d bytes in %d lines dropped "
             "(limit %d bytes per invocation)", 47104 * 1024 + 8, 47104 + 1, FNLOG_MAX_BYTES_DEFAULT);
    assert_string_equal(cap[ncap - 3].text, want);
    assert_string_equal(cap[ncap - 3].level, "warn");
    assert_int_equal(nseen, ncap);
    /* the tail still ends with what was printed last */
    assert_int_equal(strcmp(ml_buf_cstr(&f->res.log_tail) + f->res.log_tail.len - 8, "THE-END\n"), 0);
    print_message("flood: RSS %lld -> %lld kB\n", (long long)rss_before, (long long)rss_after);
    assert_true(rss_after - rss_before < 8 * 1024);
}

int main(void)
{
    const char *root = getenv("ML_ROOT");
    char cwd[512], repo_rt[1024], cache[] = "/tmp/ml-test-runtimes-XXXXXX", err[512] = "", rm[128];
    char report[4096];
    artifacts a = { 0 };
    int rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_streams_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_timeout_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flood_cut_and_marked, setup, teardown),
    };

    ml_log_init("test_sandbox_log", ML_LOG_WARN);
    if (!root)
        root = getcwd(cwd, sizeof(cwd));
    snprintf(repo_rt, sizeof(repo_rt), "%s/services/lambda-executor/runtimes", root ? root : ".");
    if (!mkdtemp(cache) || artifacts_init(&a, cache) != ML_OK ||
        artifacts_stage_runtimes(&a, repo_rt, g_runtimes, sizeof(g_runtimes), err, sizeof(err)) != ML_OK) {
        fprintf(stderr, "cannot stage the runtimes: %s\n", err);
        return 1;
    }
    if (geteuid() == 0 && sandbox_init("minilambda-test-log", report, sizeof(report)) != ML_OK)
        fprintf(stderr, "sandbox_init failed: %s\n", report);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(rm, sizeof(rm), "rm -rf '%s'", cache);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", cache);
    return rc;
}
