/* proto.c — length-prefixed frames over a non-blocking stream (see proto.h). */
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define PROTO_CHUNK (64u * 1024u)

enum { PH_HLEN = 0, PH_HDR, PH_BLEN, PH_BODY, PH_DONE };

void proto_reader_init(proto_reader *r, size_t body_max)
{
    memset(r, 0, sizeof(*r));
    ml_buf_init(&r->header, PROTO_HEADER_MAX);
    ml_buf_init(&r->body, body_max ? body_max : 1);
    r->body_max = body_max;
}

void proto_reader_reset(proto_reader *r, size_t body_max)
{
    ml_buf_reset(&r->header);
    ml_buf_reset(&r->body);
    r->body.max = body_max ? body_max : 1;
    r->body_max = body_max;
    r->phase = PH_HLEN;
    r->len_fill = 0;
    r->want = r->got = r->body_len = 0;
    r->body_too_large = false;
    r->error[0] = '\0';
}

void proto_reader_free(proto_reader *r)
{
    ml_buf_free(&r->header);
    ml_buf_free(&r->body);
}

static proto_status reader_fail(proto_reader *r, const char *why)
{
    ml_strlcpy(r->error, why, sizeof(r->error));
    return PROTO_ERROR;
}

/* One read(2) of at most n bytes; >0 bytes, 0 would block, -1 EOF, -2 error. */
static ssize_t read_some(int fd, void *dst, size_t n)
{
    for (;;) {
        ssize_t got = read(fd, dst, n);

        if (got > 0)
            return got;
        if (got == 0)
            return -1;
        if (errno == EINTR)
            continue;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -2;
    }
}

static uint32_t be32(const unsigned char b[4])
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Reads length bytes; *complete once all 4 are in, *progress if any byte was read. */
static proto_status read_len(proto_reader *r, int fd, bool *complete, bool *progress)
{
    ssize_t got = read_some(fd, r->len + r->len_fill, 4 - r->len_fill);

    *complete = false;
    if (got == -1)
        return PROTO_EOF;
    if (got == -2)
        return reader_fail(r, "read failed");
    *progress = got > 0;
    r->len_fill += (size_t)got;
    if (r->len_fill == 4) {
        r->want = be32(r->len);
        r->got = 0;
        r->len_fill = 0;
        *complete = true;
    }
    return PROTO_MORE;
}

/* Reads frame payload bytes into dst (NULL: drop them). */
static proto_status read_payload(proto_reader *r, int fd, ml_buf *dst)
{
    char chunk[8192];
    size_t n = r->want - r->got;
    ssize_t got;

    if (n > sizeof(chunk))
        n = sizeof(chunk);
    got = read_some(fd, chunk, n);
    if (got == -1)
        return PROTO_EOF;
    if (got == -2)
        return reader_fail(r, "read failed");
    if (dst && ml_buf_append(dst, chunk, (size_t)got) != ML_OK)
        return reader_fail(r, "out of memory");
    r->got += (uint32_t)got;
    return PROTO_MORE;
}

/* Advances one phase if the fd has data; sets *progress when bytes were consumed or the
 * phase changed without needing any. */
static proto_status reader_advance(proto_reader *r, int fd, bool *progress)
{
    bool complete = false;
    uint32_t before = r->got;
    proto_status st = PROTO_MORE;

    *progress = false;
    switch (r->phase) {
    case PH_HLEN:
    case PH_BLEN:
        st = read_len(r, fd, &complete, progress);
        if (st != PROTO_MORE)
            return st;
        if (complete && r->phase == PH_HLEN && r->want > PROTO_HEADER_MAX)
            return reader_fail(r, "header frame too large");
        if (complete && r->phase == PH_BLEN) {
            r->body_len = r->want;
            r->body_too_large = r->want > r->body_max;
        }
        if (complete)
            r->phase++;
        return PROTO_MORE;
    case PH_HDR:
    case PH_BODY:
        if (r->got < r->want) {
            ml_buf *dst = r->phase == PH_HDR ? &r->header
                                             : (r->body_too_large ? NULL : &r->body);
            st = read_payload(r, fd, dst);
            if (st != PROTO_MORE)
                return st;
        }
        if (r->got == r->want) {
            /* Make an empty frame's buffer a valid "" too. */
            ml_buf *dst = r->phase == PH_HDR ? &r->header : &r->body;
            if (dst->len == 0 && ml_buf_append(dst, "", 0) != ML_OK)
                return reader_fail(r, "out of memory");
            r->phase++;
            *progress = true;
            return r->phase == PH_DONE ? PROTO_DONE : PROTO_MORE;
        }
        *progress = r->got != before;
        return PROTO_MORE;
    default:
        return PROTO_DONE;
    }
}

