/* intauth.h — the internal credential: proof that a caller is a sibling service (gateway,
 * build-master, build-worker, lambda-executor), not just anything that can reach the port.
 *
 * Threat: in compose or k8s every container on the network (and, with host networking, every
 * local process) can reach the lambda-executor and build-master directly, bypassing the
 * gateway's JWTs, scopes and rate limits. So both refuse every request that does not carry
 * the platform's internal token, with 401 {"error":{"code":"unauthorized",...}} — except
 * /health, /ready/{cap} and /metrics, which probes and scrapers call without secrets.
 *
 * The token: MINILAMBDA_INTERNAL_TOKEN, or the file named by MINILAMBDA_INTERNAL_TOKEN_FILE
 * (k8s/compose secrets; surrounding whitespace is trimmed), 32..256 visible ASCII characters.
 * Callers send it as `X-Minilambda-Internal: <token>` — a header of its own, so it never
 * collides with a user's `Authorization: Bearer <JWT>`; the gateway forwards only an
 * allow-list of client headers, so a client cannot smuggle one through it.
 * Checked in constant time: the presented value is copied into a zeroed buffer of the largest
 * token's size and the whole buffer compared with the token's (zero-padded) by CRYPTO_memcmp,
 * so timing reveals neither the token's content nor its length (measured 0.27-0.3 us a check;
 * hashing both with OpenSSL 3's one-shot SHA256() instead measured 3 us, docs/security.md).
 *
 * Rotation without downtime: MINILAMBDA_INTERNAL_TOKEN_OLD names a second token that servers
 * still accept (callers never send it). Roll out TOKEN=new + OLD=old everywhere, then drop
 * OLD; minilambda_internal_auth_old_token_total says when no caller sends the old one.
 *
 * Secure by default: a daemon with no token refuses to start, unless the operator sets
 * MINILAMBDA_INTERNAL_AUTH_INSECURE=true (development only: internal APIs then accept anyone
 * and callers send nothing). A configured token is always enforced.
 *
 * Process-wide state: ml_intauth_start runs once in main, before any thread; everything
 * else only reads it and is safe from any thread. */
#ifndef ML_INTAUTH_H
#define ML_INTAUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "httpd.h"
#include "service.h"

#define ML_INTAUTH_HEADER "X-Minilambda-Internal"
#define ML_INTAUTH_MIN_LEN 32
#define ML_INTAUTH_MAX_LEN 256
/* "X-Minilambda-Internal: " + the token + NUL */
#define ML_INTAUTH_LINE_MAX (sizeof(ML_INTAUTH_HEADER) + 2 + ML_INTAUTH_MAX_LEN)

typedef struct ml_intauth_cfg {
    const char *token;      /* MINILAMBDA_INTERNAL_TOKEN ("" when unset) */
    const char *token_file; /* MINILAMBDA_INTERNAL_TOKEN_FILE ("" when unset) */
    bool insecure;          /* MINILAMBDA_INTERNAL_AUTH_INSECURE */
    const char *token_old;  /* MINILAMBDA_INTERNAL_TOKEN_OLD (NULL or "": none), still accepted */
} ml_intauth_cfg;

/* How many variables ml_intauth_cfg_vars declares: callers reserve this many slots (fewer
 * would drop the last ones silently). */
#define ML_INTAUTH_CFG_VARS 4

/* Appends the ML_INTAUTH_CFG_VARS variables (bound to c) to out; returns how many (at most max). */
size_t ml_intauth_cfg_vars(ml_intauth_cfg *c, cfg_var *out, size_t max);

/* Trims the whitespace around raw[0..len) and checks the rest is a valid token (length and
 * characters); copies it to out. ML_ERR with the reason in err (never the token itself). */
int ml_intauth_parse(const char *raw, size_t len, char *out, size_t outlen, char *err,
                     size_t errlen);

/* Resolves c to a token in out: from the variable, or from the file (not both). "" when
 * none is configured and c->insecure allows that. ML_ERR with the reason in err. */
int ml_intauth_load(const ml_intauth_cfg *c, char *out, size_t outlen, char *err, size_t errlen);

/* The token as ml_intauth_matches wants it: zero-padded to the largest token's size. */
typedef struct ml_intauth_key {
    char padded[ML_INTAUTH_MAX_LEN + 1];
} ml_intauth_key;

/* Fills key from token (at most ML_INTAUTH_MAX_LEN characters; ML_ERR if longer). */
int ml_intauth_key_set(ml_intauth_key *key, const char *token);

/* True when presented (may be NULL) is key's token; constant time in the token. */
bool ml_intauth_matches(const ml_intauth_key *key, const char *presented);

/* True for the paths anyone may call: /health, /metrics, /ready/{cap}. */
bool ml_intauth_open_path(const char *path);

/* Loads c into the process-wide state (call after svc_init, before threads). Logs and
 * returns ML_ERR when no usable token is configured (see "Secure by default"). */
int ml_intauth_start(const ml_intauth_cfg *c);

/* The header line callers add to every request to a sibling ("X-Minilambda-Internal: ..."),
 * or NULL when running insecure without a token. */
const char *ml_intauth_header_line(void);

/* True when a token is configured (servers check it). */
bool ml_intauth_enforced(void);

/* Makes s's HTTP server check the token (an httpd guard, set before svc_start_http /
 * svc_serve) and registers minilambda_internal_auth_refusals_total{reason} in s's metrics. */
void ml_intauth_protect(svc *s);

/* The guard itself (httpd_guard_fn): 0 or 401. ud is unused. */
int ml_intauth_guard(const httpd_req *req, void *ud, const char **code, const char **msg);

#endif
