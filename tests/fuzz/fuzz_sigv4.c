/* libFuzzer target: the gateway's SigV4 verifier (services/gateway/sigv4.c), which sees the
 * Authorization header, headers, path, query and body of every AWS-style request.
 *
 * Input: lines separated by '\n': method, path, query, Authorization, then "name:value"
 * header lines until an empty line; the rest is the body. sigv4.c is included so the
 * harness can reuse its static canonicalisation to sign the request itself.
 * Oracles (besides ASan/UBSan):
 *   - a failure always has a non-empty, NUL-terminated reason;
 *   - the fuzzer's own signature is never accepted unless it is the right one, and no
 *     request verifies under two different secrets;
 *   - once the harness puts the correct signature into the Authorization header, a request
 *     whose scope, date and headers check out verifies; flipping one hex digit of it fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/gateway/sigv4.c"

#define NOW_S INT64_C(1767225600) /* 2026-01-01T00:00:00Z */
#define MAX_HEADERS 32

typedef struct fz_headers {
    size_t n;
    char *name[MAX_HEADERS];
    char *value[MAX_HEADERS];
} fz_headers;

static const char *fz_header(void *ud, const char *name)
{
    const fz_headers *h = ud;

    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->name[i], name) == 0)
            return h->value[i];
    return NULL;
}

/* Next line of [*p, end) as a NUL-terminated string (the buffer is a private copy). */
static char *next_line(char **p, char *end)
{
    char *s = *p, *nl;

    if (s >= end)
        return NULL;
    nl = memchr(s, '\n', (size_t)(end - s));
    if (!nl)
        nl = end;
    *nl = '\0';
    *p = nl + 1;
    return s;
}

static void check_fail_reason(const char *err, size_t errlen)
{
    if (err[0] == '\0' || strnlen(err, errlen) == errlen)
        abort();
}

/* Computes the signature the verifier expects for r under creds (ML_ERR if r cannot be
 * canonicalised or its header is not parseable). */
static int expected_signature(const gw_sigv4_request *r, const gw_sigv4_creds *creds,
                              char out[CRYPTO_SHA256_HEX_LEN])
{
    sigv4_auth a;
    ml_buf creq = { 0 }, sts = { 0 };
    char err[256], h[CRYPTO_SHA256_HEX_LEN];
    const char *amz_date;
    int rc = ML_ERR;

    if (parse_auth(r->authorization, &a, err, sizeof(err)) != ML_OK)
        return ML_ERR;
    amz_date = r->header(r->header_ud, "x-amz-date");
    if (!amz_date || canonical_request(r, &a, &creq, err, sizeof(err)) != ML_OK)
        goto out;
    crypto_sha256_hex(creq.data, creq.len, h);
    if (ml_buf_printf(&sts, ALGORITHM "\n%s\n%s/%s/%s/aws4_request\n%s", amz_date, a.date,
                      a.region, a.service, h) != ML_OK ||
        signature(creds, &a, ml_buf_cstr(&sts), out) != ML_OK)
        goto out;
    rc = ML_OK;
out:
    ml_buf_free(&creq);
    ml_buf_free(&sts);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const gw_sigv4_creds c1 = { "AKIDEXAMPLE", "secret-one", "lambda" };
    static const gw_sigv4_creds c2 = { "AKIDEXAMPLE", "secret-two", "lambda" };
    char *buf = malloc(size + 1), *p = buf, *end = buf + size, *line, *sig = NULL;
    char err[256], want[CRYPTO_SHA256_HEX_LEN];
    fz_headers hs = { 0 };
    gw_sigv4_request r = { 0 };
    size_t siglen = 0;
    int v1, v2;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    r.method = (line = next_line(&p, end)) ? line : "POST";
    r.path = (line = next_line(&p, end)) ? line : "/";
    r.query = (line = next_line(&p, end)) ? line : "";
    r.authorization = next_line(&p, end);
    while ((line = next_line(&p, end)) && *line && hs.n < MAX_HEADERS) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        hs.name[hs.n] = line;
        hs.value[hs.n++] = colon + 1;
    }
    r.header = fz_header;
    r.header_ud = &hs;
    r.body = p < end ? p : "";
    r.body_len = p < end ? (size_t)(end - p) : 0;

    gw_sigv4_present(r.authorization);
    v1 = gw_sigv4_verify(&r, &c1, NOW_S, err, sizeof(err));
    if (v1 != ML_OK)
        check_fail_reason(err, sizeof(err));
    v2 = gw_sigv4_verify(&r, &c2, NOW_S, err, sizeof(err));
    if (v2 != ML_OK)
        check_fail_reason(err, sizeof(err));
    if (v1 == ML_OK && v2 == ML_OK)
        abort(); /* one signature, two secrets */

    /* Sign it properly and expect acceptance when everything else checks out. The value is
     * found as the verifier finds it: a bare strstr() also hits "XSignature=", and flipping a
     * digit there proves nothing (CI found that one). */
    if (gw_sigv4_present(r.authorization))
        sig = (char *)auth_value(r.authorization, "Signature", &siglen);
    if (sig && siglen == 64 && expected_signature(&r, &c1, want) == ML_OK) {
        char *auth = (char *)r.authorization;
        int64_t t;
        const char *d = fz_header(&hs, "x-amz-date");
        sigv4_auth a;

        if (v1 == ML_OK && (parse_auth(auth, &a, err, sizeof(err)) != ML_OK ||
                            strcmp(a.signature, want) != 0))
            abort(); /* accepted a signature that is not the right one */
        memcpy(sig, want, 64);
        if (parse_auth(auth, &a, err, sizeof(err)) == ML_OK &&
            strcmp(a.signature, want) == 0 && strcmp(a.access_key, c1.access_key) == 0 &&
            strcmp(a.service, c1.service) == 0 && parse_amz_date(d, &t) == ML_OK &&
            strncmp(d, a.date, 8) == 0 && t <= NOW_S + GW_SIGV4_MAX_SKEW_S &&
            t >= NOW_S - GW_SIGV4_MAX_SKEW_S) {
            if (gw_sigv4_verify(&r, &c1, NOW_S, err, sizeof(err)) != ML_OK)
                abort(); /* correctly signed, refused */
            sig[0] = sig[0] == '0' ? '1' : '0';
            if (gw_sigv4_verify(&r, &c1, NOW_S, err, sizeof(err)) == ML_OK)
                abort(); /* one digit off, accepted */
        }
    }
    free(buf);
    return 0;
}
