/* test_sandbox_run.c — sandbox_run (shared/sandbox.h): one-shot commands, the way the
 * build-worker runs pip and npm on the user's code, in real sandboxes.
 *
 * Needs root and namespaces: without them every test is skipped with the reason (the
 * function sandbox's own tests, tests/unit/lambda-executor/test_sandbox.c, fail loudly
 * instead). Cgroup-dependent checks skip when sandbox_init fell back on that layer. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "log.h"
#include "ml.h"
#include "sandbox.h"

#define CG_PARENT "minilambda-test-run"
/* runs' uids: past the function instances' 1000000..1016383 and the probe's 1016384 */
#define RUN_UID_MIN 1016385u
#define RUN_UID_END (RUN_UID_MIN + 16384u)

static char g_report[4096];
static bool g_ok;

/* ------------------------------------------------------------------ helpers */

/* What the sink saw: each fd's stream, and the (fd, chunk) order. */
typedef struct capture {
    ml_buf out, err;
    int feeds, flushes;
    int up_fd;            /* test_uids_distinct_across_processes: uid line forwarded here */
} capture;

static void cap_feed(void *ctx, int fd, const char *data, size_t n)
{
    capture *c = ctx;

    assert_true(fd == 1 || fd == 2);
    ml_buf_append(fd == 1 ? &c->out : &c->err, data, n);
    c->feeds++;
    if (c->up_fd >= 0 && fd == 1 && n && write(c->up_fd, data, n) != (ssize_t)n)
        c->up_fd = -1;
}

static void cap_flush(void *ctx)
{
    ((capture *)ctx)->flushes++;
}

static void cap_free(capture *c)
{
    ml_buf_free(&c->out);
    ml_buf_free(&c->err);
}

static const char *const g_env[] = { "PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8", NULL };

/* A spec running argv with the defaults, output into c. */
static sandbox_run_spec spec_of(const char *const *argv, capture *c, sandbox_sink *sink)
{
    sandbox_run_spec s;

    memset(&s, 0, sizeof(s));
    memset(c, 0, sizeof(*c));
    c->up_fd = -1;
    sink->feed = cap_feed;
    sink->flush = cap_flush;
    sink->ctx = c;
    s.argv = argv;
    s.env = g_env;
    s.log = sink;
    s.memory_mb = 256;
    s.timeout_ms = 30000;
    return s;
}

/* Runs "/bin/sh -c script" with the defaults; the result must be ML_OK. */
static void run_sh(const char *script, capture *c, sandbox_run_result *r, void (*tweak)(sandbox_run_spec *, void *),
                   void *arg)
{
    const char *argv[] = { "/bin/sh", "-c", script, NULL };
    sandbox_sink sink;
    sandbox_run_spec s = spec_of(argv, c, &sink);
    char err[512] = "";

    if (tweak)
        tweak(&s, arg);
    if (sandbox_run(&s, r, err, sizeof(err)) != ML_OK)
        fail_msg("sandbox_run: %s", err);
}

static void need_sandbox(void)
{
    if (!g_ok) {
        print_message("skipped: %s\n", g_report);
        skip();
    }
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;   /* the DIR's own */
}

/* Live processes of a uid (zombies not counted), from the host's /proc. */
static int count_uid_procs(unsigned uid)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d))) {
        char path[300], buf[2048];
        const char *u;
        FILE *f;
        size_t got;

        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof(path), "/proc/%s/status", e->d_name);
        if (!(f = fopen(path, "r")))
            continue;
        got = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[got] = '\0';
        if ((u = strstr(buf, "\nUid:\t")) && strtoul(u + 6, NULL, 10) == uid && !strstr(buf, "\nState:\tZ"))
            n++;
    }
    closedir(d);
    return n;
}

