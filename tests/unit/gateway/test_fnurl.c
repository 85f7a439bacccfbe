/* Unit tests: function URLs (services/gateway/fnurl_event.c, fnurl_resp.c, fnurl_cors.c):
 * the v2 event of a request, the mapping of a function's result to the HTTP response, and
 * the CORS decisions (docs/http.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fnurl.h"

/* ---- helpers ---- */

static cJSON *event_of(const gw_fnurl_req *r)
{
    char *text = NULL;
    size_t len = 0;
    cJSON *ev;

    assert_int_equal(gw_fnurl_event(r, &text, &len), ML_OK);
    assert_int_equal(strlen(text), len);
    ev = cJSON_Parse(text);
    free(text);
    assert_non_null(ev);
    return ev;
}

static const char *str_at(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);

    if (b)
        v = cJSON_GetObjectItemCaseSensitive(v, b);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void resp_free(httpd_resp *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    ml_buf_free(&r->body);
    free(r->content_type_owned);
    memset(r, 0, sizeof(*r));
}

/* The n-th value of header name in resp (0-based), or NULL. */
static const char *hdr(const httpd_resp *r, const char *name, size_t nth)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0 && nth-- == 0)
            return r->headers[i].value;
    }
    return NULL;
}

static size_t hdr_count(const httpd_resp *r, const char *name)
{
    size_t n = 0;

    for (size_t i = 0; i < r->nheaders; i++)
        n += strcasecmp(r->headers[i].name, name) == 0;
    return n;
}

static int answer(httpd_resp *r, const char *json)
{
    gw_fnout out = { .kind = GW_FNOUT_RESULT, .json = json, .len = strlen(json) };

    memset(r, 0, sizeof(*r));
    r->request_id = "rid-1";
    return gw_fnurl_answer(r, &out);
}

static const char *body(const httpd_resp *r)
{
    return ml_buf_cstr(&r->body);
}

static const char *error_code(const httpd_resp *r, char *buf, size_t size)
{
    cJSON *o = cJSON_ParseWithLength(r->body.data, r->body.len);
    const char *c = str_at(cJSON_GetObjectItemCaseSensitive(o, "error"), "code", NULL);

    snprintf(buf, size, "%s", c ? c : "(none)");
    cJSON_Delete(o);
    return buf;
}

/* ---- the event ---- */

static const gw_fnurl_kv headers[] = {
    { "Host", "api.example.com:8080" },
    { "User-Agent", "curl/8" },
    { "Content-Type", "application/json" },
    { "X-Multi", "a" },
    { "Cookie", "s=1; t=2" },
    { "x-multi", "b" },
    { "Cookie", "u=3" },
};
static const gw_fnurl_kv query[] = { { "a", "1" }, { "b", "x y" }, { "a", "2" }, { "flag", NULL } };

static gw_fnurl_req base_req(void)
{
    gw_fnurl_req r = { .method = "POST", .raw_path = "/a/b", .raw_query = "a=1&b=x%20y&a=2&flag",
                       .proxy = "a/b", .headers = headers, .nheaders = ML_ARRAY_LEN(headers),
                       .query = query, .nquery = ML_ARRAY_LEN(query), .body = "{\"k\":\"v\"}",
                       .body_len = 9, .source_ip = "10.1.2.3", .request_id = "rid-1",
                       .account_id = "123456789012", .api_id = "hello",
                       .time_ms = 1796670238123LL /* 07/Dec/2026:19:03:58 +0000 */ };
    return r;
}

