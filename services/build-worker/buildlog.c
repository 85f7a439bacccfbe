/* buildlog.c — a build's log lines: see buildlog.h. */
#include "buildlog.h"

#include <stdarg.h>
#include <string.h>

#include "log.h"

/* seq is the build's next number; a concurrent writer (a takeover racing a stale worker)
 * makes the key clash, and the line is tried once more. */
static const char insert_sql[] =
    "INSERT INTO build_log_lines (build_id, seq, level, step, message)"
    " SELECT $1::uuid, coalesce(max(seq), 0) + 1, $2, $3, $4 FROM build_log_lines"
    " WHERE build_id = $1::uuid";

void buildlog_open(buildlog *l, pg_conn *db, const char *build_id, metric *m_failures)
{
    const char *p[] = { build_id };
    PGresult *r;

    memset(l, 0, sizeof(*l));
    l->db = db;
    l->m_failures = m_failures;
    ml_strlcpy(l->build_id, build_id, sizeof(l->build_id));
    r = pg_query(db, "bw_log_count",
                 "SELECT count(*), coalesce(sum(octet_length(message)), 0) FROM build_log_lines"
                 " WHERE build_id = $1::uuid", 1, p);
    if (!r || pg_get_int64(r, 0, 0, &l->lines) != ML_OK || pg_get_int64(r, 0, 1, &l->bytes) != ML_OK)
        ml_log_kv(ML_LOG_WARN, "cannot count a build's log lines (counting from 0)", "build_id",
                  build_id, "error", pg_error(db), NULL);
    l->full = l->lines >= BUILDLOG_MAX_LINES || l->bytes >= BUILDLOG_MAX_BYTES;
    PQclear(r);
}

static void write_line(buildlog *l, const char *level, const char *step, const char *msg)
{
    const char *p[] = { l->build_id, level, step, msg };
    const char *v[] = { "store_error" };

    for (int tries = 0; !l->unreachable && tries < 2; tries++) {
        if (pg_exec(l->db, "bw_log_add", insert_sql, 4, p, NULL) == ML_OK)
            return;
        /* an unreachable database is not asked again for this attempt's lines: each try
         * would wait for its connect timeouts and hold the build up */
        l->unreachable = pg_error_is_connection(l->db) != 0;
    }
    if (l->m_failures)
        metric_inc(l->m_failures, v);
    ml_log_kv(ML_LOG_WARN, "build log line not stored", "build_id", l->build_id, "step", step,
              "error", pg_error(l->db), NULL);
}

void buildlog_add(buildlog *l, const char *level, const char *step, const char *fmt, ...)
{
    char msg[BUILDLOG_MESSAGE_MAX];
    va_list ap;
    size_t len;

    if (!l->db || l->full)
        return;
    va_start(ap, fmt);
    ml_vsnprintf_trunc(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    len = strlen(msg);
    /* the last slot (a line and its bytes) is kept for the line saying the rest was dropped */
    if (l->lines + 2 > BUILDLOG_MAX_LINES ||
        l->bytes + (int64_t)len + BUILDLOG_MESSAGE_MAX > BUILDLOG_MAX_BYTES) {
        l->full = true;
        ml_snprintf_trunc(msg, sizeof(msg), "log limit reached (%d lines or %d bytes per build):"
                          " further lines of this build are dropped", BUILDLOG_MAX_LINES,
                          BUILDLOG_MAX_BYTES);
        write_line(l, "warn", step, msg);
        return;
    }
    l->lines++;
    l->bytes += (int64_t)len;
    write_line(l, level, step, msg);
}
