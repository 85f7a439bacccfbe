/* fnurl_event.c — the API Gateway HTTP API payload v2.0 event of a function URL request
 * (see fnurl.h, docs/http.md "The event"). */
#include "fnurl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "crypto.h"
#include "jsoncheck.h"
#include "ml.h"

bool gw_fnurl_textual(const char *ct)
{
    static const char *const marks[] = { "json", "xml", "x-www-form-urlencoded", "javascript" };
    char lower[256];
    size_t n = 0;

    if (!ct)
        return false;
    /* the media type only: parameters (charset, boundary) may name anything */
    for (; ct[n] && ct[n] != ';' && n + 1 < sizeof(lower); n++)
        lower[n] = (char)tolower((unsigned char)ct[n]);
    lower[n] = '\0';
    if (strncmp(lower + strspn(lower, " \t"), "text/", 5) == 0)
        return true;
    for (size_t i = 0; i < ML_ARRAY_LEN(marks); i++) {
        if (strstr(lower, marks[i]))
            return true;
    }
    return false;
}

/* Sets obj[name] to value, or appends ",value" to what is there (repeats comma-joined). */
static int add_joined(cJSON *obj, const char *name, const char *value)
{
    cJSON *have = cJSON_GetObjectItemCaseSensitive(obj, name);
    ml_buf b = { 0 };
    int rc;

    if (!have)
        return cJSON_AddStringToObject(obj, name, value) ? ML_OK : ML_ERR;
    rc = ml_buf_printf(&b, "%s,%s", have->valuestring, value);
    if (rc == ML_OK && !cJSON_SetValuestring(have, ml_buf_cstr(&b)))
        rc = ML_ERR;
    ml_buf_free(&b);
    return rc;
}

/* Appends each "; "-separated cookie of a Cookie header value to arr. */
static int add_cookies(cJSON *arr, const char *value)
{
    const char *p = value;

    while (*p) {
        const char *end = strstr(p, "; ");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *one = strndup(p, len);
        cJSON *s = one && len ? cJSON_CreateString(one) : NULL;

        free(one);
        if (len && (!s || !cJSON_AddItemToArray(arr, s))) {
            cJSON_Delete(s);
            return ML_ERR;
        }
        p += len + (end ? 2 : 0);
    }
    return ML_OK;
}

/* headers (lower-case names, repeats comma-joined, no Cookie) and cookies. */
static int add_headers(cJSON *ev, const gw_fnurl_req *r)
{
    cJSON *h = cJSON_AddObjectToObject(ev, "headers");
    cJSON *cookies = cJSON_CreateArray();
    int rc = h && cookies ? ML_OK : ML_ERR;

    for (size_t i = 0; i < r->nheaders && rc == ML_OK; i++) {
        char name[256];
        size_t n = 0;

        if (strcasecmp(r->headers[i].name, "Cookie") == 0) {
            rc = add_cookies(cookies, r->headers[i].value);
            continue;
        }
        for (; r->headers[i].name[n] && n + 1 < sizeof(name); n++)
            name[n] = (char)tolower((unsigned char)r->headers[i].name[n]);
        name[n] = '\0';
        if (r->headers[i].name[n]) /* longer than any real header name: not a header to pass */
            continue;
        rc = add_joined(h, name, r->headers[i].value);
    }
    if (rc == ML_OK && cJSON_GetArraySize(cookies) > 0) {
        rc = cJSON_AddItemToObject(ev, "cookies", cookies) ? ML_OK : ML_ERR;
        cookies = NULL;
    }
    cJSON_Delete(cookies);
    return rc;
}

static int add_query(cJSON *ev, const gw_fnurl_req *r)
{
    cJSON *q;
    int rc = ML_OK;

    if (r->nquery == 0)
        return ML_OK; /* absent when none (AWS) */
    if (!(q = cJSON_AddObjectToObject(ev, "queryStringParameters")))
        return ML_ERR;
    for (size_t i = 0; i < r->nquery && rc == ML_OK; i++)
        rc = add_joined(q, r->query[i].name, r->query[i].value ? r->query[i].value : "");
    return rc;
}

static const char *header_of(const gw_fnurl_req *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    }
    return NULL;
}

/* body and isBase64Encoded: text when textual and clean UTF-8, else base64. */
static int add_body(cJSON *ev, const gw_fnurl_req *r)
{
    bool text = gw_fnurl_textual(header_of(r, "Content-Type")) &&
                jsoncheck_text(r->body, r->body_len, NULL) == ML_OK;
    char *b64 = NULL, *copy;
    int rc = ML_ERR;

    if (r->body_len == 0 || text) {
        copy = r->body_len ? strndup(r->body, r->body_len) : NULL; /* text has no NUL: whole */
        rc = !r->body_len || (copy && cJSON_AddStringToObject(ev, "body", copy)) ? ML_OK : ML_ERR;
        free(copy);
        if (rc == ML_OK && !cJSON_AddBoolToObject(ev, "isBase64Encoded", false))
            rc = ML_ERR;
        return rc;
    }
    if (!(b64 = malloc(CRYPTO_BASE64_ENC_SIZE(r->body_len))) ||
        crypto_base64_encode(r->body, r->body_len, b64, CRYPTO_BASE64_ENC_SIZE(r->body_len)) != ML_OK)
        goto out;
    if (cJSON_AddStringToObject(ev, "body", b64) && cJSON_AddBoolToObject(ev, "isBase64Encoded", true))
        rc = ML_OK;
out:
    free(b64);
    return rc;
}

