/* install_merge.c — the installer's output into the package tree, and the size rule after
 * installation (install.h, install-int.h).
 *
 * Why file by file through fds: the output was written by the user's code (install scripts),
 * so it may hold links pointing anywhere; nothing in it is followed. Both sides are walked
 * with openat(O_NOFOLLOW) from directory fds, names come from readdir (never '/', '.' or
 * '..'), files are created O_EXCL: a link in the output is dropped, a link or file in the
 * tree where the output has a directory stops that subtree. */
#include "install-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MERGE_MAX_DEPTH 128
#define MIB (1024.0 * 1024.0)

typedef struct mctx {
    install_merge_stats *st;
    char *err;
    size_t errlen;
    char buf[64 * 1024];
} mctx;

static void note_kept(mctx *m, const char *path)
{
    size_t have = strlen(m->st->kept_names);

    m->st->kept++;
    if (m->st->kept <= 3 && have + strlen(path) + 3 < sizeof(m->st->kept_names))
        ml_snprintf_trunc(m->st->kept_names + have, sizeof(m->st->kept_names) - have, "%s%s",
                          have ? ", " : "", path);
}

static int copy_file(mctx *m, int sdir, int ddir, const char *name, const char *path, mode_t mode)
{
    int in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), out = -1, rc = ML_ERR;
    ssize_t n, w;
    size_t off;

    if (in < 0) {
        ml_snprintf_trunc(m->err, m->errlen, "cannot read the installed '%s': %s", path, strerror(errno));
        return ML_ERR;
    }
    out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        if (errno == EEXIST) { /* the package's own file (or anything) is there: it wins */
            note_kept(m, path);
            rc = ML_OK;
        } else {
            ml_snprintf_trunc(m->err, m->errlen, "cannot create '%s': %s", path, strerror(errno));
        }
        goto out;
    }
    while ((n = read(in, m->buf, sizeof(m->buf))) > 0) {
        for (off = 0; off < (size_t)n; off += (size_t)w) {
            w = write(out, m->buf + off, (size_t)n - off);
            if (w < 0 && errno == EINTR) {
                w = 0;
                continue;
            }
            if (w < 0) {
                ml_snprintf_trunc(m->err, m->errlen, "cannot write '%s': %s", path, strerror(errno));
                goto out;
            }
        }
        m->st->bytes += n;
    }
    if (n < 0 || fchmod(out, (mode & 0111) ? 0755 : 0644) != 0) {
        ml_snprintf_trunc(m->err, m->errlen, "cannot copy '%s': %s", path, strerror(errno));
        goto out;
    }
    m->st->files++;
    rc = ML_OK;
out:
    close(in);
    if (out >= 0)
        close(out);
    return rc;
}

static int merge_dir(mctx *m, int sdir, int ddir, const char *prefix, int depth);

/* One subdirectory: made in dest if missing; a non-directory there (the package's file, or a
 * link) wins and the subtree is skipped. */
static int merge_sub(mctx *m, int sdir, int ddir, const char *name, const char *path, int depth)
{
    int s = -1, d = -1, rc = ML_ERR;
    bool made;

    if (depth >= MERGE_MAX_DEPTH) {
        ml_snprintf_trunc(m->err, m->errlen, "the installed tree is nested deeper than %d at '%s'",
                          MERGE_MAX_DEPTH, path);
        return ML_ERR;
    }
    made = mkdirat(ddir, name, 0755) == 0;
    if (!made && errno != EEXIST) {
        ml_snprintf_trunc(m->err, m->errlen, "cannot create '%s': %s", path, strerror(errno));
        return ML_ERR;
    }
    d = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d < 0) {
        if (errno == ENOTDIR || errno == ELOOP) {
            note_kept(m, path);
            return ML_OK;
        }
        ml_snprintf_trunc(m->err, m->errlen, "cannot open '%s': %s", path, strerror(errno));
        return ML_ERR;
    }
    if (made && fchmod(d, 0755) != 0) { /* the umask must not decide what the function reads */
        ml_snprintf_trunc(m->err, m->errlen, "cannot chmod '%s': %s", path, strerror(errno));
        goto out;
    }
    s = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s < 0) {
        ml_snprintf_trunc(m->err, m->errlen, "cannot open the installed '%s': %s", path, strerror(errno));
        goto out;
    }
    rc = merge_dir(m, s, d, path, depth + 1); /* closes s */
    s = -1;
out:
    if (s >= 0)
        close(s);
    close(d);
    return rc;
}

