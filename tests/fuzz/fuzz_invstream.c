/* libFuzzer target: shared/invstream.c — the decoder of streamed invocations (the gateway
 * reads it from the executor, which relays a function's bytes). Oracles, besides ASan/UBSan:
 *   - feeding the input whole or split at any point (the first byte picks where) decodes the
 *     same frames and reaches the same verdict (a frame split across reads is never lost,
 *     doubled or changed);
 *   - no frame is longer than INVSTREAM_FRAME_MAX, and nothing follows an 'E' frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "invstream.h"
#include "ml.h"

typedef struct seen {
    uint32_t hash;   /* over every frame's type, length and bytes, in order */
    size_t frames;
    bool ended;
} seen;

static uint32_t mix(uint32_t h, const void *p, size_t n)
{
    const unsigned char *c = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 16777619u;
    return h;
}

static int on_frame(void *ud, char type, const char *data, size_t len)
{
    seen *s = ud;

    if (len > INVSTREAM_FRAME_MAX || s->ended)
        abort();
    s->ended = type == INVSTREAM_END;
    s->frames++;
    s->hash = mix(mix(mix(s->hash, &type, 1), &len, sizeof(len)), data, len);
    return ML_OK;
}

static int decode(const uint8_t *data, size_t size, size_t cut, seen *s)
{
    invstream_dec d = { 0 };
    int rc = invstream_feed(&d, (const char *)data, cut, on_frame, s);

    if (rc == ML_OK)
        rc = invstream_feed(&d, (const char *)data + cut, size - cut, on_frame, s);
    invstream_dec_free(&d);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    seen whole = { 2166136261u, 0, false }, split = { 2166136261u, 0, false };
    size_t cut;
    int a, b;

    if (size < 1)
        return 0;
    cut = data[0] % size;
    data++, size--;
    if (cut > size)
        cut = size;
    a = decode(data, size, size, &whole);
    b = decode(data, size, cut, &split);
    if (a != b || whole.frames != split.frames || whole.hash != split.hash)
        abort();
    return 0;
}
