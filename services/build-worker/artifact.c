/* artifact.c — deterministic tar.gz packing with libarchive. */
#include "artifact.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

/* Copies one file's bytes into the open archive entry. */
static int copy_file(struct archive *a, const char *path, char *err, size_t errlen)
{
    char buf[64 * 1024];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0) {
        ml_snprintf_trunc(err, errlen, "cannot read %s", path);
        return ML_ERR;
    }
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        if (archive_write_data(a, buf, (size_t)n) != n) {
            ml_snprintf_trunc(err, errlen, "cannot write artifact: %s", archive_error_string(a));
            close(fd);
            return ML_ERR;
        }
    }
    close(fd);
    return n == 0 ? ML_OK : ML_ERR;
}

int artifact_pack(const char *dir, const extract_result *r, const char *out_path, char *err,
                  size_t errlen)
{
    struct archive *a = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    char path[4352];
    int rc = ML_ERR;

    err[0] = '\0';
    if (!a || !e || archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
        archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
        archive_write_open_filename(a, out_path) != ARCHIVE_OK) {
        ml_snprintf_trunc(err, errlen, "cannot create artifact: %s", a ? archive_error_string(a) : "oom");
        goto out;
    }
    for (size_t i = 0; i < r->nfiles; i++) {
        const extract_file *f = &r->files[i];
        archive_entry_clear(e);
        archive_entry_set_pathname(e, f->path);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, f->mode);
        archive_entry_set_size(e, f->size);
        archive_entry_set_mtime(e, 0, 0); /* same input, same bytes */
        if (ml_snprintf(path, sizeof(path), "%s/%s", dir, f->path) != ML_OK ||
            archive_write_header(a, e) != ARCHIVE_OK || copy_file(a, path, err, errlen) != ML_OK) {
            if (!err[0])
                ml_snprintf_trunc(err, errlen, "cannot add %s: %s", f->path, archive_error_string(a));
            goto out;
        }
    }
    if (archive_write_close(a) != ARCHIVE_OK) {
        ml_snprintf_trunc(err, errlen, "cannot finish artifact: %s", archive_error_string(a));
        goto out;
    }
    rc = ML_OK;
out:
    archive_entry_free(e);
    archive_write_free(a);
    return rc;
}

cJSON *artifact_manifest(const extract_result *r, const char *archive_key,
                         const char *archive_sha256, int64_t archive_size)
{
    cJSON *m = cJSON_CreateObject(), *files = cJSON_AddArrayToObject(m, "files");
    cJSON *archive = cJSON_AddObjectToObject(m, "archive");

    cJSON_AddNumberToObject(m, "version", 1);
    cJSON_AddStringToObject(m, "tree_sha256", r->sha256);
    cJSON_AddNumberToObject(m, "total_bytes", (double)r->total_bytes);
    cJSON_AddStringToObject(archive, "key", archive_key);
    cJSON_AddStringToObject(archive, "format", "tar.gz");
    cJSON_AddStringToObject(archive, "sha256", archive_sha256);
    cJSON_AddNumberToObject(archive, "size_bytes", (double)archive_size);
    for (size_t i = 0; i < r->nfiles; i++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "path", r->files[i].path);
        cJSON_AddNumberToObject(f, "size", (double)r->files[i].size);
        cJSON_AddStringToObject(f, "sha256", r->files[i].sha256);
        cJSON_AddNumberToObject(f, "mode", r->files[i].mode);
        cJSON_AddItemToArray(files, f);
    }
    return m;
}
