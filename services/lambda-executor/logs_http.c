/* logs_http.c — GET /functions/{fn}/logs (docs/logs.md §1 "Read"): one page of a function's
 * stored lines, oldest first, within the caller's namespace and its retention. */
#include <cJSON.h>
#include <string.h>

#include "app.h"
#include "logs-int.h"
#include "logs.h"
#include "logs_http.h"
#include "logs_query.h"
#include "pgpool.h"
#include "tenant.h"

static void db_unavailable(httpd_resp *resp, const char *why)
{
    httpd_resp_header(resp, "Retry-After", "1");
    httpd_resp_error(resp, 503, "service_unavailable", "lambda database: %s", why);
}

/* The function's stored name in ns ("" written 404 / 503 when none). */
static int find_function(deps *d, const char *ns, const char *fn, char name[128], httpd_resp *resp)
{
    const char *p[3] = { ns, fn, ml_uuid_valid(fn) == ML_OK ? fn : NULL };
    PGresult *r = pg_query(d->db, "logs_fn",
                           "SELECT name FROM functions WHERE namespace = $1"
                           " AND (name = $2 OR ($3::uuid IS NOT NULL AND id = $3::uuid))", 3, p);
    int rc = ML_ERR;

    if (!r)
        db_unavailable(resp, pg_error(d->db));
    else if (PQntuples(r) == 0 || pg_get_text_copy(r, 0, 0, name, 128) != ML_OK)
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", fn);
    else
        rc = ML_OK;
    PQclear(r);
    return rc;
}

/* The request's parameters as logs_query reads them: `stream` may repeat (its values are
 * joined with commas), a follow cursor ("f...": Last-Event-ID's form) is left to follow. */
typedef struct req_params {
    httpd_req *req;
    char streams[64];
    bool has_streams, too_long;
} req_params;

static void add_stream(void *ud, const char *key, const char *value)
{
    req_params *rp = ud;
    size_t used = strlen(rp->streams);

    if (strcmp(key, "stream") != 0)
        return;
    if (ml_snprintf(rp->streams + used, sizeof(rp->streams) - used, "%s%s", rp->has_streams ? "," : "",
                    value ? value : "") != ML_OK)
        rp->too_long = true;
    rp->has_streams = true;
}

static const char *query_param(void *ud, const char *name)
{
    req_params *rp = ud;
    const char *v;

    if (strcmp(name, "stream") == 0)
        return rp->too_long ? "" : rp->has_streams ? rp->streams : NULL;
    v = httpd_query(rp->req, name);
    return v && v[0] == 'f' && strcmp(name, "cursor") == 0 ? NULL : v;
}

/* ?follow=1: the stream goes to the follow thread (logs_follow.c), or 429 when every place
 * is taken. The cursor: Last-Event-ID, else a follow cursor given as ?cursor=. */
static void follow(httpd_req *req, httpd_resp *resp, const char *ns, const char *name, const logs_query *lq)
{
    const char *cursor = httpd_header(req, "Last-Event-ID");
    char txid[24];
    int64_t id;
    httpd_stream *st;

    if (!cursor || !*cursor)
        cursor = httpd_query(req, "cursor");
    if (cursor && logs_follow_parse_cursor(cursor, txid, &id) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_request", "invalid parameter 'cursor' (Last-Event-ID)");
        return;
    }
    if (!logs_follow_admit()) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 429, "too_many_followers", "this executor has no room for another follower");
        return;
    }
    httpd_resp_header(resp, "Cache-Control", "no-cache");
    if (!(st = httpd_resp_stream(resp, "text/event-stream"))) {
        logs_follow_release();
        return;
    }
    if (logs_follow_add(st, ns, name, lq, cursor) != ML_OK) {
        httpd_stream_close(st);
        logs_follow_release();
    }
}

static httpd_result h_logs(httpd_req *req, httpd_resp *resp, void *ud)
{
    ex_app *app = ud;
    const char *fn = httpd_param(req, "fn");
    char ns[TENANT_MAX + 1], name[128], bad[64];
    logs_query lq;
    bool found;
    cJSON *page;
    deps *d;

    if (tenant_from_header(httpd_header(req, TENANT_HEADER), ns) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_namespace", "%s must be a namespace name", TENANT_HEADER);
        return HTTPD_DONE;
    }
    req_params rp = { .req = req };

    httpd_query_each(req, add_stream, &rp);
    if (logs_query_from(query_param, &rp, ml_wall_ms() * 1000, &lq, bad, sizeof(bad)) != ML_OK ||
        (!lq.follow && httpd_query(req, "cursor") && !lq.has_cursor && ml_strlcpy(bad, "cursor", sizeof(bad)) == ML_OK)) {
        httpd_resp_error(resp, 400, "invalid_request", "invalid parameter '%s'", bad);
        return HTTPD_DONE;
    }
    if (!(d = app_thread_deps(app))) {
        db_unavailable(resp, "cannot connect");
        return HTTPD_DONE;
    }
    if (deps_db_acquire(d) != PGPOOL_OK) {
        db_unavailable(resp, "no free connection");
        return HTTPD_DONE;
    }
    found = find_function(d, ns, fn ? fn : "", name, resp) == ML_OK;
    if (found && lq.follow) {
        deps_db_release(d);
        follow(req, resp, ns, name, &lq);
        return HTTPD_DONE;
    }
    if (found) {
        if (!(page = logs_read_page(d->db, ns, name, &lq, app->logs_cfg.retention_days)))
            db_unavailable(resp, pg_error(d->db));
        else
            httpd_resp_json(resp, 200, page);
    }
    deps_db_release(d);
    return HTTPD_DONE;
}

size_t logs_routes(ex_app *app, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "GET", "/functions/{fn}/logs", h_logs, app, 0, true },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}
