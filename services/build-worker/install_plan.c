/* install_plan.c — what the sandboxed installer runs (argv, environment, allow-list) and what
 * its failure says; see install.h and install-int.h. Pure string work, no I/O. */
#include "install-int.h"

#include <cJSON.h>
#include <gnu/libc-version.h>
#include <stdarg.h>
#include <string.h>
#include <sys/utsname.h>

const char *install_eco_name(install_eco eco)
{
    return eco == INSTALL_PIP ? "pip" : eco == INSTALL_NPM ? "npm" : "none";
}

static const char *override(const cJSON *ns, const char *field, const char *def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ns, field);

    return cJSON_IsString(v) ? v->valuestring : def;
}

void install_settings_for(const install_config *cfg, const char *ns, install_settings *s)
{
    const cJSON *o = cfg->overrides && ns ? cJSON_GetObjectItemCaseSensitive(cfg->overrides, ns) : NULL;

    s->pip_index_url = override(o, "pip_index_url", cfg->pip_index_url ? cfg->pip_index_url : "");
    s->pip_extra_index_url = override(o, "pip_extra_index_url",
                                      cfg->pip_extra_index_url ? cfg->pip_extra_index_url : "");
    s->npm_registry = override(o, "npm_registry", cfg->npm_registry ? cfg->npm_registry : "");
    s->npm_token = override(o, "npm_token", cfg->npm_token ? cfg->npm_token : "");
}

/* Splits url into scheme length, authority start and end (userinfo skipped). */
static int url_parts(const char *url, size_t *scheme, const char **host, size_t *hostlen)
{
    const char *p = strstr(url, "://"), *a, *end, *at;

    if (!p)
        return ML_ERR;
    *scheme = (size_t)(p - url);
    a = p + 3;
    end = a + strcspn(a, "/?#");
    at = memchr(a, '@', (size_t)(end - a));
    /* the last '@' before the path ends the userinfo (a password may hold one) */
    while (at && memchr(at + 1, '@', (size_t)(end - at - 1)))
        at = memchr(at + 1, '@', (size_t)(end - at - 1));
    *host = at ? at + 1 : a;
    *hostlen = (size_t)(end - *host);
    return *hostlen ? ML_OK : ML_ERR;
}

int install_url_hostport(const char *url, char *out, size_t len)
{
    const char *host, *colon;
    size_t scheme, hl;
    bool https;

    if (!url || url_parts(url, &scheme, &host, &hl) != ML_OK)
        return ML_ERR;
    if ((scheme != 4 || strncmp(url, "http", 4) != 0) && (scheme != 5 || strncmp(url, "https", 5) != 0))
        return ML_ERR;
    https = scheme == 5;
    /* a bracketed IPv6 host keeps its brackets; the port is after the last ':' past them */
    colon = host[0] == '[' ? memchr(host, ']', hl) : host;
    colon = colon ? memchr(colon, ':', hl - (size_t)(colon - host)) : NULL;
    if (colon)
        return ml_snprintf(out, len, "%.*s", (int)hl, host);
    return ml_snprintf(out, len, "%.*s:%d", (int)hl, host, https ? 443 : 80);
}

void install_url_redact(const char *url, char *out, size_t len)
{
    const char *host;
    size_t scheme, hl;

    if (!url || url_parts(url, &scheme, &host, &hl) != ML_OK) {
        ml_strlcpy(out, url ? url : "", len);
        return;
    }
    ml_snprintf_trunc(out, len, "%.*s://%s", (int)scheme, url, host);
}

/* Copies s into the plan's store; NULL when it is full. */
static const char *keep(install_plan *p, const char *fmt, ...) ML_PRINTF(2, 3);
static const char *keep(install_plan *p, const char *fmt, ...)
{
    char *dst = p->store + p->used;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = ml_vsnprintf(dst, sizeof(p->store) - p->used, fmt, ap);
    va_end(ap);
    if (rc != ML_OK)
        return NULL;
    p->used += strlen(dst) + 1;
    return dst;
}

