/* audit-int.h — what the audit log's files share among themselves (audit.h is the API).
 *
 * The rooms, top down:
 *   audit.c         the API: start, submit, flush, stop; metrics and health
 *   audit_http.c    GET /invocations/{id}, GET /functions/{fn}/invocations
 *   audit_writer.c  the writer thread: when to write, replay or spill
 *   audit_spill.c   the spill file: append, read, replay
 *   audit_upsert.c  batches into Postgres, one upsert each
 *   audit_queue.c   the bounded in-memory queue
 *   audit_encode.c  a record as one JSON line */
#ifndef LE_AUDIT_INT_H
#define LE_AUDIT_INT_H

#include <pthread.h>
#include <time.h>

#include "audit.h"

typedef struct audit_item {
    struct audit_item *next;
    uint64_t seq;      /* submission order; 0 for rows read back from the spill file */
    int64_t at_ms;     /* monotonic enqueue time */
    size_t len;
    char *line;        /* the encoded record (malloc'd) */
} audit_item;

/* A run of items taken off the queue, oldest first. */
typedef struct item_list {
    audit_item *head, *tail;
    size_t n, bytes;
} item_list;

struct audit {
    audit_config cfg;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t work;   /* the writer: rows, a flush request, stop */
    pthread_cond_t space;  /* submitters waiting for room */
    pthread_cond_t done;   /* audit_flush waiters */
    item_list q;           /* guarded by lock */
    size_t inflight;       /* rows the writer took off q and has not settled; guarded by lock */
    size_t trim_peak;      /* most bytes queued since the last malloc_trim; guarded by lock */
    uint64_t seq_submitted, seq_done, spilled_max_seq;
    bool stopping, flush_wanted, pg_down;
    int64_t spill_rows, spill_bytes; /* guarded by lock (written by the writer only) */
    int64_t dropped_logged_ms;
    /* writer thread only */
    int spill_fd;
    pg_conn *db;
    int64_t retry_at_ms, retry_ms;
    /* metrics */
    metric *m_backlog, *m_spill_bytes, *m_written, *m_errors;
};

static inline void audit_count_error(audit *a, const char *kind, double n)
{
    const char *labels[] = { kind };

    metric_add(a->m_errors, labels, n);
}

/* audit_encode.c */
size_t audit_utf8_len(const unsigned char *s, size_t n);
bool audit_status_valid(const char *s);

/* audit_queue.c: the caller holds a->lock where a function takes it unlocked */
void audit_list_push(item_list *l, audit_item *it);
void audit_list_free(item_list *l);
void audit_queue_take(audit *a, size_t max_rows, item_list *out);
void audit_queue_return(audit *a, item_list *l);
void audit_list_settle(audit *a, item_list *l);
bool audit_queue_full(const audit *a, size_t len);
bool audit_queue_over_hold(const audit *a);

/* audit_upsert.c (writer thread only) */
int audit_write_settle(audit *a, char *const *lines, const size_t *lens, size_t n);
int audit_write_list(audit *a, const item_list *l);

/* audit_spill.c (writer thread only, but audit_spill_open at start) */
int audit_spill_append(audit *a, const item_list *l);
int audit_spill_replay(audit *a);
int audit_spill_excess(audit *a);
int audit_spill_open(audit *a, char *err, size_t errlen);

/* audit_writer.c */
void audit_abs_deadline(struct timespec *ts, int64_t in_ms);
void *audit_writer_main(void *arg);

#endif
