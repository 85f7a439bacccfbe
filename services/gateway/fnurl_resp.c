/* fnurl_resp.c — a function's result as the client's HTTP response (see fnurl.h,
 * docs/http.md "The response"). */
#include "fnurl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "crypto.h"
#include "ml.h"

#define INVALID "invalid_function_response"

/* Framing and hop-by-hop headers are the server's to write, never the function's; so is
 * X-Request-Id (the server adds the request's own). */
static bool dropped(const char *name)
{
    static const char *const names[] = { "Connection", "Transfer-Encoding", "Content-Length",
                                         "Keep-Alive", "Upgrade", "Trailer", "Proxy-Connection",
                                         "X-Request-Id" };

    for (size_t i = 0; i < ML_ARRAY_LEN(names); i++) {
        if (strcasecmp(name, names[i]) == 0)
            return true;
    }
    return false;
}

/* A header name is a token, a value has no CR, LF or NUL (no response splitting). */
static bool header_ok(const char *name, const char *value)
{
    if (!*name || strcspn(name, "()<>@,;:\\\"/[]?={} \t\r\n") != strlen(name))
        return false;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p == '\r' || *p == '\n')
            return false;
    }
    return true;
}

/* A header value as text: strings as they are, numbers and booleans stringified. NULL for
 * anything else. Writes into buf when it has to format. */
static const char *value_text(const cJSON *v, char *buf, size_t size)
{
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v) ? "true" : "false";
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
        double d = v->valuedouble;
        bool whole = d == floor(d) && fabs(d) < 1e15;

        if (ml_snprintf(buf, size, whole ? "%.0f" : "%.17g", d) != ML_OK)
            return NULL;
        return buf;
    }
    return NULL;
}

/* The headers of one response being built: (name, value) pairs kept aside until every rule
 * has passed, so that a broken response leaves resp untouched. */
typedef struct head {
    const char *names[HTTPD_MAX_RESP_HEADERS];
    char *values[HTTPD_MAX_RESP_HEADERS];
    size_t n;
    const char *ctype;
} head;

static void head_free(head *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->values[i]);
    h->n = 0;
}

static int head_add(head *h, const char *name, const cJSON *v, const char **why)
{
    char num[40];
    const char *text = value_text(v, num, sizeof(num));

    if (!text) {
        *why = "a header value must be a string, number or boolean";
        return ML_ERR;
    }
    if (!header_ok(name, text)) {
        *why = "a header name is not a token or its value holds a line break";
        return ML_ERR;
    }
    if (dropped(name))
        return ML_OK;
    if (strcasecmp(name, "Content-Type") == 0) {
        h->ctype = text;
        return ML_OK;
    }
    if (h->n == HTTPD_MAX_RESP_HEADERS - 8) { /* room for the gateway's own (CORS, ...) */
        *why = "too many headers";
        return ML_ERR;
    }
    if (!(h->values[h->n] = strdup(text))) {
        *why = "out of memory";
        return ML_ERR;
    }
    h->names[h->n++] = name;
    return ML_OK;
}

/* Reads statusCode, headers, multiValueHeaders and cookies into *status and h. A stream's
 * metadata may leave statusCode out (200); a response object may not (it is what makes it one). */
static int head_parse(const cJSON *o, int *status, head *h, const char **why)
{
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "statusCode");
    const cJSON *hs = cJSON_GetObjectItemCaseSensitive(o, "headers");
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(o, "multiValueHeaders");
    const cJSON *cookies = cJSON_GetObjectItemCaseSensitive(o, "cookies"), *v, *e;
    const cJSON *hobj, *mobj, *carr;

    if (!sc) {
        *status = 200;
    } else if (!cJSON_IsNumber(sc) || sc->valuedouble != floor(sc->valuedouble) || sc->valuedouble < 100 ||
               sc->valuedouble > 599) {
        *why = "statusCode must be an integer from 100 to 599";
        return ML_ERR;
    } else {
        *status = (int)sc->valuedouble;
    }
    if ((hs && !cJSON_IsNull(hs) && !cJSON_IsObject(hs)) || (mv && !cJSON_IsNull(mv) && !cJSON_IsObject(mv)) ||
        (cookies && !cJSON_IsNull(cookies) && !cJSON_IsArray(cookies))) {
        *why = "headers and multiValueHeaders must be objects, cookies an array";
        return ML_ERR;
    }
    hobj = cJSON_IsObject(hs) ? hs : NULL;
    mobj = cJSON_IsObject(mv) ? mv : NULL;
    carr = cJSON_IsArray(cookies) ? cookies : NULL;
    cJSON_ArrayForEach(v, hobj) {
        if (head_add(h, v->string, v, why) != ML_OK)
            return ML_ERR;
    }
    cJSON_ArrayForEach(v, mobj) {
        if (!cJSON_IsArray(v)) {
            *why = "a multiValueHeaders value must be an array";
            return ML_ERR;
        }
        cJSON_ArrayForEach(e, v) {
            if (head_add(h, v->string, e, why) != ML_OK)
                return ML_ERR;
        }
    }
    cJSON_ArrayForEach(v, carr) {
        if (!cJSON_IsString(v)) {
            *why = "a cookie must be a string";
            return ML_ERR;
        }
        if (head_add(h, "Set-Cookie", v, why) != ML_OK)
            return ML_ERR;
    }
    return ML_OK;
}

/* Moves h into resp (the status and content type too); ML_ERR when out of memory. */
static int head_apply(httpd_resp *resp, int status, head *h)
{
    resp->status = status;
    if (httpd_resp_content_type(resp, h->ctype ? h->ctype : "application/json") != ML_OK)
        return ML_ERR;
    for (size_t i = 0; i < h->n; i++) {
        if (httpd_resp_header(resp, h->names[i], h->values[i]) != ML_OK)
            return ML_ERR;
    }
    return ML_OK;
}

