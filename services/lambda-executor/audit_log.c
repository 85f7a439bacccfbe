/* audit_log.c — the write-ahead log's files next to MINILAMBDA_AUDIT_SPILL_PATH (<base>):
 * <base>.lock (flock'd: one process per log), <base>.<16 hex>.wal segments appended in
 * order, and <base>.ckpt, the position up to which every record is in Postgres. Appends
 * (with an optional group fdatasync), the checkpoint, and deleting what it has passed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit-int.h"
#include "log.h"

#define CKPT_MAGIC "MLCKPT1\n"
#define CKPT_LEN 28      /* magic, segment, offset (u64 LE each), CRC-32C of those 24 bytes */

static void put_u64(unsigned char *d, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        d[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *s)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | s[i];
    return v;
}

int audit_log_segment_path(const audit *a, uint64_t seg, char *out, size_t size)
{
    return ml_snprintf(out, size, "%s.%016" PRIx64 ".wal", a->base, seg);
}

static int side_path(const audit *a, const char *ext, char *out, size_t size)
{
    return ml_snprintf(out, size, "%s%s", a->base, ext);
}

/* The lowest and highest segment numbers on disk; false when there is none. */
static bool list_segments(const audit *a, uint64_t *lo, uint64_t *hi)
{
    char dirbuf[4096], namebuf[4096];
    const char *dir, *name;
    size_t nlen;
    DIR *d;
    bool any = false;

    if (ml_strlcpy(dirbuf, a->base, sizeof(dirbuf)) != ML_OK || ml_strlcpy(namebuf, a->base, sizeof(namebuf)) != ML_OK)
        return false;
    dir = dirname(dirbuf);
    name = basename(namebuf);
    nlen = strlen(name);
    if (!(d = opendir(dir)))
        return false;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *s = e->d_name;
        char *end;
        uint64_t n;

        if (strncmp(s, name, nlen) != 0 || s[nlen] != '.' || strlen(s + nlen) != 1 + 16 + 4 ||
            strcmp(s + nlen + 17, ".wal") != 0)
            continue;
        n = strtoull(s + nlen + 1, &end, 16);
        if (end != s + nlen + 17)
            continue;
        *lo = any && *lo < n ? *lo : n;
        *hi = any && *hi > n ? *hi : n;
        any = true;
    }
    closedir(d);
    return any;
}

