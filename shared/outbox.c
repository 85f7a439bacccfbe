/* outbox.c — claim due deliveries, sign, send, record the attempt: see outbox.h. */
#include "outbox.h"

#include <libpq-fe.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "httpc.h"
#include "log.h"
#include "pg.h"
#include "secretbox.h"
#include "webhook.h"

#define DEFAULT_BATCH 8
#define MAX_BATCH 100
#define DEFAULT_TIMEOUT_MS 10000L
#define MAX_TIMEOUT_MS 300000L
#define CONNECT_TIMEOUT_MS 5000L
#define DEFAULT_BACKLOG_REFRESH_MS 5000L
#define LEASE_SLACK_MS 30000L
/* A lease must outlast one request by this much; a row is sent only if at least a request
 * timeout plus SEND_MARGIN_MS of its lease is left (measured from before the claim). */
#define LEASE_MIN_OVER_TIMEOUT_MS 5000L
#define SEND_MARGIN_MS 2000L
#define MAX_DELAY_S (30.0 * 86400.0)
#define RESPONSE_MAX_BODY (64u * 1024u)
#define SNIPPET_MAX 200
#define SECRET_MAX 128
#define ERR_MAX 512
#define SQL_MAX 2048
#define INTERNAL_HEADER_MAX 512

const double outbox_default_schedule[] = { 5, 30, 120, 600, 3600, 10800, 21600, 43200 };
const size_t outbox_default_schedule_len = ML_ARRAY_LEN(outbox_default_schedule);

/* What differs between the two outbox tables. */
typedef struct schema {
    const char *deliveries, *attempts, *label_col;
    const char *order_cond;    /* extra claim condition over d, or "" */
    const char *own_secret;    /* SQL over w: the row's own signing secret, or NULL */
    const char *uses_internal; /* SQL over w: true when the internal secret signs the row */
    const char *trusted;       /* SQL over w: true when the URL is the platform's own (no SSRF) */
    const char *labels[2];     /* every label value, so the backlog gauge can drop to 0 */
} schema;

static const schema schemas[] = {
    [OUTBOX_BUILD_WEBHOOKS] = {
        "webhook_deliveries", "webhook_attempts", "target",
        " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.build_id = d.build_id"
        " AND e.target = d.target AND e.seq < d.seq AND e.status = 'pending')",
        "CASE WHEN w.target = 'user' THEN (SELECT f.webhook_secret FROM build_functions f"
        " WHERE f.id = w.function_id) END",
        "w.target <> 'user'", "w.target = 'lambda'",
        { "user", "lambda" } },
    [OUTBOX_DESTINATIONS] = {
        "destination_deliveries", "destination_attempts", "kind", "",
        /* the function's own whsec_ secret, sealed (docs/secrets.md); the platform's for a
         * function from before that has none yet */
        "(SELECT f.webhook_secret_sealed FROM functions f WHERE f.id = w.function_id)",
        "(SELECT f.webhook_secret_sealed FROM functions f WHERE f.id = w.function_id) IS NULL",
        "false", { "on_success", "on_failure" } },
};

/* Lease owners: a dispatcher holds a session-level advisory lock (LEASE_LOCK_NS, hashtext of
 * its worker_id) on its connection, taken by the claim statement itself. Postgres frees it
 * when the owner's connection ends (a kill -9 closes the socket), so a lease whose owner's
 * lock is free belongs to a dead dispatcher and is taken over at once; a live owner's lease
 * still ends by time only. A hash collision only makes a dead owner look alive (the lease
 * then runs out by time, as before). */
#define LEASE_LOCK_NS "1835823970" /* 'mlob' */
#define LEASE_LOCK_OF(who)                                                                   \
    "l.locktype = 'advisory' AND l.classid = " LEASE_LOCK_NS "::oid AND l.objsubid = 2"     \
    " AND l.objid = hashtext(" who ")::oid AND l.granted"                                   \
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"

