/* test_fnurl_rules.c — the rules of PUT /functions/{fn}/url (fnurl_rules.c): the normalised
 * document with its defaults, and a 400 naming the field for every kind of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fnurl.h"

/* Checks text; returns the normalised document printed (caller frees) or NULL, with the
 * field named in field. */
static char *check(const char *text, char field[FNURL_FIELD_MAX])
{
    cJSON *body = cJSON_Parse(text), *out;
    char why[256];
    char *s = NULL;

    assert_non_null(body);
    out = fnurl_rules_check(body, field, why, sizeof(why));
    if (out) {
        s = cJSON_PrintUnformatted(out);
        assert_string_equal(field, "");
    } else {
        assert_true(why[0] != '\0');
    }
    cJSON_Delete(out);
    cJSON_Delete(body);
    return s;
}

static void expect_field(const char *text, const char *field_want)
{
    char field[FNURL_FIELD_MAX];
    char *s = check(text, field);

    if (s)
        fail_msg("accepted %s as %s", text, s);
    assert_string_equal(field, field_want);
}

static void expect_doc(const char *text, const char *want)
{
    char field[FNURL_FIELD_MAX];
    char *s = check(text, field);

    if (!s)
        fail_msg("refused %s (field %s)", text, field);
    assert_string_equal(s, want);
    cJSON_free(s);
}

static void test_defaults(void **state)
{
    (void)state;
    expect_doc("{\"auth\":\"NONE\"}", "{\"auth\":\"NONE\",\"qualifier\":null,\"cors\":null,\"batching\":null}");
    expect_doc("{\"auth\":\"JWT\",\"qualifier\":\"$LATEST\",\"cors\":null,\"batching\":null}",
               "{\"auth\":\"JWT\",\"qualifier\":null,\"cors\":null,\"batching\":null}");
    expect_doc("{\"auth\":\"JWT\",\"qualifier\":\"live\",\"cors\":{},\"batching\":{\"max_wait_ms\":5}}",
               "{\"auth\":\"JWT\",\"qualifier\":\"live\",\"cors\":{\"allow_origins\":[],\"allow_methods\":[],"
               "\"allow_headers\":[],\"expose_headers\":[],\"max_age\":0,\"allow_credentials\":false},"
               "\"batching\":{\"max_wait_ms\":5,\"max_batch_size\":16,\"key\":[],\"dynamic\":false,"
               "\"rate_mid\":100,\"rate_width\":25}}");
    expect_doc("{\"auth\":\"NONE\",\"qualifier\":\"3\",\"cors\":{\"allow_origins\":[\"https://a.example\","
               "\"http://localhost:3000\"],\"allow_methods\":[\"GET\",\"POST\"],\"allow_headers\":[\"X-Tenant-Id\"],"
               "\"expose_headers\":[\"ETag\"],\"max_age\":600,\"allow_credentials\":true},"
               "\"batching\":{\"max_wait_ms\":1000,\"max_batch_size\":2,\"key\":[\"header:X-Tenant-Id\",\"query:region\","
               "\"method\",\"path\"],\"dynamic\":true,\"rate_mid\":40,\"rate_width\":2.5}}",
               "{\"auth\":\"NONE\",\"qualifier\":\"3\",\"cors\":{\"allow_origins\":[\"https://a.example\","
               "\"http://localhost:3000\"],\"allow_methods\":[\"GET\",\"POST\"],\"allow_headers\":[\"X-Tenant-Id\"],"
               "\"expose_headers\":[\"ETag\"],\"max_age\":600,\"allow_credentials\":true},"
               "\"batching\":{\"max_wait_ms\":1000,\"max_batch_size\":2,\"key\":[\"header:x-tenant-id\",\"query:region\","
               "\"method\",\"path\"],\"dynamic\":true,\"rate_mid\":40,\"rate_width\":2.5}}");
}

