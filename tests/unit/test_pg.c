/* Unit tests for pg.c parts that need no server: column readers (on results built with
 * libpq's PQmakeEmptyPGresult/PQsetvalue), handle creation, argument checks, and the
 * bounded, clearly reported failure to connect to a port nobody listens on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "pg.h"

/* A 2-row result: (text, int8-as-text, bool-as-text), row 1 all NULL. */
static PGresult *make_result(void)
{
    PGresAttDesc attrs[3];
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

    memset(attrs, 0, sizeof(attrs));
    attrs[0].name = (char *)"t";
    attrs[1].name = (char *)"n";
    attrs[2].name = (char *)"b";
    assert_non_null(r);
    assert_int_equal(PQsetResultAttrs(r, 3, attrs), 1);
    assert_int_equal(PQsetvalue(r, 0, 0, (char *)"héllo", (int)strlen("héllo")), 1);
    assert_int_equal(PQsetvalue(r, 0, 1, (char *)"-9223372036854775808", 20), 1);
    assert_int_equal(PQsetvalue(r, 0, 2, (char *)"t", 1), 1);
    for (int col = 0; col < 3; col++)
        assert_int_equal(PQsetvalue(r, 1, col, NULL, -1), 1);
    return r;
}

static void test_text_readers(void **state)
{
    PGresult *r = make_result();
    char small[4], big[32];

    (void)state;
    assert_string_equal(pg_get_text(r, 0, 0), "héllo");
    assert_null(pg_get_text(r, 1, 0));
    assert_null(pg_get_text(r, 2, 0));
    assert_null(pg_get_text(r, 0, 3));
    assert_null(pg_get_text(r, -1, 0));
    assert_false(pg_is_null(r, 0, 0));
    assert_true(pg_is_null(r, 1, 0));
    assert_true(pg_is_null(r, 5, 5));

    assert_int_equal(pg_get_text_copy(r, 0, 0, big, sizeof(big)), ML_OK);
    assert_string_equal(big, "héllo");
    assert_int_equal(pg_get_text_copy(r, 0, 0, small, sizeof(small)), ML_ERR);
    assert_string_equal(small, "");
    assert_int_equal(pg_get_text_copy(r, 1, 0, big, sizeof(big)), ML_ERR);
    assert_string_equal(big, "");
    PQclear(r);
}

static void test_int_and_bool_readers(void **state)
{
    PGresult *r = make_result();
    int64_t v = 7;
    int b = -1;

    (void)state;
    assert_int_equal(pg_get_int64(r, 0, 1, &v), ML_OK);
    assert_true(v == INT64_MIN);
    v = 7;
    assert_int_equal(pg_get_int64(r, 0, 0, &v), ML_ERR); /* "héllo" */
    assert_int_equal(pg_get_int64(r, 1, 1, &v), ML_ERR); /* NULL */
    assert_int_equal(pg_get_int64(r, 9, 1, &v), ML_ERR); /* no such row */
    assert_int_equal(v, 7);

    assert_int_equal(pg_get_bool(r, 0, 2, &b), ML_OK);
    assert_int_equal(b, 1);
    assert_int_equal(pg_get_bool(r, 0, 1, &b), ML_ERR);
    assert_int_equal(pg_get_bool(r, 1, 2, &b), ML_ERR);
    assert_null(pg_get_text(NULL, 0, 0));
    PQclear(r);

}

/* A 1x1 result holding v. */
static PGresult *one_value(const char *v)
{
    PGresAttDesc a;
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

    memset(&a, 0, sizeof(a));
    a.name = (char *)"v";
    assert_non_null(r);
    assert_int_equal(PQsetResultAttrs(r, 1, &a), 1);
    assert_int_equal(PQsetvalue(r, 0, 0, (char *)v, (int)strlen(v)), 1);
    return r;
}

