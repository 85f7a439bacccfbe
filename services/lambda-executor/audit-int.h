/* audit-int.h — what the audit log's files share among themselves (audit.h is the API).
 *
 * The rooms, top down:
 *   audit.c         the API: start, submit, flush, stop; metrics and health
 *   audit_http.c    GET /invocations/{id}, GET /functions/{fn}/invocations
 *   audit_writer.c  the writer thread: reads the log in order, writes it, advances the checkpoint
 *   audit_log.c     the log's files: lock, segments, append (and fsync), checkpoint, clean-up
 *   audit_upsert.c  batches into Postgres, one upsert each
 *   audit_wal.c     the record format: framing, CRC, reader
 *   audit_legacy.c  the spill file of executors before the log, moved into it at start
 *   audit_encode.c  a record as one JSON object */
#ifndef LE_AUDIT_INT_H
#define LE_AUDIT_INT_H

#include <pthread.h>
#include <time.h>

#include "audit.h"

#define AUDIT_SEGMENT_BYTES (64u << 20) /* default size at which a segment is closed */
#define BATCH_SYNC_MS 10                /* fsync=batch: the longest between fdatasyncs */

typedef enum { AUDIT_FSYNC_OFF = 0, AUDIT_FSYNC_BATCH, AUDIT_FSYNC_ALWAYS } audit_fsync_mode;

/* A position in the log: segment number and byte offset in it. */
typedef struct audit_pos {
    uint64_t seg, off;
} audit_pos;

struct audit {
    audit_config cfg;
    audit_fsync_mode fsync_mode;
    const char *base;      /* cfg.spill_path (the files' common prefix) */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t work;   /* the writer: rows, a flush request, stop */
    pthread_cond_t done;   /* audit_flush waiters */
    pthread_cond_t synced; /* submitters waiting for a group fsync */
    /* the append side, guarded by lock */
    int lock_fd;           /* <base>.lock, flock'd for the process's life */
    int wal_fd;            /* the segment appended to */
    audit_pos wend;        /* its number and size: everything before is whole records */
    uint64_t first_seg;    /* the oldest segment still on disk */
    int64_t wal_bytes;     /* bytes of every segment on disk */
    uint64_t seq_submitted, seq_done; /* rows appended (with those found at start), rows written */
    uint64_t seq_synced;   /* rows covered by the last fdatasync */
    bool syncing;          /* a submitter is running the group fdatasync */
    int64_t synced_ms, oldest_ms, refused_ms;
    bool stopping, flush_wanted, pg_down;
    int64_t dropped_logged_ms;
    /* writer thread only */
    audit_pos cursor;      /* the next record to write; persisted in <base>.ckpt after commits */
    int read_fd;           /* segment cursor.seg, open for reading (-1: not yet) */
    int ckpt_fd;
    pg_conn *db;
    int64_t retry_at_ms, retry_ms;
    /* metrics */
    metric *m_backlog, *m_wal_bytes, *m_written, *m_errors;
};

static inline void audit_count_error(audit *a, const char *kind, double n)
{
    const char *labels[] = { kind };

    metric_add(a->m_errors, labels, n);
}

/* audit_encode.c */
size_t audit_utf8_len(const unsigned char *s, size_t n);
bool audit_status_valid(const char *s);

/* audit_upsert.c (writer thread only) */
int audit_write_settle(audit *a, char *const *lines, const size_t *lens, size_t n);

/* audit_log.c */
int audit_log_open(audit *a, char *err, size_t errlen);
void audit_log_close(audit *a);
int audit_log_append(audit *a, ml_buf *frame);
int audit_log_segment_path(const audit *a, uint64_t seg, char *out, size_t size);
int audit_log_checkpoint(audit *a);
int audit_log_advance(audit *a);
void audit_log_sync(audit *a, uint64_t seq);
int audit_log_segment_open(const audit *a, uint64_t seg, int64_t *size);

/* audit_legacy.c: a pre-WAL spill file moved into the log at start (before the writer runs) */
int audit_legacy_import(audit *a, char *err, size_t errlen);

/* audit_writer.c */
void audit_abs_deadline(struct timespec *ts, int64_t in_ms);
void *audit_writer_main(void *arg);

#endif
