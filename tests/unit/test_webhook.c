/* test_webhook.c — Standard Webhooks signing/verification.
 *
 * Known vectors (hard-coded, derived independently of this code):
 *  1. The example from the Standard Webhooks spec / reference libraries' tests:
 *     secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, id msg_p5jXN8AQM9LWM0D4loKWxJek,
 *     timestamp 1614265330, body {"test": 2432232314}
 *     -> v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
 *  2. A binary-body vector computed with the reference algorithm in Python:
 *     /usr/bin/python3 -c 'import hmac,hashlib,base64; k=bytes(range(32));
 *       print("whsec_"+base64.b64encode(k).decode());
 *       m=b"msg_2Nq7CjKzB1.1700000000."+b"{\"type\":\"build.status\",\"status\":\"completed\"}\x00\xff\n";
 *       print("v1,"+base64.b64encode(hmac.new(k,m,hashlib.sha256).digest()).decode())'
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "webhook.h"

#define SPEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SPEC_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SPEC_TS 1614265330
#define SPEC_BODY "{\"test\": 2432232314}"
#define SPEC_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

#define PY_SECRET "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define PY_ID "msg_2Nq7CjKzB1"
#define PY_TS 1700000000
static const char py_body[] = "{\"type\":\"build.status\",\"status\":\"completed\"}\x00\xff\n";
#define PY_BODY_LEN (sizeof(py_body) - 1)
#define PY_SIG "v1,J4VOX0VQPoCiPg6Mw4twU39Aa5ZxCRWj6vSpDSxHUi0="

static int verify(const char *secret, const char *sig, const char *body, int64_t now,
                  char *reason, size_t reason_len)
{
    return webhook_verify(secret, SPEC_ID, "1614265330", sig, body, strlen(body), now, reason,
                          reason_len);
}

static void test_sign_known_vectors(void **state)
{
    char sig[WEBHOOK_SIGNATURE_LEN];

    (void)state;
    assert_int_equal(webhook_sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY, strlen(SPEC_BODY), sig),
                     ML_OK);
    assert_string_equal(sig, SPEC_SIG);
    assert_int_equal(webhook_sign(PY_SECRET, PY_ID, PY_TS, py_body, PY_BODY_LEN, sig), ML_OK);
    assert_string_equal(sig, PY_SIG);
}

static void test_verify_known_vectors(void **state)
{
    char reason[128] = "";

    (void)state;
    assert_int_equal(verify(SPEC_SECRET, SPEC_SIG, SPEC_BODY, SPEC_TS + 10, reason, sizeof(reason)),
                     ML_OK);
    assert_int_equal(webhook_verify(PY_SECRET, PY_ID, "1700000000", PY_SIG, py_body, PY_BODY_LEN,
                                    PY_TS - 5, reason, sizeof(reason)),
                     ML_OK);
}

static void test_tampered_body_fails(void **state)
{
    char reason[128] = "";

    (void)state;
    assert_int_equal(verify(SPEC_SECRET, SPEC_SIG, "{\"test\": 2432232315}", SPEC_TS, reason,
                            sizeof(reason)),
                     ML_ERR);
    assert_string_equal(reason, "no matching v1 signature");
    /* Binary body: flipping only the byte after the NUL must also break it. */
    {
        char body[sizeof(py_body)];
        memcpy(body, py_body, sizeof(py_body));
        body[PY_BODY_LEN - 2] = (char)0xfe;
        assert_int_equal(webhook_verify(PY_SECRET, PY_ID, "1700000000", PY_SIG, body, PY_BODY_LEN,
                                        PY_TS, reason, sizeof(reason)),
                         ML_ERR);
    }
}

static void test_tampered_id_or_timestamp_fails(void **state)
{
    char reason[128] = "";

    (void)state;
    assert_int_equal(webhook_verify(SPEC_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJeX", "1614265330",
                                    SPEC_SIG, SPEC_BODY, strlen(SPEC_BODY), SPEC_TS, reason,
                                    sizeof(reason)),
                     ML_ERR);
    assert_int_equal(webhook_verify(SPEC_SECRET, SPEC_ID, "1614265331", SPEC_SIG, SPEC_BODY,
                                    strlen(SPEC_BODY), SPEC_TS, reason, sizeof(reason)),
                     ML_ERR);
    assert_string_equal(reason, "no matching v1 signature");
}

static void test_wrong_secret_fails(void **state)
{
    char reason[128] = "";

    (void)state;
    assert_int_equal(verify(PY_SECRET, SPEC_SIG, SPEC_BODY, SPEC_TS, reason, sizeof(reason)),
                     ML_ERR);
    assert_string_equal(reason, "no matching v1 signature");
}

static void test_timestamp_window(void **state)
{
    char reason[128] = "";

    (void)state;
    /* Exactly at the tolerance passes, one second beyond fails, in both directions. */
    assert_int_equal(verify(SPEC_SECRET, SPEC_SIG, SPEC_BODY, SPEC_TS + WEBHOOK_TOLERANCE_S,
                            reason, sizeof(reason)),
                     ML_OK);
    assert_int_equal(verify(SPEC_SECRET, SPEC_SIG, SPEC_BODY, SPEC_TS + WEBHOOK_TOLERANCE_S + 1,
                            reason, sizeof(reason)),
                     ML_ERR);
    assert_string_equal(reason, "timestamp too old");
    assert_int_equal(verify(SPEC_SECRET, SPEC_SIG, SPEC_BODY, SPEC_TS - WEBHOOK_TOLERANCE_S - 1,
                            reason, sizeof(reason)),
                     ML_ERR);
    assert_string_equal(reason, "timestamp too far in the future");
    assert_int_equal(webhook_verify(SPEC_SECRET, SPEC_ID, "16142653x0", SPEC_SIG, SPEC_BODY,
                                    strlen(SPEC_BODY), SPEC_TS, reason, sizeof(reason)),
                     ML_ERR);
    assert_string_equal(reason, "invalid webhook-timestamp");
}

