/* build-worker — consumes build jobs, extracts packages safely, uploads artifacts and
 * delivers build-status webhooks (see API.md). Its HTTP port serves /health and /metrics. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "consumer.h"
#include "intauth.h"
#include "log.h"
#include "outbox.h"
#include "runtimes.h"
#include "sandbox.h"
#include "service.h"
#include "topology.h"

#define MAX_BUILDERS 32
#define MAX_DISPATCHERS 8

static bw_app app;
static ml_intauth_cfg icfg;

static void register_metrics(metrics_registry *reg)
{
    static const double build_buckets[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300 };

    app.m_builds = metrics_counter(reg, "minilambda_builds_total", "Builds finished, by status.",
                                   "status");
    app.m_duration = metrics_histogram(reg, "minilambda_build_duration_seconds",
                                       "Time from claim to completed/failed (or retry).", "result",
                                       build_buckets, ML_ARRAY_LEN(build_buckets));
    app.m_rejections = metrics_counter(reg, "minilambda_build_rejections_total",
                                       "Builds failed because the package was refused (by the "
                                       "extractor, the handler check or the dependency "
                                       "installation), by reason.", "reason");
    app.m_extract_rejections = metrics_counter(reg, "minilambda_extract_rejections_total",
                                               "Hostile or invalid ZIP packages refused by the "
                                               "extractor, by reason.", "reason");
    app.m_log_failures = metrics_counter(reg, "minilambda_build_log_write_failures_total",
                                         "Build log lines that could not be stored (the build "
                                         "goes on), by reason.", "reason");
    app.install.m_cache = metrics_counter(reg, "minilambda_build_dep_cache_total",
                                          "Dependency cache lookups by ecosystem (pip, npm) and "
                                          "result (hit, miss, error).", "ecosystem,result");
    app.install.m_seconds = metrics_histogram(reg, "minilambda_build_dep_install_seconds",
                                              "Time to put a build's dependencies in place, by "
                                              "ecosystem and source (install, cache).",
                                              "ecosystem,source", build_buckets,
                                              ML_ARRAY_LEN(build_buckets));
    app.install.m_egress = metrics_counter(reg, "minilambda_build_egress_requests_total",
                                           "Requests of build sandboxes through the egress proxy, "
                                           "by result (allowed, denied).", "result");
}

/* Parses MINILAMBDA_WEBHOOK_RETRY_SCHEDULE_MS ("300,300") into seconds; 0 entries = default. */
static int parse_schedule(const char *text, double *out, size_t max, size_t *n)
{
    char copy[512], *save = NULL;
    int64_t ms;

    *n = 0;
    if (ml_strlcpy(copy, text, sizeof(copy)) != ML_OK)
        return ML_ERR;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n == max || ml_parse_int64(t, 0, 7 * 86400000LL, &ms) != ML_OK)
            return ML_ERR;
        out[(*n)++] = (double)ms / 1000.0;
    }
    return ML_OK;
}

/* Unmounts what is mounted below dir (a killed worker's installation tmpfs, install.c):
 * ml_rmtree cannot remove a mount point, and the tmpfs would hold its memory. */
static void umount_below(const char *dir)
{
    char line[2048], mnt[1024];
    size_t n = strlen(dir);
    FILE *f = fopen("/proc/self/mounts", "re");

    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "%*s %1023s", mnt) == 1 && strncmp(mnt, dir, n) == 0 && mnt[n] == '/' &&
            umount2(mnt, MNT_DETACH) == 0)
            ml_log_kv(ML_LOG_INFO, "unmounted a dead worker's installation tmpfs", "dir", mnt, NULL);
    if (f)
        fclose(f);
}

/* Each worker unpacks under <root>/w<pid>; what a killed worker left behind (w<pid> of a
 * process that no longer exists) is removed at start. */
static int prepare_scratch(void)
{
    DIR *dir;
    struct dirent *e;
    int64_t pid;
    char path[600];

    if (mkdir(app.scratch_dir, 0700) != 0 && errno != EEXIST)
        return ML_ERR;
    if ((dir = opendir(app.scratch_dir)) != NULL) {
        while ((e = readdir(dir)) != NULL) {
            if (e->d_name[0] == 'w' && ml_parse_int64(e->d_name + 1, 1, INT32_MAX, &pid) == ML_OK &&
                kill((pid_t)pid, 0) != 0 && errno == ESRCH &&
                ml_snprintf(path, sizeof(path), "%s/%s", app.scratch_dir, e->d_name) == ML_OK) {
                ml_log_kv(ML_LOG_INFO, "removing a dead worker's scratch directory", "dir", path, NULL);
                umount_below(path);
                ml_rmtree(path);
            }
        }
        closedir(dir);
    }
    if (ml_snprintf(app.scratch, sizeof(app.scratch), "%s/w%d", app.scratch_dir, (int)getpid()) != ML_OK ||
        (mkdir(app.scratch, 0700) != 0 && errno != EEXIST))
        return ML_ERR;
    return ML_OK;
}

