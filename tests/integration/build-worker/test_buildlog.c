/* Integration tests: the build-worker's log lines (services/build-worker/buildlog.c) against
 * the real Postgres at MINILAMBDA_BUILD_DB_URL (migrated): numbering across a takeover, the
 * per-build bounds (10,000 lines / 1 MiB, then one line saying so), and a line that cannot be
 * stored being counted, not fatal. Each test uses a build of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buildlog.h"
#include "log.h"

static pg_conn *g_db;
static metrics_registry *g_reg;
static metric *g_failures;

/* A new build row (with its function) into id. */
static void new_build(char id[ML_UUID_LEN])
{
    PGresult *r = pg_query(g_db, NULL,
                           "WITH f AS (INSERT INTO build_functions (name, runtime, handler, webhook_secret)"
                           " VALUES ('bl-' || replace(gen_random_uuid()::text, '-', ''), 'python3',"
                           " 'app.handler', 'whsec_dGVzdA==') RETURNING id)"
                           " INSERT INTO builds (function_id, runtime, handler, package_key, package_size,"
                           " package_sha256) SELECT id, 'python3', 'app.handler', 'k', 1, repeat('0', 64)"
                           " FROM f RETURNING id",
                           0, NULL);

    assert_non_null(r);
    assert_int_equal(pg_get_text_copy(r, 0, 0, id, ML_UUID_LEN), ML_OK);
    PQclear(r);
}

/* SELECT <expr> over the build's lines, as an integer. */
static int64_t lines_int(const char *id, const char *expr)
{
    char sql[256];
    int64_t v = -1;
    PGresult *r;

    assert_int_equal(ml_snprintf(sql, sizeof(sql), "SELECT %s FROM build_log_lines WHERE build_id = $1", expr), ML_OK);
    r = pg_query(g_db, NULL, sql, 1, (const char *[]){ id });
    assert_non_null(r);
    assert_int_equal(pg_get_int64(r, 0, 0, &v), ML_OK);
    PQclear(r);
    return v;
}

/* The message of the build's last line (static buffer). */
static const char *last_message(const char *id, char *level)
{
    static char msg[BUILDLOG_MESSAGE_MAX + 1];
    PGresult *r = pg_query(g_db, NULL, "SELECT message, level FROM build_log_lines WHERE build_id = $1"
                           " ORDER BY seq DESC LIMIT 1", 1, (const char *[]){ id });

    assert_non_null(r);
    assert_int_equal(PQntuples(r), 1);
    ml_strlcpy(msg, pg_get_text(r, 0, 0), sizeof(msg));
    ml_strlcpy(level, pg_get_text(r, 0, 1), 8);
    PQclear(r);
    return msg;
}

static void test_sequence_and_takeover(void **state)
{
    char id[ML_UUID_LEN], level[8];
    buildlog a, b;

    ML_UNUSED(state);
    new_build(id);
    buildlog_open(&a, g_db, id, g_failures);
    buildlog_add(&a, "info", "claim", "claimed by %s", "w1");
    buildlog_add(&a, "info", "download", "downloaded %d bytes", 10);
    /* another worker takes the build over: the same sequence goes on */
    buildlog_open(&b, g_db, id, g_failures);
    assert_int_equal(b.lines, 2);
    buildlog_add(&b, "info", "claim", "claimed by %s", "w2");
    assert_int_equal(lines_int(id, "count(*)"), 3);
    assert_int_equal(lines_int(id, "max(seq)"), 3);
    assert_string_equal(last_message(id, level), "claimed by w2");
}