static void test_event_fields(void **state)
{
    gw_fnurl_req r = base_req();
    cJSON *ev = event_of(&r), *ctx, *http, *cookies, *qs;
    (void)state;
    assert_string_equal(str_at(ev, "version", NULL), "2.0");
    assert_string_equal(str_at(ev, "routeKey", NULL), "$default");
    assert_string_equal(str_at(ev, "rawPath", NULL), "/a/b");
    assert_string_equal(str_at(ev, "rawQueryString", NULL), "a=1&b=x%20y&a=2&flag");
    /* headers: lower-case, repeats comma-joined, no Cookie */
    assert_string_equal(str_at(ev, "headers", "host"), "api.example.com:8080");
    assert_string_equal(str_at(ev, "headers", "content-type"), "application/json");
    assert_string_equal(str_at(ev, "headers", "x-multi"), "a,b");
    assert_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ev, "headers"), "cookie"));
    assert_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ev, "headers"), "Host"));
    /* cookies split on "; ", across Cookie headers */
    cookies = cJSON_GetObjectItemCaseSensitive(ev, "cookies");
    assert_int_equal(cJSON_GetArraySize(cookies), 3);
    assert_string_equal(cJSON_GetArrayItem(cookies, 0)->valuestring, "s=1");
    assert_string_equal(cJSON_GetArrayItem(cookies, 1)->valuestring, "t=2");
    assert_string_equal(cJSON_GetArrayItem(cookies, 2)->valuestring, "u=3");
    /* query: repeats comma-joined, decoded, a bare key is "" */
    qs = cJSON_GetObjectItemCaseSensitive(ev, "queryStringParameters");
    assert_string_equal(str_at(qs, "a", NULL), "1,2");
    assert_string_equal(str_at(qs, "b", NULL), "x y");
    assert_string_equal(str_at(qs, "flag", NULL), "");
    assert_string_equal(str_at(ev, "pathParameters", "proxy"), "a/b");
    /* requestContext */
    ctx = cJSON_GetObjectItemCaseSensitive(ev, "requestContext");
    assert_string_equal(str_at(ctx, "accountId", NULL), "123456789012");
    assert_string_equal(str_at(ctx, "apiId", NULL), "hello");
    assert_string_equal(str_at(ctx, "domainName", NULL), "api.example.com:8080");
    assert_string_equal(str_at(ctx, "domainPrefix", NULL), "api");
    assert_string_equal(str_at(ctx, "requestId", NULL), "rid-1");
    assert_string_equal(str_at(ctx, "routeKey", NULL), "$default");
    assert_string_equal(str_at(ctx, "stage", NULL), "$default");
    assert_string_equal(str_at(ctx, "time", NULL), "07/Dec/2026:19:03:58 +0000");
    assert_true(cJSON_GetObjectItemCaseSensitive(ctx, "timeEpoch")->valuedouble == 1796670238123.0);
    assert_null(cJSON_GetObjectItemCaseSensitive(ctx, "authorizer"));
    http = cJSON_GetObjectItemCaseSensitive(ctx, "http");
    assert_string_equal(str_at(http, "method", NULL), "POST");
    assert_string_equal(str_at(http, "path", NULL), "/a/b");
    assert_string_equal(str_at(http, "protocol", NULL), "HTTP/1.1");
    assert_string_equal(str_at(http, "sourceIp", NULL), "10.1.2.3");
    assert_string_equal(str_at(http, "userAgent", NULL), "curl/8");
    /* a JSON body is text */
    assert_string_equal(str_at(ev, "body", NULL), "{\"k\":\"v\"}");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(ev, "isBase64Encoded")));
    cJSON_Delete(ev);
}

