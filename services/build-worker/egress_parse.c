/* egress_parse.c — the egress proxy's request-head parser and allow-list (egress-int.h).
 *
 * Strict on purpose: the clients are pip and npm (and curl in tests), which send clean
 * HTTP/1.1; anything ambiguous is refused rather than interpreted, so the proxy and the
 * upstream can never disagree about where a request goes. */
#include "egress-int.h"

#include <arpa/inet.h>
#include <string.h>

#include "ml.h"

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* RFC 9110 tchar: methods and header names. */
static bool is_tchar(unsigned char c)
{
    return is_alnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);

    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

bool egress_host_valid(const char *host, size_t len)
{
    if (len >= 2 && host[0] == '[') {
        char tmp[64];
        struct in6_addr a;

        if (host[len - 1] != ']' || len - 2 >= sizeof(tmp) || len < 3)
            return false;
        memcpy(tmp, host + 1, len - 2);
        tmp[len - 2] = '\0';
        return inet_pton(AF_INET6, tmp, &a) == 1;
    }
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c == '.') {
            if (i == 0 || i + 1 == len || host[i - 1] == '.')
                return false;   /* an empty label */
        } else if (!is_alnum(c) && c != '-' && c != '_') {
            return false;
        }
    }
    return true;
}

/* A port of 1-5 digits in 1..65535; -1 if not. */
static int parse_port(const char *s, size_t n)
{
    int v = 0;

    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

/* host[:port] (host a name or [IPv6]); port -1 when absent. ML_ERR if malformed. */
static int split_authority(const char *s, size_t n, egress_req *req, int *port)
{
    size_t hlen;
    const char *colon;

    *port = -1;
    if (memchr(s, '@', n))
        return ML_ERR;   /* userinfo: credentials in a URL, and a classic confusion */
    if (n && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (!rb)
            return ML_ERR;
        hlen = (size_t)(rb - s) + 1;
        if (hlen < n && s[hlen] != ':')
            return ML_ERR;
    } else {
        colon = memchr(s, ':', n);
        hlen = colon ? (size_t)(colon - s) : n;
    }
    if (hlen < n && (*port = parse_port(s + hlen + 1, n - hlen - 1)) < 0)
        return ML_ERR;
    if (!egress_host_valid(s, hlen) || hlen >= sizeof(req->host))
        return ML_ERR;
    memcpy(req->host, s, hlen);
    req->host[hlen] = '\0';
    return ML_OK;
}

typedef struct outbuf {
    char *d;
    size_t len, cap;
    bool over;
} outbuf;

static void put(outbuf *o, const char *s, size_t n)
{
    if (o->over || n > o->cap - o->len) {
        o->over = true;
        return;
    }
    memcpy(o->d + o->len, s, n);
    o->len += n;
}

static void puts_(outbuf *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Where the head ends (just past its blank line), 0 if not yet, or -status. */
static long find_end(const char *buf, size_t len, const char **why)
{
    size_t lim = len < EGRESS_HEAD_MAX ? len : EGRESS_HEAD_MAX;

    for (size_t i = 0; i < lim; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n') {
            if (i == 0 || buf[i - 1] != '\r') {
                *why = "bare LF";
                return -EGRESS_PARSE_BAD;
            }
            if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
                return (long)(i + 1);
        } else if (c == '\r') {
            if (i + 1 < len && buf[i + 1] != '\n') {
                *why = "bare CR";
                return -EGRESS_PARSE_BAD;
            }
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            *why = "control byte in the head";
            return -EGRESS_PARSE_BAD;
        }
    }
    if (len >= EGRESS_HEAD_MAX) {
        *why = "request head larger than 16 KiB";
        return -EGRESS_PARSE_TOO_LARGE;
    }
    return 0;
}

/* Headers the proxy replaces or that concern only the hop to it. */
static bool dropped(const char *name, size_t n)
{
    static const char *const drop[] = { "host", "connection", "keep-alive", "proxy-connection",
                                        "proxy-authorization" };

    for (size_t i = 0; i < ML_ARRAY_LEN(drop); i++)
        if (ieq(name, n, drop[i]))
            return true;
    return false;
}

/* Checks the header lines in [p, end) (end: the final CRLF CRLF's second CRLF) and, when o
 * is set, copies those not dropped. */
static int headers(const char *p, const char *end, outbuf *o, const char **why)
{
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p)), *q = p;
        if (!eol)
            eol = end;   /* cannot happen: every line ends CRLF */
        if (*p == ' ' || *p == '\t') {
            *why = "obs-fold (a header line starting with a blank)";
            return ML_ERR;
        }
        while (q < eol && is_tchar((unsigned char)*q))
            q++;
        if (q == p || q == eol || *q != ':') {
            *why = "malformed header line";
            return ML_ERR;
        }
        if (o && !dropped(p, (size_t)(q - p)))
            put(o, p, (size_t)(eol - p) + 2);
        p = eol + 2;
    }
    return ML_OK;
}

