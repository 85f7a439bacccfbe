/* ssrf.c — URL parsing, resolution and address classification for outbound requests to
 * user-supplied URLs. See ssrf.h for the rules. */
#include "ssrf.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* How a range is treated: allowed by one policy flag, or never. */
typedef enum { CLS_LOOPBACK, CLS_PRIVATE, CLS_NEVER } range_class;

typedef struct v4_range {
    uint32_t net; /* host byte order */
    unsigned bits;
    range_class cls;
    const char *desc;
} v4_range;

/* Everything that is not globally reachable unicast (IANA special-purpose registry). */
static const v4_range v4_ranges[] = {
    { 0x00000000u, 8, CLS_NEVER, "unspecified address (0.0.0.0/8)" },
    { 0x0A000000u, 8, CLS_PRIVATE, "private address (10.0.0.0/8)" },
    { 0x64400000u, 10, CLS_PRIVATE, "carrier-grade NAT address (100.64.0.0/10)" },
    { 0x7F000000u, 8, CLS_LOOPBACK, "loopback address (127.0.0.0/8)" },
    { 0xA9FE0000u, 16, CLS_NEVER, "link-local address (169.254.0.0/16, includes cloud metadata)" },
    { 0xAC100000u, 12, CLS_PRIVATE, "private address (172.16.0.0/12)" },
    { 0xC0000000u, 24, CLS_NEVER, "IETF protocol address (192.0.0.0/24)" },
    { 0xC0000200u, 24, CLS_NEVER, "documentation address (192.0.2.0/24)" },
    { 0xC0A80000u, 16, CLS_PRIVATE, "private address (192.168.0.0/16)" },
    { 0xC6120000u, 15, CLS_PRIVATE, "benchmarking address (198.18.0.0/15)" },
    { 0xC6336400u, 24, CLS_NEVER, "documentation address (198.51.100.0/24)" },
    { 0xCB007100u, 24, CLS_NEVER, "documentation address (203.0.113.0/24)" },
    { 0xE0000000u, 4, CLS_NEVER, "multicast address (224.0.0.0/4)" },
    { 0xF0000000u, 4, CLS_NEVER, "reserved address (240.0.0.0/4, includes broadcast)" },
};

typedef struct v6_range {
    unsigned char net[16];
    unsigned bits;
    range_class cls;
    const char *desc;
} v6_range;

/* Order matters: the exact ::/128 and ::1/128 come before ::/96. */
static const v6_range v6_ranges[] = {
    { { 0 }, 128, CLS_NEVER, "unspecified address (::)" },
    { { [15] = 1 }, 128, CLS_LOOPBACK, "loopback address (::1)" },
    { { 0 }, 96, CLS_NEVER, "IPv4-compatible address (::/96, deprecated)" },
    { { 0x00, 0x64, 0xff, 0x9b, 0x00, 0x01 }, 48, CLS_PRIVATE,
      "local-use NAT64 address (64:ff9b:1::/48)" },
    { { 0x01, 0x00 }, 64, CLS_NEVER, "discard-only address (100::/64)" },
    { { 0x20, 0x01, 0x0d, 0xb8 }, 32, CLS_NEVER, "documentation address (2001:db8::/32)" },
    { { 0xfc }, 7, CLS_PRIVATE, "unique local address (fc00::/7)" },
    { { 0xfe, 0x80 }, 10, CLS_NEVER, "link-local address (fe80::/10)" },
    { { 0xfe, 0xc0 }, 10, CLS_PRIVATE, "site-local address (fec0::/10, deprecated)" },
    { { 0xff }, 8, CLS_NEVER, "multicast address (ff00::/8)" },
};

/* IPv6 prefixes that carry an IPv4 address the packet ends up at. */
typedef struct v6_embed {
    unsigned char net[16];
    unsigned bits;
    unsigned v4_offset; /* byte offset of the embedded IPv4 address */
} v6_embed;

static const v6_embed v6_embeds[] = {
    { { [10] = 0xff, [11] = 0xff }, 96, 12 },         /* IPv4-mapped ::ffff:0:0/96 */
    { { 0x00, 0x64, 0xff, 0x9b }, 96, 12 },           /* NAT64 well-known 64:ff9b::/96 */
    { { 0x20, 0x02 }, 16, 2 },                        /* 6to4 2002::/16 */
};

static bool policy_allows(range_class cls, const ssrf_policy *p)
{
    if (cls == CLS_LOOPBACK)
        return p && p->allow_loopback;
    if (cls == CLS_PRIVATE)
        return p && p->allow_private;
    return false;
}

static bool v6_in(const unsigned char *a, const unsigned char *net, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;

    if (memcmp(a, net, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[whole] & mask) == (net[whole] & mask);
}

static const char *v4_blocked(uint32_t a, const ssrf_policy *p)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(v4_ranges); i++) {
        const v4_range *r = &v4_ranges[i];
        uint32_t mask = 0xffffffffu << (32 - r->bits);

        if ((a & mask) == r->net)
            return policy_allows(r->cls, p) ? NULL : r->desc;
    }
    return NULL;
}

