/* logs_store.c — how function-log lines reach Postgres (docs/logs.md §1 "Store"): COPY text
 * rows, one transaction per batch, and the day partitions made ahead of time. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit-int.h"
#include "logs-int.h"

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

int logs_copy_text(ml_buf *b, const char *s, size_t n)
{
    return logs_text_append(b, s, n, true);
}

int logs_text_append(ml_buf *b, const char *s, size_t n, bool copy_escape)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0, len;
    int rc = ML_OK;

    /* plain bytes are appended in runs; only escapes and repairs break a run */
    while (i < n && rc == ML_OK) {
        unsigned char c = u[i];
        const char *esc = !copy_escape ? NULL : c == '\\' ? "\\\\" : c == '\t' ? "\\t"
                        : c == '\n' ? "\\n" : c == '\r' ? "\\r" : NULL;

        if (((c >= 0x20 && c < 0x80) || (!copy_escape && c > 0 && c < 0x20)) && !esc) {
            i++, run++;
            continue;
        }
        if (c >= 0x80 && (len = audit_utf8_len(u + i, n - i)) > 0) {
            i += len, run += len;
            continue;
        }
        rc = ml_buf_append(b, s + i - run, run);
        run = 0;
        if (rc == ML_OK)
            rc = esc ? ml_buf_append_str(b, esc)
               : c == 0 || c >= 0x80 ? ml_buf_append(b, REPLACEMENT, 3)
               : ml_buf_append(b, s + i, 1); /* other control characters are valid text */
        i++;
    }
    return rc == ML_OK ? ml_buf_append(b, s + i - run, run) : ML_ERR;
}

/* A uuid column: the value, or \N when it is not one (a bad id must not fail the batch). */
static int copy_uuid(ml_buf *b, const char *s)
{
    return ml_buf_append_str(b, s && ml_uuid_valid(s) == ML_OK ? s : "\\N");
}

/* ts as "YYYY-MM-DD HH:MM:SS.uuuuuu+00". */
static int copy_ts(ml_buf *b, int64_t us)
{
    time_t secs = (time_t)(us / 1000000);
    int64_t frac = us % 1000000;
    struct tm tm;
    char t[32];

    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    if (!gmtime_r(&secs, &tm) || strftime(t, sizeof(t), "%Y-%m-%d %H:%M:%S", &tm) == 0)
        return ML_ERR;
    return ml_buf_printf(b, "%s.%06lld+00", t, (long long)frac);
}

int logs_copy_row(ml_buf *b, const logq_entry *e)
{
    const char *version = e->version[0] ? e->version : "$LATEST";
    const char *level = e->level[0] ? e->level : "info";

    if (copy_ts(b, e->ts_us) != ML_OK || ml_buf_append(b, "\t", 1) != ML_OK ||
        logs_copy_text(b, e->ns, strlen(e->ns)) != ML_OK || ml_buf_append(b, "\t", 1) != ML_OK ||
        logs_copy_text(b, e->function, strlen(e->function)) != ML_OK ||
        ml_buf_append(b, "\t", 1) != ML_OK || copy_uuid(b, e->function_id) != ML_OK ||
        ml_buf_append(b, "\t", 1) != ML_OK || logs_copy_text(b, version, strlen(version)) != ML_OK ||
        ml_buf_append(b, "\t", 1) != ML_OK || copy_uuid(b, e->request_id) != ML_OK ||
        ml_buf_printf(b, "\t%d\t", e->stream) != ML_OK ||
        logs_copy_text(b, level, strlen(level)) != ML_OK || ml_buf_append(b, "\t", 1) != ML_OK ||
        logs_copy_text(b, e->message, e->len) != ML_OK)
        return ML_ERR;
    return ml_buf_append(b, "\n", 1);
}

/* Runs a command that returns no rows; ML_ERR with err set. */
static int exec_cmd(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

    if (!ok)
        ml_snprintf_trunc(err, errlen, "%s", PQerrorMessage(c));
    PQclear(r);
    return ok ? ML_OK : ML_ERR;
}

/* Sends the rows of b through an open COPY and ends it; ML_ERR with err set. */
static int copy_send(PGconn *c, const ml_buf *b, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, "COPY function_logs (" LOGS_COPY_COLUMNS ") FROM STDIN");
    int ok = PQresultStatus(r) == PGRES_COPY_IN;

    PQclear(r);
    if (!ok) {
        ml_snprintf_trunc(err, errlen, "COPY: %s", PQerrorMessage(c));
        return ML_ERR;
    }
    ok = PQputCopyData(c, b->data, (int)b->len) == 1;
    if (PQputCopyEnd(c, ok ? NULL : "client error") != 1)
        ok = 0;
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            ok = 0;
        PQclear(r);
    }
    if (!ok)
        ml_snprintf_trunc(err, errlen, "COPY: %s", PQerrorMessage(c));
    return ok ? ML_OK : ML_ERR;
}

int logs_store_batch(PGconn *c, logq_entry *const *lines, size_t n, char *err, size_t errlen)
{
    ml_buf b;
    int rc = ML_ERR;

    /* 5,000 lines of up to 64 KiB each, escaped: well within the default cap */
    ml_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++)
        if (logs_copy_row(&b, lines[i]) != ML_OK) {
            ml_snprintf_trunc(err, errlen, "batch too large to encode");
            goto out;
        }
    if (exec_cmd(c, "BEGIN", err, errlen) != ML_OK)
        goto out;
    if (copy_send(c, &b, err, errlen) != ML_OK || exec_cmd(c, "COMMIT", err, errlen) != ML_OK) {
        char ignored[8];
        exec_cmd(c, "ROLLBACK", ignored, sizeof(ignored));
        goto out;
    }
    rc = ML_OK;
out:
    ml_buf_free(&b);
    return rc;
}

int logs_store_partitions(PGconn *c, char *err, size_t errlen)
{
    return exec_cmd(c,
                    "SELECT ml_function_logs_partition((now() AT TIME ZONE 'UTC')::date + i)"
                    " FROM generate_series(0, 2) AS i",
                    err, errlen);
}