int egress_parse_head(const char *buf, size_t len, egress_req *req, char *out, size_t outlen,
                      const char **why)
{
    const char *p = buf, *sp1, *sp2, *eol, *target, *hend;
    long end;
    size_t tlen;
    int port;
    outbuf o = { .d = out, .cap = outlen };

    *why = "";
    memset(req, 0, sizeof(*req));
    end = find_end(buf, len, why);
    if (end <= 0)
        return end == 0 ? EGRESS_PARSE_MORE : (int)-end;
    hend = buf + end - 2;   /* the blank line's CRLF */
    req->head_len = (size_t)end;
    *why = "malformed request line";
    eol = memchr(p, '\r', (size_t)end);   /* exists: the head ends CRLF CRLF */
    for (sp1 = p; sp1 < eol && is_tchar((unsigned char)*sp1); sp1++)
        ;
    if (sp1 == p || sp1 == eol || *sp1 != ' ')
        return EGRESS_PARSE_BAD;
    target = sp1 + 1;
    for (sp2 = target; sp2 < eol && *sp2 > 0x20 && *sp2 < 0x7f; sp2++)
        ;
    tlen = (size_t)(sp2 - target);
    if (tlen == 0 || sp2 == eol || *sp2 != ' ' || eol - sp2 != 9 ||
        (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 && memcmp(sp2 + 1, "HTTP/1.0", 8) != 0))
        return EGRESS_PARSE_BAD;
    if (headers(eol + 2, hend, NULL, why) != ML_OK)
        return EGRESS_PARSE_BAD;
    if (memchr(target, '#', tlen)) {
        *why = "fragment in the request target";
        return EGRESS_PARSE_BAD;
    }
    if ((size_t)(sp1 - p) == 7 && memcmp(p, "CONNECT", 7) == 0) {
        if (split_authority(target, tlen, req, &port) != ML_OK || port < 0) {
            *why = "CONNECT needs host:port";
            return EGRESS_PARSE_BAD;
        }
        req->kind = EGRESS_CONNECT;
        req->port = port;
        return EGRESS_PARSE_OK;
    }
    if (tlen >= 8 && ieq(target, 8, "https://")) {
        *why = "https:// goes through CONNECT";
        return EGRESS_PARSE_BAD;
    }
    if (tlen < 7 || !ieq(target, 7, "http://")) {
        *why = "not a proxy request (absolute-form http:// URL or CONNECT expected)";
        return EGRESS_PARSE_BAD;
    }
    {
        const char *auth = target + 7, *path = auth;
        size_t alen;
        while (path < sp2 && *path != '/' && *path != '?')
            path++;
        alen = (size_t)(path - auth);
        if (split_authority(auth, alen, req, &port) != ML_OK) {
            *why = "malformed host[:port] in the URL";
            return EGRESS_PARSE_BAD;
        }
        req->kind = EGRESS_FORWARD;
        req->port = port < 0 ? 80 : port;
        put(&o, p, (size_t)(sp1 - p) + 1);
        if (path == sp2 || *path == '?')
            puts_(&o, "/");
        put(&o, path, (size_t)(eol - path) + 2);   /* path, " HTTP/1.x", CRLF */
        puts_(&o, "Host: ");
        put(&o, auth, alen);
        puts_(&o, "\r\n");
        (void)headers(eol + 2, hend, &o, why);
        puts_(&o, "Connection: close\r\n\r\n");
    }
    if (o.over) {
        *why = "request head larger than 16 KiB";
        return EGRESS_PARSE_TOO_LARGE;
    }
    req->out_len = o.len;
    *why = "";
    return EGRESS_PARSE_OK;
}

int egress_parse_allow(const egress_allow *allow, egress_rule *out, size_t *n, char *err,
                       size_t errlen)
{
    *n = 0;
    for (size_t i = 0; allow && i < allow->n; i++) {
        const char *s = allow->hosts[i];
        size_t len = s ? strlen(s) : 0;
        egress_req tmp;
        int port;

        while (len && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (!len)
            continue;
        if (*n == EGRESS_MAX_ALLOW || split_authority(s, len, &tmp, &port) != ML_OK) {
            ml_snprintf_trunc(err, errlen, "egress allow-list: bad or too many entries at \"%.*s\" "
                              "(host[:port], at most %d)", (int)len, s, EGRESS_MAX_ALLOW);
            return ML_ERR;
        }
        memcpy(out[*n].host, tmp.host, sizeof(tmp.host));
        out[*n].port = port < 0 ? 0 : port;
        (*n)++;
    }
    return ML_OK;
}

bool egress_allowed_target(const egress_rule *rules, size_t n, const char *host, int port)
{
    size_t hlen = strlen(host);

    for (size_t i = 0; i < n; i++) {
        bool port_ok = rules[i].port ? rules[i].port == port : (port == 80 || port == 443);
        if (port_ok && ieq(host, hlen, rules[i].host))
            return true;
    }
    return false;
}
