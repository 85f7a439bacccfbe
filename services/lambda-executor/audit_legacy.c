/* audit_legacy.c — the spill file of executors from before the write-ahead log: JSON lines at
 * MINILAMBDA_AUDIT_SPILL_PATH itself. At start its whole lines are appended to the log and the
 * file is removed, so an upgrade loses no row that an outage or a crash left there. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "audit-int.h"
#include "log.h"

/* Appends line as one log record (header first). ML_OK / ML_ERR. */
static int import_line(audit *a, const char *line, size_t len, ml_buf *frame)
{
    static const char zero_hdr[AUDIT_WAL_HDR];

    ml_buf_reset(frame);
    if (ml_buf_append(frame, zero_hdr, sizeof(zero_hdr)) != ML_OK || ml_buf_append(frame, line, len) != ML_OK)
        return ML_ERR;
    audit_wal_header(frame->data + AUDIT_WAL_HDR, len, (unsigned char *)frame->data);
    return audit_log_append(a, frame);
}

/* Feeds the complete lines of buf to the log; the rest stays in *part. */
static int import_chunk(audit *a, const char *buf, size_t n, ml_buf *part, ml_buf *frame, size_t *rows)
{
    for (const char *nl; n > 0 && (nl = memchr(buf, '\n', n)) != NULL;) {
        size_t k = (size_t)(nl - buf);
        if (ml_buf_append(part, buf, k) != ML_OK)
            return ML_ERR;
        if (part->len > 0 && part->len <= AUDIT_WAL_REC_MAX) {
            if (import_line(a, part->data, part->len, frame) != ML_OK)
                return ML_ERR;
            (*rows)++;
        }
        ml_buf_reset(part);
        buf += k + 1, n -= k + 1;
    }
    return ml_buf_append(part, buf, n);
}

int audit_legacy_import(audit *a, char *err, size_t errlen)
{
    char chunk[65536];
    ml_buf part, frame;
    size_t rows = 0;
    ssize_t n = 0;
    int fd = open(a->base, O_RDONLY | O_CLOEXEC), rc = ML_OK;

    if (fd < 0 && errno == ENOENT)
        return ML_OK;
    if (fd < 0) {
        ml_snprintf_trunc(err, errlen, "cannot read the old spill file %s: %s", a->base, strerror(errno));
        return ML_ERR;
    }
    ml_buf_init(&part, 0);
    ml_buf_init(&frame, 0);
    while (rc == ML_OK && (n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno != EINTR)
            rc = ML_ERR;
        else if (n > 0)
            rc = import_chunk(a, chunk, (size_t)n, &part, &frame, &rows);
    }
    close(fd);
    if (rc == ML_OK && a->fsync_mode != AUDIT_FSYNC_OFF && fdatasync(a->wal_fd) != 0)
        rc = ML_ERR;
    if (rc == ML_OK && unlink(a->base) != 0)
        rc = ML_ERR;
    if (rc != ML_OK)
        ml_snprintf_trunc(err, errlen, "cannot move the old spill file %s into the audit log: %s", a->base,
                          strerror(errno));
    else if (rows || part.len)
        ml_log_info("audit: %zu rows of the old spill file %s moved into the write-ahead log (%zu torn bytes "
                    "dropped)", rows, a->base, part.len);
    ml_buf_free(&part);
    ml_buf_free(&frame);
    return rc;
}
