/* test_egress.c — the build sandbox's egress proxy (services/build-worker/egress.h).
 *
 * The parser and the allow-list are tested directly (no privilege needed). As root, a real
 * proxy is started against a real upstream (an HTTP + echo server on the host's 127.0.0.1, one
 * thread per connection) and driven from inside its namespace: client sockets are made there
 * (the test thread setns()es in for the socket() call and back — a socket keeps the namespace
 * it was made in), and the "many connections" test runs client threads that setns() in for
 * good. Without root (or without unshare) those tests are skipped. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "egress-int.h"
#include "egress.h"
#include "ml.h"

/* ---------------------------------------------------------------- parser */

static int parse(const char *head, egress_req *req, char *out)
{
    const char *why = NULL;
    int st = egress_parse_head(head, strlen(head), req, out, EGRESS_OUT_MAX, &why);

    assert_non_null(why);
    if (st == EGRESS_PARSE_BAD || st == EGRESS_PARSE_TOO_LARGE)
        assert_true(why[0] != '\0');   /* a refusal says why */
    return st;
}

static void test_parse_connect(void **state)
{
    static char out[EGRESS_OUT_MAX];
    const char *h = "CONNECT Registry.Example:443 HTTP/1.1\r\nHost: registry.example:443\r\n"
                    "Proxy-Authorization: Basic eDp5\r\n\r\n";
    egress_req r;

    (void)state;
    assert_int_equal(parse(h, &r, out), EGRESS_PARSE_OK);
    assert_int_equal(r.kind, EGRESS_CONNECT);
    assert_string_equal(r.host, "Registry.Example");
    assert_int_equal(r.port, 443);
    assert_int_equal(r.head_len, strlen(h));
    assert_int_equal(parse("CONNECT [::1]:8443 HTTP/1.0\r\n\r\n", &r, out), EGRESS_PARSE_OK);
    assert_string_equal(r.host, "[::1]");
    assert_int_equal(r.port, 8443);
    /* bytes after the head (a TLS hello sent early) are not part of it */
    assert_int_equal(parse("CONNECT a.test:1 HTTP/1.1\r\n\r\n\x16\x03\x01", &r, out), EGRESS_PARSE_OK);
    assert_int_equal(r.head_len, strlen("CONNECT a.test:1 HTTP/1.1\r\n\r\n"));
}

static void test_parse_forward(void **state)
{
    static char out[EGRESS_OUT_MAX];
    const char *h = "GET http://pypi.test:8080/simple/pkg/?x=1 HTTP/1.1\r\nHost: elsewhere.test\r\n"
                    "Proxy-Authorization: Basic eDp5\r\nproxy-connection: keep-alive\r\n"
                    "Accept: */*\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nX-Empty:\r\n\r\nBODY";
    const char *want = "GET /simple/pkg/?x=1 HTTP/1.1\r\nHost: pypi.test:8080\r\nAccept: */*\r\n"
                       "X-Empty:\r\nConnection: close\r\n\r\n";
    egress_req r;

    (void)state;
    assert_int_equal(parse(h, &r, out), EGRESS_PARSE_OK);
    assert_int_equal(r.kind, EGRESS_FORWARD);
    assert_string_equal(r.host, "pypi.test");
    assert_int_equal(r.port, 8080);
    assert_int_equal(r.head_len, strlen(h) - 4);
    assert_int_equal(r.out_len, strlen(want));
    assert_memory_equal(out, want, r.out_len);

    assert_int_equal(parse("POST HTTP://H.test HTTP/1.0\r\nContent-Length: 0\r\n\r\n", &r, out),
                     EGRESS_PARSE_OK);
    assert_int_equal(r.port, 80);
    want = "POST / HTTP/1.0\r\nHost: H.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_int_equal(r.out_len, strlen(want));
    assert_memory_equal(out, want, r.out_len);

    assert_int_equal(parse("GET http://h.test?q HTTP/1.1\r\n\r\n", &r, out), EGRESS_PARSE_OK);
    want = "GET /?q HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n";
    assert_memory_equal(out, want, strlen(want));
    assert_int_equal(parse("GET http://[::1]:81/ HTTP/1.1\r\n\r\n", &r, out), EGRESS_PARSE_OK);
    assert_string_equal(r.host, "[::1]");
    assert_int_equal(r.port, 81);
}

