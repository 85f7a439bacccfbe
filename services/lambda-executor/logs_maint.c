/* logs_maint.c — function-log retention (docs/logs.md §1 "Store"): one executor at a time
 * (a session advisory lock) makes partitions ahead, drops day partitions older than the
 * longest retention of any namespace, and deletes in bounded batches the older rows of
 * namespaces with a shorter one. Runs on its own thread with its own connection. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "logs-int.h"
#include "logs.h"
#include "prio.h"

#define MAINT_LOCK "1819240307, 1" /* classid "logs", objid 1: held only during a pass */
#define MAINT_DELETE_BATCH 5000
#define MAINT_MAX_BATCHES 200      /* per pass: the next pass goes on */

/* Whole-int result of a one-row query; ML_ERR on a database error. */
static int query_int(pg_conn *db, const char *name, const char *sql, int n, const char *const *p,
                     int64_t *out)
{
    PGresult *r = pg_query(db, name, sql, n, p);
    int rc = r && pg_get_int64(r, 0, 0, out) == ML_OK ? ML_OK : ML_ERR;

    PQclear(r);
    return rc;
}

/* Drops the day partitions wholly older than max_days; counts them into *dropped. */
static int drop_partitions(pg_conn *db, const char *max_days, int64_t *dropped)
{
    PGresult *r = pg_query(db, "logs_old_parts",
                           "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                           " WHERE i.inhparent = 'function_logs'::regclass"
                           " AND c.relname ~ '^function_logs_p[0-9]{8}$'"
                           " AND ((to_date(substr(c.relname, 16), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC')"
                           "  <= now() - $1::int * interval '1 day' ORDER BY 1",
                           1, (const char *[]){ max_days });
    int rc = r ? ML_OK : ML_ERR;

    for (int i = 0; r && i < PQntuples(r) && rc == ML_OK; i++) {
        char sql[128];
        /* the name matched ^function_logs_p[0-9]{8}$ above: safe to splice */
        rc = ml_snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", PQgetvalue(r, i, 0));
        if (rc == ML_OK)
            rc = pg_exec(db, NULL, sql, 0, NULL, NULL);
        if (rc == ML_OK) {
            ml_log_info("function logs: dropped partition %s", PQgetvalue(r, i, 0));
            (*dropped)++;
        }
    }
    PQclear(r);
    return rc;
}

/* Deletes rows older than their namespace's retention (those newer than the longest one,
 * and the default partition's), batch rows at a time. */
static int delete_expired(pg_conn *db, const char *def_days, int64_t batch, int64_t *deleted)
{
    char lim[24], min_days[24];
    int64_t n = 0, min = 0;
    const char *p[3] = { def_days, lim, min_days };

    if (query_int(db, "logs_min_ret", "SELECT least($1::int, coalesce(min(log_retention_days), $1::int))"
                  " FROM namespaces", 1, p, &min) != ML_OK)
        return ML_ERR;
    ml_snprintf_trunc(min_days, sizeof(min_days), "%lld", (long long)min);
    ml_snprintf_trunc(lim, sizeof(lim), "%lld", (long long)batch);
    for (int i = 0; i < MAINT_MAX_BATCHES; i++) {
        /* $3 bounds ts for partition pruning; the row's own retention decides */
        if (pg_exec(db, "logs_expire",
                    "DELETE FROM function_logs WHERE (namespace, function, ts, id) IN ("
                    " SELECT l.namespace, l.function, l.ts, l.id FROM function_logs l"
                    " LEFT JOIN namespaces n ON n.name = l.namespace"
                    " WHERE l.ts < now() - $3::int * interval '1 day'"
                    " AND l.ts < now() - coalesce(n.log_retention_days, $1::int) * interval '1 day'"
                    " LIMIT $2::int)",
                    3, p, &n) != ML_OK)
            return ML_ERR;
        *deleted += n;
        if (n < batch)
            break;
    }
    return ML_OK;
}

