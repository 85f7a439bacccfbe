/* invstream.h — the framing of a streamed invocation between the lambda-executor and the
 * gateway (docs/http.md "Streaming"). The executor answers a request carrying
 * INVSTREAM_ACCEPT_HEADER: 1 whose function streams with Content-Type INVSTREAM_CONTENT_TYPE
 * and a body of frames: one byte type, a 4-byte big-endian length, that many bytes.
 *   'M' once, first: JSON {"content_type":"...","http":{"statusCode","headers","cookies"}}
 *       ("http" only when the handler set HTTP metadata)
 *   'D' any number: the next bytes of the stream, as the function wrote them
 *   'E' once, last: JSON {} when the function succeeded, else {"errorType","errorMessage"}
 * A body that ends without 'E' is a broken invocation (the executor or the connection died).
 * Thread-safety: an encoder/decoder is used by one thread at a time. */
#ifndef ML_INVSTREAM_H
#define ML_INVSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define INVSTREAM_CONTENT_TYPE "application/vnd.minilambda.invstream"
#define INVSTREAM_ACCEPT_HEADER "X-Minilambda-Stream"
#define INVSTREAM_FRAME_MAX (1u << 20) /* a longer frame is a protocol error */

enum { INVSTREAM_META = 'M', INVSTREAM_DATA = 'D', INVSTREAM_END = 'E' };

/* Appends one frame to out. ML_ERR when len > INVSTREAM_FRAME_MAX or out of memory. */
int invstream_frame(ml_buf *out, char type, const void *data, size_t len);

/* Called per complete frame; return ML_ERR to stop decoding (invstream_feed then fails). */
typedef int (*invstream_frame_fn)(void *ud, char type, const char *data, size_t len);

/* Incremental decoder. A zeroed struct is a valid empty decoder; free with invstream_dec_free. */
typedef struct invstream_dec {
    ml_buf pending;      /* bytes of an incomplete frame */
    bool failed;
    bool ended;          /* an 'E' frame was seen */
    char error[96];      /* why it failed */
} invstream_dec;

/* Feeds bytes as they arrive; calls fn for each complete frame in order. ML_ERR on a bad
 * frame type, an oversized frame, data after 'E', or fn's ML_ERR (reason in d->error). */
int invstream_feed(invstream_dec *d, const char *data, size_t len, invstream_frame_fn fn, void *ud);
void invstream_dec_free(invstream_dec *d);

#endif
