/* proto.h — the framed protocol between the executor and a runtime bootstrap (see
 * runtimes/provided/README.md for the peer's side).
 *
 * A frame is a 4-byte big-endian length followed by that many bytes. A message is two frames:
 * a header (a small JSON object with a "type") and a body (raw bytes, possibly empty). The
 * executor speaks it on its end of a socketpair whose other end is fd 3 of the runtime.
 *
 * Both sides here work on non-blocking fds and never block: the caller polls and calls the
 * step functions when the fd is ready. Neither keeps a reference to the fd.
 * Thread-safety: a reader or writer is used by one thread at a time. */
#ifndef ML_PROTO_H
#define ML_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Largest header accepted; a longer one is a protocol error. */
#define PROTO_HEADER_MAX (64u * 1024u)

typedef enum { PROTO_MORE = 0, PROTO_DONE, PROTO_EOF, PROTO_ERROR } proto_status;

/* Incremental reader of one message. Zeroed is not valid: call proto_reader_init. */
typedef struct proto_reader {
    int phase;              /* 0 header length, 1 header, 2 body length, 3 body, 4 done */
    unsigned char len[4];
    size_t len_fill;
    uint32_t want;          /* length of the frame being read */
    uint32_t got;
    ml_buf header;          /* NUL-terminated header bytes */
    ml_buf body;            /* body bytes, unless body_too_large */
    size_t body_max;
    uint32_t body_len;      /* declared body length (also when too large) */
    bool body_too_large;    /* the body was longer than body_max: it was read and dropped */
    char error[96];         /* why PROTO_ERROR */
} proto_reader;

/* Prepares r for a message whose body may be at most body_max bytes (a longer body is
 * consumed and dropped, and flagged, so the stream stays in sync). Frees nothing. */
void proto_reader_init(proto_reader *r, size_t body_max);
/* Starts the next message, keeping the buffers' storage. */
void proto_reader_reset(proto_reader *r, size_t body_max);
/* Reads what the non-blocking fd has (at most ~1 MiB per call), never past the end of the
 * current message.
 * PROTO_DONE: header and body are complete. PROTO_MORE: call again when readable.
 * PROTO_EOF: the peer closed (mid-message too). PROTO_ERROR: I/O error or oversized header,
 * reason in r->error. */
proto_status proto_reader_step(proto_reader *r, int fd);
/* Frees the buffers; r may be re-initialised. */
void proto_reader_free(proto_reader *r);

/* Outgoing message; the header and body memory must stay valid until done. */
typedef struct proto_writer {
    unsigned char hlen[4], blen[4];
    const char *hdr;
    size_t hdr_len;
    const char *body;
    size_t body_len;
    size_t off;             /* bytes written so far of the whole message */
} proto_writer;

/* ML_ERR if a part is longer than a frame can say (4 GiB) or the header exceeds PROTO_HEADER_MAX. */
int proto_writer_init(proto_writer *w, const char *hdr, size_t hdr_len, const char *body,
                      size_t body_len);
/* Writes as much as the non-blocking fd takes. ML_OK (check proto_writer_done), ML_ERR on
 * an error other than EAGAIN/EINTR (errno set). */
int proto_writer_step(proto_writer *w, int fd);
bool proto_writer_done(const proto_writer *w);

/* Blocking helpers (poll-based, so they also work on non-blocking fds) for simple peers and
 * tests. proto_send: ML_OK or ML_ERR. proto_recv: the final status (DONE, EOF or ERROR). */
int proto_send(int fd, const char *hdr, size_t hdr_len, const char *body, size_t body_len);
proto_status proto_recv(int fd, proto_reader *r);

#endif
