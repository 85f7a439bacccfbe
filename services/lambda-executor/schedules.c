/* schedules.c — the scheduler thread (see schedules.h and docs/schedules.md); the
 * endpoints are in schedules_http.c. */
#include "schedules.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "cron.h"
#include "log.h"
#include "pgpool.h"
#include "service.h"

/* The scheduler sleeps at most this long between claims, so a fire is at most ~this late. */
#define POLL_MS 1000
/* Woken for a fire due in x ms, it sleeps x + this, so Postgres' now() has passed it. */
#define WAKE_SLACK_MS 5

/* minilambda_schedule_fires_total: set once by schedules_init, before any thread uses it
 * (thread creation orders the write before the reads); NULL-safe in metric_inc. */
static metric *fires_total;

int schedules_init(metrics_registry *reg)
{
    static const char *const results[] = { "fired", "skipped", "failed" };

    fires_total = metrics_counter(reg, "minilambda_schedule_fires_total",
                                  "Due schedule fires: fired (queued as an async invocation),"
                                  " skipped (function not active), failed (not queued; retried).",
                                  "result");
    if (!fires_total)
        return ML_ERR;
    for (size_t i = 0; i < ML_ARRAY_LEN(results); i++)
        metric_add(fires_total, &results[i], 0); /* every series shows from the start */
    return ML_OK;
}

static void count_fire(const char *result)
{
    metric_inc(fires_total, &result);
}


/* ------------------------------------------------------------------------------------ */
/* Scheduler                                                                            */

typedef struct scheduler {
    ex_app *app;
    fn_info *fn;   /* registry_get's scratch (large: kept off the stack) */
    bool troubled; /* a dependency is failing: logged once per outage, not once a second */
} scheduler;

/* One claimed row. Strings point into the claim's PGresult. */
typedef struct due_fire {
    const char *id, *function_id, *cron, *payload;
    int64_t due, now;
} due_fire;

/* What to write back: the new next_fire_at, or disable the schedule. */
typedef struct advance {
    int64_t next;  /* 0: none (disable) */
    bool fired;    /* set last_fired_at to the due time */
} advance;

typedef enum {
    STEP_IDLE,  /* nothing due (for this executor) */
    STEP_DONE,  /* one due row handled: look for the next right away */
    STEP_RETRY, /* a dependency failed: wait, then try again */
} step_result;

static void trouble(scheduler *s, const char *what, const char *why)
{
    if (!s->troubled)
        ml_log_kv(ML_LOG_WARN, "scheduler: cannot fire due schedules; retrying every second",
                  "step", what, "error", why, NULL);
    s->troubled = true;
}

static void recovered(scheduler *s)
{
    if (s->troubled)
        ml_log_info("scheduler: firing schedules again");
    s->troubled = false;
}

/* Decides the fate of a claimed row and, when it should fire, queues it. ML_OK with *adv
 * filled, or ML_ERR when the fire must be retried (nothing was queued). */
static int handle_fire(scheduler *s, deps *d, const due_fire *f, advance *adv)
{
    char err[256], inv_id[ML_UUID_LEN];
    cron_expr c;
    int rc;

    *adv = (advance){ 0 };
    /* a fire missed while every executor was down runs once: the next one is after now */
    if (cron_parse(f->cron, &c, err, sizeof(err)) != ML_OK ||
        cron_next(&c, f->now > f->due ? f->now : f->due, &adv->next) != ML_OK) {
        ml_log_kv(ML_LOG_ERROR, "schedule disabled: its cron expression cannot fire", "schedule_id", f->id,
                  "cron", f->cron, NULL);
        adv->next = 0;
        count_fire("skipped");
        return ML_OK;
    }
    rc = registry_get(s->app->registry, NULL, f->function_id, s->fn, err, sizeof(err));
    if (rc == ML_ERR) {
        trouble(s, "function lookup", err);
        count_fire("failed");
        return ML_ERR;
    }
    if (rc == REGISTRY_NOT_FOUND || s->fn->state != FN_ACTIVE) {
        ml_log_kv(ML_LOG_WARN, "schedule fire skipped: the function is not active", "schedule_id", f->id,
                  "function_id", f->function_id, "state", rc == REGISTRY_NOT_FOUND ? "deleted"
                  : s->fn->state == FN_PENDING ? "pending" : "failed", NULL);
        count_fire("skipped");
        return ML_OK;
    }
    if (async_enqueue(s->app, d,
                      &(async_event){ .fn = s->fn, .payload = f->payload, .len = strlen(f->payload),
                                      .trigger = AUDIT_CRON, .schedule_id = f->id },
                      inv_id, err, sizeof(err)) != ML_OK) {
        trouble(s, "enqueue", err);
        count_fire("failed");
        return ML_ERR;
    }
    ml_log_kv(ML_LOG_INFO, "schedule fired", "schedule_id", f->id, "function_id", f->function_id,
              "invocation_id", inv_id, NULL);
    count_fire("fired");
    adv->fired = true;
    return ML_OK;
}

