/* Unit tests for audit.c without a server: the record encoding (the batch element and spill
 * line), the spill file reader, and the writer while Postgres is unreachable — rows held in
 * memory, spilled in order, saved on stop, counted again (torn tail cut) at the next start,
 * rows of megabytes, the spill file's lock, and the queue's hard bound. */
#include <cJSON.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit.h"
#include "crypto.h"
#include "log.h"

/* nothing listens on port 1: every connection attempt is refused at once */
#define DEAD_DB "postgresql://postgres@127.0.0.1:1/lambda_service_db?connect_timeout=1"

static audit_record sample(const char *id)
{
    audit_record r = { 0 };

    ml_strlcpy(r.id, id, sizeof(r.id));
    ml_strlcpy(r.function_id, "6f1c2d9e-0b7a-4c55-9a51-3a3b8d2c1e0f", sizeof(r.function_id));
    r.version = 3;
    r.trigger = AUDIT_HTTP_SYNC;
    r.status = AUDIT_SUCCEEDED;
    r.attempts = 1;
    r.cold_start = 0;
    r.payload_size = 2;
    r.response_size = 7;
    r.duration_ms = 12;
    r.memory_used_mb = 21;
    r.created_ms = 1700000000000;
    r.started_ms = 1700000000001;
    r.finished_ms = 1700000000013;
    return r;
}

static cJSON *encode_json(const audit_record *r)
{
    ml_buf b = { 0 };
    char err[160];
    cJSON *o;

    assert_int_equal(audit_encode(r, &b, err, sizeof(err)), ML_OK);
    assert_null(memchr(b.data, '\n', b.len)); /* one spill line */
    o = cJSON_ParseWithLength(b.data, b.len);
    assert_non_null(o);
    ml_buf_free(&b);
    return o;
}

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void test_encode_fields(void **state)
{
    audit_record r = sample("0d8a3c57-8f5e-4a3b-9d07-2b7f9f1a6c11");
    unsigned char payload[] = { '{', '}' }, result[] = "{\"a\":1}", dec[16];
    size_t n;
    cJSON *o;

    (void)state;
    r.payload = payload;
    r.payload_len = sizeof(payload);
    r.result = result;
    r.result_len = 7;
    r.request_id = "req-1";
    o = encode_json(&r);
    assert_string_equal(str_of(o, "id"), r.id);
    assert_string_equal(str_of(o, "function_id"), r.function_id);
    assert_string_equal(str_of(o, "status"), "succeeded");
    assert_string_equal(str_of(o, "trigger"), "http_sync");
    assert_string_equal(str_of(o, "request_id"), "req-1");
    assert_true(num_of(o, "version") == 3 && num_of(o, "attempts") == 1 && num_of(o, "duration_ms") == 12);
    assert_true(num_of(o, "memory_used_mb") == 21 && num_of(o, "payload_size") == 2 && num_of(o, "response_size") == 7);
    assert_true(num_of(o, "created_ms") == 1700000000000.0 && num_of(o, "finished_ms") == 1700000000013.0);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "cold_start")));
    /* bytes travel as base64 */
    assert_int_equal(crypto_base64_decode(str_of(o, "result"), strlen(str_of(o, "result")), dec, sizeof(dec), &n), ML_OK);
    assert_int_equal(n, 7);
    assert_memory_equal(dec, "{\"a\":1}", 7);
    assert_int_equal(crypto_base64_decode(str_of(o, "payload"), 4, dec, sizeof(dec), &n), ML_OK);
    assert_memory_equal(dec, "{}", 2);
    /* unknown/absent values are left out (NULL in the table) */
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "error_type"));
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "log_tail"));
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "replay_of"));
    cJSON_Delete(o);
}

static void test_encode_defaults(void **state)
{
    audit_record r = sample("1d8a3c57-8f5e-4a3b-9d07-2b7f9f1a6c11");
    int64_t before = ml_wall_ms();
    cJSON *o;

    (void)state;
    r.status = AUDIT_RUNNING;
    r.created_ms = r.started_ms = r.finished_ms = 0;
    r.version = 0;
    r.cold_start = -1;
    r.duration_ms = r.memory_used_mb = r.response_size = -1;
    o = encode_json(&r);
    /* created and (for running) started default to now; unknowns are left out */
    assert_true(num_of(o, "created_ms") >= (double)before && num_of(o, "started_ms") >= (double)before);
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "finished_ms"));
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "version"));
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "cold_start"));
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "duration_ms"));
    cJSON_Delete(o);
    r.status = AUDIT_TIMED_OUT; /* a final state without a finish time gets now */
    o = encode_json(&r);
    assert_true(num_of(o, "finished_ms") >= (double)before);
    assert_string_equal(str_of(o, "status"), "timed_out");
    cJSON_Delete(o);
}