/* Entries (cgroups) below the test's parent cgroup of a v1 controller; -1 if it has none. */
static int count_cgroups(const char *controller)
{
    char buf[4096], path[PATH_MAX], own[1024] = "";
    FILE *f = fopen("/proc/self/cgroup", "r");
    DIR *d;
    struct dirent *e;
    int n = 0;

    assert_non_null(f);
    while (fgets(buf, sizeof(buf), f)) {   /* "4:memory:/a/b" or "2:cpu,cpuacct:/a" */
        char *list = strchr(buf, ':'), *cg = list ? strchr(list + 1, ':') : NULL, *save = NULL;
        if (!cg)
            continue;
        *cg++ = '\0';
        cg[strcspn(cg, "\n")] = '\0';
        for (char *tok = strtok_r(list + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
            if (strcmp(tok, controller) == 0)
                snprintf(own, sizeof(own), "%s", cg + strspn(cg, "/"));
    }
    fclose(f);
    snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s%s%s", controller, own, own[0] ? "/" : "", CG_PARENT);
    if (!(d = opendir(path)))
        return -1;
    while ((e = readdir(d))) {
        struct stat st;
        char sub[PATH_MAX + 300];
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        n += e->d_name[0] != '.' && stat(sub, &st) == 0 && S_ISDIR(st.st_mode);
    }
    closedir(d);
    return n;
}

static void make_dir(char *tmpl, mode_t mode)
{
    assert_non_null(mkdtemp(tmpl));
    assert_int_equal(chmod(tmpl, mode), 0);
}

static void rm_tree(const char *dir)
{
    char cmd[PATH_MAX + 32];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static unsigned uid_of(const capture *c)
{
    return (unsigned)strtoul(ml_buf_cstr(&c->out), NULL, 10);
}

/* ------------------------------------------------------------------ tweaks */

static void tw_binds(sandbox_run_spec *s, void *arg)
{
    sandbox_bind *b = arg;

    s->binds = b;
    s->nbinds = b[1].host ? 2 : 1;
}

static void tw_timeout(sandbox_run_spec *s, void *arg)
{
    s->timeout_ms = *(int64_t *)arg;
}

static void tw_packages(sandbox_run_spec *s, void *arg)
{
    s->host_packages = *(bool *)arg;
}

static void tw_memory(sandbox_run_spec *s, void *arg)
{
    s->memory_mb = *(int64_t *)arg;
}

static void tw_pids(sandbox_run_spec *s, void *arg)
{
    s->pids_max = *(int64_t *)arg;
    s->timeout_ms = 10000;
}

static void tw_netns(sandbox_run_spec *s, void *arg)
{
    s->join_netns = true;
    s->netns_fd = *(int *)arg;
}

/* ------------------------------------------------------------------ tests */

/* Both streams reach the sink complete and in order; the tail is the end of the output;
 * env is exactly the caller's, cwd "/", stdin /dev/null. */
static void test_output_in_order(void **state)
{
    capture c;
    sandbox_run_result r;
    char want_out[16384] = "", want_err[16384] = "";
    size_t no = 0, ne = 0;

    (void)state;
    need_sandbox();
    run_sh("i=0; while [ $i -lt 500 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done", &c, &r, NULL, NULL);
    for (int i = 0; i < 500; i++) {
        no += (size_t)snprintf(want_out + no, sizeof(want_out) - no, "out%d\n", i);
        ne += (size_t)snprintf(want_err + ne, sizeof(want_err) - ne, "err%d\n", i);
    }
    assert_int_equal(r.exit_code, 0);
    assert_false(r.timed_out || r.oom || r.pids_exhausted);
    assert_string_equal(ml_buf_cstr(&c.out), want_out);
    assert_string_equal(ml_buf_cstr(&c.err), want_err);
    assert_true(c.flushes >= 1);
    assert_true(r.tail.len > 0 && r.tail.len <= 4096);
    assert_non_null(strstr(ml_buf_cstr(&r.tail), "499\n"));
    assert_true(r.duration_ms >= 0 && r.duration_ms < 10000);
    sandbox_run_result_free(&r);
    cap_free(&c);

    run_sh("env | sort; pwd; cat; echo stdin-done", &c, &r, NULL, NULL);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(ml_buf_cstr(&c.out), "HOME=/tmp\nLANG=C.UTF-8\nPATH=/usr/bin:/bin\nPWD=/\n/\nstdin-done\n");
    sandbox_run_result_free(&r);
    cap_free(&c);
}

/* Counts what a flood delivers without keeping it. */
typedef struct counter {
    size_t bytes[3];
    int max_feeds_per_flush, feeds;
} counter;

static void count_feed(void *ctx, int fd, const char *data, size_t n)
{
    counter *k = ctx;

    (void)data;
    k->bytes[fd == 2 ? 2 : 1] += n;
    k->feeds++;
}

static void count_flush(void *ctx)
{
    counter *k = ctx;

    if (k->feeds > k->max_feeds_per_flush)
        k->max_feeds_per_flush = k->feeds;
    k->feeds = 0;
}

/* 64 MiB printed as fast as it can be: all of it reaches the sink, drained in bounded
 * rounds (at most 1 MiB, 64 reads of 16 KiB, between flushes), and the run is not slowed
 * into its timeout. */
static void test_output_flood(void **state)
{
    const char *argv[] = { "/bin/sh", "-c", "head -c 67108864 /dev/zero | tr '\\0' x; sleep 0.5; echo THE-END >&2", NULL };
    counter k = { { 0 }, 0, 0 };
    sandbox_sink sink = { count_feed, count_flush, &k };
    sandbox_run_spec s;
    sandbox_run_result r;
    capture unused;
    char err[256];

    (void)state;
    need_sandbox();
    s = spec_of(argv, &unused, &sink);
    sink.feed = count_feed;
    sink.flush = count_flush;
    sink.ctx = &k;
    assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_OK);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(k.bytes[1], (size_t)64 << 20);
    assert_int_equal(k.bytes[2], 8);
    assert_true(k.max_feeds_per_flush <= 64);
    assert_int_equal(r.tail.len, 4096);
    assert_string_equal(ml_buf_cstr(&r.tail) + 4096 - 8, "THE-END\n");
    print_message("flood: 64 MiB in %lld ms\n", (long long)r.duration_ms);
    sandbox_run_result_free(&r);
}

static void test_exit_codes(void **state)
{
    static const struct { const char *script; int code; } cases[] = {
        { "exit 0", 0 }, { "exit 3", 3 }, { "kill -TERM $$", 128 + 15 }, { "kill -KILL $$", 128 + 9 },
        { "/nonexistent/cmd", 127 },
    };
    capture c;
    sandbox_run_result r;

    (void)state;
    need_sandbox();
    for (size_t i = 0; i < ML_ARRAY_LEN(cases); i++) {
        run_sh(cases[i].script, &c, &r, NULL, NULL);
        if (r.exit_code != cases[i].code)
            fail_msg("%s: exit %d, want %d", cases[i].script, r.exit_code, cases[i].code);
        assert_false(r.timed_out || r.oom || r.pids_exhausted);
        sandbox_run_result_free(&r);
        cap_free(&c);
    }
}

/* A tree of sleeps is killed at the deadline, at once, and nothing of it survives. */
static void test_timeout_kills_tree(void **state)
{
    capture c;
    sandbox_run_result r;
    int64_t timeout = 700, t0 = ml_now_ms();

    (void)state;
    need_sandbox();
    run_sh("id -u; sleep 100 & (sleep 100 & sleep 100) & sleep 100", &c, &r, tw_timeout, &timeout);
    assert_true(r.timed_out);
    assert_int_equal(r.exit_code, 128 + 9);
    assert_true(r.duration_ms >= 700 && r.duration_ms < 2500);
    assert_true(ml_now_ms() - t0 < 3000);
    assert_in_range(uid_of(&c), RUN_UID_MIN, RUN_UID_END - 1);
    assert_int_equal(count_uid_procs(uid_of(&c)), 0);
    sandbox_run_result_free(&r);
    cap_free(&c);
}

/* A writable bind is the run's (top dir chowned, new files its uid); a read-only one is
 * readable and not writable; nothing outside /tmp and the writable bind can be written. */
static void test_binds_and_writes(void **state)
{
    char rw[] = "/tmp/test_sbrun_rw_XXXXXX", ro[] = "/tmp/test_sbrun_ro_XXXXXX", path[PATH_MAX];
    sandbox_bind b[2] = { { rw, "/work/out", true }, { ro, "/opt/src", false } };
    struct stat st;
    capture c;
    sandbox_run_result r;
    FILE *f;
    unsigned uid;

    (void)state;
    need_sandbox();
    make_dir(rw, 0700);   /* the caller's scratch dir: only the run's uid gets in */
    make_dir(ro, 0777);   /* only the mount keeps the run from writing here */
    snprintf(path, sizeof(path), "%s/input.txt", ro);
    assert_non_null(f = fopen(path, "w"));
    fputs("from-the-caller\n", f);
    fclose(f);
    run_sh("id -u; cd /work/out && echo made > new.txt && mkdir sub && echo deep > sub/f; "
           "cat /opt/src/input.txt; "
           "for p in /opt/src/x /usr/x /etc/x /x /var/x /opt/x /work/x /proc/x /dev/x; do "
           "  (echo t > $p) 2>/dev/null && echo W:$p || echo D:$p; done; "
           "(echo t > /tmp/x) && echo W:/tmp/x", &c, &r, tw_binds, b);
    assert_int_equal(r.exit_code, 0);
    uid = uid_of(&c);
    assert_in_range(uid, RUN_UID_MIN, RUN_UID_END - 1);
    assert_non_null(strstr(ml_buf_cstr(&c.out), "\nfrom-the-caller\nD:/opt/src/x\nD:/usr/x\nD:/etc/x\nD:/x\n"
                                                "D:/var/x\nD:/opt/x\nD:/work/x\nD:/proc/x\nD:/dev/x\nW:/tmp/x\n"));
    assert_int_equal(stat(rw, &st), 0);
    assert_int_equal(st.st_uid, uid);
    assert_int_equal(st.st_gid, uid);
    snprintf(path, sizeof(path), "%s/new.txt", rw);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, uid);
    snprintf(path, sizeof(path), "%s/sub/f", rw);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, uid);
    snprintf(path, sizeof(path), "%s/x", ro);
    assert_int_equal(stat(path, &st), -1);
    sandbox_run_result_free(&r);
    cap_free(&c);
    rm_tree(rw);
    rm_tree(ro);
}

