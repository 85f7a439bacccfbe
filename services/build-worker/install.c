/* install.c — dependency installation at build time: detection, the work tmpfs, the cache,
 * the sandboxed installer behind the egress proxy, the merge (install.h). */
#include "install-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "depcache.h"
#include "fnspec.h"
#include "log.h"
#include "runtimes.h"
#include "sandbox.h"

#define CA_INSIDE_DIR "/opt/minilambda-ca"
#define CA_INSIDE CA_INSIDE_DIR "/ca.pem"
#define MAX_INPUT_BYTES (16LL * 1024 * 1024) /* requirements.txt / package.json / lockfile */

/* ---- the installer's output into the build log ---- */

typedef struct line_sink {
    buildlog *log;
    install_eco eco;
    char line[BUILDLOG_MESSAGE_MAX - 64];
    size_t n;
    ml_buf errors;   /* the lines install_error_line picks (bounded) */
} line_sink;

static void sink_emit(line_sink *s)
{
    const char *level = "info";

    while (s->n && (s->line[s->n - 1] == '\r' || s->line[s->n - 1] == ' '))
        s->n--;
    s->line[s->n] = '\0';
    if (s->n) {
        if (install_error_line(s->eco, s->line, s->n)) {
            level = "error";
            ml_buf_append(&s->errors, s->line, s->n);
            ml_buf_append(&s->errors, "\n", 1);
        } else if (!strncmp(s->line, "WARNING:", 8) || !strncmp(s->line, "npm WARN", 8) ||
                   !strncmp(s->line, "npm warn", 8)) {
            level = "warn";
        }
        buildlog_add(s->log, level, "install", "%s", s->line);
    }
    s->n = 0;
}

static void sink_feed(void *ctx, int fd, const char *data, size_t n)
{
    line_sink *s = ctx;

    (void)fd;
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            sink_emit(s);
            continue;
        }
        s->line[s->n++] = data[i] == '\t' ? ' ' : data[i];
        if (s->n == sizeof(s->line) - 1) /* a very long line goes in pieces */
            sink_emit(s);
    }
}

static void sink_flush(void *ctx)
{
    (void)ctx; /* a partial line waits for its end (or for the run's end) */
}

/* ---- the run ---- */

typedef struct run {
    const install_config *cfg;
    const install_job *job;
    install_result *out;
    install_detection det;
    install_settings set;
    install_plan plan;
    const runtimes_entry *rt;
    char src[600], outdir[600], home[600], ca_dir[600], key[DEPCACHE_KEY_LEN], object[200];
    char inputs[3][700];
    bool mounted;
    int64_t t0;
} run;

static int fail(run *r, bool rejected, const char *fmt, ...) ML_PRINTF(3, 4);
static int fail(run *r, bool rejected, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ml_vsnprintf_trunc(r->out->error, sizeof(r->out->error), fmt, ap);
    va_end(ap);
    r->out->rejected = rejected;
    return ML_ERR;
}

/* Copies a regular file (not following links) from the tree into dir, mode 0644. */
static int copy_input(const char *tree, const char *name, const char *dir)
{
    char from[1200], to[1200], buf[16384];
    int in = -1, out = -1, rc = ML_ERR;
    int64_t total = 0;
    ssize_t n;

    if (ml_snprintf(from, sizeof(from), "%s/%s", tree, name) != ML_OK ||
        ml_snprintf(to, sizeof(to), "%s/%s", dir, name) != ML_OK)
        return ML_ERR;
    in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (in < 0 || out < 0)
        goto out;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        total += n;
        if (total > MAX_INPUT_BYTES || write(out, buf, (size_t)n) != n)
            goto out;
    }
    rc = n == 0 && fchmod(out, 0644) == 0 ? ML_OK : ML_ERR;
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

/* A tmpfs over the work dir: a hostile install fills it, not the worker's disk. Its src/,
 * out/ and home/ are the sandbox's /work/src, /work/out and /work/home (writable binds, each
 * chowned to the run's uid by sandbox_run). */
