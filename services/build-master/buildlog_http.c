/* buildlog_http.c — GET /builds/{build_id}/log?after=&limit=[&follow=1]: see buildlog_http.h.
 *
 * A page: {"build_id","status","lines":[{"seq","ts","level","step","message"}],"next_after"};
 * next_after is the seq to ask after next, null once the build has ended and the page holds
 * its last line. The build has ended when it is completed/failed and its last line is the
 * worker's 'done' line (written just after the status commits), or 5 s after it finished
 * (a build failed without one: dead-lettered, or its log was cut at the limit).
 *
 * Follow: one thread per follower, with its own connection, polls every FOLLOW_POLL_MS and
 * writes each new line as "id: <seq>\ndata: <line>\n\n" (Last-Event-ID resumes), a comment
 * every KEEPALIVE_MS, and ends the stream once the build has ended and every line is sent. */
#include "buildlog_http.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "service.h"
#include "tenant.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define FOLLOW_POLL_MS 200
#define KEEPALIVE_MS 15000

#define ISO_US(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
/* $1 build, $2 namespace, $3 after, $4 limit: status, ended, the page's lines (a JSON array),
 * the last seq on the page (NULL when empty). Another namespace's build: no row. */
static const char page_sql[] =
    "SELECT b.status, b.status IN ('completed', 'failed') AND (b.finished_at < now() - interval"
    " '5 seconds' OR coalesce((SELECT step = 'done' FROM build_log_lines WHERE build_id = b.id"
    " ORDER BY seq DESC LIMIT 1), false)),"
    " coalesce((SELECT json_agg(json_build_object('seq', l.seq, 'ts', " ISO_US("l.ts") ","
    " 'level', l.level, 'step', l.step, 'message', l.message) ORDER BY l.seq) FROM"
    " (SELECT * FROM build_log_lines WHERE build_id = b.id AND seq > $3::int ORDER BY seq"
    " LIMIT $4::int) l), '[]')::text,"
    " (SELECT max(seq) FROM (SELECT seq FROM build_log_lines WHERE build_id = b.id"
    " AND seq > $3::int ORDER BY seq LIMIT $4::int) s)"
    " FROM builds b JOIN build_functions f ON f.id = b.function_id"
    " WHERE b.id = $1::uuid AND f.namespace = $2";

/* One page read. */
typedef struct page {
    char status[16];
    bool ended;
    cJSON *lines;     /* owned: the JSON array */
    int64_t last;     /* the last seq on the page, or the request's after */
    int count;
} page;

typedef struct follower {
    bm_app *app;
    httpd_stream *st;
    char id[ML_UUID_LEN], ns[TENANT_MAX + 1];
    int64_t after;
} follower;

static atomic_int followers;

/* Reads a page; ML_OK, 1 when the build is not visible, ML_ERR (pg_error says why). */
static int read_page(pg_conn *db, const char *id, const char *ns, int64_t after, int64_t limit,
                     page *pg)
{
    char a[24], l[24];
    PGresult *r;
    int ended = 0, rc = ML_ERR;

    memset(pg, 0, sizeof(*pg));
    pg->last = after;
    if (ml_snprintf(a, sizeof(a), "%lld", (long long)after) != ML_OK ||
        ml_snprintf(l, sizeof(l), "%lld", (long long)limit) != ML_OK)
        return ML_ERR;
    r = pg_query(db, "bm_log_page", page_sql, 4, (const char *[]){ id, ns, a, l });
    if (!r)
        return ML_ERR;
    if (PQntuples(r) == 0) {
        rc = 1;
        goto out;
    }
    if (pg_get_text_copy(r, 0, 0, pg->status, sizeof(pg->status)) != ML_OK ||
        pg_get_bool(r, 0, 1, &ended) != ML_OK || !(pg->lines = cJSON_Parse(pg_get_text(r, 0, 2))))
        goto out;
    pg->ended = ended != 0;
    pg->count = cJSON_GetArraySize(pg->lines);
    if (!PQgetisnull(r, 0, 3))
        pg_get_int64(r, 0, 3, &pg->last);
    rc = ML_OK;
out:
    PQclear(r);
    return rc;
}

/* ?after= (or Last-Event-ID) and ?limit=; ML_ERR with 400 written. */
static int parse_query(httpd_req *req, httpd_resp *resp, int64_t *after, int64_t *limit)
{
    const char *a = httpd_query(req, "after"), *l = httpd_query(req, "limit");

    if (!a)
        a = httpd_header(req, "Last-Event-ID");
    *after = 0;
    *limit = PAGE_DEFAULT;
    if (a && ml_parse_int64(a, 0, INT32_MAX, after) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_request", "after must be a line's seq (0 or more)");
        return ML_ERR;
    }
    if (l && ml_parse_int64(l, 1, PAGE_MAX, limit) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_request", "limit must be 1..%d", PAGE_MAX);
        return ML_ERR;
    }
    return ML_OK;
}

/* Writes each line of the page as an event; ML_ERR once the client has gone. */
static int send_lines(httpd_stream *st, const page *pg)
{
    const cJSON *line;

    cJSON_ArrayForEach(line, pg->lines) {
        char *text = cJSON_PrintUnformatted(line), head[48];
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(line, "seq");
        int rc = text && cJSON_IsNumber(seq) &&
                         ml_snprintf(head, sizeof(head), "id: %d\ndata: ", seq->valueint) == ML_OK &&
                         httpd_stream_write(st, head, strlen(head)) == ML_OK &&
                         httpd_stream_write(st, text, strlen(text)) == ML_OK &&
                         httpd_stream_write(st, "\n\n", 2) == ML_OK
                     ? ML_OK
                     : ML_ERR;
        free(text);
        if (rc != ML_OK)
            return ML_ERR;
    }
    return ML_OK;
}