static void test_parse_bad(void **state)
{
    static char out[EGRESS_OUT_MAX];
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",                 /* origin form */
        "GET https://a.test/ HTTP/1.1\r\n\r\n",                   /* https without CONNECT */
        "GET ftp://a.test/ HTTP/1.1\r\n\r\n",
        "GET * HTTP/1.1\r\n\r\n",
        "CONNECT a.test HTTP/1.1\r\n\r\n",                        /* no port */
        "CONNECT a.test: HTTP/1.1\r\n\r\n",
        "CONNECT a.test:0 HTTP/1.1\r\n\r\n",
        "CONNECT a.test:65536 HTTP/1.1\r\n\r\n",
        "CONNECT a.test:+80 HTTP/1.1\r\n\r\n",
        "CONNECT :443 HTTP/1.1\r\n\r\n",
        "CONNECT http://a.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT [zz]:443 HTTP/1.1\r\n\r\n",
        "CONNECT [::1]x:443 HTTP/1.1\r\n\r\n",
        "GET http://user:pw@a.test/ HTTP/1.1\r\n\r\n",            /* userinfo */
        "GET http://allowed.test@evil.test/ HTTP/1.1\r\n\r\n",
        "GET http://a.test/#frag HTTP/1.1\r\n\r\n",
        "GET http:///x HTTP/1.1\r\n\r\n",
        "GET http://a..test/ HTTP/1.1\r\n\r\n",
        "GET http://a.test./ HTTP/1.1\r\n\r\n",
        "GET http://a test/ HTTP/1.1\r\n\r\n",
        "GET http://a.test/ HTTP/2.0\r\n\r\n",
        "GET http://a.test/ http/1.1\r\n\r\n",
        "GET http://a.test/\r\n\r\n",
        "GET  http://a.test/ HTTP/1.1\r\n\r\n",
        "GET http://a.test/ HTTP/1.1 \r\n\r\n",
        "G(T http://a.test/ HTTP/1.1\r\n\r\n",
        "\r\nGET http://a.test/ HTTP/1.1\r\n\r\n",
        "GET http://a.test/ HTTP/1.1\r\nHost : a.test\r\n\r\n",   /* space before the colon */
        "GET http://a.test/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", /* obs-fold */
        "GET http://a.test/ HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET http://a.test/ HTTP/1.1\r\n: empty\r\n\r\n",
        "GET http://a.test/ HTTP/1.1\r\nX: \x01\r\n\r\n",
    };
    /* refused before the head is complete */
    static const char *const early[] = {
        "GET http://a.test/ HTTP/1.1\n",
        "GET http://a.test/ HTTP/1.1\r\nX: a\rb",
        "GET http://a.test/\x7f",
    };
    egress_req r;

    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(bad); i++) {
        int st = parse(bad[i], &r, out);
        if (st != EGRESS_PARSE_BAD)
            fail_msg("accepted (%d): %s", st, bad[i]);
    }
    for (size_t i = 0; i < ML_ARRAY_LEN(early); i++)
        assert_int_equal(parse(early[i], &r, out), EGRESS_PARSE_BAD);
    /* a NUL byte is a control byte too */
    {
        const char *why;
        assert_int_equal(egress_parse_head("GET http://a\0", 13, &r, out, sizeof(out), &why),
                         EGRESS_PARSE_BAD);
    }
}

static void test_parse_sizes(void **state)
{
    static char head[EGRESS_HEAD_MAX + 64], out[EGRESS_OUT_MAX];
    const char *line = "GET http://a.test/ HTTP/1.1\r\nX: ";
    size_t ll = strlen(line);
    egress_req r;
    const char *why;

    (void)state;
    assert_int_equal(parse("GET http://a.test/ HTTP/1.1\r\nHost: a", &r, out), EGRESS_PARSE_MORE);
    assert_int_equal(parse("GET http://a.test/ HTTP/1.1\r\n\r", &r, out), EGRESS_PARSE_MORE);
    assert_int_equal(parse("", &r, out), EGRESS_PARSE_MORE);
    /* exactly EGRESS_HEAD_MAX bytes with its blank line: fine; one more: 431 */
    memcpy(head, line, ll);
    memset(head + ll, 'a', EGRESS_HEAD_MAX - ll - 4);
    memcpy(head + EGRESS_HEAD_MAX - 4, "\r\n\r\n", 4);
    assert_int_equal(egress_parse_head(head, EGRESS_HEAD_MAX, &r, out, sizeof(out), &why),
                     EGRESS_PARSE_OK);
    assert_true(r.out_len <= EGRESS_OUT_MAX);
    memset(head + ll, 'a', EGRESS_HEAD_MAX - ll - 3);
    memcpy(head + EGRESS_HEAD_MAX - 3, "\r\n\r\n", 4);
    assert_int_equal(egress_parse_head(head, EGRESS_HEAD_MAX + 1, &r, out, sizeof(out), &why),
                     EGRESS_PARSE_TOO_LARGE);
    assert_int_equal(egress_parse_head(head, EGRESS_HEAD_MAX, &r, out, sizeof(out), &why),
                     EGRESS_PARSE_TOO_LARGE);
    assert_int_equal(egress_parse_head(head, EGRESS_HEAD_MAX - 1, &r, out, sizeof(out), &why),
                     EGRESS_PARSE_MORE);
    /* an output buffer too small is refused, not overrun */
    assert_int_equal(egress_parse_head("GET http://a.test/ HTTP/1.1\r\n\r\n", 31, &r, out, 20,
                                       &why), EGRESS_PARSE_TOO_LARGE);
}

