/* invstream.c — streamed-invocation frames (see invstream.h). */
#include "invstream.h"

#include <string.h>

#include "ml.h"

#define HDR_LEN 5

static bool type_valid(char t)
{
    return t == INVSTREAM_META || t == INVSTREAM_DATA || t == INVSTREAM_END;
}

int invstream_frame(ml_buf *out, char type, const void *data, size_t len)
{
    unsigned char h[HDR_LEN];

    if (len > INVSTREAM_FRAME_MAX || !type_valid(type))
        return ML_ERR;
    h[0] = (unsigned char)type;
    h[1] = (unsigned char)(len >> 24);
    h[2] = (unsigned char)(len >> 16);
    h[3] = (unsigned char)(len >> 8);
    h[4] = (unsigned char)len;
    if (ml_buf_append(out, h, HDR_LEN) != ML_OK)
        return ML_ERR;
    return len ? ml_buf_append(out, data, len) : ML_OK;
}

static int fail(invstream_dec *d, const char *why)
{
    d->failed = true;
    ml_strlcpy(d->error, why, sizeof(d->error)); /* short literals: fit */
    return ML_ERR;
}

/* The length a frame header announces. */
static size_t frame_len(const unsigned char *h)
{
    return (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | (size_t)h[4];
}

/* Decodes the complete frames at the start of p (n bytes); *used: how many bytes they took. */
static int decode(invstream_dec *d, const char *p, size_t n, size_t *used, invstream_frame_fn fn,
                  void *ud)
{
    size_t off = 0;

    while (n - off >= HDR_LEN) {
        const unsigned char *h = (const unsigned char *)p + off;
        size_t len = frame_len(h);

        if (!type_valid((char)h[0]))
            return fail(d, "unknown frame type");
        if (len > INVSTREAM_FRAME_MAX)
            return fail(d, "frame too large");
        if (d->ended)
            return fail(d, "data after the end frame");
        if (n - off - HDR_LEN < len)
            break;
        if (h[0] == INVSTREAM_END)
            d->ended = true;
        if (fn(ud, (char)h[0], p + off + HDR_LEN, len) != ML_OK)
            return fail(d, "stopped by the consumer");
        off += HDR_LEN + len;
    }
    *used = off;
    return ML_OK;
}

int invstream_feed(invstream_dec *d, const char *data, size_t len, invstream_frame_fn fn, void *ud)
{
    size_t used = 0;

    if (d->failed)
        return ML_ERR;
    if (d->pending.len == 0) { /* the common case: whole frames straight from data */
        if (decode(d, data, len, &used, fn, ud) != ML_OK)
            return ML_ERR;
        return used < len ? (ml_buf_append(&d->pending, data + used, len - used) == ML_OK
                                 ? ML_OK : fail(d, "out of memory"))
                          : ML_OK;
    }
    if (ml_buf_append(&d->pending, data, len) != ML_OK)
        return fail(d, "out of memory");
    if (decode(d, d->pending.data, d->pending.len, &used, fn, ud) != ML_OK)
        return ML_ERR;
    memmove(d->pending.data, d->pending.data + used, d->pending.len - used);
    d->pending.len -= used;
    return ML_OK;
}

void invstream_dec_free(invstream_dec *d)
{
    ml_buf_free(&d->pending);
    memset(d, 0, sizeof(*d));
}
