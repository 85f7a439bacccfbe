/* accept.c — the build acceptance protocol.
 *
 * Order matters for "a 202 means durably queued" and "no half-created function":
 *  1. the ZIP goes to S3 (packages/{function}/{build}.zip);
 *  2. one transaction inserts the function (POST), the build (queued) and its status event,
 *     with its webhook deliveries held back;
 *  3. the job is published and the broker's confirm awaited;
 *  4. the lambda-executor is told of the queued build inline (notify.h), so a name that got
 *     its 202 is never reported as nonexistent; if that fails, the outbox delivers it later;
 *  5. a second transaction marks the build published and releases the deliveries; 202.
 * If 3 fails, 2 and 1 are undone and the caller gets 503. If the process dies between 2 and 4,
 * the sweeper finds the queued, unpublished build and finishes 3 and 4. */
#include "accept.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buildstate.h"
#include "crypto.h"
#include "log.h"
#include "notify.h"
#include "secretbox.h"
#include "topology.h"
#include "webhook.h"

static void count(bm_app *app, const char *result)
{
    metric_inc(app->m_accepted, (const char *[]){ result });
}

static void unavailable(httpd_resp *resp, const char *what, const char *why)
{
    httpd_resp_header(resp, "Retry-After", "5");
    httpd_resp_error(resp, 503, "service_unavailable", "%s is unavailable, nothing was created: %s",
                     what, why);
}

/* Step 3: the job, confirmed by the broker. */
static int publish_job(deps *d, const char *build_id, const char *function_id)
{
    char body[160];
    mq_header hdr = { .key = "x-request-id", .str = ml_log_request_id() };
    mq_publish_msg m = { .exchange = TOPO_BUILD_EXCHANGE, .routing_key = TOPO_BUILD_ROUTING_KEY,
                         .body = body, .message_id = build_id, .mandatory = 1,
                         .headers = &hdr, .n_headers = hdr.str ? 1 : 0 };

    if (ml_snprintf(body, sizeof(body), "{\"build_id\":\"%s\",\"function_id\":\"%s\"}",
                    build_id, function_id) != ML_OK)
        return ML_ERR; /* a cut body is not JSON; the caller undoes and answers 503 */
    m.body_len = strlen(body);
    return mq_publish(d->mq, &m);
}

/* Step 5. The job is durable now; if this bookkeeping fails the sweeper publishes a
 * duplicate, which workers skip (a build is claimed once). */
static void mark_published(deps *d, const char *build_id)
{
    if (deps_db_acquire(d) != PGPOOL_OK) {
        ml_log_kv(ML_LOG_WARN, "build published but not marked (no database connection); the"
                  " sweeper will retry", "build_id", build_id, NULL);
        return;
    }
    if (pg_begin(d->db) != ML_OK || buildstate_release(d->db, build_id) != ML_OK ||
        pg_commit(d->db) != ML_OK) {
        ml_log_kv(ML_LOG_WARN, "build published but not marked; the sweeper will retry",
                  "build_id", build_id, "error", pg_error(d->db), NULL);
        pg_rollback(d->db);
    }
    deps_db_release(d);
}

int accept_republish(deps *d, const char *build_id, const char *function_id)
{
    if (publish_job(d, build_id, function_id) != ML_OK)
        return ML_ERR;
    mark_published(d, build_id);
    return ML_OK;
}

/* New code for an existing function: locks its row (a concurrent DELETE's mark waits for this
 * transaction, or this waits for the mark) and refuses a deleted or deleting one. Returns 0,
 * 404/409 (error written), or -1 on a database error. */