static int mount_work(run *r)
{
    char opts[64];

    if (ml_snprintf(opts, sizeof(opts), "size=%lldm,mode=0755", (long long)r->cfg->disk_mb) != ML_OK ||
        mount("tmpfs", r->job->work, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0)
        return fail(r, false, "cannot mount a tmpfs for the installation at %s: %s", r->job->work,
                    strerror(errno));
    r->mounted = true;
    if (ml_snprintf(r->src, sizeof(r->src), "%s/src", r->job->work) != ML_OK ||
        ml_snprintf(r->outdir, sizeof(r->outdir), "%s/out", r->job->work) != ML_OK ||
        ml_snprintf(r->home, sizeof(r->home), "%s/home", r->job->work) != ML_OK ||
        mkdir(r->src, 0755) != 0 || mkdir(r->outdir, 0755) != 0 || mkdir(r->home, 0755) != 0)
        return fail(r, false, "cannot prepare the installation directory %s", r->job->work);
    return ML_OK;
}

static int prepare_inputs(run *r, const char *files[4])
{
    const char *names[3] = { r->det.eco == INSTALL_PIP ? "requirements.txt" : "package.json",
                             r->det.lockname, NULL };
    size_t n = 0;

    for (size_t i = 0; names[i]; i++) {
        if (copy_input(r->job->tree, names[i], r->src) != ML_OK)
            return fail(r, true, "cannot read %s from the package (a regular file of at most 16 MiB "
                        "is needed)", names[i]);
        if (ml_snprintf(r->inputs[i], sizeof(r->inputs[i]), "%s/%s", r->src, names[i]) != ML_OK)
            return fail(r, false, "work path too long");
        files[n++] = r->inputs[i];
    }
    files[n] = NULL;
    return ML_OK;
}

/* The cache key of these inputs; the object name into r->object. */
static int cache_key(run *r, const char *const *files)
{
    char platform[128], ver[RUNTIMES_VERSION_MAX];
    depcache_key_in in = { .ecosystem = install_eco_name(r->det.eco), .runtime = r->job->runtime,
                           .platform = platform, .flags = r->plan.flags,
                           .index_url = r->plan.index_clean, .files = files };

    install_platform(platform, sizeof(platform));
    ml_strlcpy(ver, r->rt->version, sizeof(ver));
    in.interp_version = ver;
    if (depcache_key(&in, r->key) != ML_OK)
        return fail(r, false, "cannot read the installation inputs to compute the cache key");
    depcache_object(in.ecosystem, r->key, r->object, sizeof(r->object));
    return ML_OK;
}

/* The CA bundle, copied into a directory of its own that the sandbox gets read-only. */
static int prepare_ca(run *r, const char **inside)
{
    const char *bundle = r->cfg->ca_bundle, *slash;
    char dir[600], from[900], to[900];

    *inside = NULL;
    if (!bundle || !*bundle)
        return ML_OK;
    slash = strrchr(bundle, '/');
    if (ml_snprintf(r->ca_dir, sizeof(r->ca_dir), "%s.ca", r->job->work) != ML_OK ||
        (mkdir(r->ca_dir, 0755) != 0 && errno != EEXIST) || chmod(r->ca_dir, 0755) != 0) {
        r->ca_dir[0] = '\0';
        return fail(r, false, "cannot prepare the CA bundle directory");
    }
    ml_snprintf_trunc(dir, sizeof(dir), "%.*s", slash ? (int)(slash - bundle) : 1, slash ? bundle : ".");
    if (copy_input(slash == bundle ? "/" : dir, slash ? slash + 1 : bundle, r->ca_dir) != ML_OK ||
        ml_snprintf(from, sizeof(from), "%s/%s", r->ca_dir, slash ? slash + 1 : bundle) != ML_OK ||
        ml_snprintf(to, sizeof(to), "%s/ca.pem", r->ca_dir) != ML_OK ||
        (strcmp(from, to) != 0 && rename(from, to) != 0))
        return fail(r, false, "cannot read MINILAMBDA_BUILD_CA_BUNDLE %s", bundle);
    *inside = CA_INSIDE;
    return ML_OK;
}

/* Writes the token's /work/home/.npmrc (npm's user config; readable by the run's uid). */
static int write_npmrc(run *r)
{
    char path[700];
    int fd;
    size_t n = strlen(r->plan.npmrc);

    if (!n)
        return ML_OK;
    if (ml_snprintf(path, sizeof(path), "%s/.npmrc", r->home) != ML_OK ||
        (fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)) < 0)
        return fail(r, false, "cannot write the npm configuration");
    if (write(fd, r->plan.npmrc, n) != (ssize_t)n) {
        close(fd);
        return fail(r, false, "cannot write the npm configuration");
    }
    close(fd);
    return ML_OK;
}