static int allow_url(install_plan *p, const char *what, const char *url, char *err, size_t errlen)
{
    char hp[300];
    const char *k;

    if (!url || !*url)
        return ML_OK;
    if (install_url_hostport(url, hp, sizeof(hp)) != ML_OK) {
        install_url_redact(url, hp, sizeof(hp));
        ml_snprintf_trunc(err, errlen, "%s '%s' is not an http(s) URL", what, hp);
        return ML_ERR;
    }
    for (size_t i = 0; i < p->nallow; i++)
        if (!strcmp(p->allow[i], hp))
            return ML_OK;
    if (p->nallow == EGRESS_MAX_ALLOW || !(k = keep(p, "%s", hp))) {
        ml_snprintf_trunc(err, errlen, "too many egress destinations (at most %d)", EGRESS_MAX_ALLOW);
        return ML_ERR;
    }
    p->allow[p->nallow++] = k;
    return ML_OK;
}

int install_plan_allow(const install_config *cfg, const install_settings *s, install_eco eco,
                       install_plan *p, char *err, size_t errlen)
{
    char copy[1024], *save = NULL, *t, *e;
    const char *k;

    if (eco == INSTALL_PIP && (allow_url(p, "the pip index", s->pip_index_url, err, errlen) != ML_OK ||
                               allow_url(p, "the extra pip index", s->pip_extra_index_url, err, errlen) != ML_OK))
        return ML_ERR;
    if (eco == INSTALL_NPM && allow_url(p, "the npm registry", s->npm_registry, err, errlen) != ML_OK)
        return ML_ERR;
    if (ml_strlcpy(copy, cfg->egress_allow ? cfg->egress_allow : "", sizeof(copy)) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "MINILAMBDA_BUILD_EGRESS_ALLOW is too long");
        return ML_ERR;
    }
    for (t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        e = strrchr(t, ':');
        if (!e || e == t || !e[1] || e[strspn(e + 1, "0123456789") + 1]) {
            ml_snprintf_trunc(err, errlen, "MINILAMBDA_BUILD_EGRESS_ALLOW entry '%s' is not host:port", t);
            return ML_ERR;
        }
        if (p->nallow == EGRESS_MAX_ALLOW || !(k = keep(p, "%s", t))) {
            ml_snprintf_trunc(err, errlen, "too many egress destinations (at most %d)", EGRESS_MAX_ALLOW);
            return ML_ERR;
        }
        p->allow[p->nallow++] = k;
    }
    return ML_OK;
}

/* Appends one string to a NULL-terminated vector of max slots (the last is the NULL). */
static int push(const char **vec, size_t max, const char *s)
{
    size_t n = 0;

    while (n < max && vec[n])
        n++;
    if (!s || n + 1 >= max)
        return ML_ERR;
    vec[n] = s;
    vec[n + 1] = NULL;
    return ML_OK;
}

/* The directory of an interpreter outside /usr/bin goes first on PATH (npm's scripts run
 * `node`; the sandbox shows that install dir at the same path). */
static const char *path_env(install_plan *p, const char *interpreter)
{
    const char *slash = strrchr(interpreter, '/');
    size_t dl = slash ? (size_t)(slash - interpreter) : 0;

    if (!dl || (dl == 8 && !strncmp(interpreter, "/usr/bin", 8)) || (dl == 4 && !strncmp(interpreter, "/bin", 4)))
        return keep(p, "PATH=/usr/bin:/bin");
    return keep(p, "PATH=%.*s:/usr/bin:/bin", (int)dl, interpreter);
}

static int common_env(install_plan *p, const char *interpreter, int port)
{
    static const char *const proxies[] = { "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy" };
    int rc = push(p->env, INSTALL_MAX_ENV, path_env(p, interpreter));

    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "HOME=/work/home"));
    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "LANG=C.UTF-8"));
    for (size_t i = 0; i < ML_ARRAY_LEN(proxies); i++)
        rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "%s=http://127.0.0.1:%d", proxies[i], port));
    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "NO_PROXY="));
    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "no_proxy="));
    return rc ? ML_ERR : ML_OK;
}

