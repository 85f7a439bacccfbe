/* libFuzzer target: the executor's side of the sandbox frame protocol
 * (shared/proto.c), which reads whatever a function's runtime writes.
 *
 * Input: byte 0 picks the body limit (0..255 * 8 bytes), byte 1 the size of the writes
 * (1..1021 bytes); the rest is the byte stream the runtime sends. The harness feeds it through
 * a non-blocking socketpair in those writes, stepping the reader between them, then closes
 * the write side, and compares every message with a reference parse of the stream:
 * header and body bytes, the too-large flag and declared length, EOF where the stream ends,
 * PROTO_ERROR exactly for a header frame longer than PROTO_HEADER_MAX. Each complete
 * message is also sent back through proto_writer and must read back identical. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto.h"

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Reference: the next message at *pos of s[0..n). PROTO_DONE with the header and body
 * spans, PROTO_EOF if the stream ends first, PROTO_ERROR for an oversized header. */
static proto_status ref_next(const uint8_t *s, size_t n, size_t *pos, size_t *h, uint32_t *hl,
                             size_t *b, uint32_t *bl)
{
    size_t p = *pos;

    if (n - p < 4)
        return PROTO_EOF;
    *hl = be32(s + p);
    p += 4;
    if (*hl > PROTO_HEADER_MAX)
        return PROTO_ERROR;
    if (n - p < *hl)
        return PROTO_EOF;
    *h = p;
    p += *hl;
    if (n - p < 4)
        return PROTO_EOF;
    *bl = be32(s + p);
    p += 4;
    if (n - p < *bl)
        return PROTO_EOF;
    *b = p;
    *pos = p + *bl;
    return PROTO_DONE;
}

static void roundtrip(const proto_reader *r)
{
    int sv[2];
    proto_writer w;
    proto_reader back;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        return;
    if (proto_writer_init(&w, r->header.data, r->header.len, r->body.data, r->body.len) != ML_OK)
        abort();
    proto_reader_init(&back, r->body.len);
    while (!proto_writer_done(&w)) {
        proto_status st;
        if (proto_writer_step(&w, sv[0]) != ML_OK)
            abort();
        st = proto_reader_step(&back, sv[1]);
        if (st != PROTO_MORE && st != PROTO_DONE)
            abort();
    }
    if (proto_recv(sv[1], &back) != PROTO_DONE || back.header.len != r->header.len ||
        memcmp(back.header.data, r->header.data, r->header.len) != 0 ||
        back.body.len != r->body.len || memcmp(back.body.data, r->body.data, r->body.len) != 0)
        abort();
    proto_reader_free(&back);
    close(sv[0]);
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    size_t body_max, chunk, sent = 0, pos = 0, h = 0, b = 0;
    uint32_t hl = 0, bl = 0;
    const uint8_t *s;
    proto_reader r;
    proto_status want, st;

    if (size < 2 || size > 200000)
        return 0;
    body_max = (size_t)data[0] * 8;
    chunk = 1 + (size_t)data[1] * 4;
    s = data + 2;
    size -= 2;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        return 0;
    proto_reader_init(&r, body_max);
    want = ref_next(s, size, &pos, &h, &hl, &b, &bl);
    if (size == 0)
        shutdown(sv[0], SHUT_WR);
    for (;;) {
        if (sent < size) {
            size_t n = size - sent < chunk ? size - sent : chunk;
            ssize_t k = write(sv[0], s + sent, n);
            if (k > 0)
                sent += (size_t)k;
            if (sent == size)
                shutdown(sv[0], SHUT_WR);
        }
        st = proto_reader_step(&r, sv[1]);
        if (st == PROTO_MORE)
            continue;
        if (st != want)
            abort(); /* disagrees with the reference */
        if (st != PROTO_DONE) {
            if (st == PROTO_ERROR && (!r.error[0] || strnlen(r.error, sizeof(r.error)) ==
                                                         sizeof(r.error)))
                abort();
            break;
        }
        if (r.header.len != hl || memcmp(r.header.data, s + h, hl) != 0 ||
            r.header.data[hl] != '\0' || r.body_len != bl || r.body_too_large != (bl > body_max))
            abort();
        if (!r.body_too_large && (r.body.len != bl || memcmp(r.body.data, s + b, bl) != 0))
            abort();
        if (r.body_too_large && r.body.len != 0)
            abort(); /* a dropped body keeps nothing */
        if (!r.body_too_large)
            roundtrip(&r);
        proto_reader_reset(&r, body_max);
        want = ref_next(s, size, &pos, &h, &hl, &b, &bl);
    }
    proto_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
