/* dlq.c — listing, replaying and discarding dead-lettered events. */
#include "dlq.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "crypto.h"
#include "pgpool.h"

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static deps *need_db(ex_app *app, httpd_resp *resp)
{
    deps *d = app_thread_deps(app);

    if (!d) {
        httpd_resp_header(resp, "Retry-After", "1");
        httpd_resp_error(resp, 503, "service_unavailable", "cannot reach the database");
    }
    return d;
}

/* Borrows d's connection for one group of statements (deps_db_acquire); ML_ERR with 503
 * and Retry-After written when none came free. Pair with deps_db_release. */
static int borrow(deps *d, httpd_resp *resp)
{
    pgpool_status st = deps_db_acquire(d);

    if (st == PGPOOL_OK)
        return ML_OK;
    httpd_resp_header(resp, "Retry-After", "1");
    httpd_resp_error(resp, 503, "service_unavailable", "lambda database: no free connection (%s)",
                     pgpool_status_str(st));
    return ML_ERR;
}

static void db_error(deps *d, httpd_resp *resp)
{
    httpd_resp_header(resp, "Retry-After", "1");
    httpd_resp_error(resp, 503, "service_unavailable", "lambda database: %s", pg_error(d->db));
}

/* One row (binary results: column 0 is JSON text, column 1 the raw event) as an item whose
 * "event" is the event itself when it is JSON, else its base64. */
static cJSON *entry_json(const PGresult *r, int row)
{
    cJSON *o = cJSON_ParseWithLength(PQgetvalue(r, row, 0), (size_t)PQgetlength(r, row, 0));
    const char *ev = PQgetvalue(r, row, 1);
    size_t len = (size_t)PQgetlength(r, row, 1);
    cJSON *event = cJSON_ParseWithLength(ev, len);

    if (!o)
        o = cJSON_CreateObject();
    if (!event) {
        char *b64 = malloc(CRYPTO_BASE64_ENC_SIZE(len));
        if (b64 && crypto_base64_encode(ev, len, b64, CRYPTO_BASE64_ENC_SIZE(len)) == ML_OK)
            event = cJSON_CreateString(b64);
        free(b64);
    }
    cJSON_AddItemToObject(o, "event", event ? event : cJSON_CreateNull());
    return o;
}

static httpd_result h_list(httpd_req *req, httpd_resp *resp, void *ud)
{
    ex_app *app = ud;
    fn_info fn;
    char err[256], ns[FN_NS_MAX];
    const char *name = httpd_param(req, "fn");
    PGresult *r;
    deps *d;
    int rc;

    if (registry_req_ns(req, resp, ns) != ML_OK || !(d = need_db(app, resp)))
        return HTTPD_DONE;
    rc = registry_get(app->registry, ns, name, &fn, err, sizeof(err));
    if (rc != ML_OK) {
        httpd_resp_error(resp, rc == REGISTRY_NOT_FOUND ? 404 : 503,
                         rc == REGISTRY_NOT_FOUND ? "not_found" : "service_unavailable",
                         rc == REGISTRY_NOT_FOUND ? "no function '%s'" : "%s",
                         rc == REGISTRY_NOT_FOUND ? name : err);
        return HTTPD_DONE;
    }
    if (borrow(d, resp) != ML_OK)
        return HTTPD_DONE;
    r = pg_query_ex(d->db, "ex_dlq_list",
                    "SELECT json_build_object('id', id, 'invocation_id', invocation_id, 'function_id',"
                    " function_id, 'error_type', error_type, 'error_message', error_message, 'attempts', attempts,"
                    " 'first_attempt_at', " ISO("first_attempt_at") ", 'last_attempt_at', " ISO("last_attempt_at") ","
                    " 'created_at', " ISO("created_at") ", 'replayed_at', " ISO("replayed_at") ","
                    " 'replayed_invocation_id', replayed_invocation_id)::text, event"
                    " FROM dead_letter_queue WHERE function_id = $1 ORDER BY created_at DESC, id LIMIT 100",
                    1, (const char *[]){ fn.id }, NULL, NULL, 1);
    if (!r)
        db_error(d, resp);
    deps_db_release(d);
    if (!r)
        return HTTPD_DONE;
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "items");
    for (int i = 0; i < PQntuples(r); i++)
        cJSON_AddItemToArray(items, entry_json(r, i));
    PQclear(r);
    httpd_resp_json(resp, 200, o);
    return HTTPD_DONE;
}

/* Loads a DLQ entry of namespace ns (another namespace's is not found) with its event and
 * function; ML_ERR with 404/503 written. */
