/* test_sandbox_tight.c — issue 16's sandbox tightening, on real instances:
 *   - a function sees only its runtime's standard library and its own code (the host's
 *     dist-packages / site-packages / global node modules are masked in its root);
 *   - its CPU is limited in proportion to memory_mb (1769 MB = 1 vCPU);
 *   - seccomp is an allow-list: a syscall outside it is refused.
 *
 * Needs root and full isolation like test_sandbox (fails, never skips, without them). Timing
 * bounds are generous: the machine has 2 cores shared with other work. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include <cJSON.h>

#include "artifacts.h"
#include "log.h"
#include "sandbox.h"

#define MAX_INST 2

static char g_runtimes[1024];
static char g_report[4096];

typedef struct fixture {
    char dir[64];
    sandbox_instance *inst[MAX_INST];
    int ninst;
    sandbox_result res;
    cJSON *json;
} fixture;

/* ------------------------------------------------------------------ helpers */

static void write_text(const char *path, const char *text)
{
    FILE *fh = fopen(path, "w");

    assert_non_null(fh);
    assert_int_equal(fputs(text, fh) >= 0, 1);
    assert_int_equal(fclose(fh), 0);
    assert_int_equal(chmod(path, 0644), 0);
}

/* A new code dir (world-readable) holding name/content pairs, NULL-terminated; a name may
 * contain directories ("node_modules/pad/index.js"), made 0755. */
static const char *code_dir(fixture *f, ...)
{
    const char *name;
    va_list ap;

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_sandbox_tight_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(chmod(f->dir, 0755), 0);
    va_start(ap, f);
    while ((name = va_arg(ap, const char *))) {
        const char *content = va_arg(ap, const char *);
        char path[512];
        for (const char *slash = strchr(name, '/'); slash; slash = strchr(slash + 1, '/')) {
            snprintf(path, sizeof(path), "%s/%.*s", f->dir, (int)(slash - name), name);
            assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
            assert_int_equal(chmod(path, 0755), 0);
        }
        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        write_text(path, content);
    }
    va_end(ap);
    return f->dir;
}

static sandbox_instance *start(fixture *f, const char *runtime, const char *handler,
                               int64_t memory_mb)
{
    sandbox_spec s = { .runtime = runtime, .handler = handler, .code_dir = f->dir,
                       .runtimes_dir = g_runtimes, .function_name = "tightfn",
                       .function_version = "1", .memory_mb = memory_mb, .timeout_s = 30,
                       .pids_max = 64 };
    char err[1024] = "";
    sandbox_instance *in = NULL;

    assert_true(f->ninst < MAX_INST);
    if (sandbox_start(&s, &in, err, sizeof(err)) != ML_OK)
        fail_msg("sandbox_start(%s %s): %s", runtime, handler, err);
    f->inst[f->ninst++] = in;
    return in;
}

/* Invokes and expects a JSON result (kept in f->json until the next call). */
static const cJSON *invoke_ok(fixture *f, sandbox_instance *in, const char *event)
{
    sandbox_result_free(&f->res);
    cJSON_Delete(f->json);
    assert_int_equal(sandbox_invoke(in, "inv-tight", event, strlen(event), ml_now_ms() + 30000,
                                    1u << 20, &f->res), ML_OK);
    f->json = cJSON_Parse(ml_buf_cstr(&f->res.payload));
    if (f->res.status != SB_OK || !f->json)
        fail_msg("status %d payload %s log %s", f->res.status, ml_buf_cstr(&f->res.payload),
                 ml_buf_cstr(&f->res.log_tail));
    return f->json;
}

static const char *jprint(const cJSON *o)
{
    static char buf[8192];

    if (!cJSON_PrintPreallocated((cJSON *)o, buf, sizeof(buf), 0))
        snprintf(buf, sizeof(buf), "<unprintable>");
    return buf;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (!cJSON_IsString(v))
        fail_msg("no string \"%s\" in %s", key, jprint(o));
    return v->valuestring;
}

