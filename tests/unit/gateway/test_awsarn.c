/* Unit tests: services/gateway/awsarn.c — the four FunctionName forms, what is refused, the
 * account id of a namespace (expected values computed independently with Python's hashlib). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "awsarn.h"
#include "ml.h"

static void parses(const char *in, const char *name, const char *q, const char *acct,
                   const char *region)
{
    gw_aws_fname f;

    assert_int_equal(gw_awsarn_parse(in, &f), ML_OK);
    assert_string_equal(f.name, name);
    assert_string_equal(f.qualifier, q);
    assert_string_equal(f.account, acct);
    assert_string_equal(f.region, region);
}

static void test_forms(void **state)
{
    (void)state;
    parses("my-fn", "my-fn", "", "", "");
    parses("my_fn:live", "my_fn", "live", "", "");
    parses("f:$LATEST", "f", "$LATEST", "", "");
    parses("f:12", "f", "12", "", "");
    parses("123456789012:function:f", "f", "", "123456789012", "");
    parses("123456789012:function:f:3", "f", "3", "123456789012", "");
    parses("arn:aws:lambda:us-east-1:000000000000:function:hello", "hello", "", "000000000000",
           "us-east-1");
    parses("arn:aws:lambda:eu-west-1:647508814929:function:hello:live", "hello", "live",
           "647508814929", "eu-west-1");
    parses("arn:aws-cn:lambda:cn-north-1:000000000000:function:h", "h", "", "000000000000",
           "cn-north-1");
}

static void test_refused(void **state)
{
    static const char *const bad[] = {
        "", ":", "f:", ":q", "a b", "f:q:r", "f/x", "f:$latest", "f:a.b",
        "12345678901:function:f", "123456789012:func:f", "123456789012:function:",
        "123456789012:function:f:q:r", "arn:aws:lambda:us-east-1:000000000000:function",
        "arn:aws:s3:us-east-1:000000000000:function:f", "arn:aws:lambda:us-east-1:0000:function:f",
        "arn:aws:lambda:us-east-1:000000000000:layer:f", "arn:gcp:lambda:r:000000000000:function:f",
        "arn:aws:lambda:us-east-1:000000000000:function:f:1:2", "a:b:c:d:e:f:g:h:i",
        "x1234567890123456789012345678901234567890123456789012345678901234", /* 65 */
    };
    gw_aws_fname f;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (gw_awsarn_parse(bad[i], &f) == ML_OK)
            fail_msg("accepted '%s'", bad[i]);
        assert_string_equal(f.name, "");
    }
    assert_int_equal(gw_awsarn_parse(NULL, &f), ML_ERR);
}

static void test_limits(void **state)
{
    char name[GW_AWS_NAME_MAX + 1], q[GW_AWS_QUALIFIER_MAX + 3];
    gw_aws_fname f;

    (void)state;
    memset(name, 'a', GW_AWS_NAME_MAX);
    name[GW_AWS_NAME_MAX] = '\0';
    assert_int_equal(gw_awsarn_parse(name, &f), ML_OK);
    q[0] = 'f', q[1] = ':';
    memset(q + 2, 'b', GW_AWS_QUALIFIER_MAX);
    q[GW_AWS_QUALIFIER_MAX + 2] = '\0';
    assert_int_equal(gw_awsarn_parse(q, &f), ML_OK);
    assert_int_equal(strlen(f.qualifier), GW_AWS_QUALIFIER_MAX);
    assert_int_equal(gw_awsarn_qualifier_valid("$LATEST"), ML_OK);
    assert_int_equal(gw_awsarn_qualifier_valid("live-1"), ML_OK);
    assert_int_equal(gw_awsarn_qualifier_valid(""), ML_ERR);
    assert_int_equal(gw_awsarn_qualifier_valid("a:b"), ML_ERR);
}

static void test_account(void **state)
{
    char a[GW_AWS_ACCOUNT_LEN + 1];

    (void)state;
    assert_int_equal(gw_awsarn_account("default", a), ML_OK);
    assert_string_equal(a, "000000000000");
    assert_int_equal(gw_awsarn_account("team-a", a), ML_OK);
    assert_string_equal(a, "647508814929");
    assert_int_equal(gw_awsarn_account("x", a), ML_OK);
    assert_string_equal(a, "195170812599");
}

static void test_format(void **state)
{
    char out[160];

    (void)state;
    assert_int_equal(gw_awsarn_format(out, sizeof(out), "us-east-1", "000000000000", "f", NULL), ML_OK);
    assert_string_equal(out, "arn:aws:lambda:us-east-1:000000000000:function:f");
    assert_int_equal(gw_awsarn_format(out, sizeof(out), "us-east-1", "000000000000", "f", "3"), ML_OK);
    assert_string_equal(out, "arn:aws:lambda:us-east-1:000000000000:function:f:3");
    assert_int_equal(gw_awsarn_format(out, 10, "us-east-1", "000000000000", "f", "3"), ML_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),   cmocka_unit_test(test_refused),
        cmocka_unit_test(test_limits),  cmocka_unit_test(test_account),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
