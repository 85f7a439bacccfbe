/* async.c — asynchronous invocations.
 *
 * Enqueue: the event is published persistently with a publisher confirm before the caller
 * hears "queued"; the invocation's 'queued' audit row goes to the audit writer (durable
 * through its spill file).
 * Consume: consumer threads (prefetch 1 each, so a busy executor does not hoard events) run
 * the event like a sync invocation. A failed attempt is republished to a delay queue
 * (1 s, then 2 s, ±10 %) that dead-letters it back to the invoke exchange; after
 * 1 + max_retries attempts the event is dead-lettered: a dead_letter_queue row, a copy in the
 * dead-letter queue, and the on_failure destination. The original message is acked only
 * after all of that, so a crash at any point redelivers it.
 *
 * Exactly-once completion (docs/async.md): before running, the consumer takes the id's
 * advisory lock and marks the attempt started in async_completions (completion.h); once the
 * function returned, the completion is recorded there, synchronously, before the ack. A
 * delivery whose id is recorded completed is acked without running (a redelivery after a
 * crash, or a client's retry with the same X-Invocation-Id); one recorded started but not
 * completed was cut off by a crash and runs again as the next attempt. Postgres down: the
 * message waits in the delay queue (nothing runs blind). */
#include "async.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "completion.h"
#include "exec.h"
#include "log.h"
#include "pgpool.h"
#include "service.h"
#include "topology.h"

static const char *const trigger_names[] = { "http_sync", "http_async", "cron", "dlq_replay" };

/* What travels in the message headers. */
typedef struct meta {
    char id[ML_UUID_LEN], function_id[ML_UUID_LEN];
    char schedule_id[ML_UUID_LEN], replay_of[ML_UUID_LEN], request_id[129];
    int64_t attempt, enqueued_ms;
    audit_trigger trigger;
    /* what runs (docs/versions.md): "$LATEST" or a published version, fixed at acceptance
     * (an alias is picked then); the alias invoked through ("" none) */
    char executed[VER_EXEC_MAX], alias[VER_ALIAS_MAX];
    int version;       /* code revision that ran or will run (0: not known yet) */
    int cold;          /* -1 unknown, 0 warm, 1 cold */
} meta;

typedef enum { SETTLE_ACK, SETTLE_REQUEUE, SETTLE_REJECT, SETTLE_RUN /* not settled yet */ } settle;

/* One consumer thread's clients. */
typedef struct consumer {
    ex_app *app;
    deps *d;
    mq_conn *mq;
    completion *cpl;
} consumer;

static int publish(mq_conn *mq, const meta *mt, const void *body, size_t len, const char *exchange,
                   const char *key, int64_t expiration_ms)
{
    mq_header h[10];
    size_t n = 0;
    mq_publish_msg m = { .exchange = exchange, .routing_key = key, .body = body, .body_len = len,
                         .message_id = mt->id, .headers = h, .expiration_ms = expiration_ms,
                         .mandatory = 1 };

    h[n++] = (mq_header){ .key = "x-function-id", .str = mt->function_id };
    h[n++] = (mq_header){ .key = "x-trigger", .str = trigger_names[mt->trigger] };
    h[n++] = (mq_header){ .key = "x-attempt", .num = mt->attempt };
    h[n++] = (mq_header){ .key = "x-enqueued-at", .num = mt->enqueued_ms };
    if (mt->schedule_id[0])
        h[n++] = (mq_header){ .key = "x-schedule-id", .str = mt->schedule_id };
    if (mt->replay_of[0])
        h[n++] = (mq_header){ .key = "x-replay-of", .str = mt->replay_of };
    if (mt->request_id[0])
        h[n++] = (mq_header){ .key = "x-request-id", .str = mt->request_id };
    h[n++] = (mq_header){ .key = "x-executed-version", .str = mt->executed };
    if (mt->alias[0])
        h[n++] = (mq_header){ .key = "x-alias", .str = mt->alias };
    m.n_headers = n;
    return mq_publish(mq, &m);
}

