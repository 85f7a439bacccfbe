/* Unit tests: services/gateway/headers.c (what crosses the gateway in each direction) and
 * aws.c (the Invoke API's responses). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aws.h"
#include "headers.h"

/* A client request's headers for the getter. */
static const char *const *client_headers;

static const char *get(void *ud, const char *name)
{
    (void)ud;
    for (size_t i = 0; client_headers[i]; i += 2) {
        if (strcasecmp(client_headers[i], name) == 0)
            return client_headers[i + 1];
    }
    return NULL;
}

static const char *line(const struct curl_slist *l, const char *name)
{
    size_t n = strlen(name);

    for (; l; l = l->next) {
        if (strncasecmp(l->data, name, n) == 0 && l->data[n] == ':')
            return l->data + n + 1 + (l->data[n + 1] == ' ');
    }
    return NULL;
}

static void resp_free(httpd_resp *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    ml_buf_free(&r->body);
    memset(r, 0, sizeof(*r));
}

static const char *resp_header(const httpd_resp *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    }
    return NULL;
}

static void test_hop_by_hop(void **state)
{
    const char *hop[] = { "Connection", "keep-alive", "TE", "Transfer-Encoding", "Upgrade",
                          "Proxy-Authorization", "Proxy-Authenticate", "Trailer", "Proxy-Connection" };
    (void)state;
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        assert_true(gw_hdr_hop_by_hop(hop[i]));
    assert_false(gw_hdr_hop_by_hop("X-Invocation-Id"));
    assert_false(gw_hdr_hop_by_hop("Content-Type"));
    assert_true(gw_hdr_token_listed("keep-alive, X-Foo", "x-foo"));
    assert_true(gw_hdr_token_listed(" close ,\tX-Bar ", "X-Bar"));
    assert_false(gw_hdr_token_listed("X-Foobar", "X-Foo"));
    assert_false(gw_hdr_token_listed(NULL, "X-Foo"));
}

static void test_upstream_request(void **state)
{
    static const char *const h[] = {
        "Content-Type", "application/json", "X-Invocation-Type", "Event",
        "X-Log-Type", "Tail", "X-Forwarded-For", "6.6.6.6", "Forwarded", "for=6.6.6.6",
        "Authorization", "Bearer secret", "Cookie", "a=b", "Connection", "keep-alive, X-Log-Type",
        "Proxy-Authorization", "Basic x", "User-Agent", "ua/1", "X-Request-Id", "client-claims", NULL };
    struct curl_slist *l = NULL;
    (void)state;
    client_headers = h;
    assert_int_equal(gw_hdr_upstream_request(get, NULL, false, "10.1.2.3", "rid-1", &l), ML_OK);
    assert_string_equal(line(l, "Content-Type"), "application/json");
    assert_string_equal(line(l, "X-Invocation-Type"), "Event");
    assert_string_equal(line(l, "User-Agent"), "ua/1");
    assert_string_equal(line(l, "X-Forwarded-For"), "10.1.2.3"); /* the peer, not the claim */
    assert_string_equal(line(l, "X-Request-Id"), "rid-1");
    assert_string_equal(line(l, "X-Forwarded-Proto"), "http");
    assert_non_null(line(l, "Expect"));                           /* blanked: no 100-continue */
    assert_null(line(l, "X-Log-Type"));                            /* named in Connection */
    assert_null(line(l, "Authorization"));
    assert_null(line(l, "Cookie"));
    assert_null(line(l, "Forwarded"));
    assert_null(line(l, "Proxy-Authorization"));
    assert_null(line(l, "Connection"));
    /* exactly one X-Forwarded-For and one X-Request-Id */
    int xff = 0, rid = 0;
    for (struct curl_slist *p = l; p; p = p->next) {
        xff += strncasecmp(p->data, "X-Forwarded-For:", 16) == 0;
        rid += strncasecmp(p->data, "X-Request-Id:", 13) == 0;
    }
    assert_int_equal(xff, 1);
    assert_int_equal(rid, 1);
    curl_slist_free_all(l);
}

