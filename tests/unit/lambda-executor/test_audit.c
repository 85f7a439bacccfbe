/* Unit tests for audit_encode.c without a server: the record encoding (the batch element and
 * the payload of a write-ahead log record). The log itself: test_audit_wal.c. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_fields),
        cmocka_unit_test(test_encode_defaults),
        cmocka_unit_test(test_encode_text_and_tail),
        cmocka_unit_test(test_encode_rejects),
    };
    int fd = open("/dev/null", O_WRONLY);

    ml_log_set_fd(fd); /* the writer's warnings are expected here */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