static void submit(ex_app *app, const meta *mt, audit_status st, const void *payload, size_t len,
                   const sandbox_result *res, const char *error_type, const char *message)
{
    audit_record r = { 0 };

    ml_strlcpy(r.id, mt->id, sizeof(r.id));
    ml_strlcpy(r.function_id, mt->function_id, sizeof(r.function_id));
    r.trigger = mt->trigger;
    r.status = st;
    r.attempts = (int)(st == AUDIT_QUEUED ? mt->attempt - 1 : mt->attempt);
    r.version = mt->version;
    r.cold_start = mt->cold;
    r.executed_version = mt->executed;
    r.alias = mt->alias[0] ? mt->alias : NULL;
    r.request_id = mt->request_id[0] ? mt->request_id : NULL;
    r.payload_size = (int64_t)len;
    r.response_size = -1;
    r.payload = payload;
    r.payload_len = len;
    r.error_type = error_type;
    r.error_message = message;
    r.duration_ms = r.memory_used_mb = -1;
    r.created_ms = mt->enqueued_ms;
    r.replay_of = mt->replay_of[0] ? mt->replay_of : NULL;
    r.schedule_id = mt->schedule_id[0] ? mt->schedule_id : NULL;
    if (res) {
        r.result = st == AUDIT_SUCCEEDED ? res->payload.data : NULL;
        r.result_len = st == AUDIT_SUCCEEDED ? res->payload.len : 0;
        exec_audit_result(&r, res);
    }
    if (audit_submit(app->audit, &r) != ML_OK)
        ml_log_kv(ML_LOG_ERROR, "audit record dropped", "invocation_id", mt->id, NULL);
}

int async_enqueue(ex_app *app, deps *d, const async_event *ev, char id[ML_UUID_LEN], char *err,
                  size_t errlen)
{
    meta mt = { 0 };

    if (ev->id)
        ml_strlcpy(mt.id, ev->id, sizeof(mt.id));
    else
        ml_uuid(mt.id);
    ml_strlcpy(id, mt.id, ML_UUID_LEN);
    ml_strlcpy(mt.function_id, ev->fn->id, sizeof(mt.function_id));
    ml_strlcpy(mt.schedule_id, ev->schedule_id ? ev->schedule_id : "", sizeof(mt.schedule_id));
    ml_strlcpy(mt.replay_of, ev->replay_of ? ev->replay_of : "", sizeof(mt.replay_of));
    ml_strlcpy(mt.request_id, ev->request_id ? ev->request_id : "", sizeof(mt.request_id));
    mt.attempt = 1;
    mt.enqueued_ms = ml_wall_ms();
    mt.trigger = ev->trigger;
    ml_strlcpy(mt.executed, ev->executed_version ? ev->executed_version : VER_LATEST, sizeof(mt.executed));
    ml_strlcpy(mt.alias, ev->alias ? ev->alias : "", sizeof(mt.alias));
    mt.version = ev->fn->version;
    mt.cold = -1;
    if (publish(d->mq, &mt, ev->payload, ev->len, TOPO_INVOKE_EXCHANGE, TOPO_INVOKE_ROUTING_KEY, 0) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "the invocation queue is unavailable: %s", mq_error(d->mq));
        return ML_ERR;
    }
    submit(app, &mt, AUDIT_QUEUED, ev->payload, ev->len, NULL, NULL, NULL);
    return ML_OK;
}

/* ---- consuming ---- */

static void header_str(const mq_message *m, const char *key, char *out, size_t len)
{
    const mq_header *h = mq_message_header(m, key);
    ml_strlcpy(out, h && h->str ? h->str : "", len);
}

static int64_t header_num(const mq_message *m, const char *key)
{
    const mq_header *h = mq_message_header(m, key);
    return h && !h->str ? h->num : 0;
}

