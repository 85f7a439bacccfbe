/* audit.c — the invocation audit log's API: start and stop, submit (an append to the
 * write-ahead log), flush for read-your-writes, the backlog as metrics and health (see
 * audit.h, audit-int.h and docs/audit.md). */
#include "audit.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit-int.h"
#include "log.h"

#define REFUSED_MS 1000 /* audit_available says no this long after the disk refused an append */

int audit_submit(audit *a, const audit_record *rec)
{
    static const char zero_hdr[AUDIT_WAL_HDR];
    char err[160];
    ml_buf b;
    int rc = ML_ERR;

    ml_buf_init(&b, 0);
    if (ml_buf_append(&b, zero_hdr, sizeof(zero_hdr)) != ML_OK || audit_encode(rec, &b, err, sizeof(err)) != ML_OK ||
        b.len - AUDIT_WAL_HDR > AUDIT_WAL_REC_MAX) {
        ml_log_kv(ML_LOG_ERROR, "audit record refused", "invocation_id", rec->id, "error",
                  b.len > AUDIT_WAL_HDR ? "record too large" : err, NULL);
        audit_count_error(a, "invalid", 1);
        goto out;
    }
    audit_wal_header(b.data + AUDIT_WAL_HDR, b.len - AUDIT_WAL_HDR, (unsigned char *)b.data);
    if (audit_log_append(a, &b) == ML_OK) {
        rc = ML_OK;
        goto out;
    }
    audit_count_error(a, "overflow", 1);
    pthread_mutex_lock(&a->lock);
    if (ml_now_ms() - a->dropped_logged_ms > 10000) {
        a->dropped_logged_ms = ml_now_ms();
        ml_log_error("audit: the disk refused an append to %s.*.wal (%s); records are dropped", a->base,
                     strerror(errno));
    }
    pthread_mutex_unlock(&a->lock);
out:
    ml_buf_free(&b);
    return rc;
}

bool audit_available(audit *a)
{
    bool ok;

    pthread_mutex_lock(&a->lock);
    ok = a->wal_bytes < a->cfg.spill_max_mb * 1024 * 1024 &&
         (a->refused_ms == 0 || ml_now_ms() - a->refused_ms >= REFUSED_MS);
    pthread_mutex_unlock(&a->lock);
    return ok;
}

int audit_flush(audit *a, int64_t timeout_ms)
{
    struct timespec ts;
    uint64_t target;
    int rc;

    audit_abs_deadline(&ts, timeout_ms);
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
    n = (int64_t)(a->seq_submitted - a->seq_done);
    pthread_mutex_unlock(&a->lock);
    return n;
}

static void collect(metrics_registry *reg, void *ud)
{
    audit *a = ud;
    int64_t bytes;

    ML_UNUSED(reg);
    pthread_mutex_lock(&a->lock);
    bytes = a->wal_bytes;
    pthread_mutex_unlock(&a->lock);
    metric_set(a->m_backlog, NULL, (double)audit_backlog(a));
    metric_set(a->m_wal_bytes, NULL, (double)bytes);
}

/* Optional check: degraded while rows wait for Postgres or the log cannot take more. */
static int check_audit(void *ud, char *err, size_t errlen)
{
    audit *a = ud;
    bool down, avail = audit_available(a);
    int64_t rows = audit_backlog(a), bytes;

    pthread_mutex_lock(&a->lock);
    down = a->pg_down;
    bytes = a->wal_bytes;
    pthread_mutex_unlock(&a->lock);
    if (!avail) {
        ml_snprintf_trunc(err, errlen, "the audit log takes no more (%lld MiB, limit %lld MiB, or the disk refused "
                          "a write); %lld rows wait for Postgres", (long long)(bytes >> 20),
                          (long long)a->cfg.spill_max_mb, (long long)rows);
        return ML_ERR;
    }
    if (!down)
        return ML_OK;
    ml_snprintf_trunc(err, errlen, "%lld rows wait for Postgres in the audit log (%lld MiB)", (long long)rows,
                      (long long)(bytes >> 20));
    return ML_ERR;
}

size_t audit_cfg_vars(audit_config *c, cfg_var *vars, size_t max)
{
    const cfg_var all[] = {
        { "MINILAMBDA_AUDIT_SPILL_PATH", CFG_STR, "/var/tmp/minilambda-executor-audit.jsonl", 0, 0, NULL,
          "prefix of the audit write-ahead log's files (<path>.lock, .ckpt, .<n>.wal; one log per executor process)",
          &c->spill_path, false },
        { "MINILAMBDA_AUDIT_FSYNC", CFG_STR, "off", 0, 0, NULL,
          "audit log fdatasync: off (survives a process crash), batch (every 10 ms), always (survives power loss)",
          &c->fsync, false },
        { "MINILAMBDA_AUDIT_SPILL_MAX_MB", CFG_INT, "4096", 1, 1048576, NULL,
          "audit log size beyond which it reports itself full (new invocations may get 503)", &c->spill_max_mb, false },
        { "MINILAMBDA_AUDIT_BATCH_ROWS", CFG_INT, "500", 1, 10000, NULL,
          "audit rows per INSERT", &c->batch_rows, false },
        { "MINILAMBDA_AUDIT_FLUSH_MS", CFG_INT, "10", 0, 10000, NULL,
          "longest an audit row waits for others to share its INSERT", &c->flush_ms, false },
    };
    return cfg_copy(vars, max, all, ML_ARRAY_LEN(all));
}

