/* fnurl_rules.c — the rules of PUT /functions/{fn}/url (fnurl.h): strict types, no unknown
 * members, bounded lists, and the normalised document with every default filled in, so
 * that the gateway never has to guess one. */
#include "fnurl.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "ml.h"

typedef struct chk {
    char *field;
    char *why;
    size_t whylen;
} chk;

static int fail(chk *k, const char *field, const char *fmt, ...) ML_PRINTF(3, 4);
static int fail(chk *k, const char *field, const char *fmt, ...)
{
    va_list ap;

    ml_snprintf_trunc(k->field, FNURL_FIELD_MAX, "%s", field);
    va_start(ap, fmt);
    ml_vsnprintf_trunc(k->why, k->whylen, fmt, ap); /* a cut reason is still a reason */
    va_end(ap);
    return ML_ERR;
}

/* ML_ERR (and the member's name) when o has a member not in allowed. */
static int only_known(chk *k, const cJSON *o, const char *prefix, const char *const *allowed)
{
    const cJSON *m;
    char f[FNURL_FIELD_MAX];

    cJSON_ArrayForEach(m, o) {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], m->string) != 0)
            i++;
        if (!allowed[i]) {
            ml_snprintf_trunc(f, sizeof(f), "%s%s", prefix, m->string);
            return fail(k, f, "unknown field");
        }
    }
    return ML_OK;
}

/* RFC 7230 token characters (header names, methods). */
static bool is_token(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

/* "*", or http(s)://host[:port] with no path. */
static bool origin_ok(const char *s)
{
    const char *h = strncmp(s, "https://", 8) == 0 ? s + 8 : strncmp(s, "http://", 7) == 0 ? s + 7 : NULL;
    size_t hl;
    int64_t port;

    if (strcmp(s, "*") == 0)
        return true;
    if (!h || !(hl = strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")) ||
        hl > 253)
        return false;
    if (h[hl] == '\0')
        return true;
    return h[hl] == ':' && ml_parse_int64(h + hl + 1, 1, 65535, &port) == ML_OK;
}

static bool method_ok(const char *s)
{
    static const char *const m[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*", NULL };

    for (size_t i = 0; m[i]; i++)
        if (strcmp(s, m[i]) == 0)
            return true;
    return false;
}

typedef enum { L_ORIGIN, L_METHOD, L_HEADER } list_kind;

/* A CORS list: an array of strings of kind, at most max, joined ≤ FNURL_LIST_BYTES_MAX;
 * absent: []. Copied into out under name. */
static int cors_list(chk *k, const cJSON *cors, const char *name, list_kind kind, int max, cJSON *out)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cors, name), *e;
    cJSON *copy = cJSON_AddArrayToObject(out, name);
    char f[FNURL_FIELD_MAX];
    size_t joined = 0;
    int n = 0;

    ml_snprintf_trunc(f, sizeof(f), "cors.%s", name);
    if (!copy)
        return fail(k, f, "out of memory");
    if (!a)
        return ML_OK;
    if (!cJSON_IsArray(a))
        return fail(k, f, "must be an array of strings");
    cJSON_ArrayForEach(e, a) {
        const char *s = cJSON_GetStringValue(e);
        bool ok = s && (kind == L_ORIGIN ? origin_ok(s) : kind == L_METHOD ? method_ok(s)
                                                                            : is_token(s, 128));
        if (!ok)
            return fail(k, f, kind == L_ORIGIN ? "each must be \"*\" or an origin like https://host[:port]"
                              : kind == L_METHOD ? "each must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or \"*\""
                                                 : "each must be a header name");
        joined += strlen(s) + (n ? 1 : 0);
        if (++n > max || joined > FNURL_LIST_BYTES_MAX)
            return fail(k, f, "at most %d entries and %d bytes joined with commas", max,
                        FNURL_LIST_BYTES_MAX);
        if (!cJSON_AddItemToArray(copy, cJSON_CreateString(s)))
            return fail(k, f, "out of memory");
    }
    return ML_OK;
}

static bool has_star(const cJSON *a)
{
    const cJSON *e;

    cJSON_ArrayForEach(e, a)
        if (strcmp(cJSON_GetStringValue(e), "*") == 0)
            return true;
    return false;
}

/* An integer in [min, max] (JSON number without fraction); absent: def. */
static int int_member(chk *k, const cJSON *o, const char *name, const char *field, int64_t min,
                      int64_t max, int64_t def, bool required, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    *out = def;
    if (!v && !required)
        return ML_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)min ||
        v->valuedouble > (double)max)
        return fail(k, field, "%s an integer %lld..%lld", v ? "must be" : "is required:", (long long)min,
                    (long long)max);
    *out = (int64_t)v->valuedouble;
    return ML_OK;
}