/* Counts the proxy's requests and logs the refused ones; their targets into denied ("" if none). */
static void count_egress(run *r, egress *e, char *denied, size_t len)
{
    denied[0] = '\0';
    if (!e)
        return;
    if (r->cfg->m_egress) {
        metric_add(r->cfg->m_egress, (const char *[]){ "allowed" }, (double)egress_allowed(e));
        metric_add(r->cfg->m_egress, (const char *[]){ "denied" }, (double)egress_denied(e));
    }
    if (egress_denied(e) <= 0)
        return;
    egress_denied_targets(e, denied, len);
    if (!denied[0])
        ml_strlcpy(denied, "?", len);
    buildlog_add(r->job->log, "warn", "install", "network access refused during the installation "
                 "(%lld request(s)): %s (only the configured index/registry is reachable)",
                 (long long)egress_denied(e), denied);
}

/* Runs the installer in the sandbox behind a fresh egress proxy. */
static int run_installer(run *r)
{
    char err[512] = "", why[900], denied[256], net[320] = "";
    const char *ca = NULL;
    egress_allow allow = { r->plan.allow, r->plan.nallow };
    egress *e = NULL;
    sandbox_bind binds[4];
    size_t nb = 0;
    sandbox_run_result res = { 0 };
    line_sink sink = { .log = r->job->log, .eco = r->det.eco };
    sandbox_sink ss = { sink_feed, sink_flush, &sink };
    sandbox_run_spec spec = { 0 };
    int rc = ML_ERR;

    ml_buf_init(&sink.errors, 16 * 1024);
    if (prepare_ca(r, &ca) != ML_OK)
        goto out;
    if (egress_start(&allow, &e, err, sizeof(err)) != ML_OK) {
        fail(r, false, "cannot start the build's egress proxy: %s", err);
        goto out;
    }
    if (install_plan_build(r->cfg, &r->set, r->det.eco, r->rt->interpreter, r->cfg->npm_cli,
                           r->det.lockfile, egress_port(e), ca, &r->plan, err, sizeof(err)) != ML_OK) {
        fail(r, false, "%s", err);
        goto out;
    }
    if (write_npmrc(r) != ML_OK)
        goto out;
    /* sandbox_run binds strictly below /work: one bind per directory the installer uses */
    binds[nb++] = (sandbox_bind){ r->src, "/work/src", true };
    binds[nb++] = (sandbox_bind){ r->outdir, "/work/out", true };
    binds[nb++] = (sandbox_bind){ r->home, "/work/home", true };
    if (ca)
        binds[nb++] = (sandbox_bind){ r->ca_dir, CA_INSIDE_DIR, false };
    spec = (sandbox_run_spec){ .argv = r->plan.argv, .env = r->plan.env, .cwd = r->plan.cwd,
                               .binds = binds, .nbinds = nb, .interpreter = r->rt->interpreter,
                               .host_packages = true, .join_netns = true,
                               .netns_fd = egress_netns_fd(e), .memory_mb = r->cfg->memory_mb,
                               .timeout_ms = r->cfg->timeout_s * 1000, .log = &ss };
    buildlog_add(r->job->log, "info", "install", "running %s in the build sandbox (network: %zu "
                 "allowed destination(s))", r->plan.flags, r->plan.nallow);
    if (sandbox_run(&spec, &res, err, sizeof(err)) != ML_OK) {
        fail(r, false, "cannot start the installer: %s", err);
        goto out;
    }
    sink_emit(&sink); /* a last line without its newline */
    count_egress(r, e, denied, sizeof(denied));
    if (denied[0])
        ml_snprintf_trunc(net, sizeof(net), "; network access refused: %s", denied);
    install_error_summary(r->det.eco, sink.errors.len ? sink.errors.data : ml_buf_cstr(&res.tail),
                          sink.errors.len ? sink.errors.len : res.tail.len, r->plan.index_clean,
                          why, sizeof(why));
    if (res.timed_out)
        fail(r, true, "dependency installation timed out after %lld s%s%s%s", (long long)r->cfg->timeout_s,
             net, why[0] ? ":\n" : "", why);
    else if (res.oom)
        fail(r, true, "dependency installation ran out of memory (%lld MiB)%s%s%s",
             (long long)r->cfg->memory_mb, net, why[0] ? ":\n" : "", why);
    else if (res.exit_code != 0)
        fail(r, true, "dependency installation failed (%s exited with %d)%s%s%s",
             install_eco_name(r->det.eco), res.exit_code, net, why[0] ? ":\n" : "", why);
    else
        rc = ML_OK;
    buildlog_add(r->job->log, rc == ML_OK ? "info" : "error", "install",
                 "the installer %s in %lld ms (peak memory %lld MiB)",
                 rc == ML_OK ? "finished" : "failed", (long long)res.duration_ms,
                 (long long)(res.max_memory_bytes / (1024 * 1024)));
out:
    egress_stop(e);
    sandbox_run_result_free(&res);
    ml_buf_free(&sink.errors);
    if (r->ca_dir[0])
        ml_rmtree(r->ca_dir);
    return rc;
}