static void test_allow_list(void **state)
{
    const char *const hosts[] = { " a.test:8080 ", "B.test", "", "[::1]:443", "127.0.0.1:3128" };
    egress_allow allow = { hosts, ML_ARRAY_LEN(hosts) };
    egress_rule rules[EGRESS_MAX_ALLOW];
    size_t n = 99;
    char err[256] = "";

    (void)state;
    assert_int_equal(egress_parse_allow(&allow, rules, &n, err, sizeof(err)), ML_OK);
    assert_int_equal(n, 4);
    assert_true(egress_allowed_target(rules, n, "a.test", 8080));
    assert_true(egress_allowed_target(rules, n, "A.TeSt", 8080));
    assert_false(egress_allowed_target(rules, n, "a.test", 80));
    assert_false(egress_allowed_target(rules, n, "a.test", 443));
    assert_true(egress_allowed_target(rules, n, "b.test", 80));
    assert_true(egress_allowed_target(rules, n, "b.test", 443));
    assert_false(egress_allowed_target(rules, n, "b.test", 8080));
    assert_false(egress_allowed_target(rules, n, "b.test.", 443));   /* as written */
    assert_false(egress_allowed_target(rules, n, "xb.test", 443));
    assert_false(egress_allowed_target(rules, n, "b.tes", 443));
    assert_true(egress_allowed_target(rules, n, "[::1]", 443));
    assert_false(egress_allowed_target(rules, n, "[::0:1]", 443));   /* no address games */
    assert_true(egress_allowed_target(rules, n, "127.0.0.1", 3128));
    assert_false(egress_allowed_target(rules, n, "127.1", 3128));
    assert_false(egress_allowed_target(rules, n, "localhost", 3128));
    assert_false(egress_allowed_target(rules, 0, "a.test", 8080));

    {
        static const char *const bad[] = { "a.test:0", "a.test:x", "a test", "http://a.test",
                                           "a.test:443/", "*.a.test", "user@a.test" };
        for (size_t i = 0; i < ML_ARRAY_LEN(bad); i++) {
            egress_allow one = { &bad[i], 1 };
            err[0] = '\0';
            assert_int_equal(egress_parse_allow(&one, rules, &n, err, sizeof(err)), ML_ERR);
            assert_non_null(strstr(err, bad[i]));
        }
    }
    {
        const char *many[EGRESS_MAX_ALLOW + 1];
        egress_allow big = { many, ML_ARRAY_LEN(many) };
        for (size_t i = 0; i < ML_ARRAY_LEN(many); i++)
            many[i] = "a.test:1";
        assert_int_equal(egress_parse_allow(&big, rules, &n, err, sizeof(err)), ML_ERR);
        big.n = EGRESS_MAX_ALLOW;
        assert_int_equal(egress_parse_allow(&big, rules, &n, err, sizeof(err)), ML_OK);
    }
}

/* ---------------------------------------------------------------- the upstream */

/* An HTTP server on the host's 127.0.0.1: a request gets "hello from upstream" + its body and
 * a close; a connection whose first bytes are "ECHO" gets every byte back until EOF. */
typedef struct upstream {
    int lfd, port;
    pthread_t acceptor;
    pthread_mutex_t lock;
    pthread_t handlers[2048];
    int nhandlers, open;
    char last_head[4096];
} upstream;

static upstream up;
static int closed_port;   /* allowed, with nothing listening */

