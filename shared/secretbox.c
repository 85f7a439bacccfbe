/* secretbox.c — AES-256-GCM sealing of secrets at rest (see secretbox.h). */
#include "secretbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "crypto.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define PREFIX_LEN (sizeof(SECRETBOX_PREFIX) - 1)
/* "enc:v1:" + kid + ":" */
#define HEAD_LEN (PREFIX_LEN + SECRETBOX_KID_LEN)
/* Longest sealed value opened: far above any env (FNSPEC_ENV_BYTES_MAX) or whsec_ secret. */
#define SEALED_MAX (64 * 1024)

static secretbox g_box;

int secretbox_key_parse(const char *b64, secretbox_key *k, char *err, size_t errlen)
{
    unsigned char buf[CRYPTO_BASE64_DEC_MAX(64)], md[CRYPTO_SHA256_LEN];
    const char *s = b64;
    size_t n, got = 0;
    static const char label[] = "minilambda-secretbox-kid:";
    crypto_span parts[2];
    EVP_MD_CTX *ctx;

    memset(k, 0, sizeof(*k));
    while (s && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
        s++;
    n = s ? strlen(s) : 0;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    if (n == 0 || n > 64 || crypto_base64_decode(s, n, buf, sizeof(buf), &got) != ML_OK ||
        got != SECRETBOX_KEY_LEN) {
        ml_snprintf_trunc(err, errlen, "must be standard base64 of exactly %d bytes", SECRETBOX_KEY_LEN);
        OPENSSL_cleanse(buf, sizeof(buf));
        return ML_ERR;
    }
    memcpy(k->key, buf, SECRETBOX_KEY_LEN);
    OPENSSL_cleanse(buf, sizeof(buf));
    parts[0] = (crypto_span){ label, sizeof(label) - 1 };
    parts[1] = (crypto_span){ k->key, SECRETBOX_KEY_LEN };
    if (!(ctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(ctx, parts[0].data, parts[0].len) ||
        !EVP_DigestUpdate(ctx, parts[1].data, parts[1].len) || !EVP_DigestFinal_ex(ctx, md, NULL)) {
        EVP_MD_CTX_free(ctx);
        ml_snprintf_trunc(err, errlen, "OpenSSL digest failed");
        return ML_ERR;
    }
    EVP_MD_CTX_free(ctx);
    crypto_hex_encode(md, 4, k->kid);
    k->set = true;
    return ML_OK;
}

/* AAD = "enc:v1:<kid>:" ctx, into aad (size >= HEAD_LEN + strlen(ctx) + 1). */
static int aad_make(const char *kid, const char *ctx, char *aad, size_t size)
{
    return ml_snprintf(aad, size, "%s%s:%s", SECRETBOX_PREFIX, kid, ctx ? ctx : "");
}

/* One AES-256-GCM pass. enc: in → out and tag written; !enc: tag checked. ML_ERR on failure
 * (for decryption: the tag did not verify). */
static int gcm(bool enc, const unsigned char *key, const unsigned char *nonce, const char *aad,
               const unsigned char *in, size_t n, unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok;

    if (!c || n > (size_t)SEALED_MAX)
        ok = 0;
    else if (enc)
        ok = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) &&
             EVP_EncryptUpdate(c, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) &&
             EVP_EncryptUpdate(c, out, &len, in, (int)n) && EVP_EncryptFinal_ex(c, out + len, &len) &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag);
    else
        ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) &&
             EVP_DecryptUpdate(c, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) &&
             EVP_DecryptUpdate(c, out, &len, in, (int)n) &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) &&
             EVP_DecryptFinal_ex(c, out + len, &len) > 0;
    EVP_CIPHER_CTX_free(c);
    return ok ? ML_OK : ML_ERR;
}

/* Caller frees *out. */
int secretbox_seal(const secretbox *sb, const char *ctx, const void *pt, size_t n, char **out)
{
    size_t raw_len = NONCE_LEN + n + TAG_LEN, text_size = HEAD_LEN + CRYPTO_BASE64_ENC_SIZE(raw_len);
    size_t aad_size = HEAD_LEN + strlen(ctx ? ctx : "") + 1;
    unsigned char *raw = NULL;
    char *aad = NULL, *text = NULL;
    int rc = ML_ERR;

    *out = NULL;
    if (!sb || !sb->cur.set || n > SEALED_MAX)
        return ML_ERR;
    if (!(raw = malloc(raw_len)) || !(aad = malloc(aad_size)) || !(text = malloc(text_size)))
        goto out;
    if (crypto_random(raw, NONCE_LEN) != ML_OK || aad_make(sb->cur.kid, ctx, aad, aad_size) != ML_OK ||
        gcm(true, sb->cur.key, raw, aad, pt, n, raw + NONCE_LEN, raw + NONCE_LEN + n) != ML_OK ||
        ml_snprintf(text, text_size, "%s%s:", SECRETBOX_PREFIX, sb->cur.kid) != ML_OK ||
        crypto_base64_encode(raw, raw_len, text + HEAD_LEN, text_size - HEAD_LEN) != ML_OK)
        goto out;
    *out = text;
    text = NULL;
    rc = ML_OK;
out:
    free(raw);
    free(aad);
    free(text);
    return rc;
}

