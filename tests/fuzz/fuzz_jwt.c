/* libFuzzer target: the gateway's bearer-token check (services/gateway/auth.c with libjwt),
 * which sees the Authorization header of every request.
 *
 * The first byte picks the mode:
 *   even: the rest is the header value after "Bearer " (raw tokens, any shape);
 *   odd:  the rest is "<JOSE header JSON>\n<claims JSON>"; the harness encodes both and
 *         signs them HS256 with the gateway's secret, so fuzzed headers and claims get past
 *         the signature into libjwt's decoding and the claim checks.
 * Oracles (besides ASan/UBSan):
 *   - the result is one of the enum's values and has a reason;
 *   - nothing verifies under a second secret, and GW_AUTH_OK means a non-empty, terminated sub;
 *   - an accepted token had alg "HS256" in its header, is refused an hour after its exp
 *     (the per-thread cache re-checks times) and again with one signature byte changed;
 *   - verifying twice (the second time from the cache) gives the same answer. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "auth.h"
#include "crypto.h"
#include "httpd.h"

#define SECRET "fuzz-secret"
#define OTHER "another-secret"
#define NOW_S INT64_C(1767225600)

/* routes.c (linked for gw_scopes_parse) also holds the route table, whose matcher lives in
 * shared/httpd.c with libmicrohttpd behind it; token checks never match routes. */
int httpd_match(const char *pattern, const char *path, const char **names, char **values,
                size_t *nparams)
{
    (void)pattern, (void)path, (void)names, (void)values, (void)nparams;
    abort();
}

static size_t b64url(const unsigned char *in, size_t len, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0, i = 0;

    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[n++] = a[v >> 18];
        out[n++] = a[(v >> 12) & 63];
        out[n++] = a[(v >> 6) & 63];
        out[n++] = a[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[n++] = a[v >> 18];
        out[n++] = a[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[n++] = a[v >> 18];
        out[n++] = a[(v >> 12) & 63];
        out[n++] = a[(v >> 6) & 63];
    }
    out[n] = '\0';
    return n;
}

/* "Bearer " + base64url(header) "." base64url(claims) "." base64url(HMAC) into a new string. */
static char *sign(const char *hdr, size_t hlen, const char *claims, size_t clen)
{
    size_t cap = 7 + (hlen + clen) * 4 / 3 + 64;
    char *out = malloc(cap), *p;
    unsigned char mac[CRYPTO_SHA256_LEN];

    if (!out)
        return NULL;
    memcpy(out, "Bearer ", 7);
    p = out + 7;
    p += b64url((const unsigned char *)hdr, hlen, p);
    *p++ = '.';
    p += b64url((const unsigned char *)claims, clen, p);
    if (crypto_hmac_sha256(SECRET, strlen(SECRET), out + 7, (size_t)(p - out - 7), mac) != ML_OK) {
        free(out);
        return NULL;
    }
    *p++ = '.';
    b64url(mac, sizeof(mac), p);
    return out;
}

static bool header_alg_is_hs256(const char *authz)
{
    const char *t = authz + 7;
    unsigned char raw[8192];
    size_t len = 0;
    bool ok = false;
    cJSON *h, *alg;

    t += strspn(t, " ");
    if (gw_base64url_decode(t, strcspn(t, "."), raw, sizeof(raw), &len) != ML_OK)
        return false;
    h = cJSON_ParseWithLength((const char *)raw, len);
    alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    ok = cJSON_IsString(alg) && strcmp(alg->valuestring, "HS256") == 0;
    cJSON_Delete(h);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *authz;
    gw_principal who, again;
    gw_auth_result r, r2;

    if (size < 1 || size > 4096)
        return 0;
    if (data[0] & 1) {
        const char *body = (const char *)data + 1, *nl = memchr(body, '\n', size - 1);
        size_t hlen = nl ? (size_t)(nl - body) : size - 1;
        authz = nl ? sign(body, hlen, nl + 1, size - 2 - hlen) : sign(body, hlen, "{}", 2);
    } else {
        authz = malloc(size + 7);
        if (authz) {
            memcpy(authz, "Bearer ", 7);
            memcpy(authz + 7, data + 1, size - 1);
            authz[size + 6] = '\0';
        }
    }
    if (!authz)
        return 0;
    r = gw_auth_bearer(authz, SECRET, NOW_S, 30, &who);
    if (r < GW_AUTH_OK || r > GW_AUTH_SIGNATURE_V4 || !gw_auth_reason(r) || !gw_auth_message(r))
        abort();
    r2 = gw_auth_bearer(authz, SECRET, NOW_S, 30, &again);
    if (r2 != r || memcmp(&who, &again, sizeof(who)) != 0)
        abort(); /* the cached answer differs */
    if (r == GW_AUTH_OK) {
        size_t n = strnlen(who.sub, sizeof(who.sub));
        char *sig;
        if (n == 0 || n == sizeof(who.sub) || !header_alg_is_hs256(authz))
            abort();
        if (gw_auth_bearer(authz, OTHER, NOW_S, 30, &again) == GW_AUTH_OK)
            abort(); /* verified under a second secret */
        if (gw_auth_bearer(authz, SECRET, INT64_MAX / 2, 30, &again) == GW_AUTH_OK)
            abort(); /* never expires: exp is required */
        sig = strrchr(authz, '.');
        if (sig && sig[1]) {
            sig[1] = sig[1] == 'A' ? 'B' : 'A';
            if (gw_auth_bearer(authz, SECRET, NOW_S, 30, &again) == GW_AUTH_OK)
                abort(); /* a changed signature verified */
        }
    }
    free(authz);
    return 0;
}
