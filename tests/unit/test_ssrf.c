/* test_ssrf.c — URL parsing and address classification of the SSRF guard.
 * Uses literal addresses and "localhost" only (/etc/hosts), so nothing needs DNS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <sys/un.h>

#include "ssrf.h"

static const ssrf_policy strict = { 0 };
static const ssrf_policy loopback_ok = { .allow_loopback = true };
static const ssrf_policy private_ok = { .allow_private = true };
static const ssrf_policy both_ok = { .allow_loopback = true, .allow_private = true };

/* Asserts url is refused with result want and a reason containing `needle`. */
static void expect_fail(const char *url, const ssrf_policy *p, ssrf_result want,
                        const char *needle)
{
    char err[512] = "";
    ssrf_target t = { 0 };
    ssrf_result r = ssrf_check_url(url, p, &t, err, sizeof(err));

    if (r != want)
        fail_msg("%s: got %d (%s), want %d", url ? url : "(null)", r, err, want);
    if (!strstr(err, needle))
        fail_msg("%s: reason '%s' lacks '%s'", url ? url : "(null)", err, needle);
}

/* Asserts url passes; returns the target. */
static ssrf_target expect_ok(const char *url, const ssrf_policy *p)
{
    char err[512] = "";
    ssrf_target t = { 0 };

    if (ssrf_check_url(url, p, &t, err, sizeof(err)) != SSRF_OK)
        fail_msg("%s: refused: %s", url, err);
    assert_string_equal(err, "");
    return t;
}

static void test_blocked_ranges_strict(void **state)
{
    static const struct {
        const char *url, *needle;
    } cases[] = {
        { "http://127.0.0.1/", "loopback" },
        { "http://127.255.1.2:8080/x", "loopback" },
        { "http://[::1]/", "loopback" },
        { "http://10.0.0.1/", "private address (10.0.0.0/8)" },
        { "http://10.255.255.255/", "10.0.0.0/8" },
        { "http://172.16.0.1/", "172.16.0.0/12" },
        { "http://172.31.255.255/", "172.16.0.0/12" },
        { "http://192.168.1.1/", "192.168.0.0/16" },
        { "http://100.64.0.1/", "carrier-grade NAT" },
        { "http://100.127.255.255/", "carrier-grade NAT" },
        { "http://169.254.169.254/latest/meta-data/", "link-local" },
        { "http://169.254.0.1/", "169.254.0.0/16" },
        { "http://0.0.0.0/", "unspecified" },
        { "http://0.1.2.3/", "unspecified" },
        { "http://[::]/", "unspecified" },
        { "http://224.0.0.1/", "multicast" },
        { "http://239.255.255.250:1900/", "multicast" },
        { "http://255.255.255.255/", "reserved" },
        { "http://240.0.0.1/", "reserved" },
        { "http://[ff02::1]/", "multicast" },
        { "http://[fe80::1]/", "link-local address (fe80::/10)" },
        { "http://[febf::1]/", "fe80::/10" },
        { "http://[fd00::1]/", "unique local" },
        { "http://[fc00::1]/", "unique local" },
        { "http://[fec0::1]/", "site-local" },
        { "http://[::ffff:127.0.0.1]/", "loopback" },
        { "http://[::ffff:169.254.169.254]/", "link-local" },
        { "http://[::ffff:10.1.2.3]/", "10.0.0.0/8" },
        { "http://[::ffff:7f00:1]/", "loopback" },
        { "http://[64:ff9b::a00:1]/", "10.0.0.0/8" },          /* NAT64 of 10.0.0.1 */
        { "http://[64:ff9b:1::1]/", "local-use NAT64" },
        { "http://[2002:a9fe:a9fe::1]/", "link-local" },        /* 6to4 of 169.254.169.254 */
        { "http://[::7f00:1]/", "IPv4-compatible" },
        { "http://[2001:db8::1]/", "documentation" },
        { "http://192.0.2.10/", "documentation" },
        { "http://198.51.100.1/", "documentation" },
        { "http://203.0.113.7/", "documentation" },
        { "http://198.18.0.1/", "benchmarking" },
        { "http://192.0.0.170/", "IETF protocol" },
    };
    ML_UNUSED(state);
    for (size_t i = 0; i < ML_ARRAY_LEN(cases); i++)
        expect_fail(cases[i].url, &strict, SSRF_BLOCKED, cases[i].needle);
    /* NULL policy is the strict one */
    expect_fail("http://10.0.0.1/", NULL, SSRF_BLOCKED, "private");
}

