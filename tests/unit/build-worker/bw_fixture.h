/* bw_fixture.h — the build-worker tests' scratch dir and file helpers (test_install,
 * test_depcache, and the integration test_depcache_s3): one temp dir per test (cmocka
 * setup/teardown), paths in it, files written into it, a tar.gz holding one given entry. */
#ifndef BW_FIXTURE_H
#define BW_FIXTURE_H

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ml.h"

#define BW_UNUSED __attribute__((unused))

static char g_dir[64];

/* mkdtemp's template: the XXXXXX is replaced by a unique name. */
BW_UNUSED static int setup(void **state)
{
    (void)state;
    ml_strlcpy(g_dir, "/tmp/test_bw_XXXXXX", sizeof(g_dir));
    return mkdtemp(g_dir) ? 0 : -1;
}

BW_UNUSED static int teardown(void **state)
{
    (void)state;
    return ml_rmtree(g_dir) == ML_OK ? 0 : -1;
}

/* g_dir/rel as a path (static buffer rotation: up to 4 at once). */
BW_UNUSED static const char *at(const char *rel)
{
    static char bufs[4][512];
    static int i;
    char *b = bufs[i++ % 4];

    assert_int_equal(ml_snprintf(b, 512, "%s/%s", g_dir, rel), ML_OK);
    return b;
}

BW_UNUSED static void put(const char *rel, const char *text, mode_t mode)
{
    int fd = open(at(rel), O_WRONLY | O_CREAT | O_TRUNC, mode);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* A tar.gz at path: a good "ok.py", then the entry name of type (AE_IFREG, AE_IFLNK → link). */
BW_UNUSED static void tgz(const char *path, const char *name, int type, const char *link)
{
    struct archive *a = archive_write_new();
    struct archive_entry *e = archive_entry_new();

    assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    archive_entry_set_pathname(e, "ok.py");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 2);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, "ok", 2), 2);
    archive_entry_clear(e);
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, (unsigned)type);
    archive_entry_set_perm(e, 0644);
    if (type == AE_IFLNK)
        archive_entry_set_symlink(e, link);
    else
        archive_entry_set_size(e, 4);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    if (type == AE_IFREG)
        assert_int_equal(archive_write_data(a, "evil", 4), 4);
    archive_write_close(a);
    archive_write_free(a);
    archive_entry_free(e);
}

#endif
