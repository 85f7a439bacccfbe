/* outbox.h — dispatcher for durable, signed, retried webhook deliveries kept in Postgres.
 *
 * Producers insert one row per message (see migrations: webhook_deliveries on the build side,
 * destination_deliveries on the lambda side); a dispatcher loop calls outbox_run_once, which
 *   1. claims up to `batch` due rows in one autocommitted statement:
 *        status = 'pending' AND next_attempt_at <= now()
 *        [build side only] AND no row of the same (build_id, target) with a smaller seq is
 *        still 'pending' (so queued → building → completed/failed arrive in order; a
 *        'delivered' or 'failed' earlier row no longer holds the later ones back)
 *      taken oldest next_attempt_at first with FOR UPDATE SKIP LOCKED, and for each claimed
 *      row sets attempts = attempts + 1, worker_id = this dispatcher, and
 *      lease_owner = this dispatcher, next_attempt_at = now() + lease — the lease: a
 *      dispatcher that dies mid-batch leaves rows that become due again when it runs out, or
 *      at once: the claim also takes rows whose lease_owner's advisory lock is free. Each
 *      dispatcher holds a session-level advisory lock keyed by its worker_id on its own
 *      connection (taken by the claim statement), which Postgres frees when the owner dies;
 *   2. for each row: checks the URL against the SSRF policy (refused → 'failed' at once, no
 *      request; build-side target 'lambda' is exempt: its URL is the platform's own
 *      lambda-executor address from configuration, never user input), signs the stored payload bytes per Standard Webhooks (webhook-id = row id,
 *      the same on every retry; webhook-timestamp = now; webhook-signature v1 over
 *      "id.timestamp.payload"), POSTs it (Content-Type: application/json, no redirects);
 *   3. records the attempt (<attempts table>: attempt = the row's new attempts value,
 *      status_code, error, duration_ms) and settles the row in one statement, fenced on
 *      (worker_id, attempts) so a dispatcher whose lease was lost changes nothing:
 *        any 2xx            → 'delivered', delivered_at = now()
 *        410 Gone           → 'failed' (the receiver asked us to stop)
 *        other status, transport error, DNS failure
 *                           → 'pending', next_attempt_at = now() + schedule[attempts-1] ± jitter,
 *                             or 'failed' once the schedule is used up (1 + schedule_len tries)
 *      last_status_code / last_error keep the latest outcome.
 *
 * Producers must insert rows with status 'pending' (the default), attempts 0, the exact
 * body bytes in payload, and next_attempt_at = now() (or 'infinity' to hold a row back until
 * released by setting it to now()). Build side: seq 1/2/3 for queued/building/terminal.
 *
 * Signing secrets. Build side: target 'user' uses build_functions.webhook_secret of the row's
 * function_id; target 'lambda' uses config.internal_secret. Lambda side (destinations): the
 * function's own whsec_ secret (functions.webhook_secret_sealed, opened with secretbox_global,
 * docs/secrets.md); config.internal_secret for a function that has none yet.
 *
 * Threads: an outbox owns one Postgres connection and one HTTP client, so it belongs to one
 * thread at a time; run one outbox per dispatcher thread. Any number of dispatchers, in any
 * number of processes, may work the same table: SKIP LOCKED and the lease keep one delivery
 * from being sent by two of them at once. Call httpc_global_init() before creating any.
 *
 * Metrics (when config.metrics is set; families are shared by all outboxes of a registry):
 *   minilambda_webhook_deliveries_total{target,result}  one per processed row; result is
 *       delivered | retry (attempt failed, will retry) | failed (410, malformed secret or
 *       retries exhausted) | blocked (URL refused by the SSRF policy or malformed)
 *   minilambda_webhook_attempt_duration_seconds{target}  HTTP attempts only
 *   minilambda_webhook_outbox_pending{target}  rows still pending, refreshed at most every
 *       backlog_refresh_ms by outbox_run_once
 * target is the row's target ('user'/'lambda') or, for destinations, its kind
 * ('on_success'/'on_failure'). */