/* Other spellings of 127.0.0.1 that the resolver (and libcurl) accept. LOCALHOST may come
 * back as ::1 first (stock Debian's /etc/hosts maps both), so only its class is checked. */
static void test_numeric_host_tricks(void **state)
{
    static const char *const urls[] = {
        "http://2130706433/", "http://0x7f.1/", "http://127.1/", "http://017700000001/",
        "http://0x7F000001:8080/",
    };
    ML_UNUSED(state);
    for (size_t i = 0; i < ML_ARRAY_LEN(urls); i++)
        expect_fail(urls[i], &strict, SSRF_BLOCKED, "resolves to 127.0.0.1, a loopback");
    expect_fail("HTTP://LOCALHOST/", &strict, SSRF_BLOCKED, "a loopback");
}

static void test_public_addresses_pass(void **state)
{
    ssrf_target t;

    ML_UNUSED(state);
    t = expect_ok("http://93.184.216.34/hook?x=1", &strict);
    assert_false(t.https);
    assert_true(t.host_is_ip);
    assert_int_equal(t.port, 80);
    assert_string_equal(t.host, "93.184.216.34");
    assert_string_equal(t.addr, "93.184.216.34");
    assert_int_equal(t.naddrs, 1);
    assert_string_equal(t.resolve, "");

    t = expect_ok("HTTPS://1.1.1.1:8443/path#frag", &strict);
    assert_true(t.https);
    assert_int_equal(t.port, 8443);

    t = expect_ok("https://[2606:4700:4700::1111]/", &strict);
    assert_int_equal(t.port, 443);
    assert_string_equal(t.host, "2606:4700:4700::1111");
    assert_string_equal(t.addr, "2606:4700:4700::1111");

    t = expect_ok("http://[2606:4700:4700::1111]:8080", &strict);
    assert_int_equal(t.port, 8080);
    /* empty port means the default */
    t = expect_ok("http://8.8.8.8:/", &strict);
    assert_int_equal(t.port, 80);
    /* range boundaries: just outside each blocked range */
    expect_ok("http://9.255.255.255/", &strict);
    expect_ok("http://11.0.0.0/", &strict);
    expect_ok("http://100.63.255.255/", &strict);
    expect_ok("http://100.128.0.0/", &strict);
    expect_ok("http://126.255.255.255/", &strict);
    expect_ok("http://128.0.0.0/", &strict);
    expect_ok("http://169.253.255.255/", &strict);
    expect_ok("http://169.255.0.0/", &strict);
    expect_ok("http://172.15.255.255/", &strict);
    expect_ok("http://172.32.0.0/", &strict);
    expect_ok("http://192.167.255.255/", &strict);
    expect_ok("http://192.169.0.0/", &strict);
    expect_ok("http://223.255.255.255/", &strict);
    expect_ok("http://[::ffff:8.8.8.8]/", &strict);
    expect_ok("http://[64:ff9b::808:808]/", &strict);   /* NAT64 of 8.8.8.8 */
    expect_ok("http://[2002:808:808::1]/", &strict);    /* 6to4 of 8.8.8.8 */
    expect_ok("http://[fbff:ffff::1]/", &strict);       /* below fc00::/7 */
    expect_ok("http://[fe00::1]/", &strict);            /* between fc00::/7 and fe80::/10 */
}