static int bool_member(chk *k, const cJSON *o, const char *name, const char *field, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    *out = false;
    if (!v)
        return ML_OK;
    if (!cJSON_IsBool(v))
        return fail(k, field, "must be true or false");
    *out = cJSON_IsTrue(v);
    return ML_OK;
}

static cJSON *check_cors(chk *k, const cJSON *c)
{
    static const char *const known[] = { "allow_origins", "allow_methods", "allow_headers",
                                         "expose_headers", "max_age", "allow_credentials", NULL };
    cJSON *o = cJSON_CreateObject();
    int64_t age;
    bool cred;

    if (!cJSON_IsObject(c)) {
        fail(k, "cors", "must be an object or null");
        goto bad;
    }
    if (only_known(k, c, "cors.", known) != ML_OK || !o ||
        cors_list(k, c, "allow_origins", L_ORIGIN, FNURL_ORIGINS_MAX, o) != ML_OK ||
        cors_list(k, c, "allow_methods", L_METHOD, 8, o) != ML_OK ||
        cors_list(k, c, "allow_headers", L_HEADER, FNURL_HEADERS_MAX, o) != ML_OK ||
        cors_list(k, c, "expose_headers", L_HEADER, FNURL_HEADERS_MAX, o) != ML_OK ||
        int_member(k, c, "max_age", "cors.max_age", 0, FNURL_MAX_AGE_MAX, 0, false, &age) != ML_OK ||
        bool_member(k, c, "allow_credentials", "cors.allow_credentials", &cred) != ML_OK)
        goto bad;
    if (cred && has_star(cJSON_GetObjectItemCaseSensitive(o, "allow_origins"))) {
        fail(k, "cors.allow_credentials", "cannot be true with the origin \"*\" (browsers refuse it)");
        goto bad;
    }
    if (!cJSON_AddNumberToObject(o, "max_age", (double)age) || !cJSON_AddBoolToObject(o, "allow_credentials", cred))
        goto bad;
    return o;
bad:
    cJSON_Delete(o);
    return NULL;
}

/* One batch key dimension: method, path, header:<name> (lower-cased), query:<name>. */
static int batch_key(chk *k, const char *s, char *out, size_t outlen)
{
    size_t n = s ? strlen(s) : 0;

    if (!s || n > FNURL_KEY_BYTES_MAX)
        return fail(k, "batching.key", "each must be a string of at most %d bytes", FNURL_KEY_BYTES_MAX);
    if (strcmp(s, "method") == 0 || strcmp(s, "path") == 0)
        return ml_strlcpy(out, s, outlen);
    if (strncmp(s, "header:", 7) == 0 && is_token(s + 7, FNURL_KEY_BYTES_MAX)) {
        for (size_t i = 0; i <= n; i++)
            out[i] = (char)tolower((unsigned char)s[i]);
        return ML_OK;
    }
    if (strncmp(s, "query:", 6) == 0 && s[6] && strcspn(s + 6, "&=#, ") == n - 6)
        return ml_strlcpy(out, s, outlen);
    return fail(k, "batching.key", "each must be \"method\", \"path\", \"header:<name>\" or \"query:<name>\"");
}

static int batch_keys(chk *k, const cJSON *b, cJSON *o)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(b, "key"), *e;
    cJSON *copy = cJSON_AddArrayToObject(o, "key");
    char key[FNURL_KEY_BYTES_MAX + 1];
    int n = 0;

    if (!copy)
        return fail(k, "batching.key", "out of memory");
    if (!a)
        return ML_OK;
    if (!cJSON_IsArray(a))
        return fail(k, "batching.key", "must be an array of strings");
    cJSON_ArrayForEach(e, a) {
        const cJSON *seen;
        if (++n > FNURL_KEYS_MAX)
            return fail(k, "batching.key", "at most %d dimensions", FNURL_KEYS_MAX);
        if (batch_key(k, cJSON_GetStringValue(e), key, sizeof(key)) != ML_OK)
            return ML_ERR;
        cJSON_ArrayForEach(seen, copy)
            if (strcmp(seen->valuestring, key) == 0)
                return fail(k, "batching.key", "'%s' is given twice", key);
        if (!cJSON_AddItemToArray(copy, cJSON_CreateString(key)))
            return fail(k, "batching.key", "out of memory");
    }
    return ML_OK;
}