/* Host secrets and the host's /tmp are not there. */
static void test_host_hidden(void **state)
{
    char marker[] = "/tmp/test_sbrun_marker_XXXXXX", script[512];
    capture c;
    sandbox_run_result r;

    (void)state;
    need_sandbox();
    make_dir(marker, 0755);
    snprintf(script, sizeof(script),
             "for p in /etc/shadow /root %s /home /run /sys; do "
             "  if [ -e $p ]; then echo SEEN:$p; else echo gone:$p; fi; done; "
             "cat /etc/shadow 2>/dev/null || echo no-shadow; ls /tmp | wc -l", marker);
    run_sh(script, &c, &r, NULL, NULL);
    assert_int_equal(r.exit_code, 0);
    assert_null(strstr(ml_buf_cstr(&c.out), "SEEN"));
    assert_non_null(strstr(ml_buf_cstr(&c.out), "no-shadow\n0\n"));
    sandbox_run_result_free(&r);
    cap_free(&c);
    rm_tree(marker);
}

/* pip (dist-packages) is there only with host_packages. */
static void test_host_packages_python(void **state)
{
    const char *argv[] = { "/usr/bin/python3", "-c", "import pip; print('pip', pip.__version__)", NULL };
    capture c;
    sandbox_sink sink;
    sandbox_run_spec s;
    sandbox_run_result r;
    char err[512];

    (void)state;
    need_sandbox();
    if (access("/usr/lib/python3/dist-packages/pip", F_OK) != 0)
        skip();
    for (int with = 1; with >= 0; with--) {
        s = spec_of(argv, &c, &sink);
        s.host_packages = with;
        assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_OK);
        if (with) {
            assert_int_equal(r.exit_code, 0);
            assert_non_null(strstr(ml_buf_cstr(&c.out), "pip "));
        } else {
            assert_int_equal(r.exit_code, 1);
            assert_non_null(strstr(ml_buf_cstr(&c.err), "No module named 'pip'"));
        }
        sandbox_run_result_free(&r);
        cap_free(&c);
    }
}