/* Claim: lock due rows nobody holds (or whose lease owner is dead), take the lease, count the
 * attempt (so a row whose sending crashes a dispatcher still runs out of attempts). One
 * autocommitted statement; `me` takes this dispatcher's owner lock in the same statement
 * (once: a lock already held is not taken again, so its count does not grow). */
static const char claim_fmt[] =
    "WITH me AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_backend_pid()"
    " AND " LEASE_LOCK_OF("$2::text") ") THEN true"
    " ELSE pg_try_advisory_lock(" LEASE_LOCK_NS ", hashtext($2::text)) END AS held),"
    " due AS (SELECT d.id FROM %s d"
    " WHERE d.status = 'pending' AND (d.next_attempt_at <= now()"
    " OR (d.lease_owner IS NOT NULL AND d.lease_owner <> $2::text"
    " AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE " LEASE_LOCK_OF("d.lease_owner") ")))%s"
    " ORDER BY d.next_attempt_at LIMIT $1::int FOR UPDATE OF d SKIP LOCKED)"
    " UPDATE %s w SET attempts = w.attempts + 1, worker_id = $2::text, lease_owner = $2::text,"
    " next_attempt_at = now() + $3::bigint * interval '1 millisecond'"
    " FROM due, me WHERE w.id = due.id"
    " RETURNING w.id, w.url, w.payload, w.attempts, w.%s, %s, %s, %s";

/* Record the attempt and settle the row, only while this dispatcher still holds it. */
static const char finish_fmt[] =
    "WITH a AS (INSERT INTO %s (delivery_id, attempt, status_code, error, duration_ms)"
    " VALUES ($1::uuid, $3::int, $5::int, $6::text, $7::int) ON CONFLICT DO NOTHING)"
    " UPDATE %s SET status = $4::text, lease_owner = NULL,"
    " next_attempt_at = CASE WHEN $4::text = 'pending'"
    "   THEN now() + $8::bigint * interval '1 millisecond' ELSE next_attempt_at END,"
    " last_status_code = $5::int, last_error = $9::text,"
    " delivered_at = CASE WHEN $4::text = 'delivered' THEN now() END"
    " WHERE id = $1::uuid AND worker_id = $2::text AND attempts = $3::int"
    " AND status = 'pending'";

/* Give back a claimed row that was not sent: due now, the attempt not counted. */
static const char release_fmt[] =
    "UPDATE %s SET attempts = attempts - 1, next_attempt_at = now(), lease_owner = NULL"
    " WHERE id = $1::uuid AND worker_id = $2::text AND attempts = $3::int"
    " AND status = 'pending'";

static const char backlog_fmt[] = "SELECT %s, count(*) FROM %s WHERE status = 'pending' GROUP BY 1";

struct outbox {
    const schema *s;
    pg_conn *db;
    httpc *http;
    char worker_id[OUTBOX_WORKER_ID_MAX + 1];
    char internal_secret[SECRET_MAX];
    char internal_header[INTERNAL_HEADER_MAX]; /* "" when none */
    double schedule[OUTBOX_MAX_SCHEDULE];
    size_t nschedule;
    bool jitter;
    int batch;
    long timeout_ms, lease_ms, backlog_refresh_ms;
    bool (*should_stop)(void);
    ssrf_policy ssrf;
    metric *m_total, *m_duration, *m_pending;
    bool backlog_done;
    int64_t backlog_at_ms;
    char sql_claim[SQL_MAX], sql_finish[SQL_MAX], sql_release[SQL_MAX], sql_backlog[SQL_MAX];
    char err[ERR_MAX];
};

/* One claimed row; strings point into the claim's PGresult. */
typedef struct row {
    const char *id, *url, *payload, *label, *own_secret;
    size_t payload_len;
    int64_t attempt;
    bool uses_internal;
    bool trusted;
} row;

