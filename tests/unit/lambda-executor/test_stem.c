/* test_stem.c — stem cells (sandbox_stem.h, docs/sandbox.md "Stem cells") on real sandboxes:
 *
 *   - a cold start from a stem answers right (python, node) and the instance is isolated as
 *     a fresh one: its own uid, pid namespace (pid 1 its own init), the function's memory
 *     limit on its cgroup, the function's files read-only (ro,nosuid,nodev) at /var/task, and
 *     exactly the environment a fresh start of the same function gets (the stem's marker
 *     variable gone);
 *   - two functions get two stems (different uids), never the same one;
 *   - an import error from a stem is the same error as a fresh start's;
 *   - network, provided and start-affecting variables take the fresh path; with 0 stems per
 *     runtime nothing is started; freeing the pool leaves no cgroup behind.
 *
 * Needs root and full isolation like test_sandbox. Runs from the repository root or with
 * ML_ROOT set. */
#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include <cJSON.h>

#include "rt_fixture.h"
#include "sandbox_stem.h"

#define PY_PROBE \
    "import os\n" \
    "def handler(event, context):\n" \
    "    try:\n" \
    "        open('/var/task/w', 'w')\n" \
    "        wr = 'writable'\n" \
    "    except OSError as e:\n" \
    "        wr = e.strerror\n" \
    "    mnt = [l.split()[5] for l in open('/proc/self/mountinfo') if l.split()[4] == '/var/task']\n" \
    "    init = open('/proc/1/cmdline', 'rb').read().split(b'\\0')\n" \
    "    return {'echo': event, 'uid': os.getuid(), 'pid': os.getpid(), 'cwd': os.getcwd(),\n" \
    "            'init': init[3].decode(), 'env': dict(os.environ), 'write': wr,\n" \
    "            'mnt': mnt, 'files': sorted(os.listdir('/var/task'))}\n"

#define JS_PROBE \
    "const fs = require('fs');\n" \
    "exports.handler = async (event) => {\n" \
    "  const init = fs.readFileSync('/proc/1/cmdline', 'latin1').split('\\0');\n" \
    "  return { echo: event, uid: process.getuid(), pid: process.pid, cwd: process.cwd(),\n" \
    "           init: init[3], env: { ...process.env }, files: fs.readdirSync('/var/task').sort() };\n" \
    "};\n"

/* A small file's text into buf (NUL-terminated); ML_OK or ML_ERR. */
static int read_text(const char *path, char *buf, size_t len)
{
    FILE *fh = fopen(path, "r");
    size_t n;

    if (!fh)
        return ML_ERR;
    n = fread(buf, 1, len - 1, fh);
    buf[n] = '\0';
    fclose(fh);
    return ML_OK;
}

static sandbox_stem_pool *pool_of(int64_t n)
{
    sandbox_stem_config c = { .per_runtime = n, .pids_max = 64 };
    sandbox_stem_pool *sp = sandbox_stem_pool_new(&c);

    assert_non_null(sp);
    return sp;
}

/* Invokes in with {"n":1}; the parsed answer (caller frees). */
static cJSON *probe(sandbox_instance *in)
{
    sandbox_result r;
    cJSON *j;

    assert_int_equal(sandbox_invoke(in, "stem-inv", "{\"n\":1}", 7, ml_now_ms() + 10000, 1u << 20, &r), ML_OK);
    if (r.status != SB_OK)
        fail_msg("status %d payload %s log %s", r.status, ml_buf_cstr(&r.payload), ml_buf_cstr(&r.log_tail));
    j = cJSON_Parse(ml_buf_cstr(&r.payload));
    sandbox_result_free(&r);
    assert_non_null(j);
    return j;
}

static int64_t num(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);

    assert_true(cJSON_IsNumber(v));
    return (int64_t)v->valuedouble;
}

static const char *str(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);

    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

/* A file of the instance's cgroup for controller ("memory", "cpu"), as a number. */
static int64_t cgroup_value(sandbox_instance *in, const char *controller, const char *file)
{
    char path[512], buf[4096], *line, *save = NULL;
    int64_t v = -1;

    snprintf(path, sizeof(path), "/proc/%d/cgroup", sandbox_pid(in));
    assert_int_equal(read_text(path, buf, sizeof(buf)), ML_OK);
    for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char key[64], *c;
        snprintf(key, sizeof(key), ":%s:", controller);
        if ((c = strstr(line, key))) {
            char path2[1024], val[64];
            snprintf(path2, sizeof(path2), "/sys/fs/cgroup/%s%s/%s", controller, c + strlen(key), file);
            assert_int_equal(read_text(path2, val, sizeof(val)), ML_OK);
            v = strtoll(val, NULL, 10);
        }
    }
    return v;
}

