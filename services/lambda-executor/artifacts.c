/* artifacts.c — the local artifact cache. */
#include "artifacts.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "log.h"

#define MAX_ARTIFACT (300LL * 1024 * 1024)

int artifacts_init(artifacts *a, const char *cache_dir)
{
    a->cache_dir = cache_dir;
    pthread_mutex_init(&a->lock, NULL);
    /* sandboxes run as an unprivileged uid: the path must be traversable by anyone */
    if (mkdir(cache_dir, 0755) != 0 && errno != EEXIST)
        return ML_ERR;
    return chmod(cache_dir, 0755) == 0 ? ML_OK : ML_ERR;
}

/* Relative, and no ".." component. */
static bool safe_path(const char *p)
{
    const char *s = p;

    if (!*p || *p == '/')
        return false;
    for (;;) {
        if (s[0] == '.' && s[1] == '.' && (s[2] == '/' || s[2] == '\0'))
            return false;
        if (!(s = strchr(s, '/')))
            return true;
        s++;
    }
}

int artifacts_unpack(const char *tgz, const char *dest, char *err, size_t errlen)
{
    struct archive *in = archive_read_new(), *out = archive_write_disk_new();
    struct archive_entry *e;
    char path[4352];
    int rc = ML_ERR, r;

    archive_read_support_filter_gzip(in);
    archive_read_support_format_tar(in);
    /* names are checked relative, then prefixed with dest (hence no NOABSOLUTEPATHS) */
    archive_write_disk_set_options(out, ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                            ARCHIVE_EXTRACT_PERM);
    if (archive_read_open_filename(in, tgz, 64 * 1024) != ARCHIVE_OK) {
        ml_snprintf_trunc(err, errlen, "cannot read artifact: %s", archive_error_string(in));
        goto out;
    }
    while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        mode_t type = archive_entry_filetype(e);
        if (!name || !safe_path(name) || (type != AE_IFREG && type != AE_IFDIR) ||
            ml_snprintf(path, sizeof(path), "%s/%s", dest, name) != ML_OK) {
            ml_snprintf_trunc(err, errlen, "artifact entry '%s' is not allowed", name ? name : "");
            goto out;
        }
        archive_entry_set_pathname(e, path);
        archive_entry_set_perm(e, type == AE_IFDIR || (archive_entry_perm(e) & 0111) ? 0755 : 0644);
        if (archive_write_header(out, e) != ARCHIVE_OK) {
            ml_snprintf_trunc(err, errlen, "cannot unpack '%s': %s", path, archive_error_string(out));
            goto out;
        }
        if (type == AE_IFREG) {
            const void *buf;
            size_t size;
            la_int64_t off;
            while ((r = archive_read_data_block(in, &buf, &size, &off)) == ARCHIVE_OK)
                if (archive_write_data_block(out, buf, size, off) != ARCHIVE_OK)
                    break;
            if (r != ARCHIVE_EOF) {
                ml_snprintf_trunc(err, errlen, "cannot unpack '%s': %s", name, archive_error_string(in));
                goto out;
            }
        }
        archive_write_finish_entry(out);
    }
    if (r != ARCHIVE_EOF) {
        ml_snprintf_trunc(err, errlen, "corrupt artifact: %s", archive_error_string(in));
        goto out;
    }
    rc = ML_OK;
out:
    archive_read_free(in);
    archive_write_free(out);
    return rc;
}

/* Downloads, verifies and unpacks into a temporary directory, then renames it into place so
 * a half-unpacked artifact is never visible. Called with a->lock held. */
static int fetch(artifacts *a, s3_client *s3, const char *prefix, const char *sha256,
                 const char *dir, char *err, size_t errlen)
{
    char tmp[512], tgz[600], key[512], got[CRYPTO_SHA256_HEX_LEN], why[256];
    int64_t size = 0;
    int rc = ML_ERR;

    if (ml_snprintf(tmp, sizeof(tmp), "%s/.fetch-%s-XXXXXX", a->cache_dir, sha256) != ML_OK ||
        !mkdtemp(tmp) || ml_snprintf(tgz, sizeof(tgz), "%s.tgz", tmp) != ML_OK ||
        ml_snprintf(key, sizeof(key), "%scode.tar.gz", prefix) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot create a temporary directory in %s", a->cache_dir);
        return ML_ERR;
    }
    if (s3_get_file(s3, key, tgz, MAX_ARTIFACT) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot fetch artifact %s: %s", key, s3_error(s3));
        goto out;
    }
    if (crypto_sha256_file_hex(tgz, got, &size, why, sizeof(why)) != ML_OK || strcmp(got, sha256) != 0) {
        ml_snprintf_trunc(err, errlen, "artifact %s does not match its sha256", key);
        goto out;
    }
    if (artifacts_unpack(tgz, tmp, err, errlen) != ML_OK || chmod(tmp, 0755) != 0)
        goto out;
    if (rename(tmp, dir) != 0 && errno != ENOTEMPTY && errno != EEXIST) {
        ml_snprintf_trunc(err, errlen, "cannot install artifact: %s", strerror(errno));
        goto out;
    }
    rc = ML_OK;
    ml_log_kv(ML_LOG_INFO, "artifact cached", "sha256", sha256, "dir", dir, NULL);
out:
    unlink(tgz);
    if (ml_rmtree(tmp) != ML_OK) /* after a successful rename it is already gone */
        ml_log_warn("cannot remove %s", tmp);
    return rc;
}

