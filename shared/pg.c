/* pg.c — Postgres client over libpq. See pg.h for the reconnect/retry rule. */
#include "pg.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define PG_URL_MAX 4096
#define PG_MAX_STMTS 512
#define PG_SQLSTATE_TX_FAILED "25P02"

typedef struct pg_stmt {
    char *name;
    char *sql;
    unsigned gen; /* prepared on the connection of this generation */
} pg_stmt;

struct pg_conn {
    PGconn *pq;
    char *url;
    pg_options opts;           /* defaults filled in */
    char app_name[64];
    unsigned gen;              /* bumped on every new connection; 0 = never connected */
    pg_stmt *stmts;
    size_t nstmts;
    int in_tx;                 /* last known transaction state, kept when the link dies */
    int fatal_seen;            /* server sent FATAL while idle: it is closing on us */
    char notice[256];          /* last FATAL text, for the "connection lost" message */
    char err[512];
    char sqlstate[6];
};

/* ---- errors ---- */

/* Flattens newlines/tabs so a message stays on one log line. */
static void squash(char *s)
{
    char *w = s;
    int space = 0;

    for (const char *r = s; *r; r++) {
        if (*r == '\n' || *r == '\t' || *r == '\r' || *r == ' ') {
            space = 1;
            continue;
        }
        if (space && w != s)
            *w++ = ' ';
        space = 0;
        *w++ = *r;
    }
    *w = '\0';
}

static void clear_err(pg_conn *c)
{
    c->err[0] = '\0';
    c->sqlstate[0] = '\0';
}

static void set_err(pg_conn *c, const char *state, const char *fmt, ...) ML_PRINTF(3, 4);
static void set_err(pg_conn *c, const char *state, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ml_vsnprintf_trunc(c->err, sizeof(c->err), fmt, ap); /* a message: a cut is harmless */
    va_end(ap);
    squash(c->err);
    ml_strlcpy(c->sqlstate, state, sizeof(c->sqlstate));
}

/* Best text for a failure: the server's primary message, else libpq's. */
static const char *failure_text(const pg_conn *c, const PGresult *r)
{
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (m && *m)
        return m;
    if (r && *PQresultErrorMessage(r))
        return PQresultErrorMessage(r);
    if (c->pq && *PQerrorMessage(c->pq))
        return PQerrorMessage(c->pq);
    return "server closed the connection";
}

/* 1-based line of a 1-based character position in a UTF-8 script. */
static long script_line(const char *sql, long pos)
{
    long line = 1, chars = 0;

    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
        if ((*p & 0xC0) != 0x80 && ++chars >= pos)
            break;
        if (*p == '\n')
            line++;
    }
    return line;
}

/* A server-side error (the connection is still fine). */
static void set_server_err(pg_conn *c, const PGresult *r, const char *what, const char *script)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
    char where[48] = "";
    int64_t p;

    if (script && pos && ml_parse_int64(pos, 1, INT64_MAX, &p) == ML_OK)
        ml_snprintf_trunc(where, sizeof(where), " at line %ld", script_line(script, (long)p));
    set_err(c, state ? state : "", "%s failed%s: %s%s%s (SQLSTATE %s)", what, where,
            failure_text(c, r), detail ? " — " : "", detail ? detail : "",
            state ? state : "none");
}

/* ---- connection lifecycle ---- */

static void on_notice(void *arg, const PGresult *r)
{
    pg_conn *c = arg;
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

    if (!msg)
        msg = PQresultErrorMessage(r);
    /* A FATAL while idle is the server's goodbye (terminate, shutdown, crash). */
    if (sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)) {
        c->fatal_seen = 1;
        ml_strlcpy(c->notice, msg, sizeof(c->notice));
        squash(c->notice);
    }
    ml_log_kv(ML_LOG_DEBUG, "postgres notice", "severity", sev ? sev : "", "message", msg, NULL);
}

/* Closes the link; statements must be prepared again on the next one. */
static void drop_conn(pg_conn *c)
{
    PQfinish(c->pq);
    c->pq = NULL;
    c->fatal_seen = 0;
}

/* Records a lost link: message, SQLSTATE, warning; in_tx stays as it was (see pg.h). */
static void mark_lost(pg_conn *c, const char *state, const char *what, const PGresult *r)
{
    set_err(c, state, "connection to postgres lost during %s: %s%s%s", what, failure_text(c, r),
            c->notice[0] ? " — server said: " : "", c->notice);
    ml_log_kv(ML_LOG_WARN, "postgres connection lost", "error", c->err, NULL);
    c->notice[0] = '\0';
    drop_conn(c);
}