bool secretbox_is_sealed(const char *s)
{
    return s && strncmp(s, SECRETBOX_PREFIX, PREFIX_LEN) == 0;
}

bool secretbox_is_current(const secretbox *sb, const char *s)
{
    return sb && sb->cur.set && secretbox_is_sealed(s) && strlen(s) > HEAD_LEN &&
           strncmp(s + PREFIX_LEN, sb->cur.kid, SECRETBOX_KID_LEN - 1) == 0 && s[HEAD_LEN - 1] == ':';
}

/* The key sealed text names, or NULL (err written). */
static const secretbox_key *key_for(const secretbox *sb, const char *sealed, char *err, size_t errlen)
{
    if (!secretbox_is_sealed(sealed) || strlen(sealed) <= HEAD_LEN || sealed[HEAD_LEN - 1] != ':') {
        ml_snprintf_trunc(err, errlen, "not a sealed value (%s<kid>:<base64>)", SECRETBOX_PREFIX);
        return NULL;
    }
    if (sb && sb->cur.set && strncmp(sealed + PREFIX_LEN, sb->cur.kid, SECRETBOX_KID_LEN - 1) == 0)
        return &sb->cur;
    if (sb && sb->old.set && strncmp(sealed + PREFIX_LEN, sb->old.kid, SECRETBOX_KID_LEN - 1) == 0)
        return &sb->old;
    ml_snprintf_trunc(err, errlen, "sealed under key id %.8s, which is neither MINILAMBDA_SECRETS_KEY"
                      " nor MINILAMBDA_SECRETS_KEY_OLD", sealed + PREFIX_LEN);
    return NULL;
}

/* Caller frees *out. */
int secretbox_open(const secretbox *sb, const char *ctx, const char *sealed, char **out,
                   char *err, size_t errlen)
{
    const secretbox_key *k;
    size_t b64_len, raw_len = 0, aad_size = HEAD_LEN + strlen(ctx ? ctx : "") + 1, n;
    unsigned char *raw = NULL;
    char *aad = NULL, *pt = NULL;
    int rc = ML_ERR;

    *out = NULL;
    if (!(k = key_for(sb, sealed, err, errlen)))
        return ML_ERR;
    b64_len = strlen(sealed + HEAD_LEN);
    if (b64_len > SEALED_MAX || !(raw = malloc(CRYPTO_BASE64_DEC_MAX(b64_len) + 1)) ||
        !(aad = malloc(aad_size))) {
        ml_snprintf_trunc(err, errlen, b64_len > SEALED_MAX ? "sealed value too long" : "out of memory");
        goto out;
    }
    if (crypto_base64_decode(sealed + HEAD_LEN, b64_len, raw, CRYPTO_BASE64_DEC_MAX(b64_len) + 1,
                             &raw_len) != ML_OK || raw_len < NONCE_LEN + TAG_LEN) {
        ml_snprintf_trunc(err, errlen, "sealed value is not valid base64 of nonce, ciphertext and tag");
        goto out;
    }
    n = raw_len - NONCE_LEN - TAG_LEN;
    if (!(pt = malloc(n + 1)) || aad_make(k->kid, ctx, aad, aad_size) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "out of memory");
        goto out;
    }
    if (gcm(false, k->key, raw, aad, raw + NONCE_LEN, n, (unsigned char *)pt, raw + NONCE_LEN + n) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "sealed value does not verify under key id %s (tampered, or"
                          " sealed for another variable)", k->kid);
        OPENSSL_cleanse(pt, n + 1);
        goto out;
    }
    pt[n] = '\0';
    *out = pt;
    pt = NULL;
    rc = ML_OK;
out:
    free(raw);
    free(aad);
    free(pt);
    return rc;
}

/* Replaces e's value string by s (copied). */
static int set_value(cJSON *env, cJSON *e, const char *s)
{
    cJSON *v = cJSON_CreateString(s);

    /* ...InObject gives the new item e's name (ReplaceItemViaPointer would leave it nameless) */
    if (v && cJSON_ReplaceItemInObjectCaseSensitive(env, e->string, v))
        return ML_OK;
    cJSON_Delete(v);
    return ML_ERR;
}

