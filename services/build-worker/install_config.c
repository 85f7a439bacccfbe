/* install_config.c — dependency installation's start-up settings (the per-namespace
 * registries file, npm-cli.js) and what a package asks for (detection and opt-outs); see
 * install.h and install-int.h. */
#include "install-int.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