/* 1 if the link is up and the server has not already closed it while we were idle. */
static int conn_usable(pg_conn *c)
{
    struct pollfd p = { .fd = -1, .events = POLLIN, .revents = 0 };

    if (!c->pq || PQstatus(c->pq) != CONNECTION_OK || c->fatal_seen)
        return 0;
    p.fd = PQsocket(c->pq);
    if (poll(&p, 1, 0) <= 0)
        return 1;
    /* Readable while idle: a notice or the server's goodbye. PQconsumeInput reads it (and
     * notices EOF), PQisBusy parses it, which hands a FATAL to on_notice. */
    if (PQconsumeInput(c->pq) != 1)
        return 0;
    PQisBusy(c->pq);
    return PQstatus(c->pq) == CONNECTION_OK && !c->fatal_seen;
}

static void note_tx(pg_conn *c)
{
    PGTransactionStatusType t = c->pq ? PQtransactionStatus(c->pq) : PQTRANS_UNKNOWN;

    if (t != PQTRANS_UNKNOWN)
        c->in_tx = t != PQTRANS_IDLE;
}

static int apply_session_settings(pg_conn *c)
{
    char ms[24];
    const char *vals[1] = { ms };
    PGresult *r;
    int rc = ML_OK;

    if (c->opts.statement_timeout_ms <= 0)
        return ML_OK;
    if (ml_snprintf(ms, sizeof(ms), "%d", c->opts.statement_timeout_ms) != ML_OK) {
        set_err(c, PG_SQLSTATE_CONNECT_FAILED, "cannot format statement_timeout %d",
                c->opts.statement_timeout_ms);
        return ML_ERR;
    }
    r = PQexecParams(c->pq, "SELECT set_config('statement_timeout', $1, false)", 1, NULL, vals,
                     NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        set_err(c, PG_SQLSTATE_CONNECT_FAILED, "cannot set statement_timeout: %s",
                failure_text(c, r));
        rc = ML_ERR;
    }
    PQclear(r);
    return rc;
}

typedef struct pg_params {
    const char *keys[8];
    const char *vals[8];
    int n;
} pg_params;

static void add_param(pg_params *p, const char *key, const char *val)
{
    p->keys[p->n] = key;
    p->vals[p->n++] = val;
}

static int open_conn(pg_conn *c)
{
    pg_params p = { .n = 0 };
    char timeout[16];
    int explicit_timeout = c->opts.connect_timeout_s > 0;

    if (ml_snprintf(timeout, sizeof(timeout), "%d",
                    explicit_timeout ? c->opts.connect_timeout_s : 5) != ML_OK) {
        set_err(c, PG_SQLSTATE_CONNECT_FAILED, "cannot format connect_timeout %d",
                c->opts.connect_timeout_s);
        drop_conn(c);
        return ML_ERR;
    }
    /* Keys before "dbname" (the URL) are defaults it may override; keys after it win. */
    if (!explicit_timeout)
        add_param(&p, "connect_timeout", timeout);
    add_param(&p, "application_name", c->app_name);
    add_param(&p, "client_encoding", "UTF8");
    add_param(&p, "dbname", c->url);
    if (explicit_timeout)
        add_param(&p, "connect_timeout", timeout);
    add_param(&p, NULL, NULL);

    drop_conn(c);
    c->pq = PQconnectdbParams(p.keys, p.vals, 1);
    if (!c->pq || PQstatus(c->pq) != CONNECTION_OK) {
        set_err(c, PG_SQLSTATE_CONNECT_FAILED, "cannot connect to postgres: %s",
                c->pq ? PQerrorMessage(c->pq) : "out of memory");
        drop_conn(c);
        return ML_ERR;
    }
    PQsetNoticeReceiver(c->pq, on_notice, c);
    c->gen++;
    c->in_tx = 0;
    c->notice[0] = '\0';
    if (apply_session_settings(c) != ML_OK) {
        drop_conn(c);
        return ML_ERR;
    }
    return ML_OK;
}

