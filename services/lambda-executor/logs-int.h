/* logs-int.h — what the function-log modules share (docs/logs.md §1): a queued line
 * (logq.c), the COPY encoding and partitions (logs_store.c), the retention pass
 * (logs_maint.c). Not for other modules: they use logq.h and logs.h. */
#ifndef EX_LOGS_INT_H
#define EX_LOGS_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "metrics.h"
#include "pg.h"

/* A queued line: one allocation (logq_entry_new), the strings in data. */
typedef struct logq_entry {
    struct logq_entry *next;
    int64_t ts_us;
    int stream;
    size_t size;                /* bytes charged to the queue */
    size_t len;                 /* message length (any bytes) */
    const char *level, *request_id, *ns, *function, *function_id, *version, *message;
    char data[];
} logq_entry;

/* Appends s (n bytes, any content) to b as COPY text: invalid UTF-8 and NUL become U+FFFD,
 * backslash, tab, newline and CR are escaped. ML_ERR when b is full. */
int logs_copy_text(ml_buf *b, const char *s, size_t n);

/* Appends s with invalid UTF-8 and NUL replaced by U+FFFD; copy_escape: also escaped for COPY
 * text (as logs_copy_text). ML_ERR when b is full. */
int logs_text_append(ml_buf *b, const char *s, size_t n, bool copy_escape);

/* Pushes the n entries to Loki (base_url + /loki/api/v1/push, JSON; labels service, function,
 * namespace, level). ML_OK on a 2xx answer, else ML_ERR with err set. */
struct httpc;
int logs_loki_push(struct httpc *h, const char *base_url, logq_entry *const *lines, size_t n,
                   char *err, size_t errlen);

/* Appends one entry as a COPY text row of LOGS_COPY_COLUMNS. ML_ERR when b is full. */
int logs_copy_row(ml_buf *b, const logq_entry *e);

/* The page and follow queries share their columns and filters: $1 ns, $2 name, $3 lower ts
 * bound µs, $4 until µs, $5 request_id, $6 streams (smallint[]), $7 q, $11 default retention
 * days. Columns: ts text, stream, level, request_id, version, message, ts µs, id, txid. */
#define LOGS_SELECT_FILTERED                                                                     \
    "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), stream, level,"  \
    " request_id, version, message, (extract(epoch FROM ts) * 1000000)::bigint, id, txid::text"            \
    " FROM function_logs WHERE namespace = $1 AND function = $2"                                 \
    " AND ts >= 'epoch'::timestamptz + $3::bigint * interval '1 microsecond'"                    \
    " AND ($4::bigint IS NULL OR ts < 'epoch'::timestamptz + $4::bigint * interval '1 microsecond')" \
    " AND ($5::uuid IS NULL OR request_id = $5::uuid)"                                           \
    " AND ($6::smallint[] IS NULL OR stream = ANY($6::smallint[]))"                              \
    " AND ($7::text IS NULL OR strpos(message, $7) > 0)"                                         \
    " AND ts >= now() - coalesce((SELECT log_retention_days FROM namespaces WHERE name = $1),"   \
    "  $11::int) * interval '1 day'"

/* ts = now + ms on CLOCK_REALTIME (pthread_cond_timedwait's clock). */
struct timespec;
void logs_deadline(struct timespec *ts, int64_t ms);

#define LOGS_COPY_COLUMNS "ts, namespace, function, function_id, version, request_id, stream, level, message"

/* Writes the n entries in one transaction with COPY; ML_OK, or ML_ERR with err set (the
 * transaction rolled back). c must be idle (no transaction open). */
int logs_store_batch(PGconn *c, logq_entry *const *lines, size_t n, char *err, size_t errlen);

/* Makes sure the partitions of today (UTC) and the next two days exist. ML_OK/ML_ERR (err). */
int logs_store_partitions(PGconn *c, char *err, size_t errlen);

/* One retention pass (docs/logs.md §1): creates the partitions ahead, drops the day
 * partitions older than the longest retention of any namespace (default_days for those with
 * none), deletes older rows of namespaces with a shorter retention (and of the default
 * partition) in batches of at most batch rows. Only when it holds the advisory lock (else
 * ML_OK with nothing done). *dropped (may be NULL) gets the partitions dropped, *deleted the
 * rows deleted. ML_ERR with pg_error(db) on a database error. */
int logs_maint_run(pg_conn *db, int64_t default_days, int64_t batch, int64_t *dropped,
                   int64_t *deleted);

struct logs_query;
struct cJSON;
/* One page of ns/name's lines for lq (docs/logs.md §1 "Read"), rows older than the namespace's
 * retention (def_days without its own) left out: {"function","lines","next_cursor"}; the
 * caller frees it (cJSON_Delete). NULL with pg_error(db) on a database error. */
struct cJSON *logs_read_page(pg_conn *db, const char *ns, const char *name,
                             const struct logs_query *lq, int64_t def_days);

/* A row of the page/follow queries (ts text, stream, level, request_id, version, message) as
 * a line's JSON; the caller frees it. */
struct cJSON *logs_row_json(const PGresult *r, int row);

/* Follow (logs_follow.c). admit takes one of the MINILAMBDA_LOG_MAX_FOLLOWERS places (false:
 * none left, or no follow thread); add hands the stream to the follow thread with the place
 * admit took (which then owns both; ML_ERR: the caller closes and releases). cursor: the
 * Last-Event-ID / cursor given ("f<txid>.<id>"), or NULL to start at since. */
bool logs_follow_admit(void);
void logs_follow_release(void);
struct httpd_stream;
int logs_follow_add(struct httpd_stream *s, const char *ns, const char *name,
                    const struct logs_query *lq, const char *cursor);
/* A follow cursor "f<txid>.<id>"; ML_ERR when s is not one. */
int logs_follow_parse_cursor(const char *s, char txid[24], int64_t *id);

#endif
