/* runtimes.c — the runtimes table: configuration, discovery by probing, lookup, and its
 * GET /runtimes document (see runtimes.h). */
#include "runtimes.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fnspec.h"
#include "ml.h"

#define PROBE_TIMEOUT_MS 5000

extern char **environ;

void runtimes_init(runtimes_table *t)
{
    const char *name;

    memset(t, 0, sizeof(*t));
    for (size_t i = 0; (name = fnspec_runtime_name(i)) && t->n < RUNTIMES_MAX; i++) {
        runtimes_entry *e = &t->e[t->n++];
        ml_strlcpy(e->name, name, sizeof(e->name));
        e->family = fnspec_runtime_family(name);
        ml_strlcpy(e->why, "not installed", sizeof(e->why));
    }
}

const runtimes_entry *runtimes_find(const runtimes_table *t, const char *name)
{
    for (size_t i = 0; name && i < t->n; i++)
        if (strcmp(t->e[i].name, name) == 0)
            return &t->e[i];
    return NULL;
}

int runtimes_available(const runtimes_table *t, const char *name)
{
    const runtimes_entry *e = runtimes_find(t, name);

    return e && e->available ? ML_OK : ML_ERR;
}

/* One "name=/path" item of MINILAMBDA_RUNTIMES (n bytes at item). */
static int configure_one(runtimes_table *t, const char *item, size_t n, char *err, size_t errlen)
{
    const char *eq = memchr(item, '=', n);
    char name[FNSPEC_RUNTIME_MAX + 1];
    runtimes_entry *e;
    size_t plen;

    if (!eq || (size_t)(eq - item) >= sizeof(name))
        goto bad;
    memcpy(name, item, (size_t)(eq - item));
    name[eq - item] = '\0';
    plen = n - (size_t)(eq - item) - 1;
    e = (runtimes_entry *)runtimes_find(t, name);
    if (!e || strcmp(e->family, "provided") == 0 || e->configured || plen == 0 ||
        plen >= sizeof(e->interpreter) || eq[1] != '/')
        goto bad;
    memcpy(e->interpreter, eq + 1, plen);
    e->interpreter[plen] = '\0';
    e->configured = true;
    return ML_OK;
bad:
    ml_snprintf_trunc(err, errlen, "MINILAMBDA_RUNTIMES: \"%.*s\" must be <python or nodejs runtime>="
                      "/absolute/path, each name once", (int)(n > 80 ? 80 : n), item);
    return ML_ERR;
}

int runtimes_configure(runtimes_table *t, const char *spec, char *err, size_t errlen)
{
    const char *p = spec;

    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n > 0 && (*p == ' ' || *p == '\t'))
            p++, n--;
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n > 0 && configure_one(t, p, n, err, errlen) != ML_OK)
            return ML_ERR;
        p = comma ? comma + 1 : NULL;
    }
    return ML_OK;
}

/* Reads the child's output into buf until EOF or the deadline. */
static void probe_read(int fd, char *buf, size_t len)
{
    size_t used = 0;
    int64_t deadline = ml_now_ms() + PROBE_TIMEOUT_MS;

    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int64_t left = deadline - ml_now_ms();
        ssize_t r;
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        r = read(fd, buf + used, len - 1 - used);
        if (r <= 0 && !(r < 0 && errno == EINTR))
            break;
        if (r > 0)
            used += (size_t)r;
        if (used == len - 1)
            break;
    }
    buf[used] = '\0';
}

/* The first line of out, checked for the family's shape, as the version. */
static int probe_parse(const char *family, char *out, char *ver, size_t len)
{
    out[strcspn(out, "\r\n")] = '\0';
    if (strcmp(family, "python3") == 0 && strncmp(out, "Python 3.", 9) == 0)
        return ml_snprintf(ver, len, "%s", out);
    if (strcmp(family, "nodejs") == 0 && out[0] == 'v' && out[1] >= '1' && out[1] <= '9')
        return ml_snprintf(ver, len, "Node.js %s", out);
    return ML_ERR;
}