/* The installed tree as the installer left it (npm: node_modules of /work/src). */
static const char *installed_dir(run *r, char *buf, size_t len)
{
    if (r->det.eco == INSTALL_NPM)
        ml_snprintf_trunc(buf, len, "%s/node_modules", r->src);
    else
        ml_strlcpy(buf, r->outdir, len);
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) /* nothing installed: nothing to merge */
        return NULL;
    return buf;
}

/* True when dir holds nothing (an install with no dependencies: nothing worth caching). */
static bool dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool empty = true;

    while (d && empty && (e = readdir(d)) != NULL)
        empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    if (d)
        closedir(d);
    return empty;
}

static void observe(run *r, const char *source, const char *result)
{
    const char *eco = install_eco_name(r->det.eco);

    if (r->cfg->m_cache && result)
        metric_inc(r->cfg->m_cache, (const char *[]){ eco, result });
    if (r->cfg->m_seconds && source)
        metric_observe(r->cfg->m_seconds, (const char *[]){ eco, source },
                       (double)(ml_now_ms() - r->t0) / 1000.0);
}

/* Cache, else installer (then cache), then the merge. */
static int install_and_merge(run *r)
{
    char err[512] = "", dir[700], dest[700];
    const char *files[4], *from;
    install_merge_stats st;
    int missing = 0;

    if (prepare_inputs(r, files) != ML_OK || cache_key(r, files) != ML_OK)
        return ML_ERR;
    if (r->cfg->cache && r->job->s3) {
        /* on a failure depcache_get leaves out/ empty again */
        if (depcache_get(r->job->s3, r->object, r->outdir, &missing, err, sizeof(err)) != ML_OK) {
            if (!missing)
                buildlog_add(r->job->log, "warn", "install", "dependency cache unusable (installing "
                             "instead): %s", err);
            observe(r, NULL, missing ? "miss" : "error");
        } else {
            r->out->cache_hit = true;
        }
    }
    if (r->out->cache_hit) {
        from = r->outdir;
    } else {
        if (run_installer(r) != ML_OK)
            return ML_ERR;
        if (!(from = installed_dir(r, dir, sizeof(dir))))
            return fail(r, false, "cannot read the installed tree: %s", strerror(errno));
        if (r->cfg->cache && r->job->s3 && !dir_empty(from) &&
            depcache_put(r->job->s3, r->object, from, err, sizeof(err)) != ML_OK)
            buildlog_add(r->job->log, "warn", "install", "dependencies not cached: %s", err);
    }
    if (ml_snprintf(dest, sizeof(dest), "%s%s", r->job->tree,
                    r->det.eco == INSTALL_NPM ? "/node_modules" : "") != ML_OK)
        return fail(r, false, "tree path too long");
    if (install_merge(from, dest, &st, err, sizeof(err)) != ML_OK)
        return fail(r, false, "cannot merge the dependencies into the package: %s", err);
    r->out->files = st.files;
    r->out->bytes = st.bytes;
    r->out->ran = true;
    r->out->duration_ms = ml_now_ms() - r->t0;
    observe(r, r->out->cache_hit ? "cache" : "install", r->out->cache_hit ? "hit" : NULL);
    if (r->out->cache_hit)
        buildlog_add(r->job->log, "info", "install", "dependencies restored from the cache (key %.12s, "
                     "%lld files, %lld bytes, %lld ms)", r->key, (long long)st.files,
                     (long long)st.bytes, (long long)r->out->duration_ms);
    else
        buildlog_add(r->job->log, "info", "install", "dependencies installed: %lld files, %lld bytes "
                     "in %lld ms (cache key %.12s)", (long long)st.files, (long long)st.bytes,
                     (long long)r->out->duration_ms, r->key);
    if (st.links)
        buildlog_add(r->job->log, "warn", "install", "%lld symbolic link(s) or special file(s) in the "
                     "installed tree dropped (an artifact holds regular files only)", (long long)st.links);
    if (st.kept)
        buildlog_add(r->job->log, "warn", "install", "%lld installed file(s) not merged: the package's "
                     "own files win (%s%s)", (long long)st.kept, st.kept_names, st.kept > 3 ? ", ..." : "");
    return ML_OK;
}

