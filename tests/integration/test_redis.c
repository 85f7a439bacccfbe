/* Integration tests: shared/redis.c against the real Redis at MINILAMBDA_REDIS_URL.
 * Keys are prefixed with a per-run UUID and deleted at the end. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

static const char *g_url;
static char g_prefix[64];
static rds_url g_u;

static rds_conn *open_conn(const char *url, int cmd_timeout_ms)
{
    rds_options o = { .connect_timeout_ms = 1000, .command_timeout_ms = cmd_timeout_ms };
    char err[256] = "";
    rds_conn *c = rds_new(url, &o, err, sizeof(err));

    if (!c)
        fail_msg("rds_new(%s): %s", url, err);
    return c;
}

static void key(char *out, size_t size, const char *name)
{
    assert_int_equal(ml_snprintf(out, size, "%s%s", g_prefix, name), ML_OK);
}

/* The test URL with another database number (and the same credentials, if any). */
static void url_with_db(char *out, size_t size, const char *user, const char *pass, int db)
{
    if (pass && *pass)
        assert_int_equal(ml_snprintf(out, size, "redis://%s:%s@%s:%d/%d", user, pass, g_u.host,
                                     g_u.port, db), ML_OK);
    else
        assert_int_equal(ml_snprintf(out, size, "redis://%s:%d/%d", g_u.host, g_u.port, db),
                         ML_OK);
}

static void test_set_get_ttl(void **state)
{
    rds_conn *c = open_conn(g_url, 0);
    ml_buf v = { 0 };
    char k[128];
    int64_t n = -1;
    (void)state;
    key(k, sizeof(k), "ttl");
    assert_int_equal(rds_ping(c), ML_OK);
    assert_int_equal(rds_set(c, k, "hello", 5, 300), ML_OK);
    assert_int_equal(rds_get(c, k, &v), ML_OK);
    assert_string_equal(ml_buf_cstr(&v), "hello");
    {
        const char *argv[2] = { "PTTL", k };
        redisReply *r = rds_command(c, 2, argv, NULL);

        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        assert_true(r->integer > 0 && r->integer <= 300);
        freeReplyObject(r);
    }
    ml_sleep_ms(400);
    assert_int_equal(rds_get(c, k, &v), RDS_NIL);
    assert_int_equal(v.len, 0);

    /* no TTL: persists; DEL reports whether it existed */
    assert_int_equal(rds_set(c, k, "x", 1, 0), ML_OK);
    assert_int_equal(rds_del(c, k, &n), ML_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rds_del(c, k, &n), ML_OK);
    assert_int_equal(n, 0);
    assert_int_equal(rds_set(c, k, "x", 1, -5), ML_ERR);
    ml_buf_free(&v);
    rds_free(c);
}

static void test_binary_safe(void **state)
{
    static const char val[] = "a%sb\0c%n%d\0\r\n$3\r\nend";
    rds_conn *c = open_conn(g_url, 0);
    ml_buf v = { 0 };
    char k[128];
    (void)state;
    key(k, sizeof(k), "bin %s %n");
    assert_int_equal(rds_set(c, k, val, sizeof(val), 0), ML_OK);
    assert_int_equal(rds_get(c, k, &v), ML_OK);
    assert_int_equal(v.len, sizeof(val));
    assert_memory_equal(v.data, val, sizeof(val));

    /* the buffer's hard max bounds what rds_get accepts */
    ml_buf_free(&v);
    ml_buf_init(&v, 4);
    assert_int_equal(rds_get(c, k, &v), ML_ERR);
    assert_non_null(strstr(rds_error(c), "exceeds"));
    assert_int_equal(rds_ping(c), ML_OK);
    assert_int_equal(rds_del(c, k, NULL), ML_OK);
    ml_buf_free(&v);
    rds_free(c);
}

