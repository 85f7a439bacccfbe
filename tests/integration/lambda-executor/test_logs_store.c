/* Integration tests: the function-log store (services/lambda-executor/logq.c, logs_store.c,
 * logs_http.c's page reader, logs_maint.c) against the real Postgres at
 * MINILAMBDA_LAMBDA_DB_URL (migrated). Lines are pushed with logq_push as capture does; each
 * test uses its own function name (and namespaces named per run), so the shared database stays
 * usable for other tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logq.h"
#include "logs-int.h"
#include "logs_query.h"
#include "metrics.h"
#include "ml.h"
#include "pg.h"

#define US 1000000LL

static const char *g_url;
static pg_conn *g_db;
static metrics_registry *g_reg;
static char g_ns[40], g_short_ns[40]; /* per run; g_short_ns keeps logs 1 day */

static void start_writer(int64_t queue_bytes)
{
    logq_config c = { .enabled = true, .queue_bytes = queue_bytes, .loki_url = "", .db_url = g_url };

    assert_int_equal(logq_start(&c, g_reg), ML_OK);
}

static int64_t query_int(const char *sql, const char *p1, const char *p2)
{
    const char *v[2] = { p1, p2 };
    PGresult *r = pg_query(g_db, NULL, sql, p2 ? 2 : p1 ? 1 : 0, v);
    int64_t out = -1;

    if (!r)
        fail_msg("%s: %s", sql, pg_error(g_db));
    assert_int_equal(pg_get_int64(r, 0, 0, &out), ML_OK);
    PQclear(r);
    return out;
}

static void exec_sql(const char *sql, const char *p1, const char *p2)
{
    const char *v[2] = { p1, p2 };

    if (pg_exec(g_db, NULL, sql, p2 ? 2 : p1 ? 1 : 0, v, NULL) != ML_OK)
        fail_msg("%s: %s", sql, pg_error(g_db));
}

/* The value of a sample in the rendered metrics ("name{labels}"), 0 when absent. */
static double sample_value(const char *sample)
{
    ml_buf b;
    const char *at;
    double v = 0;

    ml_buf_init(&b, 0);
    assert_int_equal(metrics_render(g_reg, &b), ML_OK);
    at = strstr(ml_buf_cstr(&b), sample);
    if (at)
        v = strtod(at + strlen(sample) + 1, NULL);
    ml_buf_free(&b);
    return v;
}

static logq_line line(const char *fn, const char *rid, int stream, int64_t ts, const char *msg)
{
    return (logq_line){ .ts_us = ts, .stream = stream, .level = stream == 1 ? "error" : "info",
                        .request_id = rid, .ns = g_ns, .function = fn, .function_id = NULL,
                        .version = "$LATEST", .message = msg, .len = strlen(msg) };
}

/* Parameters for logs_query_from: a NULL-terminated list of name, value pairs. */
static const char *param(void *ud, const char *name)
{
    const char *const *kv = ud;

    for (; kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

/* One page of ns/fn read as GET /functions/{fn}/logs would with the given parameters. */
static cJSON *read_page(const char *ns, const char *fn, const char *const *kv)
{
    logs_query lq;
    char bad[32];
    cJSON *o;

    assert_int_equal(logs_query_from(param, (void *)kv, ml_wall_ms() * 1000, &lq, bad, sizeof(bad)), ML_OK);
    o = logs_read_page(g_db, ns, fn, &lq, 7);
    if (!o)
        fail_msg("read: %s", pg_error(g_db));
    return o;
}

static int page_len(const cJSON *o)
{
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "lines"));
}

static const char *line_msg(const cJSON *o, int i)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "lines"), i),
                                            "message")->valuestring;
}

/* 12,000 lines pushed at once land complete, in several batches, counted by stream, in order. */
static void test_batches_land_in_order(void **state)
{
    static logq_line ls[12000];
    static char msgs[12000][16];
    char rid[ML_UUID_LEN];
    int64_t t0 = ml_wall_ms() * 1000;
    double before = sample_value("minilambda_function_log_lines_total{stream=\"stdout\"}");
    double batches = sample_value("minilambda_function_log_batch_seconds_count");
    PGresult *r;

    (void)state;
    ml_uuid(rid);
    for (int i = 0; i < 12000; i++) {
        ml_snprintf_trunc(msgs[i], sizeof(msgs[i]), "line %05d", i);
        ls[i] = line("batches", rid, i % 3 == 2 ? 1 : 0, t0 + i, msgs[i]);
    }
    assert_int_equal(logq_push(ls, 12000), 12000);
    assert_true(logq_wait_idle(30000));
    assert_int_equal(query_int("SELECT count(*) FROM function_logs WHERE request_id = $1", rid, NULL), 12000);
    /* at most LOGQ_BATCH_LINES a batch: at least three */
    assert_true(sample_value("minilambda_function_log_batch_seconds_count") - batches >= 3);
    assert_true(sample_value("minilambda_function_log_lines_total{stream=\"stdout\"}") - before == 8000);
    r = pg_query(g_db, NULL, "SELECT message FROM function_logs WHERE request_id = $1 ORDER BY ts, id", 1,
                 (const char *[]){ rid });
    assert_non_null(r);
    for (int i = 0; i < 12000; i++)
        assert_string_equal(PQgetvalue(r, i, 0), msgs[i]);
    PQclear(r);
}