/* Bounded tries with doubling backoff. */
static int reconnect(pg_conn *c)
{
    int delay = c->opts.backoff_initial_ms;
    int was_connected = c->gen > 0;

    for (int i = 0; i < c->opts.reconnect_attempts; i++) {
        if (i > 0) {
            ml_sleep_ms(delay);
            delay = delay > c->opts.backoff_max_ms / 2 ? c->opts.backoff_max_ms : delay * 2;
        }
        if (open_conn(c) == ML_OK) {
            ml_log_kv(ML_LOG_INFO, was_connected ? "postgres reconnected" : "postgres connected",
                      "host", PQhost(c->pq), "port", PQport(c->pq), "db", PQdb(c->pq), NULL);
            clear_err(c);
            return ML_OK;
        }
    }
    ml_log_kv(ML_LOG_WARN, "postgres unavailable", "error", c->err, NULL);
    return ML_ERR;
}

/* Makes the link usable before anything is sent (the only point where reconnecting is safe). */
static int ensure_ready(pg_conn *c)
{
    if (conn_usable(c))
        return ML_OK;
    if (c->pq)
        mark_lost(c, PG_SQLSTATE_CONNECTION_LOST, "an idle period", NULL);
    if (c->in_tx) {
        set_err(c, PG_SQLSTATE_CONNECTION_LOST,
                "connection to postgres lost inside a transaction (the server rolled it back); "
                "call pg_rollback()");
        return ML_ERR;
    }
    return reconnect(c);
}

static void resolve_options(pg_options *o)
{
    if (o->reconnect_attempts <= 0)
        o->reconnect_attempts = 3;
    if (o->backoff_initial_ms <= 0)
        o->backoff_initial_ms = 100;
    if (o->backoff_max_ms <= 0)
        o->backoff_max_ms = 2000;
    o->application_name = NULL; /* copied into app_name */
}

pg_conn *pg_new(const char *url, const pg_options *opts)
{
    pg_conn *c;

    if (!url || !*url || strlen(url) > PG_URL_MAX)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->url = strdup(url);
    if (!c->url) {
        free(c);
        return NULL;
    }
    if (opts)
        c->opts = *opts;
    ml_strlcpy(c->app_name, opts && opts->application_name ? opts->application_name : "minilambda",
               sizeof(c->app_name));
    resolve_options(&c->opts);
    return c;
}

int pg_connect(pg_conn *c)
{
    clear_err(c);
    return ensure_ready(c);
}

void pg_close(pg_conn *c)
{
    if (!c)
        return;
    drop_conn(c);
    for (size_t i = 0; i < c->nstmts; i++) {
        free(c->stmts[i].name);
        free(c->stmts[i].sql);
    }
    free(c->stmts);
    free(c->url);
    free(c);
}

const char *pg_error(const pg_conn *c)
{
    return c ? c->err : "no postgres handle";
}

const char *pg_sqlstate(const pg_conn *c)
{
    return c ? c->sqlstate : "";
}

int pg_error_is_connection(const pg_conn *c)
{
    return c && strncmp(c->sqlstate, "08", 2) == 0;
}

int pg_in_transaction(const pg_conn *c)
{
    return c && c->in_tx;
}

int pg_is_usable(pg_conn *c)
{
    return c && conn_usable(c);
}

/* ---- statements ---- */

typedef struct pg_call {
    const char *name;
    const char *sql;
    int nparams;
    const char *const *values;
    const int *lengths;
    const int *formats;
    int result_format;
} pg_call;

/* Registry entry for name, created on first use; NULL (error set) on misuse or no memory. */
static pg_stmt *stmt_entry(pg_conn *c, const pg_call *q)
{
    pg_stmt *s, *grown;

    for (size_t i = 0; i < c->nstmts; i++) {
        s = &c->stmts[i];
        if (strcmp(s->name, q->name) != 0)
            continue;
        if (strcmp(s->sql, q->sql) == 0)
            return s;
        set_err(c, "", "statement \"%s\" is already used with different SQL", q->name);
        return NULL;
    }
    if (c->nstmts >= PG_MAX_STMTS) {
        set_err(c, "", "too many prepared statements (max %d)", PG_MAX_STMTS);
        return NULL;
    }
    grown = realloc(c->stmts, (c->nstmts + 1) * sizeof(*grown));
    if (!grown) {
        set_err(c, "", "out of memory");
        return NULL;
    }
    c->stmts = grown;
    s = &c->stmts[c->nstmts];
    s->name = strdup(q->name);
    s->sql = strdup(q->sql);
    s->gen = 0;
    if (!s->name || !s->sql) {
        free(s->name);
        free(s->sql);
        set_err(c, "", "out of memory");
        return NULL;
    }
    c->nstmts++;
    return s;
}