static int parse_meta(const mq_message *m, meta *mt)
{
    char trig[32];

    memset(mt, 0, sizeof(*mt));
    ml_strlcpy(mt->id, m->message_id, sizeof(mt->id));
    header_str(m, "x-function-id", mt->function_id, sizeof(mt->function_id));
    header_str(m, "x-schedule-id", mt->schedule_id, sizeof(mt->schedule_id));
    header_str(m, "x-replay-of", mt->replay_of, sizeof(mt->replay_of));
    header_str(m, "x-request-id", mt->request_id, sizeof(mt->request_id));
    header_str(m, "x-trigger", trig, sizeof(trig));
    header_str(m, "x-executed-version", mt->executed, sizeof(mt->executed));
    header_str(m, "x-alias", mt->alias, sizeof(mt->alias));
    if (!mt->executed[0]) /* queued before versions (or cron, replay): $LATEST */
        ml_strlcpy(mt->executed, VER_LATEST, sizeof(mt->executed));
    mt->cold = -1;
    mt->attempt = header_num(m, "x-attempt");
    mt->enqueued_ms = header_num(m, "x-enqueued-at");
    mt->trigger = AUDIT_HTTP_ASYNC;
    for (size_t i = 1; i < ML_ARRAY_LEN(trigger_names); i++)
        if (strcmp(trig, trigger_names[i]) == 0)
            mt->trigger = (audit_trigger)i;
    return ml_uuid_valid(mt->id) == ML_OK && ml_uuid_valid(mt->function_id) == ML_OK &&
                   mt->attempt >= 1 && mt->enqueued_ms > 0
               ? ML_OK
               : ML_ERR;
}

/* The destination document: the invocation record as the API shows it. */
static char *destination_body(const meta *mt, const fn_info *fn, const char *status,
                              const sandbox_result *res, const char *error_type, const char *message)
{
    cJSON *o = cJSON_CreateObject(), *result = NULL;
    char *text;

    cJSON_AddStringToObject(o, "type", strcmp(status, "succeeded") == 0 ? "invocation.succeeded" : "invocation.failed");
    cJSON_AddStringToObject(o, "invocation_id", mt->id);
    cJSON_AddStringToObject(o, "function_id", fn->id);
    cJSON_AddStringToObject(o, "function_name", fn->name);
    cJSON_AddNumberToObject(o, "version", fn->version);
    cJSON_AddStringToObject(o, "trigger", trigger_names[mt->trigger]);
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddNumberToObject(o, "attempts", (double)mt->attempt);
    if (res && res->status == SB_OK)
        result = cJSON_ParseWithLength(ml_buf_cstr(&res->payload), res->payload.len);
    cJSON_AddItemToObject(o, "result", result ? result : cJSON_CreateNull());
    if (error_type) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "type", error_type);
        cJSON_AddStringToObject(e, "message", message ? message : "");
    }
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* The on_success / on_failure delivery row (the dispatcher sends it) on db; the
 * invocation's row must be in Postgres first (foreign key): the caller flushed the audit. */
static int destination_insert(pg_conn *db, const meta *mt, const fn_info *fn, bool ok,
                              const sandbox_result *res, const char *error_type, const char *message)
{
    const char *url = ok ? fn->on_success_url : fn->on_failure_url;
    char *body;
    int rc;

    if (!url[0])
        return ML_OK;
    if (!(body = destination_body(mt, fn, ok ? "succeeded" : "dead_lettered", res, error_type, message)))
        return ML_ERR;
    rc = pg_exec(db, "ex_destination",
                 "INSERT INTO destination_deliveries (invocation_id, function_id, kind, url, payload)"
                 " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (invocation_id, kind) WHERE redelivery_of IS NULL DO NOTHING",
                 5, (const char *[]){ mt->id, fn->id, ok ? "on_success" : "on_failure", url, body },
                 NULL);
    free(body);
    return rc;
}

/* Queues the on_success delivery of a completed invocation, a few tries: the completion is
 * recorded already, so a redelivery would not come back here (docs/async.md, limits). */
static void success_destination(consumer *cs, const meta *mt, const fn_info *fn,
                                const sandbox_result *res)
{
    for (int tries = 0; fn->on_success_url[0] && tries < 3; tries++) {
        int rc = ML_ERR;

        if (tries)
            ml_sleep_ms(1000);
        if (audit_flush(cs->app->audit, 5000) != ML_OK || deps_db_acquire(cs->d) != PGPOOL_OK)
            continue; /* not across the flush above */
        rc = destination_insert(cs->d->db, mt, fn, true, res, NULL, NULL);
        deps_db_release(cs->d);
        if (rc == ML_OK)
            return;
    }
    if (fn->on_success_url[0])
        ml_log_kv(ML_LOG_ERROR, "on_success destination not recorded", "invocation_id", mt->id, NULL);
}

/* One try at the dead-letter records: the DLQ row, the on_failure delivery and the
 * completion commit together, on the completion connection (never half of them). */
