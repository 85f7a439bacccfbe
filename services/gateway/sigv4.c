/* sigv4.c — AWS Signature Version 4 verification (server side). */
#include "sigv4.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crypto.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define MAX_CANONICAL (64u * 1024u)

/* The parsed Authorization header. */
typedef struct sigv4_auth {
    char access_key[128];
    char date[9];      /* YYYYMMDD */
    char region[64];
    char service[64];
    char signed_headers[1024];
    char signature[65];
} sigv4_auth;

static int fail(char *err, size_t errlen, const char *why)
{
    ml_snprintf_trunc(err, errlen, "%s", why);
    return ML_ERR;
}

bool gw_sigv4_present(const char *authorization)
{
    return authorization && strncmp(authorization, ALGORITHM " ", sizeof(ALGORITHM)) == 0;
}

int gw_sigv4_uri_encode(const char *s, size_t len, ml_buf *out)
{
    static const char hex[] = "0123456789ABCDEF";

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char enc[3] = { '%', hex[c >> 4], hex[c & 15] };

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            if (ml_buf_append(out, &s[i], 1) != ML_OK)
                return ML_ERR;
        } else if (ml_buf_append(out, enc, 3) != ML_OK) {
            return ML_ERR;
        }
    }
    return ML_OK;
}

/* Where the value of "Key=value" (ending at ',' or the end, trailing spaces dropped) starts
 * in the header, and its length in *vlen; NULL when no field is named key. */
static const char *auth_value(const char *authz, const char *key, size_t *vlen)
{
    const char *p = authz + sizeof(ALGORITHM);
    size_t klen = strlen(key);

    while (*p) {
        size_t len;

        p += strspn(p, " ,");
        len = strcspn(p, ",");
        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            *vlen = len - klen - 1;
            while (*vlen > 0 && p[klen + *vlen] == ' ')
                (*vlen)--;
            return p + klen + 1;
        }
        p += len;
    }
    return NULL;
}

/* Copies the value of "Key=value" out of the header. */
static int auth_field(const char *authz, const char *key, char *dst, size_t size)
{
    size_t vlen = 0;
    const char *v = auth_value(authz, key, &vlen);

    if (!v || vlen == 0 || vlen >= size)
        return ML_ERR;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
    return ML_OK;
}

/* Credential=AKID/YYYYMMDD/region/service/aws4_request */
static int parse_credential(const char *cred, sigv4_auth *a)
{
    char copy[512], *parts[5], *save = NULL, *tok;
    int n = 0;

    if (ml_strlcpy(copy, cred, sizeof(copy)) != ML_OK)
        return ML_ERR;
    for (tok = strtok_r(copy, "/", &save); tok && n < 5; tok = strtok_r(NULL, "/", &save))
        parts[n++] = tok;
    if (n != 5 || tok || strcmp(parts[4], "aws4_request") != 0 || strlen(parts[1]) != 8)
        return ML_ERR;
    if (ml_strlcpy(a->access_key, parts[0], sizeof(a->access_key)) != ML_OK ||
        ml_strlcpy(a->date, parts[1], sizeof(a->date)) != ML_OK ||
        ml_strlcpy(a->region, parts[2], sizeof(a->region)) != ML_OK ||
        ml_strlcpy(a->service, parts[3], sizeof(a->service)) != ML_OK)
        return ML_ERR;
    return ML_OK;
}

static int parse_auth(const char *authz, sigv4_auth *a, char *err, size_t errlen)
{
    char cred[512];

    memset(a, 0, sizeof(*a));
    if (!gw_sigv4_present(authz) || auth_field(authz, "Credential", cred, sizeof(cred)) != ML_OK ||
        parse_credential(cred, a) != ML_OK ||
        auth_field(authz, "SignedHeaders", a->signed_headers, sizeof(a->signed_headers)) != ML_OK ||
        auth_field(authz, "Signature", a->signature, sizeof(a->signature)) != ML_OK ||
        strlen(a->signature) != 64)
        return fail(err, errlen, "malformed AWS4-HMAC-SHA256 Authorization header");
    if (strspn(a->signed_headers, "abcdefghijklmnopqrstuvwxyz0123456789-;") !=
        strlen(a->signed_headers))
        return fail(err, errlen, "SignedHeaders must be lower-case names separated by ';'");
    return ML_OK;
}

int gw_sigv4_access_key(const char *authorization, char *out, size_t outlen)
{
    sigv4_auth a;
    char err[64];

    if (parse_auth(authorization, &a, err, sizeof(err)) != ML_OK)
        return ML_ERR;
    return ml_strlcpy(out, a.access_key, outlen);
}