/* Handles a failed result: lost link or server error. Returns 1 if the link was lost. */
static int fail(pg_conn *c, const PGresult *r, const char *what, const char *script)
{
    ExecStatusType st;

    if (!c->pq || PQstatus(c->pq) != CONNECTION_OK) {
        mark_lost(c, PG_SQLSTATE_CONNECTION_LOST, what, r);
        return 1;
    }
    st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_FATAL_ERROR) {
        set_server_err(c, r, what, script);
    } else {
        set_err(c, "", "%s failed: unexpected result %s (COPY is not supported here)", what,
                PQresStatus(st));
        /* A COPY left the link mid-protocol; a fresh one is the simple way out. */
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
            drop_conn(c);
    }
    note_tx(c);
    return 0;
}

/* Prepares q->name on this link unless done already. *lost is set if the link dropped. */
static int prepare_once(pg_conn *c, const pg_call *q, int *lost)
{
    pg_stmt *s = stmt_entry(c, q);
    PGresult *r;
    char what[128];

    *lost = 0;
    if (!s)
        return ML_ERR;
    if (s->gen == c->gen)
        return ML_OK;
    r = PQprepare(c->pq, q->name, q->sql, q->nparams, NULL);
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        PQclear(r);
        s->gen = c->gen;
        return ML_OK;
    }
    ml_snprintf_trunc(what, sizeof(what), "prepare \"%s\"", q->name);
    *lost = fail(c, r, what, NULL);
    PQclear(r);
    return ML_ERR;
}

static PGresult *run(pg_conn *c, const pg_call *q)
{
    PGresult *r;
    char what[128];
    int lost = 0;

    clear_err(c);
    if (!q->sql || q->nparams < 0 || (q->nparams > 0 && !q->values)) {
        set_err(c, "", "invalid query arguments");
        return NULL;
    }
    for (int tries = 0;; tries++) {
        if (ensure_ready(c) != ML_OK)
            return NULL;
        if (!q->name || prepare_once(c, q, &lost) == ML_OK)
            break;
        /* Dropped before our statement was sent: one more go on a fresh link is safe. */
        if (!lost || c->in_tx || tries > 0)
            return NULL;
    }
    if (q->name)
        r = PQexecPrepared(c->pq, q->name, q->nparams, q->values, q->lengths, q->formats,
                           q->result_format);
    else
        r = PQexecParams(c->pq, q->sql, q->nparams, NULL, q->values, q->lengths, q->formats,
                         q->result_format);
    if (r && (PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK)) {
        note_tx(c);
        return r;
    }
    ml_snprintf_trunc(what, sizeof(what), "%s%s%s", q->name ? "statement \"" : "query",
                      q->name ? q->name : "", q->name ? "\"" : "");
    fail(c, r, what, NULL);
    PQclear(r);
    return NULL;
}

PGresult *pg_query_ex(pg_conn *c, const char *name, const char *sql, int nparams,
                      const char *const *values, const int *lengths, const int *formats,
                      int result_format)
{
    pg_call q = { name, sql, nparams, values, lengths, formats, result_format };

    return run(c, &q);
}

PGresult *pg_query(pg_conn *c, const char *name, const char *sql, int nparams,
                   const char *const *values)
{
    return pg_query_ex(c, name, sql, nparams, values, NULL, NULL, 0);
}

int pg_exec(pg_conn *c, const char *name, const char *sql, int nparams,
            const char *const *values, int64_t *affected)
{
    PGresult *r = pg_query(c, name, sql, nparams, values);
    const char *n;

    if (!r)
        return ML_ERR;
    n = PQcmdTuples(r);
    if (affected && (!*n || ml_parse_int64(n, 0, INT64_MAX, affected) != ML_OK))
        *affected = 0;
    PQclear(r);
    return ML_OK;
}

int pg_exec_script(pg_conn *c, const char *sql)
{
    PGresult *r;
    ExecStatusType st;

    clear_err(c);
    if (!sql) {
        set_err(c, "", "invalid script argument");
        return ML_ERR;
    }
    if (ensure_ready(c) != ML_OK)
        return ML_ERR;
    r = PQexec(c->pq, sql);
    st = PQresultStatus(r);
    if (r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY)) {
        PQclear(r);
        note_tx(c);
        return ML_OK;
    }
    fail(c, r, "script", sql);
    PQclear(r);
    return ML_ERR;
}