static void test_policy_loopback(void **state)
{
    ssrf_target t;
    char want[64];

    ML_UNUSED(state);
    t = expect_ok("http://127.0.0.1:9000/hook", &loopback_ok);
    assert_string_equal(t.addr, "127.0.0.1");
    expect_ok("http://[::1]:9000/", &loopback_ok);
    expect_ok("http://[::ffff:127.0.0.1]/", &loopback_ok);
    t = expect_ok("http://LocalHost:9000/x", &loopback_ok);
    assert_false(t.host_is_ip);
    assert_string_equal(t.host, "localhost");
    assert_true(t.naddrs >= 1);
    /* the pin lists exactly the checked addresses, IPv6 ones in brackets (whichever family
     * the resolver answers first: ::1 on stock Debian, 127.0.0.1 where hosts has only that) */
    ml_snprintf(want, sizeof(want), strchr(t.addr, ':') ? "localhost:9000:[%s]" : "localhost:9000:%s",
                t.addr);
    assert_memory_equal(t.resolve, want, strlen(want));
    expect_fail("http://localhost/", &strict, SSRF_BLOCKED, "host localhost resolves to");
    /* loopback does not open private ranges, nor the never-allowed ones */
    expect_fail("http://10.0.0.1/", &loopback_ok, SSRF_BLOCKED, "private");
    expect_fail("http://169.254.169.254/", &loopback_ok, SSRF_BLOCKED, "link-local");
    expect_fail("http://0.0.0.0:9000/", &loopback_ok, SSRF_BLOCKED, "unspecified");
}

static void test_policy_private(void **state)
{
    ML_UNUSED(state);
    expect_ok("http://10.0.0.1/", &private_ok);
    expect_ok("http://172.20.1.1/", &private_ok);
    expect_ok("http://192.168.0.10/", &private_ok);
    expect_ok("http://100.64.1.1/", &private_ok);
    expect_ok("http://[fd12:3456::1]/", &private_ok);
    expect_fail("http://127.0.0.1/", &private_ok, SSRF_BLOCKED, "loopback");
    /* never allowed, whatever the policy */
    static const char *const never[] = {
        "http://169.254.169.254/", "http://[fe80::1]/", "http://0.0.0.0/", "http://[::]/",
        "http://224.0.0.1/", "http://[ff02::1]/", "http://255.255.255.255/",
        "http://[::ffff:169.254.169.254]/", "http://192.0.2.1/",
    };
    for (size_t i = 0; i < ML_ARRAY_LEN(never); i++)
        expect_fail(never[i], &both_ok, SSRF_BLOCKED, "refused by the SSRF policy");
}