/* Debian's node loads its builtins from these by absolute path, so they are never masked. */
static bool node_builtin_dir(const char *path)
{
    return strncmp(path, "/usr/share/nodejs/", 18) == 0 || strncmp(path, "/usr/lib/nodejs/", 16) == 0;
}

/* npm's own CLI runs on node with host_packages (skipped without npm on PATH); without, it is
 * masked unless it is Debian's, under node's builtin dirs. */
static void test_host_packages_npm(void **state)
{
    char npm_cli[PATH_MAX], node[PATH_MAX], which[PATH_MAX];
    const char *path = getenv("PATH");
    const char *argv[] = { node, npm_cli, "--version", NULL };
    bool found = false, with;
    capture c;
    sandbox_run_result r;

    (void)state;
    need_sandbox();
    while (path && *path && !found) {
        size_t n = strcspn(path, ":");
        snprintf(which, sizeof(which), "%.*s/npm", (int)n, path);
        found = access(which, X_OK) == 0 && realpath(which, npm_cli);
        path += n + (path[n] == ':');
    }
    if (!found || !realpath("/usr/bin/node", node)) {
        print_message("no npm or node: skipped\n");
        skip();
    }
    for (int i = 1; i >= 0; i--) {
        const char *const *a = argv;
        sandbox_sink sink;
        sandbox_run_spec s = spec_of(a, &c, &sink);
        char err[512];
        with = i;
        tw_packages(&s, &with);
        assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_OK);
        if (with) {
            if (r.exit_code != 0)
                fail_msg("npm --version: exit %d: %s", r.exit_code, ml_buf_cstr(&r.tail));
            assert_true(isdigit((unsigned char)ml_buf_cstr(&c.out)[0]));
        } else if (!node_builtin_dir(npm_cli)) {
            assert_int_not_equal(r.exit_code, 0);
        } else {
            /* Debian's npm lives beside node's own builtins, which stay visible (docs/sandbox.md) */
            print_message("npm under %s: not masked without host_packages\n", npm_cli);
        }
        sandbox_run_result_free(&r);
        cap_free(&c);
    }
}