/* What must hold before anything is mounted or run. */
static int preflight(run *r)
{
    char err[512] = "";

    r->rt = r->cfg->runtimes ? runtimes_find(r->cfg->runtimes, r->job->runtime) : NULL;
    if (!r->rt || !r->rt->available || !r->rt->interpreter[0])
        return fail(r, false, "runtime %s has no interpreter on this build-worker: cannot install "
                    "its dependencies", r->job->runtime);
    if (r->det.eco == INSTALL_NPM && !r->cfg->npm_cli[0])
        return fail(r, false, "npm is not installed on this build-worker (set MINILAMBDA_NPM_CLI)");
    if (!(sandbox_features() & SANDBOX_F_NAMESPACES))
        return fail(r, true, "dependency installation is refused on this build-worker: its sandbox "
                    "has no namespaces, and an installer runs the package's code; vendor the "
                    "dependencies in the ZIP or add minilambda.json {\"build\": {\"install\": false}}");
    install_settings_for(r->cfg, r->job->ns, &r->set);
    if (install_plan_allow(r->cfg, &r->set, r->det.eco, &r->plan, err, sizeof(err)) != ML_OK)
        return fail(r, false, "%s", err);
    /* the flags and the redacted index for the cache key (the full plan needs the proxy) */
    return install_plan_build(r->cfg, &r->set, r->det.eco, r->rt->interpreter,
                              r->cfg->npm_cli[0] ? r->cfg->npm_cli : "npm", r->det.lockfile, 0,
                              NULL, &r->plan, err, sizeof(err)) == ML_OK ? ML_OK : fail(r, false, "%s", err);
}

int install_run(const install_config *cfg, const install_job *job, install_result *out)
{
    run *r = calloc(1, sizeof(*r));
    int rc = ML_ERR;

    memset(out, 0, sizeof(*out));
    if (!r) {
        ml_strlcpy(out->error, "out of memory", sizeof(out->error));
        return ML_ERR;
    }
    r->cfg = cfg, r->job = job, r->out = out, r->t0 = ml_now_ms();
    install_detect(job->tree, fnspec_runtime_family(job->runtime), &r->det);
    if (r->det.eco != INSTALL_NONE && !cfg->enabled) {
        buildlog_add(job->log, "info", "install", "dependency installation is off on this platform "
                     "(MINILAMBDA_BUILD_INSTALL=false): %s left as is",
                     r->det.eco == INSTALL_PIP ? "requirements.txt" : "package.json");
        rc = ML_OK;
        goto out;
    }
    if (r->det.warn[0])
        buildlog_add(job->log, "warn", "install", "%s", r->det.warn);
    if (r->det.eco == INSTALL_NONE) {
        if (r->det.why[0] && strncmp(r->det.why, "no dependency installation for", 30) != 0)
            buildlog_add(job->log, "info", "install", "%s", r->det.why);
        rc = ML_OK;
        goto out;
    }
    if (preflight(r) != ML_OK || mount_work(r) != ML_OK)
        goto out;
    rc = install_and_merge(r);
out:
    if (r->mounted && umount2(job->work, MNT_DETACH) != 0)
        ml_log_kv(ML_LOG_WARN, "cannot unmount the installation tmpfs", "dir", job->work, NULL);
    if (rc != ML_OK)
        buildlog_add(job->log, "error", "install", "%s", out->error);
    free(r);
    return rc;
}