/* ---- transactions ---- */

int pg_begin(pg_conn *c)
{
    clear_err(c);
    if (c->in_tx) {
        set_err(c, "", "pg_begin: a transaction is already open");
        return ML_ERR;
    }
    return pg_exec(c, NULL, "BEGIN", 0, NULL, NULL);
}

int pg_commit(pg_conn *c)
{
    PGresult *r;
    int rolled_back;

    clear_err(c);
    if (!c->in_tx) {
        set_err(c, "", "pg_commit: no transaction is open");
        return ML_ERR;
    }
    if (!conn_usable(c)) {
        mark_lost(c, PG_SQLSTATE_CONNECTION_LOST, "transaction (before COMMIT; rolled back)", NULL);
        c->in_tx = 0;
        return ML_ERR;
    }
    r = PQexec(c->pq, "COMMIT");
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        /* COMMIT of an aborted transaction "succeeds" with the tag ROLLBACK. */
        rolled_back = strcmp(PQcmdStatus(r), "ROLLBACK") == 0;
        PQclear(r);
        note_tx(c);
        if (rolled_back)
            set_err(c, PG_SQLSTATE_TX_FAILED, "COMMIT rolled back: the transaction had failed earlier");
        return rolled_back ? ML_ERR : ML_OK;
    }
    if (!c->pq || PQstatus(c->pq) != CONNECTION_OK)
        mark_lost(c, PG_SQLSTATE_COMMIT_UNKNOWN, "COMMIT (outcome unknown)", r);
    else
        fail(c, r, "COMMIT", NULL);
    c->in_tx = 0;
    PQclear(r);
    return ML_ERR;
}

int pg_rollback(pg_conn *c)
{
    PGresult *r;
    int rc = ML_OK;

    clear_err(c);
    if (!conn_usable(c)) {
        if (c->pq)
            drop_conn(c);
        c->in_tx = 0; /* the server discards an open transaction with the link */
        return ML_OK;
    }
    r = PQexec(c->pq, "ROLLBACK");
    if (PQresultStatus(r) != PGRES_COMMAND_OK && fail(c, r, "ROLLBACK", NULL) == 0)
        rc = ML_ERR;
    PQclear(r);
    if (c->pq) {
        note_tx(c);
    } else {
        /* Lost while rolling back: the server discards the transaction anyway. */
        clear_err(c);
        c->in_tx = 0;
    }
    return rc;
}

int pg_ping(pg_conn *c)
{
    pg_call q = { NULL, "SELECT 1", 0, NULL, NULL, NULL, 0 };
    PGresult *r;

    for (int tries = 0; tries < 2; tries++) {
        r = run(c, &q);
        if (r) {
            PQclear(r);
            return ML_OK;
        }
        if (strcmp(c->sqlstate, PG_SQLSTATE_CONNECTION_LOST) != 0 || c->in_tx)
            break;
    }
    return ML_ERR;
}

/* ---- column readers ---- */

static int in_range(const PGresult *r, int row, int col)
{
    return r && row >= 0 && col >= 0 && row < PQntuples(r) && col < PQnfields(r);
}

int pg_is_null(const PGresult *r, int row, int col)
{
    return !in_range(r, row, col) || PQgetisnull(r, row, col);
}

const char *pg_get_text(const PGresult *r, int row, int col)
{
    return pg_is_null(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

int pg_get_text_copy(const PGresult *r, int row, int col, char *dst, size_t size)
{
    const char *v = pg_get_text(r, row, col);

    if (size == 0)
        return ML_ERR;
    if (!v) {
        dst[0] = '\0';
        return ML_ERR;
    }
    if (ml_strlcpy(dst, v, size) != ML_OK) {
        dst[0] = '\0';
        return ML_ERR;
    }
    return ML_OK;
}

int pg_get_int64(const PGresult *r, int row, int col, int64_t *out)
{
    const char *v = pg_get_text(r, row, col);

    return v ? ml_parse_int64(v, INT64_MIN, INT64_MAX, out) : ML_ERR;
}

int pg_get_bool(const PGresult *r, int row, int col, int *out)
{
    const char *v = pg_get_text(r, row, col);

    if (!v || (strcmp(v, "t") != 0 && strcmp(v, "f") != 0))
        return ML_ERR;
    *out = v[0] == 't';
    return ML_OK;
}
