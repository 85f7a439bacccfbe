/* Integration tests for pg.c and ml-migrate against a real Postgres.
 * Needs MINILAMBDA_BUILD_DB_URL and MINILAMBDA_LAMBDA_DB_URL (fails without them);
 * ML_BIN_DIR (default build/bin) holds ml-migrate; the real migration files are in
 * ML_MIGRATIONS_DIR, else $ML_ROOT/migrations, else ./migrations. Uses temp tables,
 * uniquely named tables it drops, and scratch databases it creates and drops, so the
 * shared databases stay usable for other tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "pg.h"

extern char **environ;

static const char *build_url;
static const char *lambda_url;

/* ---- helpers ---- */

/* Asserts an ML_OK call, showing pg_error() when it is not. */
#define assert_pg_ok(c, call)                                                                  \
    do {                                                                                       \
        if ((call) != ML_OK)                                                                   \
            fail_msg("%s: %s", #call, pg_error(c));                                            \
    } while (0)

static pg_conn *open_db(const char *url, const pg_options *o)
{
    pg_conn *c = pg_new(url, o);

    assert_non_null(c);
    if (pg_connect(c) != ML_OK)
        fail_msg("connect: %s", pg_error(c));
    return c;
}

/* One int64 from a query with up to 2 text params; fails the test on error. */
static int64_t query_int(pg_conn *c, const char *sql, const char *p1, const char *p2)
{
    const char *v[2] = { p1, p2 };
    int n = p2 ? 2 : p1 ? 1 : 0;
    PGresult *r = pg_query(c, NULL, sql, n, v);
    int64_t out = -1;

    if (!r)
        fail_msg("%s: %s", sql, pg_error(c));
    assert_int_equal(PQntuples(r), 1);
    assert_int_equal(pg_get_int64(r, 0, 0, &out), ML_OK);
    PQclear(r);
    return out;
}

static int64_t backend_pid(pg_conn *c)
{
    return query_int(c, "SELECT pg_backend_pid()", NULL, NULL);
}

/* Terminates pid from another connection and waits until the backend is gone. */
static void terminate(const char *url, int64_t pid)
{
    pg_conn *k = open_db(url, NULL);
    char p[24];

    ml_snprintf(p, sizeof(p), "%lld", (long long)pid);
    assert_int_equal(query_int(k, "SELECT pg_terminate_backend($1::int)::int", p, NULL), 1);
    for (int i = 0; i < 200; i++) {
        if (query_int(k, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", p, NULL) == 0)
            break;
        ml_sleep_ms(10);
    }
    pg_close(k);
}

/* A table name nobody else uses. */
static void unique_name(const char *prefix, char *out, size_t size)
{
    char id[ML_UUID_LEN];

    ml_uuid(id);
    ml_snprintf(out, size, "%s_%.8s%.4s", prefix, id, id + 9);
}

static void exec_ok(pg_conn *c, const char *sql)
{
    if (pg_exec_script(c, sql) != ML_OK)
        fail_msg("%s: %s", sql, pg_error(c));
}

static int64_t count_rows(pg_conn *c, const char *table)
{
    char sql[128];

    assert_int_equal(ml_snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table), ML_OK);
    return query_int(c, sql, NULL, NULL);
}

/* Runs fmt with every %s (at most two) replaced by name, e.g. a table name. */
static void exec_fmt(pg_conn *c, const char *fmt, const char *name)
{
    char sql[512];

    assert_int_equal(ml_snprintf(sql, sizeof(sql), fmt, name, name), ML_OK);
    exec_ok(c, sql);
}

/* ---- pg.c ---- */

static void test_connect_and_params(void **state)
{
    static const char *const tricky[] = {
        "O'Reilly'); DROP TABLE t; --", "héllo ✓ 日本語", "$1 \\x00 %s %n", "",
    };
    pg_conn *c = open_db(build_url, NULL);
    const char *v[2];
    PGresult *r;

    (void)state;
    exec_ok(c, "CREATE TEMP TABLE p (id int, s text)");
    for (size_t i = 0; i < ML_ARRAY_LEN(tricky); i++) {
        char id[8];

        ml_snprintf(id, sizeof(id), "%zu", i);
        v[0] = id;
        v[1] = tricky[i];
        assert_pg_ok(c, pg_exec(c, "p_ins", "INSERT INTO p VALUES ($1, $2)", 2, v, NULL));
        r = pg_query(c, "p_get", "SELECT s, length(s) FROM p WHERE id = $1", 1, v);
        assert_non_null(r);
        assert_string_equal(pg_get_text(r, 0, 0), tricky[i]);
        PQclear(r);
    }
    /* "日本語" is 3 characters, not 9 bytes: the server got real UTF-8. */
    assert_int_equal(query_int(c, "SELECT length($1)", "日本語", NULL), 3);
    /* NULL parameters are SQL NULL. */
    v[0] = NULL;
    r = pg_query(c, NULL, "SELECT $1::text IS NULL", 1, v);
    assert_non_null(r);
    assert_string_equal(pg_get_text(r, 0, 0), "t");
    PQclear(r);
    assert_int_equal(query_int(c, "SELECT count(*) FROM p", NULL, NULL), (int64_t)ML_ARRAY_LEN(tricky));
    pg_close(c);
}

static void test_binary_params(void **state)
{
    static const char bytes[] = { 'a', '\0', '\xff', '\'', 'z' };
    pg_conn *c = open_db(lambda_url, NULL);
    const char *v[1] = { bytes };
    int len[1] = { (int)sizeof(bytes) }, fmt[1] = { 1 };
    PGresult *r;

    (void)state;
    r = pg_query_ex(c, "bin", "SELECT octet_length($1::bytea), $1::bytea", 1, v, len, fmt, 1);
    if (!r)
        fail_msg("%s", pg_error(c));
    /* binary result: column 1 is the raw bytes, column 0 a 4-byte big-endian int */
    assert_int_equal(PQgetlength(r, 0, 1), (int)sizeof(bytes));
    assert_memory_equal(PQgetvalue(r, 0, 1), bytes, sizeof(bytes));
    assert_int_equal((unsigned char)PQgetvalue(r, 0, 0)[3], sizeof(bytes));
    PQclear(r);
    pg_close(c);
}

static void test_prepared_once_and_reused(void **state)
{
    pg_conn *c = open_db(build_url, NULL);
    const char *v[1] = { "x" };
    PGresult *r;

    (void)state;
    for (int i = 0; i < 3; i++) {
        r = pg_query(c, "reuse_me", "SELECT $1::text || 'y'", 1, v);
        assert_non_null(r);
        assert_string_equal(pg_get_text(r, 0, 0), "xy");
        PQclear(r);
    }
    /* One prepared statement on the server, executed three times. */
    assert_int_equal(query_int(c, "SELECT count(*) FROM pg_prepared_statements WHERE name = $1",
                               "reuse_me", NULL), 1);
    assert_int_equal(query_int(c, "SELECT generic_plans + custom_plans FROM pg_prepared_statements "
                                  "WHERE name = $1", "reuse_me", NULL), 3);
    /* Reusing a name for other SQL is a bug and says so. */
    assert_null(pg_query(c, "reuse_me", "SELECT 2", 0, NULL));
    assert_non_null(strstr(pg_error(c), "already used with different SQL"));
    pg_close(c);
}

static void test_errors_are_clear(void **state)
{
    pg_conn *c = open_db(build_url, NULL);
    const char *v[1] = { "dup" };
    int64_t n = -1;

    (void)state;
    assert_null(pg_query(c, "bad_sql", "SELEC 1", 0, NULL));
    assert_string_equal(pg_sqlstate(c), "42601");
    assert_non_null(strstr(pg_error(c), "syntax error"));
    assert_non_null(strstr(pg_error(c), "bad_sql"));
    assert_false(pg_error_is_connection(c));

    exec_ok(c, "CREATE TEMP TABLE u (k text UNIQUE)");
    assert_pg_ok(c, pg_exec(c, "u_ins", "INSERT INTO u VALUES ($1)", 1, v, &n));
    assert_int_equal(n, 1);
    assert_int_equal(pg_exec(c, "u_ins", "INSERT INTO u VALUES ($1)", 1, v, NULL), ML_ERR);
    assert_string_equal(pg_sqlstate(c), PG_SQLSTATE_UNIQUE_VIOLATION);
    assert_non_null(strstr(pg_error(c), "duplicate key"));
    assert_non_null(strstr(pg_error(c), "Key (k)=(dup) already exists"));
    assert_null(strchr(pg_error(c), '\n'));

    /* The connection is fine afterwards and a success clears the error. */
    assert_pg_ok(c, pg_exec(c, "u_upd", "UPDATE u SET k = k || '!'", 0, NULL, &n));
    assert_int_equal(n, 1);
    assert_string_equal(pg_error(c), "");

    /* COPY is refused and leaves a usable handle. */
    assert_null(pg_query(c, NULL, "COPY (SELECT 1) TO STDOUT", 0, NULL));
    assert_non_null(strstr(pg_error(c), "COPY"));
    assert_int_equal(query_int(c, "SELECT 5", NULL, NULL), 5);
    pg_close(c);
}

static void test_script_error_names_line(void **state)
{
    pg_conn *c = open_db(build_url, NULL);

    (void)state;
    exec_ok(c, "CREATE TEMP TABLE s1 (a int); -- comment\nINSERT INTO s1 VALUES (1);\n");
    assert_int_equal(pg_exec_script(c, "-- é\nSELECT 1;\n\nSELECT * FROM no_such_table_pgtest;"), ML_ERR);
    assert_string_equal(pg_sqlstate(c), "42P01");
    assert_non_null(strstr(pg_error(c), "at line 4"));
    assert_int_equal(pg_exec_script(c, "-- only a comment\n"), ML_OK);
    pg_close(c);
}

static void test_ping(void **state)
{
    pg_conn *c = open_db(lambda_url, NULL);
    int64_t pid = backend_pid(c);

    (void)state;
    assert_pg_ok(c, pg_ping(c));
    terminate(lambda_url, pid);
    /* Dead link: ping reconnects and answers. */
    assert_pg_ok(c, pg_ping(c));
    assert_true(backend_pid(c) != pid);
    pg_close(c);
}

static void test_reconnect_after_terminate(void **state)
{
    pg_conn *c = open_db(build_url, NULL);
    int64_t pid = -1, pid2 = -1;
    PGresult *r;

    (void)state;
    r = pg_query(c, "my_pid", "SELECT pg_backend_pid()", 0, NULL);
    assert_non_null(r);
    assert_int_equal(pg_get_int64(r, 0, 0, &pid), ML_OK);
    PQclear(r);

    terminate(build_url, pid);

    /* Same prepared statement: transparently reconnected and prepared again. */
    r = pg_query(c, "my_pid", "SELECT pg_backend_pid()", 0, NULL);
    if (!r)
        fail_msg("after terminate: %s", pg_error(c));
    assert_int_equal(pg_get_int64(r, 0, 0, &pid2), ML_OK);
    PQclear(r);
    assert_true(pid2 != pid);
    pg_close(c);
}

static void test_transactions(void **state)
{
    pg_conn *c = open_db(build_url, NULL);

    (void)state;
    exec_ok(c, "CREATE TEMP TABLE tx (a int)");
    assert_pg_ok(c, pg_begin(c));
    assert_true(pg_in_transaction(c));
    assert_int_equal(pg_begin(c), ML_ERR); /* already open */
    assert_pg_ok(c, pg_exec(c, "tx_ins", "INSERT INTO tx VALUES (1)", 0, NULL, NULL));
    assert_pg_ok(c, pg_rollback(c));
    assert_false(pg_in_transaction(c));
    assert_int_equal(query_int(c, "SELECT count(*) FROM tx", NULL, NULL), 0);

    assert_pg_ok(c, pg_begin(c));
    assert_pg_ok(c, pg_exec(c, "tx_ins", "INSERT INTO tx VALUES (1)", 0, NULL, NULL));
    assert_pg_ok(c, pg_commit(c));
    assert_int_equal(query_int(c, "SELECT count(*) FROM tx", NULL, NULL), 1);

    /* A statement failed inside: COMMIT cannot commit and says so. */
    assert_pg_ok(c, pg_begin(c));
    assert_pg_ok(c, pg_exec(c, "tx_ins", "INSERT INTO tx VALUES (1)", 0, NULL, NULL));
    assert_int_equal(pg_exec(c, NULL, "SELECT 1/0", 0, NULL, NULL), ML_ERR);
    assert_string_equal(pg_sqlstate(c), "22012");
    assert_int_equal(pg_commit(c), ML_ERR);
    assert_string_equal(pg_sqlstate(c), "25P02");
    assert_false(pg_in_transaction(c));
    assert_int_equal(query_int(c, "SELECT count(*) FROM tx", NULL, NULL), 1);
    pg_close(c);
}

static void test_connection_lost_inside_transaction(void **state)
{
    pg_conn *c = open_db(build_url, NULL);
    char table[64];

    (void)state;
    unique_name("pgtest_txlost", table, sizeof(table));
    exec_fmt(c, "CREATE TABLE %s (a int)", table);
    assert_pg_ok(c, pg_begin(c));
    exec_fmt(c, "INSERT INTO %s VALUES (1)", table);
    terminate(build_url, backend_pid(c));

    /* No silent reconnect: the rest of the transaction must not run in autocommit. */
    assert_int_equal(pg_exec(c, NULL, "SELECT 1", 0, NULL, NULL), ML_ERR);
    assert_string_equal(pg_sqlstate(c), PG_SQLSTATE_CONNECTION_LOST);
    assert_non_null(strstr(pg_error(c), "inside a transaction"));
    assert_true(pg_in_transaction(c));
    assert_int_equal(pg_exec(c, NULL, "SELECT 1", 0, NULL, NULL), ML_ERR);
    assert_pg_ok(c, pg_rollback(c));
    assert_false(pg_in_transaction(c));

    /* Then it reconnects, and the insert was rolled back by the server. */
    assert_int_equal(count_rows(c, table), 0);
    exec_fmt(c, "DROP TABLE %s", table);
    pg_close(c);
}

/* Terminates the backend once it is busy running COMMIT. */
typedef struct killer {
    int64_t pid;
    int killed;
} killer;

static void *kill_during_commit(void *arg)
{
    killer *k = arg;
    pg_conn *c = open_db(build_url, NULL);
    char p[24];

    ml_snprintf(p, sizeof(p), "%lld", (long long)k->pid);
    for (int i = 0; i < 500 && !k->killed; i++) {
        if (query_int(c, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int "
                         "AND state = 'active' AND query = 'COMMIT'", p, NULL) == 1)
            k->killed = (int)query_int(c, "SELECT pg_terminate_backend($1::int)::int", p, NULL);
        else
            ml_sleep_ms(10);
    }
    pg_close(c);
    return NULL;
}

static void test_commit_outcome_unknown(void **state)
{
    pg_conn *c = open_db(build_url, NULL);
    char table[64], sql[768];
    killer k = { 0, 0 };
    pthread_t t;

    (void)state;
    unique_name("pgtest_commit", table, sizeof(table));
    /* A deferred constraint trigger makes COMMIT itself slow enough to be interrupted. */
    ml_snprintf(sql, sizeof(sql),
                "CREATE TABLE %s (a int);"
                "CREATE FUNCTION %s_slow() RETURNS trigger LANGUAGE plpgsql AS "
                "'BEGIN PERFORM pg_sleep(3); RETURN NULL; END';"
                "CREATE CONSTRAINT TRIGGER %s_t AFTER INSERT ON %s DEFERRABLE INITIALLY DEFERRED "
                "FOR EACH ROW EXECUTE FUNCTION %s_slow()",
                table, table, table, table, table);
    exec_ok(c, sql);
    k.pid = backend_pid(c);
    assert_pg_ok(c, pg_begin(c));
    exec_fmt(c, "INSERT INTO %s VALUES (1)", table);
    assert_int_equal(pthread_create(&t, NULL, kill_during_commit, &k), 0);
    assert_int_equal(pg_commit(c), ML_ERR);
    pthread_join(t, NULL);
    assert_true(k.killed);
    assert_string_equal(pg_sqlstate(c), PG_SQLSTATE_COMMIT_UNKNOWN);
    assert_non_null(strstr(pg_error(c), "outcome unknown"));
    assert_false(pg_in_transaction(c));

    ml_snprintf(sql, sizeof(sql), "DROP TABLE %s; DROP FUNCTION %s_slow()", table, table);
    exec_ok(c, sql); /* reconnects first */
    pg_close(c);
}

/* ---- a cutting proxy: drops the link at a chosen client message ---- */

/* Sits between pg.c and Postgres (one connection at a time) and, when armed with a
 * protocol message type ('P' Parse, 'E' Execute), closes both sides instead of forwarding
 * the chunk holding that message: the server never sees it, the client sees the link die
 * exactly there. This makes "dropped before/after sending" deterministic. */
typedef struct proxy {
    struct sockaddr_storage up;
    socklen_t uplen;
    int listen_fd, port;
    int client, server;        /* current pair, -1 when none */
    int started;               /* startup packet seen on this pair */
    unsigned char hdr[5];
    size_t hlen, skip;         /* message framing of the client stream */
    atomic_int cut_at;         /* message type to cut at once; 0 = forward everything */
    atomic_int connections;    /* pairs accepted so far */
    atomic_int stop;
    pthread_t thread;
} proxy;

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* 1 if a client message of type t starts within p[0..n). */
static int proxy_scan(proxy *px, const unsigned char *p, size_t n, int t)
{
    int hit = 0;

    for (size_t i = 0; i < n;) {
        if (px->skip > 0) {
            size_t k = px->skip < n - i ? px->skip : n - i;
            px->skip -= k;
            i += k;
            continue;
        }
        px->hdr[px->hlen++] = p[i++];
        if (px->hlen < (px->started ? 5u : 4u))
            continue;
        if (px->started && px->hdr[0] == t)
            hit = 1;
        /* the length counts itself */
        px->skip = be32(px->started ? px->hdr + 1 : px->hdr) - 4;
        px->started = 1;
        px->hlen = 0;
    }
    return hit;
}

static void proxy_close_pair(proxy *px)
{
    if (px->client >= 0)
        close(px->client);
    if (px->server >= 0)
        close(px->server);
    px->client = px->server = -1;
}

static void proxy_accept(proxy *px)
{
    int fd = accept(px->listen_fd, NULL, NULL);

    if (fd < 0)
        return;
    proxy_close_pair(px);
    px->client = fd;
    px->server = socket(px->up.ss_family, SOCK_STREAM, 0);
    if (px->server < 0 || connect(px->server, (struct sockaddr *)&px->up, px->uplen) != 0) {
        proxy_close_pair(px);
        return;
    }
    px->started = 0;
    px->hlen = px->skip = 0;
    atomic_fetch_add(&px->connections, 1);
}

/* Moves one chunk from -> to; returns -1 when the pair should close. */
static int proxy_pump(proxy *px, int from, int to)
{
    unsigned char buf[65536];
    ssize_t n = read(from, buf, sizeof(buf));
    int t = atomic_load(&px->cut_at);

    if (n <= 0)
        return -1;
    if (from == px->client && proxy_scan(px, buf, (size_t)n, t) && t) {
        atomic_store(&px->cut_at, 0);
        return -1;
    }
    return write(to, buf, (size_t)n) == n ? 0 : -1;
}

static void *proxy_main(void *arg)
{
    proxy *px = arg;
    struct pollfd p[3];

    while (!atomic_load(&px->stop)) {
        p[0] = (struct pollfd){ .fd = px->listen_fd, .events = POLLIN };
        p[1] = (struct pollfd){ .fd = px->client, .events = POLLIN };
        p[2] = (struct pollfd){ .fd = px->server, .events = POLLIN };
        if (poll(p, 3, 20) <= 0)
            continue;
        if (p[1].revents && proxy_pump(px, px->client, px->server) < 0)
            proxy_close_pair(px);
        else if (p[2].revents && proxy_pump(px, px->server, px->client) < 0)
            proxy_close_pair(px);
        if (p[0].revents)
            proxy_accept(px);
    }
    proxy_close_pair(px);
    return NULL;
}

/* Starts a proxy to the server of url; conninfo gets a connection string through it. */
static void proxy_start(proxy *px, const char *url, char *conninfo, size_t size)
{
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    const char *host = "127.0.0.1", *port = "5432", *db = "postgres", *user = "postgres";
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t alen = sizeof(a);

    assert_non_null(opts);
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
        else if (strcmp(o->keyword, "user") == 0)
            user = o->val;
    }
    memset(px, 0, sizeof(*px));
    px->client = px->server = -1;
    assert_int_equal(getaddrinfo(host, port, &hints, &ai), 0);
    memcpy(&px->up, ai->ai_addr, ai->ai_addrlen);
    px->uplen = ai->ai_addrlen;
    freeaddrinfo(ai);

    px->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(px->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(px->listen_fd, 4), 0);
    assert_int_equal(getsockname(px->listen_fd, (struct sockaddr *)&a, &alen), 0);
    px->port = ntohs(a.sin_port);
    /* plain TCP, so the first client bytes are the startup packet */
    assert_int_equal(ml_snprintf(conninfo, size, "host=127.0.0.1 port=%d dbname=%s user=%s "
                                 "sslmode=disable gssencmode=disable", px->port, db, user), ML_OK);
    PQconninfoFree(opts);
    assert_int_equal(pthread_create(&px->thread, NULL, proxy_main, px), 0);
}

static void proxy_stop(proxy *px)
{
    atomic_store(&px->stop, 1);
    pthread_join(px->thread, NULL);
    close(px->listen_fd);
}

static void test_retry_only_before_sending(void **state)
{
    pg_options o = { .backoff_initial_ms = 10 };
    char conninfo[512], table[64], sql[256];
    PGresult *r;
    pg_conn *c;
    proxy px;

    (void)state;
    proxy_start(&px, build_url, conninfo, sizeof(conninfo));
    c = open_db(conninfo, &o);
    assert_int_equal(atomic_load(&px.connections), 1);

    /* Dropped while preparing: the statement never ran, so it goes again on a new link. */
    atomic_store(&px.cut_at, 'P');
    r = pg_query(c, "cut_prepare", "SELECT 41 + 1", 0, NULL);
    if (!r)
        fail_msg("prepare retry: %s", pg_error(c));
    assert_string_equal(pg_get_text(r, 0, 0), "42");
    PQclear(r);
    assert_int_equal(atomic_load(&px.connections), 2);

    /* Dropped once the statement was sent: reported, never repeated. */
    unique_name("pgtest_cut", table, sizeof(table));
    exec_fmt(c, "CREATE TABLE %s (a int)", table);
    ml_snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (1)", table);
    assert_pg_ok(c, pg_exec(c, "cut_insert", sql, 0, NULL, NULL));
    atomic_store(&px.cut_at, 'E');
    assert_int_equal(pg_exec(c, "cut_insert", sql, 0, NULL, NULL), ML_ERR);
    assert_string_equal(pg_sqlstate(c), PG_SQLSTATE_CONNECTION_LOST);
    assert_non_null(strstr(pg_error(c), "cut_insert"));
    assert_int_equal(atomic_load(&px.connections), 2);
    assert_pg_ok(c, pg_exec(c, "cut_insert", sql, 0, NULL, NULL)); /* next call reconnects */
    assert_int_equal(atomic_load(&px.connections), 3);
    assert_int_equal(count_rows(c, table), 2);

    /* Inside a transaction even a drop while preparing is not retried. */
    assert_pg_ok(c, pg_begin(c));
    atomic_store(&px.cut_at, 'P');
    assert_null(pg_query(c, "cut_in_tx", "SELECT 1", 0, NULL));
    assert_string_equal(pg_sqlstate(c), PG_SQLSTATE_CONNECTION_LOST);
    assert_int_equal(atomic_load(&px.connections), 3);
    assert_true(pg_in_transaction(c));
    assert_pg_ok(c, pg_rollback(c));

    /* SELECT 1 is harmless, so pg_ping does retry it after a drop mid-query. */
    assert_pg_ok(c, pg_ping(c));
    atomic_store(&px.cut_at, 'P');
    assert_pg_ok(c, pg_ping(c));
    assert_int_equal(atomic_load(&px.connections), 5);

    exec_fmt(c, "DROP TABLE %s", table);
    pg_close(c);
    proxy_stop(&px);
}

static void test_statement_timeout(void **state)
{
    pg_options o = { .statement_timeout_ms = 200 };
    pg_conn *c = open_db(lambda_url, &o);
    int64_t t0 = ml_now_ms();

    (void)state;
    assert_null(pg_query(c, "sleepy", "SELECT pg_sleep(3)", 0, NULL));
    assert_true(ml_now_ms() - t0 < 2000);
    assert_string_equal(pg_sqlstate(c), PG_SQLSTATE_QUERY_CANCELED);
    assert_non_null(strstr(pg_error(c), "statement timeout"));
    /* Usable afterwards, and the setting survives a reconnect. */
    terminate(lambda_url, backend_pid(c));
    assert_int_equal(query_int(c, "SELECT setting::int FROM pg_settings WHERE name = $1",
                               "statement_timeout", NULL), 200);
    pg_close(c);
}

/* ---- ml-migrate ---- */

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);

    return v && *v ? v : def;
}

