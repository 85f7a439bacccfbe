/* Unit tests: services/gateway/fncache.c (parsing the executor's function document, TTLs
 * with an injected clock, bounds). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "fncache.h"

static int parse(const char *json, gw_fn_info *out)
{
    return gw_fn_info_parse(json, strlen(json), out);
}

static void test_parse(void **state)
{
    gw_fn_info f;
    (void)state;
    assert_int_equal(parse("{\"function_id\":\"id-1\",\"name\":\"hello\",\"timeout_s\":120,"
                           "\"rate_limit\":{\"rps\":2.5,\"burst\":7}}", &f), ML_OK);
    assert_int_equal(f.status, 200);
    assert_string_equal(f.id, "id-1");
    assert_string_equal(f.name, "hello");
    assert_int_equal(f.timeout_s, 120);
    assert_true(f.has_rate_limit);
    assert_true(f.rps > 2.49 && f.rps < 2.51);
    assert_int_equal(f.burst, 7);
    /* fields nested under "config", "id" instead of function_id, no burst: ceil(rps) */
    assert_int_equal(parse("{\"id\":\"id-2\",\"config\":{\"timeout_s\":5,\"rate_limit\":{\"rps\":2.5}}}", &f), ML_OK);
    assert_string_equal(f.id, "id-2");
    assert_int_equal(f.timeout_s, 5);
    assert_int_equal(f.burst, 3);
    /* no rate limit (null or invalid): the gateway's default applies */
    assert_int_equal(parse("{\"name\":\"x\",\"rate_limit\":null}", &f), ML_OK);
    assert_false(f.has_rate_limit);
    assert_int_equal(f.timeout_s, 0);
    assert_int_equal(parse("{\"rate_limit\":{\"rps\":0}}", &f), ML_OK);
    assert_false(f.has_rate_limit);
    assert_int_equal(parse("{\"timeout_s\":-1}", &f), ML_OK);
    assert_int_equal(f.timeout_s, 0);
    assert_int_equal(parse("[1,2]", &f), ML_ERR);
    assert_int_equal(parse("not json", &f), ML_ERR);
}

/* url_config (docs/http.md): auth, qualifier, CORS lists comma-joined, batching. */
static void test_parse_url_config(void **state)
{
    gw_fn_info f;
    (void)state;
    assert_int_equal(parse("{\"name\":\"f\",\"url_config\":{\"auth\":\"NONE\",\"qualifier\":\"live\","
                           "\"cors\":{\"allow_origins\":[\"https://a.example\",\"https://b.example\"],"
                           "\"allow_methods\":[\"GET\",\"POST\"],\"allow_headers\":[\"x-a\"],"
                           "\"expose_headers\":[],\"max_age\":600,\"allow_credentials\":true},"
                           "\"batching\":{\"max_wait_ms\":20,\"max_batch_size\":50,"
                           "\"key\":[\"header:x-tenant-id\",\"method\"],\"dynamic\":true,"
                           "\"rate_mid\":100,\"rate_width\":25},\"url\":\"/fn/f\"}}", &f), ML_OK);
    assert_true(f.url.enabled);
    assert_int_equal(f.url.auth, GW_FNURL_AUTH_NONE);
    assert_string_equal(f.url.qualifier, "live");
    assert_true(f.url.cors.enabled);
    assert_string_equal(f.url.cors.allow_origins, "https://a.example,https://b.example");
    assert_string_equal(f.url.cors.allow_methods, "GET,POST");
    assert_string_equal(f.url.cors.allow_headers, "x-a");
    assert_string_equal(f.url.cors.expose_headers, "");
    assert_int_equal(f.url.cors.max_age, 600);
    assert_true(f.url.cors.allow_credentials);
    assert_true(f.url.batching.enabled);
    assert_int_equal(f.url.batching.max_wait_ms, 20);
    assert_int_equal(f.url.batching.max_batch_size, 50);
    assert_int_equal(f.url.batching.nkeys, 2);
    assert_string_equal(f.url.batching.keys[0], "header:x-tenant-id");
    assert_string_equal(f.url.batching.keys[1], "method");
    assert_true(f.url.batching.dynamic);
    assert_true(f.url.batching.rate_mid > 99.9 && f.url.batching.rate_width > 24.9);
    /* JWT, no qualifier, no cors, no batching */
    assert_int_equal(parse("{\"url_config\":{\"auth\":\"JWT\",\"qualifier\":null,\"cors\":null,"
                           "\"batching\":null}}", &f), ML_OK);
    assert_true(f.url.enabled);
    assert_int_equal(f.url.auth, GW_FNURL_AUTH_JWT);
    assert_string_equal(f.url.qualifier, "");
    assert_false(f.url.cors.enabled);
    assert_false(f.url.batching.enabled);
    /* an unknown auth needs a token; no url_config: no URL */
    assert_int_equal(parse("{\"url_config\":{\"auth\":\"none\"}}", &f), ML_OK);
    assert_int_equal(f.url.auth, GW_FNURL_AUTH_JWT);
    assert_int_equal(parse("{\"url_config\":null}", &f), ML_OK);
    assert_false(f.url.enabled);
    assert_int_equal(parse("{\"name\":\"f\"}", &f), ML_OK);
    assert_false(f.url.enabled);
    /* a non-string origin drops the whole cors object; too many keys turn batching off */
    assert_int_equal(parse("{\"url_config\":{\"auth\":\"NONE\",\"cors\":{\"allow_origins\":[1]},"
                           "\"batching\":{\"max_wait_ms\":5,\"max_batch_size\":2,"
                           "\"key\":[\"method\",\"path\",\"query:a\",\"query:b\",\"query:c\"]}}}", &f), ML_OK);
    assert_true(f.url.enabled);
    assert_false(f.url.cors.enabled);
    assert_false(f.url.batching.enabled);
}

