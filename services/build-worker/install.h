/* install.h — dependency installation at build time (docs/build-pipeline.md "Dependencies").
 *
 * After extraction and the handler check, a package whose root holds requirements.txt (python
 * runtimes) or package.json (node runtimes) gets its dependencies installed into the tree:
 *   pip: <the runtime's python> -m pip install --target <out> --only-binary=:all: (sdists only
 *        with MINILAMBDA_PIP_ALLOW_SDIST) --no-compile -r ... (PIP_DISABLE_PIP_VERSION_CHECK=1)
 *   npm: <the runtime's node> <npm-cli.js> ci --omit=dev (package-lock.json or
 *        npm-shrinkwrap.json), else npm install --omit=dev with a warning in the build log.
 * The installer runs under sandbox_run (shared/sandbox.h) with the host's package dirs
 * visible, the work dir's src/, out/ and home/ as the only writable binds (/work/...; the
 * work dir itself is a tmpfs of MINILAMBDA_BUILD_INSTALL_DISK_MB), and network only through the build's
 * egress proxy (egress.h) to the configured index/registry hosts. Its output is merged into
 * the tree (the package's own files win; links are dropped), restored instead from the S3
 * cache (depcache.h) when the same inputs were installed before.
 *
 * Skipped (with a build-log line saying why): no manifest file; a package that opts out with
 * minilambda.json {"build": {"install": false}}; node_modules/ already in the package
 * (vendored). */
#ifndef BW_INSTALL_H
#define BW_INSTALL_H

#include <stdbool.h>
#include <stdint.h>

#include "buildlog.h"
#include "extract.h"
#include "metrics.h"
#include "runtimes-t.h"
#include "s3.h"

struct cJSON;

/* Operator settings (build-worker environment; per-namespace overrides from a JSON file:
 * {"<namespace>": {"pip_index_url": …, "pip_extra_index_url": …, "npm_registry": …,
 * "npm_token": …}}). Strings not owned. */
typedef struct install_config {
    const char *pip_index_url;       /* MINILAMBDA_PIP_INDEX_URL (https://pypi.org/simple) */
    const char *pip_extra_index_url; /* MINILAMBDA_PIP_EXTRA_INDEX_URL ("") */
    bool pip_allow_sdist;            /* MINILAMBDA_PIP_ALLOW_SDIST (false) */
    const char *npm_registry;        /* MINILAMBDA_NPM_REGISTRY (https://registry.npmjs.org/) */
    const char *npm_token;           /* MINILAMBDA_NPM_TOKEN ("") */
    const char *ca_bundle;           /* MINILAMBDA_BUILD_CA_BUNDLE: extra CA file ("") */
    const char *egress_allow;        /* MINILAMBDA_BUILD_EGRESS_ALLOW: more host:port ("") */
    const char *namespaces_file;     /* MINILAMBDA_BUILD_REGISTRIES_FILE ("") */
    int64_t timeout_s;               /* MINILAMBDA_BUILD_INSTALL_TIMEOUT_S (300) */
    int64_t memory_mb;               /* MINILAMBDA_BUILD_INSTALL_MEMORY_MB (1024) */
    bool cache;                      /* MINILAMBDA_BUILD_DEP_CACHE (true) */
    bool enabled;                    /* MINILAMBDA_BUILD_INSTALL (true): off = pre-issue-19 */
    int64_t disk_mb;                 /* MINILAMBDA_BUILD_INSTALL_DISK_MB (1024): the work tmpfs */
    const char *npm_cli_cfg;         /* MINILAMBDA_NPM_CLI ("": realpath of npm on PATH) */
    char npm_cli[512];               /* the one used (install_config_prepare); "" if none */
    const runtimes_table *runtimes;  /* the executor's table (MINILAMBDA_RUNTIMES + discovery) */
    struct cJSON *overrides;         /* the parsed namespaces_file; owned (install_config_free) */
    metric *m_cache;                 /* minilambda_build_dep_cache_total{ecosystem,result} */
    metric *m_seconds;               /* minilambda_build_dep_install_seconds{ecosystem,source} */
    metric *m_egress;                /* minilambda_build_egress_requests_total{result} */
} install_config;

typedef struct install_job {
    const char *tree;        /* the extracted package; the installed files are merged into it */
    const char *work;        /* an empty scratch dir of this build (the installer's home) */
    const char *runtime;     /* the function's runtime name */
    const char *ns;          /* its namespace (overrides) */
    buildlog *log;           /* every step and the installer's whole output */
    s3_client *s3;           /* the cache */
} install_job;

typedef struct install_result {
    bool ran;                /* dependencies were installed or restored from the cache */
    bool cache_hit;
    bool rejected;           /* on ML_ERR: the package is at fault (fail the build); false: a
                                platform problem worth a retry */
    char error[1024];        /* on ML_ERR: for the build's error (installer lines included) */
    int64_t files, bytes, duration_ms;
} install_result;

/* Installs job's dependencies as described above. ML_OK also when there is nothing to do
 * (out->ran false). */
int install_run(const install_config *cfg, const install_job *job, install_result *out);

/* At start: reads namespaces_file into cfg->overrides (checked: an object of objects with
 * string fields among the four above) and finds npm-cli.js into cfg->npm_cli (a node without
 * npm only disables node installs). ML_ERR with err for a bad file: the worker stops. */
int install_config_prepare(install_config *cfg, char *err, size_t errlen);
/* Frees what install_config_prepare allocated. */
void install_config_free(install_config *cfg);

/* The size rule after installation: ML_ERR with a message for the user when r is over
 * lim->max_total_bytes ("the package with its dependencies is X MiB unpacked, over the 250 MiB
 * limit; largest: a (N MiB), ...", the top-level dirs of the tree, node_modules/<pkg> counted
 * apart) or over lim->max_entries. */
int install_check_size(const extract_result *r, const extract_limits *lim, char *err,
                       size_t errlen);

#endif