static void test_encode_text_and_tail(void **state)
{
    audit_record r = sample("2d8a3c57-8f5e-4a3b-9d07-2b7f9f1a6c11");
    /* invalid UTF-8 (lone continuation, overlong, surrogate), NUL, control chars, quotes */
    const char msg[] = "bad \x80 \xc0\xaf \xed\xa0\x80 nul\0 tab\t \"q\" \\ caf\xc3\xa9 \xf0\x9f\x98\x80";
    char tail[5000], rid[300];
    unsigned char dec[4200];
    size_t n;
    cJSON *o;
    const char *m;

    (void)state;
    memset(tail, 'a', sizeof(tail));
    memcpy(tail + sizeof(tail) - 4, "END!", 4);
    memset(rid, 'r', sizeof(rid) - 1);
    rid[sizeof(rid) - 1] = '\0';
    r.error_type = "Unhandled";
    r.error_message = msg;
    r.log_tail = tail;
    r.log_tail_len = sizeof(tail);
    r.request_id = rid;
    r.status = AUDIT_FAILED;
    /* error_message is a C string: it ends at the NUL */
    o = encode_json(&r);
    m = str_of(o, "error_message");
    assert_non_null(m);
    assert_string_equal(m, "bad \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd nul");
    cJSON_Delete(o);
    r.error_message = "tab\t \"q\" \\ caf\xc3\xa9 \xf0\x9f\x98\x80 \x01";
    o = encode_json(&r);
    assert_string_equal(str_of(o, "error_message"), "tab\t \"q\" \\ caf\xc3\xa9 \xf0\x9f\x98\x80 \x01");
    /* only the last 4 KiB of output are kept */
    m = str_of(o, "log_tail");
    assert_int_equal(crypto_base64_decode(m, strlen(m), dec, sizeof(dec), &n), ML_OK);
    assert_int_equal(n, AUDIT_LOG_TAIL_MAX);
    assert_memory_equal(dec + n - 4, "END!", 4);
    /* request ids are capped at the column's 128 characters */
    assert_int_equal(strlen(str_of(o, "request_id")), 128);
    cJSON_Delete(o);
}

static void test_encode_rejects(void **state)
{
    audit_record r;
    ml_buf b = { 0 };
    char err[160];

    (void)state;
    r = sample("not-a-uuid");
    assert_int_equal(audit_encode(&r, &b, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "id"));
    r = sample("3d8a3c57-8f5e-4a3b-9d07-2b7f9f1a6c11");
    r.status = (audit_status)42;
    assert_int_equal(audit_encode(&r, &b, err, sizeof(err)), ML_ERR);
    r = sample("3d8a3c57-8f5e-4a3b-9d07-2b7f9f1a6c11");
    r.payload_size = AUDIT_BODY_MAX + 1;
    assert_int_equal(audit_encode(&r, &b, err, sizeof(err)), ML_ERR);
    r = sample("3d8a3c57-8f5e-4a3b-9d07-2b7f9f1a6c11");
    r.started_ms = -5;
    assert_int_equal(audit_encode(&r, &b, err, sizeof(err)), ML_ERR);
    r = sample("3d8a3c57-8f5e-4a3b-9d07-2b7f9f1a6c11");
    r.replay_of = "nope";
    assert_int_equal(audit_encode(&r, &b, err, sizeof(err)), ML_ERR);
    assert_int_equal(b.len, 0); /* nothing appended on failure */
}

/* ---- spill reader ---- */

typedef struct lines {
    char *v[64];
    size_t n;
} lines;

static int collect_line(const char *line, size_t len, void *ud)
{
    lines *l = ud;

    assert_true(l->n < 64);
    l->v[l->n++] = strndup(line, len);
    return ML_OK;
}

static void lines_free(lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    l->n = 0;
}

