/* token.c — HS256 JWT minting with libjwt. */
#include "token.h"

#include <cJSON.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "fnspec.h"
#include "routes.h"

int token_mint(const char *secret, const char *sub, const char *scope, const char *ns,
               int64_t now_s, int64_t ttl_s, ml_buf *out)
{
    jwt_t *jwt = NULL;
    char *enc = NULL;
    int rc = ML_ERR;

    if (!secret || !*secret || jwt_new(&jwt) != 0)
        goto out;
    if (jwt_add_grant(jwt, "sub", sub) || jwt_add_grant(jwt, "scope", scope) ||
        (ns && jwt_add_grant(jwt, "ns", ns)) || jwt_add_grant_int(jwt, "iat", (long)now_s) ||
        jwt_add_grant_int(jwt, "exp", (long)(now_s + ttl_s)) ||
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

/* A subject: 1..GW_SUB_MAX-1 printable ASCII characters (it lands in logs and rate-limit keys). */
static int sub_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= GW_SUB_MAX)
        return ML_ERR;
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= ' ' || s[i] > '~')
            return ML_ERR;
    }
    return ML_OK;
}

/* The string member name of doc (def when absent); NULL when present but not a string. */
static const char *str_member(const cJSON *doc, const char *name, const char *def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);

    if (!v || cJSON_IsNull(v))
        return def;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int refuse(char *err, size_t errlen, const char *why)
{
    ml_snprintf_trunc(err, errlen, "%s", why);
    return ML_ERR;
}

/* The request's fields, checked. ML_ERR with the reason in err. */
static int mint_fields(const cJSON *doc, const char *default_ns, const char **ns,
                       const char **scopes, const char **sub, int64_t *ttl, char *err,
                       size_t errlen)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "ttl_s");
    unsigned bits;

    *ns = str_member(doc, "namespace", default_ns);
    *scopes = str_member(doc, "scopes", "functions:read functions:write functions:invoke");
    *sub = str_member(doc, "sub", NULL);
    *ttl = GW_TOKEN_TTL_DEFAULT_S;
    if (!*ns || fnspec_ns_valid(*ns) != ML_OK)
        return refuse(err, errlen, "namespace must be a namespace name (1-63 of [a-z0-9-])");
    if (!*scopes || gw_scopes_parse_strict(*scopes, &bits) != ML_OK)
        return refuse(err, errlen, "scopes must be a space-separated list of functions:read "
                                   "functions:write functions:invoke functions:secrets admin");
    if (!*sub || sub_valid(*sub) != ML_OK)
        return refuse(err, errlen, "sub must be 1-127 printable characters without spaces");
    if (t && !cJSON_IsNull(t)) {
        double d = cJSON_IsNumber(t) ? t->valuedouble : -1;
        if (d < GW_TOKEN_TTL_MIN_S || d > (double)GW_TOKEN_TTL_MAX_S || d != (double)(int64_t)d)
            return refuse(err, errlen, "ttl_s must be an integer from 60 to 2592000 (30 days)");
        *ttl = (int64_t)d;
    }
    return ML_OK;
}

/* The response document; NULL when out of memory. Caller frees with cJSON_Delete. */
static cJSON *mint_doc(const char *token, int64_t exp, const char *ns, const char *scopes)
{
    cJSON *doc = cJSON_CreateObject();
    char when[32];
    time_t t = (time_t)exp;
    struct tm tm;

    if (!gmtime_r(&t, &tm) || strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        when[0] = '\0';
    if (!doc || !cJSON_AddStringToObject(doc, "token", token) ||
        !cJSON_AddStringToObject(doc, "expires_at", when) ||
        !cJSON_AddStringToObject(doc, "namespace", ns) ||
        !cJSON_AddStringToObject(doc, "scopes", scopes)) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

int token_admin_mint(const char *secret, const char *body, size_t len, const char *default_ns,
                     int64_t now_s, void **doc_out, char *err, size_t errlen)
{
    cJSON *doc = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    const char *ns, *scopes, *sub;
    int64_t ttl;
    ml_buf tok = { 0 };
    int status = 400;

    *doc_out = NULL;
    if (!cJSON_IsObject(doc)) {
        ml_snprintf_trunc(err, errlen, "the body must be a JSON object");
        goto out;
    }
    if (mint_fields(doc, default_ns, &ns, &scopes, &sub, &ttl, err, errlen) != ML_OK)
        goto out;
    status = 500;
    if (token_mint(secret, sub, scopes, ns, now_s, ttl, &tok) != ML_OK ||
        !(*doc_out = mint_doc(tok.data, now_s + ttl, ns, scopes))) {
        ml_snprintf_trunc(err, errlen, "cannot sign the token");
        goto out;
    }
    status = 201;
out:
    ml_buf_free(&tok);
    cJSON_Delete(doc);
    return status;
}

int token_main(int argc, char **argv)
{
    const char *sub = "dev", *scope = "functions:read functions:write functions:invoke";
    const char *secret = getenv("MINILAMBDA_JWT_SECRET"), *ns = NULL;
    int64_t ttl = 3600;
    ml_buf out = { 0 };

    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--sub") == 0)
            sub = argv[i + 1];
        else if (strcmp(argv[i], "--scope") == 0)
            scope = argv[i + 1];
        else if (strcmp(argv[i], "--ns") == 0 && fnspec_ns_valid(argv[i + 1]) == ML_OK)
            ns = argv[i + 1];
        else if (strcmp(argv[i], "--ttl") != 0 ||
                 ml_parse_int64(argv[i + 1], 1, 365LL * 86400, &ttl) != ML_OK) {
            fprintf(stderr, "usage: gateway token [--sub S] [--scope \"a b\"] [--ns NAMESPACE] "
                            "[--ttl SECONDS]\n");
            return 2;
        }
    }
    if (!secret || !*secret) {
        fprintf(stderr, "gateway token: MINILAMBDA_JWT_SECRET is not set\n");
        return 2;
    }
    if (token_mint(secret, sub, scope, ns, (int64_t)time(NULL), ttl, &out) != ML_OK) {
        fprintf(stderr, "gateway token: cannot sign the token\n");
        return 1;
    }
    printf("%s\n", out.data);
    ml_buf_free(&out);
    return 0;
}
