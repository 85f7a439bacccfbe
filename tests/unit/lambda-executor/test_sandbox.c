/* test_sandbox.c — real sandboxed instances (python3, nodejs, provided) started by
 * sandbox_start, hostile functions that must stay contained, and the function log captured
 * from them (docs/logs.md).
 *
 * Needs root and namespaces/cgroups/seccomp (the machine and CI run as root): without them
 * every test FAILS in its setup — it never skips. Each test writes a small code dir (what the
 * executor extracts from an artifact) into a temp dir, starts instances from it, and the
 * teardown destroys them and checks no process of their uids survived.
 * Runs from the repository root or with ML_ROOT set (tests/run.sh sets it). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <cJSON.h>

#include "artifacts.h"
#include "fnlog-t.h"
#include "log.h"
#include "sandbox.h"

#define SECRET_VALUE "s3cr3t-executor-value"
#define MAX_DIRS 4
#define MAX_INST 4

static char g_runtimes[1024];
static char g_report[4096];

typedef struct fixture {
    char dirs[MAX_DIRS][64];
    int ndirs;
    sandbox_instance *inst[MAX_INST];
    unsigned uids[MAX_INST];
    int ninst;
    sandbox_result res;
    cJSON *json;
} fixture;

/* ------------------------------------------------------------------ helpers */

/* Live processes (thread-group leaders, zombies not counted: they hold nothing but a pid
 * until whoever inherited them reaps them) whose real uid is uid, from the host's /proc. */
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
        if ((u = strstr(buf, "\nUid:\t")) && strtoul(u + 6, NULL, 10) == uid &&
            !strstr(buf, "\nState:\tZ"))
            n++;
    }
    closedir(d);
    return n;
}

static int64_t self_rss_kb(void)
{
    char buf[4096];
    FILE *f = fopen("/proc/self/status", "r");
    size_t got;
    const char *k;

    if (!f)
        return -1;
    got = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[got] = '\0';
    k = strstr(buf, "VmRSS:");
    return k ? strtoll(k + 6, NULL, 10) : -1;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    size_t n = strlen(text);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* A new code dir (0755) holding name/content pairs, NULL-terminated; "bootstrap" is 0755. */
static const char *code_dir(fixture *f, ...)
{
    char *dir;
    const char *name;
    va_list ap;

    assert_true(f->ndirs < MAX_DIRS);
    dir = f->dirs[f->ndirs++];
    snprintf(dir, sizeof(f->dirs[0]), "/tmp/test_sandbox_XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chmod(dir, 0755), 0);
    va_start(ap, f);
    while ((name = va_arg(ap, const char *))) {
        const char *content = va_arg(ap, const char *);
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        write_text(path, content, strcmp(name, "bootstrap") == 0 ? 0755 : 0644);
    }
    va_end(ap);
    return dir;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        char path[512];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static sandbox_spec spec_for(const char *runtime, const char *handler, const char *dir)
{
    sandbox_spec s = { .runtime = runtime, .handler = handler, .code_dir = dir,
                       .runtimes_dir = g_runtimes, .function_name = "testfn",
                       .function_version = "7", .memory_mb = 128, .timeout_s = 5,
                       .pids_max = 64 };
    return s;
}

/* Starts an instance the teardown will destroy; fails the test with the error otherwise. */
static sandbox_instance *start_spec(fixture *f, const sandbox_spec *s)
{
    char err[1024] = "";
    sandbox_instance *in = NULL;

    assert_true(f->ninst < MAX_INST);
    if (sandbox_start(s, &in, err, sizeof(err)) != ML_OK)
        fail_msg("sandbox_start(%s %s): %s", s->runtime, s->handler, err);
    f->uids[f->ninst] = sandbox_uid(in);
    f->inst[f->ninst++] = in;
    return in;
}

static sandbox_instance *start(fixture *f, const char *runtime, const char *handler, const char *dir)
{
    sandbox_spec s = spec_for(runtime, handler, dir);

    return start_spec(f, &s);
}

/* Invokes with a deadline timeout_ms from now; the result stays in f->res (and f->json when
 * the payload is JSON) until the next call or the teardown. */
static sandbox_status invoke(fixture *f, sandbox_instance *in, const char *event, int64_t timeout_ms)
{
    sandbox_result_free(&f->res);
    cJSON_Delete(f->json);
    f->json = NULL;
    assert_int_equal(sandbox_invoke(in, "inv-0001", event, strlen(event), ml_now_ms() + timeout_ms,
                                    1u << 20, &f->res), ML_OK);
    f->json = cJSON_Parse(ml_buf_cstr(&f->res.payload));
    return f->res.status;
}

/* Compact JSON of o in a static buffer (valid until the next call). */
static const char *jprint(const cJSON *o)
{
    static char buf[8192];

    if (!cJSON_PrintPreallocated((cJSON *)o, buf, sizeof(buf), 0))
        ml_strlcpy(buf, "<unprintable>", sizeof(buf));
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

static void expect_ok(fixture *f)
{
    if (f->res.status != SB_OK)
        fail_msg("status %d payload %s log %s", f->res.status, ml_buf_cstr(&f->res.payload),
                 ml_buf_cstr(&f->res.log_tail));
    assert_non_null(f->json);
}

/* After a timeout/crash/OOM: the instance is dead and none of its processes remain. */
static void expect_gone(fixture *f, sandbox_instance *in, unsigned uid)
{
    assert_false(sandbox_alive(in));
    assert_int_equal(kill(sandbox_pid(in), 0), -1);
    assert_int_equal(errno, ESRCH);
    assert_int_equal(count_uid_procs(uid), 0);
    (void)f;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    /* Loud failure, never a skip: these tests are the proof of isolation. */
    if (!f || geteuid() != 0) {
        fprintf(stderr, "test_sandbox needs root (namespaces, cgroups, uid switching)\n");
        free(f);
        return -1;
    }
    if (sandbox_features() != SANDBOX_F_ALL) {
        fprintf(stderr, "full isolation unavailable: %s\n", g_report);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    int leftover = 0;

    for (int i = 0; i < f->ninst; i++) {
        sandbox_destroy(f->inst[i]);
        leftover += count_uid_procs(f->uids[i]);
    }
    for (int i = 0; i < f->ndirs; i++)
        rm_dir(f->dirs[i]);
    sandbox_result_free(&f->res);
    cJSON_Delete(f->json);
    free(f);
    if (leftover) {
        fprintf(stderr, "%d processes of destroyed instances remain\n", leftover);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ functions */

static void test_init_report(void **state)
{
    (void)state;
    assert_int_equal(sandbox_features(), SANDBOX_F_ALL);
    assert_non_null(strstr(g_report, "namespaces pid,mnt,net,ipc,uts,cgroup"));
    assert_non_null(strstr(g_report, "seccomp on"));
    assert_null(strstr(g_report, "FALLBACK"));
}

static void test_python_hello(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "app.py",
                               "def handler(event, context):\n"
                               "    return {'hello': event['name'], 'n': [1, 2.5, None, True]}\n",
                               NULL);
    sandbox_instance *in = start(f, "python3", "app.handler", dir);

    assert_int_equal(invoke(f, in, "{\"name\":\"world\"}", 5000), SB_OK);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "{\"hello\":\"world\",\"n\":[1,2.5,null,true]}");
    assert_true(f->res.max_memory_bytes > 1 << 20);
    assert_true(f->res.duration_ms >= 0 && f->res.duration_ms < 1000);
    assert_true(sandbox_alive(in));
}

static void test_python_context_and_env(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "ctx.py",
        "import os\n"
        "def handler(event, context):\n"
        "    return {'function_name': context.function_name,\n"
        "            'function_version': context.function_version,\n"
        "            'invocation_id': context.invocation_id,\n"
        "            'memory_limit_in_mb': context.memory_limit_in_mb,\n"
        "            'remaining': context.get_remaining_time_in_millis(),\n"
        "            'event': event, 'env_name': os.environ.get('AWS_LAMBDA_FUNCTION_NAME'),\n"
        "            'greeting': os.environ.get('GREETING'), 'cwd': os.getcwd(),\n"
        "            'uid': os.getuid(), 'hostname': os.uname().nodename,\n"
        "            'handler_env': os.environ.get('_HANDLER')}\n", NULL);
    static const char *const env[] = { "GREETING=hi there", "AWS_LAMBDA_FUNCTION_NAME=spoofed", NULL };
    sandbox_spec s = spec_for("python3", "ctx.handler", dir);
    sandbox_instance *in;

    s.function_name = "ctxfn";
    s.env = env;
    in = start_spec(f, &s);
    assert_int_equal(invoke(f, in, "[1,\"two\"]", 3000), SB_OK);
    expect_ok(f);
    assert_string_equal(jstr(f->json, "function_name"), "ctxfn");
    assert_string_equal(jstr(f->json, "function_version"), "7");
    assert_string_equal(jstr(f->json, "invocation_id"), "inv-0001");
    assert_int_equal((int)jnum(f->json, "memory_limit_in_mb"), 128);
    assert_true(jnum(f->json, "remaining") > 2000 && jnum(f->json, "remaining") <= 3000);
    assert_string_equal(jstr(f->json, "env_name"), "ctxfn");     /* reserved: not overridable */
    assert_string_equal(jstr(f->json, "greeting"), "hi there");
    assert_string_equal(jstr(f->json, "cwd"), "/var/task");
    assert_string_equal(jstr(f->json, "hostname"), "minilambda");
    assert_string_equal(jstr(f->json, "handler_env"), "ctx.handler");
    assert_int_equal((unsigned)jnum(f->json, "uid"), sandbox_uid(in));
    assert_true(sandbox_uid(in) >= 1000000);
    assert_string_equal(jprint(cJSON_GetObjectItem(f->json, "event")), "[1,\"two\"]");
}

static void test_nodejs_async_and_plain(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "index.js",
        "exports.asyncHandler = async (event, context) => {\n"
        "  await new Promise((r) => setTimeout(r, 5));\n"
        "  return { hello: event.name, fn: context.functionName, id: context.invocationId,\n"
        "           mem: context.memoryLimitInMB, left: context.getRemainingTimeInMillis() };\n"
        "};\n"
        "exports.plainHandler = (event, context) => ({ plain: true, v: context.functionVersion });\n"
        "exports.callbackHandler = (event, context, cb) => { setTimeout(() => cb(null, 'cb'), 1); };\n",
        NULL);
    sandbox_instance *a = start(f, "nodejs", "index.asyncHandler", dir);
    sandbox_instance *p = start(f, "nodejs", "index.plainHandler", dir);
    sandbox_instance *c = start(f, "nodejs", "index.callbackHandler", dir);

    assert_int_equal(invoke(f, a, "{\"name\":\"node\"}", 3000), SB_OK);
    assert_string_equal(jstr(f->json, "hello"), "node");
    assert_string_equal(jstr(f->json, "fn"), "testfn");
    assert_string_equal(jstr(f->json, "id"), "inv-0001");
    assert_string_equal(jstr(f->json, "mem"), "128");
    assert_true(jnum(f->json, "left") > 1000 && jnum(f->json, "left") <= 3000);
    assert_int_equal(invoke(f, p, "{}", 3000), SB_OK);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "{\"plain\":true,\"v\":\"7\"}");
    assert_int_equal(invoke(f, c, "null", 3000), SB_OK);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "\"cb\"");
}

/* The shell bootstrap documented in runtimes/provided/README.md, run verbatim. */
static char *readme_bootstrap(void)
{
    char path[1200], *text, *start, *end;
    FILE *fp;
    long n;

    snprintf(path, sizeof(path), "%s/provided/README.md", g_runtimes);
    fp = fopen(path, "r");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    rewind(fp);
    text = calloc(1, (size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    start = strstr(text, "```sh\n");
    assert_non_null(start);
    start += strlen("```sh\n");
    end = strstr(start, "\n```");
    assert_non_null(end);
    end[1] = '\0';
    memmove(text, start, strlen(start) + 1);
    return text;
}

static void test_provided_hello(void **state)
{
    fixture *f = *state;
    char *script = readme_bootstrap();
    const char *dir = code_dir(f, "bootstrap", script, NULL);
    sandbox_spec s = spec_for("provided", "anything", dir);
    sandbox_instance *in;

    free(script);
    s.function_name = "prov";
    in = start_spec(f, &s);
    assert_int_equal(invoke(f, in, "{\"x\":1}", 5000), SB_OK);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "{\"echo\":{\"x\":1},\"function\":\"prov\"}");
    assert_non_null(strstr(ml_buf_cstr(&f->res.log_tail), "invocation: {\"type\":\"invoke\""));
    assert_int_equal(invoke(f, in, "[2]", 5000), SB_OK);   /* warm: the loop continues */
    assert_string_equal(ml_buf_cstr(&f->res.payload), "{\"echo\":[2],\"function\":\"prov\"}");
}

static void test_output_goes_to_log(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f,
        "p.py", "import sys\nprint('LOADING-MODULE')\n"
                "def handler(event, context):\n"
                "    print('PRINTED-STDOUT')\n"
                "    print('PRINTED-STDERR', file=sys.stderr)\n"
                "    sys.stdout.write('partial-no-newline')\n"
                "    return 'result'\n",
        "n.js", "exports.h = async () => { console.log('NODE-LOG'); console.error('NODE-ERR');"
                " process.stdout.write('raw'); return 'result'; };\n", NULL);
    sandbox_instance *py = start(f, "python3", "p.handler", dir);
    sandbox_instance *js = start(f, "nodejs", "n.h", dir);
    const char *log;

    assert_int_equal(invoke(f, py, "{}", 3000), SB_OK);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "\"result\"");
    log = ml_buf_cstr(&f->res.log_tail);
    assert_non_null(strstr(log, "LOADING-MODULE"));   /* init output: the first invocation's */
    assert_non_null(strstr(log, "PRINTED-STDOUT"));
    assert_non_null(strstr(log, "PRINTED-STDERR"));
    assert_non_null(strstr(log, "partial-no-newline"));
    assert_int_equal(invoke(f, py, "{}", 3000), SB_OK);
    assert_null(strstr(ml_buf_cstr(&f->res.log_tail), "LOADING-MODULE"));
    assert_non_null(strstr(ml_buf_cstr(&f->res.log_tail), "PRINTED-STDOUT"));

    assert_int_equal(invoke(f, js, "{}", 3000), SB_OK);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "\"result\"");
    log = ml_buf_cstr(&f->res.log_tail);
    assert_non_null(strstr(log, "NODE-LOG"));
    assert_non_null(strstr(log, "NODE-ERR"));
    assert_non_null(strstr(log, "raw"));
}

