/* auth.h — client authentication: HS256 JWT bearer tokens (libjwt, algorithm pinned).
 *
 * A token must be signed HS256 with the configured secret (the header's alg is checked
 * before and after libjwt verifies it, so alg=none or any other algorithm is refused), carry
 * an integer exp not in the past beyond the leeway, a non-empty string sub, and may carry
 * nbf (honoured with the same leeway), a space-separated scope and a string ns (the
 * namespace, docs/tenants.md: absent = "default"; not a string or not a valid name = 401).
 * Thread-safe. */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "ml.h"
#include "tenant.h"

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
    GW_AUTH_NAMESPACE,     /* the ns claim is not a string naming a valid namespace */
} gw_auth_result;

/* Who is calling, once authenticated. A zeroed principal has no subject and no scopes. */
typedef struct gw_principal {
    char sub[GW_SUB_MAX];
    unsigned scopes; /* GW_SCOPE_* bits */
    char ns[TENANT_MAX + 1]; /* the namespace the credential belongs to */
} gw_principal;

/* The namespace a request acts in (docs/tenants.md): the principal's own, or for an admin
 * the client's X-Minilambda-Namespace value (hdr, NULL = absent). Returns 0 with out set,
 * 400 for a header that is not a valid name, 403 for a non-admin naming another namespace. */
int gw_auth_namespace(const gw_principal *who, const char *hdr, char out[TENANT_MAX + 1]);

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