int gw_fnurl_head(httpd_resp *resp, const cJSON *http, const char **ctype, const char **why)
{
    head h = { .n = 0 };
    int status = 200, rc;

    *ctype = NULL;
    if (!cJSON_IsObject(http)) {
        *why = "the response metadata is not an object";
        return ML_ERR;
    }
    rc = head_parse(http, &status, &h, why);
    if (rc == ML_OK) {
        *ctype = h.ctype;
        rc = head_apply(resp, status, &h);
        if (rc != ML_OK)
            *why = "out of memory";
    }
    head_free(&h);
    return rc;
}

/* The body of a v2 response object into resp->body: a string (base64-decoded when
 * isBase64Encoded), absent or null = empty; any other value as its JSON text. */
static int body_of(const cJSON *o, ml_buf *out, const char **why)
{
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(o, "body");
    const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(o, "isBase64Encoded");
    unsigned char *raw = NULL;
    size_t n = 0, len;
    char *text;
    int rc = ML_ERR;

    if (!body || cJSON_IsNull(body))
        return ML_OK;
    if (!cJSON_IsString(body)) {
        if (!(text = cJSON_PrintUnformatted(body)))
            return ML_ERR;
        rc = ml_buf_append_str(out, text);
        free(text);
        return rc;
    }
    if (!cJSON_IsTrue(b64))
        return ml_buf_append_str(out, body->valuestring);
    len = strlen(body->valuestring);
    if (!(raw = malloc(CRYPTO_BASE64_DEC_MAX(len) + 1)))
        return ML_ERR;
    if (crypto_base64_decode(body->valuestring, len, raw, CRYPTO_BASE64_DEC_MAX(len) + 1, &n) != ML_OK)
        *why = "isBase64Encoded is true but body is not valid base64";
    else
        rc = ml_buf_append(out, raw, n);
    free(raw);
    return rc;
}

static int invalid(httpd_resp *resp, const char *why)
{
    httpd_resp_error(resp, 502, INVALID, "the function's response is invalid: %s", why);
    return 502;
}

/* A v2 response object (it has "statusCode"). */
static int answer_object(httpd_resp *resp, const cJSON *o)
{
    head h = { .n = 0 };
    ml_buf body = { 0 };
    const char *why = "out of memory";
    int status = 0;

    if (head_parse(o, &status, &h, &why) != ML_OK || body_of(o, &body, &why) != ML_OK) {
        head_free(&h);
        ml_buf_free(&body);
        return invalid(resp, why);
    }
    ml_buf_free(&resp->body);
    if (head_apply(resp, status, &h) != ML_OK) {
        head_free(&h);
        ml_buf_free(&body);
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return 500;
    }
    head_free(&h);
    resp->body = body;
    return status;
}

/* The error body with one extra member in "error" (error_type). */
static void error_with_type(httpd_resp *resp, int status, const char *code, const char *msg,
                            const char *type)
{
    cJSON *doc, *err;

    httpd_resp_error(resp, status, code, "%s", msg);
    if (!type)
        return;
    doc = cJSON_ParseWithLength(resp->body.data, resp->body.len);
    err = cJSON_GetObjectItemCaseSensitive(doc, "error");
    if (cJSON_IsObject(err) && cJSON_AddStringToObject(err, "error_type", type)) {
        httpd_resp_json(resp, status, doc); /* frees doc */
        return;
    }
    cJSON_Delete(doc);
}

static int answer_function_error(httpd_resp *resp, const gw_fnout *out)
{
    cJSON *doc = out->json ? cJSON_ParseWithLength(out->json, out->len) : NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(doc, "errorMessage");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "errorType");

    error_with_type(resp, 502, "function_error",
                    cJSON_IsString(m) ? m->valuestring : "the function failed",
                    cJSON_IsString(t) ? t->valuestring : "Unhandled");
    cJSON_Delete(doc);
    return 502;
}

int gw_fnurl_answer(httpd_resp *resp, const gw_fnout *out)
{
    cJSON *doc;
    int status;

    switch (out->kind) {
    case GW_FNOUT_FUNCTION_ERROR:
        return answer_function_error(resp, out);
    case GW_FNOUT_TIMEOUT:
        error_with_type(resp, 504, "function_timeout",
                        out->message ? out->message : "the function did not finish in time",
                        "TimeoutError");
        return 504;
    case GW_FNOUT_GATEWAY:
        httpd_resp_error(resp, out->status >= 400 && out->status <= 599 ? out->status : 502,
                         out->code ? out->code : "bad_gateway", "%s",
                         out->message ? out->message : "the function could not be invoked");
        return resp->status;
    case GW_FNOUT_RESULT:
        break;
    }
    doc = out->json ? cJSON_ParseWithLength(out->json, out->len) : NULL;
    if (!doc) {
        cJSON_Delete(doc);
        return invalid(resp, "the result is not JSON");
    }
    if (cJSON_IsObject(doc) && cJSON_GetObjectItemCaseSensitive(doc, "statusCode")) {
        status = answer_object(resp, doc);
        cJSON_Delete(doc);
        return status;
    }
    cJSON_Delete(doc);
    /* a bare value: the JSON text itself, as AWS does */
    resp->status = 200;
    resp->content_type = "application/json";
    ml_buf_reset(&resp->body);
    if (ml_buf_append(&resp->body, out->json, out->len) != ML_OK) {
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return 500;
    }
    return 200;
}
