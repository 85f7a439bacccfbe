/* auth.c — HS256 JWT verification with libjwt 1.10 (which has no validation helpers: the
 * algorithm, exp, nbf and sub are checked here). */
#include "auth.h"

#include <cJSON.h>
#include <errno.h>
#include <jwt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fnspec.h"
#include "ml.h"
#include "routes.h"

#define MAX_JOSE_HEADER 1024
#define CACHE_SLOTS 64
#define CACHE_TOKEN_MAX 1024

/* Verified tokens, per thread: a client sends the same token on every request, and
 * decoding plus HMAC was the largest cost of the gateway's HTTP threads. An entry matches
 * only the identical token under the identical secret; exp and nbf are checked again on
 * every hit. Failures are never cached. */
typedef struct cache_entry {
    uint64_t secret_fp;
    size_t len;
    char token[CACHE_TOKEN_MAX];
    int64_t exp, nbf; /* nbf = INT64_MIN when absent */
    gw_principal who;
} cache_entry;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_key_create(void)
{
    if (pthread_key_create(&cache_key, free) != 0)
        abort(); /* only at the first request: out of keys is a build-time mistake */
}

static uint64_t fnv1a(const char *p, size_t len)
{
    uint64_t h = 14695981039346656037ULL;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

/* This thread's slot for token (allocating the table on first use); NULL when out of
 * memory or the token is too long to cache. The table is freed when the thread exits. */
static cache_entry *cache_slot(const char *token, size_t len)
{
    cache_entry *t;

    if (len >= CACHE_TOKEN_MAX)
        return NULL;
    pthread_once(&cache_once, cache_key_create);
    t = pthread_getspecific(cache_key);
    if (!t) {
        if (!(t = calloc(CACHE_SLOTS, sizeof(*t))) || pthread_setspecific(cache_key, t) != 0) {
            free(t);
            return NULL;
        }
    }
    return &t[fnv1a(token, len) % CACHE_SLOTS];
}

static gw_auth_result check_times(int64_t exp, int64_t nbf, int64_t now_s, int64_t leeway_s)
{
    if (now_s - leeway_s > exp) /* not exp + leeway: exp may be near INT64_MAX */
        return GW_AUTH_EXPIRED;
    if (now_s + leeway_s < nbf)
        return GW_AUTH_NOT_YET_VALID;
    return GW_AUTH_OK;
}

int gw_base64url_decode(const char *in, size_t inlen, unsigned char *out, size_t outsize,
                        size_t *outlen)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;

    while (inlen > 0 && in[inlen - 1] == '=')
        inlen--;
    if (inlen % 4 == 1)
        return ML_ERR;
    for (size_t i = 0; i < inlen; i++) {
        char c = in[i];
        int v;

        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-')
            v = 62;
        else if (c == '_')
            v = 63;
        else
            return ML_ERR;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == outsize)
                return ML_ERR;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    *outlen = n;
    return ML_OK;
}

/* Points *token at the token of "Bearer <token>" when it has the JWS compact shape
 * (three base64url segments, the first two non-empty). */
static int bearer_token(const char *authz, const char **token)
{
    const char *t;
    size_t len, dots = 0;

    if (strncasecmp(authz, "Bearer ", 7) != 0)
        return ML_ERR;
    t = authz + 7;
    t += strspn(t, " ");
    len = strlen(t);
    if (len == 0 || len > GW_TOKEN_MAX)
        return ML_ERR;
    for (size_t i = 0; i < len; i++) {
        char c = t[i];
        if (c == '.') {
            if (++dots > 2 || i == 0 || t[i - 1] == '.')
                return ML_ERR;
        } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                     (c >= '0' && c <= '9') || c == '-' || c == '_')) {
            return ML_ERR;
        }
    }
    if (dots != 2)
        return ML_ERR;
    *token = t;
    return ML_OK;
}

/* Refuses anything but alg HS256 before the token reaches libjwt, so no code path of the
 * library ever treats an unsigned (alg=none) token as verified. */
static gw_auth_result check_header_alg(const char *token)
{
    unsigned char raw[MAX_JOSE_HEADER];
    size_t seglen = strcspn(token, "."), len = 0;
    cJSON *hdr, *alg;
    gw_auth_result rc = GW_AUTH_INVALID;

    if (gw_base64url_decode(token, seglen, raw, sizeof(raw), &len) != ML_OK)
        return GW_AUTH_INVALID;
    hdr = cJSON_ParseWithLength((const char *)raw, len);
    alg = cJSON_GetObjectItemCaseSensitive(hdr, "alg");
    if (cJSON_IsString(alg))
        rc = strcmp(alg->valuestring, "HS256") == 0 ? GW_AUTH_OK : GW_AUTH_ALG;
    cJSON_Delete(hdr);
    return rc;
}

/* The ns claim: absent = the default namespace; libjwt sets errno EINVAL for a claim that
 * is present but not a string (a number, null, an object), which is refused like a bad name. */
static gw_auth_result claim_ns(jwt_t *jwt, char ns[TENANT_MAX + 1])
{
    const char *v;

    errno = 0;
    v = jwt_get_grant(jwt, "ns");
    if (!v)
        v = errno == ENOENT ? TENANT_DEFAULT : NULL;
    if (!v || fnspec_ns_valid(v) != ML_OK || ml_strlcpy(ns, v, TENANT_MAX + 1) != ML_OK)
        return GW_AUTH_NAMESPACE;
    return GW_AUTH_OK;
}