static int save_advance(pg_conn *db, const due_fire *f, const advance *adv)
{
    char due_s[24], next_s[24];
    const char *params[4] = { f->id, adv->fired ? due_s : NULL, adv->next ? next_s : NULL,
                              adv->next ? "true" : "false" };

    if (ml_snprintf(due_s, sizeof(due_s), "%lld", (long long)f->due) != ML_OK ||
        ml_snprintf(next_s, sizeof(next_s), "%lld", (long long)adv->next) != ML_OK)
        return ML_ERR; /* the caller rolls back: the fire is retried */
    return pg_exec(db, "sch_advance",
                   "UPDATE schedules SET last_fired_at = coalesce(to_timestamp($2::bigint), last_fired_at),"
                   " next_fire_at = to_timestamp($3::bigint), enabled = $4::boolean WHERE id = $1::uuid",
                   4, params, NULL);
}

static bool read_fire(const PGresult *r, due_fire *f)
{
    f->id = pg_get_text(r, 0, 0);
    f->function_id = pg_get_text(r, 0, 1);
    f->cron = pg_get_text(r, 0, 2);
    f->payload = pg_get_text(r, 0, 3);
    return f->id && f->function_id && f->cron && f->payload && pg_get_int64(r, 0, 4, &f->due) == ML_OK &&
           pg_get_int64(r, 0, 5, &f->now) == ML_OK;
}

/* Claims one due schedule and handles it, all in one transaction: the row stays locked
 * (other executors skip it) until its advanced next_fire_at is committed, and a fire that
 * could not be queued is rolled back, so it is still due on the next round. */
static step_result fire_one(scheduler *s, deps *d)
{
    PGresult *r = NULL;
    due_fire f;
    advance adv;
    step_result res = STEP_RETRY;
    pgpool_status st = deps_db_acquire(d); /* claim, fire, advance, commit: one borrow */

    if (st != PGPOOL_OK) {
        trouble(s, "borrow a connection", pgpool_status_str(st));
        return STEP_RETRY;
    }
    if (pg_begin(d->db) != ML_OK) {
        trouble(s, "begin", pg_error(d->db));
        deps_db_release(d);
        return STEP_RETRY;
    }
    r = pg_query(d->db, "sch_claim",
                 "SELECT id, function_id, cron, payload::text, floor(extract(epoch FROM next_fire_at))::bigint,"
                 " floor(extract(epoch FROM now()))::bigint FROM schedules"
                 " WHERE enabled AND next_fire_at <= now() ORDER BY next_fire_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                 0, NULL);
    if (!r) {
        trouble(s, "claim", pg_error(d->db));
    } else if (PQntuples(r) == 0) {
        res = STEP_IDLE;
    } else if (!read_fire(r, &f)) {
        trouble(s, "claim", "unexpected schedule row");
    } else if (handle_fire(s, d, &f, &adv) == ML_OK) {
        if (save_advance(d->db, &f, &adv) == ML_OK && pg_commit(d->db) == ML_OK)
            res = STEP_DONE;
        else if (adv.fired) /* queued but not advanced: the only window for a second fire */
            ml_log_kv(ML_LOG_ERROR, "scheduler: a fire was queued but its advance was not saved;"
                      " it may fire again", "schedule_id", f.id, "error", pg_error(d->db), NULL);
        else
            trouble(s, "advance", pg_error(d->db));
    }
    if (pg_in_transaction(d->db))
        pg_rollback(d->db);
    deps_db_release(d);
    PQclear(r);
    if (res != STEP_RETRY)
        recovered(s);
    return res;
}

/* Milliseconds until the next enabled schedule is due, at most POLL_MS. A due row nobody
 * could claim is held by another executor: wait the full period for it. */
static int64_t until_next_due(scheduler *s, deps *d)
{
    pgpool_status st = deps_db_acquire(d); /* this query only, never the wait after it */
    PGresult *r = NULL;
    int64_t ms = POLL_MS;

    if (st != PGPOOL_OK) {
        trouble(s, "borrow a connection", pgpool_status_str(st));
        return ms;
    }
    r = pg_query(d->db, "sch_next_due",
                 "SELECT ceil(extract(epoch FROM min(next_fire_at) - now()) * 1000)::bigint"
                 " FROM schedules WHERE enabled", 0, NULL);
    if (!r)
        trouble(s, "next due", pg_error(d->db));
    deps_db_release(d);
    if (r && (pg_get_int64(r, 0, 0, &ms) != ML_OK || ms <= 0 || ms + WAKE_SLACK_MS > POLL_MS))
        ms = POLL_MS;
    else if (r)
        ms += WAKE_SLACK_MS;
    PQclear(r);
    return ms;
}

void *schedules_main(void *arg)
{
    scheduler s = { .app = arg, .fn = malloc(sizeof(fn_info)) };

    if (!s.fn) {
        ml_log_error("scheduler: out of memory; schedules will not fire");
        return NULL;
    }
    ml_log_info("scheduler started");
    while (!svc_stopping()) {
        deps *d = app_thread_deps(s.app);
        step_result step = STEP_RETRY;
        int64_t wait_ms = POLL_MS;

        if (!d) {
            trouble(&s, "clients", "cannot create this thread's clients");
        } else {
            while ((step = fire_one(&s, d)) == STEP_DONE && !svc_stopping())
                ;
            if (step == STEP_IDLE)
                wait_ms = until_next_due(&s, d);
        }
        ml_sleep_ms(wait_ms);
    }
    free(s.fn);
    ml_log_info("scheduler stopped");
    return NULL;
}