#ifndef ML_OUTBOX_H
#define ML_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"
#include "ml.h"
#include "ssrf.h"

/* Which tables to work. */
typedef enum {
    OUTBOX_BUILD_WEBHOOKS = 0, /* build_service_db: webhook_deliveries, webhook_attempts */
    OUTBOX_DESTINATIONS        /* lambda_service_db: destination_deliveries, destination_attempts */
} outbox_kind;

#define OUTBOX_MAX_SCHEDULE 32
#define OUTBOX_WORKER_ID_MAX 128

/* Retry delays in seconds after attempt 1, 2, ...: 5 s, 30 s, 2 min, 10 min, 1 h, 3 h, 6 h,
 * 12 h — 9 attempts over about 22 hours (the "for a day"). */
extern const double outbox_default_schedule[];
extern const size_t outbox_default_schedule_len;

/* Dispatcher settings. Zero values mean the documented defaults. */
typedef struct outbox_config {
    outbox_kind kind;
    const char *db_url;          /* required; the outbox opens its own connection */
    const char *internal_secret; /* required "whsec_..." (see "Signing secrets" above) */
    const char *worker_id;       /* recorded in worker_id; NULL: "<hostname>:<pid>:<random>" */
    ssrf_policy ssrf;            /* zero: public addresses only */
    const double *schedule_s;    /* retry delays (seconds, >= 0); NULL: the default schedule */
    size_t schedule_len;         /* 1..OUTBOX_MAX_SCHEDULE when schedule_s is set */
    bool no_jitter;              /* default: each delay is scaled by a random 0.9..1.1 */
    int batch;                   /* rows claimed per run; 0: 8 */
    long timeout_ms;             /* per HTTP request, whole exchange; 0: 10000 */
    /* Lease per claim; 0: batch × timeout_ms + 30 s. At least timeout_ms + 5 s. A row whose
     * lease would run out before its request could time out is not sent but released. */
    long lease_ms;
    metrics_registry *metrics;   /* optional; not owned */
    long backlog_refresh_ms;     /* 0: 5000 */
    /* Optional: polled before each send (e.g. svc_stopping). When it returns true the rows
     * not yet sent are released (due now, attempt not counted) and run_once returns. */
    bool (*should_stop)(void);
    /* Optional "Name: value" line sent only to the platform's own URL (build side, target
     * 'lambda'; see "trusted" above): the internal credential (intauth.h). Never sent to a
     * user's URL. Copied. */
    const char *internal_header;
} outbox_config;

typedef struct outbox outbox;

/* Validates cfg and creates a dispatcher; connects lazily. Strings and the schedule are
 * copied. NULL on a bad config or out of memory, with the reason in err.
 * The caller frees it with outbox_free(). */
outbox *outbox_new(const outbox_config *cfg, char *err, size_t errlen);

/* Runs batches until should_stop says so, sleeping idle_ms when nothing is due (and backing
 * off up to 5 s while the database fails). The body of a dispatcher thread. */
void outbox_run(outbox *o, int64_t idle_ms);

/* Closes the connections and frees the dispatcher (NULL is fine). */
void outbox_free(outbox *o);

/* Claims and processes one batch (see the top of this file). Returns the number of rows
 * processed (sent or settled; 0 when nothing was due — sleep a little, e.g. 200 ms, and
 * call again) and sets *delivered (may be NULL) to how many were delivered.
 * ML_ERR when the database failed (outbox_error says why); claimed rows not settled then
 * become due again when their lease ends. */
int outbox_run_once(outbox *o, int *delivered);

/* Message of the last ML_ERR from outbox_run_once ("" if none). Valid until the next call. */
const char *outbox_error(const outbox *o);

/* This dispatcher's worker_id (as written to the rows it claims). */
const char *outbox_worker_id(const outbox *o);

#endif