static int dead_letter_commit(consumer *cs, const meta *mt, const fn_info *fn, const mq_message *m,
                              const sandbox_result *res, const char *error_type, const char *message)
{
    pg_conn *db = completion_db(cs->cpl);
    char attempts[24], first[24], last[24];
    PGresult *r;

    if (ml_snprintf(attempts, sizeof(attempts), "%lld", (long long)mt->attempt) != ML_OK ||
        ml_snprintf(first, sizeof(first), "%lld", (long long)mt->enqueued_ms) != ML_OK ||
        ml_snprintf(last, sizeof(last), "%lld", (long long)ml_wall_ms()) != ML_OK ||
        audit_flush(cs->app->audit, 5000) != ML_OK || pg_begin(db) != ML_OK)
        return ML_ERR; /* SQL parameters are never cut; the rows need the invocation's row */
    r = pg_query_ex(db, "ex_dlq",
                    "INSERT INTO dead_letter_queue (invocation_id, function_id, event, error_type,"
                    " error_message, attempts, first_attempt_at, last_attempt_at) VALUES ($1, $2, $3,"
                    " $4, $5, $6::int, to_timestamp($7::bigint / 1000.0), to_timestamp($8::bigint / 1000.0))"
                    " ON CONFLICT (invocation_id) DO NOTHING",
                    8, (const char *[]){ mt->id, fn->id, m->body, error_type, message, attempts, first, last },
                    (const int[]){ 0, 0, (int)m->body_len, 0, 0, 0, 0, 0 },
                    (const int[]){ 0, 0, 1, 0, 0, 0, 0, 0 }, 0);
    if (!r || destination_insert(db, mt, fn, false, res, error_type, message) != ML_OK ||
        completion_mark(cs->cpl, mt->id, fn->id, mt->attempt, "dead_lettered") != ML_OK) {
        PQclear(r);
        pg_rollback(db);
        return ML_ERR;
    }
    PQclear(r);
    return pg_commit(db);
}

/* The last attempt failed (or the event expired): audit, then the dead-letter records and
 * the completion (waiting for Postgres: the outcome is final), then the dead-letter queue copy. */
static settle dead_letter(consumer *cs, const meta *mt, const fn_info *fn, const mq_message *m,
                          const sandbox_result *res, const char *error_type, const char *message)
{
    int64_t backoff = 200;

    submit(cs->app, mt, AUDIT_DEAD_LETTERED, m->body, m->body_len, res, error_type, message);
    while (dead_letter_commit(cs, mt, fn, m, res, error_type, message) != ML_OK) {
        if (svc_stopping())
            return SETTLE_REQUEUE;
        ml_sleep_ms(backoff);
        backoff = backoff < 2000 ? backoff * 2 : 2000;
    }
    if (publish(cs->mq, mt, m->body, m->body_len, TOPO_INVOKE_DLX, TOPO_INVOKE_DEAD_KEY, 0) != ML_OK)
        ml_log_kv(ML_LOG_WARN, "dead-letter queue copy not published (the DLQ row is kept)",
                  "invocation_id", mt->id, NULL);
    ml_log_kv(ML_LOG_WARN, "async invocation dead-lettered", "invocation_id", mt->id,
              "function", fn->name, "error_type", error_type ? error_type : "", NULL);
    return SETTLE_ACK;
}

/* A uniform draw in [-100, 100] from this thread's xorshift64* generator, seeded from the
 * kernel on first use, so every consumer (on every executor) draws its own sequence. */
static int64_t jitter_permille(void)
{
    static _Thread_local uint64_t state;
    uint64_t x;

    while (state == 0)
        if (getrandom(&state, sizeof(state), 0) != (ssize_t)sizeof(state))
            state = (uint64_t)ml_now_ms() ^ (uint64_t)(uintptr_t)&state;
    x = state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state = x;
    return (int64_t)((x * 2685821657736338717ull) % 201) - 100;
}

