/* sandbox_bench.c — cold start and warm round trip of sandboxed instances (not a test).
 *
 *   sandbox_bench [runtime] [cold_runs] [warm_runs]     (defaults: python3 50 5000)
 *
 * Cold start = sandbox_start (namespaces, mounts, cgroups, exec, handler import, "ready")
 * plus the first invocation; warm = one sandbox_invoke round trip on a live instance.
 * Runs as root from the repository root (or with ML_ROOT set). Prints p50/p90/p99/max.
 * SANDBOX_BENCH_NETWORK=1: network instances in their own namespaces (netns.h, pool of 4,
 * refilled between cold starts outside the timing: docs/network.md); =alt: every other cold
 * start with network, the two reported apart (the difference survives a noisy machine). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "netns.h"
#include "sandbox.h"
#include "benchtime.h"

static void report(const char *what, double *v, int64_t n64)
{
    int n = (int)n64;

    qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
    printf("%-28s n=%-6d p50=%8.3f ms  p90=%8.3f ms  p99=%8.3f ms  max=%8.3f ms\n", what, n,
           v[n / 2] / 1000, v[n * 9 / 10] / 1000, v[n * 99 / 100] / 1000, v[n - 1] / 1000);
}

static int write_code(const char *dir, const char *runtime)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, strcmp(runtime, "python3") == 0 ? "app.py" : "app.js");
    if (!(f = fopen(path, "w")))
        return -1;
    if (strcmp(runtime, "python3") == 0)
        fputs("def handler(event, context):\n    return {'ok': True, 'echo': event}\n", f);
    else
        fputs("exports.handler = async (event) => ({ ok: true, echo: event });\n", f);
    return fclose(f);
}

static int invoke_once(sandbox_instance *in, int i)
{
    sandbox_result r;
    char id[32];
    int ok;

    snprintf(id, sizeof(id), "bench-%d", i);
    sandbox_invoke(in, id, "{\"n\":1}", 7, ml_now_ms() + 10000, 1 << 20, &r);
    ok = r.status == SB_OK;
    if (!ok)
        fprintf(stderr, "invoke failed: %s\n", ml_buf_cstr(&r.payload));
    sandbox_result_free(&r);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *runtime = argc > 1 ? argv[1] : "python3";
    int64_t cold = 50, warm = 5000;
    const char *root = getenv("ML_ROOT"), *net = getenv("SANDBOX_BENCH_NETWORK");
    bool alt = net && strcmp(net, "alt") == 0;
    char runtimes[512], dir[] = "/tmp/sandbox_bench_XXXXXX", err[1024], rep[2048];
    double *cs, *st, *ws;
    sandbox_instance *in = NULL;

    if ((argc > 2 && ml_parse_int64(argv[2], 1, 100000, &cold) != ML_OK) ||
        (argc > 3 && ml_parse_int64(argv[3], 1, 10000000, &warm) != ML_OK)) {
        fprintf(stderr, "usage: sandbox_bench [runtime] [cold_runs] [warm_runs]\n");
        return 2;
    }
    cs = calloc((size_t)cold, sizeof(double));
    st = calloc((size_t)cold, sizeof(double));
    ws = calloc((size_t)(warm > cold ? warm : cold), sizeof(double));

    ml_log_init("sandbox_bench", ML_LOG_WARN);
    snprintf(runtimes, sizeof(runtimes), "%s/services/lambda-executor/runtimes", root ? root : ".");
    if (!cs || !st || !ws || !mkdtemp(dir) || chmod(dir, 0755) != 0 ||
        write_code(dir, runtime) != 0)
        return 1;
    if (sandbox_init("minilambda-bench", rep, sizeof(rep)) != ML_OK) {
        fprintf(stderr, "sandbox_init: %s\n", rep);
        return 1;
    }
    printf("%s\n", rep);
    if (getenv("SANDBOX_BENCH_NETWORK") && netns_init(&(netns_config){ .pool = 4 }, err, sizeof(err)) != ML_OK) {
        fprintf(stderr, "netns_init: %s\n", err);
        return 1;
    }
    sandbox_spec spec = { .runtime = runtime, .handler = "app.handler", .code_dir = dir,
                          .runtimes_dir = runtimes, .function_name = "bench",
                          .function_version = "1", .memory_mb = 128, .timeout_s = 10,
                          .pids_max = 64, .network = getenv("SANDBOX_BENCH_NETWORK") != NULL };
    for (int i = 0; i < (int)cold; i++) {
        double t0, t1;
        for (size_t ready = 0; netns_enabled() && ready < 4; usleep(1000)) {
            uint64_t made, us;
            netns_stats(&made, &us, &ready);
        }
        if (alt)
            spec.network = i % 2;
        t0 = bench_now_us();
        if (sandbox_start(&spec, &in, err, sizeof(err)) != ML_OK) {
            fprintf(stderr, "start: %s\n", err);
            return 1;
        }
        t1 = bench_now_us();
        if (invoke_once(in, i) != 0)
            return 1;
        st[i] = t1 - t0;
        cs[i] = bench_now_us() - t0;
        if (i + 1 < cold)
            sandbox_destroy(in);
    }
    for (int i = 0; i < (int)warm; i++) {
        double t0 = bench_now_us();
        if (invoke_once(in, i) != 0)
            return 1;
        ws[i] = bench_now_us() - t0;
    }
    sandbox_destroy(in);
    netns_shutdown();
    if (alt) {
        int64_t half = cold / 2;
        for (int64_t i = 0; i < half; i++)   /* even runs first (off), odd runs after (on) */
            cs[i] = st[2 * i], ws[i] = st[2 * i + 1];
        report("start, network off", cs, half);
        report("start, network on", ws, half);
        return 0;
    }
    report("start (ready)", st, cold);
    report("cold start (ready + invoke)", cs, cold);
    report("warm invoke", ws, warm);
    snprintf(err, sizeof(err), "%s/%s", dir, strcmp(runtime, "python3") == 0 ? "app.py" : "app.js");
    unlink(err);
    rmdir(dir);
    free(cs);
    free(st);
    free(ws);
    return 0;
}
