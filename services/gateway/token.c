/* token.c — HS256 JWT minting with libjwt. */
#include "token.h"

#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int token_mint(const char *secret, const char *sub, const char *scope, int64_t ttl_s, ml_buf *out)
{
    jwt_t *jwt = NULL;
    char *enc = NULL;
    time_t now = time(NULL);
    int rc = ML_ERR;

    if (!secret || !*secret || jwt_new(&jwt) != 0)
        goto out;
    if (jwt_add_grant(jwt, "sub", sub) || jwt_add_grant(jwt, "scope", scope) ||
        jwt_add_grant_int(jwt, "iat", (long)now) ||
        jwt_add_grant_int(jwt, "exp", (long)(now + ttl_s)) ||
        jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)))
        goto out;
    enc = jwt_encode_str(jwt);
    if (enc)
        rc = ml_buf_append_str(out, enc);
out:
    free(enc);
    jwt_free(jwt);
    return rc;
}

int token_main(int argc, char **argv)
{
    const char *sub = "dev", *scope = "functions:read functions:write functions:invoke";
    const char *secret = getenv("MINILAMBDA_JWT_SECRET");
    int64_t ttl = 3600;
    ml_buf out = { 0 };

    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--sub") == 0)
            sub = argv[i + 1];
        else if (strcmp(argv[i], "--scope") == 0)
            scope = argv[i + 1];
        else if (strcmp(argv[i], "--ttl") != 0 ||
                 ml_parse_int64(argv[i + 1], 1, 365LL * 86400, &ttl) != ML_OK) {
            fprintf(stderr, "usage: gateway token [--sub S] [--scope \"a b\"] [--ttl SECONDS]\n");
            return 2;
        }
    }
    if (!secret || !*secret) {
        fprintf(stderr, "gateway token: MINILAMBDA_JWT_SECRET is not set\n");
        return 2;
    }
    if (token_mint(secret, sub, scope, ttl, &out) != ML_OK) {
        fprintf(stderr, "gateway token: cannot sign the token\n");
        return 1;
    }
    printf("%s\n", out.data);
    ml_buf_free(&out);
    return 0;
}