/* Republishes to the delay queue: next attempt (or the same one when nothing ran). */
static settle retry_later(mq_conn *mq, meta *mt, const mq_message *m, bool count_attempt)
{
    int64_t delay = mt->attempt >= 2 ? 2000 : 1000;

    delay += jitter_permille() * delay / 1000; /* ±10 % */
    if (count_attempt)
        mt->attempt++;
    return publish(mq, mt, m->body, m->body_len, "", mt->attempt >= 3 ? TOPO_INVOKE_RETRY2 : TOPO_INVOKE_RETRY1,
                   delay) == ML_OK
               ? SETTLE_ACK
               : SETTLE_REQUEUE;
}

/* Nothing ran (no code, no sandbox, not active yet): the same attempt comes back later. */
static settle not_run(consumer *cs, meta *mt, const mq_message *m)
{
    if (completion_retry(cs->cpl, mt->id, mt->attempt - 1) != ML_OK)
        ml_log_kv(ML_LOG_WARN, "cannot record async retry", "invocation_id", mt->id, NULL);
    return retry_later(cs->mq, mt, m, false);
}

/* Runs one attempt and decides what becomes of the event. */
static settle run_attempt(consumer *cs, meta *mt, const fn_info *fn, const mq_message *m)
{
    sandbox_result res = { 0 };
    char err[512], *message = NULL;
    bool cold;
    settle s = SETTLE_ACK;
    exec_outcome o;
    exec_request rq = { .fn = fn, .executed_version = mt->executed, .trigger = trigger_names[mt->trigger], .id = mt->id,
                        .event = m->body, .len = m->body_len, .wait_ms = 1000 };

    submit(cs->app, mt, AUDIT_RUNNING, m->body, m->body_len, NULL, NULL, NULL);
    o = exec_run(cs->app, cs->d, &rq, &cold, &res, err, sizeof(err));
    mt->cold = o == EXEC_RAN ? cold : -1;
    if (o != EXEC_RAN) { /* nothing ran: try again later without spending an attempt */
        sandbox_result_free(&res);
        return not_run(cs, mt, m);
    }
    if (res.status == SB_OK) {
        submit(cs->app, mt, AUDIT_SUCCEEDED, m->body, m->body_len, &res, NULL, NULL);
        /* durably completed before the ack: a redelivery is acked without running */
        if (completion_finish(cs->cpl, mt->id, fn->id, mt->attempt, "succeeded", svc_stopping) != ML_OK)
            s = SETTLE_REQUEUE;
        else
            success_destination(cs, mt, fn, &res);
    } else {
        message = exec_error_message(&res);
        if (mt->attempt < 1 + fn->max_retries) {
            submit(cs->app, mt, AUDIT_QUEUED, m->body, m->body_len, &res, exec_error_type(res.status), message);
            if (completion_retry(cs->cpl, mt->id, mt->attempt) != ML_OK)
                ml_log_kv(ML_LOG_WARN, "cannot record async retry", "invocation_id", mt->id, NULL);
            s = retry_later(cs->mq, mt, m, true);
        } else {
            s = dead_letter(cs, mt, fn, m, &res, exec_error_type(res.status), message);
        }
    }
    free(message);
    sandbox_result_free(&res);
    return s;
}

/* With the id claimed (completion_begin said run): expiry, readiness, then the attempt. */
static settle handle_claimed(consumer *cs, meta *mt, const fn_info *fn, const mq_message *m)
{
    if (fn->max_event_age_s > 0 && ml_wall_ms() - mt->enqueued_ms > (int64_t)fn->max_event_age_s * 1000)
        return dead_letter(cs, mt, fn, m, NULL, "Event.Expired",
                           "the event waited longer than max_event_age_s");
    if (fn->state != FN_ACTIVE)
        return not_run(cs, mt, m);
    return run_attempt(cs, mt, fn, m);
}

/* The version fixed at acceptance replaces $LATEST in fn; SETTLE_RUN to go on. A version
 * deleted since cannot run: the invocation fails (Function.VersionNotFound). */
static settle resolve_version(consumer *cs, meta *mt, fn_info *fn, const mq_message *m)
{
    char executed[VER_EXEC_MAX], alias[VER_ALIAS_MAX];
    qual_rc rc = qualifier_resolve(cs->app->versions, fn, mt->executed, executed, alias);

    if (rc == QR_ERR)
        return SETTLE_REQUEUE;
    if (rc != QR_OK) {
        submit(cs->app, mt, AUDIT_FAILED, m->body, m->body_len, NULL, "Function.VersionNotFound",
               "the version was deleted before the event ran");
        return SETTLE_ACK;
    }
    mt->version = fn->version;
    return SETTLE_RUN;
}