/* Invalid UTF-8 and NUL become U+FFFD; tabs, newlines and backslashes survive COPY. */
static void test_utf8_repair(void **state)
{
    static const char raw[] = "a\xff" "b\0c\t\\n\\\xc3\xa9\xe2\x82";
    char rid[ML_UUID_LEN];
    logq_line l;
    PGresult *r;

    (void)state;
    ml_uuid(rid);
    l = line("utf8", rid, 0, ml_wall_ms() * 1000, "");
    l.message = raw;
    l.len = sizeof(raw) - 1;
    assert_int_equal(logq_push(&l, 1), 1);
    assert_true(logq_wait_idle(10000));
    r = pg_query(g_db, NULL, "SELECT message FROM function_logs WHERE request_id = $1", 1, (const char *[]){ rid });
    assert_non_null(r);
    assert_int_equal(PQntuples(r), 1);
    assert_string_equal(PQgetvalue(r, 0, 0), "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\t\\n\\\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd");
    PQclear(r);
}

/* Filters (request_id, stream, q, since/until) and cursor paging through every line, once. */
static void test_filters_and_paging(void **state)
{
    logq_line ls[250];
    char msgs[250][32], rid_a[ML_UUID_LEN], rid_b[ML_UUID_LEN];
    int64_t t0 = ml_wall_ms() * 1000 - 60 * US;
    char until[24];
    cJSON *o;

    (void)state;
    ml_uuid(rid_a);
    ml_uuid(rid_b);
    for (int i = 0; i < 250; i++) {
        ml_snprintf_trunc(msgs[i], sizeof(msgs[i]), "%s %03d", i % 10 == 0 ? "needle" : "hay", i);
        ls[i] = line("filters", i < 200 ? rid_a : rid_b, i % 5 == 0 ? 2 : i % 2, t0 + i * 1000, msgs[i]);
    }
    assert_int_equal(logq_push(ls, 250), 250);
    assert_true(logq_wait_idle(10000));

    o = read_page(g_ns, "filters", (const char *[]){ "request_id", rid_b, "limit", "1000", NULL });
    assert_int_equal(page_len(o), 50);
    assert_string_equal(line_msg(o, 0), "needle 200");
    cJSON_Delete(o);
    o = read_page(g_ns, "filters", (const char *[]){ "q", "needle", "limit", "1000", NULL });
    assert_int_equal(page_len(o), 25);
    cJSON_Delete(o);
    o = read_page(g_ns, "filters", (const char *[]){ "stream", "platform", "limit", "1000", NULL });
    assert_int_equal(page_len(o), 50);
    cJSON_Delete(o);
    o = read_page(g_ns, "filters", (const char *[]){ "stream", "stdout,stderr", "limit", "1000", NULL });
    assert_int_equal(page_len(o), 200);
    cJSON_Delete(o);
    ml_snprintf_trunc(until, sizeof(until), "%lld", (long long)((t0 + 100 * 1000) / 1000));
    o = read_page(g_ns, "filters", (const char *[]){ "until", until, "limit", "1000", NULL });
    assert_int_equal(page_len(o), 100);
    cJSON_Delete(o);
    o = read_page("other-ns", "filters", (const char *[]){ NULL });
    assert_int_equal(page_len(o), 0); /* another namespace sees nothing */
    cJSON_Delete(o);

    /* pages of 30: every line once, oldest first, then next_cursor null */
    char cursor[64] = "";
    int seen = 0, pages = 0;
    for (;;) {
        const char *kv[] = { "limit", "30", cursor[0] ? "cursor" : NULL, cursor, NULL };
        cJSON *nc;
        o = read_page(g_ns, "filters", kv);
        for (int i = 0; i < page_len(o); i++, seen++)
            assert_string_equal(line_msg(o, i), msgs[seen]);
        pages++;
        nc = cJSON_GetObjectItemCaseSensitive(o, "next_cursor");
        if (cJSON_IsNull(nc)) {
            cJSON_Delete(o);
            break;
        }
        assert_int_equal(ml_strlcpy(cursor, nc->valuestring, sizeof(cursor)), ML_OK);
        cJSON_Delete(o);
        assert_true(pages < 20);
    }
    assert_int_equal(seen, 250);
    assert_int_equal(pages, 9);
}

