/* audit.c — the invocation audit log's API: start and stop, non-blocking submit, flush for
 * read-your-writes, the backlog as metrics and health (see audit.h, audit-int.h and
 * docs/executor-registry.md). */
#include "audit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit-int.h"
#include "log.h"

#define SUBMIT_WAIT_MS 1000      /* longest audit_submit waits for room */

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
        audit_count_error(a, "invalid", 1);
        ml_buf_free(&b);
        return ML_ERR;
    }
    if (!(it = calloc(1, sizeof(*it)))) {
        ml_buf_free(&b);
        audit_count_error(a, "overflow", 1);
        return ML_ERR;
    }
    it->line = ml_buf_steal(&b, &it->len);
    it->at_ms = ml_now_ms();
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += SUBMIT_WAIT_MS / 1000;
    pthread_mutex_lock(&a->lock);
    while (audit_queue_full(a, it->len) && !a->stopping &&
           pthread_cond_timedwait(&a->space, &a->lock, &until) != ETIMEDOUT)
        ;
    if (!audit_queue_full(a, it->len)) {
        it->seq = ++a->seq_submitted;
        audit_list_push(&a->q, it);
        if (a->q.n == 1 || a->q.n >= (size_t)a->cfg.batch_rows || audit_queue_over_hold(a))
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
        audit_count_error(a, "overflow", 1);
        free(it->line);
        free(it);
    }
    return rc;
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
    ml_snprintf_trunc(err, errlen, "%lld rows wait for Postgres (%lld in memory, %lld in the spill file)",
                      (long long)(mem + spill), (long long)mem, (long long)spill);
    return ML_ERR;
}

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

static void audit_free(audit *a)
{
    audit_list_free(&a->q);
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
        ml_snprintf_trunc(err, errlen, "out of memory");
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
        ml_snprintf_trunc(err, errlen, "audit: spill_path, db_url, thread_db, batch_rows and hold_rows are required");
        goto fail;
    }
    if (!(a->db = pg_new(cfg->db_url, &o))) {
        ml_snprintf_trunc(err, errlen, "audit: bad database URL");
        goto fail;
    }
    if (audit_spill_open(a, err, errlen) != ML_OK)
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
    pthread_cond_broadcast(&a->space);
    pthread_mutex_unlock(&a->lock);
    if (a->thread_started)
        pthread_join(a->thread, NULL);
    audit_free(a);
}