static settle handle(consumer *cs, const mq_message *m)
{
    meta mt;
    fn_info fn;
    char err[256] = "";
    int64_t header_attempt;
    completion_rc cr;
    settle s;
    int rc;

    if (parse_meta(m, &mt) != ML_OK) {
        ml_log_kv(ML_LOG_ERROR, "malformed async invocation message rejected", "message_id",
                  m->message_id, NULL);
        return SETTLE_REJECT;
    }
    rc = registry_get(cs->app->registry, NULL, mt.function_id, &fn, err, sizeof(err));
    if (rc == REGISTRY_NOT_FOUND) { /* deleted meanwhile: nothing to run it on */
        submit(cs->app, &mt, AUDIT_FAILED, m->body, m->body_len, NULL, "Function.NotFound",
               "the function was deleted before the event ran");
        return SETTLE_ACK;
    }
    if (rc != ML_OK)
        return SETTLE_REQUEUE;
    if ((s = resolve_version(cs, &mt, &fn, m)) != SETTLE_RUN)
        return s;
    header_attempt = mt.attempt;
    cr = completion_begin(cs->cpl, mt.id, mt.function_id, &mt.attempt);
    if (cr == COMPLETION_DONE) /* completed already: a redelivery or a client's retry */
        return SETTLE_ACK;
    if (cr != COMPLETION_RUN) /* busy elsewhere, or Postgres cannot say: never run blind */
        return retry_later(cs->mq, &mt, m, false);
    if (mt.attempt > header_attempt)
        ml_log_kv(ML_LOG_WARN, "async attempt cut off earlier (executor crash): running again",
                  "invocation_id", mt.id, "function", fn.name, NULL);
    s = handle_claimed(cs, &mt, &fn, m);
    completion_release(cs->cpl, mt.id);
    return s;
}

/* The consumer's clients; ML_ERR (logged) when one cannot be made. */
static int consumer_open(consumer *cs, ex_app *app)
{
    mq_options o = { .heartbeat_s = -1, .connection_name = "lambda-executor-async" };
    char err[256] = "";

    cs->app = app;
    if (!(cs->d = app_thread_deps(app)))
        return ML_ERR;
    /* A consumer may hold a message for a whole invocation (up to 900 s) without servicing
     * heartbeats, so its connection has none; the broker's consumer timeout (30 min) bounds it. */
    if (!(cs->mq = mq_new(app->deps.amqp_url, &o, &topo_invoke, err, sizeof(err)))) {
        ml_log_error("async consumer cannot start: %s", err);
        return ML_ERR;
    }
    if (!(cs->cpl = completion_new(app->deps.lambda_db_url))) {
        ml_log_error("async consumer cannot start: out of memory");
        return ML_ERR;
    }
    return ML_OK;
}

void *async_main(void *arg)
{
    consumer cs = { 0 };
    bool consuming = false;

    if (consumer_open(&cs, arg) != ML_OK)
        goto out;
    while (!svc_stopping()) {
        mq_message m = { 0 };
        int rc = ML_OK;
        settle s;

        if (!consuming && (rc = mq_consume(cs.mq, TOPO_INVOKE_QUEUE, 1)) == ML_OK)
            consuming = true;
        if (rc == ML_OK)
            rc = mq_consume_next(cs.mq, 1000, &m);
        if (rc == MQ_TIMEOUT)
            continue;
        if (rc != ML_OK) {
            ml_sleep_ms(500);
            continue;
        }
        s = handle(&cs, &m);
        if (s == SETTLE_REQUEUE)
            ml_sleep_ms(1000);
        if ((s == SETTLE_ACK ? mq_ack(cs.mq, &m) : mq_nack(cs.mq, &m, s == SETTLE_REQUEUE)) != ML_OK)
            ml_log_kv(ML_LOG_WARN, "cannot settle async message", "error", mq_error(cs.mq), NULL);
        mq_message_destroy(&m);
    }
out:
    completion_free(cs.cpl);
    if (cs.mq)
        mq_close(cs.mq);
    return NULL;
}
