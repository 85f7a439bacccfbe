/* webhook.c — Standard Webhooks signatures (HMAC-SHA256 over "id.timestamp.body"). */
#include "webhook.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"

#define SECRET_PREFIX "whsec_"
#define SECRET_PREFIX_LEN 6
/* base64 of a 32-byte MAC. */
#define MAC_B64_LEN 44

int webhook_secret_new(char out[WEBHOOK_SECRET_LEN])
{
    unsigned char key[32];

    if (crypto_random(key, sizeof(key)) != ML_OK)
        return ML_ERR;
    memcpy(out, SECRET_PREFIX, SECRET_PREFIX_LEN);
    return crypto_base64_encode(key, sizeof(key), out + SECRET_PREFIX_LEN,
                                WEBHOOK_SECRET_LEN - SECRET_PREFIX_LEN);
}

/* Decodes the key bytes of a "whsec_..." secret; *keylen is 0 if malformed. */
static int secret_key(const char *secret, unsigned char key[WEBHOOK_KEY_MAX], size_t *keylen)
{
    size_t len;

    *keylen = 0;
    if (!secret || strncmp(secret, SECRET_PREFIX, SECRET_PREFIX_LEN) != 0)
        return ML_ERR;
    len = strlen(secret + SECRET_PREFIX_LEN);
    if (len > CRYPTO_BASE64_ENC_SIZE(WEBHOOK_KEY_MAX) ||
        crypto_base64_decode(secret + SECRET_PREFIX_LEN, len, key, WEBHOOK_KEY_MAX, keylen) !=
            ML_OK ||
        *keylen < WEBHOOK_KEY_MIN) {
        *keylen = 0;
        return ML_ERR;
    }
    return ML_OK;
}

int webhook_secret_valid(const char *secret)
{
    unsigned char key[WEBHOOK_KEY_MAX];
    size_t keylen;

    return secret_key(secret, key, &keylen);
}

static int msg_id_valid(const char *id)
{
    size_t i, len = strlen(id);

    if (len == 0 || len > WEBHOOK_ID_MAX)
        return ML_ERR;
    for (i = 0; i < len; i++)
        if (id[i] <= 0x20 || id[i] >= 0x7f)
            return ML_ERR;
    return ML_OK;
}

/* base64 MAC (no "v1," prefix) into out[MAC_B64_LEN + 1]. */
static int sign_b64(const unsigned char *key, size_t keylen, const char *msg_id,
                    int64_t timestamp, const void *body, size_t len, char *out)
{
    unsigned char mac[CRYPTO_SHA256_LEN];
    char ts[24];
    crypto_span parts[5];

    if (ml_snprintf(ts, sizeof(ts), "%" PRId64, timestamp) != ML_OK) /* signed: never cut */
        return ML_ERR;
    parts[0] = (crypto_span){ msg_id, strlen(msg_id) };
    parts[1] = (crypto_span){ ".", 1 };
    parts[2] = (crypto_span){ ts, strlen(ts) };
    parts[3] = (crypto_span){ ".", 1 };
    parts[4] = (crypto_span){ body, len };
    if (crypto_hmac_sha256_parts(key, keylen, parts, ML_ARRAY_LEN(parts), mac) != ML_OK)
        return ML_ERR;
    return crypto_base64_encode(mac, sizeof(mac), out, MAC_B64_LEN + 1);
}

int webhook_sign(const char *secret, const char *msg_id, int64_t timestamp, const void *body,
                 size_t len, char out[WEBHOOK_SIGNATURE_LEN])
{
    unsigned char key[WEBHOOK_KEY_MAX];
    size_t keylen;

    if (secret_key(secret, key, &keylen) != ML_OK || !msg_id || msg_id_valid(msg_id) != ML_OK ||
        timestamp < 0)
        return ML_ERR;
    memcpy(out, "v1,", 3);
    return sign_b64(key, keylen, msg_id, timestamp, body, len, out + 3);
}

/* ML_OK if any space-separated "v1,<b64>" entry of header equals expected. */
static int signature_match(const char *header, const char *expected)
{
    const char *p = header;

    while (*p) {
        size_t n;

        while (*p == ' ')
            p++;
        n = strcspn(p, " ");
        if (n == 3 + MAC_B64_LEN && memcmp(p, "v1,", 3) == 0 &&
            CRYPTO_memcmp(p + 3, expected, MAC_B64_LEN) == 0)
            return ML_OK;
        p += n;
    }
    return ML_ERR;
}

static int fail(char *reason, size_t reason_len, const char *why)
{
    ml_snprintf_trunc(reason, reason_len, "%s", why);
    return ML_ERR;
}

int webhook_verify(const char *secret, const char *msg_id, const char *timestamp,
                   const char *signature, const void *body, size_t len, int64_t now,
                   char *reason, size_t reason_len)
{
    unsigned char key[WEBHOOK_KEY_MAX];
    char expected[MAC_B64_LEN + 1];
    size_t keylen;
    int64_t ts;

    if (secret_key(secret, key, &keylen) != ML_OK)
        return fail(reason, reason_len, "malformed secret (want whsec_ + base64 of 24..64 bytes)");
    if (!msg_id || !timestamp || !signature)
        return fail(reason, reason_len, "missing webhook-id, webhook-timestamp or webhook-signature header");
    if (msg_id_valid(msg_id) != ML_OK)
        return fail(reason, reason_len, "invalid webhook-id");
    if (ml_parse_int64(timestamp, 0, INT64_MAX / 2, &ts) != ML_OK)
        return fail(reason, reason_len, "invalid webhook-timestamp");
    if (now - ts > WEBHOOK_TOLERANCE_S)
        return fail(reason, reason_len, "timestamp too old");
    if (ts - now > WEBHOOK_TOLERANCE_S)
        return fail(reason, reason_len, "timestamp too far in the future");
    if (sign_b64(key, keylen, msg_id, ts, body, len, expected) != ML_OK)
        return fail(reason, reason_len, "HMAC computation failed");
    if (signature_match(signature, expected) != ML_OK)
        return fail(reason, reason_len, "no matching v1 signature");
    return ML_OK;
}
