/* Unit tests: shared/config.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static const char *s_str, *s_url;
static int64_t s_int;
static bool s_bool;

static const cfg_var vars[] = {
    { "ML_T_STR", CFG_STR, "dflt", 0, 0, NULL, "a string", &s_str, false },
    { "ML_T_INT", CFG_INT, "5", 1, 10, NULL, "an int", &s_int, false },
    { "ML_T_BOOL", CFG_BOOL, "false", 0, 0, NULL, "a flag", &s_bool, false },
    { "ML_T_URL", CFG_URL, NULL, 0, 0, "postgres|postgresql", "a database URL", &s_url, true },
};

static int clear_env(void **state)
{
    (void)state;
    unsetenv("ML_T_STR");
    unsetenv("ML_T_INT");
    unsetenv("ML_T_BOOL");
    unsetenv("ML_T_URL");
    return 0;
}

static void test_defaults_and_required(void **state)
{
    ml_buf err = { 0 };
    (void)state;
    assert_int_equal(cfg_load(vars, 4, &err), ML_ERR);
    assert_non_null(strstr(ml_buf_cstr(&err), "ML_T_URL is required"));
    ml_buf_free(&err);
    setenv("ML_T_URL", "postgresql://u@h:1/db", 1);
    assert_int_equal(cfg_load(vars, 4, &err), ML_OK);
    assert_string_equal(s_str, "dflt");
    assert_int_equal(s_int, 5);
    assert_false(s_bool);
    assert_string_equal(s_url, "postgresql://u@h:1/db");
    ml_buf_free(&err);
}

static void test_values_and_all_errors_reported(void **state)
{
    ml_buf err = { 0 };
    (void)state;
    setenv("ML_T_STR", "x", 1);
    setenv("ML_T_INT", "11", 1);
    setenv("ML_T_BOOL", "maybe", 1);
    setenv("ML_T_URL", "http://h/db", 1);
    assert_int_equal(cfg_load(vars, 4, &err), ML_ERR);
    assert_non_null(strstr(ml_buf_cstr(&err), "ML_T_INT=11 must be an integer from 1 to 10"));
    assert_non_null(strstr(ml_buf_cstr(&err), "ML_T_BOOL=maybe"));
    assert_non_null(strstr(ml_buf_cstr(&err), "ML_T_URL=*** is not a URL")); /* secret masked */
    ml_buf_free(&err);
    setenv("ML_T_INT", "7", 1);
    setenv("ML_T_BOOL", "YES", 1);
    setenv("ML_T_URL", "postgres://h/db", 1);
    assert_int_equal(cfg_load(vars, 4, &err), ML_OK);
    assert_int_equal(s_int, 7);
    assert_true(s_bool);
    assert_string_equal(s_str, "x");
    ml_buf_free(&err);
}

static void test_empty_means_unset(void **state)
{
    ml_buf err = { 0 };
    (void)state;
    setenv("ML_T_URL", "postgres://h/db", 1);
    setenv("ML_T_INT", "", 1);
    assert_int_equal(cfg_load(vars, 4, &err), ML_OK);
    assert_int_equal(s_int, 5);
    ml_buf_free(&err);
}

static void test_markdown(void **state)
{
    ml_buf out = { 0 };
    (void)state;
    assert_int_equal(cfg_markdown(vars, 4, &out), ML_OK);
    assert_non_null(strstr(ml_buf_cstr(&out), "| `ML_T_INT` | `5` | an int |"));
    assert_non_null(strstr(ml_buf_cstr(&out), "| `ML_T_URL` | required | a database URL |"));
    ml_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_and_required, clear_env),
        cmocka_unit_test_setup(test_values_and_all_errors_reported, clear_env),
        cmocka_unit_test_setup(test_empty_means_unset, clear_env),
        cmocka_unit_test_setup(test_markdown, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