/* The follow loop; ends when the build has ended, the client goes, or the service stops. */
static void follow(follower *f, pg_conn *db)
{
    int64_t quiet_since = ml_now_ms();

    while (!svc_stopping() && !httpd_stream_gone(f->st)) {
        page pg;
        int rc = read_page(db, f->id, f->ns, f->after, PAGE_MAX, &pg);

        if (rc == ML_OK && send_lines(f->st, &pg) != ML_OK)
            rc = ML_ERR;
        f->after = pg.last;
        cJSON_Delete(pg.lines);
        if (rc == 1 || (rc == ML_OK && pg.ended && pg.count < PAGE_MAX))
            return;
        if (rc == ML_ERR)
            ml_log_kv(ML_LOG_WARN, "build log follow: read failed", "build_id", f->id, "error",
                      pg_error(db), NULL);
        if (rc == ML_OK && pg.count > 0)
            quiet_since = ml_now_ms();
        if (ml_now_ms() - quiet_since >= KEEPALIVE_MS) {
            if (httpd_stream_write(f->st, ": keepalive\n\n", 13) != ML_OK)
                return;
            quiet_since = ml_now_ms();
        }
        if (rc != ML_OK || pg.count < PAGE_MAX)
            ml_sleep_ms(FOLLOW_POLL_MS);
    }
}

static void *follow_main(void *arg)
{
    follower *f = arg;
    pg_conn *db = pg_new(f->app->deps.build_db_url, NULL);

    if (db)
        follow(f, db);
    pg_close(db);
    httpd_stream_close(f->st);
    free(f);
    atomic_fetch_sub(&followers, 1);
    return NULL;
}

/* Turns resp into the stream and hands it to a follower thread (429 when there are too
 * many). The build's visibility was checked by the caller. */
static void start_follow(bm_app *app, const char *id, const char *ns, int64_t after, httpd_resp *resp)
{
    follower *f;
    pthread_attr_t attr;
    pthread_t t;

    if (atomic_fetch_add(&followers, 1) >= BM_LOG_MAX_FOLLOWERS) {
        atomic_fetch_sub(&followers, 1);
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 429, "too_many_followers", "at most %d build log followers at once",
                         BM_LOG_MAX_FOLLOWERS);
        return;
    }
    if (!(f = calloc(1, sizeof(*f)))) {
        atomic_fetch_sub(&followers, 1);
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    f->app = app;
    f->after = after;
    ml_strlcpy(f->id, id, sizeof(f->id));
    ml_strlcpy(f->ns, ns, sizeof(f->ns));
    httpd_resp_header(resp, "Cache-Control", "no-cache");
    resp->status = 200;
    if (!(f->st = httpd_resp_stream(resp, "text/event-stream"))) {
        free(f);
        atomic_fetch_sub(&followers, 1);
        return;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, follow_main, f) != 0) {
        httpd_stream_close(f->st); /* the client sees an empty stream end */
        free(f);
        atomic_fetch_sub(&followers, 1);
    }
    pthread_attr_destroy(&attr);
}

/* The page as the response. */
static void reply_page(const char *id, page *pg, int64_t limit, httpd_resp *resp)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "build_id", id);
    cJSON_AddStringToObject(o, "status", pg->status);
    cJSON_AddItemToObject(o, "lines", pg->lines);
    pg->lines = NULL;
    if (pg->ended && pg->count < limit)
        cJSON_AddNullToObject(o, "next_after");
    else
        cJSON_AddNumberToObject(o, "next_after", (double)pg->last);
    httpd_resp_json(resp, 200, o);
}

static httpd_result h_log(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *id = httpd_param(req, "build_id"), *fl = httpd_query(req, "follow");
    bool follow_mode = fl && (strcmp(fl, "1") == 0 || strcmp(fl, "true") == 0);
    char ns[TENANT_MAX + 1];
    int64_t after, limit;
    page pg = { 0 };
    deps *d;
    int rc;

    if (tenant_from_header(httpd_header(req, TENANT_HEADER), ns) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_namespace", "%s must be a namespace name", TENANT_HEADER);
        return HTTPD_DONE;
    }
    if (parse_query(req, resp, &after, &limit) != ML_OK)
        return HTTPD_DONE;
    if (ml_uuid_valid(id) != ML_OK) {
        httpd_resp_error(resp, 404, "not_found", "no build '%s'", id);
        return HTTPD_DONE;
    }
    d = bm_deps(ud);
    if (deps_db_acquire_http(d, resp, "build database") != ML_OK)
        return HTTPD_DONE;
    rc = read_page(d->db, id, ns, after, follow_mode ? 1 : limit, &pg);
    if (rc == ML_ERR) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "build database: %s", pg_error(d->db));
    }
    deps_db_release(d);
    if (rc == 1)
        httpd_resp_error(resp, 404, "not_found", "no build '%s'", id);
    else if (rc == ML_OK && follow_mode)
        start_follow(ud, id, ns, after, resp); /* the follower reads from the start again */
    else if (rc == ML_OK)
        reply_page(id, &pg, limit, resp);
    cJSON_Delete(pg.lines);
    return HTTPD_DONE;
}

void bm_buildlog_wait_followers(int64_t timeout_ms)
{
    int64_t end = ml_now_ms() + timeout_ms;

    while (atomic_load(&followers) > 0 && ml_now_ms() < end)
        ml_sleep_ms(20);
}

size_t bm_buildlog_routes(bm_app *app, httpd_route *routes, size_t max)
{
    const httpd_route all[] = {
        { "GET", "/builds/{build_id}/log", h_log, app, 0, true },
    };
    return httpd_routes_copy(routes, max, all, ML_ARRAY_LEN(all));
}
