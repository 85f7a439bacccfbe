/* test_completion.c — the decision behind exactly-once async completion (completion.h):
 * what a delivery of an invocation id does given the id's durable record. The Postgres side
 * (lock, record, crash) is exercised by tests/integration/async_exactly_once_e2e.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "completion.h"

/* A fresh id runs as the attempt its message carries. */
static void test_fresh_runs_as_message_attempt(void **state)
{
    int64_t a = -1;

    (void)state;
    assert_int_equal(completion_next(false, "", 0, true, 1, &a), COMPLETION_RUN);
    assert_int_equal(a, 1);
    assert_int_equal(completion_next(false, "", 0, true, 3, &a), COMPLETION_RUN);
    assert_int_equal(a, 3);
}

/* Completed: acked without running, whatever the message says (redelivery, client retry). */
static void test_completed_never_runs_again(void **state)
{
    int64_t a = 42;

    (void)state;
    for (int64_t m = 1; m <= 3; m++) {
        assert_int_equal(completion_next(true, "completed", 1, true, m, &a), COMPLETION_DONE);
        assert_int_equal(a, 42); /* untouched */
    }
}

/* Started but redelivered: the executor died mid-attempt; the re-run is the next attempt. */
static void test_cut_attempt_runs_as_next(void **state)
{
    int64_t a = 0;

    (void)state;
    assert_int_equal(completion_next(true, "started", 1, true, 1, &a), COMPLETION_RUN);
    assert_int_equal(a, 2);
    assert_int_equal(completion_next(true, "started", 2, true, 2, &a), COMPLETION_RUN);
    assert_int_equal(a, 3);
    /* cut twice: counted twice */
    assert_int_equal(completion_next(true, "started", 2, true, 1, &a), COMPLETION_RUN);
    assert_int_equal(a, 3);
}

/* A failed attempt's retry message carries the next attempt: it runs as that one. */
static void test_retry_runs_as_message_attempt(void **state)
{
    int64_t a = 0;

    (void)state;
    assert_int_equal(completion_next(true, "retrying", 1, true, 2, &a), COMPLETION_RUN);
    assert_int_equal(a, 2);
    /* nothing ran (recorded attempt - 1): the same attempt again */
    assert_int_equal(completion_next(true, "retrying", 0, true, 1, &a), COMPLETION_RUN);
    assert_int_equal(a, 1);
}

/* An id reused for another function is never run as this one. */
static void test_other_function_is_refused(void **state)
{
    int64_t a = 0;

    (void)state;
    assert_int_equal(completion_next(true, "started", 1, false, 1, &a), COMPLETION_DONE);
    assert_int_equal(completion_next(true, "retrying", 1, false, 2, &a), COMPLETION_DONE);
}

/* The lock key is the id's first 32 bits, case-insensitive, so one id is one lock. */
static void test_lock_key(void **state)
{
    (void)state;
    assert_int_equal(completion_lock_key("00000001-0000-4000-8000-000000000000"), 1);
    assert_int_equal(completion_lock_key("ffffffff-0000-4000-8000-000000000000"), -1);
    assert_int_equal(completion_lock_key("ABCDEF01-0000-4000-8000-000000000000"),
                     completion_lock_key("abcdef01-1111-4000-8000-000000000000"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_runs_as_message_attempt),
        cmocka_unit_test(test_completed_never_runs_again),
        cmocka_unit_test(test_cut_attempt_runs_as_next),
        cmocka_unit_test(test_retry_runs_as_message_attempt),
        cmocka_unit_test(test_other_function_is_refused),
        cmocka_unit_test(test_lock_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