static void expect_error(fixture *f, const char *type, const char *msg_part)
{
    const cJSON *trace;

    if (f->res.status != SB_HANDLER_ERROR)
        fail_msg("status %d payload %s", f->res.status, ml_buf_cstr(&f->res.payload));
    assert_non_null(f->json);
    assert_string_equal(jstr(f->json, "errorType"), type);
    assert_non_null(strstr(jstr(f->json, "errorMessage"), msg_part));
    trace = cJSON_GetObjectItemCaseSensitive(f->json, "stackTrace");
    assert_true(cJSON_IsArray(trace));
}

static void test_handler_exception(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f,
        "boom.py", "def inner(x):\n    raise ValueError('bad input %s' % x)\n"
                   "def handler(event, context):\n    return inner(event['v'])\n",
        "boom.js", "function inner() { throw new TypeError('nope from node'); }\n"
                   "exports.handler = async () => inner();\n"
                   "exports.str = async () => { throw 'a string'; };\n", NULL);
    sandbox_instance *py = start(f, "python3", "boom.handler", dir);
    sandbox_instance *js = start(f, "nodejs", "boom.handler", dir);
    sandbox_instance *js2 = start(f, "nodejs", "boom.str", dir);
    const cJSON *trace;

    assert_int_equal(invoke(f, py, "{\"v\":42}", 3000), SB_HANDLER_ERROR);
    expect_error(f, "ValueError", "bad input 42");
    trace = cJSON_GetObjectItemCaseSensitive(f->json, "stackTrace");
    assert_true(cJSON_GetArraySize(trace) >= 2);
    assert_non_null(strstr(cJSON_GetArrayItem(trace, 1)->valuestring, "/var/task/boom.py"));
    assert_non_null(strstr(ml_buf_cstr(&f->res.log_tail), "ValueError"));   /* also logged */
    assert_true(sandbox_alive(py));
    assert_int_equal(invoke(f, py, "{\"v\":1}", 3000), SB_HANDLER_ERROR);   /* still serving */

    assert_int_equal(invoke(f, js, "{}", 3000), SB_HANDLER_ERROR);
    expect_error(f, "TypeError", "nope from node");
    trace = cJSON_GetObjectItemCaseSensitive(f->json, "stackTrace");
    assert_non_null(strstr(cJSON_GetArrayItem(trace, 0)->valuestring, "/var/task/boom.js"));
    assert_int_equal(invoke(f, js2, "{}", 3000), SB_HANDLER_ERROR);
    expect_error(f, "string", "a string");
}

static void test_result_not_serialisable(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f,
        "ns.py", "def handler(event, context):\n"
                 "    return {'ok': 1} if event else object()\n"
                 "def nan(event, context):\n    return float('nan')\n",
        "ns.js", "exports.handler = async (e) => e ? { ok: 1 } : { big: 10n };\n", NULL);
    sandbox_instance *py = start(f, "python3", "ns.handler", dir);
    sandbox_instance *nan = start(f, "python3", "ns.nan", dir);
    sandbox_instance *js = start(f, "nodejs", "ns.handler", dir);

    assert_int_equal(invoke(f, py, "null", 3000), SB_HANDLER_ERROR);
    expect_error(f, "Runtime.MarshalError", "not JSON serializable");
    assert_int_equal(invoke(f, py, "true", 3000), SB_OK);   /* the instance is fine */
    assert_string_equal(ml_buf_cstr(&f->res.payload), "{\"ok\":1}");
    assert_int_equal(invoke(f, nan, "{}", 3000), SB_HANDLER_ERROR);
    expect_error(f, "Runtime.MarshalError", "JSON");
    assert_int_equal(invoke(f, js, "null", 3000), SB_HANDLER_ERROR);
    expect_error(f, "Runtime.MarshalError", "BigInt");
    assert_int_equal(invoke(f, js, "true", 3000), SB_OK);
}