#define NET_PY \
    "import socket, errno, sys\n" \
    "def attempt(port):\n" \
    "    try:\n" \
    "        s = socket.create_connection(('127.0.0.1', port), timeout=2)\n" \
    "    except OSError as e:\n" \
    "        return 'ERR:' + errno.errorcode.get(e.errno, str(e.errno))\n" \
    "    data = s.recv(64).decode() or 'connected'\n" \
    "    s.close()\n" \
    "    return data\n" \
    "print('ns=' + attempt(int(sys.argv[1])), 'host=' + attempt(int(sys.argv[2])))\n"

/* A listener on the host's 127.0.0.1 (a "Postgres" the run must not reach); its port. */
static int host_listener(int *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(s >= 0);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s, 8), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return s;
}

/* Without join_netns: no inet socket at all (EACCES), so nothing on the host's loopback. */
static void test_no_network(void **state)
{
    int port, hs = host_listener(&port);
    char ports[2][16];
    const char *argv[] = { "/usr/bin/python3", "-c", NET_PY, ports[0], ports[1], NULL };
    capture c;
    sandbox_sink sink;
    sandbox_run_spec s;
    sandbox_run_result r;
    char err[512];

    (void)state;
    need_sandbox();
    snprintf(ports[0], sizeof(ports[0]), "%d", port);
    snprintf(ports[1], sizeof(ports[1]), "%d", port);
    s = spec_of(argv, &c, &sink);
    assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_OK);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(ml_buf_cstr(&c.out), "ns=ERR:EACCES host=ERR:EACCES\n");
    sandbox_run_result_free(&r);
    cap_free(&c);
    close(hs);
}

/* The namespace a caller makes (as egress.h does): lo up, a listener on 127.0.0.1 inside. */
typedef struct netns_side {
    int ns_fd, listen_fd, port;
    bool ok;
} netns_side;