/* Walks sdir (closed here) into ddir (not closed). */
static int merge_dir(mctx *m, int sdir, int ddir, const char *prefix, int depth)
{
    DIR *dir = fdopendir(sdir);
    struct dirent *e;
    struct stat st;
    char path[1100];
    int rc = ML_OK;

    if (!dir) {
        close(sdir);
        ml_snprintf_trunc(m->err, m->errlen, "cannot list the installed tree: %s", strerror(errno));
        return ML_ERR;
    }
    while (rc == ML_OK && (e = readdir(dir)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (ml_snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "/" : "", e->d_name) != ML_OK) {
            ml_snprintf_trunc(m->err, m->errlen, "an installed path is longer than %zu bytes", sizeof(path));
            rc = ML_ERR;
        } else if (fstatat(sdir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            ml_snprintf_trunc(m->err, m->errlen, "cannot stat the installed '%s': %s", path, strerror(errno));
            rc = ML_ERR;
        } else if (S_ISDIR(st.st_mode)) {
            rc = merge_sub(m, sdir, ddir, e->d_name, path, depth);
        } else if (S_ISREG(st.st_mode)) {
            rc = copy_file(m, sdir, ddir, e->d_name, path, st.st_mode);
        } else {
            m->st->links++; /* links, FIFOs, sockets, devices: never part of an artifact */
        }
    }
    closedir(dir);
    return rc;
}

int install_merge(const char *src, const char *dest, install_merge_stats *st, char *err,
                  size_t errlen)
{
    mctx *m = calloc(1, sizeof(*m));
    int s = -1, d = -1, rc = ML_ERR;

    memset(st, 0, sizeof(*st));
    if (!m) {
        ml_snprintf_trunc(err, errlen, "out of memory");
        return ML_ERR;
    }
    m->st = st, m->err = err, m->errlen = errlen;
    if (mkdir(dest, 0755) != 0 && errno != EEXIST) {
        ml_snprintf_trunc(err, errlen, "cannot create %s: %s", dest, strerror(errno));
        goto out;
    }
    s = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    d = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s < 0 || d < 0) {
        ml_snprintf_trunc(err, errlen, "cannot open %s: %s", s < 0 ? src : dest, strerror(errno));
        goto out;
    }
    rc = merge_dir(m, s, d, "", 0); /* closes s */
    s = -1;
out:
    if (s >= 0)
        close(s);
    if (d >= 0)
        close(d);
    free(m);
    return rc;
}

/* ---- size after installation ---- */

typedef struct group {
    char name[256];
    int64_t bytes;
} group;

/* The group a file counts toward: its top-level dir, or node_modules/<pkg> (@scope/pkg). */
static size_t group_len(const char *path)
{
    const char *s = strchr(path, '/');
    size_t n;

    if (!s)
        return strlen(path);
    n = (size_t)(s - path);
    if (n == 12 && !strncmp(path, "node_modules", 12)) {
        const char *p = s + 1, *q = strchr(p, '/');
        if (q && *p == '@')
            q = strchr(q + 1, '/');
        return q ? (size_t)(q - path) : strlen(path);
    }
    return n;
}

static int by_bytes(const void *a, const void *b)
{
    const group *x = a, *y = b;

    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : strcmp(x->name, y->name);
}

int install_check_size(const extract_result *r, const extract_limits *lim, char *err,
                       size_t errlen)
{
    int64_t max_total = lim && lim->max_total_bytes > 0 ? lim->max_total_bytes : EXTRACT_DEFAULT_MAX_TOTAL_BYTES;
    int64_t max_entries = lim && lim->max_entries > 0 ? lim->max_entries : EXTRACT_DEFAULT_MAX_ENTRIES;
    group *g = NULL;
    size_t ng = 0, len, have;
    int rc = ML_ERR;

    if (r->total_bytes <= max_total && r->entries <= max_entries)
        return ML_OK;
    if (r->total_bytes <= max_total) {
        ml_snprintf_trunc(err, errlen, "the package with its dependencies has %lld files and "
                          "directories, over the %lld limit", (long long)r->entries, (long long)max_entries);
        return ML_ERR;
    }
    g = calloc(r->nfiles ? r->nfiles : 1, sizeof(*g));
    if (!g) {
        ml_snprintf_trunc(err, errlen, "the package with its dependencies is over the %.0f MiB limit",
                          (double)max_total / MIB);
        return ML_ERR;
    }
    /* files are sorted by path, so a group's files are contiguous */
    for (size_t i = 0; i < r->nfiles; i++) {
        len = group_len(r->files[i].path);
        if (len >= sizeof(g->name))
            len = sizeof(g->name) - 1;
        if (!ng || strncmp(g[ng - 1].name, r->files[i].path, len) || g[ng - 1].name[len]) {
            memcpy(g[ng].name, r->files[i].path, len);
            g[ng].name[len] = '\0';
            ng++;
        }
        g[ng - 1].bytes += r->files[i].size;
    }
    qsort(g, ng, sizeof(*g), by_bytes);
    ml_snprintf_trunc(err, errlen, "the package with its dependencies is %.1f MiB unpacked, over the "
                      "%.0f MiB limit; largest:", (double)r->total_bytes / MIB, (double)max_total / MIB);
    for (size_t i = 0; i < ng && i < 5; i++) {
        have = strlen(err);
        ml_snprintf_trunc(err + have, errlen - have, "%s %s (%.1f MiB)", i ? "," : "", g[i].name,
                          (double)g[i].bytes / MIB);
    }
    free(g);
    return rc;
}
