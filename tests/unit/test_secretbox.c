/* test_secretbox.c — AES-256-GCM sealing: round trip, tampering, wrong key or context, key
 * ids and rotation, env objects sealed/redacted/revealed, the global box from the environment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "secretbox.h"

/* base64 of 32 bytes 0x00..0x1f and of 32 bytes 0x20..0x3f */
#define KEY_A "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define KEY_B "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="

static secretbox box(const char *cur, const char *old)
{
    secretbox b = { 0 };
    char err[128];

    assert_int_equal(secretbox_key_parse(cur, &b.cur, err, sizeof(err)), ML_OK);
    if (old)
        assert_int_equal(secretbox_key_parse(old, &b.old, err, sizeof(err)), ML_OK);
    return b;
}

static void test_round_trip(void **state)
{
    secretbox b = box(KEY_A, NULL);
    char *s = NULL, *s2 = NULL, *pt = NULL, err[256];

    (void)state;
    assert_int_equal(secretbox_seal(&b, "DB_PASS", "hunter2", 7, &s), ML_OK);
    assert_true(secretbox_is_sealed(s));
    assert_true(secretbox_is_current(&b, s));
    assert_null(strstr(s, "hunter2"));
    assert_int_equal(strncmp(s + 7, b.cur.kid, 8), 0); /* the key id beside the ciphertext */
    assert_int_equal(secretbox_open(&b, "DB_PASS", s, &pt, err, sizeof(err)), ML_OK);
    assert_string_equal(pt, "hunter2");
    free(pt);
    /* a fresh nonce each time */
    assert_int_equal(secretbox_seal(&b, "DB_PASS", "hunter2", 7, &s2), ML_OK);
    assert_string_not_equal(s, s2);
    free(s2);
    /* empty plaintext */
    free(s);
    assert_int_equal(secretbox_seal(&b, "E", "", 0, &s), ML_OK);
    assert_int_equal(secretbox_open(&b, "E", s, &pt, err, sizeof(err)), ML_OK);
    assert_string_equal(pt, "");
    free(pt);
    free(s);
}

static void test_tamper(void **state)
{
    secretbox b = box(KEY_A, NULL);
    char *s = NULL, *pt = NULL, err[256];
    size_t n;

    (void)state;
    assert_int_equal(secretbox_seal(&b, "K", "value-value-value", 17, &s), ML_OK);
    n = strlen(s);
    /* flip one base64 character in the middle of the ciphertext */
    s[n / 2 + 8] = s[n / 2 + 8] == 'A' ? 'B' : 'A';
    assert_int_equal(secretbox_open(&b, "K", s, &pt, err, sizeof(err)), ML_ERR);
    assert_null(pt);
    assert_non_null(strstr(err, "does not verify"));
    free(s);
    /* truncated, not base64, not sealed at all */
    assert_int_equal(secretbox_open(&b, "K", "enc:v1:", &pt, err, sizeof(err)), ML_ERR);
    assert_int_equal(secretbox_open(&b, "K", "plain", &pt, err, sizeof(err)), ML_ERR);
    assert_int_equal(secretbox_open(&b, "K", "enc:v1:00000000:!!!!", &pt, err, sizeof(err)), ML_ERR);
}

static void test_wrong_key_and_context(void **state)
{
    secretbox a = box(KEY_A, NULL), b = box(KEY_B, NULL), forged;
    char *s = NULL, *pt = NULL, err[256];

    (void)state;
    assert_string_not_equal(a.cur.kid, b.cur.kid);
    assert_int_equal(secretbox_seal(&a, "K", "secret", 6, &s), ML_OK);
    /* another key: its id is unknown */
    assert_int_equal(secretbox_open(&b, "K", s, &pt, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "key id"));
    /* another key under the same id (a forged kid): the tag fails */
    forged = b;
    memcpy(forged.cur.kid, a.cur.kid, sizeof(forged.cur.kid));
    assert_int_equal(secretbox_open(&forged, "K", s, &pt, err, sizeof(err)), ML_ERR);
    /* the value moved to another variable */
    assert_int_equal(secretbox_open(&a, "OTHER", s, &pt, err, sizeof(err)), ML_ERR);
    assert_null(pt);
    free(s);
}

