/* Unit tests: services/gateway/upstream.c — the breaker state machine with an injected
 * clock, round-robin selection, and active health checks against a local server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "httpc.h"
#include "httpd.h"
#include "upstream.h"

static const gw_breaker_cfg CFG = { 3, 1000, 2 };

static void test_breaker_opens_after_consecutive_failures(void **state)
{
    gw_breaker b = { 0 };
    (void)state;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(gw_breaker_admit(&b, &CFG, 0), GW_ADMIT_YES);
        gw_breaker_record(&b, &CFG, GW_ADMIT_YES, false, 0);
    }
    /* a success resets the count: failures must be consecutive */
    gw_breaker_record(&b, &CFG, GW_ADMIT_YES, true, 0);
    assert_int_equal(b.failures, 0);
    for (int i = 0; i < 3; i++)
        gw_breaker_record(&b, &CFG, GW_ADMIT_YES, false, 100);
    assert_int_equal(b.state, GW_BREAKER_OPEN);
    assert_int_equal(gw_breaker_admit(&b, &CFG, 100), GW_ADMIT_NO);
    assert_int_equal(gw_breaker_admit(&b, &CFG, 1099), GW_ADMIT_NO);
    /* late results of requests admitted before it opened move nothing */
    gw_breaker_record(&b, &CFG, GW_ADMIT_YES, true, 500);
    assert_int_equal(b.state, GW_BREAKER_OPEN);
}

static void test_breaker_half_open_probes(void **state)
{
    gw_breaker b = { 0 };
    (void)state;
    for (int i = 0; i < 3; i++)
        gw_breaker_record(&b, &CFG, GW_ADMIT_YES, false, 0);
    /* after open_ms: half-open, at most `probes` requests in flight */
    assert_int_equal(gw_breaker_admit(&b, &CFG, 1000), GW_ADMIT_PROBE);
    assert_int_equal(b.state, GW_BREAKER_HALF_OPEN);
    assert_int_equal(gw_breaker_admit(&b, &CFG, 1000), GW_ADMIT_PROBE);
    assert_int_equal(gw_breaker_admit(&b, &CFG, 1000), GW_ADMIT_NO);
    /* one success frees a slot but the successes count toward the bound */
    gw_breaker_record(&b, &CFG, GW_ADMIT_PROBE, true, 1010);
    assert_int_equal(b.state, GW_BREAKER_HALF_OPEN);
    assert_int_equal(gw_breaker_admit(&b, &CFG, 1010), GW_ADMIT_NO);
    /* a non-probe result in half-open changes nothing */
    gw_breaker_record(&b, &CFG, GW_ADMIT_YES, false, 1010);
    assert_int_equal(b.state, GW_BREAKER_HALF_OPEN);
    gw_breaker_record(&b, &CFG, GW_ADMIT_PROBE, true, 1020);
    assert_int_equal(b.state, GW_BREAKER_CLOSED);
    assert_int_equal(gw_breaker_admit(&b, &CFG, 1020), GW_ADMIT_YES);
}

static void test_breaker_probe_failure_reopens(void **state)
{
    gw_breaker b = { 0 };
    (void)state;
    for (int i = 0; i < 3; i++)
        gw_breaker_record(&b, &CFG, GW_ADMIT_YES, false, 0);
    assert_int_equal(gw_breaker_admit(&b, &CFG, 1500), GW_ADMIT_PROBE);
    assert_int_equal(gw_breaker_admit(&b, &CFG, 1500), GW_ADMIT_PROBE);
    gw_breaker_record(&b, &CFG, GW_ADMIT_PROBE, false, 1600);
    assert_int_equal(b.state, GW_BREAKER_OPEN);
    assert_int_equal(b.opened_ms, 1600); /* the open period starts again */
    /* the sibling probe finishing afterwards does not close it */
    gw_breaker_record(&b, &CFG, GW_ADMIT_PROBE, true, 1610);
    assert_int_equal(b.state, GW_BREAKER_OPEN);
    assert_int_equal(gw_breaker_admit(&b, &CFG, 2599), GW_ADMIT_NO);
    assert_int_equal(gw_breaker_admit(&b, &CFG, 2600), GW_ADMIT_PROBE);
}

static void test_breaker_defaults_and_names(void **state)
{
    gw_breaker b = { 0 };
    (void)state;
    for (int i = 0; i < 4; i++)
        gw_breaker_record(&b, NULL, GW_ADMIT_YES, false, 0);
    assert_int_equal(b.state, GW_BREAKER_CLOSED); /* default threshold: 5 */
    gw_breaker_record(&b, NULL, GW_ADMIT_YES, false, 0);
    assert_int_equal(b.state, GW_BREAKER_OPEN);
    assert_string_equal(gw_breaker_state_name(GW_BREAKER_HALF_OPEN), "half_open");
    assert_string_equal(gw_breaker_state_name(GW_BREAKER_OPEN), "open");
}

