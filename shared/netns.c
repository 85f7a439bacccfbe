/* netns.c — per-instance network namespaces behind slirp4netns, with an nftables egress
 * policy, made ahead of time by one pool thread (see netns.h, docs/network.md).
 *
 * The pool thread makes a namespace by unshare(CLONE_NEWNET) on itself (a namespace belongs
 * to a thread, so no other thread notices), runs nft there (a child inherits the thread's
 * namespace), moves to the upstream namespace to start slirp4netns (whose sockets must be
 * opened there), and comes back. It also tears down the namespaces of instances that have
 * exited: slirp4netns killed and reaped by pid (never waitpid(-1): sandbox.h). */
#include "netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "ml.h"

#define NETNS_SLOTS 1024          /* ready + leased namespaces */
#define NETNS_READY_TIMEOUT_MS 5000
#define NETNS_TICK_MS 100         /* how often exited instances are looked for */
#define NETNS_RULES_MAX 16384
#define NETNS_MAX_HOST 64

extern char **environ;

typedef enum { SLOT_FREE, SLOT_MAKING, SLOT_READY, SLOT_LEASED, SLOT_BOUND } slot_state;

typedef struct slot {
    slot_state state;
    int fd;                       /* the namespace */
    pid_t slirp;                  /* its slirp4netns */
    int pidfd;                    /* SLOT_BOUND: the instance's process */
} slot;

/* Reserved IPv4 ranges a function may not reach unless allowed: "this network", private,
 * shared (CGNAT), loopback, link-local (metadata), IETF protocol, benchmarking, multicast,
 * reserved and broadcast. The documentation ranges stay reachable (tests use them). */
static const char *const deny_v4[] = {
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3",
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work, ready;
    pthread_t thread;
    bool running, stop;
    netns_config cfg;
    int upstream;                 /* fd of the upstream namespace, -1: the executor's */
    int exit_pipe[2];             /* [1] held here only: its close ends every slirp4netns */
    char rules[NETNS_RULES_MAX];
    char resolv[96];
    slot slots[NETNS_SLOTS];
    size_t nready, waiters;
    uint64_t made, last_us;
} g = { .lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
        .ready = PTHREAD_COND_INITIALIZER, .upstream = -1, .exit_pipe = { -1, -1 } };

/* ---------------------------------------------------------------- policy */

static int parse_cidr(const char *s, size_t n, netns_rule *r)
{
    char tmp[48];
    const char *slash;
    int64_t prefix = 32;
    struct in_addr a;

    if (n == 0 || n >= sizeof(tmp))
        return ML_ERR;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if ((slash = strchr(tmp, '/'))) {
        tmp[slash - tmp] = '\0';
        if (ml_parse_int64(slash + 1, 0, 32, &prefix) != ML_OK)
            return ML_ERR;
    }
    if (inet_pton(AF_INET, tmp, &a) != 1)
        return ML_ERR;
    r->prefix = (uint8_t)prefix;
    r->net = ntohl(a.s_addr) & (prefix ? 0xffffffffu << (32 - prefix) : 0);
    return ML_OK;
}

static int parse_one(const char *s, size_t n, netns_rule *r)
{
    const char *colon = memchr(s, ':', n);
    int64_t port = 0;
    char pbuf[8];

    r->port = 0;
    if (colon) {
        size_t pl = n - (size_t)(colon - s) - 1;
        if (pl == 0 || pl >= sizeof(pbuf))
            return ML_ERR;
        memcpy(pbuf, colon + 1, pl);
        pbuf[pl] = '\0';
        if (ml_parse_int64(pbuf, 1, 65535, &port) != ML_OK)
            return ML_ERR;
        r->port = (uint16_t)port;
        n = (size_t)(colon - s);
    }
    return parse_cidr(s, n, r);
}

int netns_parse_allow(const char *s, netns_rule *out, size_t max, size_t *n, char *err,
                      size_t errlen)
{
    *n = 0;
    while (s && *s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);

        while (len && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len) {
            if (*n == max || parse_one(s, len, &out[*n]) != ML_OK) {
                ml_snprintf_trunc(err, errlen, "MINILAMBDA_NETWORK_ALLOW: bad or too many entries "
                                  "at \"%.*s\" (IPv4 CIDR[:port], at most %zu)", (int)len, s, max);
                return ML_ERR;
            }
            (*n)++;
        }
        s = end ? end + 1 : s + strlen(s);
    }
    return ML_OK;
}

