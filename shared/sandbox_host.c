/* sandbox_host.c — what this host offers every instance, found once by sandbox_init: the node
 * binary, the top-level lib/bin dirs, the empty mount point of instance roots. */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox-int.h"

struct sb_host sb_host;

void sb_find_node(void)
{
    static const char *const candidates[] = { "/usr/bin/node", "/usr/local/bin/node",
                                               "/usr/bin/nodejs" };
    const char *path = getenv("PATH");
    char cand[PATH_MAX], real[PATH_MAX];

    sb_host.node[0] = sb_host.node_prefix[0] = '\0';
    for (size_t i = 0; i < ML_ARRAY_LEN(candidates) && !sb_host.node[0]; i++)
        if (access(candidates[i], X_OK) == 0 && realpath(candidates[i], real))
            ml_strlcpy(sb_host.node, real, sizeof(sb_host.node));
    while (!sb_host.node[0] && path && *path) {
        size_t n = strcspn(path, ":");
        if (n && ml_snprintf(cand, sizeof(cand), "%.*s/node", (int)n, path) == ML_OK &&
            access(cand, X_OK) == 0 && realpath(cand, real))
            ml_strlcpy(sb_host.node, real, sizeof(sb_host.node));
        path += n + (path[n] == ':');
    }
    if (sb_host.node[0] && strncmp(sb_host.node, "/usr/", 5) != 0) {
        /* e.g. /opt/node-v20/bin/node: show /opt/node-v20 at the same path */
        char *slash;
        ml_strlcpy(sb_host.node_prefix, sb_host.node, sizeof(sb_host.node_prefix));
        for (int i = 0; i < 2 && (slash = strrchr(sb_host.node_prefix, '/')) && slash != sb_host.node_prefix; i++)
            *slash = '\0';
    }
}

/* The host's top-level lib/bin dirs: symlinks into /usr (merged /usr) or real dirs. */
void sb_find_top_dirs(void)
{
    static const char *const names[] = { "bin", "sbin", "lib", "lib32", "lib64", "libx32" };

    sb_host.ntop = 0;
    for (size_t i = 0; i < ML_ARRAY_LEN(names); i++) {
        char path[64], link[64];
        struct stat st;
        ssize_t n;

        if (ml_snprintf(path, sizeof(path), "/%s", names[i]) != ML_OK || lstat(path, &st) != 0)
            continue;
        sb_top *t = &sb_host.top[sb_host.ntop];
        ml_strlcpy(t->name, names[i], sizeof(t->name));
        t->link[0] = '\0';
        if (S_ISLNK(st.st_mode)) {
            n = readlink(path, link, sizeof(link) - 1);
            if (n <= 0)
                continue;
            link[n] = '\0';
            ml_strlcpy(t->link, link, sizeof(t->link));
        } else if (!S_ISDIR(st.st_mode)) {
            continue;
        }
        sb_host.ntop++;
    }
}

/* Whether path is (under) a dir already hidden: the mask leaves no mount point inside. */
static bool hidden_already(const char *path)
{
    for (size_t i = 0; i < sb_host.nhidden; i++) {
        size_t n = strlen(sb_host.hidden[i]);
        if (strncmp(path, sb_host.hidden[i], n) == 0 && (path[n] == '/' || path[n] == '\0'))
            return true;
    }
    return false;
}

/* Adds the existing dirs matching a glob pattern to sb_host.hidden. */
static void hide_matching(const char *pattern)
{
    glob_t g;

    if (glob(pattern, GLOB_ONLYDIR | GLOB_NOSORT, NULL, &g) != 0)
        return;
    for (size_t k = 0; k < g.gl_pathc && sb_host.nhidden < SB_MAX_HIDDEN; k++) {
        struct stat st;
        if (!hidden_already(g.gl_pathv[k]) && lstat(g.gl_pathv[k], &st) == 0 && S_ISDIR(st.st_mode) &&
            ml_snprintf(sb_host.hidden[sb_host.nhidden], SB_HIDDEN_LEN, "%s", g.gl_pathv[k]) == ML_OK)
            sb_host.nhidden++;
    }
    globfree(&g);
}

/* The host's third-party package dirs, masked in every instance root so a function sees only
 * its runtime's standard library and its own code (a dependency it does not ship must fail
 * here as it would on any other host). Not /usr/share/nodejs or /usr/lib/nodejs: Debian's
 * node loads builtins from there by absolute path (cjs-module-lexer, acorn, undici) and aborts
 * without them; the nodejs bootstrap drops them from require()'s search path instead. Patterns cover Debian (dist-packages, /usr/lib/node),
 * pip/npm installs in /usr/local and other distributions' site-packages; parents come first
 * (a mask leaves no mount point below it). Masking the parent /usr/lib/python3 and
 * /usr/local/lib/python3.X makes their dist-packages absent, not empty. */
void sb_find_hidden(void)
{
    static const char *const patterns[] = {
        "/usr/lib/python3", "/usr/local/lib/python3*", "/usr/lib/python3*/site-packages",
        "/usr/lib/python3*/dist-packages", "/usr/lib/node_modules", "/usr/local/lib/node_modules",
        "/usr/lib/node", "/usr/local/lib/node",
    };
    char prefix_mods[PATH_MAX];

    sb_host.nhidden = 0;
    for (size_t i = 0; i < ML_ARRAY_LEN(patterns); i++)
        hide_matching(patterns[i]);
    /* a node installed outside /usr keeps its global modules there */
    if (sb_host.node_prefix[0] &&
        ml_snprintf(prefix_mods, sizeof(prefix_mods), "%s/lib/node_modules", sb_host.node_prefix) == ML_OK)
        hide_matching(prefix_mods);
}

/* The empty mount point of instance roots, and the uid lock file next to it. */
int sb_make_root_dir(void)
{
    const char *base = access("/run", W_OK) == 0 ? "/run" : "/tmp";

    sb_uid_lock_open(base);
    if (ml_snprintf(sb_host.root, sizeof(sb_host.root), "%s/minilambda-sandbox-root", base) != ML_OK)
        return ML_ERR;
    if (mkdir(sb_host.root, 0755) != 0 && errno != EEXIST)
        return ML_ERR;
    return ML_OK;
}