static void test_int_reader_rejects_overflow_and_junk(void **state)
{
    static const char *const bad[] = { "9223372036854775808", "12.0", "1 ", "", "0x10", "1e3" };
    PGresult *r;
    int64_t v = 3;

    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(bad); i++) {
        r = one_value(bad[i]);
        assert_int_equal(pg_get_int64(r, 0, 0, &v), ML_ERR);
        PQclear(r);
    }
    assert_int_equal(v, 3);
    r = one_value("9223372036854775807");
    assert_int_equal(pg_get_int64(r, 0, 0, &v), ML_OK);
    assert_true(v == INT64_MAX);
    PQclear(r);
}

static void test_new_rejects_bad_urls(void **state)
{
    char longurl[5000];
    pg_conn *c;

    (void)state;
    memset(longurl, 'a', sizeof(longurl) - 1);
    longurl[sizeof(longurl) - 1] = '\0';
    assert_null(pg_new(NULL, NULL));
    assert_null(pg_new("", NULL));
    assert_null(pg_new(longurl, NULL));
    c = pg_new("postgresql://u@127.0.0.1:1/db", NULL);
    assert_non_null(c);
    assert_string_equal(pg_error(c), "");
    assert_false(pg_in_transaction(c));
    pg_close(c);
    pg_close(NULL);
    assert_string_equal(pg_error(NULL), "no postgres handle");
    assert_string_equal(pg_sqlstate(NULL), "");
}

static void test_argument_and_misuse_errors(void **state)
{
    pg_conn *c = pg_new("postgresql://u@127.0.0.1:1/db", NULL);

    (void)state;
    /* Rejected before any connection attempt. */
    assert_null(pg_query(c, NULL, "SELECT $1", 1, NULL));
    assert_string_equal(pg_error(c), "invalid query arguments");
    assert_null(pg_query(c, "x", NULL, 0, NULL));
    assert_int_equal(pg_exec_script(c, NULL), ML_ERR);
    assert_int_equal(pg_commit(c), ML_ERR);
    assert_non_null(strstr(pg_error(c), "no transaction is open"));
    /* Nothing open, nothing lost: rolling back is fine. */
    assert_int_equal(pg_rollback(c), ML_OK);
    pg_close(c);
}

/* A loopback port with nobody listening: bind, read the port, close. */
static int dead_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void test_connect_failure_is_bounded_and_clear(void **state)
{
    pg_options o = { .reconnect_attempts = 3, .backoff_initial_ms = 20, .backoff_max_ms = 30 };
    char url[128];
    pg_conn *c;
    int64_t t0;

    (void)state;
    ml_snprintf(url, sizeof(url), "postgresql://postgres@127.0.0.1:%d/x", dead_port());
    c = pg_new(url, &o);
    assert_non_null(c);
    t0 = ml_now_ms();
    assert_int_equal(pg_connect(c), ML_ERR);
    /* 3 tries: sleeps of 20 + 30 ms (capped), refused at once. */
    assert_true(ml_now_ms() - t0 >= 50);
    assert_true(ml_now_ms() - t0 < 2000);
    assert_string_equal(pg_sqlstate(c), PG_SQLSTATE_CONNECT_FAILED);
    assert_true(pg_error_is_connection(c));
    assert_non_null(strstr(pg_error(c), "cannot connect to postgres"));
    assert_non_null(strstr(pg_error(c), "refused"));
    assert_null(strchr(pg_error(c), '\n'));

    /* Queries and ping report the same, without crashing on the missing link. */
    assert_null(pg_query(c, "s", "SELECT 1", 0, NULL));
    assert_string_equal(pg_sqlstate(c), PG_SQLSTATE_CONNECT_FAILED);
    assert_int_equal(pg_ping(c), ML_ERR);
    assert_true(pg_error_is_connection(c));
    pg_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_readers),
        cmocka_unit_test(test_int_and_bool_readers),
        cmocka_unit_test(test_int_reader_rejects_overflow_and_junk),
        cmocka_unit_test(test_new_rejects_bad_urls),
        cmocka_unit_test(test_argument_and_misuse_errors),
        cmocka_unit_test(test_connect_failure_is_bounded_and_clear),
    };

    ml_log_init("test_pg", ML_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
