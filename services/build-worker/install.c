/* install.c — dependency installation at build time: detection, the work tmpfs, the cache,
 * the sandboxed installer behind the egress proxy, the merge (install.h). */
#include "install-int.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

/* ---- configuration ---- */

static int read_small(const char *path, ml_buf *out, char *err, size_t errlen)
{
    char chunk[8192];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        ml_snprintf_trunc(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return ML_ERR;
    }
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        if (ml_buf_append(out, chunk, (size_t)n) != ML_OK) {
            close(fd);
            ml_snprintf_trunc(err, errlen, "%s is too large", path);
            return ML_ERR;
        }
    close(fd);
    if (n < 0) {
        ml_snprintf_trunc(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return ML_ERR;
    }
    return ML_OK;
}

/* Checks the registries file: {"<ns>": {"pip_index_url": "http(s)://...", ...}}. */
static int check_overrides(const cJSON *o, const char *path, char *err, size_t errlen)
{
    static const char *const fields[] = { "pip_index_url", "pip_extra_index_url", "npm_registry",
                                          "npm_token" };
    const cJSON *ns, *f;
    char hp[300];
    size_t i;

    if (!cJSON_IsObject(o)) {
        ml_snprintf_trunc(err, errlen, "%s: expected a JSON object of namespaces", path);
        return ML_ERR;
    }
    cJSON_ArrayForEach(ns, o) {
        if (!cJSON_IsObject(ns)) {
            ml_snprintf_trunc(err, errlen, "%s: namespace '%s' must map to an object", path, ns->string);
            return ML_ERR;
        }
        cJSON_ArrayForEach(f, ns) {
            for (i = 0; i < ML_ARRAY_LEN(fields) && strcmp(f->string, fields[i]); i++)
                ;
            if (i == ML_ARRAY_LEN(fields) || !cJSON_IsString(f)) {
                ml_snprintf_trunc(err, errlen, "%s: namespace '%s': '%s' is not a known string setting "
                                  "(pip_index_url, pip_extra_index_url, npm_registry, npm_token)",
                                  path, ns->string, f->string);
                return ML_ERR;
            }
            if (i < 3 && *f->valuestring && install_url_hostport(f->valuestring, hp, sizeof(hp)) != ML_OK) {
                ml_snprintf_trunc(err, errlen, "%s: namespace '%s': %s is not an http(s) URL", path,
                                  ns->string, f->string);
                return ML_ERR;
            }
        }
    }
    return ML_OK;
}

/* npm-cli.js: MINILAMBDA_NPM_CLI, else the realpath of npm on PATH when it is a .js file. */
static void find_npm_cli(install_config *cfg)
{
    char cand[PATH_MAX], real[PATH_MAX], copy[4096], *save = NULL;
    const char *path = getenv("PATH");
    size_t n;

    cfg->npm_cli[0] = '\0';
    if (cfg->npm_cli_cfg && *cfg->npm_cli_cfg) {
        if (realpath(cfg->npm_cli_cfg, real))
            ml_strlcpy(cfg->npm_cli, real, sizeof(cfg->npm_cli));
        return;
    }
    if (ml_strlcpy(copy, path && *path ? path : "/usr/local/bin:/usr/bin:/bin", sizeof(copy)) != ML_OK)
        return;
    for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        if (ml_snprintf(cand, sizeof(cand), "%s/npm", d) != ML_OK || access(cand, X_OK) != 0 ||
            !realpath(cand, real))
            continue;
        n = strlen(real);
        if (n > 3 && !strcmp(real + n - 3, ".js"))
            ml_strlcpy(cfg->npm_cli, real, sizeof(cfg->npm_cli));
        return;
    }
}

int install_config_prepare(install_config *cfg, char *err, size_t errlen)
{
    ml_buf text;
    int rc = ML_ERR;

    ml_buf_init(&text, 4 * 1024 * 1024);
    cfg->overrides = NULL;
    find_npm_cli(cfg);
    if (cfg->npm_cli_cfg && *cfg->npm_cli_cfg && !cfg->npm_cli[0]) {
        ml_snprintf_trunc(err, errlen, "MINILAMBDA_NPM_CLI: %s does not exist", cfg->npm_cli_cfg);
        goto out;
    }
    if (!cfg->namespaces_file || !*cfg->namespaces_file) {
        rc = ML_OK;
        goto out;
    }
    if (read_small(cfg->namespaces_file, &text, err, errlen) != ML_OK)
        goto out;
    cfg->overrides = cJSON_ParseWithLength(text.data ? text.data : "", text.len);
    if (!cfg->overrides) {
        ml_snprintf_trunc(err, errlen, "%s is not valid JSON", cfg->namespaces_file);
        goto out;
    }
    rc = check_overrides(cfg->overrides, cfg->namespaces_file, err, errlen);
out:
    if (rc != ML_OK)
        install_config_free(cfg);
    ml_buf_free(&text);
    return rc;
}