static void test_top_level(void **state)
{
    (void)state;
    expect_field("[]", "body");
    expect_field("{}", "auth");
    expect_field("{\"auth\":\"none\"}", "auth");
    expect_field("{\"auth\":1}", "auth");
    expect_field("{\"auth\":\"NONE\",\"extra\":1}", "extra");
    expect_field("{\"auth\":\"NONE\",\"qualifier\":5}", "qualifier");
    expect_field("{\"auth\":\"NONE\",\"qualifier\":\"\"}", "qualifier");
    expect_field("{\"auth\":\"NONE\",\"qualifier\":\"a b\"}", "qualifier");
    expect_field("{\"auth\":\"NONE\",\"qualifier\":\"0\"}", "qualifier");
    expect_field("{\"auth\":\"NONE\",\"cors\":[]}", "cors");
    expect_field("{\"auth\":\"NONE\",\"batching\":true}", "batching");
}

static void test_cors(void **state)
{
    char big[4096];
    size_t n = 0;

    (void)state;
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"allow_origin\":[]}}", "cors.allow_origin");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"allow_origins\":\"*\"}}", "cors.allow_origins");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"allow_origins\":[\"ftp://x\"]}}", "cors.allow_origins");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"allow_origins\":[\"https://x/path\"]}}", "cors.allow_origins");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"allow_origins\":[\"https://x:0\"]}}", "cors.allow_origins");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"allow_methods\":[\"get\"]}}", "cors.allow_methods");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"allow_methods\":[\"TRACE\"]}}", "cors.allow_methods");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"allow_headers\":[\"bad header\"]}}", "cors.allow_headers");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"expose_headers\":[1]}}", "cors.expose_headers");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"max_age\":86401}}", "cors.max_age");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"max_age\":1.5}}", "cors.max_age");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"allow_credentials\":\"yes\"}}", "cors.allow_credentials");
    expect_field("{\"auth\":\"NONE\",\"cors\":{\"allow_origins\":[\"*\"],\"allow_credentials\":true}}",
                 "cors.allow_credentials");
    /* 17 origins: one too many */
    n += (size_t)snprintf(big + n, sizeof(big) - n, "{\"auth\":\"NONE\",\"cors\":{\"allow_origins\":[");
    for (int i = 0; i < 17; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"https://h%d.example\"", i ? "," : "", i);
    snprintf(big + n, sizeof(big) - n, "]}}");
    expect_field(big, "cors.allow_origins");
    /* 32 headers of 32 bytes: 32*32+31 > 1023 bytes joined */
    n = (size_t)snprintf(big, sizeof(big), "{\"auth\":\"NONE\",\"cors\":{\"allow_headers\":[");
    for (int i = 0; i < 32; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"x-header-number-%016d\"", i ? "," : "", i);
    snprintf(big + n, sizeof(big) - n, "]}}");
    expect_field(big, "cors.allow_headers");
}

static void test_batching(void **state)
{
    (void)state;
    expect_field("{\"auth\":\"NONE\",\"batching\":{}}", "batching.max_wait_ms");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":0}}", "batching.max_wait_ms");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":1001}}", "batching.max_wait_ms");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":5,\"max_batch_size\":1}}", "batching.max_batch_size");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":5,\"max_batch_size\":1001}}", "batching.max_batch_size");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":5,\"key\":\"method\"}}", "batching.key");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":5,\"key\":[\"cookie:a\"]}}", "batching.key");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":5,\"key\":[\"header:\"]}}", "batching.key");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":5,\"key\":[\"method\",\"method\"]}}", "batching.key");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":5,\"key\":[\"method\",\"path\",\"query:a\","
                 "\"query:b\",\"query:c\"]}}", "batching.key");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":5,\"dynamic\":1}}", "batching.dynamic");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":5,\"rate_mid\":0}}", "batching.rate_mid");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":5,\"rate_width\":1000001}}", "batching.rate_width");
    expect_field("{\"auth\":\"NONE\",\"batching\":{\"max_wait_ms\":5,\"other\":1}}", "batching.other");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_top_level),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_batching),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