static void test_rotation(void **state)
{
    secretbox old = box(KEY_A, NULL), rot = box(KEY_B, KEY_A);
    char *s = NULL, *pt = NULL, err[256];
    cJSON *env = cJSON_CreateObject();
    bool changed = false;

    (void)state;
    assert_int_equal(secretbox_seal(&old, "K", "v1", 2, &s), ML_OK);
    assert_false(secretbox_is_current(&rot, s));
    assert_int_equal(secretbox_open(&rot, "K", s, &pt, err, sizeof(err)), ML_OK); /* old key opens */
    assert_string_equal(pt, "v1");
    free(pt);
    cJSON_AddStringToObject(env, "K", s);
    cJSON_AddStringToObject(env, "P", "plain");
    assert_int_equal(secretbox_env_seal(&rot, env, &changed, err, sizeof(err)), ML_OK);
    assert_true(changed);
    assert_true(secretbox_is_current(&rot, cJSON_GetObjectItem(env, "K")->valuestring));
    assert_true(secretbox_is_current(&rot, cJSON_GetObjectItem(env, "P")->valuestring));
    /* once current, nothing changes */
    assert_int_equal(secretbox_env_seal(&rot, env, &changed, err, sizeof(err)), ML_OK);
    assert_false(changed);
    /* the old key alone cannot open the re-sealed values */
    assert_int_equal(secretbox_open(&old, "K", cJSON_GetObjectItem(env, "K")->valuestring, &pt, err,
                                    sizeof(err)), ML_ERR);
    free(s);
    cJSON_Delete(env);
}

static void test_env_render(void **state)
{
    secretbox b = box(KEY_A, NULL);
    cJSON *env = cJSON_Parse("{\"DB_PASS\":\"hunter2\",\"MODE\":\"fast\"}"), *copy;
    char err[256], *text;

    (void)state;
    assert_int_equal(secretbox_env_seal(&b, env, NULL, err, sizeof(err)), ML_OK);
    text = cJSON_PrintUnformatted(env);
    assert_null(strstr(text, "hunter2"));
    cJSON_free(text);
    copy = cJSON_Duplicate(env, 1);
    assert_int_equal(secretbox_env_render(&b, env, false, err, sizeof(err)), ML_OK);
    text = cJSON_PrintUnformatted(env);
    assert_string_equal(text, "{\"DB_PASS\":\"***\",\"MODE\":\"***\"}");
    cJSON_free(text);
    assert_int_equal(secretbox_env_render(&b, copy, true, err, sizeof(err)), ML_OK);
    text = cJSON_PrintUnformatted(copy);
    assert_string_equal(text, "{\"DB_PASS\":\"hunter2\",\"MODE\":\"fast\"}");
    cJSON_free(text);
    cJSON_Delete(env);
    cJSON_Delete(copy);
}

static void test_key_parse_and_global(void **state)
{
    secretbox_key k;
    char err[512];

    (void)state;
    assert_int_equal(secretbox_key_parse(KEY_A "\n", &k, err, sizeof(err)), ML_OK);
    assert_int_equal(strlen(k.kid), 8);
    assert_int_equal(secretbox_key_parse("c2hvcnQ=", &k, err, sizeof(err)), ML_ERR); /* 5 bytes */
    assert_null(strstr(err, "c2hvcnQ"));
    assert_int_equal(secretbox_key_parse("", &k, err, sizeof(err)), ML_ERR);
    unsetenv("MINILAMBDA_SECRETS_KEY");
    unsetenv("MINILAMBDA_SECRETS_KEY_FILE");
    assert_int_equal(secretbox_global_init(err, sizeof(err)), ML_ERR); /* refuses without a key */
    assert_non_null(strstr(err, "MINILAMBDA_SECRETS_KEY"));
    setenv("MINILAMBDA_SECRETS_KEY", KEY_B, 1);
    setenv("MINILAMBDA_SECRETS_KEY_OLD", KEY_A, 1);
    assert_int_equal(secretbox_global_init(err, sizeof(err)), ML_OK);
    assert_true(secretbox_global()->cur.set);
    assert_true(secretbox_global()->old.set);
    assert_string_equal(secretbox_global()->cur.kid, box(KEY_B, NULL).cur.kid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_wrong_key_and_context),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_env_render),
        cmocka_unit_test(test_key_parse_and_global),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