static void test_warm_reuse(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f,
        "w.py", "import os\nloads = 0\nloads += 1\ncalls = 0\n"
                "def handler(event, context):\n    global calls\n    calls += 1\n"
                "    return [loads, calls, os.getpid()]\n",
        "w.js", "let calls = 0;\nexports.h = async () => [++calls, process.pid];\n", NULL);
    sandbox_instance *py = start(f, "python3", "w.handler", dir);
    sandbox_instance *js = start(f, "nodejs", "w.h", dir);
    char want[64];

    for (int i = 1; i <= 3; i++) {
        assert_int_equal(invoke(f, py, "{}", 3000), SB_OK);
        snprintf(want, sizeof(want), "[1,%d,2]", i);   /* loaded once; pid 2 under the init */
        assert_string_equal(ml_buf_cstr(&f->res.payload), want);
        assert_int_equal(invoke(f, js, "{}", 3000), SB_OK);
        snprintf(want, sizeof(want), "[%d,2]", i);
        assert_string_equal(ml_buf_cstr(&f->res.payload), want);
    }
}

static void expect_start_error(fixture *f, const sandbox_spec *s, const char *prefix, const char *part)
{
    char err[1024] = "";
    sandbox_instance *in = NULL;

    (void)f;
    assert_int_equal(sandbox_start(s, &in, err, sizeof(err)), ML_ERR);
    assert_null(in);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, part))
        fail_msg("expected %s ... %s, got: %s", prefix, part, err);
}

static void test_start_errors(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f,
        "ok.py", "def handler(e, c):\n    return 1\n",
        "syntax.py", "def handler(e, c)\n    return 1\n",
        "raises.py", "print('about to fail')\nraise RuntimeError('module init failed')\n",
        "exits.py", "import os\nprint('bye from init', flush=True)\nos._exit(2)\n",
        "slow.py", "import time\ntime.sleep(30)\n",
        "bad.js", "exports.h = async () => { ;;; \n", NULL);
    const char *locked = code_dir(f, "ok.py", "def handler(e, c):\n    return 1\n", NULL);
    static const char *const bad_env[] = { "NO_EQUALS_SIGN", NULL };
    sandbox_spec s = spec_for("python3", "missing.handler", dir);

    expect_start_error(f, &s, "Runtime.ImportModuleError", "No module named 'missing'");
    s.handler = "ok.nothere";
    expect_start_error(f, &s, "Runtime.HandlerNotFound", "nothere");
    s.handler = "syntax.handler";
    expect_start_error(f, &s, "Runtime.UserCodeSyntaxError", "syntax");
    s.handler = "raises.handler";
    expect_start_error(f, &s, "Runtime.InitError", "module init failed");
    s.handler = "exits.handler";
    expect_start_error(f, &s, "Runtime.ExitError", "bye from init");
    s.handler = "slow.handler";
    s.init_timeout_ms = 500;
    expect_start_error(f, &s, "Runtime.InitTimeout", "loading");
    s.init_timeout_ms = 0;
    s.handler = "noperiod";
    expect_start_error(f, &s, "Runtime.MalformedHandlerName", "noperiod");
    s.handler = "ok.handler";
    s.memory_mb = 32;
    expect_start_error(f, &s, "Sandbox.InvalidConfig", "memory_mb");
    s.memory_mb = 128;
    s.env = bad_env;
    expect_start_error(f, &s, "Sandbox.InvalidConfig", "NO_EQUALS_SIGN");
    s.env = NULL;
    assert_int_equal(chmod(locked, 0700), 0);
    s.code_dir = locked;
    expect_start_error(f, &s, "Sandbox.SetupError", "world-readable");
    s = spec_for("nodejs", "bad.h", dir);
    expect_start_error(f, &s, "Runtime.UserCodeSyntaxError", "SyntaxError");
    s = spec_for("provided", "x", dir);
    expect_start_error(f, &s, "Runtime.InvalidEntrypoint", "bootstrap");
}

/* A result larger than max_result is refused without breaking the instance's stream. */
static void test_result_too_large(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "big.py", "def handler(event, context):\n"
                                            "    return 'x' * event\n", NULL);
    sandbox_instance *in = start(f, "python3", "big.handler", dir);

    assert_int_equal(invoke(f, in, "2000000", 5000), SB_HANDLER_ERROR);
    expect_error(f, "Function.ResponseSizeTooLarge", "exceeded maximum");
    assert_int_equal(invoke(f, in, "3", 5000), SB_OK);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "\"xxx\"");
}

/* ------------------------------------------------------------------ hostile functions */

/* Reading another function's files or host secrets (files, /root, the executor's env and
 * fds, host processes). */
static void test_hostile_reads(void **state)
{
    fixture *f = *state;
    const char *other = code_dir(f, "secret.txt", "B-SECRET-CONTENT\n", NULL);
    const char *dir = code_dir(f, "spy.py",
        "import os\n"
        "def attempt(fn):\n"
        "    try:\n        return 'READ:' + repr(fn())[:200]\n"
        "    except Exception as e:\n        return 'DENIED:' + type(e).__name__\n"
        "def scan():\n"
        "    found = []\n"
        "    for d, dirs, files in os.walk('/'):\n"
        "        if d.startswith(('/proc', '/usr', '/dev', '/sys')):\n            dirs[:] = []; continue\n"
        "        for name in files:\n"
        "            try:\n"
        "                with open(os.path.join(d, name), 'rb') as fh:\n"
        "                    if b'B-' + b'SECRET' in fh.read(1 << 20): found.append(os.path.join(d, name))\n"
        "            except OSError:\n                pass\n"
        "    return found\n"
        "def environs():\n"
        "    out = []\n"
        "    for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "        try:\n            out.append(open('/proc/%s/environ' % pid, 'rb').read())\n"
        "        except OSError:\n            pass\n"
        "    return b'\\n'.join(out)\n"
        "def handler(event, context):\n"
        "    fds = sorted(int(x) for x in os.listdir('/proc/self/fd'))\n"
        "    leaked = [fd for fd in fds if fd > 3 and os.path.exists('/proc/self/fd/%d' % fd)\n"
        "              and 'FD-SECRET' in attempt(lambda: os.pread(fd, 100, 0).decode())]\n"
        "    return {'other_file': attempt(lambda: open(event['other'] + '/secret.txt').read()),\n"
        "            'other_dir': attempt(lambda: os.listdir(event['other'])),\n"
        "            'found': scan(),\n"
        "            'shadow': attempt(lambda: open('/etc/shadow').read()),\n"
        "            'root_home': attempt(lambda: os.listdir('/root')),\n"
        "            'env_secret': 'MINILAMBDA' in repr(dict(os.environ)) or '" SECRET_VALUE "' in repr(dict(os.environ)),\n"
        "            'proc_env_secret': b'" SECRET_VALUE "' in environs() or b'MINILAMBDA' in environs(),\n"
        "            'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),\n"
        "            'init': open('/proc/1/cmdline', 'rb').read().split(b'\\0')[0].decode(),\n"
        "            'leaked_fds': leaked, 'sys': os.path.exists('/sys/fs/cgroup'),\n"
        "            'root_listing': sorted(os.listdir('/'))}\n", NULL);
    char event[256], tmpl[] = "/tmp/test_sandbox_fd_XXXXXX";
    int secret_fd = mkstemp(tmpl);   /* an executor fd without O_CLOEXEC */
    sandbox_instance *in;
    static const char *const allowed_top[] = { "bin", "sbin", "lib", "lib32", "lib64", "libx32",
                                               "dev", "etc", "proc", "tmp", "usr", "var" };
    const cJSON *pids, *found, *entry;

    assert_true(secret_fd >= 0);
    assert_int_equal(write(secret_fd, "FD-SECRET", 9), 9);
    in = start(f, "python3", "spy.handler", dir);
    close(secret_fd);
    unlink(tmpl);
    snprintf(event, sizeof(event), "{\"other\":\"%s\"}", other);
    assert_int_equal(invoke(f, in, event, 20000), SB_OK);
    expect_ok(f);
    assert_string_equal(jstr(f->json, "other_file"), "DENIED:FileNotFoundError");
    assert_string_equal(jstr(f->json, "other_dir"), "DENIED:FileNotFoundError");
    found = cJSON_GetObjectItem(f->json, "found");
    if (cJSON_GetArraySize(found) != 0)
        fail_msg("another function's secret is readable at %s", jprint(found));
    assert_string_equal(jstr(f->json, "shadow"), "DENIED:FileNotFoundError");
    assert_string_equal(jstr(f->json, "root_home"), "DENIED:FileNotFoundError");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(f->json, "env_secret")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(f->json, "proc_env_secret")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(f->json, "leaked_fds")), 0);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(f->json, "sys")));
    /* its own pid namespace: only the init (sh) and the runtime */
    pids = cJSON_GetObjectItem(f->json, "pids");
    assert_int_equal(cJSON_GetArraySize(pids), 2);
    assert_string_equal(jstr(f->json, "init"), "/bin/sh");
    /* a minimal root: no /root, /home, /sys, /run, /work, /tmp of the host ... */
    cJSON_ArrayForEach(entry, cJSON_GetObjectItem(f->json, "root_listing")) {
        bool ok = false;
        for (size_t i = 0; i < ML_ARRAY_LEN(allowed_top); i++)
            ok = ok || strcmp(entry->valuestring, allowed_top[i]) == 0;
        if (!ok)
            fail_msg("unexpected /%s in the sandbox root", entry->valuestring);
    }
}

