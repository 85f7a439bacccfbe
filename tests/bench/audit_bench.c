/* audit_bench.c — the audit log against a real Postgres (not a test).
 *
 *   audit_bench DB_URL [rows] [threads] [fsync]      (defaults: 100000 4 off)
 *
 * Creates a throw-away function, submits `rows` records like a sync invocation's (a small
 * event and result) from `threads` threads, then waits until all are in Postgres. Prints
 * the submit latency (p50/p99: what an invocation's response waits for) and the writer's
 * throughput (rows/s from the first submit until audit_flush says everything is written;
 * the submitters are far faster, so this is the writer's ceiling). Deletes its rows. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "log.h"
#include "benchtime.h"

typedef struct job {
    audit *a;
    const char *fn;
    int from, to;
    double *lat;
} job;

static void *submitter(void *arg)
{
    job *j = arg;
    static const char event[] = "{\"key\":\"value\",\"n\":42}", result[] = "{\"statusCode\":200,\"body\":\"ok\"}";

    for (int i = j->from; i < j->to; i++) {
        audit_record r = { 0 };
        double t0;

        ml_uuid(r.id);
        ml_strlcpy(r.function_id, j->fn, sizeof(r.function_id));
        r.version = 1;
        r.status = AUDIT_SUCCEEDED;
        r.attempts = 1;
        r.cold_start = 0;
        r.request_id = "bench-request-id";
        r.payload_size = sizeof(event) - 1;
        ml_strlcpy(r.payload_sha256, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                   sizeof(r.payload_sha256));
        r.result = result;
        r.result_len = sizeof(result) - 1;
        r.response_size = (int64_t)r.result_len;
        r.log_tail = "START\nEND\n";
        r.log_tail_len = 10;
        r.duration_ms = 3;
        r.memory_used_mb = 20;
        t0 = bench_now_us();
        if (audit_submit(j->a, &r) != ML_OK)
            fprintf(stderr, "submit failed\n");
        j->lat[i] = bench_now_us() - t0;
    }
    return NULL;
}

static pg_conn *no_thread_db(void *ud)
{
    (void)ud;
    return NULL;
}

static int make_function(pg_conn *db, char fn[ML_UUID_LEN])
{
    char name[64];
    const char *params[1] = { name };
    PGresult *r;
    int rc;

    ml_snprintf_trunc(name, sizeof(name), "auditbench-%d", (int)getpid());
    r = pg_query(db, NULL, "INSERT INTO functions (name, runtime, handler) VALUES ($1, 'python3', 'app.handler')"
                           " RETURNING id", 1, params);
    if (!r)
        return ML_ERR;
    rc = pg_get_text_copy(r, 0, 0, fn, ML_UUID_LEN);
    PQclear(r);
    return rc;
}

int main(int argc, char **argv)
{
    int rows = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 100000, threads = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 4;
    char dir[] = "/tmp/audit_bench_XXXXXX", base[128], fn[ML_UUID_LEN], err[256];
    audit_config c = { 0 };
    pg_conn *db;
    svc s = { 0 };
    audit *a;
    pthread_t th[64];
    job jobs[64];
    double *lat, t0, t1;
    const char *params[1] = { fn };

    if (argc < 2 || rows < 1 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: audit_bench DB_URL [rows] [threads 1..64] [fsync off|batch|always]\n");
        return 2;
    }
    ml_log_init("audit_bench", ML_LOG_WARN);
    db = pg_new(argv[1], NULL);
    if (!db || make_function(db, fn) != ML_OK || !mkdtemp(dir)) {
        fprintf(stderr, "setup failed: %s\n", db ? pg_error(db) : "");
        return 1;
    }
    ml_snprintf_trunc(base, sizeof(base), "%s/audit.spill", dir);
    c.spill_path = base;
#ifdef AUDIT_WAL_MAGIC
    c.fsync = argc > 4 ? argv[4] : "off";
#else /* the audit log before the write-ahead log (issue 15), for a before/after */
    c.queue_max_rows = 1000000, c.queue_max_mb = 4096, c.hold_rows = 20000;
#endif
    c.spill_max_mb = 4096;
    c.batch_rows = 500;
    c.flush_ms = 10;
    c.db_url = argv[1];
    c.thread_db = no_thread_db;
    s.metrics = metrics_new();
    if (!(a = audit_start(&c, &s, err, sizeof(err)))) {
        fprintf(stderr, "audit_start: %s\n", err);
        return 1;
    }
    lat = calloc((size_t)rows, sizeof(double));
    t0 = bench_now_us();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){ a, fn, rows * i / threads, rows * (i + 1) / threads, lat };
        pthread_create(&th[i], NULL, submitter, &jobs[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    t1 = bench_now_us();
    while (audit_flush(a, 60000) != ML_OK)
        ;
    qsort(lat, (size_t)rows, sizeof(double), bench_cmp_double);
#ifndef AUDIT_WAL_MAGIC
    const char *fsync_mode = "memory queue";
#else
    const char *fsync_mode = c.fsync;
#endif
    printf("rows=%d threads=%d fsync=%s  submit p50=%.1f us p99=%.1f us (%.0f submits/s)  writer %.0f rows/s\n",
           rows, threads, fsync_mode, lat[rows / 2], lat[rows * 99 / 100], rows / ((t1 - t0) / 1e6),
           rows / ((bench_now_us() - t0) / 1e6));
    audit_stop(a);
    metrics_free(s.metrics);
    pg_exec(db, NULL, "DELETE FROM functions WHERE id = $1", 1, params, NULL); /* cascades to its rows */
    pg_close(db);
    ml_rmtree(dir);
    free(lat);
    return 0;
}
