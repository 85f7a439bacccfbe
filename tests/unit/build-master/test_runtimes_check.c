/* Unit tests: services/build-master/runtimes_check.c — the executor's GET /runtimes asked
 * once per TTL, a runtime it lacks refused with the available names, and an executor that
 * cannot be asked never blocks a create. Threads share one cache (run under tsan too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "httpc.h"
#include "httpd.h"
#include "ml.h"
#include "runtimes_check.h"

static atomic_int hits;

static httpd_result h_runtimes(httpd_req *req, httpd_resp *resp, void *ud)
{
    (void)req, (void)ud;
    atomic_fetch_add(&hits, 1);
    httpd_resp_json(resp, 200, cJSON_Parse(
        "{\"runtimes\":[{\"name\":\"python3.11\",\"family\":\"python\",\"interpreter\":\"/usr/bin/python3.11\","
        "\"version\":\"Python 3.11.2\",\"aliases\":[\"python3\"]},{\"name\":\"provided.al2023\","
        "\"family\":\"provided\",\"interpreter\":null,\"version\":\"provided\",\"aliases\":[\"provided\","
        "\"provided.al2\"]}]}"));
    return HTTPD_DONE;
}

static httpd *start_executor(char *url, size_t len)
{
    static const httpd_route routes[] = { { "GET", "/runtimes", h_runtimes, NULL, 0, false } };
    httpd_config hc = { .service = "t", .bind_addr = "127.0.0.1" };
    char err[256];
    httpd *h = httpd_start(&hc, routes, ML_ARRAY_LEN(routes), err, sizeof(err));

    assert_non_null(h);
    assert_int_equal(ml_snprintf(url, len, "http://127.0.0.1:%u", (unsigned)httpd_port(h)), ML_OK);
    return h;
}

/* bmr_check's verdict; the refusal's body in body (may be NULL). */
static int check(bmr_cache *c, const char *url, const char *runtime, int *status, char *body, size_t len)
{
    httpd_resp resp = { 0 };
    int rc = bmr_check(c, url, runtime, &resp);

    *status = resp.status;
    if (body)
        ml_strlcpy(body, resp.body.len ? ml_buf_cstr(&resp.body) : "", len);
    ml_buf_free(&resp.body);
    return rc;
}

static void test_asks_once_and_refuses(void **state)
{
    char url[64], body[512];
    bmr_cache c;
    int st;
    httpd *h = start_executor(url, sizeof(url));

    (void)state;
    atomic_store(&hits, 0);
    bmr_init(&c);
    assert_int_equal(check(&c, url, "python3.11", &st, NULL, 0), ML_OK);
    assert_int_equal(check(&c, url, "python3", &st, NULL, 0), ML_OK);
    assert_int_equal(check(&c, url, "provided.al2", &st, NULL, 0), ML_OK);
    assert_int_equal(check(&c, url, "python3.9", &st, body, sizeof(body)), ML_ERR);
    assert_int_equal(st, 400);
    assert_non_null(strstr(body, "\"invalid_runtime\""));
    assert_non_null(strstr(body, "python3.9"));
    assert_non_null(strstr(body, "python3, python3.11, provided, provided.al2, provided.al2023"));
    assert_int_equal(check(&c, url, "nodejs", &st, NULL, 0), ML_ERR);
    assert_int_equal(atomic_load(&hits), 1);   /* one ask per BMR_TTL_MS */
    bmr_free(&c);
    httpd_stop(h);
}

static void test_unreachable_accepts(void **state)
{
    bmr_cache c;
    int st;
    char url[64];
    httpd *h = start_executor(url, sizeof(url));

    (void)state;
    httpd_stop(h);   /* its port now refuses connections */
    bmr_init(&c);
    assert_int_equal(check(&c, url, "python3.9", &st, NULL, 0), ML_OK);
    assert_int_equal(check(&c, url, "nodejs22.x", &st, NULL, 0), ML_OK);
    assert_int_equal(check(&c, NULL, "python3.9", &st, NULL, 0), ML_OK);
    bmr_free(&c);
}

typedef struct {
    bmr_cache *c;
    const char *url;
    int refused;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    int st;

    for (int i = 0; i < 50; i++)
        a->refused += check(a->c, a->url, i % 2 ? "python3.11" : "nodejs20.x", &st, NULL, 0) != ML_OK;
    return NULL;
}

static void test_threads_share_the_cache(void **state)
{
    char url[64];
    bmr_cache c;
    pthread_t t[4];
    worker_arg a[4];
    httpd *h = start_executor(url, sizeof(url));

    (void)state;
    atomic_store(&hits, 0);
    bmr_init(&c);
    for (int i = 0; i < 4; i++) {
        a[i] = (worker_arg){ &c, url, 0 };
        assert_int_equal(pthread_create(&t[i], NULL, worker, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].refused, 25);
    }
    assert_true(atomic_load(&hits) >= 1 && atomic_load(&hits) <= 4);   /* racing first asks at most */
    bmr_free(&c);
    httpd_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_asks_once_and_refuses),
        cmocka_unit_test(test_unreachable_accepts),
        cmocka_unit_test(test_threads_share_the_cache),
    };
    httpc_global_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