/* How one attempt ended. */
typedef struct outcome {
    const char *status;      /* delivered | pending | failed */
    const char *result;      /* metric label: delivered | retry | failed | blocked */
    long http_status;        /* 0: no response */
    int64_t duration_ms;
    int64_t retry_ms;        /* for pending */
    char error[ERR_MAX];     /* this attempt's error; "" if none */
    char last_error[ERR_MAX + 64];
} outcome;

static int cfg_fail(char *err, size_t errlen, const char *fmt, ...) ML_PRINTF(3, 4);

static int cfg_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        ml_vsnprintf_trunc(err, errlen, fmt, ap);
        va_end(ap);
    }
    return ML_ERR;
}

static int set_schedule(outbox *o, const outbox_config *cfg, char *err, size_t errlen)
{
    const double *s = cfg->schedule_s ? cfg->schedule_s : outbox_default_schedule;
    size_t n = cfg->schedule_s ? cfg->schedule_len : outbox_default_schedule_len;

    if (n < 1 || n > OUTBOX_MAX_SCHEDULE)
        return cfg_fail(err, errlen, "outbox: schedule_len must be 1..%d", OUTBOX_MAX_SCHEDULE);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(s[i]) || s[i] < 0 || s[i] > MAX_DELAY_S)
            return cfg_fail(err, errlen, "outbox: schedule_s[%zu] must be 0..%.0f seconds", i,
                            MAX_DELAY_S);
        o->schedule[i] = s[i];
    }
    o->nschedule = n;
    return ML_OK;
}

static int set_limits(outbox *o, const outbox_config *cfg, char *err, size_t errlen)
{
    o->batch = cfg->batch ? cfg->batch : DEFAULT_BATCH;
    if (o->batch < 1 || o->batch > MAX_BATCH)
        return cfg_fail(err, errlen, "outbox: batch must be 1..%d", MAX_BATCH);
    o->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    if (o->timeout_ms < 1 || o->timeout_ms > MAX_TIMEOUT_MS)
        return cfg_fail(err, errlen, "outbox: timeout_ms must be 1..%ld", MAX_TIMEOUT_MS);
    o->lease_ms = cfg->lease_ms ? cfg->lease_ms : o->batch * o->timeout_ms + LEASE_SLACK_MS;
    if (o->lease_ms < o->timeout_ms + LEASE_MIN_OVER_TIMEOUT_MS)
        return cfg_fail(err, errlen, "outbox: lease_ms (%ld) must be at least timeout_ms + %ld",
                        o->lease_ms, LEASE_MIN_OVER_TIMEOUT_MS);
    o->backlog_refresh_ms = cfg->backlog_refresh_ms ? cfg->backlog_refresh_ms
                                                    : DEFAULT_BACKLOG_REFRESH_MS;
    if (o->backlog_refresh_ms < 0)
        return cfg_fail(err, errlen, "outbox: backlog_refresh_ms must not be negative");
    return ML_OK;
}

static int set_identity(outbox *o, const outbox_config *cfg, char *err, size_t errlen)
{
    char host[64] = "host";
    unsigned char rnd[4] = { 0 };

    if (!cfg->internal_secret || webhook_secret_valid(cfg->internal_secret) != ML_OK ||
        ml_strlcpy(o->internal_secret, cfg->internal_secret, sizeof(o->internal_secret)) != ML_OK)
        return cfg_fail(err, errlen,
                        "outbox: internal_secret must be whsec_ + base64 of 24..64 bytes");
    if (cfg->internal_header &&
        ml_strlcpy(o->internal_header, cfg->internal_header, sizeof(o->internal_header)) != ML_OK)
        return cfg_fail(err, errlen, "outbox: internal_header is too long");
    if (cfg->worker_id) {
        if (!cfg->worker_id[0] ||
            ml_strlcpy(o->worker_id, cfg->worker_id, sizeof(o->worker_id)) != ML_OK)
            return cfg_fail(err, errlen, "outbox: worker_id must be 1..%d characters",
                            OUTBOX_WORKER_ID_MAX);
        return ML_OK;
    }
    if (gethostname(host, sizeof(host)) != 0)
        ml_strlcpy(host, "host", sizeof(host));
    host[sizeof(host) - 1] = '\0';
    if (crypto_random(rnd, sizeof(rnd)) != ML_OK)
        return cfg_fail(err, errlen, "outbox: no random bytes for the worker id");
    /* A cut would drop the random suffix that keeps two dispatchers' leases apart. */
    if (ml_snprintf(o->worker_id, sizeof(o->worker_id), "%s:%ld:%02x%02x%02x%02x", host,
                    (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3]) != ML_OK)
        return cfg_fail(err, errlen, "outbox: the host name is too long for a worker id");
    return ML_OK;
}