static int64_t memory_limit(sandbox_instance *in)
{
    return cgroup_value(in, "memory", "memory.limit_in_bytes");
}

/* Starts s from a stem of sp (which must have one ready). */
static sandbox_instance *from_stem(sandbox_stem_pool *sp, const sandbox_spec *s)
{
    sandbox_instance *in = NULL;
    char err[1024] = "";
    int rc;

    assert_int_equal(sandbox_stem_wait_ready(sp, s, 1, 15000), ML_OK);
    rc = sandbox_start_from_stem(sp, s, &in, err, sizeof(err));
    if (rc != ML_OK)
        fail_msg("start from stem: %d %s", rc, err);
    return in;
}

static sandbox_instance *fresh(const sandbox_spec *s)
{
    sandbox_instance *in = NULL;
    char err[1024] = "";

    if (sandbox_start(s, &in, err, sizeof(err)) != ML_OK)
        fail_msg("fresh start: %s", err);
    return in;
}

/* The stem instance answers as a fresh one would, isolated the same way. */
static void check_like_fresh(fixture *f, const char *runtime, const char *handler, bool python)
{
    const char *const env[] = { "MY_SETTING=42", "HOME=/tmp/fnhome", NULL };
    sandbox_stem_pool *sp = pool_of(1);
    sandbox_spec s = spec_for(f, runtime, handler);
    sandbox_instance *fr;
    cJSON *a, *b;
    char *echo;

    s.env = env;
    s.memory_mb = 192;
    f->inst = from_stem(sp, &s);
    a = probe(f->inst);
    fr = fresh(&s);
    b = probe(fr);
    echo = cJSON_PrintUnformatted(cJSON_GetObjectItem(a, "echo"));
    assert_string_equal(echo, "{\"n\":1}");
    free(echo);
    /* the environment is exactly the fresh start's: nothing of the stem's is left */
    if (!cJSON_Compare(cJSON_GetObjectItem(a, "env"), cJSON_GetObjectItem(b, "env"), true))
        fail_msg("env differs:\n stem  %s\n fresh %s", cJSON_PrintUnformatted(cJSON_GetObjectItem(a, "env")),
                 cJSON_PrintUnformatted(cJSON_GetObjectItem(b, "env")));
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "env"), "MINILAMBDA_STEM"));
    assert_string_equal(str(cJSON_GetObjectItem(a, "env"), "HOME"), "/tmp/fnhome");
    assert_true(cJSON_Compare(cJSON_GetObjectItem(a, "files"), cJSON_GetObjectItem(b, "files"), true));
    assert_string_equal(str(a, "cwd"), "/var/task");
    /* its own uid, and a pid namespace whose pid 1 is its own init */
    assert_int_equal(num(a, "uid"), (int64_t)sandbox_uid(f->inst));
    assert_true(num(a, "uid") != num(b, "uid"));
    assert_int_equal(num(a, "pid"), 2);
    assert_string_equal(str(a, "init"), "minilambda-init");
    assert_int_equal(memory_limit(f->inst), 192LL << 20);
    assert_int_equal(cgroup_value(f->inst, "cpu", "cpu.shares"), 1024);   /* no longer a stem's 2 */
    if (python) {
        const char *opts = cJSON_GetArrayItem(cJSON_GetObjectItem(a, "mnt"), 0)->valuestring;
        assert_string_equal(str(a, "write"), "Read-only file system");
        assert_non_null(strstr(opts, "ro"));
        assert_non_null(strstr(opts, "nosuid"));
        assert_non_null(strstr(opts, "nodev"));
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    sandbox_destroy(fr);
    sandbox_stem_pool_free(sp);
}

static void test_python_from_stem(void **state)
{
    fixture *f = *state;

    code_dir(f, "app.py", PY_PROBE, "data.txt", "x", NULL);
    check_like_fresh(f, "python3", "app.handler", true);
}

static void test_node_from_stem(void **state)
{
    fixture *f = *state;

    code_dir(f, "index.js", JS_PROBE, "data.txt", "x", NULL);
    check_like_fresh(f, "nodejs", "index.handler", false);
}