int artifacts_get(artifacts *a, s3_client *s3, const char *prefix, const char *sha256, char *dir,
                  size_t dirlen, char *err, size_t errlen)
{
    struct stat st;
    int rc = ML_OK;

    if (strlen(sha256) != 64 || strspn(sha256, "0123456789abcdef") != 64 ||
        ml_snprintf(dir, dirlen, "%s/%s", a->cache_dir, sha256) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "bad artifact sha256");
        return ML_ERR;
    }
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return ML_OK;
    pthread_mutex_lock(&a->lock);
    if (stat(dir, &st) != 0)
        rc = fetch(a, s3, prefix, sha256, dir, err, errlen);
    pthread_mutex_unlock(&a->lock);
    return rc;
}

/* Copies one regular file to dst (0644) through a temporary name and a rename. */
static int copy_file(const char *src, const char *dst, char *err, size_t errlen)
{
    char tmp[PATH_MAX], buf[65536];
    int in = -1, out = -1, rc = ML_ERR;
    ssize_t n = 0;

    if (ml_snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", dst, (long)getpid()) != ML_OK)
        goto out;
    if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0 ||
        (out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        goto out;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            goto out;
    if (n == 0 && fchmod(out, 0644) == 0 && close(out) == 0) {
        out = -1;
        rc = rename(tmp, dst) == 0 ? ML_OK : ML_ERR;
    }
out:
    if (rc != ML_OK) {
        ml_snprintf_trunc(err, errlen, "staging %s: %s", src, strerror(errno));
        unlink(tmp);
    }
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

/* Copies the regular files of src into dst (made 0755), and its directories down to depth. */
static int copy_tree(const char *src, const char *dst, int depth, char *err, size_t errlen)
{
    char from[PATH_MAX], to[PATH_MAX];
    struct dirent *e;
    struct stat st;
    DIR *d = NULL;
    int rc = ML_ERR;

    if ((mkdir(dst, 0755) != 0 && errno != EEXIST) || chmod(dst, 0755) != 0 || !(d = opendir(src))) {
        ml_snprintf_trunc(err, errlen, "staging %s into %s: %s", src, dst, strerror(errno));
        goto out;
    }
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (ml_snprintf(from, sizeof(from), "%s/%s", src, e->d_name) != ML_OK ||
            ml_snprintf(to, sizeof(to), "%s/%s", dst, e->d_name) != ML_OK) {
            ml_snprintf_trunc(err, errlen, "staging %s: path too long", src);
            goto out;
        }
        if (stat(from, &st) != 0)
            continue;
        if (S_ISREG(st.st_mode) && copy_file(from, to, err, errlen) != ML_OK)
            goto out;
        if (S_ISDIR(st.st_mode) && depth > 0 && copy_tree(from, to, depth - 1, err, errlen) != ML_OK)
            goto out;
    }
    rc = ML_OK;
out:
    if (d)
        closedir(d);
    return rc;
}

int artifacts_stage_runtimes(const artifacts *a, const char *src, char *out, size_t outlen,
                             char *err, size_t errlen)
{
    if (ml_snprintf(out, outlen, "%s/runtimes", a->cache_dir) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "staging runtimes: path too long");
        return ML_ERR;
    }
    return copy_tree(src, out, 1, err, errlen); /* <runtime>/<file> */
}

int artifacts_cached(const artifacts *a, int max)
{
    DIR *dir = opendir(a->cache_dir);
    struct dirent *e;
    int n = 0;

    if (!dir)
        return -1;
    while (n < max && (e = readdir(dir)) != NULL) {
        /* <sha256>/, renamed into place only once complete (see fetch) */
        if (strlen(e->d_name) == 64 && strspn(e->d_name, "0123456789abcdef") == 64)
            n++;
    }
    closedir(dir);
    return n;
}
