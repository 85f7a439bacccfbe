/* stem_bench.c — cold start from a stem cell vs a fresh sandbox vs the bare interpreter's own
 * start, alternated in one loop (not a test; docs/sandbox.md "Stem cells").
 *
 *   stem_bench [runtime] [rounds]      (defaults: python3 50; runtime python3 or nodejs)
 *
 * Each round, in rotating order: `/usr/bin/python3 -c pass` (or `node -e 0`) spawned and
 * waited for; sandbox_start + first invoke + destroy; a stem taken (one ready, waited for
 * outside the timing, as between config changes) + first invoke + destroy. Prints p50/p99 of
 * each and the ratios to the interpreter. Runs as root from the repository root (or ML_ROOT). */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"
#include "sandbox_stem.h"
#include "benchtime.h"

extern char **environ;

static double pctl(double *v, int n, int p)
{
    qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
    return v[(n * p) / 100 < n ? (n * p) / 100 : n - 1] / 1000;
}

static int interp_once(char *const *argv)
{
    pid_t pid;
    int st = 0;

    if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int invoke_destroy(sandbox_instance *in)
{
    sandbox_result r;
    int ok;

    sandbox_invoke(in, "bench", "{\"n\":1}", 7, ml_now_ms() + 10000, 1 << 20, &r);
    ok = r.status == SB_OK;
    if (!ok)
        fprintf(stderr, "invoke failed: %s\n", ml_buf_cstr(&r.payload));
    sandbox_result_free(&r);
    sandbox_destroy(in);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *runtime = argc > 1 ? argv[1] : "python3", *root = getenv("ML_ROOT");
    bool py = strcmp(runtime, "python3") == 0;
    int n = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 50;
    char *py_argv[] = { "/usr/bin/python3", "-c", "pass", NULL };
    char *node_argv[] = { "node", "-e", "0", NULL };
    char runtimes[512], dir[] = "/tmp/stem_bench_XXXXXX", path[600], err[1024], rep[2048];
    double *t[3];
    sandbox_stem_config sc = { .per_runtime = 1, .pids_max = 64 };
    sandbox_stem_pool *sp;
    FILE *f;

    ml_log_init("stem_bench", ML_LOG_WARN);
    if (n < 2 || n > 100000)
        return 2;
    for (int k = 0; k < 3; k++)
        if (!(t[k] = calloc((size_t)n, sizeof(double))))
            return 1;
    snprintf(runtimes, sizeof(runtimes), "%s/services/lambda-executor/runtimes", root ? root : ".");
    if (!mkdtemp(dir) || chmod(dir, 0755) != 0)
        return 1;
    snprintf(path, sizeof(path), "%s/%s", dir, py ? "app.py" : "app.js");
    if (!(f = fopen(path, "w")))
        return 1;
    fputs(py ? "def handler(event, context):\n    return {'ok': True, 'echo': event}\n"
             : "exports.handler = async (event) => ({ ok: true, echo: event });\n", f);
    fclose(f);
    chmod(path, 0644);
    if (sandbox_init("minilambda-bench", rep, sizeof(rep)) != ML_OK || !(sp = sandbox_stem_pool_new(&sc))) {
        fprintf(stderr, "sandbox_init: %s\n", rep);
        return 1;
    }
    sandbox_spec spec = { .runtime = runtime, .handler = "app.handler", .code_dir = dir,
                          .runtimes_dir = runtimes, .function_name = "bench",
                          .function_version = "1", .memory_mb = 128, .timeout_s = 10, .pids_max = 64 };
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < 3; j++) {
            int k = (i + j) % 3;
            sandbox_instance *in = NULL;
            double t0;
            int rc;

            if (k == 2 && sandbox_stem_wait_ready(sp, &spec, 1, 30000) != ML_OK) {
                fprintf(stderr, "no stem became ready\n");
                return 1;
            }
            t0 = bench_now_us();
            if (k == 0)
                rc = interp_once(py ? py_argv : node_argv);
            else if (k == 1)
                rc = sandbox_start(&spec, &in, err, sizeof(err)) == ML_OK ? invoke_destroy(in) : -1;
            else
                rc = sandbox_start_from_stem(sp, &spec, &in, err, sizeof(err)) == ML_OK ? invoke_destroy(in) : -1;
            t[k][i] = bench_now_us() - t0;
            if (rc != 0) {
                fprintf(stderr, "round %d path %d failed: %s\n", i, k, err);
                return 1;
            }
        }
    }
    sandbox_stem_pool_free(sp);
    unlink(path);
    rmdir(dir);
    {
        const char *names[3] = { py ? "python3 -c pass" : "node -e 0", "fresh sandbox (start+invoke)",
                                 "stem cell (start+invoke)" };
        double p50[3], p99[3];
        for (int k = 0; k < 3; k++) {
            p50[k] = pctl(t[k], n, 50);
            p99[k] = pctl(t[k], n, 99);
            printf("%-30s n=%-4d p50=%8.2f ms  p99=%8.2f ms  ratio p50 %.2fx  p99 %.2fx\n", names[k], n,
                   p50[k], p99[k], p50[k] / p50[0], p99[k] / p50[0]);
            free(t[k]);
        }
    }
    return 0;
}
