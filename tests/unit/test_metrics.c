/* Unit tests: shared/metrics.c — exposition format checked by promtool itself, snapshot
 * gauges, bounded function labels; shared/queuestats.c without a broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "metrics.h"
#include "queuestats.h"

static void test_counter_gauge(void **state)
{
    metrics_registry *reg = metrics_new();
    metric *c = metrics_counter(reg, "minilambda_t_requests_total", "Requests.", "route,code");
    metric *g = metrics_gauge(reg, "minilambda_t_pool", "Pool.", NULL);
    ml_buf out = { 0 };
    (void)state;
    assert_non_null(c);
    assert_non_null(g);
    metric_inc(c, (const char *[]){ "/functions/{fn}", "200" });
    metric_add(c, (const char *[]){ "/functions/{fn}", "200" }, 2);
    metric_add(c, (const char *[]){ "/functions/{fn}", "200" }, -5); /* counters never go down */
    metric_inc(c, (const char *[]){ "/x", "500" });
    metric_set(g, NULL, 7);
    metric_add(g, NULL, -2);
    assert_true(metric_value(c, (const char *[]){ "/functions/{fn}", "200" }) == 3);
    assert_true(metric_value(g, NULL) == 5);
    assert_int_equal(metrics_render(reg, &out), ML_OK);
    assert_non_null(strstr(out.data, "# TYPE minilambda_t_requests_total counter\n"));
    assert_non_null(strstr(out.data, "minilambda_t_requests_total{route=\"/functions/{fn}\",code=\"200\"} 3\n"));
    assert_non_null(strstr(out.data, "minilambda_t_pool 5\n"));
    ml_buf_free(&out);
    metrics_free(reg);
}

static void test_bad_names_rejected(void **state)
{
    metrics_registry *reg = metrics_new();
    (void)state;
    assert_null(metrics_counter(reg, "no_total_suffix", "x", NULL));
    assert_null(metrics_gauge(reg, "9starts_with_digit", "x", NULL));
    assert_null(metrics_gauge(reg, "minilambda_ok", "x", "bad-label"));
    assert_null(metrics_gauge(reg, "minilambda_ok", "x", "le"));
    assert_null(metrics_histogram(reg, "minilambda_h", "x", NULL, (double[]){ 2, 1 }, 2));
    metrics_free(reg);
}

