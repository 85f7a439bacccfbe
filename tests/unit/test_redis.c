/* Unit tests: shared/redis.c parts that need no server (URL parsing, script digests,
 * fail-fast on an unreachable address). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "redis.h"

static void test_url_full(void **state)
{
    rds_url u;
    char err[128] = "";
    (void)state;
    assert_int_equal(rds_url_parse("redis://app:s%40cr%3At@cache.local:6380/3", &u, err,
                                   sizeof(err)), ML_OK);
    assert_string_equal(u.host, "cache.local");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "s@cr:t");
}

static void test_url_defaults_and_forms(void **state)
{
    rds_url u;
    char err[128] = "";
    (void)state;
    assert_int_equal(rds_url_parse("redis://127.0.0.1", &u, err, sizeof(err)), ML_OK);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.password, "");

    /* password only (requirepass style), empty db path */
    assert_int_equal(rds_url_parse("redis://:pw@h:1/", &u, err, sizeof(err)), ML_OK);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "pw");
    assert_int_equal(u.port, 1);
    assert_int_equal(u.db, 0);

    assert_int_equal(rds_url_parse("redis://[::1]:7000/2", &u, err, sizeof(err)), ML_OK);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 2);
}

static void test_url_rejects(void **state)
{
    static const char *const bad[] = {
        "http://h:1/0",          /* scheme */
        "redis://",              /* no host */
        "redis://h:0/0",         /* port range */
        "redis://h:70000",       /* port range */
        "redis://h:12ab",        /* port digits */
        "redis://h:6379/x",      /* db */
        "redis://h:6379/-1",     /* db */
        "redis://user@h",        /* user without password */
        "redis://:p%zz@h",       /* bad escape */
        "redis://:p%00@h",       /* NUL in password */
        "redis://[::1/0",        /* unterminated v6 */
        NULL,
    };
    rds_url u;
    char err[128];
    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_int_equal(rds_url_parse(bad[i], &u, err, sizeof(err)), ML_ERR);
        assert_true(strlen(err) > 0);
    }
}

static void test_new_rejects_bad_url(void **state)
{
    char err[128] = "";
    (void)state;
    assert_null(rds_new("redis://h:99999", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "port"));
}

static void test_script_sha1(void **state)
{
    rds_script s = { 0 };
    (void)state;
    /* sha1("return 1") as computed by `redis-cli SCRIPT LOAD "return 1"` */
    rds_script_init(&s, "return 1");
    assert_string_equal(s.sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

/* Nothing listens on port 1: the error is immediate and names the address; the next call
 * inside the backoff window fails without a connect attempt. */
static void test_refused_and_backoff(void **state)
{
    char err[128] = "";
    rds_conn *c = rds_new("redis://127.0.0.1:1/0", NULL, err, sizeof(err));
    int64_t t0;
    (void)state;
    assert_non_null(c);
    t0 = ml_now_ms();
    assert_int_equal(rds_ping(c), ML_ERR);
    assert_true(ml_now_ms() - t0 < 1000);
    assert_non_null(strstr(rds_error(c), "127.0.0.1:1"));
    assert_non_null(strstr(rds_error(c), "refused"));
    assert_int_equal(rds_ping(c), ML_ERR);
    assert_non_null(strstr(rds_error(c), "next connect attempt in"));
    ml_sleep_ms(RDS_BACKOFF_MIN_MS + 20);
    assert_int_equal(rds_ping(c), ML_ERR); /* backoff over: a real attempt again */
    assert_non_null(strstr(rds_error(c), "refused"));
    rds_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_full),
        cmocka_unit_test(test_url_defaults_and_forms),
        cmocka_unit_test(test_url_rejects),
        cmocka_unit_test(test_new_rejects_bad_url),
        cmocka_unit_test(test_script_sha1),
        cmocka_unit_test(test_refused_and_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