static void test_pool_parse(void **state)
{
    gw_pool p;
    char err[256] = "";
    char many[2048] = "";
    (void)state;
    assert_int_equal(gw_pool_init(&p, "svc", " http://a:1/ ,http://b:2,, ", &CFG, 0, NULL, err, sizeof(err)), ML_OK);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.inst[0].base_url, "http://a:1");
    assert_string_equal(p.inst[1].base_url, "http://b:2");
    assert_true(p.inst[0].healthy);
    gw_pool_free(&p);
    assert_int_equal(gw_pool_init(&p, "svc", "", &CFG, 0, NULL, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "no upstream URL"));
    gw_pool_free(&p);
    assert_int_equal(gw_pool_init(&p, "svc", "ftp://x", &CFG, 0, NULL, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "not an http(s) base URL"));
    gw_pool_free(&p);
    for (int i = 0; i <= GW_MAX_INSTANCES; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "http://h%d:1,", i);
    assert_int_equal(gw_pool_init(&p, "svc", many, &CFG, 0, NULL, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "more than"));
    gw_pool_free(&p);
}

static void test_pool_round_robin_and_skips(void **state)
{
    gw_pool p;
    char err[256];
    gw_admit how;
    gw_instance *a, *b;
    (void)state;
    assert_int_equal(gw_pool_init(&p, "svc", "http://a:1,http://b:2,http://c:3", &CFG, 2000, NULL, err, sizeof(err)), ML_OK);
    a = gw_pool_pick(&p, GW_CAP_READ, NULL, 0, &how);
    b = gw_pool_pick(&p, GW_CAP_READ, NULL, 0, &how);
    assert_ptr_equal(a, &p.inst[0]);
    assert_ptr_equal(b, &p.inst[1]);
    assert_ptr_equal(gw_pool_pick(&p, GW_CAP_READ, NULL, 0, &how), &p.inst[2]);
    assert_int_equal(how, GW_ADMIT_YES);
    assert_ptr_equal(gw_pool_pick(&p, GW_CAP_READ, NULL, 0, &how), &p.inst[0]);
    /* an unhealthy instance is skipped; so is the excluded one (a retry elsewhere) */
    gw_pool_set_health(&p.inst[1], 0, "connection refused");
    assert_ptr_equal(gw_pool_pick(&p, GW_CAP_READ, NULL, 0, &how), &p.inst[2]);
    assert_ptr_equal(gw_pool_pick(&p, GW_CAP_READ, &p.inst[0], 0, &how), &p.inst[2]);
    /* an open breaker is skipped */
    for (int i = 0; i < 3; i++)
        gw_pool_report(&p.inst[2], GW_ADMIT_YES, false, 10);
    for (int i = 0; i < 4; i++)
        assert_ptr_equal(gw_pool_pick(&p, GW_CAP_READ, NULL, 20, &how), &p.inst[0]);
    assert_null(gw_pool_pick(&p, GW_CAP_READ, &p.inst[0], 20, &how));
    assert_int_equal(how, GW_ADMIT_NO);
    gw_pool_set_health(&p.inst[0], 0, "down");
    assert_null(gw_pool_pick(&p, GW_CAP_READ, NULL, 20, &how));
    /* retry-after: the open breaker's remaining time (990 ms -> 1 s) beats the health interval */
    assert_int_equal(gw_pool_retry_after_s(&p, 20), 1);
    assert_int_equal(gw_pool_available(&p, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "http://b:2: connection refused"));
    assert_non_null(strstr(err, "http://c:3: circuit open"));
    /* after open_ms the open instance is probed */
    assert_ptr_equal(gw_pool_pick(&p, GW_CAP_READ, NULL, 1010, &how), &p.inst[2]);
    assert_int_equal(how, GW_ADMIT_PROBE);
    gw_pool_free(&p);
}

static void test_pool_retry_after_unhealthy(void **state)
{
    gw_pool p;
    char err[256];
    (void)state;
    assert_int_equal(gw_pool_init(&p, "svc", "http://a:1", &CFG, 2500, NULL, err, sizeof(err)), ML_OK);
    gw_pool_set_health(&p.inst[0], 0, "down");
    assert_int_equal(gw_pool_retry_after_s(&p, 0), 3); /* the next health check, rounded up */
    gw_pool_free(&p);
}