static void test_event_minimal_and_jwt(void **state)
{
    gw_fnurl_req r = base_req();
    cJSON *claims = cJSON_Parse("{\"sub\":\"alice\",\"scope\":\"functions:invoke  functions:read\",\"exp\":9}");
    cJSON *ev, *jwt, *scopes;
    (void)state;
    r.raw_path = "/";
    r.raw_query = "";
    r.proxy = NULL;
    r.nquery = 0;
    r.nheaders = 2; /* Host, User-Agent: no cookies */
    r.body_len = 0;
    r.body = "";
    r.jwt_claims = claims;
    ev = event_of(&r);
    assert_string_equal(str_at(ev, "rawPath", NULL), "/");
    assert_string_equal(str_at(ev, "rawQueryString", NULL), "");
    assert_null(cJSON_GetObjectItemCaseSensitive(ev, "queryStringParameters"));
    assert_null(cJSON_GetObjectItemCaseSensitive(ev, "pathParameters"));
    assert_null(cJSON_GetObjectItemCaseSensitive(ev, "cookies"));
    assert_null(cJSON_GetObjectItemCaseSensitive(ev, "body"));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(ev, "isBase64Encoded")));
    jwt = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ev, "requestContext"), "authorizer"),
        "jwt");
    assert_string_equal(str_at(jwt, "claims", "sub"), "alice");
    scopes = cJSON_GetObjectItemCaseSensitive(jwt, "scopes");
    assert_int_equal(cJSON_GetArraySize(scopes), 2);
    assert_string_equal(cJSON_GetArrayItem(scopes, 0)->valuestring, "functions:invoke");
    assert_string_equal(cJSON_GetArrayItem(scopes, 1)->valuestring, "functions:read");
    cJSON_Delete(ev);
    cJSON_Delete(claims);
}

static void test_event_body_encoding(void **state)
{
    static const gw_fnurl_kv bin[] = { { "Content-Type", "application/octet-stream" } };
    static const gw_fnurl_kv text[] = { { "content-type", "Text/Plain; charset=utf-8" } };
    static const gw_fnurl_kv none[] = { { "X-A", "1" } };
    static const char raw[] = { 'a', 0, (char)0xff, 'b' };
    /* b64: the isBase64Encoded wanted (-1: not checked) */
    static const struct {
        const gw_fnurl_kv *headers;
        const char *body;
        size_t len;
        const char *want;
        int b64;
    } cases[] = {
        { bin, raw, sizeof(raw), "YQD/Yg==", 1 },         /* binary: base64 */
        { text, "caf\xe9", 4, "Y2Fm6Q==", 1 },           /* textual, bytes not UTF-8: base64 all the same */
        { text, "caf\xc3\xa9", 5, "caf\xc3\xa9", 0 }, /* text with UTF-8 */
        { none, "hi", 2, "aGk=", -1 },                    /* no content type: not known to be text */
    };
    gw_fnurl_req r = base_req();
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *ev;
        r.headers = cases[i].headers;
        r.nheaders = 1;
        r.body = cases[i].body;
        r.body_len = cases[i].len;
        ev = event_of(&r);
        assert_string_equal(str_at(ev, "body", NULL), cases[i].want);
        if (cases[i].b64 >= 0) {
            const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(ev, "isBase64Encoded");
            assert_true(cases[i].b64 ? cJSON_IsTrue(b64) : cJSON_IsFalse(b64));
        }
        cJSON_Delete(ev);
    }
    assert_true(gw_fnurl_textual("text/html"));
    assert_true(gw_fnurl_textual("application/problem+json"));
    assert_true(gw_fnurl_textual("application/xml; charset=utf-8"));
    assert_true(gw_fnurl_textual("application/x-www-form-urlencoded"));
    assert_true(gw_fnurl_textual("application/javascript"));
    assert_false(gw_fnurl_textual("image/png"));
    assert_false(gw_fnurl_textual("multipart/form-data; boundary=json"));
    assert_false(gw_fnurl_textual(NULL));
}

/* ---- the response ---- */

