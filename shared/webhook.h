/* webhook.h — Standard Webhooks (https://www.standardwebhooks.com) signing and verification.
 *
 * Headers: webhook-id (the same across retries of one message), webhook-timestamp (unix
 * seconds), webhook-signature: "v1,<base64 HMAC-SHA256(key, id "." timestamp "." body)>".
 * The secret is "whsec_" + standard base64 of the key bytes (24..64 bytes, per the spec).
 * Everything here is pure computation: thread-safe, no allocation. */
#ifndef ML_WEBHOOK_H
#define ML_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "ml.h"

/* Key sizes the spec allows for a secret. */
#define WEBHOOK_KEY_MIN 24
#define WEBHOOK_KEY_MAX 64
/* "whsec_" + base64 of 32 bytes (44 chars) + NUL: what webhook_secret_new writes. */
#define WEBHOOK_SECRET_LEN 51
/* "v1," + base64 of a 32-byte MAC (44 chars) + NUL. */
#define WEBHOOK_SIGNATURE_LEN 48
/* Receivers reject timestamps further than this from their clock, either way. */
#define WEBHOOK_TOLERANCE_S 300
/* Longest webhook-id accepted (it is opaque, but goes into headers and logs). */
#define WEBHOOK_ID_MAX 256

/* New secret: "whsec_" + base64 of 32 bytes from RAND_bytes. ML_ERR if the CSPRNG fails. */
int webhook_secret_new(char out[WEBHOOK_SECRET_LEN]);

/* ML_OK if secret is "whsec_" + valid padded base64 of WEBHOOK_KEY_MIN..MAX bytes. */
int webhook_secret_valid(const char *secret);

/* Signature header value for one message into out ("v1,<base64>").
 * msg_id: 1..WEBHOOK_ID_MAX printable ASCII chars, no spaces. timestamp: unix seconds >= 0.
 * ML_ERR if the secret or msg_id is malformed. */
int webhook_sign(const char *secret, const char *msg_id, int64_t timestamp, const void *body,
                 size_t len, char out[WEBHOOK_SIGNATURE_LEN]);

/* Verify a received message. msg_id, timestamp and signature are the raw header values (any
 * may be NULL = header missing); signature may hold several space-separated entries, and the
 * message is valid if any "v1," entry matches (constant-time compare); other versions are
 * ignored. now is unix seconds; the timestamp must be within WEBHOOK_TOLERANCE_S of it.
 * ML_OK, or ML_ERR with a short reason written to reason (e.g. "timestamp too old"). */
int webhook_verify(const char *secret, const char *msg_id, const char *timestamp,
                   const char *signature, const void *body, size_t len, int64_t now,
                   char *reason, size_t reason_len);

#endif
