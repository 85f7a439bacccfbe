/* egress.h — the only way out of a build sandbox: an HTTP proxy that lives in a network
 * namespace of its own and forwards only to an allow-list of registries.
 *
 * egress_start makes a fresh network namespace (only lo, up), opens a listening TCP socket on
 * 127.0.0.1:<port> *inside* it, and serves it from a thread of this process, which connects
 * out from the worker's own namespace. A build sandbox joins the namespace
 * (sandbox_run_spec.join_netns) and gets HTTP_PROXY/HTTPS_PROXY=http://127.0.0.1:<port>:
 * nothing else is reachable from there (no route, no other listener), so an install script
 * can talk to the allowed registries through the proxy and to nothing else.
 *
 * The proxy understands `CONNECT host:port` (tunnels, for https) and absolute-form requests
 * (`GET http://host:port/path HTTP/1.1`, forwarded in origin form), for targets whose
 * host:port is on the allow-list (host compared case-insensitively, as written: no DNS games;
 * default ports 80/443). Anything else gets 403 with a one-line reason and is counted; after
 * the request head, bytes are relayed both ways, so a connection only ever reaches the
 * target its first request named. Request heads are bounded (16 KiB), connections too
 * (EGRESS_MAX_CONNS), idle ones time out (60 s).
 *
 * Thread-safety: an egress is driven by its own thread; the accessors may be called from any
 * thread while it runs. */
#ifndef BW_EGRESS_H
#define BW_EGRESS_H

#include <stddef.h>
#include <stdint.h>

#define EGRESS_MAX_ALLOW 32
#define EGRESS_MAX_CONNS 64

typedef struct egress egress;

/* "host:port" entries (host a name, an IPv4 address or a bracketed IPv6 one). */
typedef struct egress_allow {
    const char *const *hosts;
    size_t n;
} egress_allow;

/* Starts a proxy (namespace, listener, thread). On success *out is owned by the caller:
 * egress_stop frees it. ML_ERR with err when the namespace or socket cannot be made. */
int egress_start(const egress_allow *allow, egress **out, char *err, size_t errlen);
/* The namespace to join (an fd of /proc/self/task/<tid>/ns/net; valid until egress_stop). */
int egress_netns_fd(const egress *e);
/* The proxy's port on 127.0.0.1 inside the namespace. */
int egress_port(const egress *e);
/* Requests tunnelled or forwarded, and refused (not on the allow-list, malformed). */
int64_t egress_allowed(const egress *e);
int64_t egress_denied(const egress *e);
/* The first few refused targets, "host:port" comma-separated, for the build log ("" if none). */
void egress_denied_targets(const egress *e, char *buf, size_t len);
/* Stops the thread, closes every connection and the namespace, frees e. NULL is fine. */
void egress_stop(egress *e);

#endif