static void test_answer_object(void **state)
{
    httpd_resp r;
    (void)state;
    assert_int_equal(answer(&r, "{\"statusCode\":201,\"headers\":{\"Content-Type\":\"text/html\","
                                "\"X-Num\":42,\"X-Bool\":true,\"X-Frac\":1.5,\"Connection\":\"close\","
                                "\"Content-Length\":\"999\",\"Transfer-Encoding\":\"chunked\"},"
                                "\"multiValueHeaders\":{\"X-M\":[\"1\",\"2\"]},"
                                "\"cookies\":[\"a=1; Path=/\",\"b=2\"],\"body\":\"<p>hi</p>\"}"),
                     201);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.content_type, "text/html");
    assert_string_equal(body(&r), "<p>hi</p>");
    assert_string_equal(hdr(&r, "X-Num", 0), "42");
    assert_string_equal(hdr(&r, "X-Bool", 0), "true");
    assert_string_equal(hdr(&r, "X-Frac", 0), "1.5");
    assert_null(hdr(&r, "Connection", 0));
    assert_null(hdr(&r, "Content-Length", 0));
    assert_null(hdr(&r, "Transfer-Encoding", 0));
    assert_null(hdr(&r, "Content-Type", 0)); /* it is the response's type */
    assert_int_equal(hdr_count(&r, "X-M"), 2);
    assert_string_equal(hdr(&r, "X-M", 1), "2");
    assert_int_equal(hdr_count(&r, "Set-Cookie"), 2);
    assert_string_equal(hdr(&r, "Set-Cookie", 0), "a=1; Path=/");
    resp_free(&r);
    /* a redirect, no content type: application/json, empty body */
    assert_int_equal(answer(&r, "{\"statusCode\":302,\"headers\":{\"Location\":\"https://x.example/\"}}"), 302);
    assert_string_equal(hdr(&r, "Location", 0), "https://x.example/");
    assert_string_equal(r.content_type, "application/json");
    assert_int_equal(r.body.len, 0);
    resp_free(&r);
    assert_int_equal(answer(&r, "{\"statusCode\":301,\"headers\":{\"location\":\"/new\"},\"body\":null}"), 301);
    assert_string_equal(hdr(&r, "location", 0), "/new");
    resp_free(&r);
    /* base64 body */
    assert_int_equal(answer(&r, "{\"statusCode\":200,\"headers\":{\"content-type\":\"image/png\"},"
                                "\"body\":\"YQD/Yg==\",\"isBase64Encoded\":true}"), 200);
    assert_int_equal(r.body.len, 4);
    assert_memory_equal(r.body.data, "a\0\xff" "b", 4);
    assert_string_equal(r.content_type, "image/png");
    resp_free(&r);
    /* a custom status */
    assert_int_equal(answer(&r, "{\"statusCode\":418,\"body\":\"teapot\"}"), 418);
    assert_string_equal(body(&r), "teapot");
    resp_free(&r);
}

static void test_answer_bare_and_invalid(void **state)
{
    static const char *const bad[] = {
        "{\"statusCode\":99}", "{\"statusCode\":600}", "{\"statusCode\":\"200\"}",
        "{\"statusCode\":200.5}", "{\"statusCode\":200,\"body\":\"%%%\",\"isBase64Encoded\":true}",
        "{\"statusCode\":200,\"headers\":[1]}", "{\"statusCode\":200,\"headers\":{\"X\":null}}",
        "{\"statusCode\":200,\"headers\":{\"X\":\"a\\r\\nInjected: 1\"}}",
        "{\"statusCode\":200,\"headers\":{\"Bad Name\":\"1\"}}",
        "{\"statusCode\":200,\"cookies\":[1]}", "{\"statusCode\":200,\"multiValueHeaders\":{\"X\":\"1\"}}",
        "not json",
    };
    httpd_resp r;
    char code[64];
    (void)state;
    /* bare values: 200 JSON, the text as it came */
    assert_int_equal(answer(&r, "{\"hello\":\"world\"}"), 200);
    assert_string_equal(body(&r), "{\"hello\":\"world\"}");
    assert_string_equal(r.content_type, "application/json");
    resp_free(&r);
    assert_int_equal(answer(&r, "[1,2]"), 200);
    assert_string_equal(body(&r), "[1,2]");
    resp_free(&r);
    assert_int_equal(answer(&r, "\"text\""), 200);
    resp_free(&r);
    assert_int_equal(answer(&r, "{\"StatusCode\":404}"), 200); /* the name is case-sensitive */
    resp_free(&r);
    for (size_t i = 0; i < ML_ARRAY_LEN(bad); i++) {
        int st = answer(&r, bad[i]);
        if (st != 502 || strcmp(error_code(&r, code, sizeof(code)), "invalid_function_response") != 0)
            fail_msg("#%zu %s: %d %s", i, bad[i], st, body(&r));
        assert_string_equal(r.content_type, "application/json");
        resp_free(&r);
    }
}

