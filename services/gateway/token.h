/* token.h — minting HS256 JWTs: the dev tokens printed by `make run` / `make token`, and
 * POST /admin/tokens (docs/tenants.md). */
#ifndef GW_TOKEN_H
#define GW_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define GW_TOKEN_TTL_MIN_S 60
#define GW_TOKEN_TTL_MAX_S (30LL * 86400)
#define GW_TOKEN_TTL_DEFAULT_S 86400

/* Appends a JWT with claims sub, scope, ns (omitted when ns is NULL), iat = now_s and
 * exp = now_s + ttl_s, signed HS256 with secret. */
int token_mint(const char *secret, const char *sub, const char *scope, const char *ns,
               int64_t now_s, int64_t ttl_s, ml_buf *out);

/* POST /admin/tokens: body {"namespace","scopes","sub","ttl_s"} (namespace defaults to
 * default_ns, ttl_s to a day; scopes must be known names; sub 1..127 printable characters).
 * On success returns 201 and a new JSON document {"token","expires_at","namespace","scopes"}
 * in *doc_out (the caller frees it with cJSON_Delete); otherwise 400 (or 500) with a
 * message in err. */
int token_admin_mint(const char *secret, const char *body, size_t len, const char *default_ns,
                     int64_t now_s, void **doc_out, char *err, size_t errlen);

/* `gateway token [--sub S] [--scope "..."] [--ns NS] [--ttl SECONDS]`: prints a token signed
 * with MINILAMBDA_JWT_SECRET. Returns the process exit code. */
int token_main(int argc, char **argv);

#endif