static bool in_deny(uint32_t a)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(deny_v4); i++) {
        netns_rule r;
        if (parse_cidr(deny_v4[i], strlen(deny_v4[i]), &r) == ML_OK &&
            (a & (r.prefix ? 0xffffffffu << (32 - r.prefix) : 0)) == r.net)
            return true;
    }
    return false;
}

/* Appends to buf at *used; ML_ERR once it does not fit (and from then on). */
static int put(char *buf, size_t len, size_t *used, const char *fmt, ...) ML_PRINTF(4, 5);
static int put(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int rc;

    if (*used >= len)
        return ML_ERR;
    va_start(ap, fmt);
    rc = ml_vsnprintf(buf + *used, len - *used, fmt, ap);
    va_end(ap);
    if (rc != ML_OK) {
        *used = len;
        return ML_ERR;
    }
    *used += strlen(buf + *used);
    return ML_OK;
}

static void put_addr(char *buf, size_t len, size_t *used, uint32_t a, unsigned prefix)
{
    put(buf, len, used, "%u.%u.%u.%u/%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255, prefix);
}

int netns_ruleset(const netns_rule *allow, size_t nallow, const char *dns, const uint32_t *host,
                  size_t nhost, char *buf, size_t len)
{
    size_t used = 0, nh = 0;

    put(buf, len, &used, "table inet minilambda {\n chain out {\n"
        "  type filter hook output priority 0; policy accept;\n  oif \"lo\" accept\n"
        "  ip daddr %s meta l4proto { tcp, udp } th dport 53 accept\n", dns);
    for (size_t i = 0; i < nallow; i++) {
        put(buf, len, &used, "  ip daddr ");
        put_addr(buf, len, &used, allow[i].net, allow[i].prefix);
        if (allow[i].port)
            put(buf, len, &used, " meta l4proto { tcp, udp } th dport %u", allow[i].port);
        put(buf, len, &used, " accept\n");
    }
    put(buf, len, &used, "  ip daddr {");
    for (size_t i = 0; i < ML_ARRAY_LEN(deny_v4); i++)
        put(buf, len, &used, "%s %s", i ? "," : "", deny_v4[i]);
    put(buf, len, &used, " } reject\n");
    /* The upstream's own public addresses (a host service on 0.0.0.0 is reachable there);
     * those inside a denied range are already covered (nft refuses overlapping intervals). */
    for (size_t i = 0; i < nhost; i++) {
        if (in_deny(host[i]))
            continue;
        put(buf, len, &used, "%s", nh++ ? ", " : "  ip daddr { ");
        put_addr(buf, len, &used, host[i], 32);
    }
    if (nh)
        put(buf, len, &used, " } reject\n");
    /* No IPv6 path exists (slirp4netns runs without -6); refuse it anyway, loudly. */
    put(buf, len, &used, "  meta nfproto ipv6 reject\n }\n}\n");
    return used < len ? ML_OK : ML_ERR;
}

/* The IPv4 addresses of the namespace this thread is in. */
static size_t host_addrs(uint32_t *out, size_t max)
{
    struct ifaddrs *ifa = NULL;
    size_t n = 0;

    if (getifaddrs(&ifa) != 0)
        return 0;
    for (struct ifaddrs *i = ifa; i && n < max; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
            uint32_t a = ntohl(((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr.s_addr);
            bool dup = false;
            for (size_t j = 0; j < n; j++)
                dup = dup || out[j] == a;
            if (!dup)
                out[n++] = a;
        }
    freeifaddrs(ifa);
    return n;
}

/* ---------------------------------------------------------------- making one */

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int netns_lo_up(void)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc = ML_ERR;

    if (s < 0)
        return ML_ERR;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr) == 0 ? ML_OK : ML_ERR;
    }
    close(s);
    return rc;
}

static int wait_child(pid_t pid)
{
    int st = 0;

    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return ML_ERR;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? ML_OK : ML_ERR;
}

/* Spawns argv with fd in_fd as stdin (-1: /dev/null), keep_fd at 3 and keep_fd2 at 4
 * (-1: none), the exit pipe's read end at 5, output to /dev/null. The child is in this
 * thread's network namespace. */