static int lock_live_function(deps *d, const char *fid, httpd_resp *resp)
{
    const char *params[] = { fid };
    PGresult *r = pg_query(d->db, "bm_lock_live",
                           "SELECT deleted_at IS NOT NULL, deleting_at IS NOT NULL AND"
                           " deleting_at > now() - interval '320 seconds'"
                           " FROM build_functions WHERE id = $1 FOR UPDATE", 1, params);
    int gone = 0, deleting = 0, rc = 0;

    if (!r)
        return -1;
    if (PQntuples(r) == 0 || pg_get_bool(r, 0, 0, &gone) != ML_OK ||
        pg_get_bool(r, 0, 1, &deleting) != ML_OK || gone) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", fid);
        rc = 404;
    } else if (deleting) {
        httpd_resp_header(resp, "Retry-After", "1");
        httpd_resp_error(resp, 409, "function_deleting", "function '%s' is being deleted", fid);
        rc = 409;
    }
    PQclear(r);
    return rc;
}

/* 403 quota_exceeded for max_functions (docs/tenants.md): the usual error body plus which
 * quota and its limit. */
static void quota_exceeded(const char *ns, int64_t limit, httpd_resp *resp)
{
    char msg[160];
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");

    ml_snprintf_trunc(msg, sizeof(msg), "namespace %s has reached its max_functions quota (%lld)",
                      ns, (long long)limit);
    cJSON_AddStringToObject(err, "code", "quota_exceeded");
    cJSON_AddStringToObject(err, "message", msg);
    cJSON_AddStringToObject(err, "quota", "max_functions");
    cJSON_AddNumberToObject(err, "limit", (double)limit);
    cJSON_AddStringToObject(err, "request_id", resp->request_id ? resp->request_id : "");
    httpd_resp_json(resp, 403, root);
}

/* Compares the namespace's live functions (d->db held) with limit: 0 (room), 403 (error
 * written) or -1 on a database error. */
static int count_live(deps *d, const char *ns, int64_t limit, httpd_resp *resp)
{
    const char *p[] = { ns };
    PGresult *r = pg_query(d->db, "bm_ns_count", "SELECT count(*) FROM build_functions"
                           " WHERE namespace = $1 AND deleted_at IS NULL", 1, p);
    int64_t live = 0;
    int rc = -1;

    if (r && pg_get_int64(r, 0, 0, &live) == ML_OK) {
        rc = 0;
        if (live >= limit) {
            quota_exceeded(ns, limit, resp);
            rc = 403;
        }
    }
    PQclear(r);
    return rc;
}

/* max_functions, inside the create transaction: the namespace's advisory lock (held to
 * commit) serialises its creates, so two cannot both count N-1 and take the last slot; the
 * count then sees every create committed before. Returns as count_live. No limit: 0
 * without a lock. */
static int check_quota(deps *d, const char *ns, int64_t limit, httpd_resp *resp)
{
    const char *p[] = { ns };

    if (limit < 0)
        return 0;
    /* two-key form: a key space apart from the outbox's single-key session locks */
    if (pg_exec(d->db, "bm_ns_lock", "SELECT pg_advisory_xact_lock(1852994915, hashtext($1))",
                1, p, NULL) != ML_OK)
        return -1;
    return count_live(d, ns, limit, resp);
}

/* Before any side effect, a namespace already at its max_functions is refused without
 * touching S3 (no lock: check_quota decides in the transaction; this only spares the upload).
 * true when refused (403 written). A database error here is left to the transaction. */
static bool quota_full(deps *d, const accept_req *a, httpd_resp *resp)
{
    int rc;

    if (!a->spec || a->max_functions < 0 || deps_db_acquire(d) != PGPOOL_OK)
        return false;
    rc = count_live(d, a->ns, a->max_functions, resp);
    deps_db_release(d);
    return rc == 403;
}