/* A Redis error reply is an error for the caller but leaves the connection up. */
static void test_error_reply_keeps_connection(void **state)
{
    rds_conn *c = open_conn(g_url, 0);
    char k[128];
    const char *argv[2] = { "INCR", k };
    const char *id[2] = { "CLIENT", "ID" };
    redisReply *r;
    long long id1;
    (void)state;
    key(k, sizeof(k), "notint");
    assert_int_equal(rds_set(c, k, "abc", 3, 0), ML_OK);
    r = rds_command(c, 2, id, NULL);
    assert_non_null(r);
    id1 = r->integer;
    freeReplyObject(r);
    assert_null(rds_command(c, 2, argv, NULL));
    assert_non_null(strstr(rds_error(c), "not an integer"));
    r = rds_command(c, 2, id, NULL);
    assert_non_null(r);
    assert_int_equal(r->integer, id1); /* same connection */
    freeReplyObject(r);
    assert_null(rds_command(c, 0, argv, NULL));
    assert_int_equal(rds_del(c, k, NULL), ML_OK);
    rds_free(c);
}

static void test_evalsha_noscript_fallback(void **state)
{
    static rds_script s, bad;
    rds_conn *c = open_conn(g_url, 0);
    rds_conn *admin = open_conn(g_url, 0);
    const char *flush[2] = { "SCRIPT", "FLUSH" };
    char k[128];
    const char *keys[1] = { k };
    const char *args[1] = { "a%sb" };
    redisReply *r;
    int round;
    (void)state;
    key(k, sizeof(k), "counter");
    rds_script_init(&s, "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}");
    assert_int_equal(rds_script_load(c, &s), ML_OK);
    for (round = 1; round <= 3; round++) {
        /* the script cache is emptied between calls: EVALSHA must reload and retry */
        r = rds_command(admin, 2, flush, NULL);
        assert_non_null(r);
        freeReplyObject(r);
        r = rds_evalsha(c, &s, 1, keys, 1, args);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        assert_int_equal(r->elements, 3);
        assert_string_equal(r->element[0]->str, k);
        assert_string_equal(r->element[1]->str, "a%sb");
        assert_int_equal(r->element[2]->integer, round);
        freeReplyObject(r);
    }
    /* a script error is reported, not retried as NOSCRIPT */
    rds_script_init(&bad, "return redis.call('NOSUCHCOMMAND')");
    assert_null(rds_evalsha(c, &bad, 0, NULL, 0, NULL));
    assert_true(strlen(rds_error(c)) > 0);
    rds_script_init(&bad, "this is not lua");
    assert_int_equal(rds_script_load(c, &bad), ML_ERR);
    assert_non_null(strstr(rds_error(c), "compiling"));
    assert_null(rds_evalsha(c, &s, -1, keys, 0, NULL));
    assert_int_equal(rds_del(c, k, NULL), ML_OK);
    rds_free(admin);
    rds_free(c);
}

/* A command slower than the command timeout fails fast; its late reply must not be read as
 * the answer to the next command, and the handle recovers once the server answers again. */
static void test_command_timeout_and_recovery(void **state)
{
    static const char busy[] =
        "local s = redis.call('TIME') local t0 = s[1] * 1000000 + s[2] "
        "while true do local n = redis.call('TIME') "
        "if n[1] * 1000000 + n[2] - t0 > 1000000 then break end end return 'late'";
    const char *argv[3] = { "EVAL", busy, "0" };
    rds_conn *c = open_conn(g_url, 200);
    ml_buf v = { 0 };
    char k[128];
    int64_t t0;
    (void)state;
    key(k, sizeof(k), "after-timeout");
    assert_int_equal(rds_set(c, k, "fresh", 5, 0), ML_OK);
    t0 = ml_now_ms();
    assert_null(rds_command(c, 3, argv, NULL));
    assert_true(ml_now_ms() - t0 < 700);
    assert_non_null(strstr(rds_error(c), "timed out after 200 ms"));
    ml_sleep_ms(1100); /* let the busy script finish */
    assert_int_equal(rds_get(c, k, &v), ML_OK);
    assert_string_equal(ml_buf_cstr(&v), "fresh"); /* not 'late' */
    assert_int_equal(rds_del(c, k, NULL), ML_OK);
    ml_buf_free(&v);
    rds_free(c);
}

