/* delivery.c — GET …/deliveries and POST …/redeliver over the outbox tables: see delivery.h. */
#include "delivery.h"

#include <string.h>

#include "log.h"
#include "tenant.h"

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
/* One delivery as the contract shows it, over w (its table) with its attempts table. */
#define DELIVERY_JSON(label_key, label_col, attempts)                                          \
    "json_build_object('id', w.id, '" label_key "', w." label_col ", 'url', w.url,"            \
    " 'status', w.status, 'attempts', w.attempts, 'created_at', " ISO("w.created_at") ","      \
    " 'delivered_at', " ISO("w.delivered_at") ", 'next_attempt_at', CASE WHEN"                 \
    " w.status = 'pending' AND isfinite(w.next_attempt_at) THEN " ISO("w.next_attempt_at")     \
    " END, 'last_status_code', w.last_status_code, 'last_error', w.last_error,"                \
    " 'redelivery_of', w.redelivery_of, 'attempt_log', coalesce((SELECT json_agg("             \
    "json_build_object('attempt', a.attempt, 'at', " ISO("a.at") ", 'status_code',"           \
    " a.status_code, 'error', a.error, 'duration_ms', a.duration_ms) ORDER BY a.attempt)"      \
    " FROM " attempts " a WHERE a.delivery_id = w.id), '[]'))"

/* Per table: $1 the build/invocation id, $2 the namespace; $3 the delivery id. */
typedef struct table_sql {
    const char *list, *lock, *insert, *parent;
} table_sql;

#define BUILD_VISIBLE                                                                          \
    " EXISTS (SELECT 1 FROM builds b JOIN build_functions f ON f.id = b.function_id"           \
    " WHERE b.id = $1::uuid AND f.namespace = $2)"
#define INVOCATION_VISIBLE                                                                     \
    " EXISTS (SELECT 1 FROM invocations i JOIN functions f ON f.id = i.function_id"            \
    " WHERE i.id = $1::uuid AND f.namespace = $2)"
/* the root of a redelivery chain: the first original */
#define ROOT "coalesce(w.redelivery_of, w.id)"

static const table_sql tables[] = {
    [OUTBOX_BUILD_WEBHOOKS] = {
        /* user webhooks only: the platform's own notification of the executor is internal */
        "SELECT CASE WHEN" BUILD_VISIBLE " THEN json_build_object('deliveries', coalesce((SELECT"
        " json_agg(" DELIVERY_JSON("event", "event_status", "webhook_attempts")
        " ORDER BY w.seq, w.created_at, w.id) FROM webhook_deliveries w WHERE w.build_id = $1::uuid"
        " AND w.target = 'user'), '[]'))::text END",
        "SELECT " ROOT ", EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.status = 'pending'"
        " AND (p.id = " ROOT " OR p.redelivery_of = " ROOT ")) FROM webhook_deliveries w"
        " WHERE w.id = $3::uuid AND w.build_id = $1::uuid AND w.target = 'user' AND" BUILD_VISIBLE
        " FOR UPDATE OF w",
        "WITH w AS (INSERT INTO webhook_deliveries (build_id, function_id, target, event_status,"
        " seq, url, payload, redelivery_of) SELECT build_id, function_id, target, event_status, seq,"
        " url, payload, $2::uuid FROM webhook_deliveries WHERE id = $1::uuid RETURNING *)"
        " SELECT json_build_object('delivery', " DELIVERY_JSON("event", "event_status", "webhook_attempts")
        ")::text FROM w",
        "build" },
    [OUTBOX_DESTINATIONS] = {
        "SELECT CASE WHEN" INVOCATION_VISIBLE " THEN json_build_object('deliveries', coalesce((SELECT"
        " json_agg(" DELIVERY_JSON("kind", "kind", "destination_attempts")
        " ORDER BY w.created_at, w.id) FROM destination_deliveries w"
        " WHERE w.invocation_id = $1::uuid), '[]'))::text END",
        "SELECT " ROOT ", EXISTS (SELECT 1 FROM destination_deliveries p WHERE p.status = 'pending'"
        " AND (p.id = " ROOT " OR p.redelivery_of = " ROOT ")) FROM destination_deliveries w"
        " WHERE w.id = $3::uuid AND w.invocation_id = $1::uuid AND" INVOCATION_VISIBLE
        " FOR UPDATE OF w",
        "WITH w AS (INSERT INTO destination_deliveries (invocation_id, function_id, kind, url,"
        " payload, redelivery_of) SELECT invocation_id, function_id, kind, url, payload, $2::uuid"
        " FROM destination_deliveries WHERE id = $1::uuid RETURNING *)"
        " SELECT json_build_object('delivery', " DELIVERY_JSON("kind", "kind", "destination_attempts")
        ")::text FROM w",
        "invocation" },
};