static void test_bad_urls(void **state)
{
    static const struct {
        const char *url, *needle;
    } cases[] = {
        { "", "empty" },
        { "ftp://1.1.1.1/", "scheme" },
        { "file:///etc/passwd", "scheme" },
        { "gopher://1.1.1.1:70/", "scheme" },
        { "javascript:alert(1)", "scheme" },
        { "http:/1.1.1.1/", "scheme" },
        { "//1.1.1.1/", "scheme" },
        { "http://", "no host" },
        { "http:///path", "no host" },
        { "http://?q", "no host" },
        { "http://:80/", "empty host" },
        { "http://user:pass@1.1.1.1/", "credentials" },
        { "http://1.1.1.1@127.0.0.1/", "credentials" },
        { "http://1.1.1.1:80@127.0.0.1/", "credentials" },
        { "http://@1.1.1.1/", "credentials" },
        { "http://1.1.1.1\\@127.0.0.1/", "backslash" },
        { "http://exa mple.com/", "space" },
        { "http://example.com/\n", "control" },
        { "http://ex\xc3\xa4mple.com/", "non-ASCII" },
        { "http://%31.1.1.1/", "not a valid host name" },
        { "http://a..b/", "not a valid host name" },
        { ".", "scheme" },
        { "http://.example.com/", "not a valid host name" },
        { "http://[::1/", "unterminated" },
        { "http://[::1]x/", "after the IPv6" },
        { "http://[fe80::1%25eth0]/", "zone" },
        { "http://[1.2.3.4]/", "not a valid IPv6" },
        { "http://1.1.1.1:0/", "out of range" },
        { "http://1.1.1.1:65536/", "out of range" },
        { "http://1.1.1.1:123456/", "out of range" },
        { "http://1.1.1.1:8o/", "not a number" },
        { "http://1.1.1.1:-1/", "not a number" },
        { "http://1.1.1.1:80:80/", "not a number" },
    };
    char longurl[SSRF_URL_MAX + 16], longhost[300];

    ML_UNUSED(state);
    for (size_t i = 0; i < ML_ARRAY_LEN(cases); i++)
        expect_fail(cases[i].url, &both_ok, SSRF_BAD_URL, cases[i].needle);
    expect_fail(NULL, &both_ok, SSRF_BAD_URL, "empty");

    memset(longurl, 'a', sizeof(longurl) - 1);
    longurl[sizeof(longurl) - 1] = '\0';
    memcpy(longurl, "http://1.1.1.1/", 15);
    expect_fail(longurl, &both_ok, SSRF_BAD_URL, "longer than 2048");

    memset(longhost, 'a', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = '\0';
    memcpy(longhost, "http://", 7);
    expect_fail(longhost, &both_ok, SSRF_BAD_URL, "longer than 253");

    /* a 64-character label is too long */
    expect_fail("http://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com/",
                &both_ok, SSRF_BAD_URL, "not a valid host name");
}

/* The fragment/query end the authority, as they do for libcurl: the host checked is the
 * one connected to. */
static void test_authority_boundaries(void **state)
{
    ML_UNUSED(state);
    expect_fail("http://127.0.0.1#@1.1.1.1/", &strict, SSRF_BLOCKED, "loopback");
    expect_fail("http://127.0.0.1?@1.1.1.1/", &strict, SSRF_BLOCKED, "loopback");
    expect_fail("http://127.0.0.1/@1.1.1.1/", &strict, SSRF_BLOCKED, "loopback");
    ssrf_target t = expect_ok("http://1.1.1.1/path@127.0.0.1", &strict);
    assert_string_equal(t.host, "1.1.1.1");
}

static void test_err_and_out_optional(void **state)
{
    ML_UNUSED(state);
    assert_int_equal(ssrf_check_url("http://10.0.0.1/", NULL, NULL, NULL, 0), SSRF_BLOCKED);
    assert_int_equal(ssrf_check_url("ftp://x/", NULL, NULL, NULL, 0), SSRF_BAD_URL);
    assert_int_equal(ssrf_check_url("http://8.8.8.8/", NULL, NULL, NULL, 0), SSRF_OK);
    /* a tiny err buffer is truncated, not overrun */
    char err[8];
    assert_int_equal(ssrf_check_url("http://10.0.0.1/", NULL, NULL, err, sizeof(err)),
                     SSRF_BLOCKED);
    assert_int_equal(strlen(err), 7);
}

static void test_addr_blocked_direct(void **state)
{
    struct sockaddr_in in4 = { .sin_family = AF_INET };
    struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
    struct sockaddr_un un = { .sun_family = AF_UNIX };

    ML_UNUSED(state);
    assert_int_equal(inet_pton(AF_INET, "169.254.169.254", &in4.sin_addr), 1);
    assert_non_null(strstr(ssrf_addr_blocked((struct sockaddr *)&in4, &both_ok), "metadata"));
    assert_int_equal(inet_pton(AF_INET, "8.8.4.4", &in4.sin_addr), 1);
    assert_null(ssrf_addr_blocked((struct sockaddr *)&in4, NULL));
    assert_int_equal(inet_pton(AF_INET6, "::1", &in6.sin6_addr), 1);
    assert_non_null(ssrf_addr_blocked((struct sockaddr *)&in6, NULL));
    assert_null(ssrf_addr_blocked((struct sockaddr *)&in6, &loopback_ok));
    assert_non_null(ssrf_addr_blocked((struct sockaddr *)&un, &both_ok));
    assert_non_null(ssrf_addr_blocked(NULL, &both_ok));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocked_ranges_strict),
        cmocka_unit_test(test_numeric_host_tricks),
        cmocka_unit_test(test_public_addresses_pass),
        cmocka_unit_test(test_policy_loopback),
        cmocka_unit_test(test_policy_private),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_authority_boundaries),
        cmocka_unit_test(test_err_and_out_optional),
        cmocka_unit_test(test_addr_blocked_direct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
