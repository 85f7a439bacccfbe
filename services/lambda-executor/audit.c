/* audit.c — invocation audit log: non-blocking submit, batching writer thread, spill file,
 * and the GET endpoints that read it (see audit.h and docs/executor-registry.md). */
#include "audit.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "log.h"

#define RETRY_MIN_MS 500         /* first wait before trying Postgres again after a failure */
#define RETRY_MAX_MS 5000
#define BATCH_BYTES_MAX (8u << 20) /* a batch stops growing past this (rows can be 8 MiB) */
/* longest spill line read back (larger = corrupt): a record with a 6 MiB payload and a
 * 6 MiB result in base64 plus a long error message stays well below */
#define LINE_MAX_BYTES (20u << 20)
#define SPILL_CHUNK (1u << 20)     /* spill appends are written in pieces of about this */
#define SUBMIT_WAIT_MS 1000      /* longest audit_submit waits for room */
#define STOP_BUDGET_MS 5000      /* audit_stop's time for Postgres before spilling the rest */
#define TRIM_AFTER_BYTES (1u << 20) /* a drained backlog this large is handed back to the OS */
#define READ_FLUSH_MS 1000       /* GET handlers wait this long for their rows to be written */
#define PAGE_DEFAULT 20
#define PAGE_MAX 100

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

static const char *const status_names[] = { "queued", "running", "succeeded", "failed", "timed_out",
                                            "dead_lettered" };
static const char *const trigger_names[] = { "http_sync", "http_async", "cron", "dlq_replay" };

/* ------------------------------------------------------------------------------------ */
/* Encoding                                                                             */

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return len;
}

/* A JSON string of at most max_chars characters of s. Invalid UTF-8 and NUL (which Postgres
 * text cannot hold) become U+FFFD, so any function output can be stored. */