/* The server drops the connection: one call fails with a clear error, the next one
 * reconnects — on the same database (SELECT re-applied). */
static void test_reconnect_after_client_kill(void **state)
{
    char url5[512], k[128], idstr[32];
    rds_conn *c, *admin = open_conn(g_url, 0), *db0 = open_conn(g_url, 0);
    const char *id[2] = { "CLIENT", "ID" };
    const char *kill[4] = { "CLIENT", "KILL", "ID", idstr };
    ml_buf v = { 0 };
    redisReply *r;
    (void)state;
    url_with_db(url5, sizeof(url5), g_u.user, g_u.password, 5);
    c = open_conn(url5, 0);
    key(k, sizeof(k), "db5");
    assert_int_equal(rds_set(c, k, "five", 4, 0), ML_OK);
    assert_int_equal(rds_get(db0, k, &v), RDS_NIL); /* SELECT 5 took effect */
    r = rds_command(c, 2, id, NULL);
    assert_non_null(r);
    snprintf(idstr, sizeof(idstr), "%lld", r->integer);
    freeReplyObject(r);
    r = rds_command(admin, 4, kill, NULL);
    assert_non_null(r);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);

    assert_int_equal(rds_get(c, k, &v), ML_ERR);
    assert_non_null(strstr(rds_error(c), "GET failed"));
    assert_int_equal(rds_get(c, k, &v), ML_OK);
    assert_string_equal(ml_buf_cstr(&v), "five");
    r = rds_command(c, 2, id, NULL);
    assert_non_null(r);
    assert_true(r->integer > strtoll(idstr, NULL, 10)); /* a new connection */
    freeReplyObject(r);
    assert_int_equal(rds_del(c, k, NULL), ML_OK);
    ml_buf_free(&v);
    rds_free(c);
    rds_free(db0);
    rds_free(admin);
}

/* AUTH from the URL, with an ACL user created for the test. */
static void test_auth(void **state)
{
    char user[64], url[512];
    const char *add[7] = { "ACL", "SETUSER", user, "on", ">t0p%s3cret", "~*", "+@all" };
    const char *del[3] = { "ACL", "DELUSER", user };
    rds_conn *admin = open_conn(g_url, 0), *c;
    redisReply *r;
    (void)state;
    snprintf(user, sizeof(user), "h4-%.8s", g_prefix + 5);
    r = rds_command(admin, 7, add, NULL);
    assert_non_null(r);
    freeReplyObject(r);

    url_with_db(url, sizeof(url), user, "t0p%25s3cret", 0);
    c = open_conn(url, 0);
    assert_int_equal(rds_ping(c), ML_OK);
    rds_free(c);

    url_with_db(url, sizeof(url), user, "wrong", 0);
    c = open_conn(url, 0);
    assert_int_equal(rds_ping(c), ML_ERR);
    assert_non_null(strstr(rds_error(c), "AUTH"));
    assert_non_null(strstr(rds_error(c), "WRONGPASS"));
    rds_free(c);

    r = rds_command(admin, 3, del, NULL);
    assert_non_null(r);
    freeReplyObject(r);
    rds_free(admin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get_ttl),
        cmocka_unit_test(test_binary_safe),
        cmocka_unit_test(test_error_reply_keeps_connection),
        cmocka_unit_test(test_evalsha_noscript_fallback),
        cmocka_unit_test(test_command_timeout_and_recovery),
        cmocka_unit_test(test_reconnect_after_client_kill),
        cmocka_unit_test(test_auth),
    };
    char uuid[ML_UUID_LEN], err[256];

    g_url = getenv("MINILAMBDA_REDIS_URL");
    if (!g_url || !*g_url) {
        fprintf(stderr, "MINILAMBDA_REDIS_URL is not set\n");
        return 1;
    }
    if (rds_url_parse(g_url, &g_u, err, sizeof(err)) != ML_OK) {
        fprintf(stderr, "MINILAMBDA_REDIS_URL: %s\n", err);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2) */
    ml_uuid(uuid);
    snprintf(g_prefix, sizeof(g_prefix), "test:%s:", uuid);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
