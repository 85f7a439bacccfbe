/* Integration tests: shared/queuestats.c against the real RabbitMQ at MINILAMBDA_AMQP_URL
 * (its management API at MINILAMBDA_RABBITMQ_MGMT_URL force-closes the stats connection).
 * The test queue is named qst.<run>.q and deleted at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <cJSON.h>
#include <curl/curl.h>

#include "buf.h"
#include "metrics.h"
#include "mq.h"
#include "queuestats.h"

static const char *g_url, *g_mgmt;
static char g_user[128], g_pass[128], g_queue[64], g_missing[64], g_conn[64];

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    return ml_buf_append(ud, p, sz * n) == ML_OK ? sz * n : 0;
}

/* One management API call; returns the HTTP status (0 on transport failure). */
static long mgmt(const char *method, const char *path, ml_buf *out)
{
    CURL *h = curl_easy_init();
    char url[1024];
    long status = 0;

    assert_non_null(h);
    snprintf(url, sizeof(url), "%s/api%s", g_mgmt, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_USERNAME, g_user);
    curl_easy_setopt(h, CURLOPT_PASSWORD, g_pass);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    return status;
}

/* The broker's name for the connection with client connection_name g_conn, or "". */
static void find_conn(char *out, size_t size)
{
    ml_buf b = { 0 };
    cJSON *arr, *it;

    out[0] = '\0';
    if (mgmt("GET", "/connections", &b) == 200) {
        arr = cJSON_Parse(ml_buf_cstr(&b));
        cJSON_ArrayForEach(it, arr) {
            cJSON *cp = cJSON_GetObjectItemCaseSensitive(it, "client_properties");
            cJSON *cn = cJSON_GetObjectItemCaseSensitive(cp, "connection_name");
            cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
            if (cJSON_IsString(cn) && cJSON_IsString(nm) && strcmp(cn->valuestring, g_conn) == 0)
                ml_strlcpy(out, nm->valuestring, size);
        }
        cJSON_Delete(arr);
    }
    ml_buf_free(&b);
}

/* Force-closes the stats connection (the management API lists it only after its next
 * statistics emission, so poll); returns its broker name. */
static void force_close(char *name, size_t size)
{
    char path[512], *enc;
    ml_buf b = { 0 };
    int64_t deadline = ml_now_ms() + 30000;

    for (find_conn(name, size); !name[0] && ml_now_ms() < deadline; find_conn(name, size))
        ml_sleep_ms(250);
    if (!name[0])
        fail_msg("connection %s never showed up in the management API", g_conn);
    enc = curl_easy_escape(NULL, name, 0);
    snprintf(path, sizeof(path), "/connections/%s", enc);
    curl_free(enc);
    assert_int_equal(mgmt("DELETE", path, &b), 204);
    ml_buf_free(&b);
}

static mq_conn *conn(const mq_topology *t)
{
    char err[256] = "";
    mq_options o = { .op_timeout_ms = 5000 };
    mq_conn *c = mq_new(g_url, &o, t, err, sizeof(err));

    if (!c || mq_ensure(c) != ML_OK)
        fail_msg("cannot connect: %s", c ? mq_error(c) : err);
    return c;
}

/* Waits up to 10 s until the gauges show messages/consumers for the test queue. */
static bool wait_for(metric *msgs, metric *cons, double m, double c)
{
    const char *q[] = { g_queue };

    for (int64_t t0 = ml_now_ms(); ml_now_ms() - t0 < 10000; ml_sleep_ms(50)) {
        if (metric_value(msgs, q) == m && metric_value(cons, q) == c)
            return true;
    }
    return false;
}

/* Counts from the broker; a missing queue has no series; consumers show up; after a forced
 * close the thread reconnects on its own. */
static void test_counts_and_reconnect(void **state)
{
    const char *const queues[] = { g_queue, g_missing };
    const mq_queue_spec qs[] = { { .name = g_queue } };
    const mq_topology topo = { .queues = qs, .n_queues = 1 };
    metrics_registry *reg = metrics_new();
    qstats_config qc = { .amqp_url = g_url, .queues = queues, .nqueues = 2, .interval_ms = 100,
                         .connection_name = g_conn, .metrics = reg };
    mq_conn *pub = conn(&topo), *sub;
    mq_publish_msg pm = { .routing_key = g_queue, .body = "{}", .body_len = 2 };
    mq_message got = { 0 };
    metric *msgs, *cons, *up;
    char err[256] = "", old[256], now[256];
    ml_buf out = { 0 };
    qstats *q;
    (void)state;

    for (int i = 0; i < 3; i++)
        assert_int_equal(mq_publish(pub, &pm), ML_OK);
    q = qstats_start(&qc, err, sizeof(err));
    assert_non_null(q);
    msgs = metrics_gauge(reg, "minilambda_queue_messages", "", "queue");
    cons = metrics_gauge(reg, "minilambda_queue_consumers", "", "queue");
    up = metrics_gauge(reg, "minilambda_queue_stats_up", "", NULL);
    assert_true(wait_for(msgs, cons, 3, 0));
    assert_true(metric_value(up, NULL) == 1);
    metrics_render(reg, &out);
    assert_null(strstr(ml_buf_cstr(&out), g_missing));

    sub = conn(NULL); /* one delivered, unacked: 2 ready, 1 consumer */
    assert_int_equal(mq_consume(sub, g_queue, 1), ML_OK);
    assert_int_equal(mq_consume_next(sub, 5000, &got), MQ_OK);
    assert_true(wait_for(msgs, cons, 2, 1));

    force_close(old, sizeof(old));
    assert_int_equal(mq_publish(pub, &pm), ML_OK);
    assert_true(wait_for(msgs, cons, 3, 1));
    find_conn(now, sizeof(now));
    assert_string_not_equal(now, old);

    qstats_stop(q);
    mq_message_destroy(&got);
    mq_close(sub);
    assert_int_equal(mq_queue_delete(pub, g_queue), ML_OK);
    mq_close(pub);
    ml_buf_free(&out);
    metrics_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_reconnect),
    };
    struct amqp_connection_info info;
    char uuid[ML_UUID_LEN], *copy;
    int rc;

    g_url = getenv("MINILAMBDA_AMQP_URL");
    g_mgmt = getenv("MINILAMBDA_RABBITMQ_MGMT_URL");
    if (!g_url || !*g_url || !g_mgmt || !*g_mgmt) {
        fprintf(stderr, "MINILAMBDA_AMQP_URL and MINILAMBDA_RABBITMQ_MGMT_URL must be set\n");
        return 1;
    }
    copy = strdup(g_url);
    if (!copy || amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
        fprintf(stderr, "MINILAMBDA_AMQP_URL is not a valid AMQP URL\n");
        return 1;
    }
    ml_strlcpy(g_user, info.user, sizeof(g_user));
    ml_strlcpy(g_pass, info.password, sizeof(g_pass));
    free(copy);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ml_uuid(uuid);
    uuid[8] = '\0';
    snprintf(g_queue, sizeof(g_queue), "qst.%s.q", uuid);
    snprintf(g_missing, sizeof(g_missing), "qst.%s.missing", uuid);
    snprintf(g_conn, sizeof(g_conn), "qst-%s", uuid);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
