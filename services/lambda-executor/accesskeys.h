/* accesskeys.h — per-namespace SigV4 access keys: the admin API and the gateway's lookup
 * (docs/tenants.md).
 *
 * POST/GET /admin/keys, GET/DELETE /admin/keys/{id}, POST /admin/keys/{id}/disable|enable|
 * rotate keep rows in lambda_service_db's `access_keys` (migration 0012). An id looks like
 * AWS's: "AKML" + 16 of [A-Z2-7]; a secret is 40 of [A-Za-z0-9] from RAND_bytes, shown only
 * in the 201 of create and the 200 of rotate, and stored sealed with the platform key
 * (secretbox, context "access_key:<id>") because SigV4 verification needs the secret
 * itself. GET /internal/keys/{id} returns the secret to the gateway (every executor route
 * needs the internal token; the gateway never routes /internal/ for clients).
 *
 * A key's scopes are functions:read|write|invoke|secrets, never admin: a SigV4 key is a
 * workload credential bound to one namespace, while admin (any namespace, credentials)
 * stays with short-lived JWTs the operator mints. */
#ifndef EX_ACCESSKEYS_H
#define EX_ACCESSKEYS_H

#include <stddef.h>

#include <cJSON.h>

#include "httpd.h"
#include "tenancy.h"

#define AKEY_PREFIX "AKML"
#define AKEY_ID_LEN 20       /* AKEY_PREFIX + 16 base32 characters (80 random bits) */
#define AKEY_SECRET_LEN 40   /* [A-Za-z0-9]: ~238 random bits */
#define AKEY_SCOPES_MAX 128  /* the canonical text of every known scope fits */
#define AKEY_DESC_MAX 256    /* bytes */

/* What POST /admin/keys asks for, checked. */
typedef struct akey_create {
    char ns[TENANT_MAX + 1];
    char scopes[AKEY_SCOPES_MAX]; /* canonical: known scopes once each, fixed order */
    char desc[AKEY_DESC_MAX + 1];
} akey_create;

/* Writes the eight key routes (blocking; ud: the tenancy, for its database access and change
 * counter) to out; returns how many (at most max). */
size_t akey_routes(tenancy *t, httpd_route *out, size_t max);

/* A new access key id into out (NUL-terminated). ML_ERR if the CSPRNG fails. */
int akey_new_id(char out[AKEY_ID_LEN + 1]);

/* A new secret into out (NUL-terminated). ML_ERR if the CSPRNG fails. */
int akey_new_secret(char out[AKEY_SECRET_LEN + 1]);

/* ML_OK if id has the form of akey_new_id's ids. */
int akey_id_valid(const char *id);

/* A space-separated scope list: every word one of the four functions:* scopes (admin is
 * refused with its own message), at least one, duplicates folded. out gets the canonical
 * text (fixed order, single spaces). ML_ERR with e (400 invalid_field). */
int akey_scopes_parse(const char *in, char out[AKEY_SCOPES_MAX], tenancy_err *e);

/* POST /admin/keys body: {"namespace", "scopes", "description"?}, nothing else. ML_ERR with e. */
int akey_create_parse(const cJSON *body, akey_create *out, tenancy_err *e);

#endif