/* Writing outside /tmp fails (read-only root, code and runtime); /tmp works and is private. */
static void test_hostile_writes(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "w.py",
        "import errno\n"
        "def handler(event, context):\n"
        "    res = {}\n"
        "    for p in event['paths']:\n"
        "        try:\n"
        "            with open(p, 'a') as fh:\n                fh.write('x')\n"
        "            res[p] = 'WROTE'\n"
        "        except OSError as e:\n"
        "            res[p] = errno.errorcode.get(e.errno, str(e.errno))\n"
        "    with open('/tmp/ok.txt', 'w') as fh:\n        fh.write('fine')\n"
        "    res['/tmp/ok.txt'] = open('/tmp/ok.txt').read()\n"
        "    return res\n", NULL);
    static const char *const paths[] = { "/var/task/new.txt", "/var/task/w.py", "/new.txt",
                                         "/etc/passwd", "/etc/new", "/usr/new.txt",
                                         "/usr/bin/python3", "/var/runtime/bootstrap.py",
                                         "/dev/new", "/proc/sys/kernel/hostname" };
    char path[300];
    ml_buf event = { 0 };
    sandbox_instance *in = start(f, "python3", "w.handler", dir);
    struct stat st;

    ml_buf_append_str(&event, "{\"paths\":[");
    for (size_t i = 0; i < ML_ARRAY_LEN(paths); i++)
        ml_buf_printf(&event, "%s\"%s\"", i ? "," : "", paths[i]);
    ml_buf_append_str(&event, "]}");
    assert_int_equal(invoke(f, in, ml_buf_cstr(&event), 5000), SB_OK);
    ml_buf_free(&event);
    expect_ok(f);
    for (size_t i = 0; i < ML_ARRAY_LEN(paths); i++) {
        const char *r = jstr(f->json, paths[i]);
        if (strcmp(r, "EROFS") && strcmp(r, "EACCES") && strcmp(r, "EPERM"))
            fail_msg("write to %s: %s", paths[i], r);
    }
    assert_string_equal(jstr(f->json, "/tmp/ok.txt"), "fine");
    snprintf(path, sizeof(path), "%s/new.txt", dir);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(stat("/tmp/ok.txt", &st), -1);   /* its /tmp is not the host's */
}

typedef struct watch {
    unsigned uid;
    volatile bool stop;
    int max;
} watch;

static void *watch_procs(void *arg)
{
    watch *w = arg;

    while (!w->stop) {
        int n = count_uid_procs(w->uid);
        if (n > w->max)
            w->max = n;
        ml_sleep_ms(20);
    }
    return NULL;
}

/* Forking without bound: pids.max holds, the executor is fine, the timeout kills it all. */
static void test_hostile_fork_bomb(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "bomb.py",
        "import os\n"
        "def handler(event, context):\n"
        "    while True:\n"
        "        try:\n            os.fork()\n"
        "        except OSError:\n            pass\n", NULL);
    sandbox_spec s = spec_for("python3", "bomb.handler", dir);
    sandbox_instance *in;
    watch w = { 0 };
    pthread_t th;
    int status = -1;
    pid_t pid;

    s.pids_max = 32;
    in = start_spec(f, &s);
    w.uid = sandbox_uid(in);
    assert_int_equal(pthread_create(&th, NULL, watch_procs, &w), 0);
    assert_int_equal(invoke(f, in, "{}", 1500), SB_TIMEOUT);
    w.stop = true;
    pthread_join(th, NULL);
    assert_string_equal(jstr(f->json, "errorType"), "TimeoutError");
    assert_true(w.max > 4);          /* it did fork ... */
    assert_true(w.max <= 32);        /* ... never past pids.max */
    assert_true(f->res.pids_exhausted); /* a refused fork is reported (for the kill metric) */
    expect_gone(f, in, w.uid);
    /* the executor can still fork and start sandboxes */
    pid = fork();
    if (pid == 0)
        _exit(7);
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 7);
    s.handler = "bomb.nothere";
    expect_start_error(f, &s, "Runtime.HandlerNotFound", "nothere");
}

/* Allocating past memory_mb: killed by the cgroup, reported as OOM. */
static void test_hostile_memory(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f,
        "hog.py", "def handler(event, context):\n"
                  "    chunks = []\n"
                  "    for i in range(256):\n"
                  "        chunks.append(bytearray(8 << 20))\n"
                  "    return len(chunks)\n",
        "hog.js", "exports.h = async () => { const a = []; for (let i = 0; i < 256; i++)"
                  " a.push(Buffer.alloc(8 << 20, 1)); return a.length; };\n", NULL);
    sandbox_spec s = spec_for("python3", "hog.handler", dir);
    sandbox_instance *py, *js;

    s.memory_mb = 64;
    py = start_spec(f, &s);
    assert_int_equal(invoke(f, py, "{}", 10000), SB_OOM);
    assert_string_equal(jstr(f->json, "errorType"), "Runtime.OutOfMemory");
    assert_non_null(strstr(jstr(f->json, "errorMessage"), "64 MB"));
    assert_true(f->res.max_memory_bytes > (48 << 20));
    assert_true(f->res.max_memory_bytes <= (64 << 20));
    expect_gone(f, py, sandbox_uid(py));

    /* 128 MB is 0.072 vCPU: node's filling and the kernel's reclaim before the OOM kill take
     * ~0.4 s of CPU, ~5.5 s of wall clock */
    s = spec_for("nodejs", "hog.h", dir);
    s.memory_mb = 128;
    s.timeout_s = 30;
    js = start_spec(f, &s);
    assert_int_equal(invoke(f, js, "{}", 30000), SB_OOM);
    expect_gone(f, js, sandbox_uid(js));
}

/* Opening a network connection when not allowed (and it works when allowed). */
static void test_hostile_network(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "net.py",
        "import socket\n"
        "def handler(event, context):\n"
        "    ifaces = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]\n"
        "    try:\n"
        "        s = socket.create_connection(('127.0.0.1', event['port']), timeout=2)\n"
        "        s.sendall(b'hello')\n        s.close()\n"
        "        return {'connect': 'CONNECTED', 'ifaces': ifaces}\n"
        "    except OSError as e:\n"
        "        return {'connect': 'DENIED:%d' % e.errno, 'ifaces': ifaces}\n", NULL);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(addr);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sandbox_spec s = spec_for("python3", "net.handler", dir);
    sandbox_instance *in;
    char event[64];

    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &alen), 0);
    snprintf(event, sizeof(event), "{\"port\":%d}", ntohs(addr.sin_port));

    in = start_spec(f, &s);
    assert_int_equal(invoke(f, in, event, 5000), SB_OK);
    assert_string_equal(jstr(f->json, "connect"), "DENIED:13");   /* seccomp: EACCES */
    assert_string_equal(jprint(cJSON_GetObjectItem(f->json, "ifaces")), "[\"lo\"]");
    assert_int_equal(accept(lfd, NULL, NULL), -1);                 /* nothing arrived */
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);

    s.network = true;   /* the control: the same function reaches it when allowed */
    in = start_spec(f, &s);
    assert_int_equal(invoke(f, in, event, 5000), SB_OK);
    assert_string_equal(jstr(f->json, "connect"), "CONNECTED");
    close(lfd);
}

