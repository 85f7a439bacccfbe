/* depcache.c — the S3 cache of installed dependency trees: see depcache.h. */
#include "depcache.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifact.h"
#include "crypto.h"
#include "extract.h"
#include "fnspec-t.h"

/* Each field goes in as "<name>=<length>:<bytes>\n": no two inputs hash alike by moving
 * bytes from one field to the next. */
static void field(EVP_MD_CTX *md, const char *name, const char *v, size_t n)
{
    char head[96];

    ml_snprintf_trunc(head, sizeof(head), "%s=%zu:", name, n);
    EVP_DigestUpdate(md, head, strlen(head));
    EVP_DigestUpdate(md, v, n);
    EVP_DigestUpdate(md, "\n", 1);
}

static void sfield(EVP_MD_CTX *md, const char *name, const char *v)
{
    field(md, name, v ? v : "", v ? strlen(v) : 0);
}

/* A file's bytes under its base name (the inputs are always at the package root). */
static int file_field(EVP_MD_CTX *md, const char *path)
{
    char buf[16384], head[300];
    const char *base = strrchr(path, '/');
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    off_t size;
    ssize_t n;

    if (fd < 0 || (size = lseek(fd, 0, SEEK_END)) < 0 || lseek(fd, 0, SEEK_SET) != 0) {
        if (fd >= 0)
            close(fd);
        return ML_ERR;
    }
    ml_snprintf_trunc(head, sizeof(head), "file %s=%lld:", base ? base + 1 : path, (long long)size);
    EVP_DigestUpdate(md, head, strlen(head));
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        EVP_DigestUpdate(md, buf, (size_t)n);
    close(fd);
    EVP_DigestUpdate(md, "\n", 1);
    return n == 0 ? ML_OK : ML_ERR;
}

int depcache_key(const depcache_key_in *in, char key[DEPCACHE_KEY_LEN])
{
    unsigned char md[CRYPTO_SHA256_LEN];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int rc = ML_ERR;

    key[0] = '\0';
    if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL))
        goto out;
    sfield(c, "version", "v1");
    sfield(c, "ecosystem", in->ecosystem);
    sfield(c, "runtime", in->runtime);
    sfield(c, "interpreter", in->interp_version);
    sfield(c, "platform", in->platform);
    sfield(c, "flags", in->flags);
    sfield(c, "index", in->index_url);
    for (size_t i = 0; in->files && in->files[i]; i++)
        if (file_field(c, in->files[i]) != ML_OK)
            goto out;
    EVP_DigestFinal_ex(c, md, NULL);
    crypto_hex_encode(md, sizeof(md), key);
    rc = ML_OK;
out:
    EVP_MD_CTX_free(c);
    return rc;
}

void depcache_object(const char *ecosystem, const char *key, char *buf, size_t len)
{
    ml_snprintf_trunc(buf, len, "depcache/%s/%s.tar.gz", ecosystem, key);
}

/* The archive's temporary file beside dir ("<dir>.tar.gz"). */
static int sibling(const char *dir, char *buf, size_t len)
{
    return ml_snprintf(buf, len, "%s.tar.gz", dir);
}

int depcache_get(s3_client *s3, const char *object, const char *dest, int *missing, char *err,
                 size_t errlen)
{
    extract_limits lim = { .max_ratio = 1e9 }; /* the object is ours: no bomb heuristics */
    extract_result r = { 0 };
    char tgz[600];
    int rc;

    *missing = 0;
    if (sibling(dest, tgz, sizeof(tgz)) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cache path too long");
        return ML_ERR;
    }
    rc = s3_get_file(s3, object, tgz, (size_t)FNSPEC_MAX_UNPACKED_BYTES);
    if (rc == S3_NOT_FOUND) {
        *missing = 1;
        ml_snprintf_trunc(err, errlen, "not in the cache");
        return ML_ERR;
    }
    if (rc != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot fetch %s: %s", object, s3_error(s3));
        return ML_ERR;
    }
    rc = extract_tar_gz(tgz, dest, &lim, &r);
    if (rc != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cached object %s refused: %s", object, r.error);
        ml_rmtree(dest); /* a partial tree must not be merged: the caller installs anew */
        mkdir(dest, 0755);
    }
    extract_result_free(&r);
    unlink(tgz);
    return rc;
}

int depcache_put(s3_client *s3, const char *object, const char *tree, char *err, size_t errlen)
{
    extract_result r = { 0 };
    char tgz[600];
    int rc = ML_ERR;

    if (sibling(tree, tgz, sizeof(tgz)) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cache path too long");
        return ML_ERR;
    }
    if (extract_scan_dir(tree, &r) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot list the installed tree: %s", r.error);
        goto out;
    }
    if (artifact_pack(tree, &r, tgz, err, errlen) != ML_OK)
        goto out;
    if (s3_put_file(s3, object, tgz, "application/gzip", NULL, NULL) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot store %s: %s", object, s3_error(s3));
        goto out;
    }
    rc = ML_OK;
out:
    unlink(tgz);
    extract_result_free(&r);
    return rc;
}