/* A queue too small for a burst drops the rest, never blocks, and counts what it dropped. */
static void test_queue_full_counted(void **state)
{
    static logq_line ls[5000];
    static char big[1024];
    char rid[ML_UUID_LEN];
    double before = sample_value("minilambda_function_log_lines_dropped_total{reason=\"queue_full\"}");
    size_t taken;

    (void)state;
    logq_stop(10000);
    start_writer(65536); /* ~60 lines of 1 KiB */
    memset(big, 'x', sizeof(big) - 1);
    ml_uuid(rid);
    for (int i = 0; i < 5000; i++)
        ls[i] = line("flood", rid, 0, ml_wall_ms() * 1000 + i, big);
    taken = logq_push(ls, 5000);
    assert_true(taken < 5000);
    assert_true(sample_value("minilambda_function_log_lines_dropped_total{reason=\"queue_full\"}") - before ==
                (double)(5000 - taken));
    assert_true(logq_wait_idle(10000));
    assert_int_equal(query_int("SELECT count(*) FROM function_logs WHERE request_id = $1", rid, NULL), (int64_t)taken);
    logq_stop(10000);
    start_writer(64 << 20);
}

/* Retention: a partition older than every namespace's retention is dropped; a namespace with
 * 1 day loses its 2-day-old rows (read hides them even before), a 7-day one keeps them. */
static void test_retention(void **state)
{
    char rid_short[ML_UUID_LEN], rid_long[ML_UUID_LEN], rid_old[ML_UUID_LEN];
    int64_t dropped = 0, deleted = 0;
    cJSON *o;

    (void)state;
    ml_uuid(rid_short);
    ml_uuid(rid_long);
    ml_uuid(rid_old);
    exec_sql("INSERT INTO namespaces (name, log_retention_days) VALUES ($1, 1)", g_short_ns, NULL);
    exec_sql("SELECT ml_function_logs_partition((now() AT TIME ZONE 'UTC')::date - 10)", NULL, NULL);
    exec_sql("INSERT INTO function_logs (ts, namespace, function, request_id, stream, message)"
             " VALUES (now() - interval '10 days' + interval '1 hour', $1, 'old', $2, 0, 'ten days old')",
             g_ns, rid_old);
    exec_sql("INSERT INTO function_logs (ts, namespace, function, request_id, stream, message)"
             " VALUES (now() - interval '30 hours', $1, 'keep', $2, 0, 'short ns, 30 h old')",
             g_short_ns, rid_short);
    exec_sql("INSERT INTO function_logs (ts, namespace, function, request_id, stream, message)"
             " VALUES (now() - interval '30 hours', $1, 'keep', $2, 0, 'default ns, 30 h old')",
             g_ns, rid_long);
    o = read_page(g_short_ns, "keep", (const char *[]){ "since", "3d", NULL });
    assert_int_equal(page_len(o), 0);
    cJSON_Delete(o);
    o = read_page(g_ns, "keep", (const char *[]){ "since", "3d", NULL });
    assert_int_equal(page_len(o), 1);
    cJSON_Delete(o);

    assert_int_equal(logs_maint_run(g_db, 7, 2, &dropped, &deleted), ML_OK);
    assert_true(dropped >= 1);
    assert_true(deleted >= 1);
    assert_int_equal(query_int("SELECT count(*) FROM pg_class WHERE relname = 'function_logs_p' ||"
                               " to_char((now() AT TIME ZONE 'UTC')::date - 10, 'YYYYMMDD')", NULL, NULL), 0);
    assert_int_equal(query_int("SELECT count(*) FROM function_logs WHERE request_id = $1", rid_old, NULL), 0);
    assert_int_equal(query_int("SELECT count(*) FROM function_logs WHERE request_id = $1", rid_short, NULL), 0);
    assert_int_equal(query_int("SELECT count(*) FROM function_logs WHERE request_id = $1", rid_long, NULL), 1);
    /* the writer's partitions ahead exist */
    assert_int_equal(query_int("SELECT count(*) FROM pg_class WHERE relname = 'function_logs_p' ||"
                               " to_char((now() AT TIME ZONE 'UTC')::date + 2, 'YYYYMMDD')", NULL, NULL), 1);
}

static int setup(void **state)
{
    char id[ML_UUID_LEN];

    (void)state;
    g_url = getenv("MINILAMBDA_LAMBDA_DB_URL");
    if (!g_url) {
        fprintf(stderr, "MINILAMBDA_LAMBDA_DB_URL is not set\n");
        return -1;
    }
    ml_uuid(id);
    ml_snprintf_trunc(g_ns, sizeof(g_ns), "logs-%.8s", id);
    ml_snprintf_trunc(g_short_ns, sizeof(g_short_ns), "logs-short-%.8s", id);
    g_db = pg_new(g_url, NULL);
    g_reg = metrics_new();
    if (!g_db || pg_connect(g_db) != ML_OK || !g_reg)
        return -1;
    start_writer(64 << 20);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    logq_stop(10000);
    if (g_db) {
        const char *p[2] = { g_ns, g_short_ns };
        pg_exec(g_db, NULL, "DELETE FROM function_logs WHERE namespace IN ($1, $2)", 2, p, NULL);
        pg_exec(g_db, NULL, "DELETE FROM namespaces WHERE name IN ($1, $2)", 2, p, NULL);
    }
    pg_close(g_db);
    metrics_free(g_reg);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_land_in_order),
        cmocka_unit_test(test_utf8_repair),
        cmocka_unit_test(test_filters_and_paging),
        cmocka_unit_test(test_queue_full_counted),
        cmocka_unit_test(test_retention),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