static double jnum(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (!cJSON_IsNumber(v))
        fail_msg("no number \"%s\" in %s", key, jprint(o));
    return v->valuedouble;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (!f || geteuid() != 0 || sandbox_features() != SANDBOX_F_ALL) {
        fprintf(stderr, "test_sandbox_tight needs root and full isolation: %s\n", g_report);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char rm[128];

    for (int i = 0; i < f->ninst; i++)
        sandbox_destroy(f->inst[i]);
    if (f->dir[0]) {
        snprintf(rm, sizeof(rm), "rm -rf '%s'", f->dir);
        if (system(rm) != 0)
            fprintf(stderr, "could not remove %s\n", f->dir);
    }
    sandbox_result_free(&f->res);
    cJSON_Delete(f->json);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------ packages */

static void test_python_sees_stdlib_and_own_code_only(void **state)
{
    fixture *f = *state;
    const cJSON *r;

    /* the premise: make deps installs these for the host's python3 */
    assert_int_equal(access("/usr/lib/python3/dist-packages/yaml", F_OK), 0);
    code_dir(f, "app.py",
        "import glob, os, sys\n"
        "def handler(event, context):\n"
        "    res = {'path': sys.path}\n"
        "    for m in ('requests', 'yaml', 'jwt', 'boto3', 'cryptography'):\n"
        "        try:\n            __import__(m); res[m] = 'IMPORTED'\n"
        "        except ImportError:\n            res[m] = 'ImportError'\n"
        "    import mypkg, json, ctypes, sqlite3, ssl\n"
        "    res['vendored'] = mypkg.VALUE\n"
        "    res['present'] = [d for d in ('/usr/lib/python3/dist-packages',\n"
        "        '/usr/local/lib/python3.11/dist-packages', '/usr/lib/node_modules/npm')\n"
        "        if os.path.exists(d)]\n"
        "    res['globbed'] = glob.glob('/usr/lib/python3*/*-packages/*') + \\\n"
        "        glob.glob('/usr/local/lib/python3*/*-packages') + glob.glob('/usr/lib/python3/*')\n"
        "    return res\n",
        "mypkg/__init__.py", "VALUE = 'vendored-ok'\n", NULL);
    r = invoke_ok(f, start(f, "python3", "app.handler", 128), "{}");
    assert_string_equal(jstr(r, "requests"), "ImportError");
    assert_string_equal(jstr(r, "yaml"), "ImportError");
    assert_string_equal(jstr(r, "jwt"), "ImportError");
    assert_string_equal(jstr(r, "boto3"), "ImportError");
    assert_string_equal(jstr(r, "cryptography"), "ImportError");
    assert_string_equal(jstr(r, "vendored"), "vendored-ok");
    if (cJSON_GetArraySize(cJSON_GetObjectItem(r, "present")) != 0 ||
        cJSON_GetArraySize(cJSON_GetObjectItem(r, "globbed")) != 0)
        fail_msg("host packages visible: %s", jprint(r));
    if (strstr(jprint(cJSON_GetObjectItem(r, "path")), "-packages"))
        fail_msg("sys.path names a packages dir: %s", jprint(r));
}

static void test_node_sees_no_global_modules(void **state)
{
    fixture *f = *state;
    const cJSON *r;

    /* some host module the function must not find: npm -g's, or Debian's own (stock Debian) */
    assert_true(access("/usr/lib/node_modules/npm", F_OK) == 0 ||
                access("/usr/share/nodejs/npm", F_OK) == 0 || access("/usr/share/nodejs/acorn", F_OK) == 0);
    code_dir(f, "app.js",
        "const fs = require('fs');\n"
        "exports.handler = async () => {\n"
        "  const r = { paths: require.resolve.paths('x') };\n"
        "  for (const m of ['npm', 'corepack', '/usr/lib/node_modules/npm', 'bootstrap', 'acorn']) {\n"
        "    try { require(m); r[m] = 'LOADED'; } catch (e) { r[m] = e.code; }\n"
        "  }\n"
        "  const ls = (d) => fs.existsSync(d) ? fs.readdirSync(d) : [];\n"
        "  r.visible = [...ls('/usr/lib/node_modules'), ...ls('/usr/lib/node')];\n"
        "  r.searched = require.resolve.paths('x').filter((d) => d.startsWith('/usr/'));\n"
        "  r.vendored = require('leftpad').pad('x');\n"
        "  return r;\n"
        "};\n",
        "node_modules/leftpad/index.js", "exports.pad = (s) => '  ' + s;\n", NULL);
    r = invoke_ok(f, start(f, "nodejs", "app.handler", 256), "{}");
    assert_string_equal(jstr(r, "npm"), "MODULE_NOT_FOUND");
    assert_string_equal(jstr(r, "corepack"), "MODULE_NOT_FOUND");
    assert_string_equal(jstr(r, "/usr/lib/node_modules/npm"), "MODULE_NOT_FOUND");
    assert_string_equal(jstr(r, "bootstrap"), "MODULE_NOT_FOUND");
    assert_string_equal(jstr(r, "acorn"), "MODULE_NOT_FOUND");
    assert_string_equal(jstr(r, "vendored"), "  x");
    if (cJSON_GetArraySize(cJSON_GetObjectItem(r, "visible")) != 0 ||
        cJSON_GetArraySize(cJSON_GetObjectItem(r, "searched")) != 0)
        fail_msg("global node modules visible: %s", jprint(r));
}

/* ------------------------------------------------------------------ cpu */

static void test_cpu_quota_formula(void **state)
{
    (void)state;
    assert_int_equal(sandbox_cpu_quota_us(1769), SANDBOX_CPU_PERIOD_US);
    assert_int_equal(sandbox_cpu_quota_us(3538), 2 * SANDBOX_CPU_PERIOD_US);
    assert_int_equal(sandbox_cpu_quota_us(128), 7235);     /* 0.072 vCPU */
    assert_int_equal(sandbox_cpu_quota_us(64), 7235);      /* the floor */
    assert_true(sandbox_cpu_quota_us(64) >= 1000);         /* the kernel refuses a quota under 1 ms */
    assert_int_equal(sandbox_cpu_quota_us(1024), 57885);
}

/* A v1 cgroup file of the instance (its init's cgroup, as the host sees it). */
static int64_t instance_cg_value(sandbox_instance *in, const char *file, const char *key)
{
    char path[512], line[512], cg[256] = "";
    FILE *fh;
    int64_t v = -1;

    snprintf(path, sizeof(path), "/proc/%d/cgroup", sandbox_pid(in));
    assert_non_null(fh = fopen(path, "r"));
    while (fgets(line, sizeof(line), fh))
        if (sscanf(line, "%*d:cpu,cpuacct:%255s", cg) == 1 || sscanf(line, "%*d:cpu:%255s", cg) == 1)
            break;
    fclose(fh);
    assert_true(cg[0] == '/');
    snprintf(path, sizeof(path), "/sys/fs/cgroup/cpu%s/%s", cg, file);
    assert_non_null(fh = fopen(path, "r"));
    while (fgets(line, sizeof(line), fh)) {
        size_t n = strlen(key);
        if (!key[0])
            v = strtoll(line, NULL, 10);
        else if (strncmp(line, key, n) == 0 && line[n] == ' ')
            v = strtoll(line + n + 1, NULL, 10);
    }
    fclose(fh);
    return v;
}

/* CPU time over ~1 s of wall clock of a busy loop: about memory_mb/1769 of a core. */
static void test_cpu_share_follows_memory(void **state)
{
    fixture *f = *state;
    static const char burn[] =
        "import time\n"
        "def handler(event, context):\n"
        "    t0 = time.monotonic(); c0 = time.process_time(); x = 0\n"
        "    while time.monotonic() - t0 < event['secs']:\n"
        "        for i in range(2000):\n            x += i\n"
        "    return {'cpu': time.process_time() - c0, 'wall': time.monotonic() - t0}\n";
    sandbox_instance *small, *big;
    const cJSON *r;
    double small_share, big_share;

    code_dir(f, "burn.py", burn, NULL);
    small = start(f, "python3", "burn.handler", 128);
    big = start(f, "python3", "burn.handler", 1769);
    assert_int_equal(instance_cg_value(small, "cpu.cfs_period_us", ""), SANDBOX_CPU_PERIOD_US);
    assert_int_equal(instance_cg_value(small, "cpu.cfs_quota_us", ""), 7235);
    assert_int_equal(instance_cg_value(big, "cpu.cfs_quota_us", ""), 100000);
    /* quiet periods' savings carry over, up to one period's quota (docs/latency.md) */
    assert_int_equal(instance_cg_value(small, "cpu.cfs_burst_us", ""), 7235);
    assert_int_equal(instance_cg_value(big, "cpu.cfs_burst_us", ""), 100000);
    /* their parent weighs two tasks against the host's (one per live instance) */
    assert_int_equal(instance_cg_value(big, "../cpu.shares", ""), 2048);
    r = invoke_ok(f, small, "{\"secs\": 1.5}");
    small_share = jnum(r, "cpu") / jnum(r, "wall");
    r = invoke_ok(f, big, "{\"secs\": 1.5}");
    big_share = jnum(r, "cpu") / jnum(r, "wall");
    fprintf(stderr, "cpu share: 128 MB %.3f, 1769 MB %.3f (of one core)\n", small_share, big_share);
    /* 0.072 expected; the kernel's 5 ms bandwidth slices and a noisy host blur it */
    assert_true(small_share > 0.01 && small_share < 0.2);
    assert_true(instance_cg_value(small, "cpu.stat", "nr_throttled") > 3);
    /* 1.0 expected, never throttled: a single thread cannot use more than its one core; other
     * work on the 2 cores (load averages of 15 were seen) may take much of it */
    assert_true(big_share > 0.25 && big_share < 1.15);
    assert_true(instance_cg_value(big, "cpu.stat", "nr_throttled") <= 2);
    assert_true(big_share > 2 * small_share);
}

/* Without a cpu cgroup the probe says so and functions still run (unlimited). */
static void test_cpu_fallback_reported(void **state)
{
    fixture *f = *state;
    char report[4096];
    const cJSON *r;

    assert_int_equal(sandbox_init_ex("minilambda-tight-test", SANDBOX_F_CGROUP_CPU, report,
                                     sizeof(report)), ML_OK);
    assert_non_null(strstr(report, "NO cpu cgroup: no CPU limit"));
    assert_int_equal(sandbox_features(), SANDBOX_F_ALL & ~SANDBOX_F_CGROUP_CPU);
    code_dir(f, "ok.py", "def handler(event, context):\n    return {'ok': True}\n", NULL);
    r = invoke_ok(f, start(f, "python3", "ok.handler", 128), "{}");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
    sandbox_destroy(f->inst[--f->ninst]);
    assert_int_equal(sandbox_init("minilambda-tight-test", report, sizeof(report)), ML_OK);
    assert_int_equal(sandbox_features(), SANDBOX_F_ALL);
    assert_non_null(strstr(report, "cgroup v1 cpu at "));
}

/* ------------------------------------------------------------------ seccomp */

/* x86_64 numbers: calls outside the allow-list, made raw through ctypes so no library wrapper
 * stands in between. Those the old deny-list named, and ones it did not (vhangup, mbind,
 * personality, setxattr, msgget, fanotify_init, memfd_secret, landlock). */
static const char seccomp_fn[] =
    "import ctypes, errno, os, socket\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "CALLS = {'ptrace': 101, 'keyctl': 250, 'add_key': 248, 'bpf': 321, 'userfaultfd': 323,\n"
    "         'mount': 165, 'unshare': 272, 'perf_event_open': 298, 'io_uring_setup': 425,\n"
    "         'setns': 308, 'kexec_load': 246, 'init_module': 175, 'open_by_handle_at': 304,\n"
    "         'pivot_root': 155, 'process_vm_readv': 310, 'vhangup': 153, 'mbind': 237,\n"
    "         'personality': 135, 'setxattr': 188, 'msgget': 68, 'fanotify_init': 300,\n"
    "         'memfd_secret': 447, 'landlock_create_ruleset': 444, 'setuid': 105,\n"
    "         'clone3': 435}\n"
    "def handler(event, context):\n"
    "    res = {}\n"
    "    for name, nr in CALLS.items():\n"
    "        ctypes.set_errno(0)\n"
    "        r = libc.syscall(nr, 0, 0, 0, 0, 0)\n"
    "        res[name] = 'ALLOWED' if r >= 0 else errno.errorcode.get(ctypes.get_errno(), '?')\n"
    "    for fam in ('AF_INET', 'AF_INET6', 'AF_PACKET', 'AF_ALG', 'AF_VSOCK', 'AF_UNIX'):\n"
    "        try:\n"
    "            socket.socket(getattr(socket, fam), socket.SOCK_DGRAM if fam != 'AF_ALG' else socket.SOCK_SEQPACKET).close()\n"
    "            res[fam] = 'ALLOWED'\n"
    "        except OSError as e:\n"
    "            res[fam] = errno.errorcode.get(e.errno, '?')\n"
    "    # what stays allowed: threads, a subprocess, files in /tmp, a fifo, getrandom\n"
    "    import subprocess, threading\n"
    "    t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
    "    res['subprocess'] = subprocess.run(['/bin/sh', '-c', 'echo ok'], capture_output=True).stdout.decode().strip()\n"
    "    os.mkfifo('/tmp/fifo'); os.rename('/tmp/fifo', '/tmp/fifo2'); os.unlink('/tmp/fifo2')\n"
    "    res['random'] = len(os.getrandom(8))\n"
    "    return res\n";

static void test_seccomp_allow_list(void **state)
{
    fixture *f = *state;
    static const char *const eperm[] = { "ptrace", "keyctl", "add_key", "bpf", "userfaultfd",
        "mount", "unshare", "perf_event_open", "setns", "kexec_load", "init_module",
        "open_by_handle_at", "pivot_root", "process_vm_readv", "vhangup", "mbind", "personality",
        "setxattr", "msgget", "fanotify_init", "memfd_secret", "landlock_create_ruleset", "setuid",
        "AF_PACKET", "AF_ALG", "AF_VSOCK" };
    const cJSON *r;

#if !defined(__x86_64__)
    skip();   /* the function names x86_64 syscall numbers */
#endif
    code_dir(f, "sc.py", seccomp_fn, NULL);
    r = invoke_ok(f, start(f, "python3", "sc.handler", 128), "{}");
    for (size_t i = 0; i < sizeof(eperm) / sizeof(eperm[0]); i++)
        if (strcmp(jstr(r, eperm[i]), "EPERM") != 0)
            fail_msg("%s: %s, want EPERM (%s)", eperm[i], jstr(r, eperm[i]), jprint(r));
    assert_string_equal(jstr(r, "io_uring_setup"), "ENOSYS");
    assert_string_equal(jstr(r, "clone3"), "ENOSYS");
    assert_string_equal(jstr(r, "AF_INET"), "EACCES");    /* no network for this function */
    assert_string_equal(jstr(r, "AF_INET6"), "EACCES");
    assert_string_equal(jstr(r, "AF_UNIX"), "ALLOWED");
    assert_string_equal(jstr(r, "subprocess"), "ok");
    assert_int_equal((int)jnum(r, "random"), 8);
}

/* The container's profile (docker-compose, k8s) stacks under the instances' filter: it must
 * not deny what the allow-list grants, or functions would fail only when containerised. */
static void test_seccomp_container_profile_consistent(void **state)
{
    const char *root = getenv("ML_ROOT");
    char path[1024];
    FILE *fh;
    static char text[1 << 16];
    size_t len, n;
    cJSON *doc, *rule, *name;

    (void)state;
    snprintf(path, sizeof(path), "%s/infrastructure/docker/executor-seccomp.json", root ? root : ".");
    assert_non_null(fh = fopen(path, "r"));
    len = fread(text, 1, sizeof(text) - 1, fh);
    fclose(fh);
    text[len] = '\0';
    assert_non_null(doc = cJSON_Parse(text));
    cJSON_ArrayForEach(rule, cJSON_GetObjectItem(doc, "syscalls")) {
        const char *action = cJSON_GetStringValue(cJSON_GetObjectItem(rule, "action"));
        if (!action || strcmp(action, "SCMP_ACT_ALLOW") == 0)
            continue;
        cJSON_ArrayForEach(name, cJSON_GetObjectItem(rule, "names")) {
            for (int extra = 0; extra < 2; extra++) {
                const char *const *list = sandbox_seccomp_allowlist(extra, &n);
                for (size_t i = 0; i < n; i++)
                    if (strcmp(list[i], name->valuestring) == 0)
                        fail_msg("%s is allowed to functions but denied to the container", list[i]);
            }
        }
    }
    cJSON_Delete(doc);
}

int main(void)
{
    const char *root = getenv("ML_ROOT");
    char cwd[512], repo_rt[1024], cache[] = "/tmp/ml-tight-runtimes-XXXXXX", err[512] = "", rm[128];
    artifacts a = { 0 };
    int rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_python_sees_stdlib_and_own_code_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_sees_no_global_modules, setup, teardown),
        cmocka_unit_test(test_cpu_quota_formula),
        cmocka_unit_test_setup_teardown(test_cpu_share_follows_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cpu_fallback_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seccomp_allow_list, setup, teardown),
        cmocka_unit_test(test_seccomp_container_profile_consistent),
    };

    ml_log_init("test_sandbox_tight", ML_LOG_WARN);
    if (!root)
        root = getcwd(cwd, sizeof(cwd));
    snprintf(repo_rt, sizeof(repo_rt), "%s/services/lambda-executor/runtimes", root ? root : ".");
    if (!mkdtemp(cache) || artifacts_init(&a, cache) != ML_OK ||
        artifacts_stage_runtimes(&a, repo_rt, g_runtimes, sizeof(g_runtimes), err, sizeof(err)) != ML_OK) {
        fprintf(stderr, "cannot stage the runtimes: %s\n", err);
        return 1;
    }
    if (geteuid() == 0 && sandbox_init("minilambda-tight-test", g_report, sizeof(g_report)) != ML_OK)
        fprintf(stderr, "sandbox_init failed: %s\n", g_report);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(rm, sizeof(rm), "rm -rf '%s'", cache);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", cache);
    return rc;
}
