/* Unit tests: shared/mq.c parts that need no broker (URL and topology validation,
 * fail-fast on an unreachable address, message helpers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "mq.h"

static void test_new_validates_url(void **state)
{
    char err[160] = "";
    mq_conn *c;
    (void)state;
    assert_null(mq_new("http://guest:guest@127.0.0.1:5672/", NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "bad AMQP URL"));
    err[0] = '\0';
    assert_null(mq_new("amqps://guest:guest@127.0.0.1:5671/", NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "bad AMQP URL"));
    assert_null(mq_new(NULL, NULL, NULL, err, sizeof(err)));
    c = mq_new("amqp://guest:guest@127.0.0.1:5672/%2f", NULL, NULL, err, sizeof(err));
    assert_non_null(c);
    mq_close(c); /* never connected: nothing to close but memory */
}

static void test_new_validates_topology(void **state)
{
    static const mq_queue_spec classic_with_limit[] = { { .name = "q", .delivery_limit = 3 } };
    static const mq_topology t1 = { .queues = classic_with_limit, .n_queues = 1 };
    static const mq_exchange_spec no_type[] = { { .name = "x" } };
    static const mq_topology t2 = { .exchanges = no_type, .n_exchanges = 1 };
    char err[160] = "";
    (void)state;
    assert_null(mq_new("amqp://127.0.0.1", NULL, &t1, err, sizeof(err)));
    assert_non_null(strstr(err, "delivery_limit needs a quorum queue"));
    err[0] = '\0';
    assert_null(mq_new("amqp://127.0.0.1", NULL, &t2, err, sizeof(err)));
    assert_true(strlen(err) > 0);
}

/* Nothing listens on port 1: immediate, clear error; then the backoff refuses at once. */
static void test_refused_and_backoff(void **state)
{
    char err[160] = "";
    mq_conn *c = mq_new("amqp://guest:guest@127.0.0.1:1/", NULL, NULL, err, sizeof(err));
    mq_publish_msg m = { .routing_key = "q", .body = "x", .body_len = 1 };
    mq_message msg = { 0 };
    int64_t t0;
    (void)state;
    assert_non_null(c);
    t0 = ml_now_ms();
    assert_int_equal(mq_ensure(c), ML_ERR);
    assert_true(ml_now_ms() - t0 < 1000);
    assert_non_null(strstr(mq_error(c), "127.0.0.1:1"));
    assert_non_null(strstr(mq_error(c), "refused or unreachable"));
    assert_int_equal(mq_publish(c, &m), ML_ERR);
    assert_non_null(strstr(mq_error(c), "next connect attempt in"));
    assert_int_equal(mq_ping(c), ML_ERR);
    /* consume_next without mq_consume is a usage error, not a hang */
    assert_int_equal(mq_consume_next(c, 10, &msg), MQ_ERR);
    assert_non_null(strstr(mq_error(c), "mq_consume"));
    mq_close(c);
}

static void test_message_helpers(void **state)
{
    mq_message m = { 0 };
    (void)state;
    assert_null(mq_message_header(&m, "x-attempt"));
    mq_message_destroy(&m); /* zeroed is fine */
    mq_message_destroy(NULL);
    assert_null(m.body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_validates_url),
        cmocka_unit_test(test_new_validates_topology),
        cmocka_unit_test(test_refused_and_backoff),
        cmocka_unit_test(test_message_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
