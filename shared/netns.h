/* netns.h — a network namespace per network-enabled function instance, with outbound
 * connectivity through slirp4netns (a userspace NAT) and an egress policy (docs/network.md).
 *
 * Each namespace holds lo and tap0 (10.0.2.100/24, gateway 10.0.2.2, slirp's DNS 10.0.2.3)
 * and an nftables output chain: loopback and the DNS server allowed, then the operator's
 * allow-list, then every private, loopback, link-local, multicast and reserved range and the
 * host's own addresses rejected; the rest (public addresses) goes out through slirp4netns,
 * which runs in the executor's network namespace (or an operator-chosen upstream one) with
 * host loopback disabled. The function runs without capabilities and cannot change either.
 *
 * Setting one up costs tens of milliseconds (two processes), so a background thread keeps a
 * pool of ready namespaces; a launch takes one (a setns in the child, microseconds) and the
 * namespace and its slirp4netns are torn down when the instance's process has exited. */
#ifndef EX_NETNS_H
#define EX_NETNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NETNS_MAX_ALLOW 64
#define NETNS_MAX_POOL 64
#define NETNS_SLIRP_DNS "10.0.2.3"

typedef struct netns_config {
    const char *allow;      /* "CIDR[:port],..." (IPv4); NULL or "": nothing extra */
    const char *dns;        /* the functions' resolver; NETNS_SLIRP_DNS: slirp's forwarder */
    const char *upstream;   /* path of the netns slirp4netns runs in; NULL/"": the executor's */
    const char *slirp;      /* slirp4netns binary; NULL: "slirp4netns" on PATH */
    const char *nft;        /* nft binary; NULL: "nft" on PATH */
    int pool;               /* ready namespaces kept; 0: each launch makes its own */
} netns_config;

typedef struct netns_rule {
    uint32_t net;           /* host byte order */
    uint8_t prefix;
    uint16_t port;          /* 0: every port */
} netns_rule;

/* Parses an allow-list into out (at most max); ML_OK with *n, or ML_ERR with err set. */
int netns_parse_allow(const char *s, netns_rule *out, size_t max, size_t *n, char *err,
                      size_t errlen);

/* Writes the nftables ruleset (nft -f input) for a policy into buf; host: the host's own
 * IPv4 addresses (rejected unless allowed). ML_ERR if it does not fit. */
int netns_ruleset(const netns_rule *allow, size_t nallow, const char *dns, const uint32_t *host,
                  size_t nhost, char *buf, size_t len);

/* Brings `lo` up in the calling thread's network namespace (a new one has it down). */
int netns_lo_up(void);

/* Checks the configuration and the tools (one namespace is made and torn down), starts the
 * pool thread. ML_ERR with err set; netns_enabled() is then false. */
int netns_init(const netns_config *c, char *err, size_t errlen);

/* Stops the pool thread and tears down every namespace (leased ones too). */
void netns_shutdown(void);

bool netns_enabled(void);

/* The resolv.conf a function sees ("nameserver ...\n"); static storage. */
const char *netns_resolv_conf(void);

/* A namespace for one launch: ML_OK with *fd (O_CLOEXEC, for setns) and *lease, or ML_ERR
 * with err set. The lease belongs to the caller until netns_lease_end. */
int netns_acquire(int *lease, int *fd, char *err, size_t errlen);

/* The launch happened (pid > 0: torn down once that process has exited) or failed (pid <= 0:
 * torn down now). */
void netns_lease_end(int lease, pid_t pid);

/* Namespaces made and the last set-up time (for docs/network.md and tests). */
void netns_stats(uint64_t *made, uint64_t *last_setup_us, size_t *ready);

#endif