/* Two functions, two stems: different uids and processes. */
static void test_second_function_gets_another_stem(void **state)
{
    fixture *f = *state;
    sandbox_stem_pool *sp = pool_of(2);
    sandbox_spec s = spec_for(f, "python3", "app.handler"), s2;
    sandbox_instance *other;
    cJSON *a, *b;

    code_dir(f, "app.py", PY_PROBE, NULL);
    assert_int_equal(sandbox_stem_wait_ready(sp, &s, 2, 15000), ML_OK);
    f->inst = from_stem(sp, &s);
    s2 = s;
    s2.function_name = "otherfn";
    other = from_stem(sp, &s2);
    assert_ptr_not_equal(other, f->inst);
    a = probe(f->inst);
    b = probe(other);
    assert_true(num(a, "uid") != num(b, "uid"));
    assert_true(sandbox_pid(f->inst) != sandbox_pid(other));
    assert_string_equal(str(cJSON_GetObjectItem(b, "env"), "AWS_LAMBDA_FUNCTION_NAME"), "otherfn");
    assert_string_equal(str(cJSON_GetObjectItem(a, "env"), "AWS_LAMBDA_FUNCTION_NAME"), g_rt_fn);
    cJSON_Delete(a);
    cJSON_Delete(b);
    sandbox_destroy(other);
    sandbox_stem_pool_free(sp);
}

/* An import error from a stem is word for word the fresh start's. */
static void test_import_error_same(void **state)
{
    fixture *f = *state;
    sandbox_stem_pool *sp = pool_of(1);
    sandbox_spec s = spec_for(f, "python3", "app.handler"), sn;
    sandbox_instance *in = NULL;
    char e1[1024] = "", e2[1024] = "";

    code_dir(f, "app.py", "import pydantic\ndef handler(e, c):\n    return 1\n",
             "index.js", "require('ms');\nexports.handler = async () => 1;\n", NULL);
    assert_int_equal(sandbox_stem_wait_ready(sp, &s, 1, 15000), ML_OK);
    assert_int_equal(sandbox_start_from_stem(sp, &s, &in, e1, sizeof(e1)), ML_ERR);
    assert_null(in);
    assert_int_equal(sandbox_start(&s, &in, e2, sizeof(e2)), ML_ERR);
    assert_string_equal(e1, e2);
    assert_non_null(strstr(e1, "Runtime.ImportModuleError: Unable to import module 'app'"));
    sn = spec_for(f, "nodejs", "index.handler");
    assert_int_equal(sandbox_stem_wait_ready(sp, &sn, 1, 15000), ML_OK);
    e1[0] = e2[0] = '\0';
    assert_int_equal(sandbox_start_from_stem(sp, &sn, &in, e1, sizeof(e1)), ML_ERR);
    assert_int_equal(sandbox_start(&sn, &in, e2, sizeof(e2)), ML_ERR);
    assert_string_equal(e1, e2);
    assert_non_null(strstr(e1, "Runtime.ImportModuleError"));
    sandbox_stem_pool_free(sp);
}

/* network, provided and start-affecting variables never take a stem; 0 stems start none. */
static void test_fresh_paths(void **state)
{
    fixture *f = *state;
    const char *const lang[] = { "LANG=de_DE.UTF-8", NULL };
    sandbox_stem_pool *sp = pool_of(1), *none = pool_of(0);
    sandbox_spec s = spec_for(f, "python3", "app.handler"), t;
    sandbox_instance *in = NULL;
    int64_t idle, starting;
    char err[256] = "";

    code_dir(f, "app.py", PY_PROBE, "bootstrap", "#!/bin/sh\n", NULL);
    assert_int_equal(sandbox_stem_wait_ready(sp, &s, 1, 15000), ML_OK);
    t = s;
    t.network = true;
    assert_false(sandbox_stem_eligible(&t));
    assert_int_equal(sandbox_start_from_stem(sp, &t, &in, err, sizeof(err)), SANDBOX_STEM_NONE);
    t = spec_for(f, "provided", "bootstrap");
    assert_false(sandbox_stem_eligible(&t));
    assert_int_equal(sandbox_start_from_stem(sp, &t, &in, err, sizeof(err)), SANDBOX_STEM_NONE);
    t = s;
    t.env = lang;
    assert_int_equal(sandbox_start_from_stem(sp, &t, &in, err, sizeof(err)), SANDBOX_STEM_NONE);
    assert_null(in);
    sandbox_stem_counts(sp, &idle, &starting);
    assert_int_equal(idle, 1);   /* none was taken */
    /* MINILAMBDA_STEM_CELLS=0 */
    sandbox_stem_want(none, &s);
    assert_int_equal(sandbox_start_from_stem(none, &s, &in, err, sizeof(err)), SANDBOX_STEM_NONE);
    ml_sleep_ms(300);
    sandbox_stem_counts(none, &idle, &starting);
    assert_int_equal(idle + starting, 0);
    sandbox_stem_pool_free(none);
    sandbox_stem_pool_free(sp);
}