static void test_multiple_signatures(void **state)
{
    char reason[128] = "";

    (void)state;
    /* A rotated-out key's signature, an unknown version, then the right one. */
    assert_int_equal(verify(SPEC_SECRET,
                            "v1,J4VOX0VQPoCiPg6Mw4twU39Aa5ZxCRWj6vSpDSxHUi0= "
                            "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= " SPEC_SIG,
                            SPEC_BODY, SPEC_TS, reason, sizeof(reason)),
                     ML_OK);
    /* The right MAC under a version other than v1 does not count. */
    assert_int_equal(verify(SPEC_SECRET, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                            SPEC_BODY, SPEC_TS, reason, sizeof(reason)),
                     ML_ERR);
    /* A truncated copy of the right MAC does not count either. */
    assert_int_equal(verify(SPEC_SECRET, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE", SPEC_BODY,
                            SPEC_TS, reason, sizeof(reason)),
                     ML_ERR);
    assert_int_equal(verify(SPEC_SECRET, "", SPEC_BODY, SPEC_TS, reason, sizeof(reason)), ML_ERR);
}

static void test_malformed_secret_rejected(void **state)
{
    static const char *const bad[] = {
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",        /* no prefix */
        "whsec_",                                  /* empty key */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",   /* not base64 (length) */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa!w",  /* bad character */
        "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRY=",  /* 23 bytes: below the spec's minimum */
    };
    char sig[WEBHOOK_SIGNATURE_LEN], reason[128];
    size_t i;

    (void)state;
    for (i = 0; i < ML_ARRAY_LEN(bad); i++) {
        assert_int_equal(webhook_secret_valid(bad[i]), ML_ERR);
        assert_int_equal(webhook_sign(bad[i], SPEC_ID, SPEC_TS, "x", 1, sig), ML_ERR);
        reason[0] = '\0';
        assert_int_equal(verify(bad[i], SPEC_SIG, SPEC_BODY, SPEC_TS, reason, sizeof(reason)), ML_ERR);
        assert_non_null(strstr(reason, "malformed secret"));
    }
    assert_int_equal(webhook_secret_valid(NULL), ML_ERR);
}

static void test_bad_headers_rejected(void **state)
{
    char sig[WEBHOOK_SIGNATURE_LEN], reason[128];

    (void)state;
    assert_int_equal(webhook_sign(SPEC_SECRET, "", SPEC_TS, "x", 1, sig), ML_ERR);
    assert_int_equal(webhook_sign(SPEC_SECRET, "msg id", SPEC_TS, "x", 1, sig), ML_ERR);
    assert_int_equal(webhook_sign(SPEC_SECRET, "msg\r\nX: y", SPEC_TS, "x", 1, sig), ML_ERR);
    assert_int_equal(webhook_sign(SPEC_SECRET, SPEC_ID, -1, "x", 1, sig), ML_ERR);
    assert_int_equal(webhook_verify(SPEC_SECRET, NULL, "1614265330", SPEC_SIG, SPEC_BODY,
                                    strlen(SPEC_BODY), SPEC_TS, reason, sizeof(reason)),
                     ML_ERR);
    assert_non_null(strstr(reason, "missing"));
}

static void test_secret_new_roundtrip(void **state)
{
    char s1[WEBHOOK_SECRET_LEN], s2[WEBHOOK_SECRET_LEN], sig[WEBHOOK_SIGNATURE_LEN], reason[128];

    (void)state;
    assert_int_equal(webhook_secret_new(s1), ML_OK);
    assert_int_equal(webhook_secret_new(s2), ML_OK);
    assert_int_equal(strlen(s1), WEBHOOK_SECRET_LEN - 1);
    assert_memory_equal(s1, "whsec_", 6);
    assert_string_not_equal(s1, s2);
    assert_int_equal(webhook_secret_valid(s1), ML_OK);
    assert_int_equal(webhook_sign(s1, "msg_1", 1700000000, "{}", 2, sig), ML_OK);
    assert_int_equal(strlen(sig), WEBHOOK_SIGNATURE_LEN - 1);
    assert_int_equal(webhook_verify(s1, "msg_1", "1700000000", sig, "{}", 2, 1700000001, reason,
                                    sizeof(reason)),
                     ML_OK);
    assert_int_equal(webhook_verify(s2, "msg_1", "1700000000", sig, "{}", 2, 1700000001, reason,
                                    sizeof(reason)),
                     ML_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_known_vectors),
        cmocka_unit_test(test_verify_known_vectors),
        cmocka_unit_test(test_tampered_body_fails),
        cmocka_unit_test(test_tampered_id_or_timestamp_fails),
        cmocka_unit_test(test_wrong_secret_fails),
        cmocka_unit_test(test_timestamp_window),
        cmocka_unit_test(test_multiple_signatures),
        cmocka_unit_test(test_malformed_secret_rejected),
        cmocka_unit_test(test_bad_headers_rejected),
        cmocka_unit_test(test_secret_new_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