static void *make_netns(void *arg)
{
    netns_side *n = arg;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    struct ifreq ifr;
    int s;

    if (unshare(CLONE_NEWNET) != 0)
        return NULL;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
        return NULL;
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
        return NULL;
    close(s);
    n->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (n->listen_fd < 0 || bind(n->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(n->listen_fd, 8) != 0 || getsockname(n->listen_fd, (struct sockaddr *)&a, &len) != 0)
        return NULL;
    n->port = ntohs(a.sin_port);
    n->ns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    n->ok = n->ns_fd >= 0;
    return NULL;
}

static void *serve_once(void *arg)
{
    netns_side *n = arg;
    struct pollfd pf = { .fd = n->listen_fd, .events = POLLIN };
    int c = poll(&pf, 1, 10000) == 1 ? accept(n->listen_fd, NULL, NULL) : -1;

    if (c >= 0) {
        if (write(c, "hello-from-ns", 13) != 13)
            n->ok = false;
        close(c);
    }
    return NULL;
}

/* join_netns: the run reaches the listener in the caller's namespace, and the host's loopback
 * services are not there (the same port on the host answers only outside). */
static void test_join_netns(void **state)
{
    netns_side n = { .ns_fd = -1, .listen_fd = -1 };
    pthread_t t;
    int hport, hs = host_listener(&hport);
    char ports[2][16];
    const char *argv[] = { "/usr/bin/python3", "-c", NET_PY, ports[0], ports[1], NULL };
    capture c;
    sandbox_sink sink;
    sandbox_run_spec s;
    sandbox_run_result r;
    char err[512];

    (void)state;
    need_sandbox();
    assert_int_equal(pthread_create(&t, NULL, make_netns, &n), 0);
    pthread_join(t, NULL);
    assert_true(n.ok);
    assert_int_equal(pthread_create(&t, NULL, serve_once, &n), 0);
    snprintf(ports[0], sizeof(ports[0]), "%d", n.port);
    snprintf(ports[1], sizeof(ports[1]), "%d", hport);
    s = spec_of(argv, &c, &sink);
    tw_netns(&s, &n.ns_fd);
    assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_OK);
    pthread_join(t, NULL);
    if (r.exit_code != 0)
        fail_msg("exit %d: %s", r.exit_code, ml_buf_cstr(&r.tail));
    assert_string_equal(ml_buf_cstr(&c.out), "ns=hello-from-ns host=ERR:ECONNREFUSED\n");
    sandbox_run_result_free(&r);
    cap_free(&c);
    close(n.listen_fd);
    close(n.ns_fd);
    close(hs);
}

static void test_memory_oom(void **state)
{
    int64_t mb = 64;
    capture c;
    sandbox_run_result r;

    (void)state;
    need_sandbox();
    if (!(sandbox_features() & SANDBOX_F_CGROUP_MEMORY))
        skip();
    run_sh("/usr/bin/python3 -c \"b = b'x' * (256 << 20); print(len(b))\"", &c, &r, tw_memory, &mb);
    assert_true(r.oom);
    assert_int_equal(r.exit_code, 128 + 9);
    assert_false(r.timed_out);
    assert_true(r.max_memory_bytes > 32 << 20 && r.max_memory_bytes <= 64 << 20);
    sandbox_run_result_free(&r);
    cap_free(&c);
}

static void test_fork_bomb(void **state)
{
    int64_t pids = 16;
    capture c;
    sandbox_run_result r;

    (void)state;
    need_sandbox();
    if (!(sandbox_features() & SANDBOX_F_CGROUP_PIDS))
        skip();
    run_sh("i=0; while [ $i -lt 64 ]; do sleep 3 & i=$((i+1)); done; wait", &c, &r, tw_pids, &pids);
    assert_true(r.pids_exhausted);
    assert_false(r.oom);
    sandbox_run_result_free(&r);
    cap_free(&c);
}