static int pip_plan(const install_config *cfg, const install_settings *s, const char *interpreter,
                    const char *ca_inside, install_plan *p)
{
    const char *only = cfg->pip_allow_sdist ? NULL : "--only-binary=:all:";
    int rc = 0;

    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "PIP_INDEX_URL=%s", s->pip_index_url));
    if (s->pip_extra_index_url[0])
        rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "PIP_EXTRA_INDEX_URL=%s", s->pip_extra_index_url));
    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "PIP_DISABLE_PIP_VERSION_CHECK=1"));
    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "PIP_NO_INPUT=1"));
    if (ca_inside)
        rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "PIP_CERT=%s", ca_inside));
    rc |= push(p->argv, INSTALL_MAX_ARGS, interpreter);
    rc |= push(p->argv, INSTALL_MAX_ARGS, "-m");
    rc |= push(p->argv, INSTALL_MAX_ARGS, "pip");
    rc |= push(p->argv, INSTALL_MAX_ARGS, "install");
    rc |= push(p->argv, INSTALL_MAX_ARGS, "--target");
    rc |= push(p->argv, INSTALL_MAX_ARGS, "/work/out");
    rc |= push(p->argv, INSTALL_MAX_ARGS, "--no-compile");
    if (only)
        rc |= push(p->argv, INSTALL_MAX_ARGS, only);
    rc |= push(p->argv, INSTALL_MAX_ARGS, "--no-warn-script-location");
    rc |= push(p->argv, INSTALL_MAX_ARGS, "-r");
    rc |= push(p->argv, INSTALL_MAX_ARGS, "/work/src/requirements.txt");
    p->cwd = "/work";
    if (ml_snprintf(p->flags, sizeof(p->flags), "pip install --target --no-compile%s%s",
                    only ? " " : " (sdists allowed)", only ? only : "") != ML_OK)
        return ML_ERR;
    return rc ? ML_ERR : ML_OK;
}

static int npm_plan(const install_settings *s, const char *interpreter, const char *npm_cli,
                    bool lockfile, const char *ca_inside, install_plan *p)
{
    char reg[600];
    const char *host;
    size_t scheme, hl;
    int rc = 0;

    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "npm_config_registry=%s", s->npm_registry));
    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "npm_config_cache=/work/home/.npm"));
    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "npm_config_update_notifier=false"));
    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "npm_config_fund=false"));
    rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "npm_config_audit=false"));
    if (ca_inside)
        rc |= push(p->env, INSTALL_MAX_ENV, keep(p, "npm_config_cafile=%s", ca_inside));
    p->npmrc[0] = '\0';
    if (s->npm_token[0]) {
        /* npm matches a token to the registry by "//host[:port]/path/" */
        if (url_parts(s->npm_registry, &scheme, &host, &hl) != ML_OK ||
            ml_snprintf(reg, sizeof(reg), "//%s", host) != ML_OK ||
            ml_snprintf(p->npmrc, sizeof(p->npmrc), "%s%s:_authToken=%s\n", reg,
                        reg[strlen(reg) - 1] == '/' ? "" : "/", s->npm_token) != ML_OK)
            return ML_ERR;
    }
    rc |= push(p->argv, INSTALL_MAX_ARGS, interpreter);
    rc |= push(p->argv, INSTALL_MAX_ARGS, npm_cli);
    if (lockfile) {
        rc |= push(p->argv, INSTALL_MAX_ARGS, "ci");
        rc |= push(p->argv, INSTALL_MAX_ARGS, "--omit=dev");
    } else {
        rc |= push(p->argv, INSTALL_MAX_ARGS, "install");
        rc |= push(p->argv, INSTALL_MAX_ARGS, "--omit=dev");
        rc |= push(p->argv, INSTALL_MAX_ARGS, "--no-package-lock");
    }
    p->cwd = "/work/src";
    if (ml_strlcpy(p->flags, lockfile ? "npm ci --omit=dev" : "npm install --omit=dev --no-package-lock",
                   sizeof(p->flags)) != ML_OK)
        return ML_ERR;
    return rc ? ML_ERR : ML_OK;
}

