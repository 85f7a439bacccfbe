/* buildlog.h — a build's log lines (build_log_lines, docs/logs.md §3), written by the worker
 * as each step happens so that GET /builds/{id}/log shows the build live.
 *
 * Each line is one autocommitted INSERT numbered after the build's last line, so a takeover
 * by another worker continues the same sequence. At most BUILDLOG_MAX_LINES lines and
 * BUILDLOG_MAX_BYTES bytes of messages per build (across attempts); past that, one last line
 * says the rest was dropped. Writing is best effort: a failed line is counted
 * (minilambda_build_log_write_failures_total) and logged, never an error for the build; once
 * the database is found unreachable, the attempt's later lines are dropped the same way.
 * Must not be used while the connection is inside a transaction. */
#ifndef BW_BUILDLOG_H
#define BW_BUILDLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"
#include "ml.h"
#include "pg.h"

#define BUILDLOG_MAX_LINES 10000
#define BUILDLOG_MAX_BYTES (1024 * 1024)
#define BUILDLOG_MESSAGE_MAX 1024

typedef struct buildlog {
    pg_conn *db;              /* not owned */
    char build_id[ML_UUID_LEN];
    int64_t lines, bytes;     /* what the build's log holds (read at open, then counted) */
    bool full;                /* the "dropped" line is written (or due): nothing more */
    bool unreachable;         /* a write found the database unreachable: drop the rest */
    metric *m_failures;       /* optional; not owned */
} buildlog;

/* Starts writing build_id's log on db, counting what earlier attempts wrote. */
void buildlog_open(buildlog *l, pg_conn *db, const char *build_id, metric *m_failures);

/* Appends one line; level info|warn|error, step as in the table's CHECK. */
void buildlog_add(buildlog *l, const char *level, const char *step, const char *fmt, ...)
    ML_PRINTF(4, 5);

#endif