/* Sleeping past the timeout, with a child process: the whole tree is killed. */
static void test_hostile_timeout(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "sl.py",
        "import subprocess, time\n"
        "def handler(event, context):\n"
        "    subprocess.Popen(['/bin/sleep', '100'])\n"
        "    print('sleeping', flush=True)\n"
        "    time.sleep(100)\n", NULL);
    sandbox_instance *in = start(f, "python3", "sl.handler", dir);
    unsigned uid = sandbox_uid(in);
    int64_t t0 = ml_now_ms();

    assert_int_equal(invoke(f, in, "{}", 1000), SB_TIMEOUT);
    assert_true(ml_now_ms() - t0 >= 1000 && ml_now_ms() - t0 < 3000);
    assert_string_equal(jstr(f->json, "errorType"), "TimeoutError");
    assert_non_null(strstr(jstr(f->json, "errorMessage"), "timed out after 1.00 seconds"));
    assert_non_null(strstr(ml_buf_cstr(&f->res.log_tail), "sleeping"));
    expect_gone(f, in, uid);
    sandbox_result_free(&f->res);
    assert_int_equal(sandbox_invoke(in, "x", "{}", 2, ml_now_ms() + 1000, 1024, &f->res), ML_ERR);
    assert_int_equal(f->res.status, SB_CRASH);
}

/* spec.timeout_s caps a caller's longer deadline. */
static void test_timeout_cap(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "sl.py", "import time\ndef handler(e, c):\n    time.sleep(100)\n", NULL);
    sandbox_spec s = spec_for("python3", "sl.handler", dir);
    sandbox_instance *in;
    int64_t t0;

    s.timeout_s = 1;
    in = start_spec(f, &s);
    t0 = ml_now_ms();
    assert_int_equal(invoke(f, in, "{}", 60000), SB_TIMEOUT);
    assert_true(ml_now_ms() - t0 < 3000);
    assert_non_null(strstr(jstr(f->json, "errorMessage"), "timed out after 1.00 seconds"));
    expect_gone(f, in, sandbox_uid(in));
}

/* A restarted executor kills and removes what a dead one left in its cgroups. */
static void test_stale_cgroups_swept(void **state)
{
    fixture *f = *state;
    const char *at = strstr(g_report, "cgroup v1 pids at ");
    char parent[512], stale[600], procs[700], report[4096];
    pid_t dead, orphan;
    struct stat st;
    int status = 0, fd;
    size_t n;

    (void)f;
    assert_non_null(at);
    at += strlen("cgroup v1 pids at ");
    n = strcspn(at, ";");
    assert_true(n < sizeof(parent));
    memcpy(parent, at, n);
    parent[n] = '\0';
    dead = fork();   /* a pid that is surely not alive: an executor that died */
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    snprintf(stale, sizeof(stale), "%s/i%d-0", parent, (int)dead);
    assert_int_equal(mkdir(stale, 0755), 0);
    orphan = fork();   /* one of its instances, still running */
    if (orphan == 0) {
        pause();
        _exit(0);
    }
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", stale);
    snprintf(report, sizeof(report), "%d", (int)orphan);
    fd = open(procs, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, report, strlen(report)), (ssize_t)strlen(report));
    close(fd);
    assert_int_equal(sandbox_init("minilambda-test", report, sizeof(report)), ML_OK);
    assert_int_equal(waitpid(orphan, &status, 0), orphan);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(stat(stale, &st), -1);
    assert_int_equal(errno, ENOENT);
}

/* Printing megabytes: completes, only the last 4 KiB are kept, the executor's memory stays flat. */
static void test_hostile_output_flood(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "flood.py",
        "def handler(event, context):\n"
        "    line = 'y' * 1023\n"
        "    for i in range(event):\n        print(line)\n"
        "    print('THE-END')\n"
        "    return 'done'\n"
        "def forever(event, context):\n"
        "    while True:\n        print('z' * 4000)\n", NULL);
    /* 64 Ki prints cost ~0.3 s of CPU: at 128 MB (0.072 vCPU) that is past the 5 s cap */
    sandbox_spec s = spec_for("python3", "flood.handler", dir);
    sandbox_instance *in;
    int64_t rss_before, rss_after;
    const char *log;

    s.memory_mb = 1769;
    s.timeout_s = 30;
    in = start_spec(f, &s);
    assert_int_equal(invoke(f, in, "100", 5000), SB_OK);   /* warm up allocations */
    rss_before = self_rss_kb();
    assert_int_equal(invoke(f, in, "65536", 30000), SB_OK);   /* 64 MiB of output */
    rss_after = self_rss_kb();
    assert_string_equal(ml_buf_cstr(&f->res.payload), "\"done\"");
    log = ml_buf_cstr(&f->res.log_tail);
    assert_true(f->res.log_tail.len <= 4096 && f->res.log_tail.len > 4000);
    assert_string_equal(log + f->res.log_tail.len - 8, "THE-END\n");
    assert_true(rss_after - rss_before < 8 * 1024);

    /* printing without end never holds the executor past the deadline */
    in = start(f, "python3", "flood.forever", dir);
    rss_before = ml_now_ms();
    assert_int_equal(invoke(f, in, "{}", 1000), SB_TIMEOUT);
    assert_true(ml_now_ms() - rss_before < 2500);
    assert_true(f->res.log_tail.len == 4096);
}

/* Crashing (exit, signal) gives Runtime.ExitError, not OOM, and leaves nothing behind. */
static void test_crash(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f,
        "c.py", "import os, signal\n"
                "def handler(event, context):\n"
                "    print('going down', flush=True)\n"
                "    if event == 'kill':\n        os.kill(os.getpid(), signal.SIGKILL)\n"
                "    if event == 'segv':\n        import ctypes\n        ctypes.string_at(0)\n"
                "    os._exit(3)\n",
        "c.js", "exports.h = async () => { process.exit(5); };\n", NULL);
    sandbox_instance *a = start(f, "python3", "c.handler", dir);
    sandbox_instance *b = start(f, "python3", "c.handler", dir);
    sandbox_instance *c = start(f, "nodejs", "c.h", dir);
    sandbox_instance *d = start(f, "python3", "c.handler", dir);

    assert_int_equal(invoke(f, a, "\"exit\"", 5000), SB_CRASH);
    assert_string_equal(jstr(f->json, "errorType"), "Runtime.ExitError");
    assert_non_null(strstr(jstr(f->json, "errorMessage"), "exit status 3"));
    assert_non_null(strstr(ml_buf_cstr(&f->res.log_tail), "going down"));
    expect_gone(f, a, sandbox_uid(a));
    assert_int_equal(invoke(f, b, "\"kill\"", 5000), SB_CRASH);
    assert_non_null(strstr(jstr(f->json, "errorMessage"), "signal: killed"));
    expect_gone(f, b, sandbox_uid(b));
    assert_int_equal(invoke(f, c, "{}", 5000), SB_CRASH);
    assert_non_null(strstr(jstr(f->json, "errorMessage"), "exit status 5"));
    expect_gone(f, c, sandbox_uid(c));
    assert_int_equal(invoke(f, d, "\"segv\"", 5000), SB_CRASH);
    assert_non_null(strstr(jstr(f->json, "errorMessage"), "signal: Segmentation fault"));
    expect_gone(f, d, sandbox_uid(d));
}

/* No capabilities, no_new_privs, seccomp filtering: namespaces, mount, ptrace, setuid fail. */
static void test_privileges(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "priv.py",
        "import ctypes, os\n"
        "def handler(event, context):\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    res = {}\n"
        "    def call(name, *args):\n"
        "        ctypes.set_errno(0)\n"
        "        r = getattr(libc, name)(*args)\n"
        "        res[name] = 0 if r == 0 else ctypes.get_errno()\n"
        "    call('unshare', 0x10000000)\n"
        "    call('mount', b'none', b'/tmp', b'tmpfs', 0, None)\n"
        "    call('ptrace', 16, 1, None, None)\n"
        "    call('setuid', 0)\n"
        "    call('sethostname', b'x', 1)\n"
        "    status = open('/proc/self/status').read().splitlines()\n"
        "    for key in ('CapEff', 'CapPrm', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp'):\n"
        "        res[key] = [l.split(':')[1].strip() for l in status if l.startswith(key + ':')][0]\n"
        "    return res\n", NULL);
    sandbox_instance *in = start(f, "python3", "priv.handler", dir);

    assert_int_equal(invoke(f, in, "{}", 5000), SB_OK);
    expect_ok(f);
    assert_int_equal((int)jnum(f->json, "unshare"), EPERM);
    assert_int_equal((int)jnum(f->json, "mount"), EPERM);
    assert_int_equal((int)jnum(f->json, "ptrace"), EPERM);
    assert_int_equal((int)jnum(f->json, "setuid"), EPERM);
    assert_int_equal((int)jnum(f->json, "sethostname"), EPERM);
    assert_string_equal(jstr(f->json, "CapEff"), "0000000000000000");
    assert_string_equal(jstr(f->json, "CapPrm"), "0000000000000000");
    assert_string_equal(jstr(f->json, "CapBnd"), "0000000000000000");
    assert_string_equal(jstr(f->json, "CapAmb"), "0000000000000000");
    assert_string_equal(jstr(f->json, "NoNewPrivs"), "1");
    assert_string_equal(jstr(f->json, "Seccomp"), "2");
}

typedef struct par {
    const char *dir;
    sandbox_instance *in;
    char out[600];
} par;