static pid_t spawn(char *const argv[], int in_fd, int keep_fd, int keep_fd2)
{
    /* Each source is first copied above every target: in a small process a source may
     * itself be fd 3..5, and the dup2 actions run in order. */
    const int src[4] = { in_fd, keep_fd, keep_fd2, g.exit_pipe[0] }, dst[4] = { 0, 3, 4, 5 };
    int hi[4];
    posix_spawn_file_actions_t fa;
    pid_t pid = -1;

    for (int i = 0; i < 4; i++)
        hi[i] = src[i] >= 0 ? fcntl(src[i], F_DUPFD_CLOEXEC, 16) : -1;
    if (posix_spawn_file_actions_init(&fa) != 0)
        goto out;
    if (hi[0] < 0)
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    for (int i = 0; i < 4; i++)
        if (hi[i] >= 0)
            posix_spawn_file_actions_adddup2(&fa, hi[i], dst[i]);
    if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
out:
    for (int i = 0; i < 4; i++)
        if (hi[i] >= 0)
            close(hi[i]);
    return pid;
}

/* nft -f - in this thread's (the new) namespace. */
static int run_nft(void)
{
    char *argv[] = { (char *)(g.cfg.nft ? g.cfg.nft : "nft"), "-f", "-", NULL };
    int p[2];
    pid_t pid;
    size_t n = strlen(g.rules), off = 0;

    if (pipe2(p, O_CLOEXEC) != 0)
        return ML_ERR;
    pid = spawn(argv, p[0], -1, -1);
    close(p[0]);
    while (pid > 0 && off < n) {   /* a ruleset is far below a pipe's capacity */
        ssize_t w = write(p[1], g.rules + off, n - off);
        if (w <= 0 && errno != EINTR)
            break;
        off += w > 0 ? (size_t)w : 0;
    }
    close(p[1]);
    return pid > 0 && wait_child(pid) == ML_OK && off == n ? ML_OK : ML_ERR;
}

/* slirp4netns for s->fd, started in this thread's (the upstream) namespace; ML_OK once it
 * reports the namespace configured. */
static int start_slirp(slot *s)
{
    /* --exit-fd: our end of the exit pipe closes when the executor dies, however it dies, and
     * every slirp4netns exits with it (they would otherwise outlive it, reparented). */
    char *argv[] = { (char *)(g.cfg.slirp ? g.cfg.slirp : "slirp4netns"), "--configure",
                     "--mtu=65520", "--disable-host-loopback", "--enable-seccomp", "--exit-fd=5",
                     "--ready-fd=3", "--netns-type=path", "/proc/self/fd/4", "tap0", NULL, NULL };
    struct pollfd pf;
    int r[2], rc = ML_ERR;
    char c;

    if (strcmp(g.cfg.dns, NETNS_SLIRP_DNS) != 0) {   /* its forwarder is not used: off */
        memmove(&argv[2], &argv[1], 9 * sizeof(*argv));
        argv[1] = "--disable-dns";
    }
    if (pipe2(r, O_CLOEXEC) != 0)
        return ML_ERR;
    s->slirp = spawn(argv, -1, r[1], s->fd);
    close(r[1]);
    pf = (struct pollfd){ .fd = r[0], .events = POLLIN };
    if (s->slirp > 0 && poll(&pf, 1, NETNS_READY_TIMEOUT_MS) == 1 && read(r[0], &c, 1) == 1)
        rc = ML_OK;
    close(r[0]);
    return rc;
}

static void slot_teardown(slot *s)
{
    if (s->slirp > 0) {
        kill(s->slirp, SIGKILL);
        (void)wait_child(s->slirp);
    }
    if (s->fd >= 0)
        close(s->fd);
    if (s->pidfd >= 0)
        close(s->pidfd);
    s->fd = s->pidfd = -1;   /* the state is the caller's to change, under the lock */
    s->slirp = -1;
}

/* Tears s down (the caller's alone, SLOT_MAKING) and frees the slot. */
static void slot_free(slot *s)
{
    slot_teardown(s);
    pthread_mutex_lock(&g.lock);
    s->state = SLOT_FREE;
    pthread_mutex_unlock(&g.lock);
}

/* Makes one namespace into s, on the calling thread (which ends where it began). */
static int slot_make(slot *s, char *err, size_t errlen)
{
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    const char *step = "unshare";
    int rc = ML_ERR;

    s->fd = s->pidfd = -1;
    s->slirp = -1;
    if (self < 0 || unshare(CLONE_NEWNET) != 0)
        goto out;
    step = "open";
    s->fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (s->fd < 0 || (step = "lo", netns_lo_up()) != ML_OK || (step = "nft", run_nft()) != ML_OK)
        goto back;
    step = "setns upstream";
    if (g.upstream >= 0 && setns(g.upstream, CLONE_NEWNET) != 0)
        goto back;
    step = "slirp4netns";
    rc = start_slirp(s);
back:
    if (setns(self, CLONE_NEWNET) != 0)   /* cannot happen for our own namespace */
        ml_log_error("netns: cannot return to the executor's network namespace: %s", strerror(errno));
out:
    if (rc != ML_OK) {
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: network namespace: %s: %s", step,
                          errno ? strerror(errno) : "failed");
        slot_teardown(s);
    }
    if (self >= 0)
        close(self);
    return rc;
}