static int put_str(ml_buf *b, const char *str, size_t n, size_t max_chars)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, chars = 0;
    int rc = ml_buf_append(b, "\"", 1);

    while (rc == ML_OK && i < n && chars < max_chars) {
        unsigned char c = s[i];
        size_t run = i, len;
        char esc[8];

        while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\' &&
               chars < max_chars)
            run++, chars++;
        if (run > i) {
            rc = ml_buf_append(b, s + i, run - i);
            i = run;
            continue;
        }
        chars++;
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            rc = ml_buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20 && c != 0) {
            ml_snprintf(esc, sizeof(esc), "\\u%04x", c);
            rc = ml_buf_append(b, esc, 6);
            i++;
        } else if (c >= 0x80 && (len = utf8_len(s + i, n - i)) > 0) {
            rc = ml_buf_append(b, s + i, len);
            i += len;
        } else {
            rc = ml_buf_append(b, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    return rc == ML_OK ? ml_buf_append(b, "\"", 1) : ML_ERR;
}

static int put_key(ml_buf *b, const char *key)
{
    return ml_buf_printf(b, "%s\"%s\":", b->len > 1 ? "," : "", key);
}

static int put_int(ml_buf *b, const char *key, int64_t v)
{
    return put_key(b, key) == ML_OK ? ml_buf_printf(b, "%lld", (long long)v) : ML_ERR;
}

static int put_text(ml_buf *b, const char *key, const char *v, size_t max_chars)
{
    return put_key(b, key) == ML_OK ? put_str(b, v, strlen(v), max_chars) : ML_ERR;
}

static int put_b64(ml_buf *b, const char *key, const void *data, size_t len)
{
    size_t size = CRYPTO_BASE64_ENC_SIZE(len);
    char *enc = malloc(size);
    int rc = ML_ERR;

    if (enc && crypto_base64_encode(data, len, enc, size) == ML_OK && put_key(b, key) == ML_OK &&
        ml_buf_append(b, "\"", 1) == ML_OK && ml_buf_append(b, enc, size - 1) == ML_OK)
        rc = ml_buf_append(b, "\"", 1);
    free(enc);
    return rc;
}

#define INVALID(...)                                                                           \
    do {                                                                                       \
        ml_snprintf(err, errlen, __VA_ARGS__);                                                 \
        return ML_ERR;                                                                         \
    } while (0)

static int record_check(const audit_record *r, char *err, size_t errlen)
{
    if (ml_uuid_valid(r->id) != ML_OK)
        INVALID("id must be a UUID");
    if (ml_uuid_valid(r->function_id) != ML_OK)
        INVALID("function_id must be a UUID");
    if ((unsigned)r->status >= ML_ARRAY_LEN(status_names) || (unsigned)r->trigger >= ML_ARRAY_LEN(trigger_names))
        INVALID("status or trigger out of range");
    if (r->version < 0 || r->attempts < 0 || r->attempts > 1000000 || r->cold_start < -1 || r->cold_start > 1)
        INVALID("version, attempts or cold_start out of range");
    if (r->payload_size < 0 || r->payload_size > AUDIT_BODY_MAX || r->response_size < -1 ||
        r->response_size > INT32_MAX)
        INVALID("payload_size must be 0..%d and response_size -1..2^31-1", AUDIT_BODY_MAX);
    if ((r->payload && r->payload_len > AUDIT_BODY_MAX) || (r->result && r->result_len > AUDIT_BODY_MAX))
        INVALID("payload and result are stored up to %d bytes", AUDIT_BODY_MAX);
    if (r->duration_ms < -1 || r->duration_ms > INT32_MAX || r->memory_used_mb < -1 ||
        r->memory_used_mb > INT32_MAX)
        INVALID("duration_ms or memory_used_mb out of range");
    if (r->created_ms < 0 || r->started_ms < 0 || r->finished_ms < 0)
        INVALID("times must be >= 0");
    if ((r->replay_of && ml_uuid_valid(r->replay_of) != ML_OK) ||
        (r->schedule_id && ml_uuid_valid(r->schedule_id) != ML_OK))
        INVALID("replay_of and schedule_id must be UUIDs");
    return ML_OK;
}

/* The record as one JSON object; members left out are NULL in the batch statement. Every
 * append's ML_OK (0) / ML_ERR (-1) is OR-ed: the result is ML_ERR if any failed. */
static int record_put(const audit_record *r, ml_buf *b)
{
    int64_t now = ml_wall_ms();
    int64_t started = r->started_ms ? r->started_ms : r->status == AUDIT_RUNNING ? now : 0;
    int64_t finished = r->finished_ms ? r->finished_ms : r->status >= AUDIT_SUCCEEDED ? now : 0;
    int rc = ml_buf_append(b, "{", 1) | put_text(b, "id", r->id, 36) |
             put_text(b, "function_id", r->function_id, 36) |
             put_text(b, "trigger", trigger_names[r->trigger], 16) |
             put_text(b, "status", status_names[r->status], 16) | put_int(b, "attempts", r->attempts) |
             put_int(b, "payload_size", r->payload_size) |
             put_int(b, "created_ms", r->created_ms ? r->created_ms : now);
    const char *tail = r->log_tail;
    size_t tail_len = r->log_tail_len;

    if (tail && tail_len > AUDIT_LOG_TAIL_MAX) {
        tail += tail_len - AUDIT_LOG_TAIL_MAX;
        tail_len = AUDIT_LOG_TAIL_MAX;
    }
    if (r->version > 0)
        rc |= put_int(b, "version", r->version);
    if (r->cold_start >= 0)
        rc |= put_key(b, "cold_start") | ml_buf_append_str(b, r->cold_start ? "true" : "false");
    if (r->request_id)
        rc |= put_text(b, "request_id", r->request_id, 128);
    if (r->response_size >= 0)
        rc |= put_int(b, "response_size", r->response_size);
    if (r->payload)
        rc |= put_b64(b, "payload", r->payload, r->payload_len);
    if (r->payload_sha256[0])
        rc |= put_text(b, "payload_sha256", r->payload_sha256, 64);
    if (r->result)
        rc |= put_b64(b, "result", r->result, r->result_len);
    if (r->error_type)
        rc |= put_text(b, "error_type", r->error_type, 128);
    if (r->error_message)
        rc |= put_text(b, "error_message", r->error_message, 65536);
    if (tail)
        rc |= put_b64(b, "log_tail", tail, tail_len);
    if (r->duration_ms >= 0)
        rc |= put_int(b, "duration_ms", r->duration_ms);
    if (r->memory_used_mb >= 0)
        rc |= put_int(b, "memory_used_mb", r->memory_used_mb);
    if (started)
        rc |= put_int(b, "started_ms", started);
    if (finished)
        rc |= put_int(b, "finished_ms", finished);
    if (r->replay_of)
        rc |= put_text(b, "replay_of", r->replay_of, 36);
    if (r->schedule_id)
        rc |= put_text(b, "schedule_id", r->schedule_id, 36);
    return rc | ml_buf_append(b, "}", 1);
}

int audit_encode(const audit_record *rec, ml_buf *out, char *err, size_t errlen)
{
    ml_buf b;

    if (record_check(rec, err, errlen) != ML_OK)
        return ML_ERR;
    ml_buf_init(&b, out->max);
    if (record_put(rec, &b) != ML_OK || ml_buf_append(out, b.data, b.len) != ML_OK) {
        ml_buf_free(&b);
        ml_snprintf(err, errlen, "out of memory encoding the record");
        return ML_ERR;
    }
    ml_buf_free(&b);
    return ML_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Spill file                                                                           */

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
        ml_snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return ML_ERR;
    }
    ml_buf_init(&partial, LINE_MAX_BYTES);
    while (rc == ML_OK && (n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ml_snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            rc = ML_ERR;
        } else if (feed_lines(chunk, (size_t)n, &used, &partial, &skipping, fn, ud) != ML_OK) {
            ml_snprintf(err, errlen, "stopped reading %s", path);
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
static int spill_append(audit *a, const item_list *l)
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

/* ------------------------------------------------------------------------------------ */
/* Queue                                                                                */

static void list_push(item_list *l, audit_item *it)
{
    it->next = NULL;
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    l->n++;
    l->bytes += it->len;
}

static void list_free(item_list *l)
{
    while (l->head) {
        audit_item *it = l->head;
        l->head = it->next;
        free(it->line);
        free(it);
    }
    memset(l, 0, sizeof(*l));
}

/* Takes up to max_rows (and about BATCH_BYTES_MAX) from the queue's head. Caller holds lock. */
static void queue_take(audit *a, size_t max_rows, item_list *out)
{
    memset(out, 0, sizeof(*out));
    if (a->q.bytes > a->trim_peak)
        a->trim_peak = a->q.bytes;
    while (a->q.head && out->n < max_rows && (out->n == 0 || out->bytes + a->q.head->len <= BATCH_BYTES_MAX)) {
        audit_item *it = a->q.head;
        a->q.head = it->next;
        if (!a->q.head)
            a->q.tail = NULL;
        a->q.n--;
        a->q.bytes -= it->len;
        list_push(out, it);
    }
    a->inflight += out->n;
}

/* Puts a taken run back at the head (it is older than everything queued since). */
static void queue_return(audit *a, item_list *l)
{
    if (!l->head)
        return;
    pthread_mutex_lock(&a->lock);
    l->tail->next = a->q.head;
    if (!a->q.head)
        a->q.tail = l->tail;
    a->q.head = l->head;
    a->q.n += l->n;
    a->q.bytes += l->bytes;
    a->inflight -= l->n;
    pthread_mutex_unlock(&a->lock);
    memset(l, 0, sizeof(*l));
}

/* Frees a taken run once it is written, spilled or dropped, making room for submitters. */
static void list_settle(audit *a, item_list *l)
{
    pthread_mutex_lock(&a->lock);
    a->inflight -= l->n;
    pthread_cond_broadcast(&a->space);
    pthread_mutex_unlock(&a->lock);
    list_free(l);
}

static bool queue_full(const audit *a, size_t len)
{
    return a->q.n + a->inflight >= (size_t)a->cfg.queue_max_rows ||
           a->q.bytes + len > (size_t)a->cfg.queue_max_mb * 1024 * 1024;
}

/* Past this much in memory while Postgres is down, the oldest rows go to the spill file. */
static bool queue_over_hold(const audit *a)
{
    return a->q.n > (size_t)a->cfg.hold_rows || a->q.bytes > (size_t)a->cfg.queue_max_mb * 512 * 1024;
}

static void count_error(audit *a, const char *kind, double n)
{
    const char *labels[] = { kind };

    metric_add(a->m_errors, labels, n);
}

int audit_submit(audit *a, const audit_record *rec)
{
    char err[160];
    ml_buf b;
    audit_item *it;
    struct timespec until;
    int rc = ML_ERR;

    ml_buf_init(&b, 0);
    if (audit_encode(rec, &b, err, sizeof(err)) != ML_OK) {
        ml_log_kv(ML_LOG_ERROR, "audit record refused", "invocation_id", rec->id, "error", err, NULL);
        count_error(a, "invalid", 1);
        ml_buf_free(&b);
        return ML_ERR;
    }
    if (!(it = calloc(1, sizeof(*it)))) {
        ml_buf_free(&b);
        count_error(a, "overflow", 1);
        return ML_ERR;
    }
    it->line = ml_buf_steal(&b, &it->len);
    it->at_ms = ml_now_ms();
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += SUBMIT_WAIT_MS / 1000;
    pthread_mutex_lock(&a->lock);
    while (queue_full(a, it->len) && !a->stopping &&
           pthread_cond_timedwait(&a->space, &a->lock, &until) != ETIMEDOUT)
        ;
    if (!queue_full(a, it->len)) {
        it->seq = ++a->seq_submitted;
        list_push(&a->q, it);
        if (a->q.n == 1 || a->q.n >= (size_t)a->cfg.batch_rows || queue_over_hold(a))
            pthread_cond_signal(&a->work);
        it = NULL;
        rc = ML_OK;
    } else if (ml_now_ms() - a->dropped_logged_ms > 10000) {
        a->dropped_logged_ms = ml_now_ms();
        ml_log_error("audit: queue full (%zu rows) and the writer cannot keep up; dropping records",
                     a->q.n);
    }
    pthread_mutex_unlock(&a->lock);
    if (it) {
        count_error(a, "overflow", 1);
        free(it->line);
        free(it);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Writing to Postgres                                                                  */

#define TS(ms) "'epoch'::timestamptz + " ms " * interval '1 millisecond'"

/* One statement per batch; a record whose (attempts, phase) is older than the stored row
 * changes nothing, so replays and late records are harmless. A batch holds one record per
 * invocation (write_settle); DISTINCT ON only guards that (ON CONFLICT cannot touch a row
 * twice) and sorts the rows by id, so concurrent writers lock them in one order. */
static const char upsert_sql[] =
    "INSERT INTO invocations AS i (id, function_id, version, trigger, status, attempts, cold_start,"
    " request_id, payload_size, response_size, payload, result, error_type, error_message, log_tail,"
    " duration_ms, memory_used_mb, replay_of, schedule_id, payload_sha256, created_at, started_at,"
    " finished_at)"
    " SELECT DISTINCT ON (r.id) r.id, r.function_id, r.version, r.trigger, r.status, r.attempts,"
    "  r.cold_start, r.request_id, r.payload_size, r.response_size, decode(r.payload, 'base64'),"
    "  decode(r.result, 'base64'), r.error_type, r.error_message, decode(r.log_tail, 'base64'),"
    "  r.duration_ms, r.memory_used_mb, r.replay_of, r.schedule_id, r.payload_sha256, " TS("r.created_ms") ","
    "  " TS("r.started_ms") ", " TS("r.finished_ms")
    " FROM ROWS FROM (json_to_recordset($1::json) AS (id uuid, function_id uuid, version int,"
    "  trigger text, status text, attempts int, cold_start bool, request_id text, payload_size int,"
    "  response_size int, payload text, result text, error_type text, error_message text,"
    "  log_tail text, duration_ms int, memory_used_mb int, replay_of uuid, schedule_id uuid,"
    "  payload_sha256 text, created_ms bigint, started_ms bigint, finished_ms bigint))"
    " WITH ORDINALITY AS r"
    " ORDER BY r.id, ml_invocation_phase(r.status, r.attempts) DESC, r.ordinality DESC"
    " ON CONFLICT (id) DO UPDATE SET"
    "  version = coalesce(EXCLUDED.version, i.version), status = EXCLUDED.status,"
    "  attempts = EXCLUDED.attempts, cold_start = coalesce(EXCLUDED.cold_start, i.cold_start),"
    "  request_id = coalesce(EXCLUDED.request_id, i.request_id),"
    "  payload_size = greatest(EXCLUDED.payload_size, i.payload_size),"
    "  response_size = coalesce(EXCLUDED.response_size, i.response_size),"
    "  payload = coalesce(EXCLUDED.payload, i.payload), result = EXCLUDED.result,"
    "  error_type = EXCLUDED.error_type, error_message = EXCLUDED.error_message,"
    "  log_tail = coalesce(EXCLUDED.log_tail, i.log_tail),"
    "  duration_ms = coalesce(EXCLUDED.duration_ms, i.duration_ms),"
    "  memory_used_mb = coalesce(EXCLUDED.memory_used_mb, i.memory_used_mb),"
    "  replay_of = coalesce(EXCLUDED.replay_of, i.replay_of),"
    "  schedule_id = coalesce(EXCLUDED.schedule_id, i.schedule_id),"
    "  payload_sha256 = coalesce(EXCLUDED.payload_sha256, i.payload_sha256),"
    "  started_at = coalesce(EXCLUDED.started_at, i.started_at), finished_at = EXCLUDED.finished_at"
    " WHERE ml_invocation_phase(EXCLUDED.status, EXCLUDED.attempts)"
    "  >= ml_invocation_phase(i.status, i.attempts)";

typedef enum { WRITE_OK = 0, WRITE_REJECTED, WRITE_UNAVAILABLE } write_result;

/* Runs the upsert over lines[0..n). A refusal of the data itself (SQLSTATE classes 21, 22
 * and 23: a bad value, a deleted function) is WRITE_REJECTED; anything else is worth
 * retrying. */
static write_result write_lines(audit *a, char *const *lines, const size_t *lens, size_t n)
{
    ml_buf b;
    const char *params[1];
    write_result wr = WRITE_UNAVAILABLE;

    ml_buf_init(&b, 0);
    ml_buf_append(&b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if ((i && ml_buf_append(&b, ",", 1) != ML_OK) || ml_buf_append(&b, lines[i], lens[i]) != ML_OK)
            goto out;
    }
    if (ml_buf_append(&b, "]", 1) != ML_OK)
        goto out;
    params[0] = b.data;
    if (pg_exec(a->db, "audit_upsert", upsert_sql, 1, params, NULL) == ML_OK) {
        wr = WRITE_OK;
    } else {
        const char *st = pg_sqlstate(a->db);
        /* 21: two records of one id in a batch (write_settle prevents it; never retry it) */
        wr = (strncmp(st, "21", 2) == 0 || strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0)
                 ? WRITE_REJECTED : WRITE_UNAVAILABLE;
    }
out:
    ml_buf_free(&b);
    return wr;
}

static void mark_down(audit *a)
{
    bool first;

    pthread_mutex_lock(&a->lock);
    first = !a->pg_down;
    a->pg_down = true;
    pthread_mutex_unlock(&a->lock);
    a->retry_ms = first ? RETRY_MIN_MS : (a->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : a->retry_ms * 2);
    a->retry_at_ms = ml_now_ms() + a->retry_ms;
    count_error(a, "unavailable", 1);
    if (first)
        ml_log_warn("audit: cannot write to Postgres (%s); keeping rows in memory, then in %s",
                    pg_error(a->db), a->cfg.spill_path);
}

static void mark_up(audit *a)
{
    bool was;

    pthread_mutex_lock(&a->lock);
    was = a->pg_down;
    a->pg_down = false;
    pthread_mutex_unlock(&a->lock);
    if (was)
        ml_log_info("audit: Postgres reachable again; writing the backlog");
}

static void log_rejected(audit *a, const char *line, size_t len)
{
    ml_log_kv(ML_LOG_ERROR, "audit row refused by Postgres; dropped", "row", len > 200 ? "(long)" : line,
              "error", pg_error(a->db), NULL);
    count_error(a, "rejected", 1);
}

/* Writes a run of lines with distinct ids; on a rejected batch, row by row so only the bad
 * rows are dropped (logged, counted). ML_OK when every row is settled, ML_ERR when Postgres
 * is unavailable. */
static int write_run(audit *a, char *const *lines, const size_t *lens, size_t n)
{
    write_result wr = write_lines(a, lines, lens, n);

    if (wr == WRITE_OK) {
        metric_add(a->m_written, NULL, (double)n);
    } else if (wr == WRITE_REJECTED && n == 1) {
        log_rejected(a, lines[0], lens[0]);
    } else if (wr == WRITE_REJECTED) {
        wr = WRITE_OK;
        for (size_t i = 0; i < n && wr == WRITE_OK; i++) {
            write_result one = write_lines(a, lines + i, lens + i, 1);
            if (one == WRITE_REJECTED)
                log_rejected(a, lines[i], lens[i]);
            else if (one == WRITE_OK)
                metric_inc(a->m_written, NULL);
            else
                wr = WRITE_UNAVAILABLE;
        }
    }
    if (wr == WRITE_UNAVAILABLE) {
        mark_down(a);
        return ML_ERR;
    }
    mark_up(a);
    return ML_OK;
}

/* record_put writes the id first, so every line starts {"id":"<36 chars>". */
#define ID_AT 7

static const char *line_id(const char *line, size_t len)
{
    return len > ID_AT + 36 && memcmp(line, "{\"id\":\"", ID_AT) == 0 ? line + ID_AT : NULL;
}

/* Adds a 36-char id to an open-addressing set of cap (a power of two) slots; true if it
 * was there already. */
static bool id_seen(const char **set, size_t cap, const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    for (size_t k = 0; k < 36; k++)
        h = (h ^ (unsigned char)id[k]) * 1099511628211ULL;
    for (i = (size_t)h & (cap - 1); set[i]; i = (i + 1) & (cap - 1)) {
        if (memcmp(set[i], id, 36) == 0)
            return true;
    }
    set[i] = id;
    return false;
}

/* Writes n lines as runs without a repeated invocation id, so the records of one
 * invocation apply in order, each ON CONFLICT seeing the row the previous one left (fields
 * a later record leaves out, like the payload, are kept). ML_OK / ML_ERR as write_run. */
static int write_settle(audit *a, char *const *lines, const size_t *lens, size_t n)
{
    size_t cap = 16, start = 0;
    const char **set;
    int rc = ML_OK;

    while (cap < 2 * n)
        cap <<= 1;
    if (!(set = calloc(cap, sizeof(*set)))) {
        for (size_t i = 0; i < n && rc == ML_OK; i++) /* no memory for the set: one by one */
            rc = write_run(a, lines + i, lens + i, 1);
        return rc;
    }
    for (size_t i = 0; i < n && rc == ML_OK; i++) {
        const char *id = line_id(lines[i], lens[i]);
        if (id && id_seen(set, cap, id)) {
            rc = write_run(a, lines + start, lens + start, i - start);
            memset(set, 0, cap * sizeof(*set));
            start = i;
            id_seen(set, cap, id);
        }
    }
    if (rc == ML_OK && start < n)
        rc = write_run(a, lines + start, lens + start, n - start);
    free(set);
    return rc;
}

static int write_list(audit *a, const item_list *l)
{
    char **lines = calloc(l->n, sizeof(*lines));
    size_t *lens = calloc(l->n, sizeof(*lens)), i = 0;
    int rc = ML_ERR;

    if (lines && lens) {
        for (audit_item *it = l->head; it; it = it->next, i++) {
            lines[i] = it->line;
            lens[i] = it->len;
        }
        rc = write_settle(a, lines, lens, l->n);
    }
    free(lines);
    free(lens);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Spill replay                                                                         */

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

static int spill_excess(audit *a);

static int replay_line(const char *line, size_t len, void *ud)
{
    replay *rp = ud;
    int rc;

    if (!(rp->lines[rp->n] = strndup(line, len)))
        return ML_ERR;
    rp->lens[rp->n++] = len;
    if (rp->n < (size_t)rp->a->cfg.batch_rows)
        return ML_OK;
    rc = write_settle(rp->a, rp->lines, rp->lens, rp->n);
    replay_clear(rp);
    /* rows arriving meanwhile are newer than the file: appending keeps the order */
    spill_excess(rp->a);
    return rc;
}

/* Writes the whole spill file to Postgres, then empties it. Writer thread only. */
static int spill_replay(audit *a)
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
        (rp.n == 0 || write_settle(a, rp.lines, rp.lens, rp.n) == ML_OK)) {
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
static int spill_excess(audit *a)
{
    item_list l;
    bool over;

    for (;;) {
        pthread_mutex_lock(&a->lock);
        over = queue_over_hold(a);
        if (over) /* down to half the hold (by rows), or half the queue when over by bytes */
            queue_take(a, a->q.n > (size_t)a->cfg.hold_rows / 2 ? a->q.n - (size_t)a->cfg.hold_rows / 2
                                                                 : a->q.n / 2 + 1, &l);
        pthread_mutex_unlock(&a->lock);
        if (!over)
            return ML_OK;
        if (spill_append(a, &l) != ML_OK) {
            queue_return(a, &l);
            return ML_ERR;
        }
        list_settle(a, &l);
    }
}

/* ------------------------------------------------------------------------------------ */
/* The writer thread                                                                    */

static void abs_deadline(struct timespec *ts, int64_t in_ms)
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
            if (queue_over_hold(a))
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
        abs_deadline(&ts, wait_ms);
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
        spill = spill_replay(a) != ML_OK;
    if (down || spill) {
        spill_excess(a);
        return;
    }
    pthread_mutex_lock(&a->lock);
    queue_take(a, (size_t)a->cfg.batch_rows, &l);
    if (!a->q.head)
        a->flush_wanted = false;
    pthread_mutex_unlock(&a->lock);
    if (l.tail)
        last = l.tail->seq;
    if (l.n && write_list(a, &l) != ML_OK) {
        queue_return(a, &l);
        spill_excess(a);
        return;
    }
    list_settle(a, &l);
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
    queue_take(a, SIZE_MAX, &l);
    pthread_mutex_unlock(&a->lock);
    if (l.n && spill_append(a, &l) != ML_OK)
        ml_log_error("audit: %zu rows could be written neither to Postgres nor to %s and are lost", l.n,
                     a->cfg.spill_path);
    else if (l.n)
        ml_log_warn("audit: %zu rows saved to %s for the next start", l.n, a->cfg.spill_path);
    list_settle(a, &l);
}

static void *writer_main(void *arg)
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

/* ------------------------------------------------------------------------------------ */
/* Waiting, backlog, health, metrics                                                    */

int audit_flush(audit *a, int64_t timeout_ms)
{
    struct timespec ts;
    uint64_t target;
    int rc;

    abs_deadline(&ts, timeout_ms);
    pthread_mutex_lock(&a->lock);
    target = a->seq_submitted;
    if (a->seq_done < target) {
        a->flush_wanted = true;
        pthread_cond_signal(&a->work);
    }
    while (a->seq_done < target && !a->pg_down &&
           pthread_cond_timedwait(&a->done, &a->lock, &ts) != ETIMEDOUT)
        ;
    rc = a->seq_done >= target ? ML_OK : ML_ERR;
    pthread_mutex_unlock(&a->lock);
    return rc;
}

int64_t audit_backlog(audit *a)
{
    int64_t n;

    pthread_mutex_lock(&a->lock);
    n = (int64_t)(a->q.n + a->inflight) + a->spill_rows;
    pthread_mutex_unlock(&a->lock);
    return n;
}

static void collect(metrics_registry *reg, void *ud)
{
    audit *a = ud;
    int64_t spill;

    ML_UNUSED(reg);
    pthread_mutex_lock(&a->lock);
    spill = a->spill_bytes;
    pthread_mutex_unlock(&a->lock);
    metric_set(a->m_backlog, NULL, (double)audit_backlog(a));
    metric_set(a->m_spill_bytes, NULL, (double)spill);
}

/* Optional check: degraded while rows wait for Postgres. */
static int check_audit(void *ud, char *err, size_t errlen)
{
    audit *a = ud;
    bool down;
    int64_t mem, spill;

    pthread_mutex_lock(&a->lock);
    down = a->pg_down;
    mem = (int64_t)(a->q.n + a->inflight);
    spill = a->spill_rows;
    pthread_mutex_unlock(&a->lock);
    if (!down && spill == 0)
        return ML_OK;
    ml_snprintf(err, errlen, "%lld rows wait for Postgres (%lld in memory, %lld in the spill file)",
                (long long)(mem + spill), (long long)mem, (long long)spill);
    return ML_ERR;
}

/* ------------------------------------------------------------------------------------ */
/* GET /invocations/{id}, GET /functions/{fn}/invocations                                 */

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define INVOCATION_JSON                                                                        \
    "json_build_object('id', i.id, 'function_id', i.function_id, 'version', i.version,"        \
    " 'trigger', i.trigger, 'status', i.status, 'attempts', i.attempts,"                       \
    " 'cold_start', i.cold_start, 'duration_ms', i.duration_ms,"                               \
    " 'memory_used_mb', i.memory_used_mb, 'payload_size', i.payload_size,"                      \
    " 'response_size', i.response_size, 'error_type', i.error_type,"                           \
    " 'error_message', i.error_message, 'request_id', i.request_id,"                           \
    " 'created_at', " ISO("i.created_at") ", 'started_at', " ISO("i.started_at") ","          \
    " 'finished_at', " ISO("i.finished_at")

static pg_conn *need_db(audit *a, httpd_resp *resp)
{
    pg_conn *db = a->cfg.thread_db(a->cfg.thread_db_ud);

    if (!db) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "cannot reach the function database");
    }
    return db;
}

static void db_fail(httpd_resp *resp, pg_conn *db, const char *what)
{
    ml_log_warn("audit: %s: %s", what, pg_error(db));
    httpd_resp_header(resp, "Retry-After", "5");
    httpd_resp_error(resp, pg_error_is_connection(db) ? 503 : 500,
                     pg_error_is_connection(db) ? "service_unavailable" : "internal", "%s failed: %s",
                     what, pg_error(db));
}

/* The stored result: its JSON if it is JSON, else a string if it is UTF-8, else base64
 * under result_base64. */
static void add_result(cJSON *o, const char *data, size_t len)
{
    cJSON *v = cJSON_ParseWithLength(data, len);
    size_t i = 0, n;

    if (v) {
        cJSON_AddItemToObject(o, "result", v);
        return;
    }
    while (i < len && data[i] && (n = (unsigned char)data[i] < 0x80 ? 1 : utf8_len((const unsigned char *)data + i, len - i)))
        i += n;
    if (i == len) {
        char *s = strndup(data, len);
        cJSON_AddItemToObject(o, "result", cJSON_CreateString(s ? s : ""));
        free(s);
    } else {
        char *b = malloc(CRYPTO_BASE64_ENC_SIZE(len));
        if (b && crypto_base64_encode(data, len, b, CRYPTO_BASE64_ENC_SIZE(len)) == ML_OK)
            cJSON_AddStringToObject(o, "result_base64", b);
        free(b);
    }
}

static httpd_result h_get_invocation(httpd_req *req, httpd_resp *resp, void *ud)
{
    audit *a = ud;
    const char *id = httpd_param(req, "id");
    const char *params[] = { id };
    PGresult *res;
    pg_conn *db;
    cJSON *o;

    if (ml_uuid_valid(id) != ML_OK) {
        httpd_resp_error(resp, 404, "not_found", "no invocation '%s'", id ? id : "");
        return HTTPD_DONE;
    }
    /* read-your-writes: rows submitted before this request are written first (bounded) */
    audit_flush(a, READ_FLUSH_MS);
    if (!(db = need_db(a, resp)))
        return HTTPD_DONE;
    /* binary results: the json text as is, the raw bytes of result and log_tail */
    res = pg_query_ex(db, "audit_get",
                      "SELECT " INVOCATION_JSON ")::text, i.result, i.log_tail FROM invocations i WHERE i.id = $1",
                      1, params, NULL, NULL, 1);
    if (!res) {
        db_fail(resp, db, "reading an invocation");
    } else if (PQntuples(res) == 0) {
        httpd_resp_error(resp, 404, "not_found", "no invocation '%s'", id);
    } else if (!(o = cJSON_ParseWithLength(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0)))) {
        httpd_resp_error(resp, 500, "internal", "malformed JSON from the database");
    } else {
        size_t tl = (size_t)PQgetlength(res, 0, 2);
        char tail[CRYPTO_BASE64_ENC_SIZE(AUDIT_LOG_TAIL_MAX)];
        if (!PQgetisnull(res, 0, 1))
            add_result(o, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
        if (!PQgetisnull(res, 0, 2) && tl <= AUDIT_LOG_TAIL_MAX &&
            crypto_base64_encode(PQgetvalue(res, 0, 2), tl, tail, sizeof(tail)) == ML_OK)
            cJSON_AddStringToObject(o, "log_tail", tail);
        else
            cJSON_AddNullToObject(o, "log_tail");
        httpd_resp_json(resp, 200, o);
    }
    PQclear(res);
    return HTTPD_DONE;
}

static bool status_valid(const char *s)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(status_names); i++) {
        if (strcmp(s, status_names[i]) == 0)
            return true;
    }
    return false;
}

/* $1 id, $2 name, $3 status, $4 cursor µs, $5 cursor id, $6 limit. Newest first; one extra
 * row tells whether there is a next page. */
#define LIST_SQL(status_pred)                                                                  \
    "WITH fn AS (SELECT id FROM functions WHERE id = $1::uuid OR name = $2),"                  \
    " page AS (SELECT i.*, row_number() OVER (ORDER BY i.created_at DESC, i.id DESC) AS rn"      \
    "  FROM (SELECT i.* FROM invocations i WHERE i.function_id = (SELECT id FROM fn)"           \
    status_pred " AND ($4::bigint IS NULL OR (i.created_at, i.id) <"                            \
    "  ('epoch'::timestamptz + $4::bigint * interval '1 microsecond', $5::uuid))"               \
    "  ORDER BY i.created_at DESC, i.id DESC LIMIT $6::int + 1) i)"                             \
    " SELECT (SELECT count(*) FROM fn), json_build_object('invocations', coalesce((SELECT"      \
    " json_agg(" INVOCATION_JSON ") ORDER BY i.rn) FROM page i WHERE i.rn <= $6::int), '[]'),"  \
    " 'next_cursor', (SELECT (extract(epoch FROM created_at) * 1000000)::bigint || '.' || id"   \
    " FROM page WHERE rn = $6::int AND (SELECT count(*) FROM page) > $6::int))::text"

static httpd_result h_list_invocations(httpd_req *req, httpd_resp *resp, void *ud)
{
    audit *a = ud;
    const char *fn = httpd_param(req, "fn"), *status = httpd_query(req, "status");
    const char *limit_s = httpd_query(req, "limit"), *cursor = httpd_query(req, "cursor");
    char us[24], cid[ML_UUID_LEN], limit[8];
    int64_t n = PAGE_DEFAULT;
    bool by_id = ml_uuid_valid(fn) == ML_OK;
    const char *params[] = { by_id ? fn : NULL, by_id ? NULL : fn, status, NULL, NULL, limit };
    PGresult *res;
    pg_conn *db;

    if ((limit_s && ml_parse_int64(limit_s, 1, PAGE_MAX, &n) != ML_OK) ||
        (cursor && ml_cursor_parse(cursor, us, cid) != ML_OK) || (status && !status_valid(status))) {
        httpd_resp_error(resp, 400, "invalid_query",
                         "limit must be 1..%d, cursor a value from next_cursor, and status one of queued, "
                         "running, succeeded, failed, timed_out, dead_lettered", PAGE_MAX);
        return HTTPD_DONE;
    }
    if (cursor) {
        params[3] = us;
        params[4] = cid;
    }
    ml_snprintf(limit, sizeof(limit), "%lld", (long long)n);
    audit_flush(a, READ_FLUSH_MS);
    if (!(db = need_db(a, resp)))
        return HTTPD_DONE;
    res = status ? pg_query(db, "audit_list_status", LIST_SQL(" AND i.status = $3"), 6, params)
                 : pg_query(db, "audit_list", LIST_SQL(" AND $3::text IS NULL"), 6, params);
    if (!res) {
        db_fail(resp, db, "listing invocations");
    } else if (strcmp(pg_get_text(res, 0, 0), "0") == 0) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", fn);
    } else {
        cJSON *o = cJSON_Parse(pg_get_text(res, 0, 1));
        if (o)
            httpd_resp_json(resp, 200, o);
        else
            httpd_resp_error(resp, 500, "internal", "malformed JSON from the database");
    }
    PQclear(res);
    return HTTPD_DONE;
}