int install_plan_build(const install_config *cfg, const install_settings *s, install_eco eco,
                       const char *interpreter, const char *npm_cli, bool lockfile, int port,
                       const char *ca_inside, install_plan *p, char *err, size_t errlen)
{
    int rc;

    p->eco = eco;
    p->argv[0] = NULL;
    p->env[0] = NULL;
    install_url_redact(eco == INSTALL_PIP ? s->pip_index_url : s->npm_registry, p->index_clean,
                       sizeof(p->index_clean));
    if (common_env(p, interpreter, port) != ML_OK)
        rc = ML_ERR;
    else if (eco == INSTALL_PIP)
        rc = pip_plan(cfg, s, interpreter, ca_inside, p);
    else if (eco == INSTALL_NPM)
        rc = npm_plan(s, interpreter, npm_cli && *npm_cli ? npm_cli : NULL, lockfile, ca_inside, p);
    else
        rc = ML_ERR;
    if (rc != ML_OK)
        ml_snprintf_trunc(err, errlen, "cannot compose the %s command (settings too long?)",
                          install_eco_name(eco));
    return rc;
}

static bool starts(const char *line, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);

    return n >= k && !memcmp(line, prefix, k);
}

bool install_error_line(install_eco eco, const char *line, size_t n)
{
    if (eco == INSTALL_PIP)
        return starts(line, n, "ERROR:");
    /* npm's pointer to its debug log names a file inside the sandbox: noise for the user */
    if (memmem(line, n, "complete log of this run", 24) || memmem(line, n, "/.npm/_logs/", 12))
        return false;
    return starts(line, n, "npm ERR!") || starts(line, n, "npm error");
}

/* Appends text to out (at most cap bytes in all), "\n" between items; false once full. */
static bool add_part(char *out, size_t cap, const char *text, size_t n)
{
    size_t have = strlen(out), sep = have ? 1 : 0;

    if (have + sep + n + 1 > cap) {
        if (have + sep + 4 < cap) {
            size_t room = cap - have - sep - 4; /* "..." + NUL */
            if (sep)
                out[have++] = '\n';
            memcpy(out + have, text, room < n ? room : n);
            have += room < n ? room : n;
            memcpy(out + have, "...", 4);
        }
        return false;
    }
    if (sep)
        out[have++] = '\n';
    memcpy(out + have, text, n);
    out[have + n] = '\0';
    return true;
}

void install_error_summary(install_eco eco, const char *text, size_t n, const char *index_clean,
                           char *out, size_t len)
{
    size_t cap = len < 800 ? len : 800, i = 0, ll, start;
    const char *line, *nl;
    char idx[600];
    bool any = false, missing = false, ok = true;

    out[0] = '\0';
    while (i < n && ok) {
        line = text + i;
        nl = memchr(line, '\n', n - i);
        ll = nl ? (size_t)(nl - line) : n - i;
        i += ll + (nl ? 1 : 0);
        if (ll && line[ll - 1] == '\r')
            ll--;
        if (!install_error_line(eco, line, ll))
            continue;
        any = true;
        ok = add_part(out, cap, line, ll);
        missing |= (eco == INSTALL_PIP && memmem(line, ll, "No matching distribution found for", 34)) ||
                   (eco == INSTALL_NPM && memmem(line, ll, "is not in this registry", 23));
    }
    if (!any) { /* nothing marked: the last lines say most */
        start = n > cap - 1 ? n - (cap - 1) : 0;
        while (start > 0 && start < n && text[start - 1] != '\n')
            start++;
        ml_snprintf_trunc(out, cap, "%.*s", (int)(n - start), text + start);
        ll = strlen(out);
        while (ll && (out[ll - 1] == '\n' || out[ll - 1] == ' '))
            out[--ll] = '\0';
    }
    if (missing && index_clean && *index_clean &&
        ml_snprintf(idx, sizeof(idx), " (index: %s)", index_clean) == ML_OK &&
        strlen(out) + strlen(idx) < len)
        memcpy(out + strlen(out), idx, strlen(idx) + 1);
}

void install_platform(char *out, size_t len)
{
    struct utsname u;

    if (uname(&u) != 0)
        ml_strlcpy(u.machine, "unknown", sizeof(u.machine));
    ml_snprintf_trunc(out, len, "%s-linux-gnu-glibc%s", u.machine, gnu_get_libc_version());
}