static void *dispatcher_main(void *arg)
{
    outbox_run(arg, 50);
    return NULL;
}

/* Starts the webhook dispatcher threads; returns how many started. */
static size_t start_dispatchers(svc *s, outbox **boxes, pthread_t *threads)
{
    double schedule[OUTBOX_MAX_SCHEDULE];
    size_t nsched = 0, started = 0;
    char err[256];
    outbox_config oc = { .kind = OUTBOX_BUILD_WEBHOOKS, .db_url = app.deps.build_db_url,
                         .internal_secret = app.internal_secret, .metrics = s->metrics,
                         .ssrf = { app.allow_loopback, app.allow_private },
                         .should_stop = svc_stopping,
                         .internal_header = ml_intauth_header_line() };

    if (parse_schedule(app.retry_schedule, schedule, OUTBOX_MAX_SCHEDULE, &nsched) != ML_OK) {
        ml_log_error("MINILAMBDA_WEBHOOK_RETRY_SCHEDULE_MS must be comma-separated milliseconds");
        return 0;
    }
    if (nsched) {
        oc.schedule_s = schedule;
        oc.schedule_len = nsched;
    }
    for (int64_t i = 0; i < app.dispatchers; i++) {
        boxes[started] = outbox_new(&oc, err, sizeof(err));
        if (!boxes[started]) {
            ml_log_error("cannot start the webhook dispatcher: %s", err);
            break;
        }
        if (pthread_create(&threads[started], NULL, dispatcher_main, boxes[started]) != 0) {
            outbox_free(boxes[started]);
            break;
        }
        started++;
    }
    return started;
}

/* Appends the build-worker's own settings after the dependencies' (vars has room: 28). */
static size_t worker_cfg_vars(cfg_var *vars, size_t n)
{
    vars[n++] = (cfg_var){ "MINILAMBDA_EXECUTOR_WEBHOOK_URL", CFG_URL, "http://127.0.0.1:8081", 0, 0,
                           "http|https", "lambda-executor base URL that receives build-status webhooks",
                           &app.executor_url, false };
    vars[n++] = (cfg_var){ "MINILAMBDA_BUILD_SCRATCH_DIR", CFG_STR, "/tmp/minilambda-builds", 0, 0,
                           NULL, "where build-workers unpack packages (one subdirectory per build)",
                           &app.scratch_dir, false };
    vars[n++] = (cfg_var){ "MINILAMBDA_BUILD_CONCURRENCY", CFG_INT, "2", 1, MAX_BUILDERS, NULL,
                           "builds one build-worker runs at once", &app.concurrency, false };
    vars[n++] = (cfg_var){ "MINILAMBDA_BUILD_STALE_AFTER_S", CFG_INT, "900", 10, 86400, NULL,
                           "a build still 'building' after this long may be taken over by another worker",
                           &app.stale_after_s, false };
    vars[n++] = (cfg_var){ "MINILAMBDA_INTERNAL_WEBHOOK_SECRET", CFG_STR, NULL, 0, 0, NULL,
                           "whsec_ secret signing build-status webhooks to the lambda-executor (both sides)",
                           &app.internal_secret, true };
    vars[n++] = (cfg_var){ "MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK", CFG_BOOL, "false", 0, 0, NULL,
                           "let users' webhook URLs reach loopback addresses (local stack only)",
                           &app.allow_loopback, false };
    vars[n++] = (cfg_var){ "MINILAMBDA_WEBHOOK_ALLOW_PRIVATE", CFG_BOOL, "false", 0, 0, NULL,
                           "let users' webhook URLs reach private networks (10/8, 172.16/12, 192.168/16 ...)",
                           &app.allow_private, false };
    vars[n++] = (cfg_var){ "MINILAMBDA_WEBHOOK_RETRY_SCHEDULE_MS", CFG_STR, "", 0, 0, NULL,
                           "webhook retry delays in ms, comma-separated (empty: 5 s, 30 s, 2 min, 10 min, 1 h, 3 h, 6 h, 12 h)",
                           &app.retry_schedule, false };
    vars[n++] = (cfg_var){ "MINILAMBDA_WEBHOOK_DISPATCHERS", CFG_INT, "1", 1, MAX_DISPATCHERS, NULL,
                           "webhook delivery threads per build-worker", &app.dispatchers, false };
    n += ml_intauth_cfg_vars(&icfg, vars + n, ML_INTAUTH_CFG_VARS); /* sent with the executor's webhooks */
    return n;
}