static void *par_start(void *arg)
{
    par *p = arg;
    sandbox_spec s = spec_for("python3", "id.handler", p->dir);
    sandbox_result r;
    char err[512];

    if (sandbox_start(&s, &p->in, err, sizeof(err)) != ML_OK) {
        snprintf(p->out, sizeof(p->out), "start: %s", err);
        return NULL;
    }
    sandbox_invoke(p->in, "par", "{}", 2, ml_now_ms() + 5000, 1024, &r);
    snprintf(p->out, sizeof(p->out), "%d %s", r.status, ml_buf_cstr(&r.payload));
    sandbox_result_free(&r);
    return NULL;
}

/* Starts from several threads at once get distinct uids and work. */
static void test_concurrent_starts(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "id.py", "import os\ndef handler(e, c):\n    return os.getuid()\n", NULL);
    par p[MAX_INST];
    pthread_t th[MAX_INST];

    for (int i = 0; i < MAX_INST; i++) {
        memset(&p[i], 0, sizeof(p[i]));
        p[i].dir = dir;
        assert_int_equal(pthread_create(&th[i], NULL, par_start, &p[i]), 0);
    }
    for (int i = 0; i < MAX_INST; i++) {
        pthread_join(th[i], NULL);
        if (p[i].in) {
            f->uids[f->ninst] = sandbox_uid(p[i].in);
            f->inst[f->ninst++] = p[i].in;
        }
    }
    for (int i = 0; i < MAX_INST; i++) {
        char want[64];
        snprintf(want, sizeof(want), "0 %u", f->uids[i]);
        assert_string_equal(p[i].out, want);
        for (int j = 0; j < i; j++)
            assert_true(f->uids[i] != f->uids[j]);
    }
}

/* Two executors on one host never hand out the same uid (the other one is a forked process
 * with its own sandbox state). */
static void test_uids_unique_across_executors(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "id.py", "import os\ndef handler(e, c):\n    return os.getuid()\n", NULL);
    int up[2], down[2], status = 0;
    unsigned other = 0;
    sandbox_instance *mine;
    pid_t pid;

    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sandbox_spec s = spec_for("python3", "id.handler", dir);
        sandbox_instance *in = NULL;
        char err[512], report[2048], go;
        unsigned uid = 0;
        if (sandbox_init("minilambda-test", report, sizeof(report)) == ML_OK &&
            sandbox_start(&s, &in, err, sizeof(err)) == ML_OK)
            uid = sandbox_uid(in);
        if (write(up[1], &uid, sizeof(uid)) != sizeof(uid) || read(down[0], &go, 1) != 1)
            uid = 0;
        sandbox_destroy(in);
        _exit(uid ? 0 : 1);
    }
    assert_int_equal(read(up[0], &other, sizeof(other)), (ssize_t)sizeof(other));
    mine = start(f, "python3", "id.handler", dir);
    assert_int_equal(write(down[1], "g", 1), 1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(other >= 1000000);
    assert_true(sandbox_uid(mine) != other);
    for (int i = 0; i < 2; i++) {
        close(up[i]);
        close(down[i]);
    }
}

/* What the "executor" child of test_dies_with_executor reports. */
typedef struct death_report {
    int init_pid;
    unsigned uid;
    int alive_after_thread_exit;
} death_report;

typedef struct start_arg {
    sandbox_spec spec;
    sandbox_instance *in;
} start_arg;

static void *start_on_thread(void *arg)
{
    start_arg *a = arg;
    char err[512];

    if (sandbox_start(&a->spec, &a->in, err, sizeof(err)) != ML_OK)
        a->in = NULL;
    return NULL;
}

/* Keeps the instance busy in its handler (an idle runtime would leave on the channel's EOF
 * by itself: only a busy one shows whether the kernel kills it). */
static void *invoke_on_thread(void *arg)
{
    start_arg *a = arg;
    sandbox_result r = { 0 };

    (void)sandbox_invoke(a->in, "inv-busy", "{}", 2, ml_now_ms() + 60000, 1u << 20, &r);
    sandbox_result_free(&r);
    return NULL;
}

/* True once no live (non-zombie) process of uid remains, polling up to ms. */
static bool uid_gone_within(unsigned uid, int64_t ms)
{
    int64_t end = ml_now_ms() + ms;

    while (count_uid_procs(uid) > 0) {
        if (ml_now_ms() > end)
            return false;
        ml_sleep_ms(10);
    }
    return true;
}

/* Sandboxes die with their executor: an instance started on a thread that then exits
 * survives (the clone is made by a long-lived launcher thread), and a kill -9 of the
 * executor takes the whole instance with it within 0.5 s (PR_SET_PDEATHSIG). */
static void test_dies_with_executor(void **state)
{
#if defined(__SANITIZE_THREAD__)
    skip(); /* TSan builds clone on the caller, not a launcher (sandbox_child.c sb_clone) */
#endif
    fixture *f = *state;
    const char *dir = code_dir(f, "slow.py", "import time\ndef handler(e, c):\n    time.sleep(60)\n", NULL);
    /* while the executor is gone, the busy handler would sleep on for a minute */
    int up[2], status = 0;
    death_report rep = { 0 };
    pid_t ex;

    assert_int_equal(pipe(up), 0);
    ex = fork();
    assert_true(ex >= 0);
    if (ex == 0) { /* the executor */
        start_arg a = { .spec = spec_for("python3", "slow.handler", dir) };
        char report[2048];
        pthread_t t;
        if (sandbox_init("minilambda-test", report, sizeof(report)) == ML_OK &&
            pthread_create(&t, NULL, start_on_thread, &a) == 0 && pthread_join(t, NULL) == 0 && a.in) {
            ml_sleep_ms(200); /* a parent-death signal tied to the thread would have fired */
            rep = (death_report){ sandbox_pid(a.in), sandbox_uid(a.in), sandbox_alive(a.in) };
            if (pthread_create(&t, NULL, invoke_on_thread, &a) != 0)
                rep.init_pid = 0;
            ml_sleep_ms(300); /* the handler is sleeping now */
        }
        if (write(up[1], &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
            _exit(1);
        for (;;)
            pause();
    }
    close(up[1]);
    assert_int_equal(read(up[0], &rep, sizeof(rep)), (ssize_t)sizeof(rep));
    close(up[0]);
    assert_true(rep.init_pid > 0);
    assert_true(rep.alive_after_thread_exit);
    assert_true(count_uid_procs(rep.uid) >= 2); /* init and runtime */
    assert_int_equal(kill(ex, SIGKILL), 0);
    assert_int_equal(waitpid(ex, &status, 0), ex);
    if (!uid_gone_within(rep.uid, 500))
        fail_msg("%d processes of the dead executor's instance still run 0.5 s after its kill -9",
                 count_uid_procs(rep.uid));
    (void)f;
}

/* Where namespaces (or cgroups) are not permitted: a loud report and the strongest isolation
 * left — still no executor secrets, still an unprivileged uid, still limits. Re-inits fully. */
/* Without a mount namespace a function reads its bootstrap through host paths as an
 * unprivileged uid: from a checkout under a private home (/root is 0700 on Debian) it
 * cannot, from the copy the executor stages in its artifact cache it can. */
static void test_runtimes_from_private_checkout(void **state)
{
    fixture *f = *state;
    char priv[] = "/tmp/ml-private-XXXXXX", cache[] = "/tmp/ml-cache-XXXXXX";
    char cmd[2400], src[256], staged[512], err[1024] = "", report[4096];
    const char *dir = code_dir(f, "fb.py", "def handler(event, context):\n    return {'ok': 1}\n", NULL);
    artifacts a = { 0 };
    sandbox_instance *in = NULL;

    assert_non_null(mkdtemp(priv));  /* 0700, as /root */
    assert_non_null(mkdtemp(cache));
    snprintf(src, sizeof(src), "%s/runtimes", priv);
    snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s'", g_runtimes, src);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(sandbox_init_ex("minilambda-test", SANDBOX_F_NAMESPACES, report, sizeof(report)), ML_OK);

    sandbox_spec s = spec_for("python3", "fb.handler", dir);
    s.runtimes_dir = src;
    assert_int_equal(sandbox_start(&s, &in, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "Permission denied"));

    assert_int_equal(artifacts_init(&a, cache), ML_OK);
    assert_int_equal(artifacts_stage_runtimes(&a, src, staged, sizeof(staged), err, sizeof(err)), ML_OK);
    assert_int_equal(artifacts_stage_runtimes(&a, src, staged, sizeof(staged), err, sizeof(err)), ML_OK);
    s.runtimes_dir = staged;
    in = start_spec(f, &s);
    assert_int_equal(invoke(f, in, "{}", 5000), SB_OK);
    expect_ok(f);
    assert_int_equal(jnum(f->json, "ok"), 1);

    assert_int_equal(sandbox_init("minilambda-test", report, sizeof(report)), ML_OK);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", priv, cache);
    assert_int_equal(system(cmd), 0);
    pthread_mutex_destroy(&a.lock);
}

static void test_fallbacks(void **state)
{
    fixture *f = *state;
    char report[4096];
    const char *dir = code_dir(f, "fb.py",
        "import os\n"
        "def handler(event, context):\n"
        "    if event == 'hog':\n        return len(bytearray(512 << 20))\n"
        "    return {'uid': os.getuid(), 'secret': 'MINILAMBDA' in repr(dict(os.environ)),\n"
        "            'task': os.environ['LAMBDA_TASK_ROOT'], 'cwd': os.getcwd(),\n"
        "            'shadow': os.access('/etc/shadow', os.R_OK)}\n", NULL);
    sandbox_instance *in;

    assert_int_equal(sandbox_init_ex("minilambda-test", SANDBOX_F_NAMESPACES, report, sizeof(report)), ML_OK);
    assert_non_null(strstr(report, "NO namespaces"));
    assert_int_equal(sandbox_features(), SANDBOX_F_ALL & ~SANDBOX_F_NAMESPACES);
    in = start(f, "python3", "fb.handler", dir);
    assert_int_equal(invoke(f, in, "{}", 5000), SB_OK);
    expect_ok(f);
    assert_true(jnum(f->json, "uid") >= 1000000);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(f->json, "secret")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(f->json, "shadow")));
    assert_string_equal(jstr(f->json, "task"), dir);
    assert_string_equal(jstr(f->json, "cwd"), dir);
    sandbox_destroy(in);
    f->ninst--;
    assert_int_equal(count_uid_procs(f->uids[f->ninst]), 0);

    assert_int_equal(sandbox_init_ex("minilambda-test", SANDBOX_F_CGROUP_MEMORY, report, sizeof(report)), ML_OK);
    assert_non_null(strstr(report, "NO memory cgroup: RLIMIT_AS"));
    in = start(f, "python3", "fb.handler", dir);
    assert_int_equal(invoke(f, in, "\"hog\"", 5000), SB_HANDLER_ERROR);
    expect_error(f, "MemoryError", "");
    assert_int_equal(invoke(f, in, "{}", 5000), SB_OK);   /* still alive */
    sandbox_destroy(in);
    f->ninst--;

    assert_int_equal(sandbox_init("minilambda-test", report, sizeof(report)), ML_OK);
    assert_int_equal(sandbox_features(), SANDBOX_F_ALL);
}

