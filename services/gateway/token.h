/* token.h — minting HS256 JWTs (the dev token printed by `make run` / `make token`). */
#ifndef GW_TOKEN_H
#define GW_TOKEN_H

#include <stdint.h>

#include "buf.h"

/* Appends a JWT with claims sub, scope, iat, exp (= now + ttl_s) signed HS256 with secret. */
int token_mint(const char *secret, const char *sub, const char *scope, int64_t ttl_s, ml_buf *out);

/* `gateway token [--sub S] [--scope "..."] [--ttl SECONDS]`: prints a token signed with
 * MINILAMBDA_JWT_SECRET. Returns the process exit code. */
int token_main(int argc, char **argv);

#endif
