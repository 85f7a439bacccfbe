/* audit_spill.c — the spill file: JSON lines appended (fsync'd, whole lines only) while
 * Postgres is down, replayed before anything newer once it is back. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit-int.h"
#include "log.h"

/* longest spill line read back (larger = corrupt): a record with a 6 MiB payload and a
 * 6 MiB result in base64 plus a long error message stays well below */
#define LINE_MAX_BYTES (20u << 20)
#define SPILL_CHUNK (1u << 20)     /* spill appends are written in pieces of about this */

/* Feeds complete lines of buf[0..len) to fn; returns bytes consumed (up to the last '\n'). */
static int feed_lines(const char *buf, size_t len, size_t *used, ml_buf *partial, bool *skipping,
                      audit_line_fn fn, void *ud)
{
    size_t start = 0;

    for (const char *nl; start < len && (nl = memchr(buf + start, '\n', len - start)) != NULL;) {
        size_t n = (size_t)(nl - (buf + start));
        int rc = ML_OK;

        if (*skipping || ml_buf_append(partial, buf + start, n) != ML_OK) {
            ml_log_warn("audit: skipping a spill line longer than %u bytes (corrupt)", LINE_MAX_BYTES);
        } else if (partial->len > 0) {
            rc = fn(partial->data, partial->len, ud);
        }
        ml_buf_reset(partial);
        *skipping = false;
        start += n + 1;
        if (rc != ML_OK)
            return ML_ERR;
    }
    if (!*skipping && ml_buf_append(partial, buf + start, len - start) != ML_OK) {
        ml_buf_reset(partial);
        *skipping = true; /* drop bytes until the next newline */
    }
    *used = len;
    return ML_OK;
}