static void *up_handler(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    size_t len = 0;
    char *end = NULL;

    while (len < sizeof(buf) - 1) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            goto out;
        len += (size_t)n;
        buf[len] = '\0';
        if (len >= 4 && memcmp(buf, "ECHO", 4) == 0)
            break;
        if ((end = strstr(buf, "\r\n\r\n")))
            break;
    }
    if (!end) {   /* echo */
        for (;;) {
            size_t off = 0;
            while (off < len) {
                ssize_t w = write(fd, buf + off, len - off);
                if (w <= 0)
                    goto out;
                off += (size_t)w;
            }
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n <= 0)
                goto out;
            len = (size_t)n;
        }
    }
    {
        size_t hl = (size_t)(end - buf) + 4, want = 0, have = len - hl;
        const char *cl = strstr(buf, "\r\nContent-Length: ");
        char resp[70000];
        int rl;

        pthread_mutex_lock(&up.lock);
        memcpy(up.last_head, buf, hl < sizeof(up.last_head) ? hl : sizeof(up.last_head) - 1);
        up.last_head[hl < sizeof(up.last_head) ? hl : sizeof(up.last_head) - 1] = '\0';
        pthread_mutex_unlock(&up.lock);
        if (cl && cl < end)
            want = strtoul(cl + 18, NULL, 10);
        while (have < want && len < sizeof(buf) - 1) {
            ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
            have += (size_t)n;
        }
        rl = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\nhello from upstream%.*s", 19 + have, (int)have,
                      buf + hl);
        for (int off = 0; off < rl; ) {
            ssize_t w = write(fd, resp + off, (size_t)(rl - off));
            if (w <= 0)
                break;
            off += (int)w;
        }
    }
out:
    close(fd);
    pthread_mutex_lock(&up.lock);
    up.open--;
    pthread_mutex_unlock(&up.lock);
    return NULL;
}

static void *up_accept(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept4(up.lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL;   /* shut down */
        }
        pthread_mutex_lock(&up.lock);
        if (up.nhandlers == (int)ML_ARRAY_LEN(up.handlers) ||
            pthread_create(&up.handlers[up.nhandlers], NULL, up_handler, (void *)(intptr_t)fd) != 0) {
            close(fd);
        } else {
            up.nhandlers++;
            up.open++;
        }
        pthread_mutex_unlock(&up.lock);
    }
}

static int listen_local(int *port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 256) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    *port = ntohs(sa.sin_port);
    return fd;
}

static bool rooted;

static int group_setup(void **state)
{
    int cfd;
    (void)state;
    pthread_mutex_init(&up.lock, NULL);
    if ((up.lfd = listen_local(&up.port)) < 0 || pthread_create(&up.acceptor, NULL, up_accept, NULL) != 0)
        return -1;
    /* a port that was just free: nothing listens there during the test */
    if ((cfd = listen_local(&closed_port)) < 0)
        return -1;
    close(cfd);
    rooted = geteuid() == 0;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    shutdown(up.lfd, SHUT_RDWR);
    pthread_join(up.acceptor, NULL);
    close(up.lfd);
    for (int i = 0; i < up.nhandlers; i++)
        pthread_join(up.handlers[i], NULL);
    pthread_mutex_destroy(&up.lock);
    return 0;
}

/* ---------------------------------------------------------------- proxy fixture + clients */

typedef struct fx {
    egress *e;
} fx;

static int start_proxy(egress **out)
{
    char a[3][64], err[256] = "";
    const char *hosts[3] = { a[0], a[1], a[2] };
    egress_allow allow = { hosts, 3 };

    snprintf(a[0], sizeof(a[0]), "127.0.0.1:%d", up.port);
    snprintf(a[1], sizeof(a[1]), "LocalHost:%d", up.port);   /* resolved; matched ignoring case */
    snprintf(a[2], sizeof(a[2]), "127.0.0.1:%d", closed_port);
    if (egress_start(&allow, out, err, sizeof(err)) != ML_OK) {
        print_message("# egress_start: %s\n", err);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));

    *state = f;
    if (!f)
        return -1;
    if (rooted && start_proxy(&f->e) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;

    egress_stop(f->e);
    free(f);
    return 0;
}

#define NEED_ROOT()                                                     \
    do {                                                                \
        if (!rooted) {                                                  \
            print_message("# skipped: needs root (unshare, setns)\n"); \
            skip();                                                     \
        }                                                               \
    } while (0)

/* A TCP socket in netns (made there by this thread, which then returns home). */
static int ns_socket(int netns)
{
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), fd = -1;

    if (self < 0)
        return -1;
    if (setns(netns, CLONE_NEWNET) == 0) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (setns(self, CLONE_NEWNET) != 0)
            abort();   /* the rest of the test would run in the wrong namespace */
    }
    close(self);
    return fd;
}

