/* audit_upsert.c — log records into Postgres: one upsert per batch (json_to_recordset of the
 * records), runs without a repeated invocation, a rejected batch retried row by row. */
#include <stdlib.h>
#include <string.h>

#include "audit-int.h"
#include "log.h"

#define RETRY_MIN_MS 500         /* first wait before trying Postgres again after a failure */
#define RETRY_MAX_MS 5000

#define TS(ms) "'epoch'::timestamptz + " ms " * interval '1 millisecond'"

/* One statement per batch; a record whose (attempts, phase) is older than the stored row
 * changes nothing, so replays and late records are harmless. A batch holds one record per
 * invocation (audit_write_settle); DISTINCT ON only guards that (ON CONFLICT cannot touch a row
 * twice) and sorts the rows by id, so concurrent writers lock them in one order. */
static const char upsert_sql[] =
    "INSERT INTO invocations AS i (id, function_id, version, trigger, status, attempts, cold_start,"
    " request_id, payload_size, response_size, payload, result, error_type, error_message, log_tail,"
    " duration_ms, memory_used_mb, replay_of, schedule_id, payload_sha256, created_at, started_at,"
    " finished_at, executed_version, alias)"
    " SELECT DISTINCT ON (r.id) r.id, r.function_id, r.version, r.trigger, r.status, r.attempts,"
    "  r.cold_start, r.request_id, r.payload_size, r.response_size, decode(r.payload, 'base64'),"
    "  decode(r.result, 'base64'), r.error_type, r.error_message, decode(r.log_tail, 'base64'),"
    "  r.duration_ms, r.memory_used_mb, r.replay_of, r.schedule_id, r.payload_sha256, " TS("r.created_ms") ","
    "  " TS("r.started_ms") ", " TS("r.finished_ms") ", r.executed_version, r.alias"
    " FROM ROWS FROM (json_to_recordset($1::json) AS (id uuid, function_id uuid, version int,"
    "  trigger text, status text, attempts int, cold_start bool, request_id text, payload_size int,"
    "  response_size int, payload text, result text, error_type text, error_message text,"
    "  log_tail text, duration_ms int, memory_used_mb int, replay_of uuid, schedule_id uuid,"
    "  payload_sha256 text, created_ms bigint, started_ms bigint, finished_ms bigint,"
    "  executed_version text, alias text))"
    " WITH ORDINALITY AS r"
    " ORDER BY r.id, ml_invocation_phase(r.status, r.attempts) DESC, r.ordinality DESC"
    " ON CONFLICT (id) DO UPDATE SET"
    "  version = coalesce(EXCLUDED.version, i.version), status = EXCLUDED.status,"
    "  attempts = EXCLUDED.attempts, cold_start = coalesce(EXCLUDED.cold_start, i.cold_start),"
    "  request_id = coalesce(EXCLUDED.request_id, i.request_id),"
    "  payload_size = greatest(EXCLUDED.payload_size, i.payload_size),"
    "  response_size = coalesce(EXCLUDED.response_size, i.response_size),"
    "  payload = coalesce(EXCLUDED.payload, i.payload), result = EXCLUDED.result,"
    "  error_type = EXCLUDED.error_type, error_message = EXCLUDED.error_message,"
    "  log_tail = coalesce(EXCLUDED.log_tail, i.log_tail),"
    "  duration_ms = coalesce(EXCLUDED.duration_ms, i.duration_ms),"
    "  memory_used_mb = coalesce(EXCLUDED.memory_used_mb, i.memory_used_mb),"
    "  replay_of = coalesce(EXCLUDED.replay_of, i.replay_of),"
    "  schedule_id = coalesce(EXCLUDED.schedule_id, i.schedule_id),"
    "  payload_sha256 = coalesce(EXCLUDED.payload_sha256, i.payload_sha256),"
    "  started_at = coalesce(EXCLUDED.started_at, i.started_at), finished_at = EXCLUDED.finished_at,"
    "  executed_version = coalesce(EXCLUDED.executed_version, i.executed_version),"
    "  alias = coalesce(EXCLUDED.alias, i.alias)"
    " WHERE ml_invocation_phase(EXCLUDED.status, EXCLUDED.attempts)"
    "  >= ml_invocation_phase(i.status, i.attempts)";

typedef enum { WRITE_OK = 0, WRITE_REJECTED, WRITE_UNAVAILABLE } write_result;

/* Runs the upsert over lines[0..n). A refusal of the data itself (SQLSTATE classes 21, 22
 * and 23: a bad value, a deleted function) is WRITE_REJECTED; anything else is worth
 * retrying. */