static void write_file(const char *path, const char *data, size_t len, const char *mode)
{
    FILE *f = fopen(path, mode);

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void test_spill_read(void **state)
{
    char dir[] = "/tmp/test_audit_XXXXXX", path[128], err[256];
    const char data[] = "{\"a\":1}\n{\"b\":2}\n\n{\"c\":3}\n{\"torn";
    lines l = { 0 };
    size_t torn = 99;
    char *big;

    (void)state;
    assert_non_null(mkdtemp(dir));
    ml_snprintf(path, sizeof(path), "%s/spill.jsonl", dir);
    /* a missing file is empty */
    assert_int_equal(audit_spill_read(path, collect_line, &l, &torn, err, sizeof(err)), ML_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(torn, 0);
    /* whole lines are delivered, blank ones skipped, the torn tail reported */
    write_file(path, data, sizeof(data) - 1, "w");
    assert_int_equal(audit_spill_read(path, collect_line, &l, &torn, err, sizeof(err)), ML_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0], "{\"a\":1}");
    assert_string_equal(l.v[2], "{\"c\":3}");
    assert_int_equal(torn, strlen("{\"torn"));
    lines_free(&l);
    /* a corrupt line longer than the reader's bound is skipped, the next one still read */
    big = malloc((21u << 20) + 1);
    memset(big, 'x', 21u << 20);
    big[21u << 20] = '\n';
    write_file(path, big, (21u << 20) + 1, "w");
    write_file(path, "{\"d\":4}\n", 8, "a");
    free(big);
    assert_int_equal(audit_spill_read(path, collect_line, &l, &torn, err, sizeof(err)), ML_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0], "{\"d\":4}");
    assert_int_equal(torn, 0);
    lines_free(&l);
    unlink(path);
    rmdir(dir);
}

/* ---- the writer with Postgres unreachable ---- */

static pg_conn *no_db(void *ud)
{
    (void)ud;
    return NULL;
}

static audit_config dead_config(const char *spill)
{
    audit_config c = { 0 };

    c.spill_path = spill;
    c.queue_max_rows = 100;
    c.queue_max_mb = 16;
    c.hold_rows = 10;
    c.spill_max_mb = 64;
    c.batch_rows = 5;
    c.flush_ms = 1;
    c.db_url = DEAD_DB;
    c.thread_db = no_db;
    return c;
}

static void make_id(int i, char out[ML_UUID_LEN])
{
    ml_snprintf(out, ML_UUID_LEN, "00000000-0000-4000-8000-%012d", i);
}

static void svc_fake(svc *s)
{
    memset(s, 0, sizeof(*s));
    s->metrics = metrics_new();
    assert_non_null(s->metrics);
}

static void test_writer_spills_in_order(void **state)
{
    char dir[] = "/tmp/test_audit_XXXXXX", path[128], err[256], id[ML_UUID_LEN];
    audit_config c;
    lines l = { 0 };
    svc s, s2;
    audit *a, *b;
    int64_t t0;

    (void)state;
    assert_non_null(mkdtemp(dir));
    ml_snprintf(path, sizeof(path), "%s/spill.jsonl", dir);
    c = dead_config(path);
    svc_fake(&s);
    a = audit_start(&c, &s, err, sizeof(err));
    assert_non_null(a);
    /* the spill file is locked: a second writer on it is refused with a clear reason */
    svc_fake(&s2);
    assert_null(audit_start(&c, &s2, err, sizeof(err)));
    assert_non_null(strstr(err, "in use by another process"));
    metrics_free(s2.metrics);
    for (int i = 0; i < 50; i++) {
        audit_record r;
        make_id(i, id);
        r = sample(id);
        assert_int_equal(audit_submit(a, &r), ML_OK);
    }
    assert_int_equal(audit_backlog(a), 50);
    /* the writer moves rows beyond the hold (10) to the spill file */
    t0 = ml_now_ms();
    while (ml_now_ms() - t0 < 5000) {
        struct stat st;
        if (stat(path, &st) == 0 && st.st_size > 0)
            break;
        ml_sleep_ms(10);
    }
    assert_int_equal(audit_backlog(a), 50);
    /* Postgres is down: a read-your-writes flush gives up at once */
    t0 = ml_now_ms();
    assert_int_equal(audit_flush(a, 3000), ML_ERR);
    assert_true(ml_now_ms() - t0 < 2000);
    audit_stop(a); /* the rest goes to the spill file */
    metrics_free(s.metrics);
    assert_int_equal(audit_spill_read(path, collect_line, &l, NULL, err, sizeof(err)), ML_OK);
    assert_int_equal(l.n, 50);
    for (int i = 0; i < 50; i++) {
        cJSON *o = cJSON_Parse(l.v[i]);
        make_id(i, id);
        assert_non_null(o);
        assert_string_equal(str_of(o, "id"), id); /* submission order is kept */
        cJSON_Delete(o);
    }
    lines_free(&l);
    /* a crash mid-append leaves a torn line: the next start cuts it and counts the rows */
    write_file(path, "{\"id\":\"00000000-00", 18, "a");
    svc_fake(&s);
    b = audit_start(&c, &s, err, sizeof(err));
    assert_non_null(b);
    assert_int_equal(audit_backlog(b), 50);
    audit_stop(b);
    metrics_free(s.metrics);
    assert_int_equal(audit_spill_read(path, collect_line, &l, NULL, err, sizeof(err)), ML_OK);
    assert_int_equal(l.n, 50);
    lines_free(&l);
    unlink(path);
    rmdir(dir);
}

