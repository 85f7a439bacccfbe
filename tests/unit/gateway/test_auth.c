/* Unit tests: services/gateway/auth.c (JWT verification) and token.c (minting).
 * Bad tokens are built by hand (base64url + OpenSSL HMAC) so the library under test never
 * produces the tokens it judges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "auth.h"
#include "buf.h"
#include "routes.h"
#include "token.h"

#define SECRET "unit-test-secret"
#define LEEWAY 30

static void b64url(const void *in, size_t len, ml_buf *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = in;
    uint32_t acc = 0;
    int bits = 0;

    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            ml_buf_append(out, &tbl[(acc >> bits) & 63], 1);
        }
    }
    if (bits > 0)
        ml_buf_append(out, &tbl[(acc << (6 - bits)) & 63], 1);
}

/* "Bearer <b64(header).b64(claims).sig>" signed with md (NULL: empty signature). */
static void make_token(const char *header, const char *claims, const char *secret,
                       const EVP_MD *md, ml_buf *out)
{
    ml_buf signing = { 0 };
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    b64url(header, strlen(header), &signing);
    ml_buf_append(&signing, ".", 1);
    b64url(claims, strlen(claims), &signing);
    ml_buf_append_str(out, "Bearer ");
    ml_buf_append(out, signing.data, signing.len);
    ml_buf_append(out, ".", 1);
    if (md) {
        HMAC(md, secret, (int)strlen(secret), (const unsigned char *)signing.data, signing.len, mac,
             &maclen);
        b64url(mac, maclen, out);
    }
    ml_buf_free(&signing);
}

