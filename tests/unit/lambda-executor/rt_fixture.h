/* rt_fixture.h — the runtime tests' fixture (test_stream, test_runtime_errors): the
 * bootstraps staged in an artifact cache as the executor does at start-up, the sandbox
 * initialised once, and per test (cmocka setup/teardown) a code dir written from name/content
 * pairs plus the instance and result it leaves for teardown to free.
 *
 * Use: rt_begin(...) before cmocka_run_group_tests, rt_end() after. Needs root and full
 * isolation (setup fails, never skips, without them). */
#ifndef RT_FIXTURE_H
#define RT_FIXTURE_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts.h"
#include "log.h"
#include "sandbox.h"

#define RT_UNUSED __attribute__((unused))

static char g_runtimes[1024];
static char g_report[4096];
/* set by rt_begin: the test's name (log, messages, code dirs), the function name in specs,
 * and the staged runtimes' cache dir rt_end removes */
static const char *g_rt_test = "test_rt";
static const char *g_rt_fn = "rtfn";
static char g_rt_cache[64];

typedef struct fixture {
    char dir[64];
    sandbox_instance *inst;
    sandbox_result res;
} fixture;

RT_UNUSED static void write_text(const char *path, const char *text)
{
    FILE *fh = fopen(path, "w");

    assert_non_null(fh);
    assert_int_equal(fputs(text, fh) >= 0, 1);
    assert_int_equal(fclose(fh), 0);
    assert_int_equal(chmod(path, 0644), 0);
}

/* Fills the fixture's code dir (world-readable) with name/content pairs, NULL-terminated; a
 * name may contain directories ("node_modules/a/index.js"), made 0755. */
RT_UNUSED static void code_dir(fixture *f, ...)
{
    const char *name;
    va_list ap;

    snprintf(f->dir, sizeof(f->dir), "/tmp/%s_XXXXXX", g_rt_test);
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
}

RT_UNUSED static sandbox_spec spec_for(fixture *f, const char *runtime, const char *handler)
{
    sandbox_spec s = { .runtime = runtime, .handler = handler, .code_dir = f->dir,
                       .runtimes_dir = g_runtimes, .function_name = g_rt_fn,
                       .function_version = "1", .memory_mb = 256, .timeout_s = 10,
                       .pids_max = 64 };
    return s;
}

/* Starts runtime/handler from the code dir into f->inst (teardown destroys it); fails the test
 * when the start fails. */
RT_UNUSED static void start(fixture *f, const char *runtime, const char *handler, int64_t timeout_s)
{
    sandbox_spec s = spec_for(f, runtime, handler);
    char err[1024] = "";

    s.timeout_s = timeout_s;
    if (sandbox_start(&s, &f->inst, err, sizeof(err)) != ML_OK)
        fail_msg("sandbox_start(%s %s): %s", runtime, handler, err);
}

/* Allocates the fixture (*state owns it; teardown frees it). */
RT_UNUSED static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (!f || geteuid() != 0 || sandbox_features() != SANDBOX_F_ALL) {
        fprintf(stderr, "%s needs root and full isolation: %s\n", g_rt_test, g_report);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

RT_UNUSED static int teardown(void **state)
{
    fixture *f = *state;
    char rm[128];

    sandbox_destroy(f->inst);
    if (f->dir[0]) {
        snprintf(rm, sizeof(rm), "rm -rf '%s'", f->dir);
        if (system(rm) != 0)
            fprintf(stderr, "could not remove %s\n", f->dir);
    }
    sandbox_result_free(&f->res);
    free(f);
    return 0;
}

/* The executor's own start-up: the bootstraps staged in a fresh artifact cache
 * (/tmp/ml-<tag>-runtimes-*, removed by rt_end), then the sandbox (cgroup
 * minilambda-<tag>-test) when root. test and fn must outlive the tests (literals).
 * 0, or -1 when the runtimes cannot be staged (said on stderr). */
RT_UNUSED static int rt_begin(const char *test, const char *tag, const char *fn)
{
    const char *root = getenv("ML_ROOT");
    char cwd[512], repo_rt[1024], cgroup[128], err[512] = "";
    artifacts a = { 0 };

    g_rt_test = test;
    g_rt_fn = fn;
    ml_log_init(test, ML_LOG_WARN);
    if (!root)
        root = getcwd(cwd, sizeof(cwd));
    snprintf(repo_rt, sizeof(repo_rt), "%s/services/lambda-executor/runtimes", root ? root : ".");
    snprintf(g_rt_cache, sizeof(g_rt_cache), "/tmp/ml-%s-runtimes-XXXXXX", tag);
    if (!mkdtemp(g_rt_cache) || artifacts_init(&a, g_rt_cache) != ML_OK ||
        artifacts_stage_runtimes(&a, repo_rt, g_runtimes, sizeof(g_runtimes), err, sizeof(err)) != ML_OK) {
        fprintf(stderr, "cannot stage the runtimes: %s\n", err);
        return -1;
    }
    snprintf(cgroup, sizeof(cgroup), "minilambda-%s-test", tag);
    if (geteuid() == 0 && sandbox_init(cgroup, g_report, sizeof(g_report)) != ML_OK)
        fprintf(stderr, "sandbox_init failed: %s\n", g_report);
    return 0;
}

RT_UNUSED static void rt_end(void)
{
    char rm[128];

    snprintf(rm, sizeof(rm), "rm -rf '%s'", g_rt_cache);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", g_rt_cache);
}

#endif