static int set_metrics(outbox *o, metrics_registry *reg, char *err, size_t errlen)
{
    if (!reg)
        return ML_OK;
    o->m_total = metrics_counter(reg, "minilambda_webhook_deliveries_total",
                                 "Webhook delivery attempts processed, by outcome.",
                                 "target,result");
    o->m_duration = metrics_histogram(reg, "minilambda_webhook_attempt_duration_seconds",
                                      "Duration of webhook HTTP attempts.", "target", NULL, 0);
    o->m_pending = metrics_gauge(reg, "minilambda_webhook_outbox_pending",
                                 "Webhook deliveries still pending.", "target");
    if (!o->m_total || !o->m_duration || !o->m_pending)
        return cfg_fail(err, errlen, "outbox: cannot register metrics (name clash?)");
    return ML_OK;
}

static int build_sql(outbox *o, char *err, size_t errlen)
{
    const schema *s = o->s;

    if (ml_snprintf(o->sql_claim, sizeof(o->sql_claim), claim_fmt, s->deliveries,
                    s->order_cond, s->deliveries, s->label_col, s->own_secret,
                    s->uses_internal, s->trusted) != ML_OK ||
        ml_snprintf(o->sql_finish, sizeof(o->sql_finish), finish_fmt, s->attempts,
                    s->deliveries) != ML_OK ||
        ml_snprintf(o->sql_release, sizeof(o->sql_release), release_fmt, s->deliveries) !=
            ML_OK ||
        ml_snprintf(o->sql_backlog, sizeof(o->sql_backlog), backlog_fmt, s->label_col,
                    s->deliveries) != ML_OK)
        return cfg_fail(err, errlen, "outbox: SQL does not fit its buffer");
    return ML_OK;
}

outbox *outbox_new(const outbox_config *cfg, char *err, size_t errlen)
{
    static const pg_options pgo = { .statement_timeout_ms = 15000,
                                    .application_name = "minilambda-outbox" };
    outbox *o = NULL;

    if (!cfg || (cfg->kind != OUTBOX_BUILD_WEBHOOKS && cfg->kind != OUTBOX_DESTINATIONS) ||
        !cfg->db_url || !cfg->db_url[0]) {
        cfg_fail(err, errlen, "outbox: a config with a known kind and db_url is required");
        return NULL;
    }
    o = calloc(1, sizeof(*o));
    if (!o) {
        cfg_fail(err, errlen, "outbox: out of memory");
        return NULL;
    }
    o->s = &schemas[cfg->kind];
    o->jitter = !cfg->no_jitter;
    o->should_stop = cfg->should_stop;
    o->ssrf = cfg->ssrf;
    if (set_schedule(o, cfg, err, errlen) != ML_OK || set_limits(o, cfg, err, errlen) != ML_OK ||
        set_identity(o, cfg, err, errlen) != ML_OK ||
        set_metrics(o, cfg->metrics, err, errlen) != ML_OK || build_sql(o, err, errlen) != ML_OK)
        goto fail;
    o->db = pg_new(cfg->db_url, &pgo);
    o->http = httpc_new();
    if (!o->db || !o->http) {
        cfg_fail(err, errlen, "outbox: out of memory (or db_url longer than 4 KiB)");
        goto fail;
    }
    return o;
fail:
    outbox_free(o);
    return NULL;
}

