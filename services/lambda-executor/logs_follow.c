/* logs_follow.c — GET /functions/{fn}/logs?follow=1 (docs/logs.md §1 "Read"): Server-Sent
 * Events fed by one follow thread per executor. Every LOGS_FOLLOW_POLL_MS the thread reads
 * pg_snapshot_xmin(pg_current_snapshot()) once; each follower then reads its rows past its
 * (txid, id) cursor whose transaction is below that xmin — every transaction below it has
 * ended, so a batch that commits late is never skipped — in commit order. A follower whose
 * last read saw the same xmin and came back short has nothing new and costs no query.
 *
 * Rows are read from ts >= the follower's floor: its since, raised to LOGS_FOLLOW_LATE_US
 * before the newest line it was sent, so a poll does not rescan the whole window; a batch
 * stored more than that after its lines were read would be missed (the writer gives up
 * after two tries, far sooner). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "log.h"
#include "logs-int.h"
#include "logs.h"
#include "logs_query.h"

#define LOGS_FOLLOW_POLL_MS 25
#define LOGS_FOLLOW_KEEPALIVE_MS 15000
#define LOGS_FOLLOW_BATCH 500
#define LOGS_FOLLOW_LATE_US (600LL * 1000000) /* ten minutes */
#define LOGS_FOLLOW_PENDING_MAX (512u * 1024u) /* a slow client waits, the others go on */

typedef struct follower {
    struct follower *next;
    httpd_stream *s;
    char ns[64], name[128], q[1025];
    logs_query lq;
    char txid[24];              /* the cursor: the last row sent (txid "0": none yet) */
    int64_t id;
    int64_t floor_us;           /* rows before this ts are not read (see the top) */
    char seen_xmin[24];         /* xmin of the last read that came back short */
    int64_t last_write_ms;
} follower;

/* LOGS_SELECT_FILTERED with $3 the floor, $8/$9 the cursor (txid, id), $10 the xmin. */
#define FOLLOW_SQL                                                                              \
    LOGS_SELECT_FILTERED                                                                        \
    " AND (txid, id) > ($8::xid8, $9::bigint) AND txid < $10::xid8"                              \
    " ORDER BY txid, id LIMIT 500" /* LOGS_FOLLOW_BATCH */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    follower *incoming;         /* added by handlers, taken by the thread */
    atomic_int count;           /* followers, incoming included */
    int64_t max, def_days;
    bool running, stop;
    pthread_t thread;
    char *db_url;
} fw = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

int logs_follow_parse_cursor(const char *s, char txid[24], int64_t *id)
{
    const char *dot = s && s[0] == 'f' ? strchr(s, '.') : NULL;
    int64_t t;
    size_t n;

    if (!dot || (n = (size_t)(dot - s - 1)) == 0 || n >= 24)
        return ML_ERR;
    memcpy(txid, s + 1, n);
    txid[n] = '\0';
    return ml_parse_int64(txid, 0, INT64_MAX, &t) == ML_OK && ml_parse_int64(dot + 1, 0, INT64_MAX, id) == ML_OK
               ? ML_OK
               : ML_ERR;
}

int logs_follow_add(httpd_stream *s, const char *ns, const char *name, const logs_query *lq,
                    const char *cursor)
{
    follower *f = calloc(1, sizeof(*f));

    if (!f)
        return ML_ERR;
    f->s = s;
    f->lq = *lq;
    ml_strlcpy(f->ns, ns, sizeof(f->ns));
    ml_strlcpy(f->name, name, sizeof(f->name));
    if (lq->q) {
        ml_strlcpy(f->q, lq->q, sizeof(f->q));
        f->lq.q = f->q;
    }
    if (!cursor || logs_follow_parse_cursor(cursor, f->txid, &f->id) != ML_OK)
        ml_strlcpy(f->txid, "0", sizeof(f->txid));
    f->floor_us = lq->since_us;
    f->last_write_ms = ml_now_ms();
    pthread_mutex_lock(&fw.mu);
    f->next = fw.incoming;
    fw.incoming = f;
    pthread_cond_signal(&fw.cv);
    pthread_mutex_unlock(&fw.mu);
    return ML_OK;
}

bool logs_follow_admit(void)
{
    if (atomic_fetch_add(&fw.count, 1) < fw.max && fw.running)
        return true;
    atomic_fetch_sub(&fw.count, 1);
    return false;
}

void logs_follow_release(void)
{
    atomic_fetch_sub(&fw.count, 1);
}

/* One SSE event per row; advances the cursor and the floor. ML_ERR when the client is gone. */
static int send_rows(follower *f, const PGresult *r)
{
    ml_buf b;
    int rc = ML_OK;

    ml_buf_init(&b, 0);
    for (int i = 0; i < PQntuples(r) && rc == ML_OK; i++) {
        cJSON *o = logs_row_json(r, i);
        char *data = o ? cJSON_PrintUnformatted(o) : NULL;
        int64_t ts = 0;

        rc = data && ml_buf_printf(&b, "id: f%s.%s\ndata: %s\n\n", PQgetvalue(r, i, 8),
                                   PQgetvalue(r, i, 7), data) == ML_OK ? ML_OK : ML_ERR;
        free(data);
        cJSON_Delete(o);
        ml_strlcpy(f->txid, PQgetvalue(r, i, 8), sizeof(f->txid));
        pg_get_int64(r, i, 7, &f->id);
        if (pg_get_int64(r, i, 6, &ts) == ML_OK && ts - LOGS_FOLLOW_LATE_US > f->floor_us)
            f->floor_us = ts - LOGS_FOLLOW_LATE_US;
    }
    if (rc == ML_OK && b.len) {
        rc = httpd_stream_write(f->s, b.data, b.len);
        f->last_write_ms = ml_now_ms();
    }
    ml_buf_free(&b);
    return rc;
}