static void audit_free(audit *a)
{
    audit_log_close(a);
    pg_close(a->db);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->work);
    pthread_cond_destroy(&a->done);
    pthread_cond_destroy(&a->synced);
    free(a);
}

static int parse_fsync(audit *a, char *err, size_t errlen)
{
    const char *f = a->cfg.fsync ? a->cfg.fsync : "off";

    if (strcmp(f, "off") == 0)
        a->fsync_mode = AUDIT_FSYNC_OFF;
    else if (strcmp(f, "batch") == 0)
        a->fsync_mode = AUDIT_FSYNC_BATCH;
    else if (strcmp(f, "always") == 0)
        a->fsync_mode = AUDIT_FSYNC_ALWAYS;
    else {
        ml_snprintf_trunc(err, errlen, "MINILAMBDA_AUDIT_FSYNC must be off, batch or always (not \"%s\")", f);
        return ML_ERR;
    }
    return ML_OK;
}

static void register_metrics(audit *a, svc *s)
{
    a->m_backlog = metrics_gauge(s->metrics, "minilambda_audit_backlog",
                                 "Audit rows in the write-ahead log not yet in Postgres.", NULL);
    a->m_wal_bytes = metrics_gauge(s->metrics, "minilambda_audit_spill_bytes",
                                   "Size of the audit write-ahead log's segments on disk.", NULL);
    a->m_written = metrics_counter(s->metrics, "minilambda_audit_rows_written_total",
                                   "Audit rows written to Postgres.", NULL);
    a->m_errors = metrics_counter(s->metrics, "minilambda_audit_write_errors_total",
                                  "Audit write problems: unavailable (a failed attempt), rejected (a row "
                                  "Postgres refused, dropped), overflow (the disk refused an append, dropped), "
                                  "corrupt (a damaged log record skipped), invalid.",
                                  "kind");
}

audit *audit_start(const audit_config *cfg, svc *s, char *err, size_t errlen)
{
    pg_options o = { .connect_timeout_s = 2, .reconnect_attempts = 1, .application_name = "lambda-executor-audit" };
    audit *a = calloc(1, sizeof(*a));

    if (!a) {
        ml_snprintf_trunc(err, errlen, "out of memory");
        return NULL;
    }
    a->cfg = *cfg;
    a->lock_fd = a->wal_fd = a->read_fd = a->ckpt_fd = -1;
    a->base = cfg->spill_path;
    if (a->cfg.segment_bytes <= 0)
        a->cfg.segment_bytes = AUDIT_SEGMENT_BYTES;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->work, NULL);
    pthread_cond_init(&a->done, NULL);
    pthread_cond_init(&a->synced, NULL);
    o.statement_timeout_ms = (int)cfg->statement_timeout_ms;
    if (!cfg->spill_path || !cfg->db_url || !cfg->thread_db || cfg->batch_rows < 1) {
        ml_snprintf_trunc(err, errlen, "audit: spill_path, db_url, thread_db and batch_rows are required");
        goto fail;
    }
    if (parse_fsync(a, err, errlen) != ML_OK)
        goto fail;
    if (!(a->db = pg_new(cfg->db_url, &o))) {
        ml_snprintf_trunc(err, errlen, "audit: bad database URL");
        goto fail;
    }
    register_metrics(a, s);
    if (audit_log_open(a, err, errlen) != ML_OK || audit_legacy_import(a, err, errlen) != ML_OK)
        goto fail;
    if (pthread_create(&a->thread, NULL, audit_writer_main, a) != 0) {
        ml_snprintf_trunc(err, errlen, "audit: cannot start the writer thread");
        goto fail;
    }
    a->thread_started = true;
    /* last: both keep a pointer to a */
    if (metrics_add_collector(s->metrics, collect, a) != ML_OK ||
        health_add(&s->health, "audit", check_audit, a, false) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "audit: cannot register the metrics collector or the health check");
        audit_stop(a);
        return NULL;
    }
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
    pthread_mutex_unlock(&a->lock);
    if (a->thread_started)
        pthread_join(a->thread, NULL);
    audit_free(a);
}