/* Rows of megabytes: memory fills by bytes, the writer spills them (in chunks) and every
 * line reads back whole. */
static void test_spill_large_rows(void **state)
{
    char dir[] = "/tmp/test_audit_XXXXXX", path[128], err[256], id[ML_UUID_LEN];
    size_t big = 2u << 20, n;
    char *result = malloc(big);
    unsigned char *dec = malloc(big + 16);
    audit_config c;
    lines l = { 0 };
    svc s;
    audit *a;

    (void)state;
    assert_non_null(mkdtemp(dir));
    ml_snprintf(path, sizeof(path), "%s/spill.jsonl", dir);
    c = dead_config(path);
    c.hold_rows = 1000; /* the byte bound (half of 16 MiB) makes it spill */
    svc_fake(&s);
    a = audit_start(&c, &s, err, sizeof(err));
    assert_non_null(a);
    for (int i = 0; i < 12; i++) {
        audit_record r;
        make_id(i, id);
        r = sample(id);
        memset(result, 'a' + i, big);
        r.result = result;
        r.result_len = big;
        assert_int_equal(audit_submit(a, &r), ML_OK);
    }
    assert_int_equal(audit_backlog(a), 12);
    audit_stop(a);
    metrics_free(s.metrics);
    assert_int_equal(audit_spill_read(path, collect_line, &l, NULL, err, sizeof(err)), ML_OK);
    assert_int_equal(l.n, 12);
    for (int i = 0; i < 12; i++) {
        cJSON *o = cJSON_Parse(l.v[i]);
        const char *b64 = str_of(o, "result");
        assert_non_null(b64);
        assert_int_equal(crypto_base64_decode(b64, strlen(b64), dec, big + 16, &n), ML_OK);
        assert_int_equal(n, big);
        assert_true(dec[0] == 'a' + i && dec[big - 1] == 'a' + i);
        cJSON_Delete(o);
    }
    lines_free(&l);
    free(result);
    free(dec);
    unlink(path);
    rmdir(dir);
}

static void test_queue_bound(void **state)
{
    char dir[] = "/tmp/test_audit_XXXXXX", path[128], err[256], id[ML_UUID_LEN];
    audit_config c;
    audit_record r;
    metric *errors;
    const char *overflow[] = { "overflow" };
    svc s;
    audit *a;
    int64_t t0;

    (void)state;
    assert_non_null(mkdtemp(dir));
    ml_snprintf(path, sizeof(path), "%s/spill.jsonl", dir);
    c = dead_config(path);
    c.hold_rows = 1000000; /* never spill: memory is the only room */
    svc_fake(&s);
    a = audit_start(&c, &s, err, sizeof(err));
    assert_non_null(a);
    for (int i = 0; i < 100; i++) {
        make_id(i, id);
        r = sample(id);
        assert_int_equal(audit_submit(a, &r), ML_OK);
    }
    /* full: the next submit waits about a second for room, then drops and says so */
    make_id(100, id);
    r = sample(id);
    t0 = ml_now_ms();
    assert_int_equal(audit_submit(a, &r), ML_ERR);
    assert_true(ml_now_ms() - t0 >= 900);
    errors = metrics_counter(s.metrics, "minilambda_audit_write_errors_total", "", "kind");
    assert_true(metric_value(errors, overflow) == 1);
    /* an invalid record is refused at once */
    r = sample("bad");
    assert_int_equal(audit_submit(a, &r), ML_ERR);
    assert_int_equal(audit_backlog(a), 100);
    audit_stop(a);
    metrics_free(s.metrics);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_fields),
        cmocka_unit_test(test_encode_defaults),
        cmocka_unit_test(test_encode_text_and_tail),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_spill_read),
        cmocka_unit_test(test_writer_spills_in_order),
        cmocka_unit_test(test_spill_large_rows),
        cmocka_unit_test(test_queue_bound),
    };
    int fd = open("/dev/null", O_WRONLY);

    ml_log_set_fd(fd); /* the writer's warnings are expected here */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
