/* audit_wal.c — the write-ahead log's record format: CRC-32C, framing, and a reader of whole
 * records that stops cleanly at a torn tail or a corrupt record (see audit.h for the layout).
 * Nothing here knows the audit log's state: the fuzz target and the unit tests use it alone. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit_wal.h"
#include "ml.h"

#ifndef AUDIT_WAL_READ_CHUNK /* the fuzz target makes it small to cross refills often */
#define AUDIT_WAL_READ_CHUNK (1u << 20) /* bytes read ahead at a time (a batch of rows, usually) */
#endif

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1; /* Castagnoli, reflected */
        crc_table[i] = c;
    }
}

uint32_t audit_crc32c(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *s = p;

    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *s++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put_u32(unsigned char *d, uint32_t v)
{
    d[0] = (unsigned char)v, d[1] = (unsigned char)(v >> 8), d[2] = (unsigned char)(v >> 16),
    d[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *s)
{
    return (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
}

/* The CRC covers the length bytes too, so a corrupt length cannot pass for a record. */
void audit_wal_header(const void *p, size_t n, unsigned char hdr[AUDIT_WAL_HDR])
{
    put_u32(hdr, (uint32_t)n);
    put_u32(hdr + 4, audit_crc32c(audit_crc32c(0, hdr, 4), p, n));
}

int audit_wal_parse(const unsigned char *buf, size_t len, const unsigned char **p, size_t *n,
                    size_t *used)
{
    uint32_t rl;

    *used = AUDIT_WAL_HDR;
    if (len < 4)
        return AUDIT_WAL_SHORT;
    rl = get_u32(buf);
    if (rl == 0 || rl > AUDIT_WAL_REC_MAX) /* zeros: a tail the file system extended but never wrote */
        return AUDIT_WAL_BAD;
    *used = AUDIT_WAL_HDR + (size_t)rl;
    if (len < *used)
        return AUDIT_WAL_SHORT;
    if (get_u32(buf + 4) != audit_crc32c(audit_crc32c(0, buf, 4), buf + AUDIT_WAL_HDR, rl))
        return AUDIT_WAL_BAD;
    *p = buf + AUDIT_WAL_HDR;
    *n = rl;
    return AUDIT_WAL_OK;
}

typedef struct reader {
    int fd;
    unsigned char *buf;
    size_t cap, have, pos; /* buf[pos..have) not parsed yet */
    uint64_t at, limit;    /* file offset of buf[0]; read no further than limit */
    bool eof;
} reader;

/* Reads more after the unparsed bytes, room for at least need of them. ML_OK / ML_ERR. */
static int reader_fill(reader *r, size_t need, char *err, size_t errlen)
{
    size_t want;
    ssize_t got;

    memmove(r->buf, r->buf + r->pos, r->have - r->pos);
    r->have -= r->pos;
    r->at += r->pos;
    r->pos = 0;
    if (need > r->cap) {
        unsigned char *nb = realloc(r->buf, need);
        if (!nb) {
            ml_snprintf_trunc(err, errlen, "out of memory reading the audit log");
            return ML_ERR;
        }
        r->buf = nb, r->cap = need;
    }
    want = r->cap - r->have;
    if (r->at + r->have >= r->limit)
        want = 0;
    else if (r->limit - (r->at + r->have) < want)
        want = (size_t)(r->limit - (r->at + r->have));
    if (want == 0) {
        r->eof = true;
        return ML_OK;
    }
    do
        got = pread(r->fd, r->buf + r->have, want, (off_t)(r->at + r->have));
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        ml_snprintf_trunc(err, errlen, "cannot read the audit log: %s", strerror(errno));
        return ML_ERR;
    }
    r->eof = got == 0;
    r->have += (size_t)got;
    return ML_OK;
}

int audit_wal_read(int fd, uint64_t *off, uint64_t limit, size_t max_rows, ml_buf *arena,
                   size_t *starts, size_t *lens, size_t *rows, char *err, size_t errlen)
{
    reader r = { .fd = fd, .cap = AUDIT_WAL_READ_CHUNK, .at = *off, .limit = limit };
    int rc = AUDIT_WAL_OK;

    *rows = 0;
    if (!(r.buf = malloc(r.cap))) {
        ml_snprintf_trunc(err, errlen, "out of memory reading the audit log");
        return ML_ERR;
    }
    while (*rows < max_rows) {
        const unsigned char *p = NULL;
        size_t n = 0, used;
        int pr = audit_wal_parse(r.buf + r.pos, r.have - r.pos, &p, &n, &used);

        if (pr == AUDIT_WAL_OK) {
            if (arena) {
                starts[*rows] = arena->len;
                lens[*rows] = n;
                if (ml_buf_append(arena, p, n) != ML_OK) {
                    ml_snprintf_trunc(err, errlen, "out of memory reading the audit log");
                    rc = ML_ERR;
                    break;
                }
            }
            (*rows)++;
            r.pos += used;
            *off = r.at + r.pos;
        } else if (pr == AUDIT_WAL_BAD) {
            rc = AUDIT_WAL_BAD;
            break;
        } else if (r.eof) {
            rc = r.have > r.pos ? AUDIT_WAL_SHORT : AUDIT_WAL_OK;
            break;
        } else if (reader_fill(&r, used, err, errlen) != ML_OK) {
            rc = ML_ERR;
            break;
        }
    }
    free(r.buf);
    return rc;
}