int logs_maint_run(pg_conn *db, int64_t default_days, int64_t batch, int64_t *dropped,
                   int64_t *deleted)
{
    char def[24], max_days[24];
    int64_t got = 0, max = 0, drop_n = 0, del_n = 0;
    int rc;

    if (query_int(db, "logs_lock", "SELECT pg_try_advisory_lock(" MAINT_LOCK ")::int", 0, NULL,
                  &got) != ML_OK)
        return ML_ERR;
    if (!got)
        return ML_OK; /* another executor's turn */
    ml_snprintf_trunc(def, sizeof(def), "%lld", (long long)default_days);
    rc = pg_exec(db, "logs_parts", "SELECT ml_function_logs_partition((now() AT TIME ZONE 'UTC')::date + i)"
                 " FROM generate_series(0, 2) AS i", 0, NULL, NULL);
    if (rc == ML_OK)
        rc = query_int(db, "logs_max_ret", "SELECT greatest($1::int, coalesce(max(log_retention_days), 0))"
                       " FROM namespaces", 1, (const char *[]){ def }, &max);
    ml_snprintf_trunc(max_days, sizeof(max_days), "%lld", (long long)max);
    if (rc == ML_OK)
        rc = drop_partitions(db, max_days, &drop_n);
    if (rc == ML_OK)
        rc = delete_expired(db, def, batch > 0 ? batch : MAINT_DELETE_BATCH, &del_n);
    if (pg_is_usable(db))
        PQclear(pg_query(db, "logs_unlock", "SELECT pg_advisory_unlock(" MAINT_LOCK ")", 0, NULL));
    if (dropped)
        *dropped = drop_n;
    if (deleted)
        *deleted = del_n;
    return rc;
}

/* ---- the maintenance thread ---- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running, stop;
    pthread_t thread;
    pg_conn *db;
    int64_t days, interval_ms;
    metric *m_dropped;
} mt = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* Sleeps interval_ms unless asked to stop; true while running. */
static bool maint_wait(void)
{
    struct timespec until;
    bool stop;

    logs_deadline(&until, mt.interval_ms);
    pthread_mutex_lock(&mt.mu);
    while (!mt.stop && pthread_cond_timedwait(&mt.cv, &mt.mu, &until) == 0)
        ;
    stop = mt.stop;
    pthread_mutex_unlock(&mt.mu);
    return !stop;
}

static void *maint_main(void *arg)
{
    (void)arg;
    ex_thread_background("log-maint");
    do {
        int64_t dropped = 0, deleted = 0;

        if (logs_maint_run(mt.db, mt.days, MAINT_DELETE_BATCH, &dropped, &deleted) != ML_OK)
            ml_log_warn("function logs: maintenance: %s", pg_error(mt.db));
        if (dropped && mt.m_dropped)
            metric_add(mt.m_dropped, NULL, (double)dropped);
        if (deleted)
            ml_log_info("function logs: %lld expired lines deleted", (long long)deleted);
    } while (maint_wait());
    return NULL;
}

int logs_maint_start(const logs_config *c, metrics_registry *reg)
{
    pg_options o = { .application_name = "minilambda-logs-maint", .statement_timeout_ms = 60000 };

    if (reg)
        mt.m_dropped = metrics_counter(reg, "minilambda_function_log_partitions_dropped_total",
                                       "Day partitions of function logs dropped by retention.", NULL);
    mt.days = c->retention_days;
    mt.interval_ms = c->maint_interval_ms;
    mt.stop = false;
    if (!(mt.db = pg_new(c->q.db_url, &o)) || pthread_create(&mt.thread, NULL, maint_main, NULL) != 0) {
        ml_log_error("function logs: cannot start the maintenance thread");
        pg_close(mt.db);
        mt.db = NULL;
        return ML_ERR;
    }
    mt.running = true;
    return ML_OK;
}

void logs_maint_stop(void)
{
    if (!mt.running)
        return;
    pthread_mutex_lock(&mt.mu);
    mt.stop = true;
    pthread_cond_broadcast(&mt.cv);
    pthread_mutex_unlock(&mt.mu);
    pthread_join(mt.thread, NULL);
    pg_close(mt.db);
    mt.db = NULL;
    mt.running = false;
}

size_t logs_cfg_vars(logs_config *c, cfg_var *vars, size_t max)
{
    const cfg_var own[] = {
        { "MINILAMBDA_LOG_RETENTION_DAYS", CFG_INT, "7", 1, 365, NULL,
          "days function logs are kept for namespaces without their own log_retention_days",
          &c->retention_days, false },
        { "MINILAMBDA_LOG_MAINTENANCE_INTERVAL_MS", CFG_INT, "60000", 100, 86400000, NULL,
          "how often function-log retention runs (partitions ahead, old ones dropped, short "
          "retentions deleted; one executor at a time)", &c->maint_interval_ms, false },
        { "MINILAMBDA_LOG_MAX_FOLLOWERS", CFG_INT, "64", 1, 10000, NULL,
          "clients following function logs (?follow=1) on this executor at once; more get 429",
          &c->max_followers, false },
    };
    size_t n = logq_cfg_vars(&c->q, vars, max);

    return n + cfg_copy(vars + n, max - n, own, ML_ARRAY_LEN(own));
}