void outbox_free(outbox *o)
{
    if (!o)
        return;
    pg_close(o->db);
    httpc_free(o->http);
    explicit_bzero(o->internal_secret, sizeof(o->internal_secret));
    explicit_bzero(o->internal_header, sizeof(o->internal_header));
    free(o);
}

const char *outbox_error(const outbox *o)
{
    return o ? o->err : "";
}

const char *outbox_worker_id(const outbox *o)
{
    return o ? o->worker_id : "";
}

/* ---- the backlog gauge ---- */

static void refresh_backlog(outbox *o)
{
    double counts[2] = { 0, 0 };
    int64_t now = ml_now_ms();
    PGresult *res;

    if (!o->m_pending || (o->backlog_done && now - o->backlog_at_ms < o->backlog_refresh_ms))
        return;
    o->backlog_done = true;
    o->backlog_at_ms = now;
    res = pg_query(o->db, "outbox_backlog", o->sql_backlog, 0, NULL);
    if (!res) {
        ml_log_warn("outbox: counting pending deliveries failed: %s", pg_error(o->db));
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *label = pg_get_text(res, i, 0);
        int64_t n = 0;

        for (size_t j = 0; j < ML_ARRAY_LEN(counts); j++)
            if (label && strcmp(label, o->s->labels[j]) == 0 &&
                pg_get_int64(res, i, 1, &n) == ML_OK)
                counts[j] = (double)n;
    }
    PQclear(res);
    for (size_t j = 0; j < ML_ARRAY_LEN(counts); j++) {
        const char *v[] = { o->s->labels[j] };
        metric_set(o->m_pending, v, counts[j]);
    }
}

/* ---- one attempt ---- */

/* delay_s ± 10 % (unless jitter is off), in milliseconds. */
static int64_t delay_ms(const outbox *o, double delay_s)
{
    double factor = 1.0;
    uint32_t r = 0;

    if (o->jitter && crypto_random(&r, sizeof(r)) == ML_OK)
        factor = 0.9 + 0.2 * ((double)r / 4294967296.0);
    return (int64_t)llround(delay_s * 1000.0 * factor);
}

/* The attempt failed in a way that may pass later: schedule the next try or give up. */
static void retry_or_fail(const outbox *o, const row *r, outcome *out)
{
    if (r->attempt >= 1 && (size_t)r->attempt <= o->nschedule) {
        out->status = "pending";
        out->result = "retry";
        out->retry_ms = delay_ms(o, o->schedule[r->attempt - 1]);
        ml_snprintf_trunc(out->last_error, sizeof(out->last_error), "%s", out->error);
    } else {
        out->status = "failed";
        out->result = "failed";
        ml_snprintf_trunc(out->last_error, sizeof(out->last_error), "gave up after %lld attempts: %s",
                          (long long)r->attempt, out->error);
    }
}

/* Final failure without a retry. */
static void final_failure(outcome *out, const char *result, const char *fmt, ...)
    ML_PRINTF(3, 4);

static void final_failure(outcome *out, const char *result, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ml_vsnprintf_trunc(out->error, sizeof(out->error), fmt, ap);
    va_end(ap);
    out->status = "failed";
    out->result = result;
    ml_snprintf_trunc(out->last_error, sizeof(out->last_error), "%s", out->error);
}

/* First bytes of a response body, printable ASCII only, for last_error. */
static void body_snippet(const ml_buf *body, char *dst, size_t size)
{
    size_t n = body->len < SNIPPET_MAX ? body->len : SNIPPET_MAX, j = 0;

    for (size_t i = 0; i < n && j + 1 < size; i++) {
        unsigned char c = (unsigned char)body->data[i];
        dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : ' ';
    }
    dst[j] = '\0';
}