void install_config_free(install_config *cfg)
{
    cJSON_Delete(cfg->overrides);
    cfg->overrides = NULL;
}

/* ---- detection ---- */

static bool is_file(const char *tree, const char *name)
{
    char p[1200];
    struct stat st;

    return ml_snprintf(p, sizeof(p), "%s/%s", tree, name) == ML_OK && lstat(p, &st) == 0 &&
           S_ISREG(st.st_mode);
}

/* minilambda.json {"build": {"install": false}}; a malformed file is warned about, not obeyed. */
static bool opted_out(const char *tree, install_detection *d)
{
    char p[1200], err[256];
    const cJSON *b, *i;
    cJSON *doc = NULL;
    ml_buf text;
    bool out = false;

    if (!is_file(tree, "minilambda.json") || ml_snprintf(p, sizeof(p), "%s/minilambda.json", tree) != ML_OK)
        return false;
    ml_buf_init(&text, 1024 * 1024);
    if (read_small(p, &text, err, sizeof(err)) != ML_OK ||
        !(doc = cJSON_ParseWithLength(text.data ? text.data : "", text.len))) {
        ml_snprintf_trunc(d->warn, sizeof(d->warn), "minilambda.json is not valid JSON: ignored");
        goto out;
    }
    b = cJSON_GetObjectItemCaseSensitive(doc, "build");
    i = cJSON_GetObjectItemCaseSensitive(b, "install");
    out = cJSON_IsFalse(i);
out:
    cJSON_Delete(doc);
    ml_buf_free(&text);
    return out;
}

void install_detect(const char *tree, const char *family, install_detection *d)
{
    char p[1200];
    struct stat st;
    const char *manifest;

    memset(d, 0, sizeof(*d));
    if (family && !strcmp(family, "python3")) {
        d->eco = INSTALL_PIP, manifest = "requirements.txt";
    } else if (family && !strcmp(family, "nodejs")) {
        d->eco = INSTALL_NPM, manifest = "package.json";
    } else {
        ml_snprintf_trunc(d->why, sizeof(d->why), "no dependency installation for runtime family %s",
                          family ? family : "unknown");
        return;
    }
    if (!is_file(tree, manifest)) {
        ml_snprintf_trunc(d->why, sizeof(d->why), "no %s at the package root: nothing to install", manifest);
        d->eco = INSTALL_NONE;
        return;
    }
    if (opted_out(tree, d)) {
        ml_snprintf_trunc(d->why, sizeof(d->why), "%s not installed: minilambda.json says "
                          "{\"build\": {\"install\": false}}", manifest);
        d->eco = INSTALL_NONE;
        return;
    }
    if (d->eco == INSTALL_NPM && ml_snprintf(p, sizeof(p), "%s/node_modules", tree) == ML_OK &&
        lstat(p, &st) == 0) {
        ml_snprintf_trunc(d->why, sizeof(d->why), "node_modules/ is in the package (vendored): "
                          "package.json not installed");
        d->eco = INSTALL_NONE;
        return;
    }
    if (d->eco == INSTALL_NPM) {
        d->lockname = is_file(tree, "package-lock.json") ? "package-lock.json"
                      : is_file(tree, "npm-shrinkwrap.json") ? "npm-shrinkwrap.json" : NULL;
        d->lockfile = d->lockname != NULL;
        if (!d->lockfile)
            ml_snprintf_trunc(d->warn, sizeof(d->warn), "no package-lock.json or npm-shrinkwrap.json: "
                              "running npm install (versions are resolved now, not pinned; commit a "
                              "lockfile for reproducible builds)");
    }
}

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
    char src[600], outdir[600], ca_dir[600], key[DEPCACHE_KEY_LEN], object[200];
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

