/* libFuzzer target: the audit write-ahead log's reader (services/lambda-executor/audit_wal.c),
 * which reads segment files a crash may have torn or a disk may have damaged.
 *
 * Input: 2 bytes of parameters (max_rows, a limit cut), then the segment's bytes after its
 * magic. The file is a memfd; the harness is built with a 64-byte read chunk so records
 * cross the reader's refills all the time.
 * Oracles (besides ASan/UBSan):
 *   - the records read are exactly the input's leading whole records: re-framing each with
 *     audit_wal_header gives back the input's bytes, contiguous from the start;
 *   - the end offset never passes the limit or the file; the result says why it stopped
 *     and agrees with audit_wal_parse at that offset (SHORT: an incomplete record there,
 *     BAD: a corrupt one, OK: max_rows reached or nothing left);
 *   - counting only (no arena) gives the same rows and offset. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "audit_wal.h"
#include "ml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_rows(const uint8_t *body, size_t blen, const ml_buf *arena, const size_t *starts,
                       const size_t *lens, size_t rows, uint64_t off)
{
    size_t at = 0;

    for (size_t i = 0; i < rows; i++) {
        unsigned char hdr[AUDIT_WAL_HDR];
        audit_wal_header(arena->data + starts[i], lens[i], hdr);
        if (at + AUDIT_WAL_HDR + lens[i] > blen || memcmp(body + at, hdr, AUDIT_WAL_HDR) != 0 ||
            memcmp(body + at + AUDIT_WAL_HDR, arena->data + starts[i], lens[i]) != 0)
            abort();
        at += AUDIT_WAL_HDR + lens[i];
    }
    if (off != AUDIT_WAL_MAGIC_LEN + at)
        abort();
}

static void check_stop(int rc, const uint8_t *body, size_t blen, uint64_t off, uint64_t limit, size_t rows,
                       size_t max_rows)
{
    size_t at = (size_t)(off - AUDIT_WAL_MAGIC_LEN), end = blen, used;
    const unsigned char *p;
    size_t n;

    if (limit - AUDIT_WAL_MAGIC_LEN < end)
        end = (size_t)(limit - AUDIT_WAL_MAGIC_LEN);
    if (at > end)
        abort();
    if (rc == ML_ERR)
        abort(); /* a memfd always reads */
    if (rc == AUDIT_WAL_OK && rows < max_rows && at != end)
        abort();
    if (rc == AUDIT_WAL_SHORT && (at == end || audit_wal_parse(body + at, end - at, &p, &n, &used) != AUDIT_WAL_SHORT))
        abort();
    if (rc == AUDIT_WAL_BAD && audit_wal_parse(body + at, end - at, &p, &n, &used) != AUDIT_WAL_BAD)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t max_rows, rows = 0, rows2 = 0, starts[64], lens[64];
    uint64_t limit, off = AUDIT_WAL_MAGIC_LEN, off2 = AUDIT_WAL_MAGIC_LEN;
    const uint8_t *body;
    size_t blen;
    char err[256];
    ml_buf arena;
    int fd, rc, rc2;

    if (size < 2)
        return 0;
    max_rows = 1 + data[0] % 64;
    body = data + 2, blen = size - 2;
    limit = data[1] == 0xff ? UINT64_MAX : AUDIT_WAL_MAGIC_LEN + (uint64_t)blen * data[1] / 254;
    if ((fd = memfd_create("wal", MFD_CLOEXEC)) < 0)
        return 0;
    if (write(fd, AUDIT_WAL_MAGIC, AUDIT_WAL_MAGIC_LEN) != AUDIT_WAL_MAGIC_LEN ||
        (blen && write(fd, body, blen) != (ssize_t)blen)) {
        close(fd);
        return 0;
    }
    ml_buf_init(&arena, 0);
    rc = audit_wal_read(fd, &off, limit, max_rows, &arena, starts, lens, &rows, err, sizeof(err));
    check_rows(body, blen, &arena, starts, lens, rows, off);
    check_stop(rc, body, blen, off, limit, rows, max_rows);
    rc2 = audit_wal_read(fd, &off2, limit, max_rows, NULL, NULL, NULL, &rows2, err, sizeof(err));
    if (rc2 != rc || rows2 != rows || off2 != off)
        abort();
    ml_buf_free(&arena);
    close(fd);
    return 0;
}