/* Bad specs are refused before anything runs. */
static void test_bad_specs(void **state)
{
    static const char *const bad_paths[] = { "work/x", "/usr/x", "/etc/x", "/tmp/x", "/proc/x", "/dev/x",
                                             "/", "/var", "/work", "/var/../etc", "/work/./x", "/work/x/",
                                             "/work//x", "/work/a b", "/lib/x", "/bin/x", "/sys/x" };
    const char *argv[] = { "/bin/true", NULL }, *rel_argv[] = { "true", NULL };
    char dir[] = "/tmp/test_sbrun_bad_XXXXXX", link[PATH_MAX];
    sandbox_bind b[2] = { { dir, "/work/a", false }, { dir, "/work/a/b", false } };
    capture c;
    sandbox_sink sink;
    sandbox_run_spec s;
    sandbox_run_result r;
    char err[512];

    int fds0;

    (void)state;
    need_sandbox();
    fds0 = open_fds();
    make_dir(dir, 0755);
    s = spec_of(argv, &c, &sink);
    s.binds = b;
    s.nbinds = 1;
    for (size_t i = 0; i < ML_ARRAY_LEN(bad_paths); i++) {
        b[0].path = bad_paths[i];
        if (sandbox_run(&s, &r, err, sizeof(err)) != ML_ERR)
            fail_msg("bind at %s accepted", bad_paths[i]);
        assert_non_null(strstr(err, "Sandbox.InvalidConfig"));
    }
    b[0].path = "/work/a";
    s.nbinds = 2;   /* nested */
    assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "overlap"));
    b[1].path = "/work/c";
    b[1].host = "/nonexistent-dir";
    assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_ERR);
    snprintf(link, sizeof(link), "%s-link", dir);
    assert_int_equal(symlink(dir, link), 0);
    b[1].host = link;   /* writable through a link: refused (it would be chowned) */
    b[1].writable = true;
    assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_ERR);
    b[1].writable = false;   /* read-only through a link is fine */
    assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_OK);
    assert_int_equal(r.exit_code, 0);
    sandbox_run_result_free(&r);
    s.nbinds = 0;
    s.argv = rel_argv;
    assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_ERR);
    s.argv = argv;
    s.join_netns = true;
    s.netns_fd = -1;
    assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_ERR);
    s.join_netns = false;
    s.cwd = "relative";
    assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_ERR);
    s.cwd = "/nonexistent";   /* a failing step of the child: a setup error, not an exit code */
    assert_int_equal(sandbox_run(&s, &r, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "Sandbox.SetupError"));
    assert_int_equal(open_fds(), fds0);   /* failed set-ups leave nothing open either */
    cap_free(&c);
    unlink(link);
    rm_tree(dir);
}

/* 20 runs in a row (one timing out) leave no fd, cgroup, process or uid behind: each gets the
 * same uid again, freed by the one before. */
