/* notify.c — inline delivery of a build's queued event to the lambda-executor (notify.h). */
#include "notify.h"

#include <libpq-fe.h>
#include <string.h>

#include "httpc.h"
#include "intauth.h"
#include "log.h"
#include "tenant.h"
#include "webhook.h"

#define NOTIFY_TIMEOUT_MS 2000L
#define NOTIFY_CONNECT_TIMEOUT_MS 500L
#define NOTIFY_MAX_BODY (16u * 1024u)

/* The held row: id, url, payload, the function's namespace; NULL with err set on failure. */
static PGresult *held_row(deps *d, const char *build_id, char *err, size_t errlen)
{
    const char *p[] = { build_id };
    PGresult *r;

    if (deps_db_acquire(d) != PGPOOL_OK) {
        ml_strlcpy(err, "no free database connection", errlen);
        return NULL;
    }
    r = pg_query(d->db, "bm_notify_row",
                 "SELECT w.id, w.url, w.payload, f.namespace FROM webhook_deliveries w"
                 " JOIN build_functions f ON f.id = w.function_id WHERE w.build_id = $1"
                 " AND w.target = 'lambda' AND w.event_status = 'queued' AND w.status = 'pending'",
                 1, p);
    if (!r)
        ml_strlcpy(err, pg_error(d->db), errlen);
    deps_db_release(d);
    return r;
}

/* Signs and POSTs, in the function's namespace ns (TENANT_HEADER, as every call the
 * build-master makes to the executor for a function); returns the HTTP status (0 on a
 * transport failure). */
static long post_signed(const char *secret, const char *id, const char *url, const char *ns,
                        const char *payload, size_t len, char *err, size_t errlen)
{
    char sig[WEBHOOK_SIGNATURE_LEN], h_id[WEBHOOK_ID_MAX + 16], h_ts[48];
    char h_sig[WEBHOOK_SIGNATURE_LEN + 24], h_ns[sizeof(TENANT_HEADER) + TENANT_MAX + 4];
    /* the token line last: it is NULL when internal auth is off, ending the list */
    const char *headers[] = { "Content-Type: application/json", h_id, h_ts, h_sig, h_ns,
                              ml_intauth_header_line(), NULL };
    int64_t ts = ml_wall_ms() / 1000;
    httpc_request req = { .method = "POST", .url = url, .headers = headers, .body = payload,
                          .body_len = len, .timeout_ms = NOTIFY_TIMEOUT_MS,
                          .connect_timeout_ms = NOTIFY_CONNECT_TIMEOUT_MS,
                          .max_body = NOTIFY_MAX_BODY };
    httpc_response res = { 0 };
    httpc *h = NULL;
    long status = 0;

    if (webhook_sign(secret, id, ts, payload, len, sig) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot sign the event");
        goto out;
    }
    if (ml_snprintf(h_id, sizeof(h_id), "webhook-id: %s", id) != ML_OK ||
        ml_snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", (long long)ts) != ML_OK ||
        ml_snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", sig) != ML_OK ||
        ml_snprintf(h_ns, sizeof(h_ns), "%s: %s", TENANT_HEADER, ns) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot build the webhook headers: a value is too long");
        goto out;
    }
    if (!(h = httpc_new())) {
        ml_snprintf_trunc(err, errlen, "out of memory");
        goto out;
    }
    if (httpc_do(h, &req, &res) != ML_OK && res.status == 0)
        ml_snprintf_trunc(err, errlen, "%s", httpc_error(h));
    status = res.status;
out:
    httpc_response_free(&res);
    httpc_free(h);
    return status;
}

/* Records the attempt and settles the row as delivered (it is held: no dispatcher has it).
 * ML_ERR with err set on failure. */
static int mark_delivered(deps *d, const char *id, long status, int64_t ms, char *err,
                          size_t errlen)
{
    char code[24], dur[24];
    const char *p[] = { id, code, dur };
    int rc;

    if (ml_snprintf(code, sizeof(code), "%ld", status) != ML_OK ||
        ml_snprintf(dur, sizeof(dur), "%lld", (long long)ms) != ML_OK) {
        ml_strlcpy(err, "a number overflows", errlen);
        return ML_ERR;
    }
    if (deps_db_acquire(d) != PGPOOL_OK) {
        ml_strlcpy(err, "no free database connection", errlen);
        return ML_ERR;
    }
    rc = pg_exec(d->db, "bm_notify_done",
                   "WITH w AS (UPDATE webhook_deliveries SET status = 'delivered',"
                   " attempts = attempts + 1, delivered_at = now(), last_status_code = $2::int,"
                   " last_error = NULL WHERE id = $1::uuid AND status = 'pending'"
                   " RETURNING id, attempts)"
                   " INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms)"
                   " SELECT id, attempts, $2::int, NULL, $3::int FROM w ON CONFLICT DO NOTHING",
                   3, p, NULL);
    if (rc != ML_OK)
        ml_strlcpy(err, pg_error(d->db), errlen);
    deps_db_release(d);
    return rc;
}

int notify_queued_inline(bm_app *app, deps *d, const char *build_id)
{
    char err[256] = "", why[200] = "";
    PGresult *res = NULL;
    const char *id, *url, *payload;
    int64_t t0 = ml_now_ms();
    long status = 0;
    int rc = ML_ERR;

    if (!app->internal_secret || !app->internal_secret[0])
        return ML_ERR;
    if (!(res = held_row(d, build_id, err, sizeof(err))) || PQntuples(res) != 1) {
        if (res)
            ml_strlcpy(err, "no held queued event", sizeof(err));
        goto out;
    }
    id = pg_get_text(res, 0, 0);
    url = pg_get_text(res, 0, 1);
    payload = pg_get_text(res, 0, 2);
    status = post_signed(app->internal_secret, id, url, pg_get_text(res, 0, 3), payload,
                         (size_t)PQgetlength(res, 0, 2), err, sizeof(err));
    if (status < 200 || status > 299) {
        if (status)
            ml_snprintf_trunc(err, sizeof(err), "executor answered %ld", status);
        goto out;
    }
    if (mark_delivered(d, id, status, ml_now_ms() - t0, why, sizeof(why)) != ML_OK)
        ml_snprintf_trunc(err, sizeof(err), "delivered, not recorded (the outbox resends; the"
                          " executor ignores the duplicate): %s", why);
    else
        rc = ML_OK;
out:
    if (rc != ML_OK)
        ml_log_kv(ML_LOG_WARN, "queued event not delivered inline; the outbox will deliver it",
                  "build_id", build_id, "error", err, NULL);
    PQclear(res);
    return rc;
}