/* The instance cgroups under our test parent: none once every pool and instance is gone. */
static int instance_cgroups_named(char *names, size_t len)
{
    char buf[4096], *line, *save = NULL, dir[1024] = "";
    int n = 0;
    DIR *d;
    struct dirent *e;

    assert_int_equal(read_text("/proc/self/cgroup", buf, sizeof(buf)), ML_OK);
    for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c = strstr(line, ":memory:");
        if (c)
            snprintf(dir, sizeof(dir), "/sys/fs/cgroup/memory%s%sminilambda-stem-test", c + 8,
                     strcmp(c + 8, "/") == 0 ? "" : "/");
    }
    assert_non_null(d = opendir(dir));
    if (names && len)
        names[0] = '\0';
    while ((e = readdir(d)))
        if (e->d_name[0] == 'i') {
            n++;
            size_t have = names ? strlen(names) : 0, add = strlen(e->d_name);
            if (names && have + add + 2 < len) {
                memcpy(names + have, e->d_name, add);
                memcpy(names + have + add, " ", 2);
            }
        }
    closedir(d);
    return n;
}

static int instance_cgroups(void)
{
    return instance_cgroups_named(NULL, 0);
}

static void instance_names(char *out, size_t len)
{
    assert_int_equal(instance_cgroups_named(out, len), 1);
}

/* The names of the instance cgroups under our test parent, sorted, joined by spaces. */
static void instance_names(char *out, size_t len);

/* An idle stem older than max_age_ms is replaced by a new one. */
static void test_recycled(void **state)
{
    fixture *f = *state;
    sandbox_stem_config c = { .per_runtime = 1, .pids_max = 64, .max_age_ms = 400 };
    sandbox_stem_pool *sp = sandbox_stem_pool_new(&c);
    sandbox_spec s = spec_for(f, "python3", "app.handler");
    char before[512], after[512];

    code_dir(f, "app.py", PY_PROBE, NULL);
    assert_int_equal(sandbox_stem_wait_ready(sp, &s, 1, 15000), ML_OK);
    instance_names(before, sizeof(before));
    ml_sleep_ms(2500);   /* the refill thread looks at least once a second */
    assert_int_equal(sandbox_stem_wait_ready(sp, &s, 1, 15000), ML_OK);
    instance_names(after, sizeof(after));
    assert_true(before[0] && after[0]);
    assert_string_not_equal(before, after);
    sandbox_stem_pool_free(sp);
}

static void test_no_leaks(void **state)
{
    fixture *f = *state;
    sandbox_stem_pool *sp = pool_of(2);
    sandbox_spec s = spec_for(f, "python3", "app.handler");

    code_dir(f, "app.py", PY_PROBE, NULL);
    assert_int_equal(sandbox_stem_wait_ready(sp, &s, 2, 15000), ML_OK);
    assert_int_equal(instance_cgroups(), 2);
    f->inst = from_stem(sp, &s);
    sandbox_stem_pool_free(sp);
    sandbox_destroy(f->inst);
    f->inst = NULL;
    assert_int_equal(instance_cgroups(), 0);
}

/* Inside a chroot (tests/pristine/rehearse.sh) the stem's code mount is refused and the pool
 * turns itself off (every cold start takes the fresh path, which the rest of the suite
 * covers there). Chrooted: the mount at "/" shows a root other than its filesystem's "/"
 * (or none is at "/"). */
static bool in_chroot(void)
{
    FILE *fh = fopen("/proc/self/mountinfo", "r");
    char line[4096], root[1024], point[1024];
    bool seen = false, chrooted = false;

    if (!fh)
        return false;
    while (fgets(line, sizeof(line), fh))
        if (sscanf(line, "%*s %*s %*s %1023s %1023s", root, point) == 2 && strcmp(point, "/") == 0) {
            seen = true;
            chrooted = strcmp(root, "/") != 0;
        }
    fclose(fh);
    return !seen || chrooted;
}

int main(void)
{
    int rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_python_from_stem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_from_stem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_function_gets_another_stem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_import_error_same, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recycled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_leaks, setup, teardown),
    };

#if defined(__SANITIZE_THREAD__)
    /* stems are off in TSan builds (sandbox_stem_pool_new): nothing to test here */
    (void)tests;
    (void)rc;
    puts("test_stem: skipped under ThreadSanitizer (stem cells are off in TSan builds)");
    return 0;
#endif
    if (in_chroot()) {
        puts("test_stem: skipped in a chroot (stem cells are off there)");
        return 0;
    }
    if (rt_begin("test_stem", "stem", "stemfn") != 0)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    rt_end();
    return rc;
}