/* Sorts a received response (or a transport failure) into an outcome. */
static void classify(const outbox *o, const row *r, int rc, const httpc_response *resp,
                     outcome *out)
{
    char snippet[SNIPPET_MAX + 1];
    long st = resp->status;

    out->http_status = st;
    if (st >= 200 && st < 300) {
        /* The receiver said yes; a failure reading the rest of its body does not matter. */
        out->status = "delivered";
        out->result = "delivered";
        return;
    }
    body_snippet(&resp->body, snippet, sizeof(snippet));
    if (st > 0)
        ml_snprintf_trunc(out->error, sizeof(out->error), "HTTP %ld%s%s%s%s", st, snippet[0] ? ": " : "",
                          snippet, rc != ML_OK ? "; " : "", rc != ML_OK ? httpc_error(o->http) : "");
    else
        ml_snprintf_trunc(out->error, sizeof(out->error), "%s", httpc_error(o->http));
    if (st == 410) {
        out->status = "failed";
        out->result = "failed";
        ml_snprintf_trunc(out->last_error, sizeof(out->last_error),
                          "receiver answered 410 Gone: not retried (%s)", out->error);
        return;
    }
    retry_or_fail(o, r, out);
}

/* Signs and POSTs the row's payload; fills out. */
static void send_row(outbox *o, const row *r, const char *secret, const char *resolve,
                     outcome *out)
{
    char sig[WEBHOOK_SIGNATURE_LEN], h_id[WEBHOOK_ID_MAX + 16], h_ts[48];
    char h_sig[WEBHOOK_SIGNATURE_LEN + 24];
    /* the internal credential goes only to the platform's own receiver, never a user's URL */
    const char *internal = r->trusted && o->internal_header[0] ? o->internal_header : NULL;
    const char *headers[] = { "Content-Type: application/json", h_id, h_ts, h_sig, internal, NULL };
    int64_t ts = ml_wall_ms() / 1000, t0;
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    int rc;

    if (webhook_sign(secret, r->id, ts, r->payload, r->payload_len, sig) != ML_OK) {
        final_failure(out, "failed", "cannot sign: the %s secret or message id is malformed",
                      r->uses_internal ? "internal" : "function's webhook");
        return;
    }
    if (ml_snprintf(h_id, sizeof(h_id), "webhook-id: %s", r->id) != ML_OK ||
        ml_snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", (long long)ts) != ML_OK ||
        ml_snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", sig) != ML_OK) {
        final_failure(out, "failed", "cannot build the webhook headers: a value is too long");
        return;
    }
    req.method = "POST";
    req.url = r->url;
    req.headers = headers;
    req.body = r->payload;
    req.body_len = r->payload_len;
    req.timeout_ms = o->timeout_ms;
    req.connect_timeout_ms = o->timeout_ms < CONNECT_TIMEOUT_MS ? o->timeout_ms
                                                                : CONNECT_TIMEOUT_MS;
    req.max_body = RESPONSE_MAX_BODY;
    req.resolve = resolve;
    t0 = ml_now_ms();
    rc = httpc_do(o->http, &req, &resp);
    out->duration_ms = ml_now_ms() - t0;
    if (o->m_duration) {
        const char *v[] = { r->label };
        metric_observe(o->m_duration, v, (double)out->duration_ms / 1000.0);
    }
    classify(o, r, rc, &resp, out);
    httpc_response_free(&resp);
}

/* Decides and performs one row's attempt. false: not attempted, release the row (its lease
 * could run out during the request). */