/* ------------------------------------------------------------------ function logs
 * (docs/logs.md §1 "Capture"), seen through fnlog's sink hook the way exec_run wires them:
 * START, what loading printed (cold start), stdout and stderr lines complete, in order and
 * marked, output between invocations in the next one, END and REPORT (Init Duration on the
 * cold start only); a handler error, a timeout and a crash with their lines; a 50 MB flood cut
 * at the limit and marked with exact counts, the executor's memory bounded. */

#define CAP_MAX 8192
#define RID "0a1b2c3d-0000-4000-8000-00000000000"   /* + one digit */

/* What the sink saw: every line's stream, level and length; the text of short ones. */
typedef struct cap_line {
    int stream;
    char level[12];
    char rid[40];
    char text[200];   /* "" for long lines */
    size_t len;
    bool all_y;       /* a flood line: only 'y' */
} cap_line;

static cap_line g_cap[CAP_MAX];
static size_t g_ncap, g_nseen;
static fnlog_inv g_log;

static size_t cap_sink(const logq_line *lines, size_t n)
{
    for (size_t i = 0; i < n; i++, g_nseen++) {
        cap_line *c;
        if (g_ncap == CAP_MAX)
            continue;
        c = &g_cap[g_ncap++];
        c->stream = lines[i].stream;
        c->len = lines[i].len;
        snprintf(c->level, sizeof(c->level), "%s", lines[i].level);
        snprintf(c->rid, sizeof(c->rid), "%s", lines[i].request_id);
        c->text[0] = '\0';
        if (lines[i].len < sizeof(c->text)) {
            memcpy(c->text, lines[i].message, lines[i].len);
            c->text[lines[i].len] = '\0';
        }
        c->all_y = lines[i].len > 0 && lines[i].message[0] == 'y' &&
                   memcmp(lines[i].message, lines[i].message + 1, lines[i].len - 1) == 0;
    }
    return n;
}

/* Begins invocation `digit`'s log (request id RID + digit). */
static void log_begin(char digit)
{
    static char rid[10][40];
    fnlog_meta m = { .request_id = rid[digit - '0'], .ns = "default", .function = "testfn",
                     .function_id = "6f1c0000-0000-4000-8000-000000000001", .version = "$LATEST",
                     .max_bytes = FNLOG_MAX_BYTES_DEFAULT, .sink = cap_sink };

    snprintf(rid[digit - '0'], sizeof(rid[0]), "%s%c", RID, digit);
    fnlog_abandon(&g_log);   /* what a failed assertion left */
    fnlog_begin(&g_log, &m);
    assert_true(g_log.on);
}

/* Cold start of handler under invocation `digit`'s log, as pool_acquire does for exec_run. */
static sandbox_instance *log_start(fixture *f, const char *handler, const char *dir, char digit)
{
    sandbox_spec s = spec_for("python3", handler, dir);

    s.memory_mb = 1769;
    s.timeout_s = 60;
    s.function_version = "$LATEST";
    s.log = fnlog_as_sink(&g_log);
    log_begin(digit);
    return start_spec(f, &s);
}

/* One invocation under the log begun (cold) or a new one (warm), finished as exec_run does. */
static sandbox_status log_invoke(fixture *f, sandbox_instance *in, const char *event,
                                 int64_t timeout_ms, char digit, bool cold)
{
    char rid[40];

    if (!cold)
        log_begin(digit);
    snprintf(rid, sizeof(rid), "%s%c", RID, digit);
    sandbox_result_free(&f->res);
    assert_int_equal(sandbox_invoke_logged(in, fnlog_as_sink(&g_log), rid, event, strlen(event),
                                           ml_now_ms() + timeout_ms, 1u << 20, &f->res), ML_OK);
    fnlog_finish_result(&g_log, &f->res, 1769, cold ? sandbox_init_us(in) : 0, false);
    return f->res.status;
}

/* Index of the line with exactly text (from `from`), or fails. */
static size_t cap_find(size_t from, const char *text)
{
    for (size_t i = from; i < g_ncap; i++)
        if (strcmp(g_cap[i].text, text) == 0)
            return i;
    for (size_t i = from; i < g_ncap; i++)
        print_message("  [%zu] %d %s\n", i, g_cap[i].stream, g_cap[i].text);
    fail_msg("no line \"%s\"", text);
    return 0;
}

static bool cap_prefix(size_t i, const char *p)
{
    return i < g_ncap && strncmp(g_cap[i].text, p, strlen(p)) == 0;
}

/* START first and END, REPORT last for invocation `digit` among g_cap[from..to). */
static void expect_frame(size_t from, size_t to, char digit, bool cold)
{
    char want[128];

    snprintf(want, sizeof(want), "START RequestId: %s%c Version: $LATEST", RID, digit);
    assert_string_equal(g_cap[from].text, want);
    snprintf(want, sizeof(want), "END RequestId: %s%c", RID, digit);
    assert_string_equal(g_cap[to - 2].text, want);
    snprintf(want, sizeof(want), "REPORT RequestId: %s%c\tDuration: ", RID, digit);
    assert_true(cap_prefix(to - 1, want));
    assert_non_null(strstr(g_cap[to - 1].text, "\tMemory Size: 1769 MB\tMax Memory Used: "));
    assert_int_equal(strstr(g_cap[to - 1].text, "\tInit Duration: ") != NULL, cold);
    for (size_t i = from; i < to; i++)
        assert_true(strstr(g_cap[i].rid, RID) && g_cap[i].rid[strlen(RID)] == digit);
}

static const char PRINTER[] =
    "import sys, os, threading, time\n"
    "print('loading stdout')\n"
    "print('loading stderr', file=sys.stderr)\n"
    "bg = None\n"
    "def later():\n"
    "    while not os.path.exists(os.environ.get('LAMBDA_TASK_ROOT', '/var/task') + '/go'):\n"
    "        time.sleep(0.01)\n"
    "    print('between invocations')\n"
    "def handler(event, context):\n"
    "    global bg\n"
    "    if event == 'join':\n"
    "        bg.join()\n"
    "    for i in range(200):\n"
    "        print('out %d' % i)\n"
    "        print('err %d' % i, file=sys.stderr)\n"
    "    sys.stdout.write('no newline at the end')\n"
    "    if event == 'start':\n"
    "        bg = threading.Thread(target=later)\n"
    "        bg.start()\n"
    "    return 'ok'\n";

/* Each stream's numbered lines among g_cap[from..to): whole, in order, marked; how many. */
static size_t expect_numbered(size_t from, size_t to, const char *prefix, int stream)
{
    char want[64];
    size_t n = 0;

    for (size_t i = from; i < to; i++) {
        if (!cap_prefix(i, prefix))
            continue;
        snprintf(want, sizeof(want), "%s%zu", prefix, n++);
        assert_string_equal(g_cap[i].text, want);
        assert_int_equal(g_cap[i].stream, stream);
        assert_string_equal(g_cap[i].level, stream == FNLOG_STDERR ? "error" : "info");
    }
    return n;
}

