/* auth.c — HS256 JWT verification with libjwt 1.10 (which has no validation helpers: the
 * algorithm, exp, nbf and sub are checked here). */
#include "auth.h"

#include <cJSON.h>
#include <errno.h>
#include <jwt.h>
#include <string.h>
#include <strings.h>

#include "ml.h"
#include "routes.h"

#define MAX_JOSE_HEADER 1024

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

static gw_auth_result check_claims(jwt_t *jwt, int64_t now_s, int64_t leeway_s,
                                   gw_principal *out)
{
    const char *sub;
    long exp, nbf;

    errno = 0;
    exp = jwt_get_grant_int(jwt, "exp");
    if (errno != 0 || exp <= 0)
        return GW_AUTH_CLAIMS;
    if (now_s > (int64_t)exp + leeway_s)
        return GW_AUTH_EXPIRED;
    errno = 0;
    nbf = jwt_get_grant_int(jwt, "nbf");
    if (errno == 0 && now_s + leeway_s < (int64_t)nbf)
        return GW_AUTH_NOT_YET_VALID;
    sub = jwt_get_grant(jwt, "sub");
    if (!sub || !*sub || ml_strlcpy(out->sub, sub, sizeof(out->sub)) != ML_OK)
        return GW_AUTH_CLAIMS;
    out->scopes = gw_scopes_parse(jwt_get_grant(jwt, "scope"));
    return GW_AUTH_OK;
}

gw_auth_result gw_auth_bearer(const char *authorization, const char *secret, int64_t now_s,
                              int64_t leeway_s, gw_principal *out)
{
    const char *token = NULL;
    jwt_t *jwt = NULL;
    gw_auth_result rc;

    memset(out, 0, sizeof(*out));
    if (!authorization || !*authorization)
        return GW_AUTH_MISSING;
    if (bearer_token(authorization, &token) != ML_OK)
        return GW_AUTH_MALFORMED;
    rc = check_header_alg(token);
    if (rc != GW_AUTH_OK)
        return rc;
    if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 || !jwt)
        return GW_AUTH_INVALID;
    /* pinned: a token that verified under another algorithm is still refused */
    rc = jwt_get_alg(jwt) == JWT_ALG_HS256 ? check_claims(jwt, now_s, leeway_s, out)
                                           : GW_AUTH_ALG;
    jwt_free(jwt);
    if (rc != GW_AUTH_OK)
        memset(out, 0, sizeof(*out));
    return rc;
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
    default: return "the token's signature does not verify";
    }
}