/* Step 2. Returns 0, or the HTTP status of the failure (error already written). */
static int insert_rows(bm_app *app, deps *d, const accept_req *a, const char *fid,
                       const char *bid, const char *key, const char *sha, const char *secret,
                       httpd_resp *resp)
{
    char size[24];
    char *config = a->spec ? cJSON_PrintUnformatted(a->spec->config) : NULL, *wsealed = NULL;
    const char *fparams[9] = { fid, a->spec ? a->spec->name : NULL, a->spec ? a->spec->runtime : NULL,
                              a->spec ? a->spec->handler : NULL,
                              a->spec && a->spec->webhook_url[0] ? a->spec->webhook_url : NULL,
                              secret, config, NULL, a->ns };
    const char *uparams[] = { fid, a->webhook_url };
    const char *bparams[] = { bid, fid, key, size, sha };
    int status = 0;

    /* the lambda side signs destinations with it (docs/secrets.md) */
    if (a->spec && secretbox_seal(secretbox_global(), "webhook_secret", secret, strlen(secret), &wsealed) != ML_OK) {
        free(config);
        httpd_resp_error(resp, 500, "internal", "cannot seal the webhook secret");
        return 500;
    }
    fparams[7] = wsealed;
    if (ml_snprintf(size, sizeof(size), "%zu", a->zip_len) != ML_OK) { /* 24 bytes hold any size_t */
        free(config);
        free(wsealed);
        httpd_resp_error(resp, 500, "internal", "cannot format the package size");
        return 500;
    }
    if (deps_db_acquire(d) != PGPOOL_OK) {
        free(config);
        free(wsealed);
        unavailable(resp, "the build database", "no free database connection");
        return 503;
    }
    if (pg_begin(d->db) != ML_OK)
        goto db_error;
    if (a->spec && (status = check_quota(d, a->ns, a->max_functions, resp)) != 0) {
        if (status < 0)
            goto db_error;
        goto out;
    }
    if (a->spec && pg_exec(d->db, "bm_insert_function",
                           "INSERT INTO build_functions (id, name, runtime, handler, webhook_url,"
                           " webhook_secret, config, webhook_secret_sealed, namespace)"
                           " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)",
                           9, fparams, NULL) != ML_OK) {
        if (strcmp(pg_sqlstate(d->db), "23505") == 0) {
            httpd_resp_error(resp, 409, "name_taken", "a function named '%s' already exists",
                             a->spec->name);
            status = 409;
            goto out;
        }
        goto db_error;
    }
    if (!a->spec && (status = lock_live_function(d, fid, resp)) != 0) {
        if (status < 0)
            goto db_error;
        goto out;
    }
    if (!a->spec && a->webhook_url &&
        pg_exec(d->db, "bm_update_webhook",
                "UPDATE build_functions SET webhook_url = $2 WHERE id = $1", 2, uparams,
                NULL) != ML_OK)
        goto db_error;
    if (pg_exec(d->db, "bm_insert_build",
                "INSERT INTO builds (id, function_id, runtime, handler, package_key, package_size,"
                " package_sha256) SELECT $1, f.id, f.runtime, f.handler, $3, $4::bigint, $5"
                " FROM build_functions f WHERE f.id = $2",
                5, bparams, NULL) != ML_OK ||
        buildstate_record(d->db, bid, "queued", NULL, app->executor_url, true) != ML_OK ||
        pg_commit(d->db) != ML_OK)
        goto db_error;
    deps_db_release(d);
    free(config);
    free(wsealed);
    return 0;
db_error:
    status = 503;
    unavailable(resp, "the build database", pg_error(d->db));
out:
    pg_rollback(d->db);
    deps_db_release(d);
    free(config);
    free(wsealed);
    return status;
}

