/* crypto.h — small OpenSSL wrappers: SHA-256 (hex), HMAC-SHA256, strict base64, random bytes.
 * All functions are thread-safe (OpenSSL 3 needs no locking setup) and allocate nothing. */
#ifndef ML_CRYPTO_H
#define ML_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "ml.h"

#define CRYPTO_SHA256_LEN 32
/* 64 lower-case hex digits + NUL. */
#define CRYPTO_SHA256_HEX_LEN 65

/* Exact size of the base64 text for n input bytes, NUL included. */
#define CRYPTO_BASE64_ENC_SIZE(n) ((((n) + 2) / 3) * 4 + 1)
/* Upper bound of decoded bytes for a base64 text of n chars. */
#define CRYPTO_BASE64_DEC_MAX(n) (((n) / 4) * 3)

/* Lower-case hex SHA-256 of data[0..len). */
/* Lower-case hex of len bytes into out (2 * len + 1 bytes, NUL-terminated). */
void crypto_hex_encode(const unsigned char *in, size_t len, char *out);
/* The value of one hex digit (either case), -1 for any other character. */
int crypto_hex_digit(char ch);

void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX_LEN]);

/* Hex SHA-256 and byte count of a whole file, read in one streaming pass.
 * ML_ERR with a message in err (open/read failure) otherwise. size may be NULL. */
int crypto_sha256_file_hex(const char *path, char out[CRYPTO_SHA256_HEX_LEN], int64_t *size,
                           char *err, size_t errlen);

/* HMAC-SHA256 of data under key (keylen >= 1); ML_ERR only if OpenSSL fails. */
int crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                       unsigned char out[CRYPTO_SHA256_LEN]);

/* One piece of a message given in parts. */
typedef struct crypto_span {
    const void *data;
    size_t len;
} crypto_span;

/* HMAC-SHA256 of the concatenation of parts[0..nparts), without copying them together. */
int crypto_hmac_sha256_parts(const void *key, size_t keylen, const crypto_span *parts,
                             size_t nparts, unsigned char out[CRYPTO_SHA256_LEN]);

/* Standard padded base64 of in[0..len) into out (NUL-terminated).
 * ML_ERR if outsize < CRYPTO_BASE64_ENC_SIZE(len). */
int crypto_base64_encode(const void *in, size_t len, char *out, size_t outsize);

/* Strict decode of standard padded base64 (RFC 4648 §4): length a multiple of 4, only the
 * alphabet, '=' only as final padding, no whitespace. Writes *outlen bytes to out.
 * ML_ERR on malformed input or if outsize is too small. */
int crypto_base64_decode(const char *in, size_t inlen, unsigned char *out, size_t outsize,
                         size_t *outlen);

/* len cryptographically secure random bytes (RAND_bytes); ML_ERR if the CSPRNG fails. */
int crypto_random(void *buf, size_t len);

#endif