/* ---------------------------------------------------------------- the pool thread */

/* Under the lock: a bound slot whose process has exited, or NULL. */
static slot *find_exited(void)
{
    for (size_t i = 0; i < NETNS_SLOTS; i++) {
        struct pollfd pf = { .fd = -1, .events = POLLIN };
        if (g.slots[i].state != SLOT_BOUND)   /* others' fields may be changing unlocked */
            continue;
        pf.fd = g.slots[i].pidfd;
        if (poll(&pf, 1, 0) == 1)
            return &g.slots[i];
    }
    return NULL;
}

static slot *find_state(slot_state st)
{
    for (size_t i = 0; i < NETNS_SLOTS; i++)
        if (g.slots[i].state == st)
            return &g.slots[i];
    return NULL;
}

static void pool_tick(void)
{
    slot *s;
    char err[256];

    while ((s = find_exited())) {
        s->state = SLOT_MAKING;   /* nobody else touches it */
        pthread_mutex_unlock(&g.lock);
        slot_teardown(s);
        pthread_mutex_lock(&g.lock);
        s->state = SLOT_FREE;
    }
    while (!g.stop && g.nready < (size_t)g.cfg.pool + g.waiters && (s = find_state(SLOT_FREE))) {
        uint64_t t0 = now_us();
        int rc;

        s->state = SLOT_MAKING;
        pthread_mutex_unlock(&g.lock);
        rc = slot_make(s, err, sizeof(err));
        pthread_mutex_lock(&g.lock);
        if (rc != ML_OK) {
            s->state = SLOT_FREE;
            ml_log_error("%s", err);
            break;   /* retried on the next tick */
        }
        s->state = SLOT_READY;
        g.nready++;
        g.made++;
        g.last_us = now_us() - t0;
        pthread_cond_broadcast(&g.ready);
    }
}

static void *pool_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g.lock);
    while (!g.stop) {
        struct timespec ts;

        pool_tick();
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += NETNS_TICK_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        if (!g.stop)
            pthread_cond_timedwait(&g.work, &g.lock, &ts);
    }
    pthread_mutex_unlock(&g.lock);
    return NULL;
}

/* ---------------------------------------------------------------- API */

static int init_policy(const netns_config *c, char *err, size_t errlen)
{
    netns_rule allow[NETNS_MAX_ALLOW];
    uint32_t host[NETNS_MAX_HOST];
    size_t nallow = 0, nhost;
    int self = -1;
    struct in_addr dns;

    if (inet_pton(AF_INET, c->dns, &dns) != 1) {
        ml_snprintf_trunc(err, errlen, "MINILAMBDA_NETWORK_DNS: \"%s\" is not an IPv4 address", c->dns);
        return ML_ERR;
    }
    if (netns_parse_allow(c->allow, allow, ML_ARRAY_LEN(allow), &nallow, err, errlen) != ML_OK)
        return ML_ERR;
    if (c->upstream && c->upstream[0]) {
        self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        g.upstream = open(c->upstream, O_RDONLY | O_CLOEXEC);
        if (self < 0 || g.upstream < 0 || setns(g.upstream, CLONE_NEWNET) != 0) {
            ml_snprintf_trunc(err, errlen, "MINILAMBDA_NETWORK_UPSTREAM_NETNS: %s: %s", c->upstream,
                              strerror(errno));
            if (self >= 0)
                close(self);
            return ML_ERR;
        }
    }
    nhost = host_addrs(host, ML_ARRAY_LEN(host));
    if (self >= 0) {
        (void)setns(self, CLONE_NEWNET);
        close(self);
    }
    if (netns_ruleset(allow, nallow, c->dns, host, nhost, g.rules, sizeof(g.rules)) != ML_OK ||
        ml_snprintf(g.resolv, sizeof(g.resolv), "nameserver %s\n", c->dns) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "network policy too large");
        return ML_ERR;
    }
    return ML_OK;
}