static const char *v6_blocked(const unsigned char *a, const ssrf_policy *p)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(v6_embeds); i++) {
        const v6_embed *e = &v6_embeds[i];

        if (v6_in(a, e->net, e->bits)) {
            const unsigned char *v = a + e->v4_offset;
            return v4_blocked((uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 |
                              (uint32_t)v[2] << 8 | v[3], p);
        }
    }
    for (size_t i = 0; i < ML_ARRAY_LEN(v6_ranges); i++) {
        const v6_range *r = &v6_ranges[i];

        if (v6_in(a, r->net, r->bits))
            return policy_allows(r->cls, p) ? NULL : r->desc;
    }
    return NULL;
}

const char *ssrf_addr_blocked(const struct sockaddr *sa, const ssrf_policy *p)
{
    if (!sa)
        return "no address";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return v4_blocked(ntohl(in->sin_addr.s_addr), p);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        return v6_blocked(in6->sin6_addr.s6_addr, p);
    }
    return "address family other than IPv4/IPv6";
}

static ssrf_result fail(ssrf_result r, char *err, size_t errlen, const char *fmt, ...)
    ML_PRINTF(4, 5);

static ssrf_result fail(ssrf_result r, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        ml_vsnprintf_trunc(err, errlen, fmt, ap);
        va_end(ap);
    }
    return r;
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* DNS-style name: labels of 1..63 [A-Za-z0-9_-] separated by dots, one trailing dot allowed. */
static bool host_name_valid(const char *h, size_t n)
{
    size_t label = 0;

    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];

        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (is_alnum(c) || c == '-' || c == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

/* Splits the authority (host[:port]) into t->host / t->port. */
static ssrf_result parse_authority(const char *a, size_t n, ssrf_target *t, char *err,
                                   size_t errlen)
{
    const char *host = a, *port = NULL;
    size_t hlen, plen = 0;
    unsigned char tmp[16];

    if (memchr(a, '@', n))
        return fail(SSRF_BAD_URL, err, errlen, "URL must not contain credentials (user@host)");
    if (n == 0)
        return fail(SSRF_BAD_URL, err, errlen, "URL has no host");
    if (a[0] == '[') {
        const char *close = memchr(a, ']', n);

        if (!close)
            return fail(SSRF_BAD_URL, err, errlen, "URL has an unterminated IPv6 literal");
        host = a + 1;
        hlen = (size_t)(close - host);
        if ((size_t)(close + 1 - a) < n) {
            if (close[1] != ':')
                return fail(SSRF_BAD_URL, err, errlen, "unexpected text after the IPv6 literal");
            port = close + 2;
        }
    } else {
        const char *colon = memchr(a, ':', n);

        hlen = colon ? (size_t)(colon - a) : n;
        port = colon ? colon + 1 : NULL;
    }
    if (port)
        plen = (size_t)(a + n - port);
    if (hlen == 0)
        return fail(SSRF_BAD_URL, err, errlen, "URL has an empty host");
    if (hlen >= sizeof(t->host))
        return fail(SSRF_BAD_URL, err, errlen, "URL host is longer than 253 characters");
    memcpy(t->host, host, hlen);
    t->host[hlen] = '\0';
    for (size_t i = 0; i < hlen; i++)
        if (t->host[i] >= 'A' && t->host[i] <= 'Z')
            t->host[i] = (char)(t->host[i] - 'A' + 'a');
    if (a[0] == '[') {
        if (inet_pton(AF_INET6, t->host, tmp) != 1)
            return fail(SSRF_BAD_URL, err, errlen,
                        "URL host [%s] is not a valid IPv6 address (zone ids are not allowed)",
                        t->host);
        t->host_is_ip = true;
    } else if (inet_pton(AF_INET, t->host, tmp) == 1) {
        t->host_is_ip = true;
    } else if (!host_name_valid(t->host, hlen)) {
        return fail(SSRF_BAD_URL, err, errlen,
                    "URL host is not a valid host name (letters, digits, '-', '_', '.')");
    }
    t->port = t->https ? 443 : 80;
    if (plen > 0) {
        uint32_t v = 0;

        if (plen > 5)
            return fail(SSRF_BAD_URL, err, errlen, "URL port is out of range");
        for (size_t i = 0; i < plen; i++) {
            if (port[i] < '0' || port[i] > '9')
                return fail(SSRF_BAD_URL, err, errlen, "URL port is not a number");
            v = v * 10 + (uint32_t)(port[i] - '0');
        }
        if (v == 0 || v > 65535)
            return fail(SSRF_BAD_URL, err, errlen, "URL port %u is out of range", v);
        t->port = (uint16_t)v;
    }
    return SSRF_OK;
}

static ssrf_result parse_url(const char *url, ssrf_target *t, char *err, size_t errlen)
{
    size_t n = url ? strlen(url) : 0, skip, alen;
    const char *auth;

    if (n == 0)
        return fail(SSRF_BAD_URL, err, errlen, "URL is empty");
    if (n > SSRF_URL_MAX)
        return fail(SSRF_BAD_URL, err, errlen, "URL is longer than %d bytes", SSRF_URL_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];

        if (c <= 0x20 || c >= 0x7f)
            return fail(SSRF_BAD_URL, err, errlen,
                        "URL contains a space, control or non-ASCII byte at offset %zu", i);
        if (c == '\\')
            return fail(SSRF_BAD_URL, err, errlen, "URL contains a backslash");
    }
    if (strncasecmp(url, "http://", 7) == 0) {
        skip = 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        skip = 8;
        t->https = true;
    } else {
        return fail(SSRF_BAD_URL, err, errlen, "URL scheme must be http:// or https://");
    }
    auth = url + skip;
    alen = strcspn(auth, "/?#");
    return parse_authority(auth, alen, t, err, errlen);
}

