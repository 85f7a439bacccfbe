/* Unit tests: services/gateway/ratelimit.c driven by a proxy loop (tasks, gw_loop_limit):
 * memory-only limits, the fallback when Redis refuses connections or never answers (a
 * listener that accepts nothing), its flag, metric and bounded wait. Real Redis (shared
 * budgets, NOSCRIPT, accuracy, recovery) is covered by tests/integration/gateway_e2e.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpc.h"
#include "proxy.h"
#include "ratelimit.h"

#define N 8

/* A batch of decisions asked for from a loop task. */
typedef struct batch {
    gw_task task;
    const char *key;
    gcra_limit lim;
    int n;
    pthread_mutex_t lock;
    int done;
    bool cancelled;
    gcra_result results[N];
    int64_t done_ms[N];
} batch;

static void on_result(void *ud, const gcra_result *r)
{
    batch *b = ud;

    pthread_mutex_lock(&b->lock);
    b->done_ms[b->done] = ml_now_ms();
    b->results[b->done++] = *r;
    pthread_mutex_unlock(&b->lock);
}

static void run_batch(gw_loop *l, gw_task *t, bool cancelled)
{
    batch *b = (batch *)t;

    b->cancelled = cancelled;
    for (int i = 0; i < b->n && !cancelled; i++)
        gw_loop_limit(l, b->key, b->lim, on_result, b);
}

/* Runs n decisions for key on a fresh proxy with limiter l; fills b. */
static void decide(gw_limiter *l, const char *key, gcra_limit lim, int n, batch *b)
{
    gw_proxy_config pc = { 1, 0, l, NULL };
    char err[256];
    gw_proxy *p = gw_proxy_start(&pc, err, sizeof(err));

    assert_non_null(p);
    memset(b, 0, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    b->task.run = run_batch;
    b->key = key;
    b->lim = lim;
    b->n = n;
    gw_proxy_run(p, &b->task);
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&b->lock);
        int done = b->done;
        pthread_mutex_unlock(&b->lock);
        if (done == n)
            break;
        ml_sleep_ms(10);
    }
    gw_proxy_stop(p);
    pthread_mutex_destroy(&b->lock);
    assert_int_equal(b->done, n);
}

static int allowed(const batch *b)
{
    int k = 0;

    for (int i = 0; i < b->done; i++)
        k += b->results[i].allowed;
    return k;
}

static void test_memory_only(void **state)
{
    gw_limiter l;
    batch b;
    char err[128];
    (void)state;
    assert_int_equal(gw_limiter_init(&l, NULL, 100, NULL, err, sizeof(err)), ML_OK);
    assert_true(gw_limiter_in_fallback(&l)); /* no Redis configured */
    decide(&l, "k1", gcra_limit_rps(1, 3), 5, &b);
    assert_int_equal(allowed(&b), 3);
    assert_int_equal(b.results[0].remaining, 2);
    assert_false(b.results[4].allowed);
    assert_true(b.results[4].retry_after_us > 0);
    gw_limiter_free(&l);
}

static void test_redis_refused_falls_back(void **state)
{
    gw_limiter l;
    metrics_registry *reg = metrics_new();
    batch b;
    char err[128];
    int64_t t0;
    (void)state;
    assert_int_equal(gw_limiter_init(&l, "redis://127.0.0.1:1/0", 100, reg, err, sizeof(err)), ML_OK);
    assert_false(gw_limiter_in_fallback(&l));
    t0 = ml_now_ms();
    decide(&l, "k2", gcra_limit_rps(1, 2), 4, &b);
    /* still limited, in memory, and nobody waited for the refused connection */
    assert_int_equal(allowed(&b), 2);
    assert_true(b.done_ms[3] - t0 < 1000);
    assert_true(gw_limiter_in_fallback(&l));
    ml_buf text = { 0 };
    metrics_render(reg, &text);
    assert_non_null(strstr(text.data, "minilambda_gateway_ratelimit_fallback 1"));
    assert_non_null(strstr(text.data, "minilambda_gateway_ratelimit_redis_errors_total 4"));
    ml_buf_free(&text);
    gw_limiter_free(&l);
    metrics_free(reg);
}

static void test_redis_silent_times_out(void **state)
{
    gw_limiter l;
    batch b;
    char err[128], url[64];
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int64_t t0;
    (void)state;
    /* listens (the kernel completes handshakes) but never reads or answers: a hung server */
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%u/0", ntohs(sa.sin_port));
    assert_int_equal(gw_limiter_init(&l, url, 150, NULL, err, sizeof(err)), ML_OK);
    t0 = ml_now_ms();
    decide(&l, "k3", gcra_limit_rps(1, 1), 3, &b);
    /* each decision waited about the timeout, not more, then went to memory */
    assert_int_equal(allowed(&b), 1);
    assert_true(b.done_ms[0] - t0 >= 140);
    assert_true(b.done_ms[2] - t0 < 1500);
    gw_limiter_free(&l);
    close(fd);
}

static void test_bad_url(void **state)
{
    gw_limiter l;
    char err[128] = "";
    (void)state;
    assert_int_equal(gw_limiter_init(&l, "redis://:99999999/x", 100, NULL, err, sizeof(err)), ML_ERR);
    assert_true(strlen(err) > 0);
}

static void test_cancelled_tasks_on_stop(void **state)
{
    gw_proxy_config pc = { 1, 0, NULL, NULL };
    char err[256];
    gw_proxy *p = gw_proxy_start(&pc, err, sizeof(err));
    batch b;
    (void)state;
    assert_non_null(p);
    memset(&b, 0, sizeof(b));
    pthread_mutex_init(&b.lock, NULL);
    b.task.run = run_batch;
    b.n = 1;
    b.key = "x";
    b.lim = gcra_limit_rps(1, 1);
    /* handed over as the proxy stops: the task still runs, told it is cancelled */
    gw_proxy_run(p, &b.task);
    gw_proxy_stop(p);
    assert_true(b.cancelled || b.done == 1);
    pthread_mutex_destroy(&b.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_only),
        cmocka_unit_test(test_redis_refused_falls_back),
        cmocka_unit_test(test_redis_silent_times_out),
        cmocka_unit_test(test_bad_url),
        cmocka_unit_test(test_cancelled_tasks_on_stop),
    };
    int rc;

    if (httpc_global_init() != ML_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    httpc_global_cleanup();
    return rc;
}
