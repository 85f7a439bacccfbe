/* Unit tests: shared/invstream.c (the executor -> gateway framing of streamed invocations). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "invstream.h"
#include "ml.h"

typedef struct seen {
    ml_buf log; /* "type:bytes|" per frame */
    int frames, stop_after;
} seen;

static int on_frame(void *ud, char type, const char *data, size_t len)
{
    seen *s = ud;

    s->frames++;
    assert_int_equal(ml_buf_printf(&s->log, "%c:%.*s|", type, (int)len, data), ML_OK);
    return s->stop_after && s->frames >= s->stop_after ? ML_ERR : ML_OK;
}

static void stream_of_three(ml_buf *b)
{
    assert_int_equal(invstream_frame(b, INVSTREAM_META, "{\"content_type\":\"x\"}", 20), ML_OK);
    assert_int_equal(invstream_frame(b, INVSTREAM_DATA, "hello\n", 6), ML_OK);
    assert_int_equal(invstream_frame(b, INVSTREAM_DATA, "", 0), ML_OK);
    assert_int_equal(invstream_frame(b, INVSTREAM_END, "{}", 2), ML_OK);
}

static void test_round_trip_whole(void **state)
{
    ml_buf b = { 0 };
    seen s = { 0 };
    invstream_dec d = { 0 };
    (void)state;
    stream_of_three(&b);
    assert_int_equal(invstream_feed(&d, b.data, b.len, on_frame, &s), ML_OK);
    assert_string_equal(ml_buf_cstr(&s.log), "M:{\"content_type\":\"x\"}|D:hello\n|D:|E:{}|");
    assert_true(d.ended);
    invstream_dec_free(&d);
    ml_buf_free(&b);
    ml_buf_free(&s.log);
}

/* Every split of the bytes (one byte at a time) decodes to the same frames. */
static void test_byte_by_byte(void **state)
{
    ml_buf b = { 0 };
    seen s = { 0 };
    invstream_dec d = { 0 };
    (void)state;
    stream_of_three(&b);
    for (size_t i = 0; i < b.len; i++)
        assert_int_equal(invstream_feed(&d, b.data + i, 1, on_frame, &s), ML_OK);
    assert_string_equal(ml_buf_cstr(&s.log), "M:{\"content_type\":\"x\"}|D:hello\n|D:|E:{}|");
    assert_int_equal(d.pending.len, 0);
    invstream_dec_free(&d);
    ml_buf_free(&b);
    ml_buf_free(&s.log);
}

static void test_refusals(void **state)
{
    ml_buf b = { 0 };
    seen s = { 0 };
    invstream_dec d = { 0 };
    const char bad_type[] = { 'X', 0, 0, 0, 0 };
    const char huge[] = { 'D', 0x7f, 0, 0, 0 };
    (void)state;
    assert_int_equal(invstream_frame(&b, 'Z', "", 0), ML_ERR);
    assert_int_equal(invstream_feed(&d, bad_type, sizeof(bad_type), on_frame, &s), ML_ERR);
    assert_string_equal(d.error, "unknown frame type");
    assert_int_equal(invstream_feed(&d, "", 0, on_frame, &s), ML_ERR); /* stays failed */
    invstream_dec_free(&d);
    assert_int_equal(invstream_feed(&d, huge, sizeof(huge), on_frame, &s), ML_ERR);
    assert_string_equal(d.error, "frame too large");
    invstream_dec_free(&d);
    stream_of_three(&b);
    assert_int_equal(invstream_frame(&b, INVSTREAM_DATA, "late", 4), ML_OK);
    assert_int_equal(invstream_feed(&d, b.data, b.len, on_frame, &s), ML_ERR);
    assert_string_equal(d.error, "data after the end frame");
    invstream_dec_free(&d);
    s.frames = 0;
    s.stop_after = 2;
    assert_int_equal(invstream_feed(&d, b.data, b.len, on_frame, &s), ML_ERR);
    assert_int_equal(s.frames, 2);
    invstream_dec_free(&d);
    ml_buf_free(&b);
    ml_buf_free(&s.log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_whole),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