/* stdout and stderr lines complete, in order, marked; init output in the cold invocation;
 * output between invocations in the next one. */
static void test_log_streams_in_order(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "p.py", PRINTER, NULL);
    sandbox_instance *in;
    char go[128];
    size_t first_end;

    g_ncap = 0;
    in = log_start(f, "p.handler", dir, '1');
    assert_int_equal(log_invoke(f, in, "\"start\"", 20000, '1', true), SB_OK);
    first_end = g_ncap;
    expect_frame(0, first_end, '1', true);
    assert_int_equal(g_cap[cap_find(0, "loading stdout")].stream, FNLOG_STDOUT);
    assert_int_equal(g_cap[cap_find(0, "loading stderr")].stream, FNLOG_STDERR);
    assert_int_equal(expect_numbered(0, first_end, "out ", FNLOG_STDOUT), 200);
    assert_int_equal(expect_numbered(0, first_end, "err ", FNLOG_STDERR), 200);
    /* the unterminated write ends the invocation as a line of its own */
    assert_int_equal(g_cap[cap_find(0, "no newline at the end")].stream, FNLOG_STDOUT);

    /* the background thread prints while the instance idles (usually within these 300 ms; if
     * later, during the next invocation, before its handler prints: the next one either way) */
    snprintf(go, sizeof(go), "%s/go", dir);
    write_text(go, "", 0644);
    ml_sleep_ms(300);
    assert_int_equal(log_invoke(f, in, "\"join\"", 20000, '2', false), SB_OK);
    expect_frame(first_end, g_ncap, '2', false);
    assert_int_equal(g_cap[cap_find(first_end, "between invocations")].stream, FNLOG_STDOUT);
    for (size_t i = 0; i < first_end; i++)
        assert_string_not_equal(g_cap[i].text, "between invocations");
    /* the 4 KiB tail is unchanged: merged, raw */
    assert_non_null(strstr(ml_buf_cstr(&f->res.log_tail), "err 199\n"));
}

static const char FAILER[] =
    "import os, signal, sys, time\n"
    "def boom(event, context):\n"
    "    print('about to fail')\n"
    "    raise Exception('boom')\n"
    "def slow(event, context):\n"
    "    print('before sleep')\n"
    "    time.sleep(30)\n"
    "def crash(event, context):\n"
    "    print('dying', file=sys.stderr)\n"
    "    os.kill(os.getpid(), signal.SIGKILL)\n";

/* The platform line before END (the third from last) of the invocation in g_cap. */
static const char *death_line(size_t *at)
{
    *at = g_ncap - 3;
    assert_int_equal(g_cap[*at].stream, FNLOG_PLATFORM);
    assert_string_equal(g_cap[*at].level, "warn");
    return g_cap[*at].text;
}

static void test_log_error_timeout_crash(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "f.py", FAILER, NULL);
    sandbox_instance *in;
    char want[160];
    size_t i, at;

    g_ncap = 0;
    in = log_start(f, "f.boom", dir, '1');
    assert_int_equal(log_invoke(f, in, "{}", 20000, '1', true), SB_HANDLER_ERROR);
    expect_frame(0, g_ncap, '1', true);
    i = cap_find(cap_find(0, "about to fail"), "[ERROR] Exception: boom");
    assert_int_equal(g_cap[i].stream, FNLOG_STDERR);
    assert_string_equal(g_cap[i].level, "error");
    assert_int_equal(g_cap[cap_find(i, "Exception: boom")].stream, FNLOG_STDERR);   /* traceback */

    g_ncap = 0;
    in = log_start(f, "f.slow", dir, '2');
    assert_int_equal(log_invoke(f, in, "{}", 1000, '2', true), SB_TIMEOUT);
    expect_frame(0, g_ncap, '2', true);
    i = cap_find(0, "before sleep");
    /* "2026-12-07T11:00:03.123Z <id> Task timed out after 1.00 seconds" */
    snprintf(want, sizeof(want), " %s2 Task timed out after 1.00 seconds", RID);
    assert_string_equal(death_line(&at) + 24, want);
    assert_true(i < at);

    g_ncap = 0;
    in = log_start(f, "f.crash", dir, '3');
    assert_int_equal(log_invoke(f, in, "{}", 20000, '3', true), SB_CRASH);
    expect_frame(0, g_ncap, '3', true);
    assert_int_equal(g_cap[cap_find(0, "dying")].stream, FNLOG_STDERR);
    snprintf(want, sizeof(want), "RequestId: %s3 Error: Runtime exited with error: signal: killed", RID);
    assert_int_equal(strncmp(death_line(&at), want, strlen(want)), 0);
}

static const char FLOOD[] =
    "def handler(event, context):\n"
    "    line = 'y' * 1023\n"
    "    for i in range(event):\n"
    "        print(line)\n"
    "    print('THE-END')\n"
    "    return 'done'\n";

/* 50 MiB of output: 4 MiB kept as whole lines, the rest counted exactly and marked; the
 * executor's memory stays bounded (nothing past the limit is buffered). */
static void test_log_flood_cut_and_marked(void **state)
{
    fixture *f = *state;
    const char *dir = code_dir(f, "fl.py", FLOOD, NULL);
    sandbox_instance *in;
    size_t kept = 0, at;
    int64_t rss_before, rss_after;
    char want[200];

    in = log_start(f, "fl.handler", dir, '1');
    assert_int_equal(log_invoke(f, in, "100", 20000, '1', true), SB_OK);   /* warm up allocations */
    g_ncap = g_nseen = 0;
    rss_before = self_rss_kb();
    assert_int_equal(log_invoke(f, in, "51200", 60000, '2', false), SB_OK);   /* 51200 KiB */
    rss_after = self_rss_kb();
    assert_string_equal(ml_buf_cstr(&f->res.payload), "\"done\"");
    expect_frame(0, g_ncap, '2', false);
    for (size_t i = 0; i < g_ncap; i++) {
        if (g_cap[i].stream != FNLOG_STDOUT)
            continue;
        assert_true(g_cap[i].all_y);   /* whole lines only */
        assert_int_equal(g_cap[i].len, 1023);
        kept++;
    }
    assert_int_equal(kept, FNLOG_MAX_BYTES_DEFAULT / 1024);
    /* dropped: 47104 lines of 1024 bytes, and THE-END's 8 */
    snprintf(want, sizeof(want), "[minilambda] log output truncated: %d bytes in %d lines dropped "
             "(limit %d bytes per invocation)", 47104 * 1024 + 8, 47104 + 1, FNLOG_MAX_BYTES_DEFAULT);
    assert_string_equal(death_line(&at), want);
    assert_int_equal(g_nseen, g_ncap);
    /* the tail still ends with what was printed last */
    assert_string_equal(ml_buf_cstr(&f->res.log_tail) + f->res.log_tail.len - 8, "THE-END\n");
    print_message("flood: RSS %lld -> %lld kB; %s\n", (long long)rss_before, (long long)rss_after,
                  g_cap[g_ncap - 1].text);
    assert_true(rss_after - rss_before < 8 * 1024);
}

int main(void)
{
    const char *root = getenv("ML_ROOT");
    char cwd[512], repo_rt[1024], cache[] = "/tmp/ml-test-runtimes-XXXXXX", err[512] = "", rm[128];
    artifacts a = { 0 };
    int rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_context_and_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nodejs_async_and_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provided_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_goes_to_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handler_exception, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_not_serialisable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_warm_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_fork_bomb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_network, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_cgroups_swept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_output_flood, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_privileges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_starts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uids_unique_across_executors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dies_with_executor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtimes_from_private_checkout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_streams_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_error_timeout_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_flood_cut_and_marked, setup, teardown),
    };

    ml_log_init("test_sandbox", ML_LOG_WARN);
    /* A secret in the executor's environment that no function may see. */
    setenv("MINILAMBDA_SECRET", SECRET_VALUE, 1);
    if (!root)
        root = getcwd(cwd, sizeof(cwd));
    /* the executor's own start-up: the bootstraps staged in the artifact cache */
    snprintf(repo_rt, sizeof(repo_rt), "%s/services/lambda-executor/runtimes", root ? root : ".");
    if (!mkdtemp(cache) || artifacts_init(&a, cache) != ML_OK ||
        artifacts_stage_runtimes(&a, repo_rt, g_runtimes, sizeof(g_runtimes), err, sizeof(err)) != ML_OK) {
        fprintf(stderr, "cannot stage the runtimes: %s\n", err);
        return 1;
    }
    if (geteuid() == 0 && sandbox_init("minilambda-test", g_report, sizeof(g_report)) != ML_OK)
        fprintf(stderr, "sandbox_init failed: %s\n", g_report);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(rm, sizeof(rm), "rm -rf '%s'", cache);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", cache);
    return rc;
}