int secretbox_env_seal(const secretbox *sb, cJSON *env, bool *changed, char *err, size_t errlen)
{
    cJSON *e, *next;

    if (changed)
        *changed = false;
    if (!cJSON_IsObject(env))
        return ML_OK;
    for (e = env->child; e; e = next) {
        char *pt = NULL, *sealed = NULL;
        int rc;

        next = e->next;
        if (!cJSON_IsString(e) || secretbox_is_current(sb, e->valuestring))
            continue;
        if (secretbox_is_sealed(e->valuestring) &&
            secretbox_open(sb, e->string, e->valuestring, &pt, err, errlen) != ML_OK)
            return ML_ERR;
        rc = secretbox_seal(sb, e->string, pt ? pt : e->valuestring, strlen(pt ? pt : e->valuestring), &sealed);
        if (pt) {
            OPENSSL_cleanse(pt, strlen(pt));
            free(pt);
        }
        if (rc != ML_OK || set_value(env, e, sealed) != ML_OK) {
            free(sealed);
            ml_snprintf_trunc(err, errlen, "cannot seal env variable %s (no key, or OpenSSL failed)", e->string);
            return ML_ERR;
        }
        free(sealed);
        if (changed)
            *changed = true;
    }
    return ML_OK;
}

int secretbox_env_render(const secretbox *sb, cJSON *env, bool reveal, char *err, size_t errlen)
{
    cJSON *e, *next;

    if (!cJSON_IsObject(env))
        return ML_OK;
    for (e = env->child; e; e = next) {
        char *pt = NULL;
        int rc;

        next = e->next;
        if (!reveal || !cJSON_IsString(e)) {
            rc = set_value(env, e, SECRETBOX_REDACTED);
        } else if (!secretbox_is_sealed(e->valuestring)) {
            continue; /* a value from before encryption (sealed at the next start) */
        } else {
            if (secretbox_open(sb, e->string, e->valuestring, &pt, err, errlen) != ML_OK)
                return ML_ERR;
            rc = set_value(env, e, pt);
            OPENSSL_cleanse(pt, strlen(pt));
            free(pt);
        }
        if (rc != ML_OK) {
            ml_snprintf_trunc(err, errlen, "out of memory");
            return ML_ERR;
        }
    }
    return ML_OK;
}

/* The key text from NAME or NAME_FILE into buf; ML_OK with buf "" when neither is set. */
static int key_text(const char *name, char *buf, size_t size, char *err, size_t errlen)
{
    char fname[64];
    const char *v = getenv(name), *path;
    FILE *f;
    size_t n;

    buf[0] = '\0';
    if (v && v[0])
        return ml_strlcpy(buf, v, size) == ML_OK ? ML_OK
               : (ml_snprintf_trunc(err, errlen, "%s is too long", name), ML_ERR);
    if (ml_snprintf(fname, sizeof(fname), "%s_FILE", name) != ML_OK || !(path = getenv(fname)) || !path[0])
        return ML_OK;
    if (!(f = fopen(path, "r"))) {
        ml_snprintf_trunc(err, errlen, "%s: cannot open %s: %s", fname, path, strerror(errno));
        return ML_ERR;
    }
    n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    return ML_OK;
}

/* One key of the global box from NAME/NAME_FILE; required or optional. */
static int global_key(const char *name, bool required, secretbox_key *k, char *err, size_t errlen)
{
    char text[256], why[128];
    int rc;

    if (key_text(name, text, sizeof(text), err, errlen) != ML_OK)
        return ML_ERR;
    if (!text[0]) {
        if (required)
            ml_snprintf_trunc(err, errlen, "%s (or %s_FILE) is required: base64 of 32 random bytes"
                              " (head -c 32 /dev/urandom | base64); it encrypts function env values"
                              " at rest (docs/secrets.md)", name, name);
        return required ? ML_ERR : ML_OK;
    }
    rc = secretbox_key_parse(text, k, why, sizeof(why));
    OPENSSL_cleanse(text, sizeof(text));
    if (rc != ML_OK)
        ml_snprintf_trunc(err, errlen, "%s %s", name, why);
    return rc;
}

int secretbox_global_init(char *err, size_t errlen)
{
    secretbox b = { 0 };

    if (global_key("MINILAMBDA_SECRETS_KEY", true, &b.cur, err, errlen) != ML_OK ||
        global_key("MINILAMBDA_SECRETS_KEY_OLD", false, &b.old, err, errlen) != ML_OK)
        return ML_ERR;
    if (b.old.set && strcmp(b.old.kid, b.cur.kid) == 0)
        b.old.set = false; /* the same key twice: nothing to rotate from */
    g_box = b;
    OPENSSL_cleanse(&b, sizeof(b));
    return ML_OK;
}

const secretbox *secretbox_global(void)
{
    return &g_box;
}
