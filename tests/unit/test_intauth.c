/* Unit tests: shared/intauth.c — token parsing and loading, the constant-time match, the
 * open paths, and the guard on a real httpd server (driven with libcurl). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "intauth.h"

#define TOKEN "0123456789abcdef0123456789abcdef-token"
#define NEW_TOKEN "fedcba9876543210fedcba9876543210-rotated"

static void test_parse(void **state)
{
    char out[ML_INTAUTH_MAX_LEN + 1], err[256], longer[ML_INTAUTH_MAX_LEN + 2];
    const char *raw = "  \t" TOKEN "\r\n\n";

    (void)state;
    assert_int_equal(ml_intauth_parse(raw, strlen(raw), out, sizeof(out), err, sizeof(err)), ML_OK);
    assert_string_equal(out, TOKEN);
    /* 31 characters: too short; the message never echoes the token */
    assert_int_equal(ml_intauth_parse(TOKEN, 31, out, sizeof(out), err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "31 characters"));
    assert_null(strstr(err, "0123456789"));
    assert_int_equal(ml_intauth_parse(TOKEN, 32, out, sizeof(out), err, sizeof(err)), ML_OK);
    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    assert_int_equal(ml_intauth_parse(longer, ML_INTAUTH_MAX_LEN + 1, out, sizeof(out), err, sizeof(err)), ML_ERR);
    assert_int_equal(ml_intauth_parse(longer, ML_INTAUTH_MAX_LEN, out, sizeof(out), err, sizeof(err)), ML_OK);
    /* a space, a control character or a non-ASCII byte inside */
    assert_int_equal(ml_intauth_parse("0123456789abcdef 0123456789abcdef", 33, out, sizeof(out), err,
                                      sizeof(err)), ML_ERR);
    assert_int_equal(ml_intauth_parse("0123456789abcdef\x01" "0123456789abcdef", 33, out, sizeof(out),
                                      err, sizeof(err)), ML_ERR);
    assert_int_equal(ml_intauth_parse("0123456789abcdef\xc3\xa9" "0123456789abcdef", 34, out,
                                      sizeof(out), err, sizeof(err)), ML_ERR);
    /* no room in out */
    assert_int_equal(ml_intauth_parse(TOKEN, strlen(TOKEN), out, 10, err, sizeof(err)), ML_ERR);
}

static void test_load(void **state)
{
    char out[ML_INTAUTH_MAX_LEN + 1], err[400], path[] = "/tmp/test_intauth_XXXXXX";
    ml_intauth_cfg c = { "", "", false, NULL };
    int fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, TOKEN "\n", strlen(TOKEN) + 1), (ssize_t)strlen(TOKEN) + 1);
    close(fd);
    /* none: refused unless insecure, and the message says what to set */
    assert_int_equal(ml_intauth_load(&c, out, sizeof(out), err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "MINILAMBDA_INTERNAL_TOKEN"));
    assert_non_null(strstr(err, "MINILAMBDA_INTERNAL_AUTH_INSECURE"));
    c.insecure = true;
    assert_int_equal(ml_intauth_load(&c, out, sizeof(out), err, sizeof(err)), ML_OK);
    assert_string_equal(out, "");
    /* a token is used even when insecure is on */
    c.token = TOKEN;
    assert_int_equal(ml_intauth_load(&c, out, sizeof(out), err, sizeof(err)), ML_OK);
    assert_string_equal(out, TOKEN);
    /* both: ambiguous, refused */
    c.token_file = path;
    assert_int_equal(ml_intauth_load(&c, out, sizeof(out), err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "not both"));
    /* the file, its newline trimmed */
    c.token = "";
    c.insecure = false;
    assert_int_equal(ml_intauth_load(&c, out, sizeof(out), err, sizeof(err)), ML_OK);
    assert_string_equal(out, TOKEN);
    unlink(path);
    assert_int_equal(ml_intauth_load(&c, out, sizeof(out), err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "cannot open"));
}

static void test_matches(void **state)
{
    ml_intauth_key key;
    char longer[sizeof(TOKEN) + 1], huge[ML_INTAUTH_MAX_LEN + 2];

    (void)state;
    assert_int_equal(ml_intauth_key_set(&key, TOKEN), ML_OK);
    assert_true(ml_intauth_matches(&key, TOKEN));
    assert_false(ml_intauth_matches(&key, NULL));
    assert_false(ml_intauth_matches(&key, ""));
    assert_false(ml_intauth_matches(&key, "0123456789abcdef0123456789abcdef-tokeN"));
    assert_false(ml_intauth_matches(&key, "0123456789abcdef0123456789abcdef-toke")); /* a prefix */
    ml_snprintf_trunc(longer, sizeof(longer), "%sx", TOKEN);
    assert_false(ml_intauth_matches(&key, longer));
    /* longer than any token: refused, and a key cannot be made of it */
    memset(huge, 'a', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    assert_false(ml_intauth_matches(&key, huge));
    assert_int_equal(ml_intauth_key_set(&key, huge), ML_ERR);
    huge[ML_INTAUTH_MAX_LEN] = '\0'; /* exactly the largest token */
    assert_int_equal(ml_intauth_key_set(&key, huge), ML_OK);
    assert_true(ml_intauth_matches(&key, huge));
    huge[ML_INTAUTH_MAX_LEN - 1] = 'b';
    assert_false(ml_intauth_matches(&key, huge));
}

static void test_open_paths(void **state)
{
    (void)state;
    assert_true(ml_intauth_open_path("/health"));
    assert_true(ml_intauth_open_path("/metrics"));
    assert_true(ml_intauth_open_path("/ready/invoke"));
    assert_false(ml_intauth_open_path("/ready/"));
    assert_false(ml_intauth_open_path("/ready/a/b"));
    assert_false(ml_intauth_open_path("/health/x"));
    assert_false(ml_intauth_open_path("/healthz"));
    assert_false(ml_intauth_open_path("/functions"));
    assert_false(ml_intauth_open_path("/"));
}

static httpd_result h_ok(httpd_req *req, httpd_resp *resp, void *ud)
{
    (void)req;
    (void)ud;
    httpd_resp_text(resp, 200, "text/plain", "ok");
    return HTTPD_DONE;
}

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    ml_buf_append(ud, p, sz * n);
    return sz * n;
}

