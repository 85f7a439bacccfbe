/* Unit tests: services/gateway/bodycheck.c — nesting depth of an invoke body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "bodycheck.h"
#include "jsoncheck.h"
#include "ml.h"

static unsigned depth(const char *s)
{
    size_t at = 0;

    return gw_bodycheck_depth(s, strlen(s), JSONCHECK_MAX_DEPTH, &at);
}

static void test_depths(void **state)
{
    (void)state;
    assert_int_equal(depth(""), 0);
    assert_int_equal(depth("42"), 0);
    assert_int_equal(depth("{}"), 1);
    assert_int_equal(depth("{\"a\":[1,{\"b\":[]}],\"c\":{}}"), 4);
    /* brackets in strings, escaped quotes included, do not count */
    assert_int_equal(depth("[\"[[[{{{\"]"), 1);
    assert_int_equal(depth("[\"\\\"[[[\\\\\",[]]"), 2);
    /* unbalanced closers never underflow */
    assert_int_equal(depth("]]]}}}[1]"), 1);
}

/* 512 deep passes, 513 does not; a 100,000-deep body stops at the first bracket too many. */
static void test_limit(void **state)
{
    size_t n = 100000, at = 0;
    char *s = malloc(2 * n + 1);

    (void)state;
    assert_non_null(s);
    memset(s, '[', JSONCHECK_MAX_DEPTH);
    memset(s + JSONCHECK_MAX_DEPTH, ']', JSONCHECK_MAX_DEPTH);
    assert_int_equal(gw_bodycheck_depth(s, 2 * JSONCHECK_MAX_DEPTH, JSONCHECK_MAX_DEPTH, &at), JSONCHECK_MAX_DEPTH);
    memset(s, '[', n);
    memset(s + n, ']', n);
    assert_int_equal(gw_bodycheck_depth(s, 2 * n, JSONCHECK_MAX_DEPTH, &at), JSONCHECK_MAX_DEPTH + 1);
    assert_int_equal(at, JSONCHECK_MAX_DEPTH);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_depths),
        cmocka_unit_test(test_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