size_t audit_routes(audit *a, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "GET", "/invocations/{id}", h_get_invocation, a, 0, true },
        { "GET", "/functions/{fn}/invocations", h_list_invocations, a, 0, true },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}

/* ------------------------------------------------------------------------------------ */
/* Life cycle                                                                           */

size_t audit_cfg_vars(audit_config *c, cfg_var *vars, size_t max)
{
    const cfg_var all[] = {
        { "MINILAMBDA_AUDIT_SPILL_PATH", CFG_STR, "/var/tmp/minilambda-executor-audit.jsonl", 0, 0, NULL,
          "append-only file for audit rows while Postgres is down (one per executor process; locked)",
          &c->spill_path, false },
        { "MINILAMBDA_AUDIT_QUEUE_MAX_ROWS", CFG_INT, "200000", 100, 10000000, NULL,
          "audit rows held in memory at most (beyond, submitters wait up to 1 s, then rows are dropped)",
          &c->queue_max_rows, false },
        { "MINILAMBDA_AUDIT_QUEUE_MAX_MB", CFG_INT, "256", 16, 65536, NULL,
          "memory the audit queue may use at most", &c->queue_max_mb, false },
        { "MINILAMBDA_AUDIT_HOLD_ROWS", CFG_INT, "20000", 2, 10000000, NULL,
          "audit rows kept in memory while Postgres is down before the oldest go to the spill file",
          &c->hold_rows, false },
        { "MINILAMBDA_AUDIT_SPILL_MAX_MB", CFG_INT, "4096", 1, 1048576, NULL,
          "largest size of the audit spill file", &c->spill_max_mb, false },
        { "MINILAMBDA_AUDIT_BATCH_ROWS", CFG_INT, "500", 1, 10000, NULL,
          "audit rows per INSERT", &c->batch_rows, false },
        { "MINILAMBDA_AUDIT_FLUSH_MS", CFG_INT, "10", 0, 10000, NULL,
          "longest an audit row waits for others to share its INSERT", &c->flush_ms, false },
    };
    return cfg_copy(vars, max, all, ML_ARRAY_LEN(all));
}

