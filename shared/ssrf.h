/* ssrf.h — guard for outbound requests to user-supplied URLs (webhooks, destinations).
 *
 * ssrf_check_url parses an http/https URL, resolves its host and refuses it if ANY address
 * the host resolves to is not a public unicast address, because libcurl may connect to any
 * of them. Loopback and private ranges can be allowed by policy (the local stack allows
 * loopback); link-local (incl. the cloud metadata address 169.254.169.254), unspecified,
 * multicast, documentation and reserved ranges are always refused.
 *
 * DNS rebinding: a name can resolve to a public address here and to a private one when the
 * HTTP client resolves it again. To close that gap the client must connect only to the
 * addresses checked here: ssrf_target.resolve is a ready CURLOPT_RESOLVE entry for that.
 *
 * Thread-safe; allocates nothing that outlives a call. Resolution blocks for as long as
 * getaddrinfo does (bounded by the resolver's own timeouts in resolv.conf). */
#ifndef ML_SSRF_H
#define ML_SSRF_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ml.h"

/* A zeroed policy is the strict one: only public addresses. */
typedef struct ssrf_policy {
    bool allow_loopback; /* 127.0.0.0/8, ::1 (the local stack's receivers) */
    bool allow_private;  /* 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT), 198.18/15,
                            fc00::/7, fec0::/10, 64:ff9b:1::/48 */
} ssrf_policy;

#define SSRF_URL_MAX 2048      /* the database's limit on a webhook URL */
#define SSRF_HOST_MAX 254      /* a DNS name (253) + NUL */
#define SSRF_ADDR_MAX 46       /* INET6_ADDRSTRLEN */
#define SSRF_MAX_ADDRS 8       /* addresses kept for pinning (all are checked) */
#define SSRF_RESOLVE_MAX (SSRF_HOST_MAX + 8 + SSRF_MAX_ADDRS * (SSRF_ADDR_MAX + 3))

/* What a successful check learned about the URL. */
typedef struct ssrf_target {
    bool https;
    char host[SSRF_HOST_MAX];      /* lower-case; an IPv6 literal without brackets */
    uint16_t port;                 /* explicit or the scheme's default */
    bool host_is_ip;               /* the URL names an address literally */
    char addr[SSRF_ADDR_MAX];      /* first allowed address, numeric */
    size_t naddrs;                 /* addresses kept (<= SSRF_MAX_ADDRS) */
    /* "host:port:addr[,addr...]" (IPv6 addresses in brackets) for CURLOPT_RESOLVE, so the
     * request goes to exactly the checked addresses; "" when host_is_ip (nothing to pin). */
    char resolve[SSRF_RESOLVE_MAX];
} ssrf_target;

/* Outcome of ssrf_check_url. SSRF_OK equals ML_OK; every failure is negative. */
typedef enum {
    SSRF_OK = 0,
    SSRF_BAD_URL = -1,    /* not an acceptable http(s) URL: permanent */
    SSRF_BLOCKED = -2,    /* resolves to a refused address: permanent */
    SSRF_UNRESOLVED = -3  /* the name did not resolve now: may succeed later */
} ssrf_result;

/* Checks url against policy p (NULL = strict). Accepted: http:// or https:// (any case),
 * a host that is a DNS name ([A-Za-z0-9_-] labels of 1..63 chars), a dotted IPv4 or a
 * bracketed IPv6 literal (no zone id), an optional port 1..65535, then "/", "?", "#" or the
 * end. Refused as SSRF_BAD_URL: other schemes, userinfo ("user@host", the classic
 * "http://good@evil" trick), an empty host, spaces, control or non-ASCII bytes, backslashes,
 * percent-encoding in the host, URLs longer than SSRF_URL_MAX.
 * On SSRF_OK fills *out (may be NULL); otherwise writes a one-line reason to err (may be
 * NULL), e.g. "host 10.0.0.1 resolves to 10.0.0.1, a private address (10.0.0.0/8), refused
 * by the SSRF policy". The reason names the host at most, never the path or query. */
ssrf_result ssrf_check_url(const char *url, const ssrf_policy *p, ssrf_target *out, char *err,
                           size_t errlen);

/* Classifies one address (AF_INET or AF_INET6; IPv4-mapped, NAT64 and 6to4 IPv6 addresses
 * are judged by the IPv4 address they carry). Returns NULL if policy p (NULL = strict)
 * allows connecting to it, else a static description such as "link-local address
 * (169.254.0.0/16, includes cloud metadata)". Also usable from a socket-open callback. */
const char *ssrf_addr_blocked(const struct sockaddr *sa, const ssrf_policy *p);

#endif
