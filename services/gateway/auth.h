/* auth.h — client authentication: HS256 JWT bearer tokens (libjwt, algorithm pinned).
 *
 * A token must be signed HS256 with the configured secret (the header's alg is checked
 * before and after libjwt verifies it, so alg=none or any other algorithm is refused), carry
 * an integer exp not in the past beyond the leeway, a non-empty string sub, and may carry
 * nbf (honoured with the same leeway) and a space-separated scope. Thread-safe. */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "ml.h"

#define GW_SUB_MAX 128
#define GW_TOKEN_MAX 8192

typedef enum {
    GW_AUTH_OK = 0,
    GW_AUTH_MISSING,       /* no Authorization header */
    GW_AUTH_MALFORMED,     /* not "Bearer <a.b.c>" */
    GW_AUTH_ALG,           /* header alg is not HS256 */
    GW_AUTH_INVALID,       /* undecodable or the signature does not verify */
    GW_AUTH_EXPIRED,       /* exp + leeway is in the past */
    GW_AUTH_NOT_YET_VALID, /* nbf - leeway is in the future */
    GW_AUTH_CLAIMS,        /* exp or sub missing or of the wrong type */
    GW_AUTH_SCOPE,         /* authenticated, but the route's scope is missing (403) */
    GW_AUTH_SIGNATURE_V4,  /* AWS SigV4 credentials rejected */
} gw_auth_result;

/* Who is calling, once authenticated. A zeroed principal has no subject and no scopes. */
typedef struct gw_principal {
    char sub[GW_SUB_MAX];
    unsigned scopes; /* GW_SCOPE_* bits */
} gw_principal;

/* Verifies the value of an Authorization header (NULL = absent) at unix time now_s.
 * On GW_AUTH_OK fills *out. secret must be non-empty. */
gw_auth_result gw_auth_bearer(const char *authorization, const char *secret, int64_t now_s,
                              int64_t leeway_s, gw_principal *out);

/* Short snake_case reason for metrics and logs ("expired", "alg", ...). */
const char *gw_auth_reason(gw_auth_result r);
/* A human sentence for the error body. */
const char *gw_auth_message(gw_auth_result r);

/* Decodes unpadded base64url (RFC 4648 §5; '=' padding tolerated). Writes *outlen bytes.
 * ML_ERR on a character outside the alphabet, an impossible length or outsize too small. */
int gw_base64url_decode(const char *in, size_t inlen, unsigned char *out, size_t outsize,
                        size_t *outlen);

#endif