/* Undoes steps 1 and 2 after a failed publish. */
static void undo(deps *d, const accept_req *a, const char *fid, const char *bid, const char *key)
{
    const char *bp[] = { bid }, *fp[] = { fid };
    int undone;

    if (deps_db_acquire(d) != PGPOOL_OK) {
        ml_log_kv(ML_LOG_ERROR, "cannot undo an unpublished build; the sweeper will publish it",
                  "build_id", bid, "error", "no free database connection", NULL);
        return;
    }
    undone = pg_exec(d->db, "bm_undo_build", "DELETE FROM builds WHERE id = $1", 1, bp, NULL) == ML_OK &&
             (!a->spec || pg_exec(d->db, "bm_undo_function", "DELETE FROM build_functions WHERE id = $1",
                                  1, fp, NULL) == ML_OK);
    if (!undone)
        ml_log_kv(ML_LOG_ERROR, "cannot undo an unpublished build; the sweeper will publish it",
                  "build_id", bid, "error", pg_error(d->db), NULL);
    deps_db_release(d);
    if (undone && s3_delete(d->s3, key) != ML_OK)
        ml_log_kv(ML_LOG_WARN, "orphaned package left in S3", "key", key, NULL);
}

static void reply_accepted(const accept_req *a, const char *fid, const char *bid,
                           const char *secret, const char *url, httpd_resp *resp)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "function_id", fid);
    cJSON_AddStringToObject(o, "namespace", a->ns);
    if (a->spec) {
        cJSON_AddStringToObject(o, "name", a->spec->name);
        cJSON_AddStringToObject(o, "webhook_secret", secret);
    }
    cJSON_AddStringToObject(o, "build_id", bid);
    cJSON_AddStringToObject(o, "status", "queued");
    cJSON_AddStringToObject(o, "status_url", url);
    httpd_resp_header(resp, "Location", url);
    httpd_resp_json(resp, 202, o);
}

void accept_build(bm_app *app, deps *d, const accept_req *a, httpd_resp *resp)
{
    char fid[ML_UUID_LEN], bid[ML_UUID_LEN], key[128], url[64], sha[CRYPTO_SHA256_HEX_LEN];
    char secret[WEBHOOK_SECRET_LEN] = "";
    int status;

    if (a->spec) {
        ml_uuid(fid);
        if (webhook_secret_new(secret) != ML_OK) {
            httpd_resp_error(resp, 500, "internal", "cannot generate a webhook secret");
            return;
        }
    } else {
        ml_strlcpy(fid, a->function_id, sizeof(fid));
    }
    ml_uuid(bid);
    /* Both before any side effect: the 202's Location must never fail after the job is queued. */
    if (ml_snprintf(key, sizeof(key), "packages/%s/%s.zip", fid, bid) != ML_OK ||
        ml_snprintf(url, sizeof(url), "/builds/%s", bid) != ML_OK) {
        httpd_resp_error(resp, 500, "internal", "cannot build the package key or status URL");
        return;
    }
    if (quota_full(d, a, resp)) {
        count(app, "quota_exceeded");
        return;
    }
    crypto_sha256_hex(a->zip, a->zip_len, sha);
    if (s3_put(d->s3, key, a->zip, a->zip_len, "application/zip") != ML_OK) {
        count(app, "s3_unavailable");
        unavailable(resp, "package storage", s3_error(d->s3));
        return;
    }
    status = insert_rows(app, d, a, fid, bid, key, sha, secret, resp);
    if (status) {
        count(app, status == 403 ? "quota_exceeded"
                   : status == 409 || status == 404 ? "conflict" : "db_unavailable");
        s3_delete(d->s3, key);
        return;
    }
    if (publish_job(d, bid, fid) != ML_OK) {
        count(app, "broker_unavailable");
        ml_log_kv(ML_LOG_WARN, "build job not confirmed by the broker; undoing", "build_id", bid,
                  "error", mq_error(d->mq), NULL);
        undo(d, a, fid, bid, key);
        unavailable(resp, "the build queue", mq_error(d->mq));
        return;
    }
    notify_queued_inline(app, d, bid);
    mark_published(d, bid);
    count(app, "accepted");
    ml_log_kv(ML_LOG_INFO, "build accepted", "build_id", bid, "function_id", fid, NULL);
    reply_accepted(a, fid, bid, secret, url, resp);
}