/* Reads and sends what is new for f below xmin; ML_ERR when f is over (client gone). */
static int poll_one(pg_conn *db, follower *f, const char *xmin)
{
    char floor[24], until[24], cid[24], days[24];
    const logs_query *lq = &f->lq;
    const char *p[11] = { f->ns, f->name, floor, lq->has_until ? until : NULL,
                          lq->request_id[0] ? lq->request_id : NULL, lq->streams[0] ? lq->streams : NULL,
                          lq->q, f->txid, cid, xmin, days };
    PGresult *r;
    int rc = ML_OK;

    if (strcmp(f->seen_xmin, xmin) == 0 || httpd_stream_pending(f->s) > LOGS_FOLLOW_PENDING_MAX)
        return httpd_stream_gone(f->s) ? ML_ERR : ML_OK;
    ml_snprintf_trunc(floor, sizeof(floor), "%lld", (long long)f->floor_us);
    ml_snprintf_trunc(until, sizeof(until), "%lld", (long long)lq->until_us);
    ml_snprintf_trunc(cid, sizeof(cid), "%lld", (long long)f->id);
    ml_snprintf_trunc(days, sizeof(days), "%lld", (long long)fw.def_days);
    if (!(r = pg_query(db, "logs_follow", FOLLOW_SQL, 11, p)))
        return ML_OK; /* logged by the caller's next xmin failure, if it lasts */
    if (PQntuples(r) < LOGS_FOLLOW_BATCH)
        ml_strlcpy(f->seen_xmin, xmin, sizeof(f->seen_xmin));
    rc = send_rows(f, r);
    PQclear(r);
    return rc;
}

static void keepalive(follower *f)
{
    if (ml_now_ms() - f->last_write_ms < LOGS_FOLLOW_KEEPALIVE_MS)
        return;
    f->last_write_ms = ml_now_ms();
    if (httpd_stream_write(f->s, ": keepalive\n\n", 13) != ML_OK)
        f->seen_xmin[0] = '\0'; /* noticed as gone below */
}

/* One round over every follower; those whose client went are closed and freed. */
static follower *poll_all(pg_conn *db, follower *list)
{
    PGresult *r = list ? pg_query(db, "logs_xmin", "SELECT pg_snapshot_xmin(pg_current_snapshot())::text", 0, NULL) : NULL;
    const char *xmin = r ? pg_get_text(r, 0, 0) : NULL;
    follower **at = &list;

    if (list && !r)
        ml_log_warn("function logs: follow: %s", pg_error(db));
    while (*at) {
        follower *f = *at;
        if (xmin)
            keepalive(f);
        if ((xmin && poll_one(db, f, xmin) != ML_OK) || httpd_stream_gone(f->s)) {
            *at = f->next;
            httpd_stream_close(f->s);
            free(f);
            logs_follow_release();
            continue;
        }
        at = &f->next;
    }
    PQclear(r);
    return list;
}

static void close_all(follower *list)
{
    while (list) {
        follower *next = list->next;
        httpd_stream_close(list->s);
        free(list);
        logs_follow_release();
        list = next;
    }
}

static void *follow_main(void *arg)
{
    pg_options o = { .application_name = "minilambda-logs-follow", .statement_timeout_ms = 5000 };
    pg_conn *db = pg_new(fw.db_url, &o);
    follower *list = NULL;

    (void)arg;
    pthread_mutex_lock(&fw.mu);
    while (!fw.stop) {
        struct timespec until;
        while (fw.incoming) { /* adopt the new followers */
            follower *f = fw.incoming;
            fw.incoming = f->next;
            f->next = list;
            list = f;
        }
        pthread_mutex_unlock(&fw.mu);
        list = poll_all(db, list);
        pthread_mutex_lock(&fw.mu);
        logs_deadline(&until, LOGS_FOLLOW_POLL_MS);
        /* idle with no follower: wait for one; else the poll interval */
        while (!fw.stop && !list && !fw.incoming)
            pthread_cond_wait(&fw.cv, &fw.mu);
        if (list && !fw.stop)
            pthread_cond_timedwait(&fw.cv, &fw.mu, &until);
    }
    close_all(fw.incoming);
    fw.incoming = NULL;
    pthread_mutex_unlock(&fw.mu);
    close_all(list);
    pg_close(db);
    return NULL;
}

int logs_follow_start(const logs_config *c)
{
    fw.max = c->max_followers;
    fw.def_days = c->retention_days;
    fw.stop = false;
    if (!(fw.db_url = strdup(c->q.db_url ? c->q.db_url : "")) ||
        pthread_create(&fw.thread, NULL, follow_main, NULL) != 0) {
        ml_log_error("function logs: cannot start the follow thread");
        return ML_ERR;
    }
    fw.running = true;
    return ML_OK;
}

void logs_follow_stop(void)
{
    if (!fw.running)
        return;
    pthread_mutex_lock(&fw.mu);
    fw.stop = true;
    fw.running = false;
    pthread_cond_broadcast(&fw.cv);
    pthread_mutex_unlock(&fw.mu);
    pthread_join(fw.thread, NULL);
    free(fw.db_url);
    fw.db_url = NULL;
}