static write_result write_lines(audit *a, char *const *lines, const size_t *lens, size_t n)
{
    ml_buf b;
    const char *params[1];
    write_result wr = WRITE_UNAVAILABLE;

    ml_buf_init(&b, 0);
    ml_buf_append(&b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if ((i && ml_buf_append(&b, ",", 1) != ML_OK) || ml_buf_append(&b, lines[i], lens[i]) != ML_OK)
            goto out;
    }
    if (ml_buf_append(&b, "]", 1) != ML_OK)
        goto out;
    params[0] = b.data;
    if (pg_exec(a->db, "audit_upsert", upsert_sql, 1, params, NULL) == ML_OK) {
        wr = WRITE_OK;
    } else {
        const char *st = pg_sqlstate(a->db);
        /* 21: two records of one id in a batch (audit_write_settle prevents it; never retry it) */
        wr = (strncmp(st, "21", 2) == 0 || strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0)
                 ? WRITE_REJECTED : WRITE_UNAVAILABLE;
    }
out:
    ml_buf_free(&b);
    return wr;
}

static void mark_down(audit *a)
{
    bool first;

    pthread_mutex_lock(&a->lock);
    first = !a->pg_down;
    a->pg_down = true;
    pthread_mutex_unlock(&a->lock);
    a->retry_ms = first ? RETRY_MIN_MS : (a->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : a->retry_ms * 2);
    a->retry_at_ms = ml_now_ms() + a->retry_ms;
    audit_count_error(a, "unavailable", 1);
    if (first)
        ml_log_warn("audit: cannot write to Postgres (%s); rows wait in %s.*.wal", pg_error(a->db), a->base);
}

static void mark_up(audit *a)
{
    bool was;

    pthread_mutex_lock(&a->lock);
    was = a->pg_down;
    a->pg_down = false;
    pthread_mutex_unlock(&a->lock);
    if (was)
        ml_log_info("audit: Postgres reachable again; writing the backlog");
}

static void log_rejected(audit *a, const char *line, size_t len)
{
    ml_log_kv(ML_LOG_ERROR, "audit row refused by Postgres; dropped", "row", len > 200 ? "(long)" : line,
              "error", pg_error(a->db), NULL);
    audit_count_error(a, "rejected", 1);
}

/* Writes a run of lines with distinct ids; on a rejected batch, row by row so only the bad
 * rows are dropped (logged, counted). ML_OK when every row is settled, ML_ERR when Postgres
 * is unavailable. */
static int write_run(audit *a, char *const *lines, const size_t *lens, size_t n)
{
    write_result wr = write_lines(a, lines, lens, n);

    if (wr == WRITE_OK) {
        metric_add(a->m_written, NULL, (double)n);
    } else if (wr == WRITE_REJECTED && n == 1) {
        log_rejected(a, lines[0], lens[0]);
    } else if (wr == WRITE_REJECTED) {
        wr = WRITE_OK;
        for (size_t i = 0; i < n && wr == WRITE_OK; i++) {
            write_result one = write_lines(a, lines + i, lens + i, 1);
            if (one == WRITE_REJECTED)
                log_rejected(a, lines[i], lens[i]);
            else if (one == WRITE_OK)
                metric_inc(a->m_written, NULL);
            else
                wr = WRITE_UNAVAILABLE;
        }
    }
    if (wr == WRITE_UNAVAILABLE) {
        mark_down(a);
        return ML_ERR;
    }
    mark_up(a);
    return ML_OK;
}

/* record_put writes the id first, so every line starts {"id":"<36 chars>". */
#define ID_AT 7

static const char *line_id(const char *line, size_t len)
{
    return len > ID_AT + 36 && memcmp(line, "{\"id\":\"", ID_AT) == 0 ? line + ID_AT : NULL;
}

/* Adds a 36-char id to an open-addressing set of cap (a power of two) slots; true if it
 * was there already. */
static bool id_seen(const char **set, size_t cap, const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    for (size_t k = 0; k < 36; k++)
        h = (h ^ (unsigned char)id[k]) * 1099511628211ULL;
    for (i = (size_t)h & (cap - 1); set[i]; i = (i + 1) & (cap - 1)) {
        if (memcmp(set[i], id, 36) == 0)
            return true;
    }
    set[i] = id;
    return false;
}

/* Writes n lines as runs without a repeated invocation id, so the records of one
 * invocation apply in order, each ON CONFLICT seeing the row the previous one left (fields
 * a later record leaves out, like the payload, are kept). ML_OK / ML_ERR as write_run. */
int audit_write_settle(audit *a, char *const *lines, const size_t *lens, size_t n)
{
    size_t cap = 16, start = 0;
    const char **set;
    int rc = ML_OK;

    while (cap < 2 * n)
        cap <<= 1;
    if (!(set = calloc(cap, sizeof(*set)))) {
        for (size_t i = 0; i < n && rc == ML_OK; i++) /* no memory for the set: one by one */
            rc = write_run(a, lines + i, lens + i, 1);
        return rc;
    }
    for (size_t i = 0; i < n && rc == ML_OK; i++) {
        const char *id = line_id(lines[i], lens[i]);
        if (id && id_seen(set, cap, id)) {
            rc = write_run(a, lines + start, lens + start, i - start);
            memset(set, 0, cap * sizeof(*set));
            start = i;
            id_seen(set, cap, id);
        }
    }
    if (rc == ML_OK && start < n)
        rc = write_run(a, lines + start, lens + start, n - start);
    free(set);
    return rc;
}
