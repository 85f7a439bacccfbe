/* audit_writer.c — the writer thread: waits for work, writes the spill file first (it is
 * older), then batches from memory; spills while Postgres is down; drains at stop. */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "audit-int.h"
#include "log.h"

#define STOP_BUDGET_MS 5000      /* audit_stop's time for Postgres before spilling the rest */
#define TRIM_AFTER_BYTES (1u << 20) /* a drained backlog this large is handed back to the OS */

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

/* Waits (lock held) until there is something to do; false when stopping. */
static bool wait_work(audit *a)
{
    for (;;) {
        int64_t now = ml_now_ms(), wait_ms = 1000;
        struct timespec ts;

        if (a->stopping)
            return false;
        if (a->pg_down && now < a->retry_at_ms) {
            if (audit_queue_over_hold(a))
                return true;
            wait_ms = a->retry_at_ms - now;
        } else if (a->spill_rows > 0 || a->q.n >= (size_t)a->cfg.batch_rows || (a->flush_wanted && a->q.n)) {
            return true;
        } else if (a->q.head) {
            int64_t due = a->q.head->at_ms + a->cfg.flush_ms;
            if (now >= due)
                return true;
            wait_ms = due - now;
        }
        audit_abs_deadline(&ts, wait_ms);
        pthread_cond_timedwait(&a->work, &a->lock, &ts);
    }
}

/* One round: the spill file first (it is older), then a batch from memory. */
static void writer_step(audit *a)
{
    item_list l;
    uint64_t last = 0;
    bool spill, down, trim;

    pthread_mutex_lock(&a->lock);
    spill = a->spill_rows > 0;
    down = a->pg_down && ml_now_ms() < a->retry_at_ms;
    pthread_mutex_unlock(&a->lock);
    if (!down && spill)
        spill = audit_spill_replay(a) != ML_OK;
    if (down || spill) {
        audit_spill_excess(a);
        return;
    }
    pthread_mutex_lock(&a->lock);
    audit_queue_take(a, (size_t)a->cfg.batch_rows, &l);
    if (!a->q.head)
        a->flush_wanted = false;
    pthread_mutex_unlock(&a->lock);
    if (l.tail)
        last = l.tail->seq;
    if (l.n && audit_write_list(a, &l) != ML_OK) {
        audit_queue_return(a, &l);
        audit_spill_excess(a);
        return;
    }
    audit_list_settle(a, &l);
    pthread_mutex_lock(&a->lock);
    if (last > a->seq_done)
        a->seq_done = last;
    pthread_cond_broadcast(&a->done);
    trim = !a->q.head && a->inflight == 0 && a->trim_peak >= TRIM_AFTER_BYTES;
    if (trim)
        a->trim_peak = 0;
    pthread_mutex_unlock(&a->lock);
    /* A burst queued faster than Postgres took it has drained: the allocator keeps what the
     * rows held (spread over its arenas) unless asked to give it back. */
    if (trim)
        malloc_trim(0);
}

/* At stop: Postgres for a few seconds, then everything left to the spill file. */
static void writer_drain(audit *a)
{
    int64_t deadline = ml_now_ms() + STOP_BUDGET_MS;
    item_list l;
    size_t left;

    a->retry_at_ms = 0;
    while (ml_now_ms() < deadline) {
        pthread_mutex_lock(&a->lock);
        left = a->q.n + (size_t)a->spill_rows;
        pthread_mutex_unlock(&a->lock);
        if (left == 0)
            break;
        writer_step(a);
        if (a->pg_down)
            break;
    }
    pthread_mutex_lock(&a->lock);
    audit_queue_take(a, SIZE_MAX, &l);
    pthread_mutex_unlock(&a->lock);
    if (l.n && audit_spill_append(a, &l) != ML_OK)
        ml_log_error("audit: %zu rows could be written neither to Postgres nor to %s and are lost", l.n,
                     a->cfg.spill_path);
    else if (l.n)
        ml_log_warn("audit: %zu rows saved to %s for the next start", l.n, a->cfg.spill_path);
    audit_list_settle(a, &l);
}

void *audit_writer_main(void *arg)
{
    audit *a = arg;

    ml_log_set_request_id(NULL);
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