static int connect_to(int fd, int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct timeval tv = { .tv_sec = 5 };

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return connect(fd, (struct sockaddr *)&sa, sizeof(sa));
}

/* A client connected to the proxy from inside its namespace. */
static int dial(egress *e)
{
    int fd = ns_socket(egress_netns_fd(e));

    assert_true(fd >= 0);
    assert_int_equal(connect_to(fd, egress_port(e)), 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *b = p;

    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        b += w;
        n -= (size_t)w;
    }
}

/* Reads until EOF, an error or the 5 s timeout; NUL-terminated. */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;

    while (len < cap - 1) {
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

/* Reads exactly n bytes (or fails the test). */
static void read_n(int fd, char *buf, size_t n)
{
    size_t len = 0;

    while (len < n) {
        ssize_t r = recv(fd, buf + len, n - len, 0);
        if (r <= 0)
            fail_msg("read %zu of %zu bytes (errno %d)", len, n, errno);
        len += (size_t)r;
    }
}

/* One request through a fresh connection; the whole answer in buf. */
static size_t roundtrip(egress *e, const char *req, size_t reqlen, char *buf, size_t cap)
{
    int fd = dial(e);
    size_t n;

    send_all(fd, req, reqlen);
    n = read_all(fd, buf, cap);
    close(fd);
    return n;
}

static size_t roundtrip_s(egress *e, const char *req, char *buf, size_t cap)
{
    return roundtrip(e, req, strlen(req), buf, cap);
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---------------------------------------------------------------- live tests */

static void test_forward(void **state)
{
    fx *f = *state;
    char req[512], buf[4096], head[4096];

    NEED_ROOT();
    snprintf(req, sizeof(req), "GET http://127.0.0.1:%d/simple/pkg/ HTTP/1.1\r\nHost: evil.test\r\n"
             "Proxy-Authorization: Basic eDp5\r\nUser-Agent: t\r\n\r\n", up.port);
    roundtrip_s(f->e, req, buf, sizeof(buf));
    assert_true(starts(buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(buf, "\r\n\r\nhello from upstream"));
    pthread_mutex_lock(&up.lock);
    memcpy(head, up.last_head, sizeof(head));
    pthread_mutex_unlock(&up.lock);
    snprintf(req, sizeof(req), "GET /simple/pkg/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: t\r\n"
             "Connection: close\r\n\r\n", up.port);
    assert_string_equal(head, req);   /* origin form, Host from the URL, proxy headers gone */

    /* by name, written in another case (localhost resolves here; the proxy does it outside) */
    snprintf(req, sizeof(req), "POST http://LOCALHOST:%d/up HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
             "12345", up.port);
    roundtrip_s(f->e, req, buf, sizeof(buf));
    assert_true(starts(buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(buf, "\r\n\r\nhello from upstream12345"));
    assert_int_equal(egress_allowed(f->e), 2);
    assert_int_equal(egress_denied(f->e), 0);
    egress_denied_targets(f->e, buf, sizeof(buf));
    assert_string_equal(buf, "");
}

/* Writes out and reads inlen bytes at the same time (both can exceed the socket buffers). */
static void exchange(int fd, const char *out, size_t outlen, char *in, size_t inlen)
{
    size_t wo = 0, ri = 0;

    while (ri < inlen) {
        struct pollfd p = { .fd = fd, .events = (short)(POLLIN | (wo < outlen ? POLLOUT : 0)) };
        assert_int_equal(poll(&p, 1, 5000), 1);
        if ((p.revents & POLLOUT) && wo < outlen) {
            ssize_t w = send(fd, out + wo, outlen - wo, MSG_NOSIGNAL | MSG_DONTWAIT);
            assert_true(w > 0 || errno == EAGAIN);
            wo += w > 0 ? (size_t)w : 0;
            if (wo == outlen)
                shutdown(fd, SHUT_WR);   /* the echo ends when we do: half-close relayed */
        }
        if (p.revents & (POLLIN | POLLHUP)) {
            ssize_t r = recv(fd, in + ri, inlen - ri, MSG_DONTWAIT);
            assert_true(r > 0 || (r < 0 && errno == EAGAIN));
            ri += r > 0 ? (size_t)r : 0;
        }
    }
}

static void test_connect_tunnel(void **state)
{
    fx *f = *state;
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    const size_t n = 300 * 1024;
    char req[256], got[sizeof(ok)], *out = malloc(n), *in = malloc(n), end;
    int fd;

    NEED_ROOT();
    assert_non_null(out);
    assert_non_null(in);
    memcpy(out, "ECHO", 4);
    for (size_t i = 4; i < n; i++)
        out[i] = (char)(i * 7 + i / 251);
    fd = dial(f->e);
    snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
             up.port, up.port);
    send_all(fd, req, strlen(req));
    read_n(fd, got, sizeof(ok) - 1);
    assert_memory_equal(got, ok, sizeof(ok) - 1);
    exchange(fd, out, n, in, n);
    assert_memory_equal(in, out, n);
    assert_int_equal(recv(fd, &end, 1, 0), 0);   /* the upstream's close reaches us */
    close(fd);
    assert_int_equal(egress_allowed(f->e), 1);
    free(out);
    free(in);
}

static void test_denied(void **state)
{
    fx *f = *state;
    char req[256], buf[4096], want[128];

    NEED_ROOT();
    snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", up.port + 1);
    roundtrip_s(f->e, req, buf, sizeof(buf));
    assert_true(starts(buf, "HTTP/1.1 403 Forbidden\r\n"));
    snprintf(want, sizeof(want), "127.0.0.1:%d is not on this build's allow-list\n", up.port + 1);
    assert_non_null(strstr(buf, want));

    roundtrip_s(f->e, "GET http://evil.test/x HTTP/1.1\r\n\r\n", buf, sizeof(buf));
    assert_true(starts(buf, "HTTP/1.1 403 "));
    assert_non_null(strstr(buf, "evil.test:80 is not"));
    /* the same port on another spelling of the address is another host */
    snprintf(req, sizeof(req), "GET http://127.1:%d/ HTTP/1.1\r\n\r\n", up.port);
    roundtrip_s(f->e, req, buf, sizeof(buf));
    assert_true(starts(buf, "HTTP/1.1 403 "));
    roundtrip_s(f->e, "GET http://evil.test/y HTTP/1.1\r\n\r\n", buf, sizeof(buf));   /* again */
    assert_true(starts(buf, "HTTP/1.1 403 "));

    assert_int_equal(egress_denied(f->e), 4);
    assert_int_equal(egress_allowed(f->e), 0);
    egress_denied_targets(f->e, buf, sizeof(buf));
    snprintf(want, sizeof(want), "127.0.0.1:%d,evil.test:80,127.1:%d", up.port + 1, up.port);
    assert_string_equal(buf, want);
    egress_denied_targets(f->e, buf, 8);   /* bounded */
    assert_int_equal(strlen(buf), 7);
}

static void test_only_through_proxy(void **state)
{
    fx *f = *state;
    int fd, self;
    struct if_nameindex *ifs;
    size_t nifs = 0;

    NEED_ROOT();
    /* the upstream listens on the host's 127.0.0.1: not this namespace's */
    fd = ns_socket(egress_netns_fd(f->e));
    assert_true(fd >= 0);
    assert_int_equal(connect_to(fd, up.port), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(fd);
    /* and there is no route anywhere else */
    fd = ns_socket(egress_netns_fd(f->e));
    {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(80) };
        inet_pton(AF_INET, "203.0.113.10", &sa.sin_addr);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), -1);
        assert_int_equal(errno, ENETUNREACH);
    }
    close(fd);
    /* only lo */
    self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    assert_int_equal(setns(egress_netns_fd(f->e), CLONE_NEWNET), 0);
    ifs = if_nameindex();
    assert_int_equal(setns(self, CLONE_NEWNET), 0);
    close(self);
    assert_non_null(ifs);
    for (struct if_nameindex *i = ifs; i->if_index; i++, nifs++)
        assert_string_equal(i->if_name, "lo");
    if_freenameindex(ifs);
    assert_int_equal(nifs, 1);
}

static void test_malformed(void **state)
{
    fx *f = *state;
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "GET https://127.0.0.1/ HTTP/1.1\r\n\r\n",
        "CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",
        "GET http://127.0.0.1/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        "hello\r\n\r\n",
        "GET http://127.0.0.1/ HTTP/1.1\n",   /* refused before the head ends */
    };
    char buf[4096];

    NEED_ROOT();
    for (size_t i = 0; i < ML_ARRAY_LEN(bad); i++) {
        roundtrip_s(f->e, bad[i], buf, sizeof(buf));
        if (!starts(buf, "HTTP/1.1 400 Bad Request\r\n"))
            fail_msg("%s -> %s", bad[i], buf);
    }
    assert_int_equal(egress_denied(f->e), (int64_t)ML_ARRAY_LEN(bad));
    assert_int_equal(egress_allowed(f->e), 0);
    egress_denied_targets(f->e, buf, sizeof(buf));
    assert_string_equal(buf, "");   /* no target to name */
}