/* Runs ml-migrate url dir; returns its exit status, output (stdout+stderr) in out. */
static int run_migrate(const char *url, const char *dir, ml_buf *out)
{
    char bin[1024], outfile[] = "/tmp/ml-pgtest-out-XXXXXX", chunk[4096];
    char *argv[] = { bin, (char *)url, (char *)dir, NULL };
    posix_spawn_file_actions_t fa;
    int fd = mkstemp(outfile), status = -1;
    pid_t pid;
    ssize_t n;

    assert_true(fd >= 0);
    ml_snprintf(bin, sizeof(bin), "%s/ml-migrate", env_or("ML_BIN_DIR", "build/bin"));
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 1);
    posix_spawn_file_actions_adddup2(&fa, fd, 2);
    assert_int_equal(posix_spawn(&pid, bin, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    lseek(fd, 0, SEEK_SET);
    ml_buf_reset(out);
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        assert_int_equal(ml_buf_append(out, chunk, (size_t)n), ML_OK);
    close(fd);
    unlink(outfile);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* url with its database name replaced by db. */
static void url_with_db(const char *url, const char *db, char *out, size_t size)
{
    const char *host = strstr(url, "://");
    const char *slash, *query;

    assert_non_null(host);
    slash = strchr(host + 3, '/');
    query = strchr(host + 3, '?');
    if (!slash || (query && slash > query))
        slash = query ? query : url + strlen(url);
    assert_int_equal(ml_snprintf(out, size, "%.*s/%s%s", (int)(slash - url), url, db,
                                 query ? query : ""), ML_OK);
}

/* Creates a scratch database; its URL goes to url. */
static void scratch_db(pg_conn *admin, char *name, size_t nsize, char *url, size_t usize)
{
    unique_name("pgtest_scratch", name, nsize);
    exec_fmt(admin, "CREATE DATABASE %s", name);
    url_with_db(build_url, name, url, usize);
}

static void drop_db(pg_conn *admin, const char *name)
{
    exec_fmt(admin, "DROP DATABASE %s WITH (FORCE)", name);
}

static FILE *open_in(const char *dir, const char *name, const char *mode)
{
    char path[512];
    FILE *f;

    ml_snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, mode);
    assert_non_null(f);
    return f;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    FILE *f = open_in(dir, name, "w");

    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* A comment-only file one byte over ml-migrate's 1 MiB limit. */
static void write_big_file(const char *dir, const char *name)
{
    FILE *f = open_in(dir, name, "w");

    assert_int_equal(fputs("--", f) >= 0, 1);
    for (int i = 0; i < 1024 * 1024 - 1; i++)
        assert_int_equal(fputc('x', f), 'x');
    assert_int_equal(fclose(f), 0);
}

static void append_nul(const char *dir, const char *name)
{
    FILE *f = open_in(dir, name, "a");

    assert_int_equal(fputc('\0', f), 0);
    assert_int_equal(fclose(f), 0);
}

static void unlink_in(const char *dir, const char *name)
{
    char path[512];

    ml_snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(unlink(path), 0);
}

static void remove_dir(const char *dir, const char *const *files, size_t n)
{
    char path[512];

    for (size_t i = 0; i < n; i++) {
        ml_snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int64_t table_exists(pg_conn *c, const char *table)
{
    return query_int(c, "SELECT (to_regclass($1) IS NOT NULL)::int", table, NULL);
}

static void check_real_db(const char *url, const char *sub, const char *const *tables, size_t n)
{
    char dir[512];
    ml_buf out = { 0 };
    pg_conn *c;
    int64_t before;

    if (getenv("ML_MIGRATIONS_DIR"))
        ml_snprintf(dir, sizeof(dir), "%s/%s", getenv("ML_MIGRATIONS_DIR"), sub);
    else
        ml_snprintf(dir, sizeof(dir), "%s/migrations/%s", env_or("ML_ROOT", "."), sub);
    if (run_migrate(url, dir, &out) != 0)
        fail_msg("ml-migrate %s failed: %s", dir, ml_buf_cstr(&out));
    c = open_db(url, NULL);
    for (size_t i = 0; i < n; i++) {
        if (!table_exists(c, tables[i]))
            fail_msg("table %s missing after migrating %s", tables[i], dir);
    }
    before = query_int(c, "SELECT count(*) FROM schema_migrations", NULL, NULL);
    assert_true(before >= 1);
    /* Second run: nothing to do. */
    assert_int_equal(run_migrate(url, dir, &out), 0);
    assert_non_null(strstr(ml_buf_cstr(&out), "0 applied"));
    assert_int_equal(query_int(c, "SELECT count(*) FROM schema_migrations", NULL, NULL), before);
    pg_close(c);
    ml_buf_free(&out);
}

static void test_migrate_real_databases(void **state)
{
    static const char *const build_tables[] = {
        "schema_migrations", "build_functions", "builds", "build_status_events",
        "build_artifact_files", "webhook_deliveries", "webhook_attempts",
    };
    static const char *const lambda_tables[] = {
        "schema_migrations", "functions", "function_versions", "function_builds",
        "build_webhook_receipts", "schedules", "invocations", "event_audit",
        "dead_letter_queue", "destination_deliveries", "destination_attempts",
    };

    (void)state;
    check_real_db(build_url, "build", build_tables, ML_ARRAY_LEN(build_tables));
    check_real_db(lambda_url, "lambda", lambda_tables, ML_ARRAY_LEN(lambda_tables));
}

static void test_migrate_broken_file_rolls_back(void **state)
{
    static const char *const files[] = { "0001_ok.sql", "0002_bad.sql", "README.md",
                                         "0003_big.sql", "0004_nul.sql" };
    char dir[] = "/tmp/ml-pgtest-XXXXXX", db[64], url[1024];
    pg_conn *admin = open_db(build_url, NULL), *c;
    ml_buf out = { 0 };

    (void)state;
    assert_non_null(mkdtemp(dir));
    write_file(dir, files[0], "CREATE TABLE mig_ok (a int);\nINSERT INTO mig_ok VALUES (1);\n");
    write_file(dir, files[1], "CREATE TABLE mig_bad (a int);\n\nCREATE TABLE mig_bad2 (a nosuchtype);\n");
    write_file(dir, files[2], "not a migration\n");
    scratch_db(admin, db, sizeof(db), url, sizeof(url));

    assert_int_equal(run_migrate(url, dir, &out), 1);
    assert_non_null(strstr(ml_buf_cstr(&out), "0002_bad.sql"));
    assert_non_null(strstr(ml_buf_cstr(&out), "type \\\"nosuchtype\\\" does not exist"));
    assert_non_null(strstr(ml_buf_cstr(&out), "line 3"));

    c = open_db(url, NULL);
    assert_int_equal(query_int(c, "SELECT count(*) FROM schema_migrations", NULL, NULL), 1);
    assert_int_equal(query_int(c, "SELECT count(*) FROM schema_migrations WHERE version = $1",
                               "0001", NULL), 1);
    assert_int_equal(table_exists(c, "mig_ok"), 1);
    assert_int_equal(table_exists(c, "mig_bad"), 0); /* nothing from the failed file */

    /* Fixed file: only 0002 runs now (running 0001 again would fail: mig_ok exists). */
    write_file(dir, files[1], "CREATE TABLE mig_bad (a int);\n");
    if (run_migrate(url, dir, &out) != 0)
        fail_msg("rerun: %s", ml_buf_cstr(&out));
    assert_non_null(strstr(ml_buf_cstr(&out), "1 applied"));
    assert_int_equal(query_int(c, "SELECT count(*) FROM mig_ok", NULL, NULL), 1);
    assert_int_equal(table_exists(c, "mig_bad"), 1);

    /* Oversized (> 1 MiB) and NUL-carrying files are refused before anything runs. */
    write_big_file(dir, files[3]);
    assert_int_equal(run_migrate(url, dir, &out), 1);
    assert_non_null(strstr(ml_buf_cstr(&out), "larger than 1048576 bytes"));
    unlink_in(dir, files[3]);
    write_file(dir, files[4], "SELECT 1;");
    append_nul(dir, files[4]);
    assert_int_equal(run_migrate(url, dir, &out), 1);
    assert_non_null(strstr(ml_buf_cstr(&out), "contains a NUL byte"));
    assert_int_equal(query_int(c, "SELECT count(*) FROM schema_migrations", NULL, NULL), 2);
    pg_close(c);

    drop_db(admin, db);
    remove_dir(dir, files, ML_ARRAY_LEN(files));
    pg_close(admin);
    ml_buf_free(&out);
}

static void test_migrate_concurrent_runners(void **state)
{
    static const char *const files[] = { "0001_slow.sql", "0002_next.sql" };
    char dir[] = "/tmp/ml-pgtest-XXXXXX", db[64], url[1024], bin[1024];
    pg_conn *admin = open_db(build_url, NULL), *c;
    pid_t pids[2];
    int status;

    (void)state;
    assert_non_null(mkdtemp(dir));
    /* Without the lock the second runner would hit "relation already exists". */
    write_file(dir, files[0], "SELECT pg_sleep(1);\nCREATE TABLE slow (a int);\n");
    write_file(dir, files[1], "INSERT INTO slow VALUES (1);\n");
    scratch_db(admin, db, sizeof(db), url, sizeof(url));
    ml_snprintf(bin, sizeof(bin), "%s/ml-migrate", env_or("ML_BIN_DIR", "build/bin"));

    for (int i = 0; i < 2; i++) {
        char *argv[] = { bin, url, dir, NULL };
        posix_spawn_file_actions_t fa;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        assert_int_equal(posix_spawn(&pids[i], bin, &fa, NULL, argv, environ), 0);
        posix_spawn_file_actions_destroy(&fa);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    c = open_db(url, NULL);
    assert_int_equal(query_int(c, "SELECT count(*) FROM schema_migrations", NULL, NULL), 2);
    assert_int_equal(query_int(c, "SELECT count(*) FROM slow", NULL, NULL), 1);
    pg_close(c);

    drop_db(admin, db);
    remove_dir(dir, files, ML_ARRAY_LEN(files));
    pg_close(admin);
}

/* The lambda schema's cascade: deleting a function removes its schedules, versions and
 * invocations even though functions.active_version points back at a version. */
static void test_lambda_schema_delete_cascades(void **state)
{
    static const char *const children[] = { "schedules", "function_versions", "invocations" };
    pg_conn *c = open_db(lambda_url, NULL);
    char name[64], id[ML_UUID_LEN], build[ML_UUID_LEN], sql[128];
    const char *v[2] = { id, name }, *vb[2] = { id, build };
    int64_t n = 0;

    (void)state;
    unique_name("pgtestfn", name, sizeof(name));
    ml_uuid(id);
    ml_uuid(build);
    assert_pg_ok(c, pg_exec(c, NULL, "INSERT INTO functions (id, name, runtime, handler) "
                                      "VALUES ($1, $2, 'python3', 'app.handler')", 2, v, NULL));
    assert_pg_ok(c, pg_exec(c, NULL, "INSERT INTO function_versions (function_id, version, build_id,"
                             " runtime, handler, artifact_prefix, artifact_sha256, artifact_size,"
                             " artifact_files) VALUES ($1, 1, $2, 'python3', 'app.handler', 'a/',"
                             " repeat('a', 64), 1, 1)", 2, vb, NULL));
    assert_pg_ok(c, pg_exec(c, NULL, "UPDATE functions SET active_version = 1, state = 'active' "
                                      "WHERE id = $1", 1, v, NULL));
    assert_pg_ok(c, pg_exec(c, NULL, "INSERT INTO schedules (function_id, cron, next_fire_at) "
                                      "VALUES ($1, '*/5 * * * *', now())", 1, v, NULL));
    assert_pg_ok(c, pg_exec(c, NULL, "INSERT INTO invocations (function_id, trigger) "
                                      "VALUES ($1, 'http_async')", 1, v, NULL));
    /* A name that looks like an id is refused by the schema too. */
    assert_int_equal(pg_exec(c, NULL, "UPDATE functions SET name = $1 WHERE id = $1", 1, v, NULL),
                     ML_ERR);
    assert_string_equal(pg_sqlstate(c), PG_SQLSTATE_CHECK_VIOLATION);
    assert_non_null(strstr(pg_error(c), "functions_name_not_uuid"));

    assert_pg_ok(c, pg_exec(c, NULL, "DELETE FROM functions WHERE id = $1", 1, v, &n));
    assert_int_equal(n, 1);
    for (size_t i = 0; i < ML_ARRAY_LEN(children); i++) {
        ml_snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE function_id = $1", children[i]);
        assert_int_equal(query_int(c, sql, id, NULL), 0);
    }
    pg_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_and_params),
        cmocka_unit_test(test_binary_params),
        cmocka_unit_test(test_prepared_once_and_reused),
        cmocka_unit_test(test_errors_are_clear),
        cmocka_unit_test(test_script_error_names_line),
        cmocka_unit_test(test_ping),
        cmocka_unit_test(test_reconnect_after_terminate),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_connection_lost_inside_transaction),
        cmocka_unit_test(test_commit_outcome_unknown),
        cmocka_unit_test(test_retry_only_before_sending),
        cmocka_unit_test(test_statement_timeout),
        cmocka_unit_test(test_migrate_real_databases),
        cmocka_unit_test(test_migrate_broken_file_rolls_back),
        cmocka_unit_test(test_migrate_concurrent_runners),
        cmocka_unit_test(test_lambda_schema_delete_cascades),
    };

    build_url = getenv("MINILAMBDA_BUILD_DB_URL");
    lambda_url = getenv("MINILAMBDA_LAMBDA_DB_URL");
    if (!build_url || !*build_url || !lambda_url || !*lambda_url) {
        fprintf(stderr, "MINILAMBDA_BUILD_DB_URL and MINILAMBDA_LAMBDA_DB_URL must be set\n");
        return 1;
    }
    ml_log_init("test_pg", ML_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
