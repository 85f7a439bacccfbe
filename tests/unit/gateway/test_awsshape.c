/* Unit tests: services/gateway/awsshape.c — native documents as AWS shapes: the time and
 * hash formats, State/LastUpdateStatus from the record and its newest build, qualified
 * ARNs, published versions, aliases with weights. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include <cJSON.h>

#include "awsshape.h"

static const gw_aws_where W = { "eu-central-1", "647508814929" };

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsString(v) ? v->valuestring : "(none)";
}

static void test_formats(void **state)
{
    char out[64];

    (void)state;
    gw_aws_shape_time("2026-12-07T04:13:57.123Z", out, sizeof(out));
    assert_string_equal(out, "2026-12-07T04:13:57.123+0000");
    gw_aws_shape_time("garbage", out, sizeof(out));
    assert_string_equal(out, "garbage");
    /* sha256("") */
    gw_aws_shape_sha256("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", out, sizeof(out));
    assert_string_equal(out, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    gw_aws_shape_sha256("zz", out, sizeof(out));
    assert_string_equal(out, "");
    assert_string_equal(gw_aws_shape_state("pending"), "Pending");
    assert_string_equal(gw_aws_shape_state("active"), "Active");
    assert_string_equal(gw_aws_shape_state("failed"), "Failed");
}

static cJSON *shape(const char *native, int qualified)
{
    cJSON *n = cJSON_Parse(native), *cfg;

    assert_non_null(n);
    cfg = gw_aws_shape_config(&W, n, qualified);
    cJSON_Delete(n);
    assert_non_null(cfg);
    return cfg;
}

static void test_function(void **state)
{
    cJSON *cfg;

    (void)state;
    cfg = shape("{\"id\":\"i\",\"name\":\"f\",\"state\":\"active\",\"runtime\":\"python3.11\","
                "\"handler\":\"app.h\",\"memory_mb\":256,\"timeout_s\":9,\"env\":{\"A\":\"1\"},"
                "\"updated_at\":\"2026-01-02T03:04:05.006Z\",\"last_build\":{\"status\":\"building\"}}",
                0);
    assert_string_equal(str(cfg, "FunctionArn"), "arn:aws:lambda:eu-central-1:647508814929:function:f");
    assert_string_equal(str(cfg, "State"), "Active");
    /* a build after the first in flight: the update is in progress (function_updated_v2) */
    assert_string_equal(str(cfg, "LastUpdateStatus"), "InProgress");
    assert_string_equal(str(cfg, "Version"), "$LATEST");
    assert_string_equal(str(cfg, "LastModified"), "2026-01-02T03:04:05.006+0000");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(cfg, "MemorySize")->valueint, 256);
    assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(
                                cJSON_GetObjectItemCaseSensitive(cfg, "Environment"), "Variables"), "A"), "1");
    cJSON_Delete(cfg);
    /* the executor's own last_update_status wins; failed build -> Failed with its reason */
    cfg = shape("{\"name\":\"f\",\"state\":\"active\",\"last_update_status\":\"Failed\","
                "\"last_update_reason\":\"bad zip\"}", 0);
    assert_string_equal(str(cfg, "LastUpdateStatus"), "Failed");
    assert_string_equal(str(cfg, "LastUpdateStatusReason"), "bad zip");
    cJSON_Delete(cfg);
    cfg = shape("{\"name\":\"f\",\"state\":\"pending\"}", 0);
    assert_string_equal(str(cfg, "State"), "Pending");
    assert_string_equal(str(cfg, "StateReasonCode"), "Creating");
    cJSON_Delete(cfg);
}

static void test_version_and_alias(void **state)
{
    cJSON *cfg, *a, *n;
    const cJSON *w;

    (void)state;
    /* a published version: always Active/Successful, qualified ARN */
    cfg = shape("{\"version\":\"3\",\"name\":\"f\",\"created_at\":\"2026-01-02T03:04:05.006Z\"}", 1);
    assert_string_equal(str(cfg, "FunctionArn"), "arn:aws:lambda:eu-central-1:647508814929:function:f:3");
    assert_string_equal(str(cfg, "Version"), "3");
    assert_string_equal(str(cfg, "State"), "Active");
    assert_string_equal(str(cfg, "LastUpdateStatus"), "Successful");
    cJSON_Delete(cfg);
    n = cJSON_Parse("{\"name\":\"live\",\"version\":\"3\",\"routing\":{\"4\":0.25}}");
    a = gw_aws_shape_alias(&W, "f", n);
    assert_string_equal(str(a, "AliasArn"), "arn:aws:lambda:eu-central-1:647508814929:function:f:live");
    assert_string_equal(str(a, "FunctionVersion"), "3");
    w = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(a, "RoutingConfig"),
                                         "AdditionalVersionWeights");
    assert_true(cJSON_GetObjectItemCaseSensitive(w, "4")->valuedouble == 0.25);
    cJSON_Delete(a);
    cJSON_Delete(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_function),
        cmocka_unit_test(test_version_and_alias),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
