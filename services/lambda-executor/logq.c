/* logq.c — the bounded queue of function-log lines and its one writer thread (see logq.h,
 * docs/logs.md §1 "Store"). Capture pushes under a mutex (a copy and a list append, no I/O);
 * the writer takes batches of at most LOGQ_BATCH_LINES lines, at most flush_ms after the
 * first one arrived, and COPYs them with its own connection. A failed batch is retried once
 * (on a new connection), then dropped and counted: logs never stall invocations. */
#include "logq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpc.h"
#include "log.h"
#include "logs-int.h"
#include "prio.h"

static const char *const stream_names[] = { "stdout", "stderr", "platform" };

/* The process's one queue: logq_push is called from capture without a context. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* lines arrived, stop asked, or a batch was written */
    logq_entry *head, *tail;
    size_t lines, bytes;
    size_t max_bytes;
    uint64_t pushed, done;      /* lines taken / written or dropped (logq_wait_idle) */
    bool enabled, running, stop;
    int64_t flush_ms;
    pthread_t thread;
    char *db_url, *loki_url;
    metric *m_lines, *m_dropped, *m_bytes, *m_batch, *m_loki;
    uint64_t (*limit_drops)(void); /* logq_watch_limit_drops */
} q = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

size_t logq_cfg_vars(logq_config *c, cfg_var *vars, size_t max)
{
    const cfg_var own[] = {
        { "MINILAMBDA_FUNCTION_LOGS", CFG_BOOL, "on", 0, 0, NULL,
          "store functions' stdout/stderr lines (on|off; off keeps only the 4 KiB log tail)",
          &c->enabled, false },
        { "MINILAMBDA_LOG_QUEUE_BYTES", CFG_INT, "67108864", 65536, (int64_t)1 << 34, NULL,
          "function-log lines waiting for the writer, in bytes; beyond it lines are dropped and counted",
          &c->queue_bytes, false },
        { "MINILAMBDA_LOKI_URL", CFG_STR, "", 0, 0, NULL,
          "Loki base URL the log writer also pushes function logs to (best effort; empty: none)",
          &c->loki_url, false },
    };
    return cfg_copy(vars, max, own, ML_ARRAY_LEN(own));
}

void logq_count_dropped(const char *reason, double n)
{
    if (q.m_dropped && n > 0)
        metric_add(q.m_dropped, (const char *const[]){ reason }, n);
}

size_t logq_queued_bytes(void)
{
    pthread_mutex_lock(&q.mu);
    size_t b = q.bytes;
    pthread_mutex_unlock(&q.mu);
    return b;
}

bool logq_enabled(void)
{
    return q.enabled;
}

static size_t str_size(const char *s)
{
    return (s ? strlen(s) : 0) + 1;
}

/* Copies s into *at, advancing it; returns the copy ("" for NULL). */
static const char *put(char **at, const char *s, size_t size)
{
    char *dst = *at;

    if (size > 1)
        memcpy(dst, s, size - 1);
    dst[size - 1] = '\0';
    *at += size;
    return dst;
}

/* One allocation holding l and its strings; the caller frees it (free()). NULL on OOM. */
static logq_entry *entry_new(const logq_line *l)
{
    size_t s[6] = { str_size(l->level), str_size(l->request_id), str_size(l->ns),
                     str_size(l->function), str_size(l->function_id), str_size(l->version) };
    size_t extra = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + l->len + 1;
    logq_entry *e = malloc(sizeof(*e) + extra);
    char *at;

    if (!e)
        return NULL;
    at = e->data;
    e->next = NULL;
    e->ts_us = l->ts_us;
    e->stream = l->stream >= 0 && l->stream <= 2 ? l->stream : 0;
    e->size = sizeof(*e) + extra;
    e->len = l->len;
    e->level = put(&at, l->level, s[0]);
    e->request_id = put(&at, l->request_id, s[1]);
    e->ns = put(&at, l->ns, s[2]);
    e->function = put(&at, l->function, s[3]);
    e->function_id = put(&at, l->function_id, s[4]);
    e->version = put(&at, l->version, s[5]);
    e->message = at;
    if (l->len)
        memcpy(at, l->message, l->len);
    at[l->len] = '\0';
    return e;
}

