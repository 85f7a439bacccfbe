/* audit_writer.c — the writer thread: reads the write-ahead log from the checkpoint in
 * order, upserts a batch, then moves the checkpoint past it (a crash in between replays the
 * batch, which the upsert makes harmless). While Postgres is down the rows wait on disk. */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "audit-int.h"
#include "log.h"
#include "prio.h"

#define STOP_BUDGET_MS 5000      /* audit_stop's time for Postgres; the rest waits in the log */

void audit_abs_deadline(struct timespec *ts, int64_t in_ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += in_ms / 1000;
    ts->tv_nsec += (in_ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

static bool sync_due(const audit *a, int64_t now)
{
    return a->fsync_mode == AUDIT_FSYNC_BATCH && a->seq_synced < a->seq_submitted && !a->syncing &&
           now - a->synced_ms >= BATCH_SYNC_MS;
}

/* Waits (lock held) until there is something to do; false when stopping. */
static bool wait_work(audit *a)
{
    for (;;) {
        int64_t now = ml_now_ms(), wait_ms = 1000, due;
        uint64_t pending = a->seq_submitted - a->seq_done;
        struct timespec ts;

        if (a->stopping)
            return false;
        if (sync_due(a, now))
            return true;
        if (a->fsync_mode == AUDIT_FSYNC_BATCH && a->seq_synced < a->seq_submitted)
            wait_ms = BATCH_SYNC_MS;
        if (pending == 0) {
            /* nothing to write */
        } else if (a->pg_down && now < a->retry_at_ms) {
            wait_ms = a->retry_at_ms - now < wait_ms ? a->retry_at_ms - now : wait_ms;
        } else if (pending >= (uint64_t)a->cfg.batch_rows || a->flush_wanted) {
            return true;
        } else if (now >= (due = a->oldest_ms + a->cfg.flush_ms)) {
            return true;
        } else {
            wait_ms = due - now < wait_ms ? due - now : wait_ms;
        }
        audit_abs_deadline(&ts, wait_ms);
        pthread_cond_timedwait(&a->work, &a->lock, &ts);
    }
}

/* Reads up to batch_rows records from the cursor into arena; *pos is where the next read
 * starts, *all whether everything appended up to wend was read. Skips torn or corrupt ends
 * of closed segments (logged, counted). ML_ERR on a read error. */
static int read_batch(audit *a, audit_pos wend, ml_buf *arena, size_t *starts, size_t *lens, size_t *n,
                      audit_pos *pos, bool *all)
{
    char err[256];

    *pos = a->cursor, *n = 0, *all = false;
    for (;;) {
        size_t got = 0;
        int rc;

        if (a->read_fd < 0 && (a->read_fd = audit_log_segment_open(a, pos->seg, NULL)) < 0) {
            if (pos->seg >= wend.seg)
                break;
            *pos = (audit_pos){ pos->seg + 1, AUDIT_WAL_MAGIC_LEN };
            continue;
        }
        rc = audit_wal_read(a->read_fd, &pos->off, pos->seg == wend.seg ? wend.off : UINT64_MAX,
                            (size_t)a->cfg.batch_rows - *n, arena, starts + *n, lens + *n, &got, err, sizeof(err));
        *n += got;
        if (rc == ML_ERR) {
            ml_log_error("audit: %s", err);
            return ML_ERR;
        }
        if (*n == (size_t)a->cfg.batch_rows)
            return ML_OK;
        if (pos->seg >= wend.seg)
            break;
        if (rc != AUDIT_WAL_OK) {
            ml_log_error("audit: segment %016" PRIx64 " of %s ends in a %s record at byte %" PRIu64 "; skipped",
                         pos->seg, a->base, rc == AUDIT_WAL_SHORT ? "torn" : "corrupt", pos->off);
            audit_count_error(a, "corrupt", 1);
        }
        close(a->read_fd);
        a->read_fd = -1;
        *pos = (audit_pos){ pos->seg + 1, AUDIT_WAL_MAGIC_LEN };
    }
    *all = true;
    return ML_OK;
}

/* One batch from the log into Postgres, then the checkpoint. ML_ERR when nothing moved. */
static int write_batch(audit *a)
{
    size_t cap = (size_t)a->cfg.batch_rows, n = 0;
    size_t *starts = calloc(cap, sizeof(size_t)), *lens = calloc(cap, sizeof(size_t));
    char **lines = calloc(cap, sizeof(char *));
    ml_buf arena;
    audit_pos wend, pos;
    uint64_t sub;
    bool all = false;
    int rc = ML_ERR;

    ml_buf_init(&arena, 0);
    pthread_mutex_lock(&a->lock);
    wend = a->wend, sub = a->seq_submitted;
    pthread_mutex_unlock(&a->lock);
    if (!starts || !lens || !lines || read_batch(a, wend, &arena, starts, lens, &n, &pos, &all) != ML_OK)
        goto out;
    for (size_t i = 0; i < n; i++)
        lines[i] = arena.data + starts[i];
    if (n && audit_write_settle(a, lines, lens, n) != ML_OK)
        goto out;
    a->cursor = pos;
    audit_log_advance(a);
    pthread_mutex_lock(&a->lock);
    a->seq_done = all ? sub : a->seq_done + n;
    if (a->seq_done < a->seq_submitted)
        a->oldest_ms = ml_now_ms(); /* the rest has waited at least this long */
    else
        a->flush_wanted = false;
    pthread_cond_broadcast(&a->done);
    pthread_mutex_unlock(&a->lock);
    rc = ML_OK;
out:
    if (rc != ML_OK && a->read_fd >= 0) { /* read again from the cursor next time */
        close(a->read_fd);
        a->read_fd = -1;
    }
    ml_buf_free(&arena);
    free(starts);
    free(lens);
    free(lines);
    return rc;
}

static void writer_step(audit *a)
{
    int64_t now = ml_now_ms();
    bool write;

    pthread_mutex_lock(&a->lock);
    if (sync_due(a, now))
        audit_log_sync(a, a->seq_submitted);
    write = a->seq_submitted > a->seq_done && !(a->pg_down && now < a->retry_at_ms);
    pthread_mutex_unlock(&a->lock);
    if (write)
        write_batch(a);
}

/* At stop: Postgres for a few seconds; what is left stays in the log for the next start. */
static void writer_drain(audit *a)
{
    int64_t deadline = ml_now_ms() + STOP_BUDGET_MS;
    uint64_t left;

    a->retry_at_ms = 0;
    for (;;) {
        pthread_mutex_lock(&a->lock);
        left = a->seq_submitted - a->seq_done;
        pthread_mutex_unlock(&a->lock);
        if (left == 0 || ml_now_ms() >= deadline || write_batch(a) != ML_OK)
            break;
    }
    if (left)
        ml_log_warn("audit: %" PRIu64 " rows stay in %s.*.wal for the next start", left, a->base);
}

void *audit_writer_main(void *arg)
{
    audit *a = arg;

    ml_log_set_request_id(NULL);
    ex_thread_background("audit-writer"); /* nobody waits on it: rows wait in the log */
    for (;;) {
        bool go;

        pthread_mutex_lock(&a->lock);
        go = wait_work(a);
        pthread_mutex_unlock(&a->lock);
        if (!go)
            break;
        writer_step(a);
    }
    writer_drain(a);
    return NULL;
}