/* Owns the child it spawns (always reaped) and the pipe. */
int runtimes_probe_exec(const char *interpreter, const char *family, char *ver, size_t len,
                        void *ud)
{
    char *const argv[] = { (char *)interpreter, "--version", NULL };
    posix_spawn_file_actions_t fa;
    char out[256];
    int fds[2], status = 0, rc = ML_ERR;
    pid_t pid = -1;

    ML_UNUSED(ud);
    if (!interpreter || interpreter[0] != '/' || access(interpreter, X_OK) != 0)
        return ML_ERR;
    if (pipe2(fds, O_CLOEXEC) != 0)
        return ML_ERR;
    if (posix_spawn_file_actions_init(&fa) != 0)
        goto out_pipe;
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    if (posix_spawn(&pid, interpreter, &fa, NULL, argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    fds[1] = -1;
    if (pid < 0)
        goto out_pipe;
    probe_read(fds[0], out, sizeof(out));
    kill(pid, SIGKILL); /* done or over time: either way it has nothing more to say */
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    rc = probe_parse(family, out, ver, len);
out_pipe:
    close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    return rc;
}

/* Does ver belong to name? python3.N: "Python 3.N" or "Python 3.N.*"; nodejsN.x:
 * "Node.js vN.*"; an alias takes any version of its family. */
static bool version_fits(const char *name, const char *ver)
{
    char want[32];

    if (strncmp(name, "python3.", 8) == 0) {
        size_t n;
        if (ml_snprintf(want, sizeof(want), "Python %s", name + 6) != ML_OK)
            return false;
        n = strlen(want);
        return strncmp(ver, want, n) == 0 && (ver[n] == '\0' || ver[n] == '.');
    }
    if (strncmp(name, "nodejs", 6) == 0 && name[6] != '\0') {
        size_t n = strcspn(name + 6, ".");
        if (ml_snprintf(want, sizeof(want), "Node.js v%.*s.", (int)n, name + 6) != ML_OK)
            return false;
        return strncmp(ver, want, strlen(want)) == 0;
    }
    return true;
}

/* Probes e's interpreter; available when it answers with a version that fits e's name. */
static void probe_entry(runtimes_entry *e, runtimes_probe_fn probe, void *ud)
{
    char ver[RUNTIMES_VERSION_MAX];

    if (!e->interpreter[0])
        return;
    if (probe(e->interpreter, e->family, ver, sizeof(ver), ud) != ML_OK) {
        ml_snprintf_trunc(e->why, sizeof(e->why), "%s does not run", e->interpreter);
        return;
    }
    if (!version_fits(e->name, ver)) {
        ml_snprintf_trunc(e->why, sizeof(e->why), "%s is %s", e->interpreter, ver);
        return;
    }
    ml_strlcpy(e->version, ver, sizeof(e->version));
    e->available = true;
}

/* Each interpreter is probed once per discovery (python3.9 ... python3.13 may all fall back to
 * the default python, every nodejs name is the one node): ~50 ms per exec saved at start. */
typedef struct probe_memo {
    runtimes_probe_fn fn;
    void *ud;
    size_t n;
    struct {
        char path[RUNTIMES_PATH_MAX], ver[RUNTIMES_VERSION_MAX];
        const char *family;
        int rc;
    } e[RUNTIMES_MAX];
} probe_memo;

static int memo_probe(const char *interp, const char *family, char *ver, size_t len, void *ud)
{
    probe_memo *m = ud;

    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].family == family && strcmp(m->e[i].path, interp) == 0)
            return m->e[i].rc == ML_OK ? ml_snprintf(ver, len, "%s", m->e[i].ver) : ML_ERR;
    if (m->n == RUNTIMES_MAX || ml_strlcpy(m->e[m->n].path, interp, sizeof(m->e[m->n].path)) != ML_OK)
        return m->fn(interp, family, ver, len, m->ud);
    m->e[m->n].family = family;
    m->e[m->n].rc = m->fn(interp, family, m->e[m->n].ver, sizeof(m->e[m->n].ver), m->ud);
    return m->e[m->n++].rc == ML_OK ? ml_snprintf(ver, len, "%s", m->e[m->n - 1].ver) : ML_ERR;
}

/* The default node: MINILAMBDA_NODE, the usual paths, then PATH. "" when none. */
static void default_node(const char *node, char *out, size_t len)
{
    static const char *const candidates[] = { "/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs" };
    const char *path = getenv("PATH");

    out[0] = '\0';
    if (node && *node) {
        ml_strlcpy(out, node, len);
        return;
    }
    for (size_t i = 0; i < ML_ARRAY_LEN(candidates); i++)
        if (access(candidates[i], X_OK) == 0) {
            ml_strlcpy(out, candidates[i], len);
            return;
        }
    while (path && *path) {
        size_t n = strcspn(path, ":");
        if (n && ml_snprintf(out, len, "%.*s/node", (int)n, path) == ML_OK && out[0] == '/' &&
            access(out, X_OK) == 0)
            return;
        path += n + (path[n] == ':');
    }
    out[0] = '\0';
}

