/* install-int.h — the parts of dependency installation (install.h) that the unit tests
 * drive one by one: detection, the per-namespace settings, the installer's argv and
 * environment, URL helpers, the error lines picked from an installer's output, the merge.
 * Not for other rooms: job.c uses install.h only. */
#ifndef BW_INSTALL_INT_H
#define BW_INSTALL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "egress.h"
#include "install.h"

typedef enum { INSTALL_NONE = 0, INSTALL_PIP, INSTALL_NPM } install_eco;

/* "pip" | "npm" | "none" (static). */
const char *install_eco_name(install_eco eco);

typedef struct install_detection {
    install_eco eco;         /* INSTALL_NONE: nothing to install, why says so */
    bool lockfile;           /* npm: package-lock.json or npm-shrinkwrap.json present */
    const char *lockname;    /* its name (static), NULL without one */
    char why[256];           /* INSTALL_NONE: the build-log line */
    char warn[256];          /* a warning for the build log ("" if none) */
} install_detection;

/* Looks at the package root (tree) for runtime family family ("python3" | "nodejs" |
 * anything else): the manifest, the minilambda.json opt-out and a vendored node_modules/. */
void install_detect(const char *tree, const char *family, install_detection *d);

/* The registry settings for namespace ns: cfg's, each field overridden by
 * cfg->overrides[ns] when present. Strings not owned (cfg's lifetime). */
typedef struct install_settings {
    const char *pip_index_url, *pip_extra_index_url, *npm_registry, *npm_token;
} install_settings;
void install_settings_for(const install_config *cfg, const char *ns, install_settings *s);

/* "host:port" of an http(s) URL (default ports 80/443), userinfo dropped. ML_ERR when url is
 * not http(s) or has no host. */
int install_url_hostport(const char *url, char *out, size_t len);
/* url without its userinfo ("https://u:p@h/x" -> "https://h/x"), for messages and the key. */
void install_url_redact(const char *url, char *out, size_t len);

#define INSTALL_MAX_ARGS 24
#define INSTALL_MAX_ENV 24
#define INSTALL_STORE 8192

/* What the sandboxed installer runs: argv, the whole environment, the cwd, the allow-list
 * of the egress proxy and the .npmrc to write (npm with a token). Strings live in store. */
typedef struct install_plan {
    install_eco eco;
    const char *argv[INSTALL_MAX_ARGS];
    const char *env[INSTALL_MAX_ENV];
    const char *cwd;
    const char *allow[EGRESS_MAX_ALLOW];
    size_t nallow;
    char npmrc[1024];
    char index_clean[512];   /* the index / registry URL without credentials */
    char flags[128];         /* the installer flags that change the result (cache key) */
    char store[INSTALL_STORE];
    size_t used;
} install_plan;

/* The allow-list: the index / registry URLs' host:port and cfg->egress_allow's entries
 * (comma-separated host:port). ML_ERR with err for a URL that is not http(s) or too many. */
int install_plan_allow(const install_config *cfg, const install_settings *s, install_eco eco,
                       install_plan *p, char *err, size_t errlen);

/* argv and env for eco. interpreter: the runtime's (absolute); npm_cli: npm-cli.js (npm);
 * lockfile: npm ci vs npm install; port: the egress proxy's; ca_inside: the CA file as seen
 * inside the sandbox (NULL: none). ML_ERR with err when something does not fit. */
int install_plan_build(const install_config *cfg, const install_settings *s, install_eco eco,
                       const char *interpreter, const char *npm_cli, bool lockfile, int port,
                       const char *ca_inside, install_plan *p, char *err, size_t errlen);

/* True for an installer output line worth quoting in the build's error (pip's "ERROR: ...",
 * npm's "npm ERR! ..." / "npm error ..."). */
bool install_error_line(install_eco eco, const char *line, size_t n);

/* The build error's text from an installer's output (text[0..n), several lines): its
 * relevant lines (install_error_line), at most ~800 bytes, plus " (index: <index_clean>)"
 * after pip's "No matching distribution found for NAME" / npm's 404; without any relevant
 * line, the last lines of text. */
void install_error_summary(install_eco eco, const char *text, size_t n, const char *index_clean,
                           char *out, size_t len);

typedef struct install_merge_stats {
    int64_t files, bytes;    /* copied into the tree */
    int64_t links;           /* symbolic links and special files dropped */
    int64_t kept;            /* files the package already had (the package's own win) */
    char kept_names[256];    /* the first few of those, comma-separated */
} install_merge_stats;

/* Copies the regular files under src into dest (created 0755 if missing) file by file:
 * directories opened with O_NOFOLLOW relative to their parents on both sides, files created
 * with O_EXCL | O_NOFOLLOW, modes 0644/0755, links and special files dropped, an existing
 * entry of dest left alone. ML_ERR with err on an I/O problem (st as far as it went). */
int install_merge(const char *src, const char *dest, install_merge_stats *st, char *err,
                  size_t errlen);

/* "x86_64-linux-gnu-glibc2.36": what a binary wheel or a native module is built for. */
void install_platform(char *out, size_t len);

#endif
