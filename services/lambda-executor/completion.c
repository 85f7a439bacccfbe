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

completion_rc completion_next(bool found, const char *state, int64_t recorded_attempt,
                              bool same_function, int64_t message_attempt, int64_t *attempt)
{
    if (!found) {
        *attempt = message_attempt;
        return COMPLETION_RUN;
    }
    if (!same_function || strcmp(state, "completed") == 0)
        return COMPLETION_DONE;
    /* "started": that attempt was cut off (its executor died holding it); "retrying": it
     * ended and the message carries the next one. Either way one more than recorded. */
    *attempt = recorded_attempt + 1 > message_attempt ? recorded_attempt + 1 : message_attempt;
    return COMPLETION_RUN;
}

/* Reads the id's record and decides (under the advisory lock: nobody else writes it now). */
static completion_rc read_record(completion *c, const char *id, const char *function_id,
                                 int64_t *attempt)
{
    PGresult *r = pg_query(c->db, "cpl_read",
                           "SELECT state, attempt, function_id::text FROM async_completions"
                           " WHERE invocation_id = $1",
                           1, (const char *[]){ id });
    int64_t recorded = 0;
    completion_rc rc;

    if (!r)
        return COMPLETION_UNAVAILABLE;
    if (PQntuples(r) == 1 && pg_get_int64(r, 0, 1, &recorded) != ML_OK) {
        PQclear(r);
        return COMPLETION_UNAVAILABLE;
    }
    rc = completion_next(PQntuples(r) == 1, PQntuples(r) == 1 ? pg_get_text(r, 0, 0) : "", recorded,
                         PQntuples(r) == 1 && strcmp(pg_get_text(r, 0, 2), function_id) == 0,
                         *attempt, attempt);
    PQclear(r);
    return rc;
}

completion_rc completion_begin(completion *c, const char *id, const char *function_id,
                               int64_t *attempt)
{
    int64_t next = *attempt;
    char att[24];
    completion_rc rc;
    int lk;

    if ((lk = try_lock(c, id)) <= 0)
        return lk == 0 ? COMPLETION_BUSY : COMPLETION_UNAVAILABLE;
    rc = read_record(c, id, function_id, &next);
    if (rc == COMPLETION_RUN &&
        (ml_snprintf(att, sizeof(att), "%lld", (long long)next) != ML_OK ||
         pg_exec(c->db, "cpl_begin",
                 "INSERT INTO async_completions AS c (invocation_id, function_id, state, attempt)"
                 " VALUES ($1, $2, 'started', $3::int) ON CONFLICT (invocation_id) DO UPDATE"
                 " SET state = 'started', attempt = EXCLUDED.attempt, started_at = now(),"
                 " updated_at = now() WHERE c.state <> 'completed'",
                 3, (const char *[]){ id, function_id, att }, NULL) != ML_OK))
        rc = COMPLETION_UNAVAILABLE;
    if (rc != COMPLETION_RUN)
        completion_release(c, id);
    else
        *attempt = next;
    return rc;
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