static void test_caps_parse(void **state)
{
    const char *some = "{\"status\":\"degraded\",\"capabilities\":{\"invoke\":true,"
                       "\"async\":false,\"read\":true,\"write\":false,\"future\":true}}";
    const char *none = "{\"status\":\"unavailable\",\"capabilities\":{\"invoke\":false}}";
    const char *old = "{\"status\":\"ok\",\"checks\":{}}";
    const char *loose = "{\"capabilities\":{\"invoke\":\"true\",\"read\":1,\"write\":null}}";
    (void)state;
    assert_int_equal(gw_caps_parse(200, some, strlen(some)), GW_CAP_INVOKE | GW_CAP_READ);
    /* 503 with capabilities: what it lists (none, by the protocol) */
    assert_int_equal(gw_caps_parse(503, none, strlen(none)), 0);
    assert_int_equal(gw_caps_parse(503, some, strlen(some)), GW_CAP_INVOKE | GW_CAP_READ);
    /* a service that predates capabilities: all on 200, none otherwise */
    assert_int_equal(gw_caps_parse(200, old, strlen(old)), GW_CAP_ALL);
    assert_int_equal(gw_caps_parse(200, NULL, 0), GW_CAP_ALL);
    assert_int_equal(gw_caps_parse(200, "not json", 8), GW_CAP_ALL);
    assert_int_equal(gw_caps_parse(503, old, strlen(old)), 0);
    /* any other status grants nothing, whatever the body says */
    assert_int_equal(gw_caps_parse(500, some, strlen(some)), 0);
    assert_int_equal(gw_caps_parse(404, NULL, 0), 0);
    /* only true counts: "true", 1 and null are not */
    assert_int_equal(gw_caps_parse(200, loose, strlen(loose)), 0);
    assert_string_equal(gw_cap_name(GW_CAP_ASYNC), "async");
    assert_string_equal(gw_cap_name(GW_CAP_BUILD), "build");
    assert_string_equal(gw_cap_name(3), "");
}

static void test_pool_pick_by_capability(void **state)
{
    gw_pool p;
    char err[256];
    gw_admit how;
    (void)state;
    assert_int_equal(gw_pool_init(&p, "svc", "http://a:1,http://b:2", &CFG, 2000, NULL, err, sizeof(err)), ML_OK);
    /* a lost its broker (no async), b its sandbox (no invoke) */
    gw_pool_set_health(&p.inst[0], GW_CAP_INVOKE | GW_CAP_READ, "");
    gw_pool_set_health(&p.inst[1], GW_CAP_ASYNC | GW_CAP_READ, "");
    for (int i = 0; i < 3; i++) {
        assert_ptr_equal(gw_pool_pick(&p, GW_CAP_INVOKE, NULL, 0, &how), &p.inst[0]);
        assert_ptr_equal(gw_pool_pick(&p, GW_CAP_ASYNC, NULL, 0, &how), &p.inst[1]);
    }
    assert_null(gw_pool_pick(&p, GW_CAP_WRITE, NULL, 0, &how));
    assert_null(gw_pool_pick(&p, GW_CAP_ASYNC, &p.inst[1], 0, &how)); /* a retry needs the same */
    assert_true(p.inst[0].healthy);
    /* no capability at all: out of rotation, and said so for /health */
    gw_pool_set_health(&p.inst[1], 0, "GET /health answered 503 with no capability");
    assert_false(p.inst[1].healthy);
    assert_null(gw_pool_pick(&p, GW_CAP_ASYNC, NULL, 0, &how));
    assert_int_equal(gw_pool_available(&p, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "no capability"));
    gw_pool_free(&p);
}