static void test_upstream_request_edge_cases(void **state)
{
    static const char *const none[] = { NULL };
    static const char *const evil[] = { "X-Invocation-Type", "Event\r\nX-Admin: 1", NULL };
    static const char *const aws[] = { "X-Amz-Invocation-Type", "DryRun", "X-Amz-Log-Type", "Tail",
                                       "Content-Type", "application/x-amz-json-1.1", NULL };
    struct curl_slist *l = NULL;
    (void)state;
    client_headers = none;
    assert_int_equal(gw_hdr_upstream_request(get, NULL, false, "", "r", &l), ML_OK);
    /* no client Content-Type: blanked so curl does not invent a form type */
    assert_string_equal(line(l, "Content-Type"), "");
    assert_null(line(l, "X-Forwarded-For"));
    curl_slist_free_all(l);
    l = NULL;
    client_headers = evil;
    assert_int_equal(gw_hdr_upstream_request(get, NULL, false, "1.2.3.4", "r", &l), ML_OK);
    assert_null(line(l, "X-Invocation-Type")); /* a value that could split the request is dropped */
    assert_null(line(l, "X-Admin"));
    curl_slist_free_all(l);
    l = NULL;
    client_headers = aws;
    assert_int_equal(gw_hdr_upstream_request(get, NULL, true, "1.2.3.4", "r", &l), ML_OK);
    assert_string_equal(line(l, "X-Invocation-Type"), "DryRun");
    assert_string_equal(line(l, "X-Log-Type"), "Tail");
    assert_string_equal(line(l, "Content-Type"), "application/json");
    assert_null(line(l, "X-Amz-Invocation-Type"));
    curl_slist_free_all(l);
}

static void capture(ml_buf *pairs, const char *raw)
{
    assert_int_equal(gw_hdr_capture_line(pairs, raw, strlen(raw)), ML_OK);
}

static void test_capture_and_pass(void **state)
{
    ml_buf pairs = { 0 };
    (void)state;
    capture(&pairs, "Content-Type: application/json; charset=utf-8\r\n");
    capture(&pairs, "X-Invocation-Id:  inv-1 \r\n");
    capture(&pairs, "Connection: keep-alive, X-Secret\r\n");
    capture(&pairs, "X-Secret: 1\r\n");
    capture(&pairs, "no colon here\r\n");
    capture(&pairs, "\r\n");
    assert_string_equal(gw_hdr_pairs_get(&pairs, "x-invocation-id"), "inv-1");
    assert_null(gw_hdr_pairs_get(&pairs, "no colon here"));
    assert_true(gw_hdr_pass_response(&pairs, "X-Invocation-Id"));
    assert_true(gw_hdr_pass_response(&pairs, "Retry-After"));
    assert_false(gw_hdr_pass_response(&pairs, "X-Secret"));
    assert_false(gw_hdr_pass_response(&pairs, "Keep-Alive"));
    assert_false(gw_hdr_pass_response(&pairs, "Transfer-Encoding"));
    assert_false(gw_hdr_pass_response(&pairs, "Content-Length"));
    assert_false(gw_hdr_pass_response(&pairs, "Date"));
    assert_false(gw_hdr_pass_response(&pairs, "X-Request-Id"));
    ml_buf_free(&pairs);
}

static void test_copy_response(void **state)
{
    ml_buf pairs = { 0 };
    httpd_resp r = { 0 };
    char raw[64];
    (void)state;
    capture(&pairs, "Content-Type: text/plain\r\n");
    capture(&pairs, "RateLimit-Limit: 999\r\n");
    capture(&pairs, "X-Function-Version: 3\r\n");
    capture(&pairs, "Upgrade: h2c\r\n");
    for (int i = 0; i < HTTPD_MAX_RESP_HEADERS + 10; i++) { /* more than the response table holds */
        snprintf(raw, sizeof(raw), "X-Extra-%d: %d\r\n", i, i);
        capture(&pairs, raw);
    }
    httpd_resp_header(&r, "RateLimit-Limit", "10"); /* the gateway's own headers win */
    gw_hdr_copy_response(&pairs, &r);
    assert_string_equal(r.content_type, "text/plain");
    assert_string_equal(resp_header(&r, "RateLimit-Limit"), "10");
    assert_string_equal(resp_header(&r, "X-Function-Version"), "3");
    assert_null(resp_header(&r, "Upgrade"));
    assert_null(resp_header(&r, "Content-Type"));
    assert_int_equal(r.nheaders, HTTPD_MAX_RESP_HEADERS);
    resp_free(&r);
    ml_buf_free(&pairs);
}

/* A Connection header anywhere in the answer (here after the header it names) still keeps
 * the names it lists from the client, on the path that looks for one first. */