/* YYYYMMDDTHHMMSSZ to unix seconds. */
static int parse_amz_date(const char *s, int64_t *out)
{
    struct tm tm = { 0 };
    char tail;

    if (!s || strlen(s) != 16 ||
        sscanf(s, "%4d%2d%2dT%2d%2d%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &tail) != 7 || tail != 'Z')
        return ML_ERR;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm);
    return ML_OK;
}

/* "/a b/c" -> each segment URI-encoded twice (SigV4 for every service but S3). */
static int canonical_uri(const char *path, ml_buf *out)
{
    const char *p = path && *path ? path : "/";

    while (*p) {
        size_t len;
        ml_buf once = { 0 };
        int rc;

        if (*p == '/') {
            if (ml_buf_append(out, "/", 1) != ML_OK)
                return ML_ERR;
            p++;
            continue;
        }
        len = strcspn(p, "/");
        rc = gw_sigv4_uri_encode(p, len, &once);
        if (rc == ML_OK)
            rc = gw_sigv4_uri_encode(ml_buf_cstr(&once), once.len, out);
        ml_buf_free(&once);
        if (rc != ML_OK)
            return ML_ERR;
        p += len;
    }
    return ML_OK;
}

/* "name:value\n" with the value trimmed and inner runs of spaces collapsed. */
static int canonical_header(const char *name, const char *value, ml_buf *out)
{
    bool space = false;

    if (ml_buf_printf(out, "%s:", name) != ML_OK)
        return ML_ERR;
    value += strspn(value, " \t");
    for (const char *v = value; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if ((space && ml_buf_append(out, " ", 1) != ML_OK) || ml_buf_append(out, v, 1) != ML_OK)
            return ML_ERR;
        space = false;
    }
    return ml_buf_append(out, "\n", 1);
}

static int canonical_headers(const gw_sigv4_request *r, const char *signed_headers, ml_buf *out,
                             char *err, size_t errlen)
{
    char copy[1024], *save = NULL;
    bool host = false;

    ml_strlcpy(copy, signed_headers, sizeof(copy));
    for (char *h = strtok_r(copy, ";", &save); h; h = strtok_r(NULL, ";", &save)) {
        const char *v = r->header(r->header_ud, h);

        if (!v) {
            ml_snprintf_trunc(err, errlen, "signed header '%s' is missing from the request", h);
            return ML_ERR;
        }
        host = host || strcmp(h, "host") == 0;
        if (canonical_header(h, v, out) != ML_OK)
            return fail(err, errlen, "canonical request too large");
    }
    if (!host)
        return fail(err, errlen, "SignedHeaders must include host");
    return ML_OK;
}

/* The body hash the client signed: the real one, or UNSIGNED-PAYLOAD if it says so. */
static int payload_hash(const gw_sigv4_request *r, char out[CRYPTO_SHA256_HEX_LEN], char *err,
                        size_t errlen)
{
    const char *claimed = r->header(r->header_ud, "x-amz-content-sha256");

    crypto_sha256_hex(r->body ? r->body : "", r->body_len, out);
    if (!claimed || strcasecmp(claimed, out) == 0)
        return ML_OK;
    if (strcmp(claimed, "UNSIGNED-PAYLOAD") == 0) {
        ml_strlcpy(out, claimed, CRYPTO_SHA256_HEX_LEN);
        return ML_OK;
    }
    return fail(err, errlen, "x-amz-content-sha256 does not match the body");
}

static int canonical_request(const gw_sigv4_request *r, const sigv4_auth *a, ml_buf *out,
                             char *err, size_t errlen)
{
    char hash[CRYPTO_SHA256_HEX_LEN];

    ml_buf_init(out, MAX_CANONICAL);
    if (payload_hash(r, hash, err, errlen) != ML_OK)
        return ML_ERR;
    if (ml_buf_printf(out, "%s\n", r->method) != ML_OK || canonical_uri(r->path, out) != ML_OK ||
        ml_buf_printf(out, "\n%s\n", r->query ? r->query : "") != ML_OK)
        return fail(err, errlen, "canonical request too large");
    if (canonical_headers(r, a->signed_headers, out, err, errlen) != ML_OK)
        return ML_ERR;
    if (ml_buf_printf(out, "\n%s\n%s", a->signed_headers, hash) != ML_OK)
        return fail(err, errlen, "canonical request too large");
    return ML_OK;
}

/* HMAC chain: AWS4+secret -> date -> region -> service -> aws4_request -> string to sign. */
static int signature(const gw_sigv4_creds *c, const sigv4_auth *a, const char *sts,
                     char out[CRYPTO_SHA256_HEX_LEN])
{
    unsigned char k[CRYPTO_SHA256_LEN];
    char seed[300];
    const char *steps[] = { a->date, a->region, a->service, "aws4_request" };

    if (ml_snprintf(seed, sizeof(seed), "AWS4%s", c->secret_key) != ML_OK ||
        crypto_hmac_sha256(seed, strlen(seed), steps[0], strlen(steps[0]), k) != ML_OK)
        return ML_ERR;
    for (size_t i = 1; i < ML_ARRAY_LEN(steps); i++) {
        if (crypto_hmac_sha256(k, sizeof(k), steps[i], strlen(steps[i]), k) != ML_OK)
            return ML_ERR;
    }
    if (crypto_hmac_sha256(k, sizeof(k), sts, strlen(sts), k) != ML_OK)
        return ML_ERR;
    crypto_hex_encode(k, sizeof(k), out);
    return ML_OK;
}

static int check_scope(const gw_sigv4_request *r, const gw_sigv4_creds *c, const sigv4_auth *a,
                       int64_t now_s, const char **amz_date, char *err, size_t errlen)
{
    int64_t t;

    if (strcmp(a->access_key, c->access_key) != 0)
        return fail(err, errlen, "unknown access key id");
    if (strcmp(a->service, c->service) != 0) {
        ml_snprintf_trunc(err, errlen, "credential scope names service '%s', expected '%s'",
                          a->service, c->service);
        return ML_ERR;
    }
    *amz_date = r->header(r->header_ud, "x-amz-date");
    if (parse_amz_date(*amz_date, &t) != ML_OK || strncmp(*amz_date, a->date, 8) != 0)
        return fail(err, errlen, "X-Amz-Date is missing, malformed or not the credential's date");
    if (t > now_s + GW_SIGV4_MAX_SKEW_S || t < now_s - GW_SIGV4_MAX_SKEW_S)
        return fail(err, errlen, "signature expired: X-Amz-Date is more than 15 minutes off");
    return ML_OK;
}

int gw_sigv4_verify(const gw_sigv4_request *r, const gw_sigv4_creds *creds, int64_t now_s,
                    char *err, size_t errlen)
{
    sigv4_auth a;
    ml_buf creq = { 0 }, sts = { 0 };
    char creq_hash[CRYPTO_SHA256_HEX_LEN], want[CRYPTO_SHA256_HEX_LEN];
    const char *amz_date = NULL;
    int rc = ML_ERR;

    if (!creds->access_key || !*creds->access_key || !creds->secret_key || !*creds->secret_key)
        return fail(err, errlen, "SigV4 is not enabled on this gateway");
    if (parse_auth(r->authorization, &a, err, errlen) != ML_OK ||
        check_scope(r, creds, &a, now_s, &amz_date, err, errlen) != ML_OK ||
        canonical_request(r, &a, &creq, err, errlen) != ML_OK)
        goto out;
    crypto_sha256_hex(creq.data, creq.len, creq_hash);
    if (ml_buf_printf(&sts, ALGORITHM "\n%s\n%s/%s/%s/aws4_request\n%s", amz_date, a.date,
                      a.region, a.service, creq_hash) != ML_OK ||
        signature(creds, &a, ml_buf_cstr(&sts), want) != ML_OK) {
        fail(err, errlen, "cannot compute the signature");
        goto out;
    }
    if (CRYPTO_memcmp(want, a.signature, 64) != 0) {
        fail(err, errlen, "the request signature does not match (check the secret key)");
        goto out;
    }
    rc = ML_OK;
out:
    ml_buf_free(&creq);
    ml_buf_free(&sts);
    return rc;
}

/* One query argument, encoded. */
typedef struct sigv4_qarg {
    char *k, *v;
} sigv4_qarg;

static int cmp_qarg(const void *a, const void *b)
{
    const sigv4_qarg *x = a, *y = b;
    int c = strcmp(x->k, y->k);

    return c ? c : strcmp(x->v, y->v);
}

static char *encoded(const char *s)
{
    ml_buf b = { 0 };

    if (gw_sigv4_uri_encode(s, strlen(s), &b) != ML_OK) {
        ml_buf_free(&b);
        return NULL;
    }
    return ml_buf_steal(&b, NULL); /* NUL-terminated, "" when empty */
}

int gw_sigv4_canonical_query(const char *const *keys, const char *const *values, size_t n,
                             ml_buf *out)
{
    sigv4_qarg *args = calloc(n ? n : 1, sizeof(*args));
    int rc = args ? ML_OK : ML_ERR;

    for (size_t i = 0; i < n && rc == ML_OK; i++) {
        args[i].k = encoded(keys[i]);
        args[i].v = encoded(values[i] ? values[i] : "");
        rc = args[i].k && args[i].v ? ML_OK : ML_ERR;
    }
    if (rc == ML_OK)
        qsort(args, n, sizeof(*args), cmp_qarg); /* by key, then value (SigV4) */
    for (size_t i = 0; i < n && rc == ML_OK; i++)
        rc = ml_buf_printf(out, "%s%s=%s", i ? "&" : "", args[i].k, args[i].v);
    for (size_t i = 0; args && i < n; i++) {
        free(args[i].k);
        free(args[i].v);
    }
    free(args);
    return rc;
}