static void test_nothing_leaks(void **state)
{
    int fds0, cg0[3];
    static const char *const ctl[3] = { "memory", "pids", "cpu" };
    unsigned first = 0;
    int64_t timeout = 300, wall = 0;
    capture c;
    sandbox_run_result r;

    (void)state;
    need_sandbox();
    fds0 = open_fds();
    for (int i = 0; i < 3; i++)
        cg0[i] = count_cgroups(ctl[i]);
    for (int i = 0; i < 20; i++) {
        int64_t t0 = ml_now_ms();
        run_sh(i == 7 ? "id -u; sleep 10" : "id -u; echo x >&2", &c, &r, i == 7 ? tw_timeout : NULL, &timeout);
        if (i != 7)
            wall += ml_now_ms() - t0;
        assert_int_equal(r.timed_out, i == 7);
        if (i == 0)
            first = uid_of(&c);
        assert_int_equal(uid_of(&c), first);
        sandbox_run_result_free(&r);
        cap_free(&c);
    }
    print_message("a run of \"id -u\": %.1f ms wall on average\n", (double)wall / 19);
    assert_int_equal(open_fds(), fds0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(count_cgroups(ctl[i]), cg0[i]);
    assert_int_equal(count_uid_procs(first), 0);
}

typedef struct par_run {
    capture c;
    sandbox_run_result r;
    int rc;
} par_run;

static void *run_on_thread(void *arg)
{
    par_run *p = arg;
    const char *argv[] = { "/bin/sh", "-c", "id -u; sleep 0.3", NULL };
    sandbox_sink sink;
    sandbox_run_spec s = spec_of(argv, &p->c, &sink);
    char err[256];

    p->rc = sandbox_run(&s, &p->r, err, sizeof(err));
    return NULL;
}

/* Runs on several threads at once: all succeed, each with its own uid. */
static void test_concurrent_runs(void **state)
{
    par_run p[4];
    pthread_t t[4];

    (void)state;
    need_sandbox();
    memset(p, 0, sizeof(p));
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, run_on_thread, &p[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(p[i].rc, ML_OK);
        assert_int_equal(p[i].r.exit_code, 0);
        for (int j = 0; j < i; j++)
            assert_int_not_equal(uid_of(&p[i].c), uid_of(&p[j].c));
        sandbox_run_result_free(&p[i].r);
        cap_free(&p[i].c);
    }
}

/* Another process (an executor) holding a sandbox uid: this process's (the build-worker's)
 * run gets another one, through the host-wide uid lock file. */
static void test_uids_distinct_across_processes(void **state)
{
    int up[2], down[2], status = 0;
    char line[32] = "";
    unsigned other;
    capture c;
    sandbox_run_result r;
    pid_t pid;
    ssize_t got = 0;

    (void)state;
    need_sandbox();
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *argv[] = { "/bin/sh", "-c", "id -u; sleep 30", NULL };
        sandbox_sink sink;
        capture cc;
        sandbox_run_spec s;
        sandbox_run_result rr;
        char err[512], report[2048];
        int rc = 1;
        close(up[0]);
        close(down[1]);
        s = spec_of(argv, &cc, &sink);
        cc.up_fd = up[1];
        s.timeout_ms = 1500;   /* holds its uid that long */
        if (sandbox_init(CG_PARENT, report, sizeof(report)) == ML_OK &&
            sandbox_run(&s, &rr, err, sizeof(err)) == ML_OK && rr.timed_out)
            rc = 0;
        _exit(rc);
    }
    close(up[1]);
    close(down[0]);
    while (got < (ssize_t)sizeof(line) - 1 && !strchr(line, '\n')) {
        ssize_t n = read(up[0], line + got, sizeof(line) - 1 - (size_t)got);
        if (n <= 0)
            break;
        got += n;
        line[got] = '\0';
    }
    other = (unsigned)strtoul(line, NULL, 10);
    run_sh("id -u", &c, &r, NULL, NULL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_in_range(other, RUN_UID_MIN, RUN_UID_END - 1);
    assert_in_range(uid_of(&c), RUN_UID_MIN, RUN_UID_END - 1);
    assert_int_not_equal(uid_of(&c), other);
    sandbox_run_result_free(&r);
    cap_free(&c);
    close(up[0]);
    close(down[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_in_order),
        cmocka_unit_test(test_output_flood),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_timeout_kills_tree),
        cmocka_unit_test(test_binds_and_writes),
        cmocka_unit_test(test_host_hidden),
        cmocka_unit_test(test_host_packages_python),
        cmocka_unit_test(test_host_packages_npm),
        cmocka_unit_test(test_no_network),
        cmocka_unit_test(test_join_netns),
        cmocka_unit_test(test_memory_oom),
        cmocka_unit_test(test_fork_bomb),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_nothing_leaks),
        cmocka_unit_test(test_concurrent_runs),
        cmocka_unit_test(test_uids_distinct_across_processes),
    };

    ml_log_init("test_sandbox_run", ML_LOG_WARN);
    setenv("MINILAMBDA_SECRET", "not-for-runs", 1);
    if (geteuid() != 0)
        snprintf(g_report, sizeof(g_report), "needs root (namespaces, cgroups, uid switching)");
    else if (sandbox_init(CG_PARENT, g_report, sizeof(g_report)) == ML_OK &&
             (sandbox_features() & SANDBOX_F_NAMESPACES))
        g_ok = true;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