proto_status proto_reader_step(proto_reader *r, int fd)
{
    /* At most ~1 MiB per call: a peer streaming without end must not keep the caller from
     * its deadline checks. */
    for (int i = 0; i < 128; i++) {
        bool progress = false;
        proto_status st = reader_advance(r, fd, &progress);

        if (st != PROTO_MORE || !progress)
            return st;
    }
    return PROTO_MORE;
}

static void put_be32(unsigned char b[4], uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

int proto_writer_init(proto_writer *w, const char *hdr, size_t hdr_len, const char *body,
                      size_t body_len)
{
    memset(w, 0, sizeof(*w));
    if (hdr_len > PROTO_HEADER_MAX || body_len > UINT32_MAX)
        return ML_ERR;
    put_be32(w->hlen, (uint32_t)hdr_len);
    put_be32(w->blen, (uint32_t)body_len);
    w->hdr = hdr;
    w->hdr_len = hdr_len;
    w->body = body ? body : "";
    w->body_len = body_len;
    return ML_OK;
}

static size_t writer_total(const proto_writer *w)
{
    return 8 + w->hdr_len + w->body_len;
}

bool proto_writer_done(const proto_writer *w)
{
    return w->off == writer_total(w);
}

/* The unwritten rest of the message as up to 4 iovecs. */
static int writer_iov(const proto_writer *w, struct iovec iov[4])
{
    const struct {
        const void *p;
        size_t n;
    } part[4] = { { w->hlen, 4 }, { w->hdr, w->hdr_len }, { w->blen, 4 }, { w->body, w->body_len } };
    size_t skip = w->off;
    int n = 0;

    for (size_t i = 0; i < 4; i++) {
        if (skip >= part[i].n) {
            skip -= part[i].n;
            continue;
        }
        iov[n].iov_base = (char *)part[i].p + skip;
        iov[n].iov_len = part[i].n - skip;
        skip = 0;
        n++;
    }
    return n;
}

int proto_writer_step(proto_writer *w, int fd)
{
    while (!proto_writer_done(w)) {
        struct iovec iov[4];
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)writer_iov(w, iov) };
        /* MSG_NOSIGNAL: a peer that died must give EPIPE, not kill us with SIGPIPE. */
        ssize_t put = sendmsg(fd, &msg, MSG_NOSIGNAL);

        if (put < 0 && errno == ENOTSOCK)
            put = writev(fd, iov, (int)msg.msg_iovlen);

        if (put < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? ML_OK : ML_ERR;
        }
        w->off += (size_t)put;
    }
    return ML_OK;
}

static int wait_fd(int fd, short events)
{
    struct pollfd p = { .fd = fd, .events = events };
    int rc;

    do
        rc = poll(&p, 1, -1);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? ML_ERR : ML_OK;
}

int proto_send(int fd, const char *hdr, size_t hdr_len, const char *body, size_t body_len)
{
    proto_writer w;

    if (proto_writer_init(&w, hdr, hdr_len, body, body_len) != ML_OK)
        return ML_ERR;
    for (;;) {
        if (proto_writer_step(&w, fd) != ML_OK)
            return ML_ERR;
        if (proto_writer_done(&w))
            return ML_OK;
        if (wait_fd(fd, POLLOUT) != ML_OK)
            return ML_ERR;
    }
}

proto_status proto_recv(int fd, proto_reader *r)
{
    for (;;) {
        proto_status st = proto_reader_step(r, fd);

        if (st != PROTO_MORE)
            return st;
        if (wait_fd(fd, POLLIN) != ML_OK)
            return reader_fail(r, "poll failed");
    }
}