static void test_answer_errors(void **state)
{
    const char *fe = "{\"errorType\":\"ValueError\",\"errorMessage\":\"bad input\"}";
    gw_fnout out = { .kind = GW_FNOUT_FUNCTION_ERROR, .json = fe, .len = strlen(fe) };
    httpd_resp r = { .request_id = "rid-2" };
    cJSON *o;
    (void)state;
    assert_int_equal(gw_fnurl_answer(&r, &out), 502);
    o = cJSON_Parse(body(&r));
    assert_string_equal(str_at(o, "error", "code"), "function_error");
    assert_string_equal(str_at(o, "error", "message"), "bad input");
    assert_string_equal(str_at(o, "error", "error_type"), "ValueError");
    assert_string_equal(str_at(o, "error", "request_id"), "rid-2");
    cJSON_Delete(o);
    resp_free(&r);
    out = (gw_fnout){ .kind = GW_FNOUT_TIMEOUT };
    assert_int_equal(gw_fnurl_answer(&r, &out), 504);
    o = cJSON_Parse(body(&r));
    assert_string_equal(str_at(o, "error", "code"), "function_timeout");
    cJSON_Delete(o);
    resp_free(&r);
    out = (gw_fnout){ .kind = GW_FNOUT_GATEWAY, .status = 503, .code = "upstream_unavailable",
                      .message = "no executor" };
    assert_int_equal(gw_fnurl_answer(&r, &out), 503);
    o = cJSON_Parse(body(&r));
    assert_string_equal(str_at(o, "error", "code"), "upstream_unavailable");
    assert_string_equal(str_at(o, "error", "message"), "no executor");
    cJSON_Delete(o);
    resp_free(&r);
}

static void test_head(void **state)
{
    cJSON *http = cJSON_Parse("{\"statusCode\":206,\"headers\":{\"Content-Type\":\"text/event-stream\"},"
                              "\"cookies\":[\"c=1\"]}");
    httpd_resp r = { 0 };
    const char *ct = NULL, *why = NULL;
    (void)state;
    assert_int_equal(gw_fnurl_head(&r, http, &ct, &why), ML_OK);
    assert_int_equal(r.status, 206);
    assert_string_equal(ct, "text/event-stream");
    assert_string_equal(r.content_type, "text/event-stream");
    assert_string_equal(hdr(&r, "Set-Cookie", 0), "c=1");
    resp_free(&r);
    cJSON_Delete(http);
    http = cJSON_Parse("{\"statusCode\":1000}");
    assert_int_equal(gw_fnurl_head(&r, http, &ct, &why), ML_ERR);
    assert_non_null(why);
    assert_int_equal(r.nheaders, 0);
    cJSON_Delete(http);
    http = cJSON_Parse("{\"headers\":{\"x-a\":\"1\"}}"); /* metadata without a status: 200 */
    assert_int_equal(gw_fnurl_head(&r, http, &ct, &why), ML_OK);
    assert_int_equal(r.status, 200);
    assert_null(ct);
    assert_string_equal(hdr(&r, "x-a", 0), "1");
    resp_free(&r);
    cJSON_Delete(http);
}

/* ---- CORS ---- */

static gw_fnurl_cors cors_cfg(const char *origins, const char *methods, const char *hdrs, bool cred)
{
    gw_fnurl_cors c = { .enabled = true, .max_age = 600, .allow_credentials = cred };

    snprintf(c.allow_origins, sizeof(c.allow_origins), "%s", origins);
    snprintf(c.allow_methods, sizeof(c.allow_methods), "%s", methods);
    snprintf(c.allow_headers, sizeof(c.allow_headers), "%s", hdrs);
    snprintf(c.expose_headers, sizeof(c.expose_headers), "x-trace");
    return c;
}