void runtimes_discover(runtimes_table *t, const char *python, const char *node,
                       runtimes_probe_fn probe, void *ud)
{
    char py[RUNTIMES_PATH_MAX], nd[RUNTIMES_PATH_MAX];
    probe_memo *memo = calloc(1, sizeof(*memo));   /* ~10 KiB: not on the stack */

    if (memo) {
        memo->fn = probe ? probe : runtimes_probe_exec;
        memo->ud = ud;
        probe = memo_probe, ud = memo;
    } else {
        probe = probe ? probe : runtimes_probe_exec;
    }
    ml_strlcpy(py, python && *python ? python : "/usr/bin/python3", sizeof(py));
    default_node(node, nd, sizeof(nd));
    for (size_t i = 0; i < t->n; i++) {
        runtimes_entry *e = &t->e[i];
        bool alias = strchr(e->name, '.') == NULL;
        if (strcmp(e->family, "provided") == 0) {
            ml_strlcpy(e->version, "provided", sizeof(e->version));
            e->available = true;
            continue;
        }
        if (!e->configured && strcmp(e->family, "python3") == 0)
            ml_strlcpy(e->interpreter, py, sizeof(e->interpreter));
        else if (!e->configured)
            ml_strlcpy(e->interpreter, nd, sizeof(e->interpreter));
        if (!e->configured && !alias && strcmp(e->family, "python3") == 0) {
            char own[RUNTIMES_PATH_MAX];   /* /usr/bin/python3.N first */
            if (ml_snprintf(own, sizeof(own), "/usr/bin/%s", e->name) == ML_OK &&
                access(own, X_OK) == 0)
                ml_strlcpy(e->interpreter, own, sizeof(e->interpreter));
        }
        probe_entry(e, probe, ud);
        if (!e->available && !e->configured)
            e->interpreter[0] = '\0';
    }
    free(memo);
}

void runtimes_names(const runtimes_table *t, char *out, size_t len)
{
    size_t used = 0;

    ml_strlcpy(out, "none", len);
    for (size_t i = 0; i < t->n && used + 1 < len; i++) {
        if (!t->e[i].available)
            continue;
        ml_snprintf_trunc(out + used, len - used, "%s%s", used ? ", " : "", t->e[i].name);
        used += strlen(out + used);
    }
}

/* The versioned name an alias (python3, nodejs, provided, provided.al2) is listed under:
 * an available versioned entry of its family running the same interpreter version. */
static const runtimes_entry *alias_home(const runtimes_table *t, const runtimes_entry *a)
{
    bool alias = strchr(a->name, '.') == NULL || strcmp(a->name, "provided.al2") == 0;

    for (size_t i = 0; alias && i < t->n; i++) {
        const runtimes_entry *e = &t->e[i];
        if (e != a && e->available && strchr(e->name, '.') && strcmp(e->name, "provided.al2") != 0 &&
            strcmp(e->family, a->family) == 0 && strcmp(e->version, a->version) == 0)
            return e;
    }
    return NULL;
}

static cJSON *entry_json(const runtimes_table *t, const runtimes_entry *e)
{
    cJSON *o = cJSON_CreateObject(), *aliases = cJSON_AddArrayToObject(o, "aliases");

    cJSON_AddStringToObject(o, "name", e->name);
    /* the document's family names the language (docs/versions.md), not the python3 rules */
    cJSON_AddStringToObject(o, "family", strcmp(e->family, "python3") == 0 ? "python" : e->family);
    if (e->interpreter[0])
        cJSON_AddStringToObject(o, "interpreter", e->interpreter);
    else
        cJSON_AddNullToObject(o, "interpreter");
    cJSON_AddStringToObject(o, "version", e->version);
    for (size_t i = 0; aliases && i < t->n; i++)
        if (t->e[i].available && alias_home(t, &t->e[i]) == e)
            cJSON_AddItemToArray(aliases, cJSON_CreateString(t->e[i].name));
    return o;
}

cJSON *runtimes_to_json(const runtimes_table *t)
{
    cJSON *doc = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(doc, "runtimes");

    for (size_t i = 0; arr && i < t->n; i++)
        if (t->e[i].available && !alias_home(t, &t->e[i]))
            cJSON_AddItemToArray(arr, entry_json(t, &t->e[i]));
    if (!arr) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

/* Marks name available with the item's version and interpreter. */
static void from_json_mark(runtimes_table *t, const char *name, const cJSON *item)
{
    runtimes_entry *e = (runtimes_entry *)runtimes_find(t, name);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(item, "version");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(item, "interpreter");

    if (!e)
        return;   /* a name a newer executor knows: this side cannot check handlers for it */
    e->available = true;
    if (cJSON_IsString(ver))
        ml_strlcpy(e->version, ver->valuestring, sizeof(e->version));
    if (cJSON_IsString(in))
        ml_strlcpy(e->interpreter, in->valuestring, sizeof(e->interpreter));
}

int runtimes_from_json(runtimes_table *t, const cJSON *doc)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "runtimes"), *item;

    runtimes_init(t);
    if (!cJSON_IsArray(arr))
        return ML_ERR;
    cJSON_ArrayForEach(item, arr) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
        const cJSON *aliases = cJSON_GetObjectItemCaseSensitive(item, "aliases"), *a;
        if (!cJSON_IsString(name)) {
            runtimes_init(t);
            return ML_ERR;
        }
        from_json_mark(t, name->valuestring, item);
        cJSON_ArrayForEach(a, aliases)
            if (cJSON_IsString(a))
                from_json_mark(t, a->valuestring, item);
    }
    return ML_OK;
}