/* Dependency installation (install.h) and the runtimes table it takes interpreters from
 * (the executor's variables, same defaults and meaning). */
static size_t install_cfg_vars(cfg_var *vars, size_t n)
{
    install_config *c = &app.install;
    const cfg_var own[] = {
        { "MINILAMBDA_BUILD_INSTALL", CFG_BOOL, "true", 0, 0, NULL,
          "install requirements.txt / package.json dependencies into the artifact (false: packages are taken as they are)",
          &c->enabled, false },
        { "MINILAMBDA_BUILD_INSTALL_TIMEOUT_S", CFG_INT, "300", 10, 3600, NULL,
          "wall-clock limit of one dependency installation", &c->timeout_s, false },
        { "MINILAMBDA_BUILD_INSTALL_MEMORY_MB", CFG_INT, "1024", 128, 16384, NULL,
          "memory limit of the installer's sandbox", &c->memory_mb, false },
        { "MINILAMBDA_BUILD_INSTALL_DISK_MB", CFG_INT, "1024", 64, 65536, NULL,
          "size of the tmpfs an installation writes to (its downloads, caches and output)", &c->disk_mb, false },
        { "MINILAMBDA_BUILD_DEP_CACHE", CFG_BOOL, "true", 0, 0, NULL,
          "reuse installed dependency trees from S3 (depcache/) when the inputs are the same", &c->cache, false },
        { "MINILAMBDA_PIP_INDEX_URL", CFG_URL, "https://pypi.org/simple", 0, 0, "http|https",
          "the PEP 503 index pip installs from (credentials allowed in the URL)", &c->pip_index_url, true },
        { "MINILAMBDA_PIP_EXTRA_INDEX_URL", CFG_STR, "", 0, 0, NULL,
          "a second pip index (empty: none)", &c->pip_extra_index_url, true },
        { "MINILAMBDA_PIP_ALLOW_SDIST", CFG_BOOL, "false", 0, 0, NULL,
          "let pip build source distributions (runs setup.py / build backends in the sandbox); false: wheels only",
          &c->pip_allow_sdist, false },
        { "MINILAMBDA_NPM_REGISTRY", CFG_URL, "https://registry.npmjs.org/", 0, 0, "http|https",
          "the npm registry", &c->npm_registry, false },
        { "MINILAMBDA_NPM_TOKEN", CFG_STR, "", 0, 0, NULL,
          "auth token for the npm registry (empty: none)", &c->npm_token, true },
        { "MINILAMBDA_NPM_CLI", CFG_STR, "", 0, 0, NULL,
          "npm-cli.js run by the runtime's node (empty: the realpath of npm on PATH)", &c->npm_cli_cfg, false },
        { "MINILAMBDA_BUILD_CA_BUNDLE", CFG_STR, "", 0, 0, NULL,
          "PEM file of CAs pip and npm trust for the index/registry (empty: their defaults)", &c->ca_bundle, false },
        { "MINILAMBDA_BUILD_EGRESS_ALLOW", CFG_STR, "", 0, 0, NULL,
          "more host:port an installation may reach besides the index/registry, comma-separated", &c->egress_allow, false },
        { "MINILAMBDA_BUILD_REGISTRIES_FILE", CFG_STR, "", 0, 0, NULL,
          "JSON file of per-namespace overrides: {\"ns\": {\"pip_index_url\", \"pip_extra_index_url\", \"npm_registry\", \"npm_token\"}}",
          &c->namespaces_file, false },
        { "MINILAMBDA_RUNTIMES", CFG_STR, "", 0, 0, NULL,
          "runtime interpreters: name=/path,... (python3.N, nodejsN.x); the rest are discovered "
          "(docs/versions.md \"Runtimes\")", &app.runtimes_cfg, false },
        { "MINILAMBDA_PYTHON", CFG_STR, "/usr/bin/python3", 0, 0, NULL,
          "the default python: the python3 runtime alias", &app.python_cfg, false },
        { "MINILAMBDA_NODE", CFG_STR, "", 0, 0, NULL,
          "the default node: the nodejs runtime alias (empty: node on the usual paths and PATH)",
          &app.node_cfg, false },
    };

    for (size_t i = 0; i < ML_ARRAY_LEN(own); i++)
        vars[n++] = own[i];
    return n;
}