static void test_health_pass_half_opens_breaker(void **state)
{
    gw_pool p;
    char err[256];
    gw_admit how;
    (void)state;
    assert_int_equal(gw_pool_init(&p, "svc", "http://a:1", &CFG, 2000, NULL, err, sizeof(err)), ML_OK);
    for (int i = 0; i < 3; i++)
        gw_pool_report(&p.inst[0], GW_ADMIT_YES, false, 0);
    assert_int_equal(p.inst[0].breaker.state, GW_BREAKER_OPEN);
    assert_null(gw_pool_pick(&p, GW_CAP_INVOKE, NULL, 10, &how));
    /* a failing check leaves it open */
    gw_pool_set_health(&p.inst[0], 0, "down");
    assert_int_equal(p.inst[0].breaker.state, GW_BREAKER_OPEN);
    /* a passing one half-opens it at once, long before open_ms */
    gw_pool_set_health(&p.inst[0], GW_CAP_ALL, "");
    assert_int_equal(p.inst[0].breaker.state, GW_BREAKER_HALF_OPEN);
    assert_ptr_equal(gw_pool_pick(&p, GW_CAP_INVOKE, NULL, 20, &how), &p.inst[0]);
    assert_int_equal(how, GW_ADMIT_PROBE);
    gw_pool_report(&p.inst[0], how, true, 30);
    assert_ptr_equal(gw_pool_pick(&p, GW_CAP_INVOKE, NULL, 30, &how), &p.inst[0]);
    gw_pool_report(&p.inst[0], how, true, 40);
    assert_int_equal(p.inst[0].breaker.state, GW_BREAKER_CLOSED);
    /* a passing check changes nothing on a closed or half-open breaker */
    gw_pool_set_health(&p.inst[0], GW_CAP_ALL, "");
    assert_int_equal(p.inst[0].breaker.state, GW_BREAKER_CLOSED);
    gw_pool_free(&p);
}

/* What the fake service's GET /health answers. */
typedef struct fake_health {
    int status;
    const char *body;
} fake_health;

static httpd_result h_health(httpd_req *req, httpd_resp *resp, void *ud)
{
    const fake_health *f = ud;
    (void)req;
    httpd_resp_text(resp, f->status, "application/json", f->body ? f->body : "");
    return HTTPD_DONE;
}

/* inst[i].healthy read under the pool's lock, as the health checker thread writes it. */
static bool healthy_now(gw_pool *p, size_t i)
{
    bool v;

    pthread_mutex_lock(&p->lock);
    v = p->inst[i].healthy;
    pthread_mutex_unlock(&p->lock);
    return v;
}

static void test_health_round(void **state)
{
    static fake_health fh = { 200, NULL };
    const httpd_route routes[] = { { "GET", "/health", h_health, &fh, 0, false } };
    httpd_config hc = { .bind_addr = "127.0.0.1" };
    char err[256], urls[128];
    httpd *h = httpd_start(&hc, routes, 1, err, sizeof(err));
    gw_pool p, *pools[] = { &p };
    (void)state;
    assert_non_null(h);
    /* one live instance, one where nothing listens */
    snprintf(urls, sizeof(urls), "http://127.0.0.1:%u,http://127.0.0.1:1", httpd_port(h));
    assert_int_equal(gw_pool_init(&p, "svc", urls, &CFG, 100, NULL, err, sizeof(err)), ML_OK);
    gw_health_round(pools, 1);
    assert_true(p.inst[0].healthy);
    assert_false(p.inst[1].healthy);
    assert_true(strlen(p.inst[1].health_error) > 0);
    assert_int_equal(p.inst[0].caps, GW_CAP_ALL); /* no capabilities listed: an older service */
    /* a 503 from the service's own /health takes it out of rotation too */
    fh.status = 503;
    gw_health_round(pools, 1);
    assert_false(p.inst[0].healthy);
    assert_non_null(strstr(p.inst[0].health_error, "503"));
    /* degraded: 200 with some capabilities; only those are routed to it */
    fh = (fake_health){ 200, "{\"status\":\"degraded\",\"capabilities\":{\"invoke\":true,\"async\":false}}" };
    gw_health_round(pools, 1);
    assert_true(p.inst[0].healthy);
    assert_int_equal(p.inst[0].caps, GW_CAP_INVOKE);
    fh = (fake_health){ 200, NULL };
    /* the background checker brings it back */
    gw_health_checker *hc2 = gw_health_start(pools, 1);
    assert_non_null(hc2);
    for (int i = 0; i < 50 && !healthy_now(&p, 0); i++)
        ml_sleep_ms(20); /* the checker thread writes healthy under p.lock */
    gw_health_stop(hc2);
    assert_true(p.inst[0].healthy);
    gw_pool_free(&p);
    httpd_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_breaker_opens_after_consecutive_failures),
        cmocka_unit_test(test_breaker_half_open_probes),
        cmocka_unit_test(test_breaker_probe_failure_reopens),
        cmocka_unit_test(test_breaker_defaults_and_names),
        cmocka_unit_test(test_pool_parse),
        cmocka_unit_test(test_pool_round_robin_and_skips),
        cmocka_unit_test(test_pool_retry_after_unhealthy),
        cmocka_unit_test(test_caps_parse),
        cmocka_unit_test(test_pool_pick_by_capability),
        cmocka_unit_test(test_health_pass_half_opens_breaker),
        cmocka_unit_test(test_health_round),
    };
    int rc;

    httpc_global_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    httpc_global_cleanup();
    return rc;
}
