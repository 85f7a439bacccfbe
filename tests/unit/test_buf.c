/* Unit tests: shared/buf.c and shared/util.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"

static void test_zeroed_is_empty(void **state)
{
    ml_buf b = { 0 };
    (void)state;
    assert_string_equal(ml_buf_cstr(&b), "");
    assert_int_equal(b.len, 0);
    ml_buf_free(&b);
}

static void test_append_and_printf(void **state)
{
    ml_buf b = { 0 };
    (void)state;
    assert_int_equal(ml_buf_append_str(&b, "hello"), ML_OK);
    assert_int_equal(ml_buf_printf(&b, " %s %d", "world", 42), ML_OK);
    assert_string_equal(ml_buf_cstr(&b), "hello world 42");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ml_buf_append(&b, "x", 1), ML_OK);
    assert_int_equal(b.len, 14 + 1000);
    ml_buf_free(&b);
}

static void test_hard_max(void **state)
{
    ml_buf b;
    (void)state;
    ml_buf_init(&b, 8);
    assert_int_equal(ml_buf_append_str(&b, "12345678"), ML_OK);
    assert_int_equal(ml_buf_append_str(&b, "9"), ML_ERR);
    assert_int_equal(ml_buf_printf(&b, "%d", 1), ML_ERR);
    assert_string_equal(ml_buf_cstr(&b), "12345678"); /* unchanged after a refused append */
    ml_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(ml_buf_append_str(&b, "abc"), ML_OK);
    ml_buf_free(&b);
    assert_int_equal(b.max, 8); /* free keeps the limit */
}

static void test_binary_and_steal(void **state)
{
    ml_buf b = { 0 };
    size_t len = 0;
    char *p;
    (void)state;
    assert_int_equal(ml_buf_append(&b, "a\0b", 3), ML_OK);
    p = ml_buf_steal(&b, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(p, "a\0b", 3);
    free(p);
    assert_null(b.data);
    p = ml_buf_steal(&b, &len); /* empty buffer still yields a freeable string */
    assert_non_null(p);
    assert_int_equal(len, 0);
    free(p);
}

static void test_parse_int(void **state)
{
    int64_t v = 0;
    (void)state;
    assert_int_equal(ml_parse_int64("42", 0, 100, &v), ML_OK);
    assert_int_equal(v, 42);
    assert_int_equal(ml_parse_int64("-5", -10, 10, &v), ML_OK);
    assert_int_equal(v, -5);
    assert_int_equal(ml_parse_int64("101", 0, 100, &v), ML_ERR);
    assert_int_equal(ml_parse_int64("12abc", 0, 100, &v), ML_ERR);
    assert_int_equal(ml_parse_int64("", 0, 100, &v), ML_ERR);
    assert_int_equal(ml_parse_int64(NULL, 0, 100, &v), ML_ERR);
    assert_int_equal(ml_parse_int64(" 5", 0, 100, &v), ML_ERR);
    assert_int_equal(ml_parse_int64("+5", 0, 100, &v), ML_ERR);
    assert_int_equal(ml_parse_int64("99999999999999999999", INT64_MIN, INT64_MAX, &v), ML_ERR);
}

static void test_strings_and_uuid(void **state)
{
    char small[4], id[ML_UUID_LEN], id2[ML_UUID_LEN];
    (void)state;
    assert_int_equal(ml_strlcpy(small, "abcdef", sizeof(small)), ML_ERR);
    assert_string_equal(small, "abc");
    assert_int_equal(ml_strlcpy(small, "ab", sizeof(small)), ML_OK);
    assert_int_equal(ml_snprintf(small, sizeof(small), "%d", 12345), ML_ERR);
    ml_uuid(id);
    ml_uuid(id2);
    assert_int_equal(strlen(id), 36);
    assert_int_equal(ml_uuid_valid(id), ML_OK);
    assert_string_not_equal(id, id2);
    assert_int_equal(ml_uuid_valid("not-a-uuid"), ML_ERR);
    assert_int_equal(ml_uuid_valid("../../etc/passwd-0000-0000-000000000"), ML_ERR);
}

static void test_cursor_parse(void **state)
{
    char us[24], id[ML_UUID_LEN];
    (void)state;
    assert_int_equal(ml_cursor_parse("1700000000000000.0b6c2f9e-8d0a-4c51-9d6e-2f4b1c3a5e7d", us, id), ML_OK);
    assert_string_equal(us, "1700000000000000");
    assert_string_equal(id, "0b6c2f9e-8d0a-4c51-9d6e-2f4b1c3a5e7d");
    assert_int_equal(ml_cursor_parse(NULL, us, id), ML_ERR);
    assert_int_equal(ml_cursor_parse("nodot", us, id), ML_ERR);
    assert_int_equal(ml_cursor_parse("-1.0b6c2f9e-8d0a-4c51-9d6e-2f4b1c3a5e7d", us, id), ML_ERR);
    assert_int_equal(ml_cursor_parse("12x.0b6c2f9e-8d0a-4c51-9d6e-2f4b1c3a5e7d", us, id), ML_ERR);
    assert_int_equal(ml_cursor_parse("1.not-a-uuid", us, id), ML_ERR);
    assert_int_equal(ml_cursor_parse("123456789012345678901234.0b6c2f9e-8d0a-4c51-9d6e-2f4b1c3a5e7d", us, id), ML_ERR);
}

/* Ids stay version-4 and distinct across refills of the random pool, and a forked child
 * never repeats its parent's next id. */
static void test_uuid_pool(void **state)
{
    char seen[100][ML_UUID_LEN], parent[ML_UUID_LEN], child[ML_UUID_LEN] = "";
    int fds[2];
    pid_t pid;
    (void)state;
    for (int i = 0; i < 100; i++) {
        ml_uuid(seen[i]);
        assert_int_equal(seen[i][14], '4');
        assert_non_null(strchr("89ab", seen[i][19]));
        for (int j = 0; j < i; j++)
            assert_string_not_equal(seen[i], seen[j]);
    }
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ml_uuid(child);
        _exit(write(fds[1], child, sizeof(child)) == (ssize_t)sizeof(child) ? 0 : 1);
    }
    ml_uuid(parent);
    assert_int_equal(read(fds[0], child, sizeof(child)), (ssize_t)sizeof(child));
    waitpid(pid, NULL, 0);
    close(fds[0]);
    close(fds[1]);
    assert_string_not_equal(parent, child);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zeroed_is_empty), cmocka_unit_test(test_append_and_printf),
        cmocka_unit_test(test_hard_max),        cmocka_unit_test(test_binary_and_steal),
        cmocka_unit_test(test_parse_int),       cmocka_unit_test(test_strings_and_uuid),
        cmocka_unit_test(test_uuid_pool),
        cmocka_unit_test(test_cursor_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