static void test_too_large(void **state)
{
    fx *f = *state;
    const size_t n = 20 * 1024;
    char *req = malloc(n), buf[4096];
    int len;

    NEED_ROOT();
    assert_non_null(req);
    len = snprintf(req, n, "GET http://127.0.0.1:%d/ HTTP/1.1\r\nX-Big: ", up.port);
    memset(req + len, 'a', n - (size_t)len - 4);
    memcpy(req + n - 4, "\r\n\r\n", 4);
    roundtrip(f->e, req, n, buf, sizeof(buf));
    assert_true(starts(buf, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    assert_int_equal(egress_denied(f->e), 1);
    free(req);
}

static void test_bad_gateway(void **state)
{
    fx *f = *state;
    char req[256], buf[4096];

    NEED_ROOT();
    snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", closed_port);
    roundtrip_s(f->e, req, buf, sizeof(buf));
    assert_true(starts(buf, "HTTP/1.1 502 Bad Gateway\r\n"));
    assert_non_null(strstr(buf, "Connection refused"));
    assert_int_equal(egress_allowed(f->e), 1);   /* allowed; the upstream was not there */
}

/* Client threads, each in the namespace for good, each doing requests one after another. */
#define CLIENTS 24
#define PER_CLIENT 5
typedef struct client {
    egress *e;
    pthread_t t;
    int ok;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    char req[256], buf[1024];

    if (setns(egress_netns_fd(c->e), CLONE_NEWNET) != 0)
        return NULL;
    snprintf(req, sizeof(req), "POST http://127.0.0.1:%d/p HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
             "abc", up.port);
    for (int i = 0; i < PER_CLIENT; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        size_t len = 0;
        if (fd < 0 || connect_to(fd, egress_port(c->e)) != 0 ||
            send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        for (ssize_t n; len < sizeof(buf) - 1 && (n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0; )
            len += (size_t)n;
        buf[len] = '\0';
        close(fd);
        if (starts(buf, "HTTP/1.1 200 OK\r\n") && strstr(buf, "\r\n\r\nhello from upstreamabc"))
            c->ok++;
    }
    return NULL;
}

static void test_many_connections(void **state)
{
    fx *f = *state;
    client cl[CLIENTS];
    int ok = 0;

    NEED_ROOT();
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = (client){ .e = f->e };
        assert_int_equal(pthread_create(&cl[i].t, NULL, client_main, &cl[i]), 0);
    }
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(cl[i].t, NULL);
        ok += cl[i].ok;
    }
    assert_int_equal(ok, CLIENTS * PER_CLIENT);
    assert_int_equal(egress_allowed(f->e), CLIENTS * PER_CLIENT);
}

/* Waits up to ms for the proxy to hold want connections. */
static bool conns_reach(egress *e, int want, int ms)
{
    for (int i = 0; i < ms / 10 && egress_open_conns(e) != want; i++)
        ml_sleep_ms(10);
    return egress_open_conns(e) == want;
}

static void test_conn_bound(void **state)
{
    fx *f = *state;
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    int fds[EGRESS_MAX_CONNS], extra;
    char req[256], got[sizeof(ok)];
    struct pollfd p;

    NEED_ROOT();
    snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", up.port);
    for (int i = 0; i < EGRESS_MAX_CONNS; i++) {
        fds[i] = dial(f->e);
        send_all(fds[i], req, strlen(req));
        read_n(fds[i], got, sizeof(ok) - 1);
        assert_memory_equal(got, ok, sizeof(ok) - 1);
    }
    assert_int_equal(egress_open_conns(f->e), EGRESS_MAX_CONNS);
    /* one more: the kernel queues it, the proxy does not take it while full */
    extra = dial(f->e);
    send_all(extra, req, strlen(req));
    p = (struct pollfd){ .fd = extra, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 300), 0);
    assert_int_equal(egress_open_conns(f->e), EGRESS_MAX_CONNS);
    close(fds[0]);   /* a slot frees: the queued one is served */
    read_n(extra, got, sizeof(ok) - 1);
    assert_memory_equal(got, ok, sizeof(ok) - 1);
    for (int i = 1; i < EGRESS_MAX_CONNS; i++)
        close(fds[i]);
    close(extra);
    assert_true(conns_reach(f->e, 0, 3000));
}

static void test_idle_timeout(void **state)
{
    fx *f = *state;
    char req[256], buf[256];
    int half, tunnel;
    int64_t t0;

    NEED_ROOT();
    egress_set_idle_ms(f->e, 300);
    half = dial(f->e);
    send_all(half, "GET http://127.0.0.1/ HTTP/1.1\r\nHo", 34);   /* never finished */
    tunnel = dial(f->e);
    snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", up.port);
    send_all(tunnel, req, strlen(req));
    read_n(tunnel, buf, strlen("HTTP/1.1 200 Connection established\r\n\r\n"));
    t0 = ml_now_ms();
    assert_int_equal(read_all(half, buf, sizeof(buf)), 0);      /* closed, nothing said */
    assert_int_equal(read_all(tunnel, buf, sizeof(buf)), 0);
    assert_true(ml_now_ms() - t0 < 3000);
    assert_true(conns_reach(f->e, 0, 1000));
    close(half);
    close(tunnel);
}

/* The upstream's handlers close their sockets after the proxy's close: wait for them. */
static bool upstream_idle(int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        int open;
        pthread_mutex_lock(&up.lock);
        open = up.open;
        pthread_mutex_unlock(&up.lock);
        if (open == 0)
            return true;
        ml_sleep_ms(10);
    }
    return false;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void test_stop_with_open_connections(void **state)
{
    char req[256], buf[256];
    int before, after, fds[4];
    int64_t t0;
    egress *e = NULL;

    (void)state;
    NEED_ROOT();
    assert_true(upstream_idle(3000));
    before = count_fds();
    assert_int_equal(start_proxy(&e), 0);
    snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", up.port);
    for (int i = 0; i < 2; i++) {   /* two tunnels */
        fds[i] = dial(e);
        send_all(fds[i], req, strlen(req));
        read_n(fds[i], buf, strlen("HTTP/1.1 200 Connection established\r\n\r\n"));
    }
    fds[2] = dial(e);                        /* a head half sent */
    send_all(fds[2], "GET http://", 11);
    fds[3] = dial(e);                        /* connected, silent */
    assert_true(conns_reach(e, 4, 2000));
    t0 = ml_now_ms();
    egress_stop(e);
    assert_true(ml_now_ms() - t0 < 1000);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(read_all(fds[i], buf, sizeof(buf)), 0);   /* closed under them */
        close(fds[i]);
    }
    assert_true(upstream_idle(3000));
    after = count_fds();
    assert_int_equal(after, before);   /* sockets, the namespace, eventfd: all closed */
    egress_stop(NULL);
}