int audit_spill_read(const char *path, audit_line_fn fn, void *ud, size_t *torn_bytes, char *err,
                     size_t errlen)
{
    char chunk[65536];
    ml_buf partial;
    bool skipping = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = ML_OK;
    size_t used;
    ssize_t n;

    if (torn_bytes)
        *torn_bytes = 0;
    if (fd < 0) {
        if (errno == ENOENT)
            return ML_OK;
        ml_snprintf_trunc(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return ML_ERR;
    }
    ml_buf_init(&partial, LINE_MAX_BYTES);
    while (rc == ML_OK && (n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ml_snprintf_trunc(err, errlen, "cannot read %s: %s", path, strerror(errno));
            rc = ML_ERR;
        } else if (feed_lines(chunk, (size_t)n, &used, &partial, &skipping, fn, ud) != ML_OK) {
            ml_snprintf_trunc(err, errlen, "stopped reading %s", path);
            rc = ML_ERR;
        }
    }
    if (torn_bytes && rc == ML_OK)
        *torn_bytes = partial.len;
    ml_buf_free(&partial);
    close(fd);
    return rc;
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

/* Writes the items as lines in chunks of about SPILL_CHUNK bytes. */
static int spill_write(audit *a, const item_list *l)
{
    ml_buf b;
    int rc = ML_OK;

    ml_buf_init(&b, 0);
    for (audit_item *it = l->head; it && rc == ML_OK; it = it->next) {
        if (ml_buf_append(&b, it->line, it->len) != ML_OK || ml_buf_append(&b, "\n", 1) != ML_OK) {
            errno = ENOMEM;
            rc = ML_ERR;
        } else if (b.len >= SPILL_CHUNK || !it->next) {
            rc = write_all(a->spill_fd, b.data, b.len);
            ml_buf_reset(&b);
        }
    }
    ml_buf_free(&b);
    return rc;
}

/* Appends items as lines and fsyncs; on failure the file is cut back to its old size, so it
 * only ever holds whole lines. Writer thread only. */
int audit_spill_append(audit *a, const item_list *l)
{
    int64_t size;

    pthread_mutex_lock(&a->lock);
    size = a->spill_bytes;
    pthread_mutex_unlock(&a->lock);
    if (size + (int64_t)l->bytes + (int64_t)l->n > a->cfg.spill_max_mb * 1024 * 1024) {
        ml_log_error("audit: spill file %s is full (%lld MiB); %zu rows stay in memory", a->cfg.spill_path,
                     (long long)a->cfg.spill_max_mb, l->n);
        return ML_ERR;
    }
    if (spill_write(a, l) != ML_OK || fsync(a->spill_fd) != 0) {
        ml_log_error("audit: cannot write the spill file %s: %s", a->cfg.spill_path, strerror(errno));
        if (ftruncate(a->spill_fd, size) != 0)
            ml_log_error("audit: cannot cut %s back to %lld bytes: %s", a->cfg.spill_path, (long long)size,
                         strerror(errno));
        return ML_ERR;
    }
    pthread_mutex_lock(&a->lock);
    a->spill_bytes += (int64_t)(l->bytes + l->n);
    a->spill_rows += (int64_t)l->n;
    for (audit_item *it = l->head; it; it = it->next)
        a->spilled_max_seq = it->seq > a->spilled_max_seq ? it->seq : a->spilled_max_seq;
    pthread_mutex_unlock(&a->lock);
    return ML_OK;
}

typedef struct replay {
    audit *a;
    char **lines;
    size_t *lens;
    size_t n;
} replay;

static void replay_clear(replay *rp)
{
    for (size_t i = 0; i < rp->n; i++)
        free(rp->lines[i]);
    rp->n = 0;
}

static int replay_line(const char *line, size_t len, void *ud)
{
    replay *rp = ud;
    int rc;

    if (!(rp->lines[rp->n] = strndup(line, len)))
        return ML_ERR;
    rp->lens[rp->n++] = len;
    if (rp->n < (size_t)rp->a->cfg.batch_rows)
        return ML_OK;
    rc = audit_write_settle(rp->a, rp->lines, rp->lens, rp->n);
    replay_clear(rp);
    /* rows arriving meanwhile are newer than the file: appending keeps the order */
    audit_spill_excess(rp->a);
    return rc;
}

/* Writes the whole spill file to Postgres, then empties it. Writer thread only. */
int audit_spill_replay(audit *a)
{
    replay rp = { a, calloc((size_t)a->cfg.batch_rows, sizeof(char *)),
                  calloc((size_t)a->cfg.batch_rows, sizeof(size_t)), 0 };
    char err[256];
    int64_t rows;
    int rc = ML_ERR;

    pthread_mutex_lock(&a->lock);
    rows = a->spill_rows;
    pthread_mutex_unlock(&a->lock);
    if (rp.lines && rp.lens &&
        audit_spill_read(a->cfg.spill_path, replay_line, &rp, NULL, err, sizeof(err)) == ML_OK &&
        (rp.n == 0 || audit_write_settle(a, rp.lines, rp.lens, rp.n) == ML_OK)) {
        if (ftruncate(a->spill_fd, 0) != 0 || fsync(a->spill_fd) != 0) {
            ml_log_error("audit: cannot empty %s: %s", a->cfg.spill_path, strerror(errno));
        } else {
            pthread_mutex_lock(&a->lock);
            rows = a->spill_rows;
            a->spill_rows = a->spill_bytes = 0;
            a->seq_done = a->spilled_max_seq > a->seq_done ? a->spilled_max_seq : a->seq_done;
            pthread_cond_broadcast(&a->done);
            pthread_mutex_unlock(&a->lock);
            ml_log_info("audit: replayed %lld rows from %s", (long long)rows, a->cfg.spill_path);
            rc = ML_OK;
        }
    }
    replay_clear(&rp);
    free(rp.lines);
    free(rp.lens);
    return rc;
}

/* While Postgres is down: moves the oldest rows to the spill file until memory holds half
 * the hold threshold. Writer thread only. */
int audit_spill_excess(audit *a)
{
    item_list l;
    bool over;

    for (;;) {
        pthread_mutex_lock(&a->lock);
        over = audit_queue_over_hold(a);
        if (over) /* down to half the hold (by rows), or half the queue when over by bytes */
            audit_queue_take(a, a->q.n > (size_t)a->cfg.hold_rows / 2 ? a->q.n - (size_t)a->cfg.hold_rows / 2
                                                                 : a->q.n / 2 + 1, &l);
        pthread_mutex_unlock(&a->lock);
        if (!over)
            return ML_OK;
        if (audit_spill_append(a, &l) != ML_OK) {
            audit_queue_return(a, &l);
            return ML_ERR;
        }
        audit_list_settle(a, &l);
    }
}

/* Counts the spill file's rows and cuts off a torn last line (so appends start clean). */
static int count_line(const char *line, size_t len, void *ud)
{
    ML_UNUSED(line);
    ML_UNUSED(len);
    (*(int64_t *)ud)++;
    return ML_OK;
}

int audit_spill_open(audit *a, char *err, size_t errlen)
{
    size_t torn = 0;
    struct stat st;

    a->spill_fd = open(a->cfg.spill_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (a->spill_fd < 0) {
        ml_snprintf_trunc(err, errlen, "cannot open the audit spill file %s: %s", a->cfg.spill_path, strerror(errno));
        return ML_ERR;
    }
    if (flock(a->spill_fd, LOCK_EX | LOCK_NB) != 0) {
        ml_snprintf_trunc(err, errlen, "the audit spill file %s is in use by another process (%s); give each "
                          "executor its own MINILAMBDA_AUDIT_SPILL_PATH", a->cfg.spill_path, strerror(errno));
        return ML_ERR;
    }
    if (audit_spill_read(a->cfg.spill_path, count_line, &a->spill_rows, &torn, err, errlen) != ML_OK ||
        fstat(a->spill_fd, &st) != 0)
        return ML_ERR;
    a->spill_bytes = (int64_t)st.st_size - (int64_t)torn;
    if (torn && ftruncate(a->spill_fd, a->spill_bytes) != 0) {
        ml_snprintf_trunc(err, errlen, "cannot cut the torn end off %s: %s", a->cfg.spill_path, strerror(errno));
        return ML_ERR;
    }
    if (torn)
        ml_log_warn("audit: dropped a torn last line (%zu bytes) of %s", torn, a->cfg.spill_path);
    if (a->spill_rows)
        ml_log_info("audit: %lld rows in %s from an earlier run will be replayed", (long long)a->spill_rows,
                    a->cfg.spill_path);
    return ML_OK;
}
