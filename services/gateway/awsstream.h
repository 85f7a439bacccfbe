/* awsstream.h — streamed invocations at the gateway (docs/http.md "Streaming"): the AWS
 * event-stream encoding of InvokeWithResponseStream, and the relay that turns the executor's
 * invstream frames (invstream.h) into the client's body as they arrive.
 *
 * An event-stream message (the framing @aws-sdk/client-lambda's eventstream codec reads):
 *   total length (4, big-endian) | headers length (4) | CRC32 of those 8 bytes (4) |
 *   headers | payload | CRC32 of everything before it (4)
 * a header being: name length (1) | name | value type (1; 7 = string) | value length (2) | value.
 * Lambda's messages carry :event-type (PayloadChunk / InvokeComplete), :content-type and
 * :message-type "event"; PayloadChunk's payload is the bytes, InvokeComplete's a JSON object
 * {"ErrorCode","ErrorDetails","LogResult"} (members only when set).
 * Thread-safety: pure functions; a relay is used by one (loop) thread. */
#ifndef GW_AWSSTREAM_H
#define GW_AWSSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "httpd.h"
#include "invstream.h"

#define GW_EVS_CONTENT_TYPE "application/vnd.amazon.eventstream"
#define GW_EVS_OPERATION "InvokeWithResponseStream" /* the route's aws_op (routes.c) */

/* CRC32 (IEEE 802.3, as zlib's crc32): crc is 0 to start or the previous part's value. */
uint32_t gw_evs_crc32(uint32_t crc, const void *data, size_t len);
/* Appends one event message to out. ML_ERR when out of memory or a part is too long. */
int gw_evs_message(ml_buf *out, const char *event_type, const char *content_type,
                   const void *payload, size_t len);
/* A PayloadChunk event with these bytes. */
int gw_evs_payload_chunk(ml_buf *out, const void *data, size_t len);
/* The InvokeComplete event; NULL or "" members are left out. */
int gw_evs_invoke_complete(ml_buf *out, const char *error_code, const char *error_details,
                           const char *log_result);
/* The InvokeComplete ErrorCode and ErrorDetails of an executor error JSON
 * {"errorType","errorMessage"} (len bytes): Unhandled for the handler's own errors,
 * Sandbox.Timedout for a timeout, the Runtime.* type as it is. Writes "" when none. */
void gw_evs_error_of(const char *error_json, size_t len, char *code, size_t codelen,
                     char *details, size_t detailslen);

/* The relay of one streamed invocation. Zero it, set mode, start and ud, then feed it the
 * upstream body (on_chunk) and end it once (the transfer's done). */
typedef enum {
    GW_SRELAY_RAW = 0,   /* the function's bytes as the body; an error after the start cuts it */
    GW_SRELAY_EVENTS,    /* AWS event-stream: PayloadChunk per piece, then InvokeComplete */
} gw_srelay_mode;

typedef struct gw_srelay {
    gw_srelay_mode mode;
    /* At the 'M' frame: answers the client (status, headers, content type: the stream's
     * content_type, interned by the caller as it sees fit) and returns its stream, or NULL
     * to abort. */
    httpd_stream *(*start)(void *ud, const char *content_type);
    void *ud;
    /* state */
    invstream_dec dec;
    httpd_stream *stream;
    bool failed;             /* an error E arrived (its code/details kept for InvokeComplete) */
    char error_code[64];
    char error_details[512];
} gw_srelay;

/* Feeds upstream bytes; ML_ERR: abort the transfer (a bad frame, the client gone, no start). */
int gw_srelay_feed(gw_srelay *r, const char *data, size_t len);
/* Ends the client's body: complete after a clean E; otherwise (an error E in RAW mode, or no E:
 * the executor or the transfer broke) cut without the final chunk. EVENTS mode ends with
 * InvokeComplete (the error's, or "Unhandled" for a broken stream). Idempotent; frees the
 * decoder. True when the client's response had started (then the caller owes no answer). */
bool gw_srelay_end(gw_srelay *r);

#endif