static bool attempt_row(outbox *o, const row *r, int64_t lease_end_ms, outcome *out)
{
    char why[ERR_MAX - 32];
    const char *secret = r->uses_internal ? o->internal_secret : r->own_secret;
    char *opened = NULL;
    ssrf_target target = { 0 };
    /* The platform's own URL (the lambda-executor) may well be private; users' never are.
     * The request is pinned to the addresses checked here, so DNS cannot change its mind. */
    ssrf_result sr = r->trusted ? SSRF_OK
                                : ssrf_check_url(r->url, &o->ssrf, &target, why, sizeof(why));

    if (sr == SSRF_BAD_URL || sr == SSRF_BLOCKED) {
        final_failure(out, "blocked", "webhook URL refused: %s", why);
        return true;
    }
    if (sr == SSRF_UNRESOLVED) {
        ml_snprintf_trunc(out->error, sizeof(out->error), "%s", why);
        retry_or_fail(o, r, out);
        return true;
    }
    if (ml_now_ms() + o->timeout_ms + SEND_MARGIN_MS > lease_end_ms)
        return false;
    if (!secret) {
        final_failure(out, "failed", "no webhook secret for this delivery's function");
        return true;
    }
    if (secretbox_is_sealed(secret)) {
        if (secretbox_open(secretbox_global(), "webhook_secret", secret, &opened, why, sizeof(why)) != ML_OK) {
            final_failure(out, "failed", "cannot open the function's webhook secret: %s", why);
            return true;
        }
        secret = opened;
    }
    send_row(o, r, secret, target.resolve, out);
    if (opened) {
        explicit_bzero(opened, strlen(opened));
        free(opened);
    }
    return true;
}

/* ---- settling ---- */

static void log_outcome(const row *r, const outcome *out)
{
    char attempt[24], code[24];
    ml_log_level lvl = strcmp(out->result, "delivered") == 0 ? ML_LOG_DEBUG
                       : strcmp(out->result, "retry") == 0   ? ML_LOG_INFO
                                                             : ML_LOG_WARN;

    ml_snprintf_trunc(attempt, sizeof(attempt), "%lld", (long long)r->attempt);
    ml_snprintf_trunc(code, sizeof(code), "%ld", out->http_status);
    ml_log_kv(lvl, "webhook delivery attempt", "delivery_id", r->id, "target", r->label,
              "result", out->result, "attempt", attempt, "status_code", code, "error",
              out->last_error, NULL);
}

static int settle(outbox *o, const row *r, const outcome *out)
{
    char attempt[24], code[24], dur[24], retry[24];
    const char *params[9];
    int64_t affected = 0;

    if (ml_snprintf(attempt, sizeof(attempt), "%lld", (long long)r->attempt) != ML_OK ||
        ml_snprintf(code, sizeof(code), "%ld", out->http_status) != ML_OK ||
        ml_snprintf(dur, sizeof(dur), "%lld",
                    (long long)(out->duration_ms > 0 ? out->duration_ms : 0)) != ML_OK ||
        ml_snprintf(retry, sizeof(retry), "%lld", (long long)out->retry_ms) != ML_OK) {
        ml_snprintf_trunc(o->err, sizeof(o->err), "settling delivery %s: a number overflows", r->id);
        return ML_ERR;
    }
    params[0] = r->id;
    params[1] = o->worker_id;
    params[2] = attempt;
    params[3] = out->status;
    params[4] = out->http_status > 0 ? code : NULL;
    params[5] = out->error[0] ? out->error : NULL;
    params[6] = dur;
    params[7] = retry;
    params[8] = strcmp(out->status, "delivered") == 0 ? NULL : out->last_error;
    if (pg_exec(o->db, "outbox_finish", o->sql_finish, 9, params, &affected) != ML_OK) {
        ml_snprintf_trunc(o->err, sizeof(o->err), "recording attempt %s of delivery %s: %s", attempt,
                          r->id, pg_error(o->db));
        return ML_ERR;
    }
    if (affected == 0)
        ml_log_kv(ML_LOG_WARN, "webhook delivery lease lost before settling (another dispatcher"
                  " took it over)", "delivery_id", r->id, "attempt", attempt, NULL);
    if (o->m_total) {
        const char *v[] = { r->label, out->result };
        metric_inc(o->m_total, v);
    }
    log_outcome(r, out);
    return ML_OK;
}