/* What a build pays for its proxy (printed for docs/network.md). */
static void test_start_cost(void **state)
{
    const int n = 20;
    int64_t t0, start_us = 0, stop_us = 0;
    struct timespec a, b;
    egress *e;

    (void)state;
    NEED_ROOT();
    for (int i = 0; i < n; i++) {
        clock_gettime(CLOCK_MONOTONIC, &a);
        assert_int_equal(start_proxy(&e), 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        start_us += (b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
        egress_stop(e);
        clock_gettime(CLOCK_MONOTONIC, &a);
        stop_us += (a.tv_sec - b.tv_sec) * 1000000 + (a.tv_nsec - b.tv_nsec) / 1000;
    }
    t0 = start_us / n;
    print_message("# egress: start %lld us, stop %lld us (mean of %d)\n", (long long)t0,
                  (long long)(stop_us / n), n);
}

static void test_start_errors(void **state)
{
    const char *const hosts[] = { "good.test:443", "bad host" };
    egress_allow allow = { hosts, 2 };
    egress *e = (egress *)1;
    char err[256] = "";

    (void)state;
    assert_int_equal(egress_start(&allow, &e, err, sizeof(err)), ML_ERR);
    assert_null(e);
    assert_non_null(strstr(err, "bad host"));
    if (!rooted) {   /* and without privilege, a clear error instead of a proxy */
        allow.n = 1;
        assert_int_equal(egress_start(&allow, &e, err, sizeof(err)), ML_ERR);
        assert_non_null(strstr(err, "unshare"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_connect),
        cmocka_unit_test(test_parse_forward),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_sizes),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test_setup_teardown(test_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_tunnel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_only_through_proxy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_gateway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test(test_stop_with_open_connections),
        cmocka_unit_test(test_start_cost),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