/* Numeric form of an address from getaddrinfo. */
static int addr_text(const struct addrinfo *ai, char *out, size_t size)
{
    return getnameinfo(ai->ai_addr, ai->ai_addrlen, out, (socklen_t)size, NULL, 0,
                       NI_NUMERICHOST) == 0 ? ML_OK : ML_ERR;
}

/* Adds a (new) address to t's pin list, keeping at most SSRF_MAX_ADDRS. */
static void keep_addr(ssrf_target *t, char list[][SSRF_ADDR_MAX], const char *addr)
{
    for (size_t i = 0; i < t->naddrs; i++)
        if (strcmp(list[i], addr) == 0)
            return;
    if (t->naddrs < SSRF_MAX_ADDRS)
        ml_strlcpy(list[t->naddrs++], addr, SSRF_ADDR_MAX);
}

/* SSRF_RESOLVE_MAX is sized to fit; a cut pin list would still be refused, never used. */
static int build_resolve(ssrf_target *t, char list[][SSRF_ADDR_MAX])
{
    size_t used;

    t->resolve[0] = '\0';
    if (t->host_is_ip)
        return ML_OK;
    if (ml_snprintf(t->resolve, sizeof(t->resolve), "%s:%u:", t->host, (unsigned)t->port) != ML_OK)
        return ML_ERR;
    for (size_t i = 0; i < t->naddrs; i++) {
        bool v6 = strchr(list[i], ':') != NULL;

        used = strlen(t->resolve);
        if (ml_snprintf(t->resolve + used, sizeof(t->resolve) - used, "%s%s%s%s", i ? "," : "",
                        v6 ? "[" : "", list[i], v6 ? "]" : "") != ML_OK)
            return ML_ERR;
    }
    return ML_OK;
}

ssrf_result ssrf_check_url(const char *url, const ssrf_policy *p, ssrf_target *out, char *err,
                           size_t errlen)
{
    ssrf_target t = { 0 };
    char list[SSRF_MAX_ADDRS][SSRF_ADDR_MAX], port[8], addr[SSRF_ADDR_MAX];
    struct addrinfo hints = { 0 }, *res = NULL;
    ssrf_result r;
    int gai;

    if (err && errlen)
        err[0] = '\0';
    r = parse_url(url, &t, err, errlen);
    if (r != SSRF_OK)
        return r;
    if (ml_snprintf(port, sizeof(port), "%u", (unsigned)t.port) != ML_OK)
        return fail(SSRF_BAD_URL, err, errlen, "bad port %u", (unsigned)t.port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = t.host_is_ip ? AI_NUMERICHOST : 0;
    gai = getaddrinfo(t.host, port, &hints, &res);
    if (gai != 0)
        return fail(SSRF_UNRESOLVED, err, errlen, "cannot resolve host %s: %s", t.host,
                    gai_strerror(gai));
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        const char *why = ssrf_addr_blocked(ai->ai_addr, p);

        if (addr_text(ai, addr, sizeof(addr)) != ML_OK)
            ml_strlcpy(addr, "?", sizeof(addr));
        if (why) {
            r = fail(SSRF_BLOCKED, err, errlen,
                     "host %s resolves to %s, a %s, refused by the SSRF policy", t.host, addr,
                     why);
            goto out;
        }
        keep_addr(&t, list, addr);
    }
    if (t.naddrs == 0) {
        r = fail(SSRF_UNRESOLVED, err, errlen, "host %s resolved to no usable address", t.host);
        goto out;
    }
    ml_strlcpy(t.addr, list[0], sizeof(t.addr));
    if (build_resolve(&t, list) != ML_OK) {
        r = fail(SSRF_BAD_URL, err, errlen, "host %s: too long to pin its addresses", t.host);
        goto out;
    }
    if (out)
        *out = t;
out:
    freeaddrinfo(res);
    return r;
}
