/* egress-int.h — the egress proxy's pure parts (egress_parse.c), shared by egress.c, its unit
 * test and its fuzz target: the request-head parser and the allow-list. No I/O here. */
#ifndef BW_EGRESS_INT_H
#define BW_EGRESS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "egress.h"

#define EGRESS_HEAD_MAX 16384          /* a request head, the blank line included */
#define EGRESS_HOST_MAX 256            /* a host as written, brackets included, + NUL */
#define EGRESS_OUT_MAX (EGRESS_HEAD_MAX + 256)   /* a rewritten head (it grows by < 32 bytes) */

/* egress_parse_head's answers (HTTP statuses where one is sent). */
#define EGRESS_PARSE_MORE 0            /* no complete head yet, nothing wrong so far */
#define EGRESS_PARSE_OK 200
#define EGRESS_PARSE_BAD 400
#define EGRESS_PARSE_TOO_LARGE 431

typedef enum { EGRESS_CONNECT = 1, EGRESS_FORWARD = 2 } egress_kind;

typedef struct egress_req {
    egress_kind kind;
    char host[EGRESS_HOST_MAX];   /* as written ("[::1]" keeps its brackets), NUL-terminated */
    int port;                     /* 1..65535; 80 when an http:// URL names none */
    size_t head_len;              /* input bytes the head took, through its blank line */
    size_t out_len;               /* EGRESS_FORWARD: bytes of the rewritten head in out */
} egress_req;

/* Looks at the first len bytes a client sent. A complete, valid head (request line + header
 * lines, each ending CRLF, then CRLF, within EGRESS_HEAD_MAX bytes) gives EGRESS_PARSE_OK and
 * *req; for an absolute-form request, out (outlen >= EGRESS_OUT_MAX) receives the head to
 * send upstream: the request line in origin form, `Host: <the URL's authority>`, the client's
 * headers minus Host, Connection, Keep-Alive, Proxy-Connection and Proxy-Authorization, and
 * `Connection: close` (one request per connection: a client reusing it for another host
 * would otherwise reach the first one). EGRESS_PARSE_BAD as soon as the bytes cannot start a
 * valid head (why: a static reason), EGRESS_PARSE_TOO_LARGE when EGRESS_HEAD_MAX bytes hold no
 * end, EGRESS_PARSE_MORE otherwise. Accepted: `CONNECT host:port HTTP/1.x` and
 * `METHOD http://host[:port]/path HTTP/1.x`; refused: https:// and other schemes, origin
 * form, userinfo, fragments, obs-fold, bare LF or CR, control bytes, a space before a colon. */
int egress_parse_head(const char *buf, size_t len, egress_req *req, char *out, size_t outlen,
                      const char **why);

/* Checks a host as a request may name it: a name of [A-Za-z0-9._-] (at most 253 bytes, no
 * empty label), or a bracketed IPv6 address. */
bool egress_host_valid(const char *host, size_t len);

/* The parsed allow-list: host as written plus port, or port 0 for "80 or 443". */
typedef struct egress_rule {
    char host[EGRESS_HOST_MAX];
    int port;
} egress_rule;

/* Parses "host:port" / "host" entries (surrounding blanks ignored, empty ones skipped) into
 * out (room for EGRESS_MAX_ALLOW). ML_OK with *n, or ML_ERR with err naming the entry. */
int egress_parse_allow(const egress_allow *allow, egress_rule *out, size_t *n, char *err,
                       size_t errlen);

/* True when host:port is on the list: host equal ignoring ASCII case, port equal (a rule
 * without a port matches 80 and 443). */
bool egress_allowed_target(const egress_rule *rules, size_t n, const char *host, int port);

/* Test hook: the idle timeout (default EGRESS_IDLE_MS) of connections from now on. */
#define EGRESS_IDLE_MS 60000
void egress_set_idle_ms(egress *e, int64_t ms);
/* Connections the proxy holds now (for tests). */
int egress_open_conns(const egress *e);

#endif