size_t logq_push(const logq_line *lines, size_t n)
{
    size_t taken = 0;

    if (!q.enabled || !lines)
        return 0;
    for (; taken < n; taken++) {
        logq_entry *e = entry_new(&lines[taken]);
        bool fits;

        if (!e)
            break;
        pthread_mutex_lock(&q.mu);
        fits = q.running && q.bytes + e->size <= q.max_bytes;
        if (fits) {
            *(q.tail ? &q.tail->next : &q.head) = e;
            q.tail = e;
            q.lines++;
            q.bytes += e->size;
            q.pushed++;
            pthread_cond_signal(&q.cv);
        }
        pthread_mutex_unlock(&q.mu);
        if (!fits) {
            free(e);
            break;
        }
    }
    logq_count_dropped("queue_full", (double)(n - taken));
    return taken;
}

void logs_deadline(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Under q.mu: waits for a batch (full, or flush_ms old, or stopping) and detaches at most
 * LOGQ_BATCH_LINES entries into out; returns how many (0: stop with an empty queue). */
static size_t take_batch(logq_entry **out)
{
    struct timespec until;
    size_t n = 0;

    while (!q.head && !q.stop)
        pthread_cond_wait(&q.cv, &q.mu);
    logs_deadline(&until, q.flush_ms);
    while (!q.stop && q.lines < LOGQ_BATCH_LINES &&
           pthread_cond_timedwait(&q.cv, &q.mu, &until) == 0)
        ;
    while (q.head && n < LOGQ_BATCH_LINES) {
        logq_entry *e = q.head;
        q.head = e->next;
        q.lines--;
        q.bytes -= e->size;
        out[n++] = e;
    }
    if (!q.head)
        q.tail = NULL;
    return n;
}

/* The writer's connection, made (or made again) when needed; NULL (logged) when Postgres is
 * unreachable. New connections get today's partitions. */
static PGconn *writer_conn(PGconn **c, int64_t *part_day)
{
    char err[256];
    int64_t today = (int64_t)time(NULL) / 86400;

    if (*c && PQstatus(*c) != CONNECTION_OK) {
        PQfinish(*c);
        *c = NULL;
    }
    if (!*c) {
        *c = PQconnectdb(q.db_url);
        if (PQstatus(*c) != CONNECTION_OK) {
            ml_log_warn("function logs: cannot connect: %s", PQerrorMessage(*c));
            PQfinish(*c);
            *c = NULL;
            return NULL;
        }
        *part_day = -1;
    }
    if (*part_day != today) {
        if (logs_store_partitions(*c, err, sizeof(err)) != ML_OK)
            ml_log_warn("function logs: partitions: %s", err); /* the default partition catches */
        else
            *part_day = today;
    }
    return *c;
}

static void count_written(logq_entry *const *b, size_t n, double seconds)
{
    double per[3] = { 0, 0, 0 };

    for (size_t i = 0; i < n; i++)
        per[b[i]->stream]++;
    for (int s = 0; s < 3 && q.m_lines; s++)
        if (per[s] > 0)
            metric_add(q.m_lines, (const char *const[]){ stream_names[s] }, per[s]);
    if (q.m_batch)
        metric_observe(q.m_batch, NULL, seconds);
}

/* Writes one batch: tried twice (the second time on a fresh connection), then dropped. */
static void write_batch(PGconn **c, int64_t *part_day, logq_entry *const *b, size_t n)
{
    char err[512] = "";
    int64_t t0 = ml_now_ms();

    for (int attempt = 0; attempt < 2; attempt++) {
        if (attempt && *c) { /* a broken COPY may leave the link unusable: start afresh */
            PQfinish(*c);
            *c = NULL;
        }
        if (writer_conn(c, part_day) && logs_store_batch(*c, b, n, err, sizeof(err)) == ML_OK) {
            count_written(b, n, (double)(ml_now_ms() - t0) / 1000.0);
            return;
        }
    }
    ml_log_warn("function logs: %zu lines dropped: %s", n, err[0] ? err : "no database");
    logq_count_dropped("store_error", (double)n);
}

/* The second sink, when configured: a failed push is counted and the batch goes on. */
static void push_loki(httpc **h, logq_entry *const *b, size_t n)
{
    char err[256];

    if (!q.loki_url || !q.loki_url[0])
        return;
    if (!*h)
        *h = httpc_new();
    if (!*h || logs_loki_push(*h, q.loki_url, b, n, err, sizeof(err)) != ML_OK) {
        ml_log_warn("function logs: Loki push of %zu lines failed: %s", n, *h ? err : "no client");
        if (q.m_loki)
            metric_inc(q.m_loki, NULL);
    }
}

static void *writer_main(void *arg)
{
    static logq_entry *batch[LOGQ_BATCH_LINES];
    PGconn *c = NULL;
    httpc *loki = NULL;
    int64_t part_day = -1;

    (void)arg;
    ex_thread_background("log-writer");
    pthread_mutex_lock(&q.mu);
    for (;;) {
        size_t n = take_batch(batch);

        if (!n)
            break;
        if (q.m_bytes)
            metric_set(q.m_bytes, NULL, (double)q.bytes);
        pthread_mutex_unlock(&q.mu);
        write_batch(&c, &part_day, batch, n);
        push_loki(&loki, batch, n);
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
        pthread_mutex_lock(&q.mu);
        q.done += n;
        pthread_cond_broadcast(&q.cv);
    }
    pthread_mutex_unlock(&q.mu);
    PQfinish(c);
    httpc_free(loki);
    return NULL;
}

/* Before each scrape: the queue's bytes, and capture's per-invocation-limit drops (fnlog
 * counts them without a metric) as the invocation_limit series. */
static void collect(metrics_registry *reg, void *ud)
{
    static uint64_t seen;
    uint64_t now = q.limit_drops ? q.limit_drops() : 0;

    (void)reg;
    (void)ud;
    if (q.m_bytes)
        metric_set(q.m_bytes, NULL, (double)logq_queued_bytes());
    if (now > seen) {
        logq_count_dropped("invocation_limit", (double)(now - seen));
        seen = now;
    }
}

void logq_watch_limit_drops(uint64_t (*total)(void))
{
    q.limit_drops = total;
}

/* Once per registry (a restarted writer keeps its series). */
static void register_metrics(metrics_registry *reg)
{
    static const double batch_buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5 };
    static metrics_registry *done;

    if (!reg || reg == done)
        return;
    done = reg;
    q.m_lines = metrics_counter(reg, "minilambda_function_log_lines_total",
                                "Function log lines stored, by stream.", "stream");
    q.m_dropped = metrics_counter(reg, "minilambda_function_log_lines_dropped_total",
                                  "Function log lines not stored, by reason (queue_full, "
                                  "invocation_limit, store_error, shutdown).", "reason");
    q.m_bytes = metrics_gauge(reg, "minilambda_function_log_queue_bytes",
                              "Bytes of function log lines waiting for the writer.", NULL);
    q.m_batch = metrics_histogram(reg, "minilambda_function_log_batch_seconds",
                                  "Time to store one batch of function log lines.", NULL,
                                  batch_buckets, ML_ARRAY_LEN(batch_buckets));
    q.m_loki = metrics_counter(reg, "minilambda_function_log_loki_push_failures_total",
                               "Function log batches Loki did not take (dropped there).", NULL);
    metrics_add_collector(reg, collect, NULL);
}

