/* test_proto.c — the executor side of the framed protocol: round trips over a socketpair,
 * empty frames, bodies split across reads, oversized bodies dropped without losing sync,
 * oversized headers refused, EOF mid-frame, and a writer that meets a full socket buffer. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto.h"

typedef struct pair {
    int a, b;
} pair;

static int setup(void **state)
{
    pair *p = calloc(1, sizeof(*p));
    int sv[2];

    if (!p || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    p->a = sv[0];
    p->b = sv[1];
    if (fcntl(p->a, F_SETFL, O_NONBLOCK) != 0 || fcntl(p->b, F_SETFL, O_NONBLOCK) != 0)
        return -1;
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    pair *p = *state;

    if (p->a >= 0)
        close(p->a);
    if (p->b >= 0)
        close(p->b);
    free(p);
    return 0;
}

/* Raw bytes onto the stream, as a hand-written peer would. */
static void put_raw(int fd, const void *data, size_t len)
{
    assert_int_equal(write(fd, data, len), (ssize_t)len);
}

static void put_be32(int fd, uint32_t v)
{
    unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v };
    put_raw(fd, b, 4);
}

static void test_round_trip(void **state)
{
    pair *p = *state;
    proto_reader r;

    proto_reader_init(&r, 1024);
    assert_int_equal(proto_send(p->a, "{\"type\":\"result\"}", 17, "[1,2,3]", 7), ML_OK);
    assert_int_equal(proto_recv(p->b, &r), PROTO_DONE);
    assert_string_equal(ml_buf_cstr(&r.header), "{\"type\":\"result\"}");
    assert_string_equal(ml_buf_cstr(&r.body), "[1,2,3]");
    assert_int_equal(r.body.len, 7);
    assert_false(r.body_too_large);

    /* the next message on the same reader, with an empty body */
    proto_reader_reset(&r, 1024);
    assert_int_equal(proto_send(p->a, "{\"type\":\"ready\"}", 16, NULL, 0), ML_OK);
    assert_int_equal(proto_recv(p->b, &r), PROTO_DONE);
    assert_string_equal(ml_buf_cstr(&r.header), "{\"type\":\"ready\"}");
    assert_int_equal(r.body.len, 0);
    assert_string_equal(ml_buf_cstr(&r.body), "");
    proto_reader_free(&r);
}

/* Bytes arrive one at a time: every step returns MORE until the message is complete. */
static void test_split_reads(void **state)
{
    pair *p = *state;
    const unsigned char msg[] = { 0, 0, 0, 2, '{', '}', 0, 0, 0, 3, 'a', 'b', 'c' };
    proto_reader r;

    proto_reader_init(&r, 16);
    for (size_t i = 0; i < sizeof(msg); i++) {
        assert_int_equal(proto_reader_step(&r, p->b), PROTO_MORE);
        put_raw(p->a, msg + i, 1);
    }
    assert_int_equal(proto_reader_step(&r, p->b), PROTO_DONE);
    assert_string_equal(ml_buf_cstr(&r.header), "{}");
    assert_string_equal(ml_buf_cstr(&r.body), "abc");
    proto_reader_free(&r);
}

/* A body over the limit is consumed and flagged, and the following message still parses. */
static void test_body_too_large_keeps_sync(void **state)
{
    pair *p = *state;
    char big[5000];
    proto_reader r;

    memset(big, 'x', sizeof(big));
    proto_reader_init(&r, 100);
    assert_int_equal(proto_send(p->a, "{\"type\":\"result\"}", 17, big, sizeof(big)), ML_OK);
    assert_int_equal(proto_send(p->a, "{\"n\":2}", 7, "ok", 2), ML_OK);
    assert_int_equal(proto_recv(p->b, &r), PROTO_DONE);
    assert_true(r.body_too_large);
    assert_int_equal(r.body_len, sizeof(big));
    assert_int_equal(r.body.len, 0);
    proto_reader_reset(&r, 100);
    assert_int_equal(proto_recv(p->b, &r), PROTO_DONE);
    assert_string_equal(ml_buf_cstr(&r.header), "{\"n\":2}");
    assert_string_equal(ml_buf_cstr(&r.body), "ok");
    proto_reader_free(&r);
}

static void test_header_too_large(void **state)
{
    pair *p = *state;
    proto_reader r;

    proto_reader_init(&r, 100);
    put_be32(p->a, PROTO_HEADER_MAX + 1);
    assert_int_equal(proto_recv(p->b, &r), PROTO_ERROR);
    assert_non_null(strstr(r.error, "header"));
    proto_reader_free(&r);
}

static void test_eof_mid_frame(void **state)
{
    pair *p = *state;
    proto_reader r;

    proto_reader_init(&r, 100);
    put_be32(p->a, 10);
    put_raw(p->a, "{\"a\"", 4);
    close(p->a);
    p->a = -1;
    assert_int_equal(proto_recv(p->b, &r), PROTO_EOF);
    proto_reader_free(&r);
}

/* A 4 MiB body through a socket the reader drains only after the writer stalled. */
static void test_writer_partial(void **state)
{
    pair *p = *state;
    size_t n = 4u << 20;
    char *body = malloc(n);
    proto_writer w;
    proto_reader r;
    int steps = 0;

    assert_non_null(body);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)('a' + i % 26);
    proto_reader_init(&r, n);
    assert_int_equal(proto_writer_init(&w, "{}", 2, body, n), ML_OK);
    assert_int_equal(proto_writer_step(&w, p->a), ML_OK);
    assert_false(proto_writer_done(&w));   /* the socket buffer is far smaller */
    while (!proto_writer_done(&w)) {
        proto_status st = proto_reader_step(&r, p->b);
        assert_true(st == PROTO_MORE || st == PROTO_DONE);
        assert_int_equal(proto_writer_step(&w, p->a), ML_OK);
        steps++;
    }
    assert_int_equal(proto_recv(p->b, &r), PROTO_DONE);
    assert_true(steps > 1);
    assert_int_equal(r.body.len, n);
    assert_memory_equal(r.body.data, body, n);
    proto_reader_free(&r);
    free(body);
}

/* Writing to a peer that is gone fails with EPIPE instead of raising SIGPIPE. */
static void test_writer_peer_gone(void **state)
{
    pair *p = *state;
    proto_writer w;

    close(p->b);
    p->b = -1;
    assert_int_equal(proto_writer_init(&w, "{}", 2, "x", 1), ML_OK);
    assert_int_equal(proto_writer_step(&w, p->a), ML_ERR);
    assert_int_equal(errno, EPIPE);
    assert_int_equal(proto_writer_init(&w, "{}", PROTO_HEADER_MAX + 1, NULL, 0), ML_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large_keeps_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_mid_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_peer_gone, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