/* A rate in (0, 1e6] requests/s; absent: def. */
static int rate_member(chk *k, const cJSON *b, const char *name, const char *field, double def, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, name);

    *out = def;
    if (!v)
        return ML_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > 1e6)
        return fail(k, field, "must be a number of requests per second, > 0 and at most 1000000");
    *out = v->valuedouble;
    return ML_OK;
}

static cJSON *check_batching(chk *k, const cJSON *b)
{
    static const char *const known[] = { "max_wait_ms", "max_batch_size", "key", "dynamic",
                                         "rate_mid", "rate_width", NULL };
    cJSON *o = cJSON_CreateObject();
    int64_t wait, size;
    double mid, width;
    bool dyn;

    if (!cJSON_IsObject(b)) {
        fail(k, "batching", "must be an object or null");
        goto bad;
    }
    if (only_known(k, b, "batching.", known) != ML_OK || !o ||
        int_member(k, b, "max_wait_ms", "batching.max_wait_ms", 1, 1000, 0, true, &wait) != ML_OK ||
        int_member(k, b, "max_batch_size", "batching.max_batch_size", 2, 1000, 16, false, &size) != ML_OK ||
        !cJSON_AddNumberToObject(o, "max_wait_ms", (double)wait) ||
        !cJSON_AddNumberToObject(o, "max_batch_size", (double)size) || batch_keys(k, b, o) != ML_OK ||
        bool_member(k, b, "dynamic", "batching.dynamic", &dyn) != ML_OK ||
        rate_member(k, b, "rate_mid", "batching.rate_mid", 100, &mid) != ML_OK ||
        rate_member(k, b, "rate_width", "batching.rate_width", mid / 4, &width) != ML_OK ||
        !cJSON_AddBoolToObject(o, "dynamic", dyn) || !cJSON_AddNumberToObject(o, "rate_mid", mid) ||
        !cJSON_AddNumberToObject(o, "rate_width", width))
        goto bad;
    return o;
bad:
    cJSON_Delete(o);
    return NULL;
}

/* A version number or an alias name (docs/versions.md); absent, null or "$LATEST": null. */
static int qualifier(chk *k, const cJSON *q, cJSON *o)
{
    const char *s = cJSON_GetStringValue(q);
    size_t n = s ? strlen(s) : 0;
    int64_t v;

    if (!q || cJSON_IsNull(q) || (s && strcmp(s, "$LATEST") == 0))
        return cJSON_AddNullToObject(o, "qualifier") ? ML_OK : fail(k, "qualifier", "out of memory");
    if (!s || n == 0 || n > 128 || strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != n ||
        (strspn(s, "0123456789") == n && ml_parse_int64(s, 1, 2147483647, &v) != ML_OK))
        return fail(k, "qualifier", "must be a version number, an alias name or null");
    return cJSON_AddStringToObject(o, "qualifier", s) ? ML_OK : fail(k, "qualifier", "out of memory");
}

/* An optional object member: null/absent → null, else check(). */
static int sub_object(chk *k, const cJSON *body, const char *name, cJSON *(*check)(chk *, const cJSON *), cJSON *o)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    cJSON *sub;

    if (!v || cJSON_IsNull(v))
        return cJSON_AddNullToObject(o, name) ? ML_OK : fail(k, name, "out of memory");
    if (!(sub = check(k, v)))
        return ML_ERR;
    cJSON_AddItemToObject(o, name, sub);
    return ML_OK;
}

cJSON *fnurl_rules_check(const cJSON *body, char field[FNURL_FIELD_MAX], char *why, size_t whylen)
{
    static const char *const known[] = { "auth", "qualifier", "cors", "batching", NULL };
    chk k = { field, why, whylen };
    const char *auth = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "auth"));
    cJSON *o = cJSON_CreateObject();

    field[0] = '\0';
    if (!cJSON_IsObject(body)) {
        fail(&k, "body", "must be a JSON object");
        goto bad;
    }
    if (only_known(&k, body, "", known) != ML_OK)
        goto bad;
    if (!auth || (strcmp(auth, "NONE") != 0 && strcmp(auth, "JWT") != 0)) {
        fail(&k, "auth", "is required: \"NONE\" or \"JWT\"");
        goto bad;
    }
    if (!o || !cJSON_AddStringToObject(o, "auth", auth) ||
        qualifier(&k, cJSON_GetObjectItemCaseSensitive(body, "qualifier"), o) != ML_OK ||
        sub_object(&k, body, "cors", check_cors, o) != ML_OK ||
        sub_object(&k, body, "batching", check_batching, o) != ML_OK)
        goto bad;
    return o;
bad:
    if (!field[0])
        fail(&k, "body", "out of memory");
    cJSON_Delete(o);
    return NULL;
}