/* One GET with an optional extra header; returns the status, body in out. */
static long get(uint16_t port, const char *path, const char *header, ml_buf *out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = header ? curl_slist_append(NULL, header) : NULL;
    char url[128];
    long status = 0;

    ml_buf_reset(out);
    ml_snprintf_trunc(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* Loads c into the process-wide state and starts a guarded server on routes (ML_OK asserted). */
static httpd *start_guarded(const ml_intauth_cfg *c, const httpd_route *routes, size_t n)
{
    httpd_config hc = { .service = "t", .bind_addr = "127.0.0.1", .guard = ml_intauth_guard };
    char err[256];
    httpd *h;

    assert_int_equal(ml_intauth_start(c), ML_OK);
    h = httpd_start(&hc, routes, n, err, sizeof(err));
    assert_non_null(h);
    return h;
}

static void test_guard_on_a_server(void **state)
{
    static const httpd_route routes[] = {
        { "GET", "/functions", h_ok, NULL, 0, false },
        { "GET", "/health", h_ok, NULL, 0, false },
        { "GET", "/ready/{cap}", h_ok, NULL, 0, false },
    };
    ml_intauth_cfg c = { TOKEN, "", false, NULL };
    ml_buf body = { 0 };
    httpd *h;
    uint16_t port;

    (void)state;
    h = start_guarded(&c, routes, ML_ARRAY_LEN(routes));
    assert_true(ml_intauth_enforced());
    assert_string_equal(ml_intauth_header_line(), "X-Minilambda-Internal: " TOKEN);
    port = httpd_port(h);
    assert_int_equal(get(port, "/functions", NULL, &body), 401);
    assert_non_null(strstr(ml_buf_cstr(&body), "\"code\":\"unauthorized\""));
    assert_int_equal(get(port, "/functions", "X-Minilambda-Internal: nope", &body), 401);
    assert_int_equal(get(port, "/functions", "Authorization: Bearer " TOKEN, &body), 401);
    assert_int_equal(get(port, "/functions", "x-minilambda-internal: " TOKEN, &body), 200);
    /* unknown routes are refused before routing: no 404 tells a stranger what exists */
    assert_int_equal(get(port, "/nothing/here", NULL, &body), 401);
    assert_int_equal(get(port, "/nothing/here", ml_intauth_header_line(), &body), 404);
    assert_int_equal(get(port, "/health", NULL, &body), 200);
    assert_int_equal(get(port, "/ready/invoke", NULL, &body), 200);
    httpd_stop(h);
    /* insecure, no token: the guard admits everything and callers send nothing */
    c.token = "";
    c.insecure = true;
    h = start_guarded(&c, routes, ML_ARRAY_LEN(routes));
    assert_false(ml_intauth_enforced());
    assert_null(ml_intauth_header_line());
    assert_int_equal(get(httpd_port(h), "/functions", NULL, &body), 200);
    httpd_stop(h);
    ml_buf_free(&body);
}

/* Rotation: the old token is still admitted, never sent; anything else stays refused. */
static void test_guard_accepts_the_old_token(void **state)
{
    static const httpd_route routes[] = { { "GET", "/functions", h_ok, NULL, 0, false } };
    ml_intauth_cfg c = { NEW_TOKEN, "", false, TOKEN };
    ml_buf body = { 0 };
    httpd *h;
    uint16_t port;

    (void)state;
    h = start_guarded(&c, routes, ML_ARRAY_LEN(routes));
    assert_string_equal(ml_intauth_header_line(), "X-Minilambda-Internal: " NEW_TOKEN);
    port = httpd_port(h);
    assert_int_equal(get(port, "/functions", "X-Minilambda-Internal: " NEW_TOKEN, &body), 200);
    assert_int_equal(get(port, "/functions", "X-Minilambda-Internal: " TOKEN, &body), 200);
    assert_int_equal(get(port, "/functions", "X-Minilambda-Internal: " TOKEN "x", &body), 401);
    assert_int_equal(get(port, "/functions", NULL, &body), 401);
    httpd_stop(h);
    /* without OLD the previous token is just wrong */
    c.token_old = NULL;
    h = start_guarded(&c, routes, ML_ARRAY_LEN(routes));
    assert_int_equal(get(httpd_port(h), "/functions", "X-Minilambda-Internal: " TOKEN, &body), 401);
    httpd_stop(h);
    /* a malformed OLD refuses to start, like a malformed token */
    c.token_old = "short";
    assert_int_equal(ml_intauth_start(&c), ML_ERR);
    ml_buf_free(&body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_matches),
        cmocka_unit_test(test_open_paths),
        cmocka_unit_test(test_guard_on_a_server),
        cmocka_unit_test(test_guard_accepts_the_old_token),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
