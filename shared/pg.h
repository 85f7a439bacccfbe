/* pg.h — small Postgres client over libpq: lazy named prepared statements, transactions,
 * bounded reconnects, one clear error message per failure.
 *
 * Threads: a pg_conn belongs to one thread at a time (libpq's PGconn may not be shared).
 * Give every worker thread its own pg_conn; nothing here takes locks.
 *
 * Reconnect and retry rule (why: a statement must never run twice by accident):
 *  - Before sending anything, a connection found dead (PQstatus bad, or the server already
 *    closed the socket, e.g. pg_terminate_backend or a restart) is replaced by a new one:
 *    up to `reconnect_attempts` tries with doubling backoff. Nothing had been sent, so the
 *    caller's statement then runs normally. Preparing a statement is part of "before":
 *    if the connection drops while preparing, the call reconnects and tries once more.
 *  - Once a statement has been sent, a lost connection is reported (ML_ERR / NULL,
 *    pg_sqlstate() "08006") and never retried here: the server may have executed it.
 *    The next call reconnects.
 *  - Inside a transaction nothing reconnects: the server rolled the transaction back when
 *    the connection died, so every call fails ("08006") until pg_rollback() is called.
 *  - pg_commit() whose connection drops after COMMIT was sent fails with pg_sqlstate()
 *    "08007" (transaction_resolution_unknown): the commit may or may not have happened.
 *    Callers must not simply redo the work; re-read the state or make it idempotent.
 *
 * Errors: every failing call stores a one-line message (pg_error) and, when known, a
 * SQLSTATE (pg_sqlstate): server codes as sent (e.g. "23505" unique_violation, "57014"
 * statement timeout), "08001" could not connect, "08006" connection lost, "08007" commit
 * outcome unknown, "" for misuse detected here (bad arguments, unexpected result). */
#ifndef ML_PG_H
#define ML_PG_H

#include <libpq-fe.h>
#include <stdint.h>

#include "ml.h"

#define PG_SQLSTATE_UNIQUE_VIOLATION "23505"
#define PG_SQLSTATE_FOREIGN_KEY_VIOLATION "23503"
#define PG_SQLSTATE_CHECK_VIOLATION "23514"
#define PG_SQLSTATE_QUERY_CANCELED "57014" /* includes statement_timeout */
#define PG_SQLSTATE_CONNECT_FAILED "08001"
#define PG_SQLSTATE_CONNECTION_LOST "08006"
#define PG_SQLSTATE_COMMIT_UNKNOWN "08007"

/* Connection options. A zeroed struct (or NULL) means all defaults. */
typedef struct pg_options {
    int connect_timeout_s;     /* 0: the URL's connect_timeout, else 5 s */
    int statement_timeout_ms;  /* 0: server default; else SET per connection */
    int reconnect_attempts;    /* connection tries per call; 0: 3 */
    int backoff_initial_ms;    /* sleep before the 2nd try, doubling; 0: 100 ms */
    int backoff_max_ms;        /* cap on one sleep; 0: 2000 ms */
    const char *application_name; /* NULL: "minilambda"; copied */
} pg_options;

typedef struct pg_conn pg_conn;

/* Allocates a handle for `url` (postgresql:// URI or key=value string); does no I/O.
 * NULL only if out of memory or the URL is empty/longer than 4 KiB.
 * The caller owns the handle and frees it with pg_close(). */
pg_conn *pg_new(const char *url, const pg_options *opts);

/* Connects now (queries also connect lazily). ML_OK if connected; ML_ERR after the
 * bounded tries, with pg_error() saying why. */
int pg_connect(pg_conn *c);

/* Closes the connection and frees the handle. NULL is fine. */
void pg_close(pg_conn *c);

/* Message of the last failure on c; never NULL ("" if none). Valid until the next call on c. */
const char *pg_error(const pg_conn *c);
/* SQLSTATE of the last failure ("" if none/unknown). Valid until the next call on c. */
const char *pg_sqlstate(const pg_conn *c);
/* 1 if the last failure means the database was unreachable (SQLSTATE class 08). */
int pg_error_is_connection(const pg_conn *c);

/* Runs `sql` with text parameters $1..$n (never interpolated). With a non-NULL `name`,
 * the statement is prepared once per connection under that name and reused (prepared
 * again after a reconnect); a name must always be used with the same SQL. name NULL runs
 * it unnamed (for SQL built at run time — still only with parameters for values).
 * values[i] NULL is SQL NULL. Returns a PGresult (TUPLES_OK or COMMAND_OK) that the caller
 * frees with PQclear(), or NULL with pg_error() set. */
PGresult *pg_query(pg_conn *c, const char *name, const char *sql, int nparams,
                   const char *const *values);

/* pg_query with binary-capable parameters (lengths/formats as in PQexecPrepared; either
 * may be NULL for all-text) and result_format 0 text / 1 binary. Same ownership. */
PGresult *pg_query_ex(pg_conn *c, const char *name, const char *sql, int nparams,
                      const char *const *values, const int *lengths, const int *formats,
                      int result_format);

/* pg_query for commands: ML_OK/ML_ERR; *affected (may be NULL) gets the row count
 * (INSERT/UPDATE/DELETE/...; 0 when the command reports none). */
int pg_exec(pg_conn *c, const char *name, const char *sql, int nparams,
            const char *const *values, int64_t *affected);

/* Runs a script of several ';'-separated statements through the simple protocol, with no
 * parameters (for migrations and fixed DDL only; never with user data). On a server error
 * the message names the script line. ML_OK/ML_ERR. */
int pg_exec_script(pg_conn *c, const char *sql);

/* Transactions. pg_begin fails if one is already open on c. pg_commit fails when the
 * transaction had an error (the server rolled it back) or the connection dropped (see the
 * rule above). pg_rollback returns ML_OK whenever the transaction is known not committed,
 * including when the connection is gone. */
int pg_begin(pg_conn *c);
int pg_commit(pg_conn *c);
int pg_rollback(pg_conn *c);
/* 1 while a transaction is open (or was open when the connection died). */
int pg_in_transaction(const pg_conn *c);

/* 1 if c holds a live link (PQstatus CONNECTION_OK) that the server has not already closed
 * while it sat idle (pg_terminate_backend, shutdown). No round trip: it only reads what the
 * server already sent. 0 for a handle that never connected or whose link was dropped. */
int pg_is_usable(pg_conn *c);

/* Health check: reconnects if needed, then SELECT 1 (retried once on connection loss,
 * since it is harmless). ML_OK/ML_ERR. */
int pg_ping(pg_conn *c);

/* Column readers. `r` must be a tuples result; row/col out of range count as failure. */
/* 1 if the value is SQL NULL or out of range. */
int pg_is_null(const PGresult *r, int row, int col);
/* Text value, or NULL for SQL NULL/out of range. Owned by r (gone after PQclear). */
const char *pg_get_text(const PGresult *r, int row, int col);
/* Copies the text value into dst; ML_ERR for NULL/out of range/truncation (dst is "" then). */
int pg_get_text_copy(const PGresult *r, int row, int col, char *dst, size_t size);
/* Whole base-10 integer (text format, int2/int4/int8/numeric without fraction); ML_ERR
 * for NULL, out of range, or anything else. *out untouched on failure. */
int pg_get_int64(const PGresult *r, int row, int col, int64_t *out);
/* Boolean in text format ("t"/"f"); ML_ERR otherwise. */
int pg_get_bool(const PGresult *r, int row, int col, int *out);

#endif
