/* secretbox.h — secrets at rest: AES-256-GCM (OpenSSL EVP) under a platform key, with the
 * key's id stored beside each ciphertext so keys can rotate (docs/secrets.md).
 *
 * Sealed text: "enc:v1:<kid>:<base64(nonce[12] | ciphertext | tag[16])>", kid = 8 lower-case
 * hex digits of SHA-256("minilambda-secretbox-kid:" key). The AAD is "enc:v1:<kid>:" plus a
 * caller-chosen context (for env: the variable's name), so a ciphertext cannot be moved to
 * another variable or relabelled with another key id.
 *
 * A secretbox holds the current key (seals and opens) and optionally the previous one (opens
 * only, MINILAMBDA_SECRETS_KEY_OLD during a rotation). Read-only after init: thread-safe.
 * The process-wide box (secretbox_global) is set once at startup, before threads start. */
#ifndef ML_SECRETBOX_H
#define ML_SECRETBOX_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#include "ml.h"

#define SECRETBOX_KEY_LEN 32
#define SECRETBOX_KID_LEN 9 /* 8 hex + NUL */
#define SECRETBOX_PREFIX "enc:v1:"
/* Set by the gateway (and only by it: it strips the header from every client request) when
 * the caller's token holds the functions:secrets scope; the lambda-executor then shows env
 * values in its responses. Anything else ("", absent) shows names only. */
#define SECRETBOX_REVEAL_HEADER "X-Minilambda-Reveal-Secrets"
#define SECRETBOX_REVEAL_VALUE "1"

/* The MINILAMBDA_SECRETS_KEY setting's description, one text for every daemon that reads it. */
#define SECRETBOX_KEY_HELP                                                                    \
    "base64 of 32 bytes: the AES-256-GCM key sealing env values at rest (required; or"       \
    " MINILAMBDA_SECRETS_KEY_FILE; MINILAMBDA_SECRETS_KEY_OLD during a rotation: docs/secrets.md)"

/* What a caller sees instead of an env value it may not read. */
#define SECRETBOX_REDACTED "***"

typedef struct secretbox_key {
    bool set;
    unsigned char key[SECRETBOX_KEY_LEN];
    char kid[SECRETBOX_KID_LEN];
} secretbox_key;

typedef struct secretbox {
    secretbox_key cur; /* seals and opens */
    secretbox_key old; /* opens only (rotation); .set false when none */
} secretbox;

/* Key from standard base64 of exactly 32 bytes (surrounding whitespace ignored, so a key
 * file may end in a newline). ML_ERR with a reason that never quotes the key. */
int secretbox_key_parse(const char *b64, secretbox_key *k, char *err, size_t errlen);

/* Seals n bytes of pt under sb->cur with context ctx (NUL-terminated, may be ""). ML_OK with
 * *out the sealed text (caller frees with free()), ML_ERR if no key or OpenSSL fails. */
int secretbox_seal(const secretbox *sb, const char *ctx, const void *pt, size_t n, char **out);

/* Opens sealed text. ML_OK with *out the plaintext, NUL-terminated (caller frees with
 * free()); ML_ERR with a reason when malformed, the key id is unknown, or the tag does not
 * verify (tampered, wrong key, wrong context). The reason never contains plaintext. */
int secretbox_open(const secretbox *sb, const char *ctx, const char *sealed, char **out,
                   char *err, size_t errlen);

/* True if s has the sealed form's prefix. */
bool secretbox_is_sealed(const char *s);

/* True if s is sealed under sb's current key (no re-encryption needed). */
bool secretbox_is_current(const secretbox *sb, const char *s);

/* env objects ({"NAME": "value", ...}), in place. */

/* Seals every string value that is not sealed under the current key (plaintext, or the old
 * key's: opened and sealed again). *changed (may be NULL) tells whether anything changed.
 * ML_ERR with a reason if a value cannot be opened or sealed (env then partly changed). */
int secretbox_env_seal(const secretbox *sb, cJSON *env, bool *changed, char *err, size_t errlen);

/* Replaces every value by SECRETBOX_REDACTED, or (reveal) by its plaintext. ML_ERR with a
 * reason if a value cannot be opened. A non-object env is left alone. */
int secretbox_env_render(const secretbox *sb, cJSON *env, bool reveal, char *err, size_t errlen);

/* The process-wide box: from MINILAMBDA_SECRETS_KEY (base64 of 32 bytes) or
 * MINILAMBDA_SECRETS_KEY_FILE (a file holding it), and optionally MINILAMBDA_SECRETS_KEY_OLD
 * (or _OLD_FILE). ML_ERR with a reason when the current key is missing or malformed: a
 * service refuses to start without one (docs/secrets.md). Call once, before threads. */
int secretbox_global_init(char *err, size_t errlen);

/* The box set by secretbox_global_init (zeroed — no key — before it). */
const secretbox *secretbox_global(void);

#endif