/* The runtimes table, the registries file, npm and the sandbox; ML_ERR logged. */
static int start_install(void)
{
    char err[512] = "", report[512] = "";

    runtimes_init(&app.runtimes);
    if (runtimes_configure(&app.runtimes, app.runtimes_cfg, err, sizeof(err)) != ML_OK) {
        ml_log_error("MINILAMBDA_RUNTIMES: %s", err);
        return ML_ERR;
    }
    runtimes_discover(&app.runtimes, app.python_cfg, app.node_cfg, NULL, NULL);
    app.install.runtimes = &app.runtimes;
    if (install_config_prepare(&app.install, err, sizeof(err)) != ML_OK) {
        ml_log_error("MINILAMBDA_BUILD_REGISTRIES_FILE / MINILAMBDA_NPM_CLI: %s", err);
        return ML_ERR;
    }
    if (!app.install.enabled)
        return ML_OK;
    if (!app.install.npm_cli[0])
        ml_log_kv(ML_LOG_WARN, "npm-cli.js not found: node builds with a package.json will fail", NULL);
    /* installers run the package's code (setup.py, npm scripts): sandboxed like functions */
    if (sandbox_init("minilambda-build", report, sizeof(report)) != ML_OK)
        ml_log_kv(ML_LOG_ERROR, "build sandbox unavailable: dependency installation is refused",
                  "report", report, NULL);
    else if (!(sandbox_features() & SANDBOX_F_NAMESPACES))
        ml_log_kv(ML_LOG_WARN, "build sandbox without namespaces: dependency installation is refused",
                  "report", report, NULL);
    return ML_OK;
}

int main(int argc, char **argv)
{
    cfg_var vars[80]; /* room to spare: worker_cfg_vars and install_cfg_vars write without a bound check */
    size_t n = deps_cfg_vars(&app.deps, BW_NEED, vars, ML_ARRAY_LEN(vars));
    consumer builders = { &app, TOPO_BUILD_QUEUE, job_handle };
    consumer dead = { &app, TOPO_BUILD_DEAD_QUEUE, job_dead_lettered };
    pthread_t threads[MAX_BUILDERS + 1], dthreads[MAX_DISPATCHERS];
    outbox *boxes[MAX_DISPATCHERS];
    size_t nthreads = 0, ndispatchers = 0;
    char host[64] = "worker";
    svc s;
    deps d = { 0 };
    int rc = 1;

    n = worker_cfg_vars(vars, n);
    n = install_cfg_vars(vars, n);
    if (httpc_global_init() != ML_OK ||
        svc_init(&s, "build-worker", "MINILAMBDA_BUILD_WORKER_PORT", "9092", vars, n, argc,
                 argv) != ML_OK || ml_intauth_start(&icfg) != ML_OK)
        return 1;
    gethostname(host, sizeof(host) - 1);
    if (ml_snprintf(app.worker_id, sizeof(app.worker_id), "%s:%d", host, (int)getpid()) != ML_OK) {
        ml_log_error("the host name %s is too long for a worker id", host);
        goto out;
    }
    app.limits = (extract_limits){ EXTRACT_DEFAULT_MAX_ENTRIES, EXTRACT_DEFAULT_MAX_TOTAL_BYTES,
                                   EXTRACT_DEFAULT_MAX_FILE_BYTES, EXTRACT_DEFAULT_MAX_RATIO };
    register_metrics(s.metrics);
    if (start_install() != ML_OK)
        goto out;
    if (prepare_scratch() != ML_OK) {
        ml_log_error("cannot create the scratch directory under %s", app.scratch_dir);
        goto out;
    }
    if (deps_open(&d, &app.deps, BW_NEED, &topo_builds, false, &s) != ML_OK || bw_health_caps(&s) != ML_OK)
        goto out;
    for (int64_t i = 0; i < app.concurrency; i++)
        if (pthread_create(&threads[nthreads], NULL, consumer_main, &builders) == 0)
            nthreads++;
    if (pthread_create(&threads[nthreads], NULL, consumer_main, &dead) == 0)
        nthreads++;
    ndispatchers = start_dispatchers(&s, boxes, dthreads);
    rc = svc_serve(&s, NULL, 0) == ML_OK ? 0 : 1;
    svc_request_stop();
    for (size_t i = 0; i < nthreads; i++) /* each finishes the build in hand */
        pthread_join(threads[i], NULL);
    for (size_t i = 0; i < ndispatchers; i++) {
        pthread_join(dthreads[i], NULL);
        outbox_free(boxes[i]);
    }
    rmdir(app.scratch);
out:
    install_config_free(&app.install);
    deps_close(&d);
    svc_free(&s);
    return rc;
}