static int sync_dir(const audit *a)
{
    char dirbuf[4096];
    int fd, rc;

    if (a->fsync_mode == AUDIT_FSYNC_OFF || ml_strlcpy(dirbuf, a->base, sizeof(dirbuf)) != ML_OK)
        return ML_OK;
    if ((fd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return ML_ERR;
    rc = fsync(fd) == 0 ? ML_OK : ML_ERR;
    close(fd);
    return rc;
}

/* Creates segment seg with its magic; the open descriptor, or -1 (errno set). */
static int segment_create(audit *a, uint64_t seg)
{
    char path[4200];
    int fd;

    if (audit_log_segment_path(a, seg, path, sizeof(path)) != ML_OK) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (write(fd, AUDIT_WAL_MAGIC, AUDIT_WAL_MAGIC_LEN) != AUDIT_WAL_MAGIC_LEN ||
        (a->fsync_mode != AUDIT_FSYNC_OFF && (fdatasync(fd) != 0 || sync_dir(a) != ML_OK))) {
        int e = errno ? errno : EIO;
        close(fd);
        unlink(path);
        errno = e;
        return -1;
    }
    return fd;
}

/* Opens segment seg for reading, checking its magic; -1 when missing or not a segment. */
int audit_log_segment_open(const audit *a, uint64_t seg, int64_t *size)
{
    char path[4200], magic[AUDIT_WAL_MAGIC_LEN];
    struct stat st;
    int fd = -1;

    if (audit_log_segment_path(a, seg, path, sizeof(path)) == ML_OK)
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (pread(fd, magic, sizeof(magic), 0) != (ssize_t)sizeof(magic) ||
        memcmp(magic, AUDIT_WAL_MAGIC, sizeof(magic)) != 0 || fstat(fd, &st) != 0) {
        ml_log_error("audit: %s is not an audit log segment; skipped", path);
        close(fd);
        return -1;
    }
    if (size)
        *size = (int64_t)st.st_size;
    return fd;
}

int audit_log_checkpoint(audit *a)
{
    unsigned char b[CKPT_LEN];
    uint32_t c;

    memcpy(b, CKPT_MAGIC, 8);
    put_u64(b + 8, a->cursor.seg);
    put_u64(b + 16, a->cursor.off);
    c = audit_crc32c(0, b, 24);
    b[24] = (unsigned char)c, b[25] = (unsigned char)(c >> 8), b[26] = (unsigned char)(c >> 16),
    b[27] = (unsigned char)(c >> 24);
    if (pwrite(a->ckpt_fd, b, sizeof(b), 0) != (ssize_t)sizeof(b) ||
        (a->fsync_mode != AUDIT_FSYNC_OFF && fdatasync(a->ckpt_fd) != 0)) {
        ml_log_error("audit: cannot write the checkpoint %s.ckpt: %s", a->base, strerror(errno));
        return ML_ERR;
    }
    return ML_OK;
}

/* The stored checkpoint; false when missing or damaged (then everything is replayed). */
static bool checkpoint_read(audit *a, audit_pos *p)
{
    unsigned char b[CKPT_LEN];
    uint32_t c;

    if (pread(a->ckpt_fd, b, sizeof(b), 0) != (ssize_t)sizeof(b) || memcmp(b, CKPT_MAGIC, 8) != 0)
        return false;
    c = (uint32_t)b[24] | (uint32_t)b[25] << 8 | (uint32_t)b[26] << 16 | (uint32_t)b[27] << 24;
    if (c != audit_crc32c(0, b, 24))
        return false;
    p->seg = get_u64(b + 8);
    p->off = get_u64(b + 16);
    return p->off >= AUDIT_WAL_MAGIC_LEN;
}

/* Adds up the sizes of the segments first..last and counts the whole records from the
 * cursor on; torn tails and corrupt records are reported (the writer skips them the same
 * way). */
static void count_backlog(audit *a, uint64_t first, uint64_t last)
{
    char err[256];

    for (uint64_t s = first; s <= last; s++) {
        int64_t size = 0;
        uint64_t off = s == a->cursor.seg ? a->cursor.off : AUDIT_WAL_MAGIC_LEN;
        size_t rows = 0;
        int fd = audit_log_segment_open(a, s, &size), rc;

        if (fd < 0)
            continue;
        a->wal_bytes += size;
        if (s < a->cursor.seg) { /* wholly in Postgres: deleted right after */
            close(fd);
            continue;
        }
        rc = audit_wal_read(fd, &off, UINT64_MAX, SIZE_MAX, NULL, NULL, NULL, &rows, err, sizeof(err));
        close(fd);
        a->seq_submitted += rows;
        if (rc != AUDIT_WAL_OK)
            ml_log_warn("audit: segment %016" PRIx64 " of %s: %s after %zu rows at byte %" PRIu64
                        " (%" PRId64 " bytes skipped)", s, a->base,
                        rc == AUDIT_WAL_SHORT ? "a torn last record" : rc == AUDIT_WAL_BAD ? "a corrupt record" : err,
                        rows, off, size - (int64_t)off);
    }
}

/* Deletes the segments before the cursor's (all their records are in Postgres). Writer only. */
static void delete_behind(audit *a)
{
    int64_t freed = 0;
    uint64_t first;

    pthread_mutex_lock(&a->lock);
    first = a->first_seg;
    pthread_mutex_unlock(&a->lock);
    for (uint64_t s = first; s < a->cursor.seg; s++) {
        char path[4200];
        struct stat st;

        if (audit_log_segment_path(a, s, path, sizeof(path)) == ML_OK && stat(path, &st) == 0 &&
            unlink(path) == 0)
            freed += (int64_t)st.st_size;
    }
    pthread_mutex_lock(&a->lock);
    a->first_seg = a->cursor.seg > first ? a->cursor.seg : first;
    a->wal_bytes -= freed;
    pthread_mutex_unlock(&a->lock);
}

/* Persists the cursor, then drops what it has passed. Writer thread (and open) only. */
int audit_log_advance(audit *a)
{
    if (audit_log_checkpoint(a) != ML_OK)
        return ML_ERR;
    delete_behind(a);
    return ML_OK;
}

static int open_side_files(audit *a, char *err, size_t errlen)
{
    char path[4200];

    if (side_path(a, ".lock", path, sizeof(path)) != ML_OK ||
        (a->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        ml_snprintf_trunc(err, errlen, "cannot open the audit log lock %s.lock: %s", a->base, strerror(errno));
        return ML_ERR;
    }
    if (flock(a->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        ml_snprintf_trunc(err, errlen, "the audit log %s is in use by another process (%s); give each "
                          "executor its own MINILAMBDA_AUDIT_SPILL_PATH", a->base, strerror(errno));
        return ML_ERR;
    }
    if (side_path(a, ".ckpt", path, sizeof(path)) != ML_OK ||
        (a->ckpt_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        ml_snprintf_trunc(err, errlen, "cannot open the audit checkpoint %s.ckpt: %s", a->base, strerror(errno));
        return ML_ERR;
    }
    return ML_OK;
}

/* Locks the log, finds where the writer resumes (the checkpoint, or the oldest segment),
 * counts the rows left to write and starts a new segment for appends. */
int audit_log_open(audit *a, char *err, size_t errlen)
{
    uint64_t lo = 0, hi = 0;
    bool any;
    audit_pos ck;

    if (open_side_files(a, err, errlen) != ML_OK)
        return ML_ERR;
    any = list_segments(a, &lo, &hi);
    if (!checkpoint_read(a, &ck) || (any && ck.seg < lo))
        ck = (audit_pos){ lo, AUDIT_WAL_MAGIC_LEN }; /* replay all: the upsert is idempotent */
    a->cursor = ck;
    a->first_seg = any && lo < ck.seg ? lo : ck.seg;
    if (any)
        count_backlog(a, a->first_seg, hi);
    a->wend = (audit_pos){ any && hi >= ck.seg ? hi + 1 : ck.seg + 1, AUDIT_WAL_MAGIC_LEN };
    if ((a->wal_fd = segment_create(a, a->wend.seg)) < 0) {
        ml_snprintf_trunc(err, errlen, "cannot create an audit log segment next to %s: %s", a->base, strerror(errno));
        return ML_ERR;
    }
    a->wal_bytes += AUDIT_WAL_MAGIC_LEN;
    if (a->seq_submitted == 0) /* nothing to replay: start clean */
        a->cursor = a->wend;
    else
        ml_log_info("audit: %" PRIu64 " rows in %s.*.wal from an earlier run will be replayed",
                    a->seq_submitted, a->base);
    a->synced_ms = ml_now_ms();
    return audit_log_advance(a);
}

void audit_log_close(audit *a)
{
    if (a->wal_fd >= 0 && a->fsync_mode != AUDIT_FSYNC_OFF)
        fdatasync(a->wal_fd);
    if (a->wal_fd >= 0)
        close(a->wal_fd);
    if (a->read_fd >= 0)
        close(a->read_fd);
    if (a->ckpt_fd >= 0)
        close(a->ckpt_fd);
    if (a->lock_fd >= 0)
        close(a->lock_fd);
}

/* Closes the current segment and starts the next. Lock held. */
static int roll(audit *a)
{
    int fd = segment_create(a, a->wend.seg + 1);

    if (fd < 0)
        return ML_ERR;
    if (a->fsync_mode != AUDIT_FSYNC_OFF)
        fdatasync(a->wal_fd); /* the group fdatasync covers only the current segment */
    close(a->wal_fd);
    a->wal_fd = fd;
    a->wend = (audit_pos){ a->wend.seg + 1, AUDIT_WAL_MAGIC_LEN };
    a->wal_bytes += AUDIT_WAL_MAGIC_LEN;
    return ML_OK;
}

/* Group commit: one fdatasync covers every row appended before it started, so a submitter
 * either runs it for everyone waiting or waits for the one running. Lock held. */
void audit_log_sync(audit *a, uint64_t seq)
{
    while (a->seq_synced < seq) {
        uint64_t target;
        int fd, rc;

        if (a->syncing) {
            pthread_cond_wait(&a->synced, &a->lock);
            continue;
        }
        a->syncing = true;
        target = a->seq_submitted;
        fd = dup(a->wal_fd); /* a roll may close wal_fd meanwhile */
        pthread_mutex_unlock(&a->lock);
        rc = fd >= 0 && fdatasync(fd) == 0 ? ML_OK : ML_ERR;
        if (fd >= 0)
            close(fd);
        pthread_mutex_lock(&a->lock);
        a->syncing = false;
        a->synced_ms = ml_now_ms();
        if (target > a->seq_synced)
            a->seq_synced = target; /* on failure too: logged, not retried forever */
        if (rc != ML_OK)
            ml_log_error("audit: fdatasync of the audit log failed: %s", strerror(errno));
        pthread_cond_broadcast(&a->synced);
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return ML_ERR;
        p += w;
        n -= (size_t)w;
    }
    return ML_OK;
}

/* Appends one framed record (header and payload) with one write(2); on failure the segment
 * is cut back, so it only ever holds whole records. ML_OK / ML_ERR. */
int audit_log_append(audit *a, ml_buf *frame)
{
    int rc = ML_ERR;
    uint64_t seq = 0;
    int64_t now = ml_now_ms();

    pthread_mutex_lock(&a->lock);
    if (a->wend.off + frame->len > (uint64_t)a->cfg.segment_bytes && a->wend.off > AUDIT_WAL_MAGIC_LEN &&
        roll(a) != ML_OK)
        ml_log_error("audit: cannot start a new segment next to %s: %s", a->base, strerror(errno));
    if (write_all(a->wal_fd, frame->data, frame->len) != ML_OK) {
        int e = errno;
        if (ftruncate(a->wal_fd, (off_t)a->wend.off) != 0)
            ml_log_error("audit: cannot cut the audit log back after a failed append: %s", strerror(errno));
        a->refused_ms = now;
        errno = e;
    } else {
        if (a->seq_submitted == a->seq_done)
            a->oldest_ms = now;
        a->wend.off += frame->len;
        a->wal_bytes += (int64_t)frame->len;
        seq = ++a->seq_submitted;
        if (seq - a->seq_done == 1 || seq - a->seq_done == (uint64_t)a->cfg.batch_rows)
            pthread_cond_signal(&a->work);
        if (a->fsync_mode == AUDIT_FSYNC_ALWAYS ||
            (a->fsync_mode == AUDIT_FSYNC_BATCH && !a->syncing && now - a->synced_ms >= BATCH_SYNC_MS))
            audit_log_sync(a, seq);
        rc = ML_OK;
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}
