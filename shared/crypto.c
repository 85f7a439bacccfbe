/* crypto.c — SHA-256, HMAC-SHA256, base64 and random bytes over OpenSSL 3. */
#include "crypto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

void crypto_hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

int crypto_hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX_LEN])
{
    unsigned char md[CRYPTO_SHA256_LEN];

    /* EVP_Digest with SHA-256 cannot fail short of memory corruption. */
    EVP_Digest(data, len, md, NULL, EVP_sha256(), NULL);
    crypto_hex_encode(md, sizeof(md), out);
}

int crypto_sha256_file_hex(const char *path, char out[CRYPTO_SHA256_HEX_LEN], int64_t *size,
                           char *err, size_t errlen)
{
    unsigned char md[CRYPTO_SHA256_LEN];
    unsigned char chunk[64 * 1024];
    EVP_MD_CTX *ctx = NULL;
    FILE *f = NULL;
    int64_t total = 0;
    size_t n;
    int rc = ML_ERR;

    f = fopen(path, "rb");
    if (!f) {
        ml_snprintf_trunc(err, errlen, "open %s: %s", path, strerror(errno));
        goto out;
    }
    ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        ml_snprintf_trunc(err, errlen, "sha256 %s: OpenSSL digest init failed", path);
        goto out;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        EVP_DigestUpdate(ctx, chunk, n);
        total += (int64_t)n;
    }
    if (ferror(f)) {
        ml_snprintf_trunc(err, errlen, "read %s: %s", path, strerror(errno));
        goto out;
    }
    EVP_DigestFinal_ex(ctx, md, NULL);
    crypto_hex_encode(md, sizeof(md), out);
    if (size)
        *size = total;
    rc = ML_OK;
out:
    EVP_MD_CTX_free(ctx);
    if (f)
        fclose(f);
    return rc;
}

int crypto_hmac_sha256_parts(const void *key, size_t keylen, const crypto_span *parts,
                             size_t nparts, unsigned char out[CRYPTO_SHA256_LEN])
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC *mac = NULL;
    EVP_MAC_CTX *ctx = NULL;
    size_t outlen = 0, i;
    int rc = ML_ERR;

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    if (!ctx || !EVP_MAC_init(ctx, key, keylen, params))
        goto out;
    for (i = 0; i < nparts; i++)
        if (parts[i].len && !EVP_MAC_update(ctx, parts[i].data, parts[i].len))
            goto out;
    if (!EVP_MAC_final(ctx, out, &outlen, CRYPTO_SHA256_LEN) || outlen != CRYPTO_SHA256_LEN)
        goto out;
    rc = ML_OK;
out:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

int crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                       unsigned char out[CRYPTO_SHA256_LEN])
{
    crypto_span part = { data, len };

    return crypto_hmac_sha256_parts(key, keylen, &part, 1, out);
}

int crypto_base64_encode(const void *in, size_t len, char *out, size_t outsize)
{
    const unsigned char *p = in;
    size_t done = 0;

    if (len > (SIZE_MAX / 4) * 3 - 3 || outsize < CRYPTO_BASE64_ENC_SIZE(len))
        return ML_ERR;
    /* EVP_EncodeBlock takes an int length: feed it in chunks that are multiples of 3. */
    while (len - done > 0) {
        size_t n = len - done > 3u * 1024 * 1024 ? 3u * 1024 * 1024 : len - done;
        int w = EVP_EncodeBlock((unsigned char *)out, p + done, (int)n);
        out += w;
        done += n;
    }
    *out = '\0';
    return ML_OK;
}

static int b64_valid_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

/* Number of '=' pad chars (0..2) if in is well-formed padded base64, else -1. */
static int b64_check(const char *in, size_t inlen)
{
    size_t i, pad = 0;

    if (inlen % 4 != 0)
        return -1;
    if (inlen > 0 && in[inlen - 1] == '=')
        pad = (inlen > 1 && in[inlen - 2] == '=') ? 2 : 1;
    for (i = 0; i < inlen - pad; i++)
        if (!b64_valid_char(in[i]))
            return -1;
    return (int)pad;
}

int crypto_base64_decode(const char *in, size_t inlen, unsigned char *out, size_t outsize,
                         size_t *outlen)
{
    unsigned char last[3];
    size_t body, need;
    int pad = b64_check(in, inlen);

    if (pad < 0)
        return ML_ERR;
    *outlen = 0;
    if (inlen == 0)
        return ML_OK;
    need = inlen / 4 * 3 - (size_t)pad;
    if (need > outsize || inlen > INT32_MAX)
        return ML_ERR;
    /* EVP_DecodeBlock writes whole 3-byte groups (pad bytes as zeros): decode all but the
     * final quad straight into out, and the final quad via a scratch buffer. */
    body = inlen - 4;
    if (body > 0 && EVP_DecodeBlock(out, (const unsigned char *)in, (int)body) < 0)
        return ML_ERR;
    if (EVP_DecodeBlock(last, (const unsigned char *)in + body, 4) != 3)
        return ML_ERR;
    memcpy(out + body / 4 * 3, last, 3 - (size_t)pad);
    *outlen = need;
    return ML_OK;
}

int crypto_random(void *buf, size_t len)
{
    if (len > INT32_MAX)
        return ML_ERR;
    return RAND_bytes(buf, (int)len) == 1 ? ML_OK : ML_ERR;
}
