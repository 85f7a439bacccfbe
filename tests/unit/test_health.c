/* Unit tests: shared/health.c — capabilities, the /health status rule, debouncing, and the
 * background thread answering at once while a check hangs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "health.h"

/* A check whose result the test sets; ud points at its flag. delay_ms makes it hang. */
static atomic_int delay_ms;

static int flag_check(void *ud, char *err, size_t errlen)
{
    if (atomic_load(&delay_ms))
        ml_sleep_ms(atomic_load(&delay_ms));
    if (atomic_load((atomic_bool *)ud))
        return ML_OK;
    ml_snprintf_trunc(err, errlen, "refused");
    return ML_ERR;
}

static atomic_bool pg_up, mq_up, s3_up, art_up;

static const health_cap caps[] = {
    { "invoke", { NULL }, { "s3", "artifacts" } },
    { "async", { "rabbitmq" }, { NULL } },
    { "write", { "postgres" }, { NULL } },
};

static void setup_set(health *h)
{
    memset(h, 0, sizeof(*h));
    h->cache_ms = 1;
    atomic_store(&delay_ms, 0);
    atomic_store(&pg_up, true);
    atomic_store(&mq_up, true);
    atomic_store(&s3_up, true);
    atomic_store(&art_up, true);
    assert_int_equal(health_add(h, "postgres", flag_check, &pg_up, true), ML_OK);
    assert_int_equal(health_add(h, "rabbitmq", flag_check, &mq_up, true), ML_OK);
    assert_int_equal(health_add(h, "s3", flag_check, &s3_up, true), ML_OK);
    assert_int_equal(health_add(h, "artifacts", flag_check, &art_up, false), ML_OK);
    assert_int_equal(health_set_caps(h, caps, ML_ARRAY_LEN(caps)), ML_OK);
}

/* Evaluates after the cache window; returns the rc and the JSON text in out. */
static int eval(health *h, char *out, size_t len)
{
    cJSON *json = NULL;
    char *text;
    int rc;

    ml_sleep_ms(2);
    rc = health_evaluate(h, &json);
    text = cJSON_PrintUnformatted(json);
    ml_strlcpy(out, text, len);
    cJSON_free(text);
    cJSON_Delete(json);
    return rc;
}

static void test_caps_and_status(void **state)
{
    health h;
    char body[2048];
    (void)state;

    setup_set(&h);
    assert_int_equal(eval(&h, body, sizeof(body)), ML_OK);
    assert_non_null(strstr(body, "\"status\":\"ok\""));
    assert_non_null(strstr(body, "\"capabilities\":{\"invoke\":true,\"async\":true,\"write\":true}"));
    assert_non_null(strstr(body, "\"degraded\":[]"));
    /* a required check down no longer makes /health 503: its capabilities go, others stay */
    atomic_store(&mq_up, false);
    atomic_store(&pg_up, false);
    eval(&h, body, sizeof(body));
    assert_int_equal(eval(&h, body, sizeof(body)), ML_OK);
    assert_non_null(strstr(body, "\"status\":\"degraded\""));
    assert_non_null(strstr(body, "\"capabilities\":{\"invoke\":true,\"async\":false,\"write\":false}"));
    assert_non_null(strstr(body, "\"degraded\":[\"postgres\",\"rabbitmq\"]"));
    /* any-of: S3 down but code cached keeps invoke */
    atomic_store(&s3_up, false);
    eval(&h, body, sizeof(body));
    assert_int_equal(health_cap_ready(&h, "invoke", body, sizeof(body)), 1);
    atomic_store(&art_up, false);
    eval(&h, body, sizeof(body));
    assert_int_equal(eval(&h, body, sizeof(body)), ML_ERR); /* nothing left: 503 */
    assert_non_null(strstr(body, "\"status\":\"unavailable\""));
    assert_int_equal(health_cap_ready(&h, "invoke", body, sizeof(body)), 0);
    assert_non_null(strstr(body, "none of s3, artifacts is up"));
    assert_int_equal(health_cap_ready(&h, "nope", body, sizeof(body)), -1);
}

/* Waits for two more background rounds, then says whether cap is ready. */
static int ready_after_rounds(health *h, const char *cap)
{
    long long want = atomic_load(&h->rounds) + 2;
    char why[128];

    while (atomic_load(&h->rounds) < want)
        ml_sleep_ms(2);
    return health_cap_ready(h, cap, why, sizeof(why));
}

static void test_one_failure_is_no_outage(void **state)
{
    health h;
    (void)state;

    setup_set(&h);
    h.interval_ms = 10;
    assert_int_equal(health_start(&h), ML_OK);
    assert_int_equal(ready_after_rounds(&h, "async"), 1);
    /* a failed round after passing is not yet an outage; two in a row are */
    atomic_store(&mq_up, false);
    assert_int_equal(ready_after_rounds(&h, "async"), 0);
    atomic_store(&mq_up, true);
    assert_int_equal(ready_after_rounds(&h, "async"), 1); /* back at the first pass */
    health_stop(&h);
}

static void test_unknown_check_refused(void **state)
{
    health h;
    const health_cap bad[] = { { "x", { "postgres", "nosuch" }, { NULL } } };
    (void)state;

    setup_set(&h);
    assert_int_equal(health_set_caps(&h, bad, 1), ML_ERR);
}

/* Without capabilities (the gateway) the older rule holds: 503 when a required check fails. */
static void test_no_caps_keeps_required_rule(void **state)
{
    health h;
    char body[2048];
    (void)state;

    memset(&h, 0, sizeof(h));
    h.cache_ms = 1;
    atomic_store(&delay_ms, 0);
    atomic_store(&pg_up, false);
    health_add(&h, "postgres", flag_check, &pg_up, true);
    assert_int_equal(eval(&h, body, sizeof(body)), ML_ERR);
    assert_null(strstr(body, "capabilities"));
}

/* A hanging check: the background thread holds it, /health answers from the cache at once. */
static void test_background_never_waits(void **state)
{
    health h;
    cJSON *json = NULL;
    int64_t t0, worst = 0;
    char why[128];
    (void)state;

    setup_set(&h);
    h.interval_ms = 50;
    assert_int_equal(health_start(&h), ML_OK);
    while (atomic_load(&h.rounds) < 1)
        ml_sleep_ms(5);
    atomic_store(&delay_ms, 300); /* every check now takes 300 ms */
    atomic_store(&mq_up, false);
    for (int i = 0; i < 40; i++) {
        t0 = ml_now_ms();
        health_evaluate(&h, &json);
        cJSON_Delete(json);
        worst = ml_now_ms() - t0 > worst ? ml_now_ms() - t0 : worst;
        ml_sleep_ms(100);
    }
    assert_true(worst < 20);
    /* the slow rounds still move the results on */
    assert_int_equal(health_cap_ready(&h, "async", why, sizeof(why)), 0);
    atomic_store(&delay_ms, 0);
    health_stop(&h);
    health_stop(&h); /* a second stop is a no-op */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caps_and_status),
        cmocka_unit_test(test_one_failure_is_no_outage),
        cmocka_unit_test(test_unknown_check_refused),
        cmocka_unit_test(test_no_caps_keeps_required_rule),
        cmocka_unit_test(test_background_never_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