int logq_start(const logq_config *c, metrics_registry *reg)
{
    register_metrics(reg);
    if (!c->enabled)
        return ML_OK;
    q.max_bytes = (size_t)c->queue_bytes;
    q.flush_ms = c->flush_ms > 0 ? c->flush_ms : LOGQ_FLUSH_MS;
    q.db_url = strdup(c->db_url ? c->db_url : "");
    q.loki_url = strdup(c->loki_url ? c->loki_url : "");
    q.stop = false;
    if (!q.db_url || !q.loki_url || pthread_create(&q.thread, NULL, writer_main, NULL) != 0) {
        ml_log_error("function logs: cannot start the writer");
        return ML_ERR;
    }
    pthread_mutex_lock(&q.mu);
    q.running = true;
    pthread_mutex_unlock(&q.mu);
    q.enabled = true;
    return ML_OK;
}

bool logq_wait_idle(int64_t timeout_ms)
{
    struct timespec until;
    bool ok = true;

    logs_deadline(&until, timeout_ms);
    pthread_mutex_lock(&q.mu);
    uint64_t target = q.pushed;
    while (q.running && q.done < target && ok)
        ok = pthread_cond_timedwait(&q.cv, &q.mu, &until) == 0 || q.done >= target;
    pthread_mutex_unlock(&q.mu);
    return ok;
}

void logq_stop(int64_t timeout_ms)
{
    logq_entry *left;
    size_t n = 0;

    if (!q.running)
        return;
    q.enabled = false; /* capture stops pushing */
    logq_wait_idle(timeout_ms);
    pthread_mutex_lock(&q.mu);
    q.stop = true;
    q.running = false; /* late pushes are dropped as queue_full */
    left = q.head;
    q.head = q.tail = NULL;
    q.lines = q.bytes = 0;
    pthread_cond_broadcast(&q.cv);
    pthread_mutex_unlock(&q.mu);
    pthread_join(q.thread, NULL);
    while (left) {
        logq_entry *next = left->next;
        free(left);
        left = next;
        n++;
    }
    logq_count_dropped("shutdown", (double)n);
    free(q.db_url);
    free(q.loki_url);
    q.db_url = q.loki_url = NULL;
}