static int load_entry(ex_app *app, deps *d, const char *ns, const char *id, ml_buf *event, char *invocation,
                      fn_info *fn, httpd_resp *resp)
{
    PGresult *r;
    char err[256];
    int rc = ML_ERR;

    if (ml_uuid_valid(id) != ML_OK) {
        httpd_resp_error(resp, 404, "not_found", "no dead-lettered event '%s'", id);
        return ML_ERR;
    }
    if (borrow(d, resp) != ML_OK)
        return ML_ERR;
    r = pg_query_ex(d->db, "ex_dlq_get",
                    "SELECT q.event, q.invocation_id::text, q.function_id::text FROM dead_letter_queue q"
                    " JOIN functions f ON f.id = q.function_id WHERE q.id = $1 AND f.namespace = $2",
                    2, (const char *[]){ id, ns }, NULL, NULL, 1);
    if (!r)
        db_error(d, resp);
    deps_db_release(d);
    if (!r)
        return ML_ERR;
    if (PQntuples(r) == 0)
        httpd_resp_error(resp, 404, "not_found", "no dead-lettered event '%s'", id);
    else if (registry_get(app->registry, ns, PQgetvalue(r, 0, 2), fn, err, sizeof(err)) != ML_OK)
        httpd_resp_error(resp, 409, "function_gone", "the event's function no longer exists");
    else {
        ml_buf_append(event, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
        ml_strlcpy(invocation, PQgetvalue(r, 0, 1), ML_UUID_LEN);
        rc = ML_OK;
    }
    PQclear(r);
    return rc;
}

static httpd_result h_replay(httpd_req *req, httpd_resp *resp, void *ud)
{
    ex_app *app = ud;
    const char *id = httpd_param(req, "id");
    char invocation[ML_UUID_LEN], new_id[ML_UUID_LEN], err[256], ns[FN_NS_MAX];
    ml_buf event = { 0 };
    fn_info fn;
    deps *d;

    if (registry_req_ns(req, resp, ns) != ML_OK || !(d = need_db(app, resp)) ||
        load_entry(app, d, ns, id, &event, invocation, &fn, resp) != ML_OK)
        goto out;
    if (fn.state != FN_ACTIVE) {
        httpd_resp_error(resp, 409, "function_not_active", "function '%s' is not active", fn.name);
        goto out;
    }
    async_event ev = { .fn = &fn, .payload = event.data, .len = event.len, .trigger = AUDIT_DLQ_REPLAY,
                       .replay_of = invocation, .request_id = httpd_request_id(req) };
    if (async_enqueue(app, d, &ev, new_id, err, sizeof(err)) != ML_OK) {
        httpd_resp_header(resp, "Retry-After", "1");
        httpd_resp_error(resp, 503, "service_unavailable", "%s", err);
        goto out;
    }
    /* the link needs the new invocation's row (foreign key): best effort, the replay stands */
    if (audit_flush(app->audit, 2000) == ML_OK && deps_db_acquire(d) == PGPOOL_OK) {
        pg_exec(d->db, "ex_dlq_replayed",
                "UPDATE dead_letter_queue SET replayed_at = now(), replayed_invocation_id = $2 WHERE id = $1",
                2, (const char *[]){ id, new_id }, NULL);
        deps_db_release(d);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "invocation_id", new_id);
    cJSON_AddStringToObject(o, "status", "queued");
    cJSON_AddStringToObject(o, "replay_of", invocation);
    httpd_resp_json(resp, 202, o);
out:
    ml_buf_free(&event);
    return HTTPD_DONE;
}

static httpd_result h_delete(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *id = httpd_param(req, "id");
    char ns[FN_NS_MAX];
    int64_t n = 0;
    deps *d;

    if (registry_req_ns(req, resp, ns) != ML_OK)
        return HTTPD_DONE;
    if (ml_uuid_valid(id) != ML_OK) {
        httpd_resp_error(resp, 404, "not_found", "no dead-lettered event '%s'", id);
        return HTTPD_DONE;
    }
    if (!(d = need_db(ud, resp)) || borrow(d, resp) != ML_OK)
        return HTTPD_DONE;
    if (pg_exec(d->db, "ex_dlq_delete", "DELETE FROM dead_letter_queue q USING functions f"
                " WHERE q.id = $1 AND f.id = q.function_id AND f.namespace = $2", 2,
                (const char *[]){ id, ns }, &n) != ML_OK)
        db_error(d, resp);
    else if (n == 0)
        httpd_resp_error(resp, 404, "not_found", "no dead-lettered event '%s'", id);
    else
        resp->status = 204;
    deps_db_release(d);
    return HTTPD_DONE;
}

/* Sets minilambda_dlq_messages from Postgres, or removes it when the count is unknown. */
static void dlq_refresh(ex_app *app)
{
    deps *d = app_thread_deps(app);
    PGresult *r = NULL;
    int64_t n;

    if (d && deps_db_acquire(d) == PGPOOL_OK) {
        r = pg_query(d->db, "ex_dlq_count",
                     "SELECT count(*) FROM dead_letter_queue WHERE replayed_at IS NULL", 0, NULL);
        deps_db_release(d);
    }

    if (r && pg_get_int64(r, 0, 0, &n) == ML_OK)
        metric_gauge_replace(app->m_dlq, &(metric_sample){ NULL, (double)n }, 1);
    else
        metric_gauge_replace(app->m_dlq, NULL, 0);
    PQclear(r);
}

void *dlq_gauge_main(void *arg)
{
    ex_app *app = arg;

    while (!svc_stopping()) {
        dlq_refresh(app);
        for (int64_t t = 0; t < app->queue_stats_interval_ms && !svc_stopping(); t += 100)
            ml_sleep_ms(100);
    }
    return NULL;
}

size_t dlq_routes(ex_app *app, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "GET", "/functions/{fn}/dlq", h_list, app, 0, true },
        { "POST", "/dlq/{id}/replay", h_replay, app, 0, true },
        { "DELETE", "/dlq/{id}", h_delete, app, 0, true },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}
