/* sigv4.h — verifying AWS Signature Version 4 on incoming requests, so the AWS CLI and SDKs
 * can call the Lambda Invoke API with an access key pair configured on the gateway.
 *
 * Supported: the Authorization header form (AWS4-HMAC-SHA256), any region, one service name,
 * a payload hash computed from the body (or x-amz-content-sha256 when it matches it, or
 * UNSIGNED-PAYLOAD), X-Amz-Date within 15 minutes of the gateway's clock. Not supported:
 * presigned query-string auth and session tokens. Pure functions; thread-safe. */
#ifndef GW_SIGV4_H
#define GW_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define GW_SIGV4_MAX_SKEW_S 900

/* Looks up a request header by lower-case name; NULL if absent. */
typedef const char *(*gw_sigv4_header_fn)(void *ud, const char *name);

typedef struct gw_sigv4_request {
    const char *method;
    const char *path;        /* percent-decoded path, as the HTTP server delivers it */
    const char *query;       /* canonical query string (sorted, encoded), "" if none */
    const char *authorization;
    gw_sigv4_header_fn header;
    void *header_ud;
    const void *body;
    size_t body_len;
} gw_sigv4_request;

typedef struct gw_sigv4_creds {
    const char *access_key;
    const char *secret_key;
    const char *service;     /* "lambda" */
} gw_sigv4_creds;

/* True when an Authorization header value claims SigV4. */
bool gw_sigv4_present(const char *authorization);

/* The access key id of a SigV4 Authorization header into out (which key to verify with);
 * ML_ERR when the header is malformed or the id does not fit. */
int gw_sigv4_access_key(const char *authorization, char *out, size_t outlen);

/* ML_OK when r is signed by creds at unix time now_s; ML_ERR with the reason in err. */
int gw_sigv4_verify(const gw_sigv4_request *r, const gw_sigv4_creds *creds, int64_t now_s,
                    char *err, size_t errlen);

/* The canonical query string of n decoded (key, value) pairs (value NULL = empty): each
 * encoded, sorted by key then value, joined with '&', into out. */
int gw_sigv4_canonical_query(const char *const *keys, const char *const *values, size_t n,
                             ml_buf *out);

/* Appends s URI-encoded the SigV4 way (unreserved A-Za-z0-9-_.~ kept, the rest %XX upper). */
int gw_sigv4_uri_encode(const char *s, size_t len, ml_buf *out);

#endif