int netns_init(const netns_config *c, char *err, size_t errlen)
{
    slot probe;

    g.cfg = *c;
    g.cfg.dns = c->dns && c->dns[0] ? c->dns : NETNS_SLIRP_DNS;
    g.cfg.pool = c->pool < 1 ? 1 : c->pool > NETNS_MAX_POOL ? NETNS_MAX_POOL : c->pool;
    if (!g.cfg.nft && access("/usr/sbin/nft", X_OK) == 0)   /* a daemon's PATH may lack sbin */
        g.cfg.nft = "/usr/sbin/nft";
    for (size_t i = 0; i < NETNS_SLOTS; i++)
        g.slots[i] = (slot){ .state = SLOT_FREE, .fd = -1, .slirp = -1, .pidfd = -1 };
    if (init_policy(&g.cfg, err, errlen) != ML_OK)
        return ML_ERR;
    if (g.exit_pipe[0] < 0 && pipe2(g.exit_pipe, O_CLOEXEC) != 0) {
        ml_snprintf_trunc(err, errlen, "netns: pipe: %s", strerror(errno));
        return ML_ERR;
    }
    /* One for real: a missing tool or privilege shows at start, not at the first invoke. */
    if (slot_make(&probe, err, errlen) != ML_OK)
        return ML_ERR;
    slot_teardown(&probe);
    g.stop = false;
    if (pthread_create(&g.thread, NULL, pool_main, NULL) != 0) {
        ml_snprintf_trunc(err, errlen, "netns: cannot start the pool thread");
        return ML_ERR;
    }
    g.running = true;
    ml_log_info("netns: per-function network namespaces (slirp4netns, pool %d, dns %s)\n%s",
                g.cfg.pool, g.cfg.dns, g.rules);
    return ML_OK;
}

void netns_shutdown(void)
{
    if (!g.running)
        return;
    pthread_mutex_lock(&g.lock);
    g.stop = true;
    pthread_cond_broadcast(&g.work);
    pthread_mutex_unlock(&g.lock);
    pthread_join(g.thread, NULL);
    g.running = false;
    for (size_t i = 0; i < NETNS_SLOTS; i++)
        if (g.slots[i].state != SLOT_FREE)
            slot_teardown(&g.slots[i]), g.slots[i].state = SLOT_FREE;
    g.nready = 0;
    if (g.upstream >= 0)
        close(g.upstream);
    g.upstream = -1;
    for (int i = 0; i < 2; i++)
        if (g.exit_pipe[i] >= 0)
            close(g.exit_pipe[i]);
    g.exit_pipe[0] = g.exit_pipe[1] = -1;
}

bool netns_enabled(void)
{
    return g.running;
}

const char *netns_resolv_conf(void)
{
    return g.resolv;
}

int netns_acquire(int *lease, int *fd, char *err, size_t errlen)
{
    struct timespec ts;
    slot *s = NULL;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += NETNS_READY_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&g.lock);
    g.waiters++;
    while (g.running && !g.stop && !(s = find_state(SLOT_READY)) && rc != ETIMEDOUT) {
        pthread_cond_signal(&g.work);
        rc = pthread_cond_timedwait(&g.ready, &g.lock, &ts);
    }
    g.waiters--;
    if (s) {
        s->state = SLOT_LEASED;
        g.nready--;
        *lease = (int)(s - g.slots);
        *fd = s->fd;
    }
    pthread_cond_signal(&g.work);   /* refill */
    pthread_mutex_unlock(&g.lock);
    if (!s)
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: no network namespace ready in %d ms",
                          NETNS_READY_TIMEOUT_MS);
    return s ? ML_OK : ML_ERR;
}

void netns_lease_end(int lease, pid_t pid)
{
    slot *s;
    int pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;

    if (lease < 0 || lease >= NETNS_SLOTS)
        return;
    s = &g.slots[lease];
    pthread_mutex_lock(&g.lock);
    if (pidfd >= 0) {
        s->pidfd = pidfd;
        s->state = SLOT_BOUND;
        pthread_mutex_unlock(&g.lock);
        return;
    }
    s->state = SLOT_MAKING;   /* ours alone until torn down */
    pthread_mutex_unlock(&g.lock);
    slot_free(s);
}

void netns_stats(uint64_t *made, uint64_t *last_setup_us, size_t *ready)
{
    pthread_mutex_lock(&g.lock);
    *made = g.made;
    *last_setup_us = g.last_us;
    *ready = g.nready;
    pthread_mutex_unlock(&g.lock);
}
