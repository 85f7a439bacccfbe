/* libFuzzer target: the SSRF guard's URL parser and address classifier (shared/ssrf.c),
 * which see every webhook and destination URL a user registers. No DNS: ssrf.c is included
 * so its parser can be called alone, and ssrf_check_url runs only on address literals
 * (AI_NUMERICHOST, no lookup).
 *
 * Input: the URL (at most SSRF_URL_MAX + 16 bytes used); its first 16 bytes also make an
 * IPv4 and an IPv6 address for the classifier.
 * Oracles (besides ASan/UBSan):
 *   - an accepted URL starts with http:// or https://, has no '@', control byte, space or
 *     backslash, and gives a non-empty lower-case host of [a-z0-9._-] (or an address
 *     literal) and a port 1..65535;
 *   - a refusal has a reason, and the reason never contains the URL's path or query;
 *   - for an address literal, ssrf_check_url blocks exactly when ssrf_addr_blocked does;
 *   - the classifier: link-local, unspecified and multicast are blocked under every policy;
 *     loopback is allowed only with allow_loopback, 10/8 only with allow_private; an
 *     allowed address stays allowed when the policy is loosened; an IPv4-mapped IPv6
 *     address is judged as its IPv4 address. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../shared/ssrf.c"

static const ssrf_policy policies[4] = {
    { false, false }, { true, false }, { false, true }, { true, true },
};

static void check_parse(const char *url)
{
    ssrf_target t = { 0 };
    char err[256];
    const char *q;

    err[0] = '\0';
    if (parse_url(url, &t, err, sizeof(err)) != SSRF_OK) {
        if (!err[0])
            abort();
        q = strpbrk(url + strcspn(url, ":") + 3 < url + strlen(url) ? url + 8 : url, "/?#");
        if (q && strlen(q) > 8 && strstr(err, q))
            abort(); /* the reason quotes the path or query */
        return;
    }
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        abort();
    if (!t.host[0] || t.port == 0 || strpbrk(url, " \\\t\r\n"))
        abort();
    if (memchr(url, '@', strcspn(url + 8, "/?#") + 8))
        abort();
    for (const char *h = t.host; *h; h++)
        if (!((*h >= 'a' && *h <= 'z') || (*h >= '0' && *h <= '9') || *h == '.' || *h == '-' ||
              *h == '_' || (t.host_is_ip && *h == ':')))
            abort();
    if (t.host_is_ip) {
        struct sockaddr_storage ss = { 0 };
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

        if (inet_pton(AF_INET, t.host, &s4->sin_addr) == 1)
            s4->sin_family = AF_INET;
        else if (inet_pton(AF_INET6, t.host, &s6->sin6_addr) == 1)
            s6->sin6_family = AF_INET6;
        else
            abort(); /* called an address literal, but it is none */
        for (int i = 0; i < 4; i++) {
            const char *why = ssrf_addr_blocked((struct sockaddr *)&ss, &policies[i]);
            ssrf_result r = ssrf_check_url(url, &policies[i], NULL, err, sizeof(err));
            if ((why != NULL) != (r == SSRF_BLOCKED) || (why == NULL && r != SSRF_OK))
                abort();
        }
    }
}

static void check_classify(const uint8_t *b)
{
    struct sockaddr_in s4 = { .sin_family = AF_INET };
    struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 }, m6 = { .sin6_family = AF_INET6 };
    const char *w4[4], *w6[4];

    memcpy(&s4.sin_addr, b, 4);
    memcpy(&s6.sin6_addr, b, 16);
    m6.sin6_addr.s6_addr[10] = m6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&m6.sin6_addr.s6_addr[12], b, 4);
    for (int i = 0; i < 4; i++) {
        const char *mapped = ssrf_addr_blocked((struct sockaddr *)&m6, &policies[i]);
        w4[i] = ssrf_addr_blocked((struct sockaddr *)&s4, &policies[i]);
        w6[i] = ssrf_addr_blocked((struct sockaddr *)&s6, &policies[i]);
        if ((mapped != NULL) != (w4[i] != NULL))
            abort(); /* ::ffff:a.b.c.d judged differently from a.b.c.d */
        if ((b[0] == 169 && b[1] == 254) || b[0] == 0 || (b[0] >= 224 && b[0] <= 239)) {
            if (!w4[i])
                abort(); /* link-local, "this network" or multicast allowed */
        }
        if (b[0] == 127 && (w4[i] == NULL) != policies[i].allow_loopback)
            abort();
        if (b[0] == 10 && (w4[i] == NULL) != policies[i].allow_private)
            abort();
        if (b[0] == 0xff && !w6[i])
            abort(); /* IPv6 multicast allowed */
    }
    /* loosening the policy never blocks what the strict one allowed */
    for (int i = 1; i < 4; i++)
        if ((!w4[0] && w4[i]) || (!w6[0] && w6[i]))
            abort();
    if ((!w4[1] && w4[3]) || (!w4[2] && w4[3]) || (!w6[1] && w6[3]) || (!w6[2] && w6[3]))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char url[SSRF_URL_MAX + 17];
    uint8_t addr[16] = { 0 };

    memcpy(addr, data, size < 16 ? size : 16);
    check_classify(addr);
    if (size >= sizeof(url))
        size = sizeof(url) - 1;
    memcpy(url, data, size);
    url[size] = '\0';
    check_parse(url);
    return 0;
}
