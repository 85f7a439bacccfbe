/* libFuzzer target: the build egress proxy's request-head parser
 * (services/build-worker/egress_parse.c), which reads whatever an install script sends.
 *
 * Input: the bytes a client sends on a fresh connection.
 * Oracles (besides ASan/UBSan):
 *   - the answer is MORE, OK, BAD or TOO_LARGE; a refusal has a printable reason; MORE only
 *     below EGRESS_HEAD_MAX bytes;
 *   - BAD is final: the same bytes plus a blank line are still refused;
 *   - OK: the head ends at its first CRLF CRLF, within EGRESS_HEAD_MAX; cut one byte short or
 *     at half it is MORE; the head alone parses to the same request; the kind follows the
 *     method; the host is valid, appears in the request line and, written "host:port", is
 *     an allow-list entry that matches it in upper and lower case, and no other port;
 *   - OK forward: the rewritten head is origin-form (so it is refused if fed back), ends
 *     "Connection: close" + blank line, has exactly one Host line naming the URL's host, no
 *     hop-by-hop or proxy header, no bare CR/LF, and only grows by a few bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress-int.h"
#include "ml.h"

static char out[EGRESS_OUT_MAX], out2[EGRESS_OUT_MAX], tmp[EGRESS_HEAD_MAX + 8];

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int istarts(const char *s, size_t n, const char *prefix)
{
    size_t pl = strlen(prefix);

    if (n < pl)
        return 0;
    for (size_t i = 0; i < pl; i++)
        if (lower((unsigned char)s[i]) != lower((unsigned char)prefix[i]))
            return 0;
    return 1;
}

static void check_reason(const char *why)
{
    if (!why || !*why)
        abort();
    for (const char *p = why; *p; p++)
        if ((unsigned char)*p < 0x20)
            abort();
}

static void check_allow(const egress_req *r)
{
    char entry[EGRESS_HOST_MAX + 8], up[EGRESS_HOST_MAX], err[256];
    const char *hosts[1] = { entry };
    egress_allow allow = { hosts, 1 };
    egress_rule rules[EGRESS_MAX_ALLOW];
    size_t n = 0, i;

    if (ml_snprintf(entry, sizeof(entry), "%s:%d", r->host, r->port) != ML_OK)
        abort();
    if (egress_parse_allow(&allow, rules, &n, err, sizeof(err)) != ML_OK || n != 1)
        abort();
    for (i = 0; r->host[i]; i++)
        up[i] = (char)(r->host[i] >= 'a' && r->host[i] <= 'z' ? r->host[i] - 32 : r->host[i]);
    up[i] = '\0';
    if (!egress_allowed_target(rules, 1, r->host, r->port) ||
        !egress_allowed_target(rules, 1, up, r->port) ||
        egress_allowed_target(rules, 1, r->host, r->port == 65535 ? 1 : r->port + 1))
        abort();
}

static void check_forward(const char *data, const egress_req *r)
{
    const char *p = out, *end = out + r->out_len, *why;
    size_t hl = strlen(r->host), lines = 0, hosts = 0;
    size_t ml = (size_t)((const char *)memchr(data, ' ', r->head_len) - data) + 1;
    egress_req again;

    if (r->out_len > r->head_len + 32 || r->out_len < 4 ||
        memcmp(end - 23, "\r\nConnection: close\r\n\r\n", 23) != 0)
        abort();
    /* "METHOD /..." */
    if (memcmp(out, data, ml) != 0 || out[ml] != '/')
        abort();
    for (size_t i = 0; i < r->out_len; i++)
        if ((out[i] == '\n' && (i == 0 || out[i - 1] != '\r')) ||
            (out[i] == '\r' && (i + 1 >= r->out_len || out[i + 1] != '\n')))
            abort();
    while (p < end - 2) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        size_t n = (size_t)(eol - p);
        if (lines++ > 0) {
            if (istarts(p, n, "proxy-authorization:") || istarts(p, n, "proxy-connection:") ||
                istarts(p, n, "keep-alive:") ||
                (istarts(p, n, "connection:") && eol + 4 != end))
                abort();
            if (istarts(p, n, "host:")) {
                hosts++;
                if (n < 6 + hl || memcmp(p + 6, r->host, hl) != 0 ||
                    (n > 6 + hl && p[6 + hl] != ':'))
                    abort();
            }
        }
        p = eol + 2;
    }
    if (hosts != 1)
        abort();
    /* fed back, the rewritten head is an origin-form request: refused */
    if (egress_parse_head(out, r->out_len, &again, out2, sizeof(out2), &why) != EGRESS_PARSE_BAD)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t size)
{
    const char *data = (const char *)d, *why = NULL, *why2;
    egress_req r, r2;
    int st = egress_parse_head(data, size, &r, out, sizeof(out), &why), st2;

    if (st == EGRESS_PARSE_MORE) {
        if (size >= EGRESS_HEAD_MAX)
            abort();
        return 0;
    }
    if (st == EGRESS_PARSE_BAD || st == EGRESS_PARSE_TOO_LARGE) {
        check_reason(why);
        if (st == EGRESS_PARSE_BAD && size <= EGRESS_HEAD_MAX) {
            memcpy(tmp, data, size);
            memcpy(tmp + size, "\r\n\r\n", 4);
            if (egress_parse_head(tmp, size + 4, &r2, out2, sizeof(out2), &why2) != EGRESS_PARSE_BAD)
                abort();
        }
        return 0;
    }
    if (st != EGRESS_PARSE_OK)
        abort();
    if (r.head_len < 4 || r.head_len > size || r.head_len > EGRESS_HEAD_MAX ||
        memcmp(data + r.head_len - 4, "\r\n\r\n", 4) != 0 ||
        memmem(data, r.head_len, "\r\n\r\n", 4) != data + r.head_len - 4)
        abort();
    if (egress_parse_head(data, r.head_len - 1, &r2, out2, sizeof(out2), &why2) != EGRESS_PARSE_MORE ||
        egress_parse_head(data, r.head_len / 2, &r2, out2, sizeof(out2), &why2) != EGRESS_PARSE_MORE)
        abort();
    st2 = egress_parse_head(data, r.head_len, &r2, out2, sizeof(out2), &why2);
    if (st2 != EGRESS_PARSE_OK || r2.kind != r.kind || r2.port != r.port ||
        strcmp(r2.host, r.host) != 0 || r2.out_len != r.out_len || memcmp(out, out2, r.out_len) != 0)
        abort();
    if ((r.kind == EGRESS_CONNECT) != (memcmp(data, "CONNECT ", 8) == 0) ||
        !egress_host_valid(r.host, strlen(r.host)) || r.port < 1 || r.port > 65535 ||
        !memmem(data, (size_t)((const char *)memmem(data, r.head_len, "\r\n", 2) - data), r.host,
                strlen(r.host)))
        abort();
    check_allow(&r);
    if (r.kind == EGRESS_FORWARD)
        check_forward(data, &r);
    return 0;
}