static void test_histogram_and_escaping(void **state)
{
    metrics_registry *reg = metrics_new();
    metric *h = metrics_histogram(reg, "minilambda_t_seconds", "Latency \\ with \"quotes\".", "fn",
                                  (double[]){ 0.1, 1 }, 2);
    ml_buf out = { 0 };
    (void)state;
    metric_observe(h, (const char *[]){ "a\"b\\c\nd" }, 0.05);
    metric_observe(h, (const char *[]){ "a\"b\\c\nd" }, 0.5);
    metric_observe(h, (const char *[]){ "a\"b\\c\nd" }, 5);
    metrics_render(reg, &out);
    assert_non_null(strstr(out.data, "minilambda_t_seconds_bucket{fn=\"a\\\"b\\\\c\\nd\",le=\"0.1\"} 1\n"));
    assert_non_null(strstr(out.data, "le=\"1\"} 2\n"));
    assert_non_null(strstr(out.data, "le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(out.data, "minilambda_t_seconds_count{fn=\"a\\\"b\\\\c\\nd\"} 3\n"));
    assert_non_null(strstr(out.data, "minilambda_t_seconds_sum{fn=\"a\\\"b\\\\c\\nd\"} 5.5"));
    ml_buf_free(&out);
    metrics_free(reg);
}

/* Past max_series, new label sets fold into "other" rather than growing without bound. */
static void test_cardinality_bound(void **state)
{
    metrics_registry *reg = metrics_new();
    metric *c = metrics_counter(reg, "minilambda_t_fn_total", "x", "fn");
    char name[32];
    (void)state;
    for (int i = 0; i < 2500; i++) {
        snprintf(name, sizeof(name), "fn-%d", i);
        metric_inc(c, (const char *[]){ name });
    }
    assert_true(metric_value(c, (const char *[]){ "fn-0" }) == 1);
    assert_true(metric_value(c, (const char *[]){ "other" }) == 500);
    metrics_free(reg);
}

/* A replace swaps the whole set: vanished series go, equal label sets add up. */
static void test_gauge_replace(void **state)
{
    metrics_registry *reg = metrics_new();
    metric *g = metrics_gauge(reg, "minilambda_t_instances", "x", "function,state");
    metric *c = metrics_counter(reg, "minilambda_t_c_total", "x", NULL);
    const metric_sample two[] = {
        { (const char *[]){ "a", "idle" }, 2 },
        { (const char *[]){ "_other", "idle" }, 1 },
        { (const char *[]){ "_other", "idle" }, 4 },
    };
    const metric_sample one[] = { { (const char *[]){ "b", "busy" }, 3 } };
    ml_buf out = { 0 };
    (void)state;
    metric_set(g, (const char *[]){ "gone", "idle" }, 9);
    assert_int_equal(metric_gauge_replace(g, two, ML_ARRAY_LEN(two)), ML_OK);
    assert_true(metric_value(g, (const char *[]){ "a", "idle" }) == 2);
    assert_true(metric_value(g, (const char *[]){ "_other", "idle" }) == 5);
    assert_int_equal(metrics_render(reg, &out), ML_OK);
    assert_null(strstr(out.data, "gone"));
    ml_buf_reset(&out);
    assert_int_equal(metric_gauge_replace(g, one, 1), ML_OK);
    assert_int_equal(metrics_render(reg, &out), ML_OK);
    assert_null(strstr(out.data, "function=\"a\""));
    assert_non_null(strstr(out.data, "minilambda_t_instances{function=\"b\",state=\"busy\"} 3\n"));
    ml_buf_reset(&out);
    assert_int_equal(metric_gauge_replace(g, NULL, 0), ML_OK);
    assert_int_equal(metrics_render(reg, &out), ML_OK);
    assert_null(strstr(out.data, "minilambda_t_instances{"));
    assert_non_null(strstr(out.data, "# TYPE minilambda_t_instances gauge\n"));
    assert_int_equal(metric_gauge_replace(c, one, 1), ML_ERR); /* gauges only */
    ml_buf_free(&out);
    metrics_free(reg);
}

/* The first max names pass through, the rest become "_other", until the cap is reset. */
static void test_function_label_cap(void **state)
{
    char name[32];
    (void)state;
    metrics_set_max_functions(3);
    assert_string_equal(metrics_function_label("f1"), "f1");
    assert_string_equal(metrics_function_label("f2"), "f2");
    assert_string_equal(metrics_function_label("f1"), "f1");
    assert_string_equal(metrics_function_label("f3"), "f3");
    assert_string_equal(metrics_function_label("f4"), METRICS_OTHER_FUNCTION);
    assert_string_equal(metrics_function_label("f2"), "f2"); /* still known */
    assert_string_equal(metrics_function_label(""), "");
    assert_string_equal(metrics_function_label(NULL), "");
    metrics_set_max_functions(0); /* default, names forgotten */
    for (int i = 0; i < METRICS_DEFAULT_MAX_FUNCTIONS; i++) {
        snprintf(name, sizeof(name), "fn-%d", i);
        assert_string_equal(metrics_function_label(name), name);
    }
    assert_string_equal(metrics_function_label("f4"), METRICS_OTHER_FUNCTION);
    assert_string_equal(metrics_function_label("fn-0"), "fn-0");
    metrics_set_max_functions(0);
}

/* Broker unreachable: _up 0 and no per-queue series (nothing stale), stop is prompt. */
static void test_queuestats_broker_down(void **state)
{
    static const char *const queues[] = { "q.a", "q.b" };
    metrics_registry *reg = metrics_new();
    qstats_config qc = { .amqp_url = "amqp://guest:guest@127.0.0.1:1/", .queues = queues,
                         .nqueues = 2, .interval_ms = 50, .metrics = reg };
    metric *up, *msgs;
    qstats *q;
    char err[256] = "";
    ml_buf out = { 0 };
    int64_t t0;
    (void)state;
    assert_null(qstats_start(&(qstats_config){ .amqp_url = qc.amqp_url, .metrics = reg }, err,
                             sizeof(err))); /* no queues */
    q = qstats_start(&qc, err, sizeof(err));
    assert_non_null(q);
    up = metrics_gauge(reg, "minilambda_queue_stats_up", "", NULL);
    msgs = metrics_gauge(reg, "minilambda_queue_messages", "", "queue");
    metric_set(msgs, (const char *[]){ "q.a" }, 7); /* a stale value must be dropped */
    for (t0 = ml_now_ms(); ml_now_ms() - t0 < 5000; ml_sleep_ms(20)) {
        ml_buf_reset(&out);
        metrics_render(reg, &out);
        if (strstr(out.data, "minilambda_queue_stats_up 0\n") && !strstr(out.data, "q.a"))
            break;
    }
    assert_true(metric_value(up, NULL) == 0);
    assert_null(strstr(out.data, "minilambda_queue_messages{"));
    assert_null(strstr(out.data, "minilambda_queue_consumers{"));
    t0 = ml_now_ms();
    qstats_stop(q);
    assert_true(ml_now_ms() - t0 < 3000);
    ml_buf_free(&out);
    metrics_free(reg);
}

static void test_promtool_accepts(void **state)
{
    metrics_registry *reg = metrics_new();
    metric *c = metrics_counter(reg, "minilambda_t_events_total", "Events.", "kind");
    metric *h = metrics_histogram(reg, "minilambda_t_duration_seconds", "Duration.", "kind", NULL, 0);
    ml_buf out = { 0 };
    FILE *p;
    int status;
    (void)state;
    assert_int_equal(metrics_register_process(reg), ML_OK);
    metric_inc(c, (const char *[]){ "a" });
    metric_observe(h, (const char *[]){ "a" }, 0.2);
    assert_int_equal(metrics_render(reg, &out), ML_OK);
    assert_non_null(strstr(out.data, "process_resident_memory_bytes "));
    assert_non_null(strstr(out.data, "process_open_fds "));
    p = popen("promtool check metrics >/dev/null 2>&1", "w");
    assert_non_null(p);
    fwrite(out.data, 1, out.len, p);
    status = pclose(p);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    ml_buf_free(&out);
    metrics_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge),         cmocka_unit_test(test_bad_names_rejected),
        cmocka_unit_test(test_histogram_and_escaping), cmocka_unit_test(test_cardinality_bound),
        cmocka_unit_test(test_promtool_accepts),      cmocka_unit_test(test_gauge_replace),
        cmocka_unit_test(test_function_label_cap),    cmocka_unit_test(test_queuestats_broker_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
