/* test_accesskeys.c — access key ids and secrets (form, alphabet, no repeats), the scope
 * list (known scopes only, admin refused, canonical text) and the create body's checks
 * (accesskeys.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "accesskeys.h"
#include "jsoncheck.h"

#define DRAWS 2000

static void test_ids(void **state)
{
    static char seen[DRAWS][AKEY_ID_LEN + 1];
    int hist[32] = { 0 };

    (void)state;
    for (int i = 0; i < DRAWS; i++) {
        assert_int_equal(akey_new_id(seen[i]), ML_OK);
        assert_int_equal(strlen(seen[i]), AKEY_ID_LEN);
        assert_memory_equal(seen[i], "AKML", 4);
        assert_int_equal(akey_id_valid(seen[i]), ML_OK);
        for (int j = 4; j < AKEY_ID_LEN; j++)
            hist[seen[i][j] >= 'A' ? seen[i][j] - 'A' : seen[i][j] - '2' + 26]++;
        for (int k = 0; k < i; k++)
            assert_string_not_equal(seen[i], seen[k]);
    }
    /* 32000 characters over 32 symbols: every symbol shows up, none dominates (a stuck
     * bit or a wrong shift would starve half of them) */
    for (int s = 0; s < 32; s++)
        assert_in_range(hist[s], 700, 1300);
    assert_int_equal(akey_id_valid("AKMLAAAAAAAAAAAAAAAA"), ML_OK);
    assert_int_equal(akey_id_valid("AKMLAAAAAAAAAAAAAAA"), ML_ERR);   /* 19 */
    assert_int_equal(akey_id_valid("AKMLAAAAAAAAAAAAAAAAA"), ML_ERR); /* 21 */
    assert_int_equal(akey_id_valid("AKIAAAAAAAAAAAAAAAAA"), ML_ERR);
    assert_int_equal(akey_id_valid("AKMLAAAAAAAAAAAAAAA1"), ML_ERR);  /* 1 is not base32 */
    assert_int_equal(akey_id_valid("akmlaaaaaaaaaaaaaaaa"), ML_ERR);
    assert_int_equal(akey_id_valid(""), ML_ERR);
    assert_int_equal(akey_id_valid(NULL), ML_ERR);
}

static void test_secrets(void **state)
{
    char a[AKEY_SECRET_LEN + 1], b[AKEY_SECRET_LEN + 1];
    int classes[3] = { 0 };

    (void)state;
    for (int i = 0; i < DRAWS; i++) {
        assert_int_equal(akey_new_secret(a), ML_OK);
        assert_int_equal(strlen(a), AKEY_SECRET_LEN);
        for (int j = 0; j < AKEY_SECRET_LEN; j++) {
            assert_true((a[j] >= 'A' && a[j] <= 'Z') || (a[j] >= 'a' && a[j] <= 'z') || (a[j] >= '0' && a[j] <= '9'));
            classes[a[j] >= 'a' ? 1 : a[j] >= 'A' ? 0 : 2]++;
        }
    }
    /* 26/62, 26/62, 10/62 of 80000 characters */
    assert_in_range(classes[0], 32000, 35000);
    assert_in_range(classes[1], 32000, 35000);
    assert_in_range(classes[2], 12000, 13800);
    assert_int_equal(akey_new_secret(b), ML_OK);
    assert_string_not_equal(a, b);
}

static const char *scopes(const char *in, char out[AKEY_SCOPES_MAX])
{
    static tenancy_err e; /* its message is returned */

    if (akey_scopes_parse(in, out, &e) == ML_OK)
        return out;
    assert_int_equal(e.status, 400);
    return e.msg;
}

static void test_scopes(void **state)
{
    char out[AKEY_SCOPES_MAX];

    (void)state;
    assert_string_equal(scopes("functions:invoke", out), "functions:invoke");
    assert_string_equal(scopes(" functions:invoke  functions:read functions:invoke ", out),
                        "functions:read functions:invoke");
    assert_string_equal(scopes("functions:secrets functions:invoke functions:write functions:read", out),
                        "functions:read functions:write functions:invoke functions:secrets");
    assert_non_null(strstr(scopes("admin", out), "cannot carry the admin scope"));
    assert_non_null(strstr(scopes("functions:read admin", out), "admin"));
    assert_non_null(strstr(scopes("functions:delete", out), "unknown scope 'functions:delete'"));
    assert_non_null(strstr(scopes("functions:readx", out), "unknown scope"));
    assert_non_null(strstr(scopes("Functions:read", out), "unknown scope"));
    assert_non_null(strstr(scopes("functions:read\tfunctions:invoke", out), "unknown scope"));
    assert_non_null(strstr(scopes("", out), "at least one"));
    assert_non_null(strstr(scopes("   ", out), "at least one"));
}

static const char *create(const char *text, akey_create *c)
{
    cJSON *j = jsoncheck_parse(text, strlen(text), NULL);
    tenancy_err e = { 0 };
    int rc;

    assert_non_null(j);
    rc = akey_create_parse(j, c, &e);
    cJSON_Delete(j);
    return rc == ML_OK ? "ok" : e.code;
}

static void test_create_body(void **state)
{
    akey_create c;
    char text[600];

    (void)state;
    assert_string_equal(create("{\"namespace\":\"team-a\",\"scopes\":\"functions:invoke\",\"description\":\"ci\"}", &c),
                        "ok");
    assert_string_equal(c.ns, "team-a");
    assert_string_equal(c.scopes, "functions:invoke");
    assert_string_equal(c.desc, "ci");
    assert_string_equal(create("{\"namespace\":\"default\",\"scopes\":\"functions:read\"}", &c), "ok");
    assert_string_equal(c.desc, "");
    assert_string_equal(create("{\"scopes\":\"functions:read\"}", &c), "missing_field");
    assert_string_equal(create("{\"namespace\":\"a\"}", &c), "missing_field");
    assert_string_equal(create("{\"namespace\":\"A\",\"scopes\":\"functions:read\"}", &c), "invalid_namespace");
    assert_string_equal(create("{\"namespace\":null,\"scopes\":\"functions:read\"}", &c), "invalid_namespace");
    assert_string_equal(create("{\"namespace\":\"a\",\"scopes\":\"admin\"}", &c), "invalid_field");
    assert_string_equal(create("{\"namespace\":\"a\",\"scopes\":[\"functions:read\"]}", &c), "invalid_field");
    assert_string_equal(create("{\"namespace\":\"a\",\"scopes\":\"functions:read\",\"status\":\"active\"}", &c),
                        "invalid_field");
    assert_string_equal(create("{\"namespace\":\"a\",\"scopes\":\"functions:read\",\"description\":5}", &c),
                        "invalid_field");
    assert_string_equal(create("{\"namespace\":\"a\",\"scopes\":\"functions:read\",\"description\":\"a\\u0007b\"}", &c),
                        "invalid_field");
    snprintf(text, sizeof(text), "{\"namespace\":\"a\",\"scopes\":\"functions:read\",\"description\":\"%0256d\"}", 0);
    assert_string_equal(create(text, &c), "ok");
    snprintf(text, sizeof(text), "{\"namespace\":\"a\",\"scopes\":\"functions:read\",\"description\":\"%0257d\"}", 0);
    assert_string_equal(create(text, &c), "invalid_field");
    assert_string_equal(create("[]", &c), "invalid_body");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_scopes),
        cmocka_unit_test(test_create_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