static gw_auth_result check_claims(jwt_t *jwt, int64_t now_s, int64_t leeway_s,
                                   cache_entry *out)
{
    const char *sub;
    long exp, nbf;
    gw_auth_result rc;

    errno = 0;
    exp = jwt_get_grant_int(jwt, "exp");
    if (errno != 0 || exp <= 0)
        return GW_AUTH_CLAIMS;
    errno = 0;
    nbf = jwt_get_grant_int(jwt, "nbf");
    out->exp = (int64_t)exp;
    out->nbf = errno == 0 ? (int64_t)nbf : INT64_MIN;
    rc = check_times(out->exp, out->nbf, now_s, leeway_s);
    if (rc != GW_AUTH_OK)
        return rc;
    sub = jwt_get_grant(jwt, "sub");
    if (!sub || !*sub || ml_strlcpy(out->who.sub, sub, sizeof(out->who.sub)) != ML_OK)
        return GW_AUTH_CLAIMS;
    out->who.scopes = gw_scopes_parse(jwt_get_grant(jwt, "scope"));
    return claim_ns(jwt, out->who.ns);
}

/* Full verification of token; on GW_AUTH_OK fills *e (its token and key are the caller's). */
static gw_auth_result verify_token(const char *token, const char *secret, int64_t now_s,
                                   int64_t leeway_s, cache_entry *e)
{
    jwt_t *jwt = NULL;
    gw_auth_result rc = check_header_alg(token);

    if (rc != GW_AUTH_OK)
        return rc;
    if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 || !jwt)
        return GW_AUTH_INVALID;
    /* pinned: a token that verified under another algorithm is still refused */
    rc = jwt_get_alg(jwt) == JWT_ALG_HS256 ? check_claims(jwt, now_s, leeway_s, e) : GW_AUTH_ALG;
    jwt_free(jwt);
    return rc;
}

gw_auth_result gw_auth_bearer(const char *authorization, const char *secret, int64_t now_s,
                              int64_t leeway_s, gw_principal *out)
{
    const char *token = NULL;
    cache_entry fresh = { 0 }, *slot;
    uint64_t fp = fnv1a(secret, strlen(secret));
    size_t len;
    gw_auth_result rc;

    memset(out, 0, sizeof(*out));
    if (!authorization || !*authorization)
        return GW_AUTH_MISSING;
    if (bearer_token(authorization, &token) != ML_OK)
        return GW_AUTH_MALFORMED;
    len = strlen(token);
    slot = cache_slot(token, len);
    if (slot && slot->len == len && slot->secret_fp == fp && memcmp(slot->token, token, len) == 0) {
        rc = check_times(slot->exp, slot->nbf, now_s, leeway_s);
        if (rc == GW_AUTH_OK)
            *out = slot->who;
        return rc;
    }
    rc = verify_token(token, secret, now_s, leeway_s, &fresh);
    if (rc != GW_AUTH_OK)
        return rc;
    *out = fresh.who;
    if (slot) {
        memcpy(slot->token, token, len);
        slot->len = len;
        slot->secret_fp = fp;
        slot->exp = fresh.exp;
        slot->nbf = fresh.nbf;
        slot->who = fresh.who;
    }
    return GW_AUTH_OK;
}

const char *gw_auth_reason(gw_auth_result r)
{
    switch (r) {
    case GW_AUTH_OK: return "ok";
    case GW_AUTH_MISSING: return "missing";
    case GW_AUTH_MALFORMED: return "malformed";
    case GW_AUTH_ALG: return "alg";
    case GW_AUTH_INVALID: return "invalid";
    case GW_AUTH_EXPIRED: return "expired";
    case GW_AUTH_NOT_YET_VALID: return "not_yet_valid";
    case GW_AUTH_CLAIMS: return "claims";
    case GW_AUTH_SCOPE: return "scope";
    case GW_AUTH_SIGNATURE_V4: return "sigv4";
    case GW_AUTH_NAMESPACE: return "namespace";
    }
    return "invalid";
}

const char *gw_auth_message(gw_auth_result r)
{
    switch (r) {
    case GW_AUTH_MISSING: return "an Authorization: Bearer <JWT> header is required";
    case GW_AUTH_MALFORMED: return "the Authorization header is not 'Bearer <JWT>'";
    case GW_AUTH_ALG: return "the token must be signed with HS256";
    case GW_AUTH_EXPIRED: return "the token has expired";
    case GW_AUTH_NOT_YET_VALID: return "the token is not valid yet (nbf)";
    case GW_AUTH_CLAIMS: return "the token must carry an integer exp and a string sub";
    case GW_AUTH_SCOPE: return "the token lacks the scope this route requires";
    case GW_AUTH_SIGNATURE_V4: return "the AWS SigV4 signature does not match";
    case GW_AUTH_NAMESPACE:
        return "the token's ns claim must be a namespace name (1-63 of [a-z0-9-])";
    default: return "the token's signature does not verify";
    }
}

int gw_auth_namespace(const gw_principal *who, const char *hdr, char out[TENANT_MAX + 1])
{
    const char *ns = who->ns[0] ? who->ns : TENANT_DEFAULT;

    if (hdr && fnspec_ns_valid(hdr) != ML_OK)
        return 400;
    if (hdr && strcmp(hdr, ns) != 0) {
        if (!(who->scopes & GW_SCOPE_ADMIN))
            return 403; /* says nothing about whether hdr exists */
        ns = hdr;
    }
    ml_strlcpy(out, ns, TENANT_MAX + 1); /* both are valid names: they fit */
    return 0;
}