/* Counts the spill file's rows and cuts off a torn last line (so appends start clean). */
static int count_line(const char *line, size_t len, void *ud)
{
    ML_UNUSED(line);
    ML_UNUSED(len);
    (*(int64_t *)ud)++;
    return ML_OK;
}

static int spill_open(audit *a, char *err, size_t errlen)
{
    size_t torn = 0;
    struct stat st;

    a->spill_fd = open(a->cfg.spill_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (a->spill_fd < 0) {
        ml_snprintf(err, errlen, "cannot open the audit spill file %s: %s", a->cfg.spill_path, strerror(errno));
        return ML_ERR;
    }
    if (flock(a->spill_fd, LOCK_EX | LOCK_NB) != 0) {
        ml_snprintf(err, errlen, "the audit spill file %s is in use by another process (%s); give each "
                    "executor its own MINILAMBDA_AUDIT_SPILL_PATH", a->cfg.spill_path, strerror(errno));
        return ML_ERR;
    }
    if (audit_spill_read(a->cfg.spill_path, count_line, &a->spill_rows, &torn, err, errlen) != ML_OK ||
        fstat(a->spill_fd, &st) != 0)
        return ML_ERR;
    a->spill_bytes = (int64_t)st.st_size - (int64_t)torn;
    if (torn && ftruncate(a->spill_fd, a->spill_bytes) != 0) {
        ml_snprintf(err, errlen, "cannot cut the torn end off %s: %s", a->cfg.spill_path, strerror(errno));
        return ML_ERR;
    }
    if (torn)
        ml_log_warn("audit: dropped a torn last line (%zu bytes) of %s", torn, a->cfg.spill_path);
    if (a->spill_rows)
        ml_log_info("audit: %lld rows in %s from an earlier run will be replayed", (long long)a->spill_rows,
                    a->cfg.spill_path);
    return ML_OK;
}

static void audit_free(audit *a)
{
    list_free(&a->q);
    if (a->spill_fd >= 0)
        close(a->spill_fd);
    pg_close(a->db);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->work);
    pthread_cond_destroy(&a->space);
    pthread_cond_destroy(&a->done);
    free(a);
}