/* Postgres' json text, re-serialised compactly as the response body with status. */
static void reply_json_text(httpd_resp *resp, int status, const char *text)
{
    cJSON *o = text ? cJSON_Parse(text) : NULL;

    if (!o)
        httpd_resp_error(resp, 500, "internal", "malformed JSON from the database");
    else
        httpd_resp_json(resp, status, o);
}

static void db_fail(httpd_resp *resp, pg_conn *db)
{
    ml_log_warn("deliveries: %s", pg_error(db));
    httpd_resp_header(resp, "Retry-After", "5");
    httpd_resp_error(resp, 503, "service_unavailable", "database: %s", pg_error(db));
}

/* The request's namespace, a valid {id}, and this thread's database; ML_ERR with the
 * answer written. Pair ML_OK with deps_db_release(*d). */
static int begin_request(const delivery_api *api, httpd_req *req, httpd_resp *resp,
                         char ns[TENANT_MAX + 1], deps **d)
{
    const char *id = httpd_param(req, "id"), *did = httpd_param(req, "delivery_id");

    if (tenant_from_header(httpd_header(req, TENANT_HEADER), ns) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_namespace", "%s must be a namespace name", TENANT_HEADER);
        return ML_ERR;
    }
    if (ml_uuid_valid(id) != ML_OK || (did && ml_uuid_valid(did) != ML_OK)) {
        httpd_resp_error(resp, 404, "not_found", "no %s '%s'%s", tables[api->kind].parent,
                         id ? id : "", did ? " with that delivery" : "");
        return ML_ERR;
    }
    *d = api->thread_deps(api->ud);
    return deps_db_acquire_http(*d, resp, "database");
}

httpd_result delivery_h_list(httpd_req *req, httpd_resp *resp, void *ud)
{
    const delivery_api *api = ud;
    const char *id = httpd_param(req, "id");
    char ns[TENANT_MAX + 1];
    PGresult *r;
    deps *d;

    if (begin_request(api, req, resp, ns, &d) != ML_OK)
        return HTTPD_DONE;
    r = pg_query(d->db, api->kind == OUTBOX_DESTINATIONS ? "dl_list_dest" : "dl_list_build",
                 tables[api->kind].list, 2, (const char *[]){ id, ns });
    if (!r)
        db_fail(resp, d->db);
    else if (PQgetisnull(r, 0, 0))
        httpd_resp_error(resp, 404, "not_found", "no %s '%s'", tables[api->kind].parent, id);
    else
        reply_json_text(resp, 200, pg_get_text(r, 0, 0));
    PQclear(r);
    deps_db_release(d);
    return HTTPD_DONE;
}

/* Inside the transaction: locks the original, checks, inserts the copy; true once committed. */
static bool redeliver(const delivery_api *api, pg_conn *db, const char *const p[3], httpd_resp *resp)
{
    bool dest = api->kind == OUTBOX_DESTINATIONS;
    PGresult *r = pg_query(db, dest ? "dl_lock_dest" : "dl_lock_build", tables[api->kind].lock, 3, p);
    PGresult *ins = NULL;
    char root[ML_UUID_LEN];
    int busy = 0;
    bool committed = false;

    if (!r) {
        db_fail(resp, db);
    } else if (PQntuples(r) == 0) {
        httpd_resp_error(resp, 404, "not_found", "no delivery '%s' of %s '%s'", p[2],
                         tables[api->kind].parent, p[0]);
    } else if (pg_get_text_copy(r, 0, 0, root, sizeof(root)) != ML_OK ||
               pg_get_bool(r, 0, 1, &busy) != ML_OK) {
        httpd_resp_error(resp, 500, "internal", "unexpected row from the database");
    } else if (busy) {
        httpd_resp_error(resp, 409, "delivery_pending", "delivery '%s' (or a redelivery of it)"
                         " is still pending: wait for it to be delivered or to fail", p[2]);
    } else if (!(ins = pg_query(db, dest ? "dl_copy_dest" : "dl_copy_build", tables[api->kind].insert,
                                2, (const char *[]){ p[2], root })) || PQntuples(ins) != 1) {
        db_fail(resp, db);
    } else if (pg_commit(db) != ML_OK) {
        db_fail(resp, db);
        committed = true; /* or lost with the connection: nothing is open either way */
    } else {
        reply_json_text(resp, 202, pg_get_text(ins, 0, 0));
        committed = true;
    }
    PQclear(ins);
    PQclear(r);
    return committed;
}

httpd_result delivery_h_redeliver(httpd_req *req, httpd_resp *resp, void *ud)
{
    const delivery_api *api = ud;
    char ns[TENANT_MAX + 1];
    const char *p[3] = { httpd_param(req, "id"), ns, httpd_param(req, "delivery_id") };
    deps *d;

    if (begin_request(api, req, resp, ns, &d) != ML_OK)
        return HTTPD_DONE;
    if (pg_begin(d->db) != ML_OK) {
        db_fail(resp, d->db);
    } else if (!redeliver(api, d->db, p, resp)) {
        pg_rollback(d->db);
    }
    deps_db_release(d);
    return HTTPD_DONE;
}