/* A tmpfs over the work dir: a hostile install fills it, not the worker's disk. */
static int mount_work(run *r)
{
    char opts[64];

    if (ml_snprintf(opts, sizeof(opts), "size=%lldm,mode=0755", (long long)r->cfg->disk_mb) != ML_OK ||
        mount("tmpfs", r->job->work, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0)
        return fail(r, false, "cannot mount a tmpfs for the installation at %s: %s", r->job->work,
                    strerror(errno));
    r->mounted = true;
    /* npm writes node_modules into /work/src as the sandbox's uid */
    if (ml_snprintf(r->src, sizeof(r->src), "%s/src", r->job->work) != ML_OK ||
        ml_snprintf(r->outdir, sizeof(r->outdir), "%s/out", r->job->work) != ML_OK ||
        mkdir(r->src, 0755) != 0 || chmod(r->src, 0777) != 0)
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

/* Writes the token's .npmrc (npm_config_userconfig points at it). */
static int write_npmrc(run *r)
{
    char path[700];
    int fd;
    size_t n = strlen(r->plan.npmrc);

    if (!n)
        return ML_OK;
    if (ml_snprintf(path, sizeof(path), "%s/npmrc", r->job->work) != ML_OK ||
        (fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)) < 0)
        return fail(r, false, "cannot write the npm configuration");
    if (write(fd, r->plan.npmrc, n) != (ssize_t)n) {
        close(fd);
        return fail(r, false, "cannot write the npm configuration");
    }
    close(fd);
    return ML_OK;
}

static void count_egress(run *r, egress *e)
{
    char denied[512];

    if (!e)
        return;
    if (r->cfg->m_egress) {
        metric_add(r->cfg->m_egress, (const char *[]){ "allowed" }, (double)egress_allowed(e));
        metric_add(r->cfg->m_egress, (const char *[]){ "denied" }, (double)egress_denied(e));
    }
    egress_denied_targets(e, denied, sizeof(denied));
    if (egress_denied(e) > 0)
        buildlog_add(r->job->log, "warn", "install", "network access refused during the installation "
                     "(%lld request(s)): %s (only the configured index/registry is reachable)",
                     (long long)egress_denied(e), denied[0] ? denied : "?");
}

/* Runs the installer in the sandbox behind a fresh egress proxy. */
static int run_installer(run *r)
{
    char err[512] = "", why[900];
    const char *ca = NULL;
    egress_allow allow = { r->plan.allow, r->plan.nallow };
    egress *e = NULL;
    sandbox_bind binds[2];
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
    if (r->plan.npmrc[0] && (write_npmrc(r) != ML_OK || 
        install_plan_env_add(&r->plan, "npm_config_userconfig=/work/npmrc") != ML_OK))
        goto out;
    binds[nb++] = (sandbox_bind){ r->job->work, "/work", true };
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
    count_egress(r, e);
    install_error_summary(r->det.eco, sink.errors.len ? sink.errors.data : ml_buf_cstr(&res.tail),
                          sink.errors.len ? sink.errors.len : res.tail.len, r->plan.index_clean,
                          why, sizeof(why));
    if (res.timed_out)
        fail(r, true, "dependency installation timed out after %lld s%s%s", (long long)r->cfg->timeout_s,
             why[0] ? ":\n" : "", why);
    else if (res.oom)
        fail(r, true, "dependency installation ran out of memory (%lld MiB)%s%s",
             (long long)r->cfg->memory_mb, why[0] ? ":\n" : "", why);
    else if (res.exit_code != 0)
        fail(r, true, "dependency installation failed (%s exited with %d)%s%s",
             install_eco_name(r->det.eco), res.exit_code, why[0] ? ":\n" : "", why);
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
        if (mkdir(r->outdir, 0755) != 0 ||
            depcache_get(r->job->s3, r->object, r->outdir, &missing, err, sizeof(err)) != ML_OK) {
            if (!missing)
                buildlog_add(r->job->log, "warn", "install", "dependency cache unusable (installing "
                             "instead): %s", err[0] ? err : strerror(errno));
            observe(r, NULL, missing ? "miss" : "error");
            ml_rmtree(r->outdir); /* pip creates it as the sandbox's uid */
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
        if (r->cfg->cache && r->job->s3 &&
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