/* requestContext.authorizer.jwt {claims, scopes}: scopes split from the space-separated
 * "scope" claim (null without one). */
static int add_authorizer(cJSON *ctx, const cJSON *claims)
{
    cJSON *jwt = cJSON_AddObjectToObject(cJSON_AddObjectToObject(ctx, "authorizer"), "jwt");
    const cJSON *scope = cJSON_GetObjectItemCaseSensitive(claims, "scope");
    cJSON *scopes, *copy = cJSON_Duplicate(claims, true);

    if (!jwt || !copy || !cJSON_AddItemToObject(jwt, "claims", copy)) {
        cJSON_Delete(copy);
        return ML_ERR;
    }
    if (!cJSON_IsString(scope))
        return cJSON_AddNullToObject(jwt, "scopes") ? ML_OK : ML_ERR;
    if (!(scopes = cJSON_AddArrayToObject(jwt, "scopes")))
        return ML_ERR;
    for (const char *p = scope->valuestring + strspn(scope->valuestring, " "); *p;) {
        size_t len = strcspn(p, " ");
        char *one = strndup(p, len);
        cJSON *s = one ? cJSON_CreateString(one) : NULL;

        free(one);
        if (!s || !cJSON_AddItemToArray(scopes, s)) {
            cJSON_Delete(s);
            return ML_ERR;
        }
        p += len + strspn(p + len, " ");
    }
    return ML_OK;
}

static int add_context(cJSON *ev, const gw_fnurl_req *r)
{
    cJSON *ctx = cJSON_AddObjectToObject(ev, "requestContext"), *http;
    const char *host = header_of(r, "Host"), *ua = header_of(r, "User-Agent");
    char prefix[256] = "", when[64];
    time_t t = (time_t)(r->time_ms / 1000);
    struct tm tm;

    if (!ctx)
        return ML_ERR;
    host = host ? host : "";
    /* the first label of the host, as AWS shows it */
    if (ml_snprintf(prefix, sizeof(prefix), "%.*s", (int)strcspn(host, ".:"), host) != ML_OK)
        prefix[0] = '\0';
    if (!gmtime_r(&t, &tm) || strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S +0000", &tm) == 0)
        return ML_ERR;
    if (!cJSON_AddStringToObject(ctx, "accountId", r->account_id) ||
        !cJSON_AddStringToObject(ctx, "apiId", r->api_id) ||
        !cJSON_AddStringToObject(ctx, "domainName", host) ||
        !cJSON_AddStringToObject(ctx, "domainPrefix", prefix) || !(http = cJSON_AddObjectToObject(ctx, "http")) ||
        !cJSON_AddStringToObject(http, "method", r->method) ||
        !cJSON_AddStringToObject(http, "path", r->raw_path) ||
        !cJSON_AddStringToObject(http, "protocol", "HTTP/1.1") ||
        !cJSON_AddStringToObject(http, "sourceIp", r->source_ip) ||
        !cJSON_AddStringToObject(http, "userAgent", ua ? ua : "") ||
        !cJSON_AddStringToObject(ctx, "requestId", r->request_id) ||
        !cJSON_AddStringToObject(ctx, "routeKey", "$default") ||
        !cJSON_AddStringToObject(ctx, "stage", "$default") || !cJSON_AddStringToObject(ctx, "time", when) ||
        !cJSON_AddNumberToObject(ctx, "timeEpoch", (double)r->time_ms))
        return ML_ERR;
    if (r->jwt_claims && add_authorizer(ctx, r->jwt_claims) != ML_OK)
        return ML_ERR;
    return ML_OK;
}

int gw_fnurl_event(const gw_fnurl_req *r, char **out, size_t *len)
{
    cJSON *ev = cJSON_CreateObject(), *pp;
    char *text = NULL;
    int rc = ML_ERR;

    *out = NULL;
    if (!ev || !cJSON_AddStringToObject(ev, "version", "2.0") ||
        !cJSON_AddStringToObject(ev, "routeKey", "$default") ||
        !cJSON_AddStringToObject(ev, "rawPath", r->raw_path) ||
        !cJSON_AddStringToObject(ev, "rawQueryString", r->raw_query ? r->raw_query : "") ||
        add_headers(ev, r) != ML_OK || add_query(ev, r) != ML_OK)
        goto out;
    if (r->proxy && (!(pp = cJSON_AddObjectToObject(ev, "pathParameters")) ||
                     !cJSON_AddStringToObject(pp, "proxy", r->proxy)))
        goto out;
    if (add_context(ev, r) != ML_OK || add_body(ev, r) != ML_OK || !(text = cJSON_PrintUnformatted(ev)))
        goto out;
    *out = text;
    *len = strlen(text);
    rc = ML_OK;
out:
    cJSON_Delete(ev);
    return rc;
}
