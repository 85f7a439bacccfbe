/* completion.c — the async completion record (see completion.h and migration 0007). */
#include "completion.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct completion {
    pg_conn *db;
    bool locked;
    char lock_key[16];
};

/* Why a separate connection with short timeouts: a consumer must learn fast that Postgres is
 * down (and requeue) rather than sit in the shared pool's reconnect back-off. */
completion *completion_new(const char *db_url)
{
    completion *c = calloc(1, sizeof(*c));
    pg_options o = { .connect_timeout_s = 2, .statement_timeout_ms = 5000, .reconnect_attempts = 1,
                     .application_name = "lambda-executor-completion" };

    if (!c || !(c->db = pg_new(db_url, &o))) {
        free(c);
        return NULL;
    }
    return c;
}

void completion_free(completion *c)
{
    if (!c)
        return;
    pg_close(c->db);
    free(c);
}

pg_conn *completion_db(completion *c)
{
    return c->db;
}

int32_t completion_lock_key(const char *id)
{
    uint32_t v = 0;

    for (size_t i = 0; i < 8 && id[i]; i++) {
        char ch = id[i];
        uint32_t d = ch >= '0' && ch <= '9' ? (uint32_t)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (uint32_t)(ch - 'a' + 10)
                     : ch >= 'A' && ch <= 'F' ? (uint32_t)(ch - 'A' + 10) : 0;
        v = v << 4 | d;
    }
    return (int32_t)v;
}

/* pg_try_advisory_lock: 1 taken, 0 held by another session, -1 Postgres unreachable. */
static int try_lock(completion *c, const char *id)
{
    PGresult *r;
    int got = 0;

    if (ml_snprintf(c->lock_key, sizeof(c->lock_key), "%d", (int)completion_lock_key(id)) != ML_OK)
        return -1;
    r = pg_query(c->db, "cpl_lock", "SELECT pg_try_advisory_lock(1634957683, $1::int)", 1,
                 (const char *[]){ c->lock_key });
    if (!r || pg_get_bool(r, 0, 0, &got) != ML_OK) {
        PQclear(r);
        return -1;
    }
    PQclear(r);
    c->locked = got;
    return got ? 1 : 0;
}

void completion_release(completion *c, const char *id)
{
    (void)id;
    if (!c->locked)
        return;
    c->locked = false;
    if (pg_is_usable(c->db))
        PQclear(pg_query(c->db, "cpl_unlock", "SELECT pg_advisory_unlock(1634957683, $1::int)", 1,
                         (const char *[]){ c->lock_key }));
}

completion_rc completion_begin(completion *c, const char *id, const char *function_id,
                               int64_t *attempt)
{
    char att[24];
    PGresult *r;
    int64_t got;
    int lk;

    if (ml_snprintf(att, sizeof(att), "%lld", (long long)*attempt) != ML_OK)
        return COMPLETION_UNAVAILABLE;
    if ((lk = try_lock(c, id)) <= 0)
        return lk == 0 ? COMPLETION_BUSY : COMPLETION_UNAVAILABLE;
    /* 'started' over 'started' is an attempt its executor never finished: count it */
    r = pg_query(c->db, "cpl_begin",
                 "INSERT INTO async_completions AS c (invocation_id, function_id, state, attempt)"
                 " VALUES ($1, $2, 'started', $3::int) ON CONFLICT (invocation_id) DO UPDATE"
                 " SET state = 'started', attempt = greatest(EXCLUDED.attempt, c.attempt + 1),"
                 " started_at = now(), updated_at = now()"
                 " WHERE c.state <> 'completed' AND c.function_id = EXCLUDED.function_id"
                 " RETURNING attempt",
                 3, (const char *[]){ id, function_id, att });
    if (!r) {
        completion_release(c, id);
        return COMPLETION_UNAVAILABLE;
    }
    if (PQntuples(r) == 0 || pg_get_int64(r, 0, 0, &got) != ML_OK) {
        PQclear(r);
        completion_release(c, id);
        return COMPLETION_DONE;
    }
    PQclear(r);
    *attempt = got;
    return COMPLETION_RUN;
}

int completion_retry(completion *c, const char *id, int64_t attempt)
{
    char att[24];

    if (ml_snprintf(att, sizeof(att), "%lld", (long long)(attempt < 0 ? 0 : attempt)) != ML_OK)
        return ML_ERR;
    return pg_exec(c->db, "cpl_retry",
                   "UPDATE async_completions SET state = 'retrying', attempt = $2::int, updated_at = now()"
                   " WHERE invocation_id = $1 AND state <> 'completed'",
                   2, (const char *[]){ id, att }, NULL);
}

int completion_mark(completion *c, const char *id, const char *function_id, int64_t attempt,
                    const char *status)
{
    char att[24];

    if (ml_snprintf(att, sizeof(att), "%lld", (long long)attempt) != ML_OK)
        return ML_ERR;
    return pg_exec(c->db, "cpl_done",
                   "INSERT INTO async_completions AS c (invocation_id, function_id, state, attempt,"
                   " result_status, completed_at) VALUES ($1, $2, 'completed', $3::int, $4, now())"
                   " ON CONFLICT (invocation_id) DO UPDATE SET state = 'completed',"
                   " attempt = EXCLUDED.attempt, result_status = EXCLUDED.result_status,"
                   " completed_at = now(), updated_at = now() WHERE c.state <> 'completed'",
                   4, (const char *[]){ id, function_id, att, status }, NULL);
}

int completion_finish(completion *c, const char *id, const char *function_id, int64_t attempt,
                      const char *status, bool (*should_stop)(void))
{
    int64_t backoff = 100;

    /* The function has run: losing this row would run it again, so wait for Postgres. */
    while (completion_mark(c, id, function_id, attempt, status) != ML_OK) {
        ml_log_kv(ML_LOG_WARN, "cannot record async completion; retrying", "invocation_id", id,
                  "error", pg_error(c->db), NULL);
        if (should_stop && should_stop())
            return ML_ERR;
        ml_sleep_ms(backoff);
        backoff = backoff < 2000 ? backoff * 2 : 2000;
    }
    return ML_OK;
}