static void test_cors(void **state)
{
    gw_fnurl_cors c = cors_cfg("https://a.example, https://b.example", "GET,POST", "content-type,x-a", true);
    gw_fnurl_cors star = cors_cfg("*", "*", "*", false), off = { 0 };
    httpd_resp r = { 0 };
    (void)state;
    assert_true(gw_fnurl_cors_allowed(&c, "https://b.example"));
    assert_true(gw_fnurl_cors_allowed(&c, "https://A.example"));
    assert_false(gw_fnurl_cors_allowed(&c, "https://evil.example"));
    assert_false(gw_fnurl_cors_allowed(&c, "https://a.example.evil"));
    assert_false(gw_fnurl_cors_allowed(&c, NULL));
    assert_false(gw_fnurl_cors_allowed(&off, "https://a.example"));
    assert_true(gw_fnurl_cors_allowed(&star, "https://any.example"));
    /* preflight from an allowed origin */
    gw_fnurl_cors_preflight(&r, &c, "https://a.example", "POST", "x-a");
    assert_int_equal(r.status, 204);
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin", 0), "https://a.example");
    assert_string_equal(hdr(&r, "Vary", 0), "Origin");
    assert_string_equal(hdr(&r, "Access-Control-Allow-Methods", 0), "GET,POST");
    assert_string_equal(hdr(&r, "Access-Control-Allow-Headers", 0), "content-type,x-a");
    assert_string_equal(hdr(&r, "Access-Control-Max-Age", 0), "600");
    assert_string_equal(hdr(&r, "Access-Control-Allow-Credentials", 0), "true");
    resp_free(&r);
    /* from another origin, or without CORS: 204 and nothing else */
    gw_fnurl_cors_preflight(&r, &c, "https://evil.example", "POST", NULL);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.nheaders, 0);
    resp_free(&r);
    gw_fnurl_cors_preflight(&r, &off, "https://a.example", "POST", NULL);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.nheaders, 0);
    resp_free(&r);
    /* wildcards without credentials: "*" origin, what was asked echoed */
    gw_fnurl_cors_preflight(&r, &star, "https://any.example", "PATCH", "x-b");
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin", 0), "*");
    assert_null(hdr(&r, "Vary", 0));
    assert_string_equal(hdr(&r, "Access-Control-Allow-Methods", 0), "PATCH");
    assert_string_equal(hdr(&r, "Access-Control-Allow-Headers", 0), "x-b");
    assert_null(hdr(&r, "Access-Control-Allow-Credentials", 0));
    resp_free(&r);
    /* actual responses: the function's own CORS headers go, the configured ones come */
    httpd_resp_header(&r, "Access-Control-Allow-Origin", "https://evil.example");
    httpd_resp_header(&r, "X-Keep", "1");
    gw_fnurl_cors_actual(&r, &c, "https://b.example");
    assert_int_equal(hdr_count(&r, "Access-Control-Allow-Origin"), 1);
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin", 0), "https://b.example");
    assert_string_equal(hdr(&r, "Access-Control-Expose-Headers", 0), "x-trace");
    assert_string_equal(hdr(&r, "Access-Control-Allow-Credentials", 0), "true");
    assert_string_equal(hdr(&r, "Vary", 0), "Origin");
    assert_string_equal(hdr(&r, "X-Keep", 0), "1");
    resp_free(&r);
    httpd_resp_header(&r, "X-Keep", "1");
    gw_fnurl_cors_actual(&r, &c, "https://evil.example");
    assert_int_equal(r.nheaders, 1);
    resp_free(&r);
    /* no CORS configured: the function's headers stay as they are */
    httpd_resp_header(&r, "Access-Control-Allow-Origin", "*");
    gw_fnurl_cors_actual(&r, &off, "https://a.example");
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin", 0), "*");
    resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_fields),
        cmocka_unit_test(test_event_minimal_and_jwt),
        cmocka_unit_test(test_event_body_encoding),
        cmocka_unit_test(test_answer_object),
        cmocka_unit_test(test_answer_bare_and_invalid),
        cmocka_unit_test(test_answer_errors),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_cors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