static gw_auth_result verify(const char *header, const char *claims, const char *secret,
                             const EVP_MD *md, int64_t now, gw_principal *who)
{
    ml_buf tok = { 0 };
    gw_auth_result r;

    make_token(header, claims, secret, md, &tok);
    r = gw_auth_bearer(tok.data, SECRET, now, LEEWAY, who);
    ml_buf_free(&tok);
    return r;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define NOW 1800000000LL

static void test_valid_hand_built(void **state)
{
    gw_principal who;
    (void)state;
    assert_int_equal(verify(HS256, "{\"sub\":\"alice\",\"exp\":1800000060,\"scope\":\"functions:read functions:invoke\"}",
                            SECRET, EVP_sha256(), NOW, &who), GW_AUTH_OK);
    assert_string_equal(who.sub, "alice");
    assert_int_equal(who.scopes, GW_SCOPE_READ | GW_SCOPE_INVOKE);
    /* no scope claim: authenticated, but with no scopes */
    assert_int_equal(verify(HS256, "{\"sub\":\"bob\",\"exp\":1800000060}", SECRET, EVP_sha256(), NOW, &who), GW_AUTH_OK);
    assert_int_equal(who.scopes, 0);
}

static void test_minted_token_verifies(void **state)
{
    ml_buf tok = { 0 }, hdr = { 0 };
    gw_principal who;
    (void)state;
    assert_int_equal(token_mint(SECRET, "dev", "functions:write", NULL, (int64_t)time(NULL), 60, &tok), ML_OK);
    ml_buf_printf(&hdr, "bearer %s", tok.data); /* the scheme is case-insensitive */
    assert_int_equal(gw_auth_bearer(hdr.data, SECRET, (int64_t)time(NULL), LEEWAY, &who), GW_AUTH_OK);
    assert_string_equal(who.sub, "dev");
    assert_int_equal(who.scopes, GW_SCOPE_WRITE);
    assert_string_equal(who.ns, "default"); /* minted without ns */
    assert_int_equal(gw_auth_bearer(hdr.data, "another-secret", (int64_t)time(NULL), LEEWAY, &who),
                     GW_AUTH_INVALID);
    assert_string_equal(who.sub, ""); /* nothing leaks out of a failed verification */
    ml_buf_free(&tok);
    ml_buf_free(&hdr);
}

static void test_missing_and_malformed(void **state)
{
    gw_principal who;
    const char *bad[] = { "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer abc", "Bearer a.b",
                          "Bearer a..c", "Bearer .b.c", "Bearer a.b.c.d", "Bearer a b.c.d",
                          "Bearer a.b.c!", "Token a.b.c" };
    (void)state;
    assert_int_equal(gw_auth_bearer(NULL, SECRET, NOW, LEEWAY, &who), GW_AUTH_MISSING);
    assert_int_equal(gw_auth_bearer("", SECRET, NOW, LEEWAY, &who), GW_AUTH_MISSING);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(gw_auth_bearer(bad[i], SECRET, NOW, LEEWAY, &who), GW_AUTH_MALFORMED);
}

static void test_oversized_token(void **state)
{
    ml_buf big = { 0 };
    gw_principal who;
    (void)state;
    ml_buf_append_str(&big, "Bearer a.b.");
    for (int i = 0; i < GW_TOKEN_MAX; i++)
        ml_buf_append(&big, "x", 1);
    assert_int_equal(gw_auth_bearer(big.data, SECRET, NOW, LEEWAY, &who), GW_AUTH_MALFORMED);
    ml_buf_free(&big);
}

static void test_wrong_secret_and_tampering(void **state)
{
    gw_principal who;
    ml_buf tok = { 0 }, evil = { 0 };
    char *dot1, *dot2;
    (void)state;
    assert_int_equal(verify(HS256, "{\"sub\":\"a\",\"exp\":1800000060}", "wrong", EVP_sha256(), NOW, &who),
                     GW_AUTH_INVALID);
    /* a valid signature moved onto different claims */
    make_token(HS256, "{\"sub\":\"a\",\"exp\":1800000060,\"scope\":\"functions:read\"}", SECRET, EVP_sha256(), &tok);
    make_token(HS256, "{\"sub\":\"a\",\"exp\":1800000060,\"scope\":\"functions:write\"}", "x", NULL, &evil);
    dot1 = strrchr(tok.data, '.');
    dot2 = strrchr(evil.data, '.');
    assert_non_null(dot1);
    assert_non_null(dot2);
    ml_buf_append_str(&evil, dot1 + 1);
    assert_int_equal(gw_auth_bearer(evil.data, SECRET, NOW, LEEWAY, &who), GW_AUTH_INVALID);
    ml_buf_free(&tok);
    ml_buf_free(&evil);
}

static void test_algorithms_pinned(void **state)
{
    gw_principal who;
    const char *claims = "{\"sub\":\"a\",\"exp\":1800000060,\"scope\":\"functions:write\"}";
    (void)state;
    /* alg=none, with an empty and with a junk signature */
    assert_int_equal(verify("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, SECRET, NULL, NOW, &who), GW_AUTH_ALG);
    assert_int_equal(verify("{\"alg\":\"none\"}", claims, SECRET, EVP_sha256(), NOW, &who), GW_AUTH_ALG);
    assert_int_equal(verify("{\"alg\":\"None\"}", claims, SECRET, NULL, NOW, &who), GW_AUTH_ALG);
    /* correctly signed, but with another HMAC: still refused */
    assert_int_equal(verify("{\"alg\":\"HS384\"}", claims, SECRET, EVP_sha384(), NOW, &who), GW_AUTH_ALG);
    assert_int_equal(verify("{\"alg\":\"HS512\"}", claims, SECRET, EVP_sha512(), NOW, &who), GW_AUTH_ALG);
    assert_int_equal(verify("{\"alg\":\"RS256\"}", claims, SECRET, EVP_sha256(), NOW, &who), GW_AUTH_ALG);
    /* no alg at all, or a header that is not JSON */
    assert_int_equal(verify("{\"typ\":\"JWT\"}", claims, SECRET, EVP_sha256(), NOW, &who), GW_AUTH_INVALID);
    assert_int_equal(verify("not json", claims, SECRET, EVP_sha256(), NOW, &who), GW_AUTH_INVALID);
    assert_int_equal(who.scopes, 0);
}

static void test_expiry_and_leeway(void **state)
{
    gw_principal who;
    (void)state;
    /* exp + leeway in the past */
    assert_int_equal(verify(HS256, "{\"sub\":\"a\",\"exp\":1800000000}", SECRET, EVP_sha256(), NOW + LEEWAY + 1, &who),
                     GW_AUTH_EXPIRED);
    /* inside the leeway */
    assert_int_equal(verify(HS256, "{\"sub\":\"a\",\"exp\":1800000000}", SECRET, EVP_sha256(), NOW + LEEWAY, &who),
                     GW_AUTH_OK);
    /* nbf in the future beyond the leeway; within it */
    assert_int_equal(verify(HS256, "{\"sub\":\"a\",\"exp\":1800000600,\"nbf\":1800000100}", SECRET, EVP_sha256(), NOW, &who),
                     GW_AUTH_NOT_YET_VALID);
    assert_int_equal(verify(HS256, "{\"sub\":\"a\",\"exp\":1800000600,\"nbf\":1800000020}", SECRET, EVP_sha256(), NOW, &who),
                     GW_AUTH_OK);
}

/* A verified token is remembered per thread; a hit still honours exp, nbf and the secret. */
static void test_cached_token_rechecked(void **state)
{
    ml_buf tok = { 0 };
    gw_principal who;
    (void)state;
    make_token(HS256, "{\"sub\":\"carol\",\"exp\":1800000000,\"nbf\":1799999000,\"scope\":\"functions:read\"}",
               SECRET, EVP_sha256(), &tok);
    for (int i = 0; i < 2; i++) { /* the second call is answered from the cache */
        assert_int_equal(gw_auth_bearer(tok.data, SECRET, NOW, LEEWAY, &who), GW_AUTH_OK);
        assert_string_equal(who.sub, "carol");
        assert_int_equal(who.scopes, GW_SCOPE_READ);
    }
    assert_int_equal(gw_auth_bearer(tok.data, SECRET, NOW + LEEWAY + 1, LEEWAY, &who), GW_AUTH_EXPIRED);
    assert_string_equal(who.sub, "");
    assert_int_equal(gw_auth_bearer(tok.data, SECRET, 1799999000 - LEEWAY - 1, LEEWAY, &who),
                     GW_AUTH_NOT_YET_VALID);
    assert_int_equal(gw_auth_bearer(tok.data, "another-secret", NOW, LEEWAY, &who), GW_AUTH_INVALID);
    /* one changed signature character is a different token, verified in full */
    tok.data[tok.len - 2] = tok.data[tok.len - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(gw_auth_bearer(tok.data, SECRET, NOW, LEEWAY, &who), GW_AUTH_INVALID);
    ml_buf_free(&tok);
}

static void test_required_claims(void **state)
{
    gw_principal who;
    const char *bad[] = {
        "{\"sub\":\"a\"}",                          /* no exp */
        "{\"sub\":\"a\",\"exp\":\"1800000060\"}",   /* exp not a number */
        "{\"exp\":1800000060}",                     /* no sub */
        "{\"sub\":\"\",\"exp\":1800000060}",        /* empty sub */
        "{\"sub\":42,\"exp\":1800000060}",          /* sub not a string */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(verify(HS256, bad[i], SECRET, EVP_sha256(), NOW, &who), GW_AUTH_CLAIMS);
}

/* docs/tenants.md: ns absent = default; a string naming a valid namespace; anything else 401 */
static void test_ns_claim(void **state)
{
    gw_principal who;
    const char *bad[] = {
        "{\"sub\":\"a\",\"exp\":1800000060,\"ns\":\"Team-A\"}",   /* upper case */
        "{\"sub\":\"a\",\"exp\":1800000060,\"ns\":\"-team\"}",    /* leading dash */
        "{\"sub\":\"a\",\"exp\":1800000060,\"ns\":\"\"}",         /* empty */
        "{\"sub\":\"a\",\"exp\":1800000060,\"ns\":\"a/b\"}",      /* would split a key */
        "{\"sub\":\"a\",\"exp\":1800000060,\"ns\":42}",           /* not a string */
        "{\"sub\":\"a\",\"exp\":1800000060,\"ns\":null}",
        "{\"sub\":\"a\",\"exp\":1800000060,\"ns\":[\"team-a\"]}",
        "{\"sub\":\"a\",\"exp\":1800000060,\"ns\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", /* 64 */
    };
    (void)state;
    assert_int_equal(verify(HS256, "{\"sub\":\"a\",\"exp\":1800000060}", SECRET, EVP_sha256(), NOW, &who), GW_AUTH_OK);
    assert_string_equal(who.ns, "default");
    assert_int_equal(verify(HS256, "{\"sub\":\"a\",\"exp\":1800000060,\"ns\":\"team-a\"}", SECRET, EVP_sha256(), NOW, &who), GW_AUTH_OK);
    assert_string_equal(who.ns, "team-a");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(verify(HS256, bad[i], SECRET, EVP_sha256(), NOW, &who), GW_AUTH_NAMESPACE);
    assert_string_equal(gw_auth_reason(GW_AUTH_NAMESPACE), "namespace");
}

static void test_admin_implies_functions(void **state)
{
    unsigned bits = 0;
    (void)state;
    assert_int_equal(gw_scopes_parse("admin"), GW_SCOPE_ADMIN | GW_SCOPES_FUNCTIONS);
    assert_int_equal(gw_scopes_parse("functions:read bogus"), GW_SCOPE_READ);
    assert_int_equal(gw_scopes_parse("functions:write") & GW_SCOPE_ADMIN, 0);
    assert_string_equal(gw_scope_name(GW_SCOPE_ADMIN), "admin");
    assert_int_equal(gw_scopes_parse_strict("functions:read admin", &bits), ML_OK);
    assert_int_equal(bits, GW_SCOPE_ADMIN | GW_SCOPES_FUNCTIONS);
    assert_int_equal(gw_scopes_parse_strict("functions:read bogus", &bits), ML_ERR);
    assert_int_equal(gw_scopes_parse_strict("", &bits), ML_ERR);
    assert_int_equal(gw_scopes_parse_strict("   ", &bits), ML_ERR);
}

static void test_namespace_decision(void **state)
{
    gw_principal user = { .sub = "u", .scopes = GW_SCOPE_READ, .ns = "team-a" };
    gw_principal admin = { .sub = "root", .scopes = GW_SCOPE_ADMIN | GW_SCOPES_FUNCTIONS, .ns = "default" };
    char ns[TENANT_MAX + 1];
    (void)state;
    assert_int_equal(gw_auth_namespace(&user, NULL, ns), 0);
    assert_string_equal(ns, "team-a");
    assert_int_equal(gw_auth_namespace(&user, "team-a", ns), 0); /* its own: fine */
    assert_string_equal(ns, "team-a");
    assert_int_equal(gw_auth_namespace(&user, "team-b", ns), 403);
    assert_int_equal(gw_auth_namespace(&user, "Team-B", ns), 400);
    assert_int_equal(gw_auth_namespace(&admin, NULL, ns), 0);
    assert_string_equal(ns, "default");
    assert_int_equal(gw_auth_namespace(&admin, "team-b", ns), 0);
    assert_string_equal(ns, "team-b");
    assert_int_equal(gw_auth_namespace(&admin, "bad ns", ns), 400);
    assert_int_equal(gw_auth_namespace(&admin, "", ns), 400);
}

/* POST /admin/tokens: the minted token verifies and carries what was asked for. */
static void test_admin_mint(void **state)
{
    static const struct {
        const char *body;
    } bad[] = {
        { "" }, { "[]" }, { "{\"scopes\":\"functions:read\"}" },                      /* no sub */
        { "{\"sub\":\"x\",\"namespace\":\"Bad\"}" },
        { "{\"sub\":\"x\",\"namespace\":7}" },
        { "{\"sub\":\"x\",\"scopes\":\"functions:read root\"}" },                      /* unknown */
        { "{\"sub\":\"x\",\"scopes\":\"\"}" },
        { "{\"sub\":\"x\",\"ttl_s\":59}" }, { "{\"sub\":\"x\",\"ttl_s\":2592001}" },
        { "{\"sub\":\"x\",\"ttl_s\":60.5}" }, { "{\"sub\":\"x\",\"ttl_s\":\"60\"}" },
        { "{\"sub\":\"a b\"}" }, { "{\"sub\":\"\"}" },
    };
    const char *ok = "{\"sub\":\"ci\",\"namespace\":\"team-b\",\"scopes\":\"functions:invoke\",\"ttl_s\":120}";
    int64_t now = (int64_t)time(NULL);
    void *doc = NULL;
    char err[256];
    ml_buf hdr = { 0 };
    gw_principal who;
    cJSON *j;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(token_admin_mint(SECRET, bad[i].body, strlen(bad[i].body), "default", now,
                                          &doc, err, sizeof(err)), 400);
        assert_null(doc);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(token_admin_mint(SECRET, ok, strlen(ok), "default", now, &doc, err, sizeof(err)), 201);
    j = doc;
    assert_string_equal(cJSON_GetObjectItem(j, "namespace")->valuestring, "team-b");
    assert_string_equal(cJSON_GetObjectItem(j, "scopes")->valuestring, "functions:invoke");
    assert_int_equal(strlen(cJSON_GetObjectItem(j, "expires_at")->valuestring), 20);
    ml_buf_printf(&hdr, "Bearer %s", cJSON_GetObjectItem(j, "token")->valuestring);
    assert_int_equal(gw_auth_bearer(hdr.data, SECRET, now, LEEWAY, &who), GW_AUTH_OK);
    assert_string_equal(who.sub, "ci");
    assert_string_equal(who.ns, "team-b");
    assert_int_equal(who.scopes, GW_SCOPE_INVOKE);
    /* exp = now + 120: expired past it (plus the leeway) */
    assert_int_equal(gw_auth_bearer(hdr.data, SECRET, now + 121 + LEEWAY, LEEWAY, &who), GW_AUTH_EXPIRED);
    cJSON_Delete(j);
    ml_buf_free(&hdr);
    /* defaults: the caller's namespace, a day */
    assert_int_equal(token_admin_mint(SECRET, "{\"sub\":\"d\"}", 11, "team-c", now, &doc, err, sizeof(err)), 201);
    assert_string_equal(cJSON_GetObjectItem((cJSON *)doc, "namespace")->valuestring, "team-c");
    cJSON_Delete(doc);
}

static void test_reasons(void **state)
{
    (void)state;
    for (int r = GW_AUTH_OK; r <= GW_AUTH_NAMESPACE; r++) {
        assert_true(strlen(gw_auth_reason((gw_auth_result)r)) > 0);
        assert_true(strlen(gw_auth_message((gw_auth_result)r)) > 0);
    }
    assert_string_equal(gw_auth_reason(GW_AUTH_ALG), "alg");
    assert_string_equal(gw_auth_reason(GW_AUTH_EXPIRED), "expired");
}

static void test_base64url(void **state)
{
    unsigned char out[16];
    size_t n = 99;
    (void)state;
    assert_int_equal(gw_base64url_decode("", 0, out, sizeof(out), &n), ML_OK);
    assert_int_equal(n, 0);
    assert_int_equal(gw_base64url_decode("Zm9v", 4, out, sizeof(out), &n), ML_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "foo", 3);
    assert_int_equal(gw_base64url_decode("Zm9vYg", 6, out, sizeof(out), &n), ML_OK);
    assert_memory_equal(out, "foob", 4);
    assert_int_equal(gw_base64url_decode("Zm9vYg==", 8, out, sizeof(out), &n), ML_OK);
    assert_int_equal(n, 4);
    assert_int_equal(gw_base64url_decode("-_8", 3, out, sizeof(out), &n), ML_OK);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(out[1], 0xff);
    assert_int_equal(gw_base64url_decode("Zm9+", 4, out, sizeof(out), &n), ML_ERR);  /* '+' is not url-safe */
    assert_int_equal(gw_base64url_decode("Zm9vY", 5, out, sizeof(out), &n), ML_ERR); /* impossible length */
    assert_int_equal(gw_base64url_decode("Zm9vZm9v", 8, out, 5, &n), ML_ERR);       /* too small */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_hand_built),
        cmocka_unit_test(test_minted_token_verifies),
        cmocka_unit_test(test_missing_and_malformed),
        cmocka_unit_test(test_oversized_token),
        cmocka_unit_test(test_wrong_secret_and_tampering),
        cmocka_unit_test(test_algorithms_pinned),
        cmocka_unit_test(test_expiry_and_leeway),
        cmocka_unit_test(test_cached_token_rechecked),
        cmocka_unit_test(test_required_claims),
        cmocka_unit_test(test_ns_claim),
        cmocka_unit_test(test_admin_implies_functions),
        cmocka_unit_test(test_namespace_decision),
        cmocka_unit_test(test_admin_mint),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_base64url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