static void test_copy_response_connection_listed(void **state)
{
    ml_buf pairs = { 0 };
    httpd_resp r = { 0 };
    (void)state;
    capture(&pairs, "X-Secret: 1\r\n");
    capture(&pairs, "X-Open: 2\r\n");
    capture(&pairs, "Connection: close, X-Secret\r\n");
    gw_hdr_copy_response(&pairs, &r);
    assert_null(resp_header(&r, "X-Secret"));
    assert_null(resp_header(&r, "Connection"));
    assert_string_equal(resp_header(&r, "X-Open"), "2");
    resp_free(&r);
    ml_buf_free(&pairs);
}

static void test_ctype_intern(void **state)
{
    char big[300];
    (void)state;
    const char *a = gw_ctype_intern("application/json");
    char copy[] = "application/json";
    assert_ptr_equal(gw_ctype_intern(copy), a); /* same storage for equal values */
    assert_string_equal(a, "application/json");
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_string_equal(gw_ctype_intern(big), "application/octet-stream");
}

static void test_aws_success_and_function_error(void **state)
{
    ml_buf pairs = { 0 };
    httpd_resp r = { .request_id = "rid-9" };
    (void)state;
    capture(&pairs, "X-Function-Version: 7\r\n");
    capture(&pairs, "X-Log-Result: aGk=\r\n");
    r.status = 200;
    ml_buf_append_str(&r.body, "{\"ok\":1}");
    gw_aws_invoke_response(&pairs, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(resp_header(&r, "X-Amz-Executed-Version"), "7");
    assert_string_equal(resp_header(&r, "X-Amz-Log-Result"), "aGk=");
    assert_string_equal(resp_header(&r, "x-amzn-RequestId"), "rid-9");
    assert_null(resp_header(&r, "X-Amz-Function-Error"));
    assert_string_equal(r.body.data, "{\"ok\":1}");
    resp_free(&r);
    capture(&pairs, "X-Function-Error: TimeoutError\r\n");
    r = (httpd_resp){ .status = 504, .request_id = "rid-9" };
    ml_buf_append_str(&r.body, "{\"errorType\":\"TimeoutError\"}");
    gw_aws_invoke_response(&pairs, &r);
    assert_int_equal(r.status, 200); /* AWS: a function error is still a 200 */
    assert_string_equal(resp_header(&r, "X-Amz-Function-Error"), "Unhandled");
    assert_string_equal(r.body.data, "{\"errorType\":\"TimeoutError\"}");
    resp_free(&r);
    ml_buf_free(&pairs);
}

static void test_aws_event_dryrun_and_errors(void **state)
{
    ml_buf pairs = { 0 };
    httpd_resp r = { .status = 202, .request_id = "rid" };
    (void)state;
    ml_buf_append_str(&r.body, "{\"invocation_id\":\"inv-42\",\"status\":\"queued\"}");
    gw_aws_invoke_response(&pairs, &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(r.body.len, 0);
    assert_string_equal(resp_header(&r, "X-Invocation-Id"), "inv-42");
    resp_free(&r);
    r = (httpd_resp){ .status = 404, .request_id = "rid" };
    ml_buf_append_str(&r.body, "{\"error\":{\"code\":\"function_not_found\",\"message\":\"no function 'x'\"}}");
    gw_aws_invoke_response(&pairs, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(resp_header(&r, "x-amzn-ErrorType"), "ResourceNotFoundException");
    assert_non_null(strstr(r.body.data, "\"message\":\"no function 'x'\""));
    assert_non_null(strstr(r.body.data, "\"Type\":\"User\""));
    resp_free(&r);
    r = (httpd_resp){ .status = 503, .request_id = "rid" };
    gw_aws_error(&r); /* no body at all still gives a well-formed error */
    assert_string_equal(resp_header(&r, "x-amzn-ErrorType"), "ServiceException");
    assert_non_null(strstr(r.body.data, "\"Type\":\"Service\""));
    resp_free(&r);
    assert_string_equal(gw_aws_error_type(429), "TooManyRequestsException");
    assert_string_equal(gw_aws_error_type(413), "RequestTooLargeException");
    assert_string_equal(gw_aws_error_type(409), "ResourceConflictException");
    assert_string_equal(gw_aws_error_type(401), "UnrecognizedClientException");
    ml_buf_free(&pairs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_upstream_request),
        cmocka_unit_test(test_upstream_request_edge_cases),
        cmocka_unit_test(test_capture_and_pass),
        cmocka_unit_test(test_copy_response),
        cmocka_unit_test(test_copy_response_connection_listed),
        cmocka_unit_test(test_ctype_intern),
        cmocka_unit_test(test_aws_success_and_function_error),
        cmocka_unit_test(test_aws_event_dryrun_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