static void test_ttl(void **state)
{
    gw_fncache c;
    gw_fn_info in = { .status = 200, .timeout_s = 9 }, out;
    (void)state;
    gw_fncache_init(&c, 5000, 0);
    assert_int_equal(gw_fncache_get(&c, "fn", 0, &out), GW_FNCACHE_MISS);
    gw_fncache_put(&c, "fn", &in, 1000);
    assert_int_equal(gw_fncache_get(&c, "fn", 5999, &out), GW_FNCACHE_FRESH);
    assert_int_equal(out.timeout_s, 9);
    assert_int_equal(gw_fncache_get(&c, "fn", 6000, &out), GW_FNCACHE_STALE);
    assert_int_equal(gw_fncache_get(&c, "fn", 1000 + GW_FNCACHE_MAX_STALE_MS + 1, &out), GW_FNCACHE_MISS);
    /* "no such function" is trusted for a second only */
    in.status = 404;
    gw_fncache_put(&c, "ghost", &in, 1000);
    assert_int_equal(gw_fncache_get(&c, "ghost", 1999, &out), GW_FNCACHE_FRESH);
    assert_int_equal(out.status, 404);
    assert_int_equal(gw_fncache_get(&c, "ghost", 2000, &out), GW_FNCACHE_STALE);
    /* a put refreshes */
    in.status = 200;
    gw_fncache_put(&c, "ghost", &in, 3000);
    assert_int_equal(gw_fncache_get(&c, "ghost", 3001, &out), GW_FNCACHE_FRESH);
    assert_int_equal(out.status, 200);
    assert_int_equal(c.n, 2);
    gw_fncache_free(&c);
}

static void test_bounded(void **state)
{
    gw_fncache c;
    gw_fn_info in = { .status = 200 }, out;
    char key[16];
    (void)state;
    gw_fncache_init(&c, 1000, 3);
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof(key), "f%d", i);
        gw_fncache_put(&c, key, &in, 0);
    }
    /* full of entries still usable stale: everything goes, the newcomer stays */
    gw_fncache_put(&c, "new", &in, 10);
    assert_int_equal(c.n, 1);
    assert_int_equal(gw_fncache_get(&c, "new", 10, &out), GW_FNCACHE_FRESH);
    assert_int_equal(gw_fncache_get(&c, "f0", 10, &out), GW_FNCACHE_MISS);
    gw_fncache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_url_config),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
