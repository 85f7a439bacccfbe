/* Unit tests: services/gateway/awsstream.c — the AWS event-stream encoding of
 * InvokeWithResponseStream: CRC32 against the standard check value and the codec suite's
 * empty message, a PayloadChunk byte for byte against one made with Python's zlib (an
 * independent CRC), InvokeComplete's JSON members, and the error mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "awsstream.h"

static void test_crc32_vectors(void **state)
{
    /* the event-stream test suite's "empty_message": 00000010 00000000 05c248eb 7d98c8ff */
    static const unsigned char empty[] = { 0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb };

    (void)state;
    assert_int_equal(gw_evs_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(gw_evs_crc32(0, empty, 8), 0x05c248ebu);
    assert_int_equal(gw_evs_crc32(0, empty, 12), 0x7d98c8ffu);
    /* incremental = whole */
    assert_int_equal(gw_evs_crc32(gw_evs_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}

/* struct.pack + zlib.crc32 in Python: PayloadChunk "hello" */
static const unsigned char HELLO[] =
    "\x00\x00\x00\x6f\x00\x00\x00\x5a\xf5\xfe\x87\x1f\x0b\x3a\x65\x76\x65\x6e\x74\x2d\x74\x79"
    "\x70\x65\x07\x00\x0c\x50\x61\x79\x6c\x6f\x61\x64\x43\x68\x75\x6e\x6b\x0d\x3a\x63\x6f\x6e"
    "\x74\x65\x6e\x74\x2d\x74\x79\x70\x65\x07\x00\x18\x61\x70\x70\x6c\x69\x63\x61\x74\x69\x6f"
    "\x6e\x2f\x6f\x63\x74\x65\x74\x2d\x73\x74\x72\x65\x61\x6d\x0d\x3a\x6d\x65\x73\x73\x61\x67"
    "\x65\x2d\x74\x79\x70\x65\x07\x00\x05\x65\x76\x65\x6e\x74\x68\x65\x6c\x6c\x6f\x29\xe7\x12\x60";

static void test_payload_chunk_bytes(void **state)
{
    ml_buf b = { 0 };

    (void)state;
    assert_int_equal(gw_evs_payload_chunk(&b, "hello", 5), ML_OK);
    assert_int_equal(b.len, sizeof(HELLO) - 1);
    assert_memory_equal(b.data, HELLO, sizeof(HELLO) - 1);
    /* appends: a second message follows the first whole */
    assert_int_equal(gw_evs_payload_chunk(&b, "hello", 5), ML_OK);
    assert_memory_equal(b.data + sizeof(HELLO) - 1, HELLO, sizeof(HELLO) - 1);
    ml_buf_free(&b);
}

/* The payload of the single message in b (checked: lengths and both CRCs). */
static void payload_of(const ml_buf *b, char *out, size_t outlen)
{
    const unsigned char *p = (const unsigned char *)b->data;
    uint32_t total = (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
    uint32_t hlen = (uint32_t)p[4] << 24 | p[5] << 16 | p[6] << 8 | p[7];
    uint32_t pcrc = (uint32_t)p[8] << 24 | p[9] << 16 | p[10] << 8 | p[11];
    const unsigned char *m = p + total - 4;
    uint32_t mcrc = (uint32_t)m[0] << 24 | m[1] << 16 | m[2] << 8 | m[3];
    size_t plen = total - 16 - hlen;

    assert_int_equal(total, b->len);
    assert_int_equal(pcrc, gw_evs_crc32(0, p, 8));
    assert_int_equal(mcrc, gw_evs_crc32(0, p, total - 4));
    assert_true(plen < outlen);
    memcpy(out, p + 12 + hlen, plen);
    out[plen] = '\0';
    assert_non_null(memmem(p + 12, hlen, "InvokeComplete", 14));
    assert_non_null(memmem(p + 12, hlen, "application/json", 16));
}

static void test_invoke_complete(void **state)
{
    ml_buf b = { 0 };
    char payload[256];

    (void)state;
    assert_int_equal(gw_evs_invoke_complete(&b, NULL, "", NULL), ML_OK);
    payload_of(&b, payload, sizeof(payload));
    assert_string_equal(payload, "{}");
    ml_buf_reset(&b);
    assert_int_equal(gw_evs_invoke_complete(&b, "Unhandled", "boom \"x\"", "bG9n"), ML_OK);
    payload_of(&b, payload, sizeof(payload));
    assert_string_equal(payload, "{\"ErrorCode\":\"Unhandled\",\"ErrorDetails\":\"boom \\\"x\\\"\","
                                 "\"LogResult\":\"bG9n\"}");
    ml_buf_free(&b);
}

static void test_error_mapping(void **state)
{
    char code[64], details[128];
    static const char *const cases[][3] = {
        { "{}", "", "" },
        { "{\"errorType\":\"ValueError\",\"errorMessage\":\"bad\"}", "Unhandled", "bad" },
        { "{\"errorType\":\"TimeoutError\",\"errorMessage\":\"Task timed out after 1.00 seconds\"}",
          "Sandbox.Timedout", "Task timed out after 1.00 seconds" },
        { "{\"errorType\":\"Runtime.ExitError\",\"errorMessage\":\"exit\"}", "Runtime.ExitError", "exit" },
        { "not json", "", "" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        gw_evs_error_of(cases[i][0], strlen(cases[i][0]), code, sizeof(code), details, sizeof(details));
        assert_string_equal(code, cases[i][1]);
        assert_string_equal(details, cases[i][2]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32_vectors),
        cmocka_unit_test(test_payload_chunk_bytes),
        cmocka_unit_test(test_invoke_complete),
        cmocka_unit_test(test_error_mapping),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