static void release(outbox *o, const row *r)
{
    char attempt[24];
    const char *params[3] = { r->id, o->worker_id, attempt };

    if (ml_snprintf(attempt, sizeof(attempt), "%lld", (long long)r->attempt) != ML_OK)
        return; /* cannot happen (24 bytes hold any int64); the lease then simply runs out */
    if (pg_exec(o->db, "outbox_release", o->sql_release, 3, params, NULL) != ML_OK)
        ml_log_warn("outbox: releasing delivery %s failed (due again when its lease ends): %s",
                    r->id, pg_error(o->db));
}

/* Columns: id, url, payload, attempts, label, own secret, uses internal secret, trusted. */
static int read_row(const PGresult *res, int i, row *r)
{
    int uses = 0, trusted = 0;

    memset(r, 0, sizeof(*r));
    r->id = pg_get_text(res, i, 0);
    r->url = pg_get_text(res, i, 1);
    r->payload = pg_get_text(res, i, 2);
    r->payload_len = (size_t)PQgetlength(res, i, 2);
    r->label = pg_get_text(res, i, 4);
    r->own_secret = pg_get_text(res, i, 5);
    if (!r->id || !r->url || !r->payload || !r->label ||
        pg_get_int64(res, i, 3, &r->attempt) != ML_OK || pg_get_bool(res, i, 6, &uses) != ML_OK ||
        pg_get_bool(res, i, 7, &trusted) != ML_OK)
        return ML_ERR;
    r->uses_internal = uses != 0;
    r->trusted = trusted != 0;
    return ML_OK;
}

int outbox_run_once(outbox *o, int *delivered)
{
    char p_batch[16], p_lease[24];
    const char *params[3] = { p_batch, o->worker_id, p_lease };
    PGresult *res = NULL;
    int n, i, done = 0, ok = 0, rc = ML_ERR;
    int64_t lease_end;

    if (delivered)
        *delivered = 0;
    o->err[0] = '\0';
    refresh_backlog(o);
    if (ml_snprintf(p_batch, sizeof(p_batch), "%d", o->batch) != ML_OK ||
        ml_snprintf(p_lease, sizeof(p_lease), "%ld", o->lease_ms) != ML_OK) {
        ml_snprintf_trunc(o->err, sizeof(o->err), "claiming due deliveries: a number overflows");
        return ML_ERR;
    }
    lease_end = ml_now_ms() + o->lease_ms; /* local time before the claim: conservative */
    res = pg_query(o->db, "outbox_claim", o->sql_claim, 3, params);
    if (!res) {
        ml_snprintf_trunc(o->err, sizeof(o->err), "claiming due deliveries: %s", pg_error(o->db));
        return ML_ERR;
    }
    n = PQntuples(res);
    for (i = 0; i < n; i++) {
        outcome out = { .status = "failed", .result = "failed" };
        row r;

        if (read_row(res, i, &r) != ML_OK) {
            ml_snprintf_trunc(o->err, sizeof(o->err), "claim returned an unexpected row");
            goto out;
        }
        if ((o->should_stop && o->should_stop()) || !attempt_row(o, &r, lease_end, &out))
            break;
        if (settle(o, &r, &out) != ML_OK)
            goto out;
        done++;
        ok += strcmp(out.status, "delivered") == 0;
    }
    for (; i < n; i++) { /* stopping or out of lease: hand the rest back unsent */
        row r;
        if (read_row(res, i, &r) == ML_OK)
            release(o, &r);
    }
    rc = done;
out:
    PQclear(res);
    if (delivered)
        *delivered = ok;
    return rc;
}

void outbox_run(outbox *o, int64_t idle_ms)
{
    int64_t backoff = idle_ms;

    while (!(o->should_stop && o->should_stop())) {
        int n = outbox_run_once(o, NULL);

        if (n > 0) {
            backoff = idle_ms;
            continue;
        }
        if (n == ML_ERR) {
            ml_log_kv(ML_LOG_WARN, "webhook dispatcher: database error", "error", outbox_error(o), NULL);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
        }
        ml_sleep_ms(n == ML_ERR ? backoff : idle_ms);
    }
}