audit *audit_start(const audit_config *cfg, svc *s, char *err, size_t errlen)
{
    pg_options o = { .connect_timeout_s = 2, .reconnect_attempts = 1, .application_name = "lambda-executor-audit" };
    audit *a = calloc(1, sizeof(*a));

    if (!a) {
        ml_snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->cfg = *cfg;
    a->spill_fd = -1;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->work, NULL);
    pthread_cond_init(&a->space, NULL);
    pthread_cond_init(&a->done, NULL);
    o.statement_timeout_ms = (int)cfg->statement_timeout_ms;
    if (!cfg->spill_path || !cfg->db_url || !cfg->thread_db || cfg->batch_rows < 1 || cfg->hold_rows < 2) {
        ml_snprintf(err, errlen, "audit: spill_path, db_url, thread_db, batch_rows and hold_rows are required");
        goto fail;
    }
    if (!(a->db = pg_new(cfg->db_url, &o))) {
        ml_snprintf(err, errlen, "audit: bad database URL");
        goto fail;
    }
    if (spill_open(a, err, errlen) != ML_OK)
        goto fail;
    a->m_backlog = metrics_gauge(s->metrics, "minilambda_audit_backlog",
                                 "Audit rows not yet in Postgres (memory and spill file).", NULL);
    a->m_spill_bytes = metrics_gauge(s->metrics, "minilambda_audit_spill_bytes",
                                     "Size of the audit spill file.", NULL);
    a->m_written = metrics_counter(s->metrics, "minilambda_audit_rows_written_total",
                                   "Audit rows written to Postgres.", NULL);
    a->m_errors = metrics_counter(s->metrics, "minilambda_audit_write_errors_total",
                                  "Audit write problems: unavailable (a failed attempt), rejected (a row "
                                  "Postgres refused, dropped), overflow (dropped, queue full), invalid.",
                                  "kind");
    if (pthread_create(&a->thread, NULL, writer_main, a) != 0) {
        ml_snprintf(err, errlen, "audit: cannot start the writer thread");
        goto fail;
    }
    a->thread_started = true;
    /* last: both keep a pointer to a */
    if (metrics_add_collector(s->metrics, collect, a) != ML_OK ||
        health_add(&s->health, "audit", check_audit, a, false) != ML_OK) {
        ml_snprintf(err, errlen, "audit: cannot register the metrics collector or the health check");
        audit_stop(a);
        return NULL;
    }
    a->thread_started = true;
    return a;
fail:
    audit_free(a);
    return NULL;
}

void audit_stop(audit *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->stopping = true;
    pthread_cond_broadcast(&a->work);
    pthread_cond_broadcast(&a->space);
    pthread_mutex_unlock(&a->lock);
    if (a->thread_started)
        pthread_join(a->thread, NULL);
    audit_free(a);
}