static void test_line_bound(void **state)
{
    char id[ML_UUID_LEN], level[8];
    buildlog l;

    ML_UNUSED(state);
    new_build(id);
    buildlog_open(&l, g_db, id, g_failures);
    for (int i = 0; i < BUILDLOG_MAX_LINES + 50; i++)
        buildlog_add(&l, "error", "extract", "rejected entry %d", i);
    assert_int_equal(lines_int(id, "count(*)"), BUILDLOG_MAX_LINES);
    assert_int_equal(lines_int(id, "max(seq)"), BUILDLOG_MAX_LINES);
    assert_non_null(strstr(last_message(id, level), "log limit reached"));
    assert_string_equal(level, "warn");
    /* a takeover of a full log adds nothing */
    buildlog_open(&l, g_db, id, g_failures);
    buildlog_add(&l, "info", "done", "build completed");
    assert_int_equal(lines_int(id, "count(*)"), BUILDLOG_MAX_LINES);
}

static void test_byte_bound(void **state)
{
    char id[ML_UUID_LEN], level[8], big[1001];
    buildlog l;

    ML_UNUSED(state);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    new_build(id);
    buildlog_open(&l, g_db, id, g_failures);
    for (int i = 0; i < 2000; i++)
        buildlog_add(&l, "info", "extract", "%s", big);
    assert_true(lines_int(id, "sum(octet_length(message))") <= BUILDLOG_MAX_BYTES);
    assert_true(lines_int(id, "count(*)") > 1000);
    assert_true(lines_int(id, "count(*)") < 1100);
    assert_non_null(strstr(last_message(id, level), "log limit reached"));
}

static void test_store_failure_counted(void **state)
{
    const char *v[] = { "store_error" };
    char id[ML_UUID_LEN], level[8];
    double before = metric_value(g_failures, v);
    buildlog l;

    ML_UNUSED(state);
    new_build(id);
    buildlog_open(&l, g_db, id, g_failures);
    buildlog_add(&l, "info", "no-such-step", "refused by the table's CHECK");
    assert_true(metric_value(g_failures, v) == before + 1);
    buildlog_add(&l, "info", "claim", "the next line is stored");
    assert_int_equal(lines_int(id, "count(*)"), 1);
    assert_string_equal(last_message(id, level), "the next line is stored");
}

/* An unreachable database: every line is counted as dropped, the build is not held up by
 * asking again for each line (the first failure marks it). */
static void test_unreachable_database(void **state)
{
    const char *v[] = { "store_error" };
    double before = metric_value(g_failures, v);
    pg_options o = { .connect_timeout_s = 1, .reconnect_attempts = 1 };
    pg_conn *down = pg_new("postgresql://127.0.0.1:1/nothing", &o);
    buildlog l;

    ML_UNUSED(state);
    assert_non_null(down);
    buildlog_open(&l, down, "0b0e0e0e-0000-4000-8000-000000000000", g_failures);
    for (int i = 0; i < 5; i++)
        buildlog_add(&l, "info", "download", "line %d", i);
    assert_true(l.unreachable);
    assert_true(metric_value(g_failures, v) == before + 5);
    pg_close(down);
}

static int setup(void **state)
{
    const char *url = getenv("MINILAMBDA_BUILD_DB_URL");

    ML_UNUSED(state);
    if (!url || !*url) {
        fprintf(stderr, "MINILAMBDA_BUILD_DB_URL is not set (source the stack's stack.env)\n");
        return -1;
    }
    ml_log_init("test_buildlog", ML_LOG_ERROR);
    g_db = pg_new(url, NULL);
    g_reg = metrics_new();
    g_failures = metrics_counter(g_reg, "minilambda_build_log_write_failures_total", "test", "reason");
    if (!g_db || pg_connect(g_db) != ML_OK || !g_failures) {
        fprintf(stderr, "cannot connect to %s: %s\n", url, g_db ? pg_error(g_db) : "");
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    ML_UNUSED(state);
    pg_exec(g_db, NULL, "DELETE FROM build_functions WHERE name ~ '^bl-[0-9a-f]{32}$'", 0, NULL, NULL);
    pg_close(g_db);
    metrics_free(g_reg);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequence_and_takeover),
        cmocka_unit_test(test_line_bound),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_store_failure_counted),
        cmocka_unit_test(test_unreachable_database),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
