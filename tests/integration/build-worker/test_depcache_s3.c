/* Integration tests: the dependency cache (services/build-worker/depcache.c) against the real
 * S3 at MINILAMBDA_S3_*: put then get gives back the same tree (files, bytes, modes); a
 * missing object is a miss; a tampered object (a symbolic link, a "../" entry) uploaded under
 * a cache key is refused, leaves the destination empty and writes nothing outside it. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>

#include "../../unit/build-worker/bw_fixture.h"
#include "depcache.h"
#include "extract.h"

static s3_client *g_s3;
static char g_prefix[128];

static int group_setup(void **state)
{
    char err[256], uuid[ML_UUID_LEN];
    s3_config cfg;

    (void)state;
    if (s3_config_from_env(&cfg, err, sizeof(err)) != ML_OK || !(g_s3 = s3_new(&cfg, err, sizeof(err)))) {
        fprintf(stderr, "test_depcache_s3: %s\n", err);
        return -1;
    }
    if (s3_bucket_ensure(g_s3) != ML_OK) {
        fprintf(stderr, "test_depcache_s3: %s\n", s3_error(g_s3));
        return -1;
    }
    ml_uuid(uuid);
    snprintf(g_prefix, sizeof(g_prefix), "%.8s", uuid);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    s3_free(g_s3);
    return 0;
}

static void object(const char *what, char *buf, size_t len)
{
    char key[DEPCACHE_KEY_LEN];

    /* a key of its own per test run (the test's prefix hashed in) */
    depcache_key(&(depcache_key_in){ "pip", g_prefix, what, "", "", "", NULL }, key);
    depcache_object("pip", key, buf, len);
}

static size_t entries(const char *rel)
{
    DIR *d = opendir(at(rel));
    size_t n = 0;

    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void test_round_trip(void **state)
{
    char obj[200], err[512] = "";
    extract_result a = { 0 }, b = { 0 };
    int missing = -1;

    (void)state;
    object("round-trip", obj, sizeof(obj));
    assert_int_equal(mkdir(at("out"), 0755), 0);
    assert_int_equal(mkdir(at("out/six-1.16.0.dist-info"), 0755), 0);
    put("out/six.py", "import sys\n", 0644);
    put("out/six-1.16.0.dist-info/RECORD", "six.py,,\n", 0600);
    put("out/tool", "#!/bin/sh\n", 0755);
    assert_int_equal(mkdir(at("dest"), 0755), 0);
    assert_int_equal(depcache_get(g_s3, obj, at("dest"), &missing, err, sizeof(err)), ML_ERR);
    assert_int_equal(missing, 1);
    assert_int_equal(depcache_put(g_s3, obj, at("out"), err, sizeof(err)), ML_OK);
    assert_int_equal(depcache_get(g_s3, obj, at("dest"), &missing, err, sizeof(err)), ML_OK);
    assert_int_equal(missing, 0);
    assert_int_equal(extract_scan_dir(at("out"), &a), ML_OK);
    assert_int_equal(extract_scan_dir(at("dest"), &b), ML_OK);
    assert_int_equal(a.nfiles, 3);
    assert_int_equal(b.nfiles, 3);
    assert_string_equal(a.sha256, b.sha256); /* paths, sizes, contents */
    for (size_t i = 0; i < a.nfiles; i++)
        assert_int_equal(b.files[i].mode, a.files[i].mode);
    assert_int_equal(b.files[2].mode, 0755); /* tool */
    /* the temporary archive is gone */
    assert_int_equal(access(at("dest.tar.gz"), F_OK), -1);
    assert_int_equal(access(at("out.tar.gz"), F_OK), -1);
    extract_result_free(&a);
    extract_result_free(&b);
    s3_delete(g_s3, obj);
}

/* Uploads a tar.gz holding ok.py and one hostile entry under obj. */
static void upload_tampered(const char *obj, const char *name, int type, const char *link)
{
    const char *path = at("tampered.tar.gz");

    tgz(path, name, type, link);
    assert_int_equal(s3_put_file(g_s3, obj, path, "application/gzip", NULL, NULL), ML_OK);
    unlink(path);
}

static void test_tampered_refused(void **state)
{
    char obj[200], err[512] = "";
    int missing = -1;
    struct stat st;

    (void)state;
    assert_int_equal(mkdir(at("w"), 0755), 0);
    object("tampered-link", obj, sizeof(obj));
    upload_tampered(obj, "lib", AE_IFLNK, "/etc");
    assert_int_equal(mkdir(at("w/out"), 0755), 0);
    assert_int_equal(depcache_get(g_s3, obj, at("w/out"), &missing, err, sizeof(err)), ML_ERR);
    assert_int_equal(missing, 0);
    assert_non_null(strstr(err, "refused"));
    assert_int_equal(entries("w/out"), 0); /* nothing half-restored */
    s3_delete(g_s3, obj);

    object("tampered-dotdot", obj, sizeof(obj));
    upload_tampered(obj, "../../escaped.py", AE_IFREG, NULL);
    assert_int_equal(depcache_get(g_s3, obj, at("w/out"), &missing, err, sizeof(err)), ML_ERR);
    assert_int_equal(missing, 0);
    assert_non_null(strstr(err, "refused"));
    assert_int_equal(entries("w/out"), 0);
    assert_int_equal(lstat(at("escaped.py"), &st), -1);
    assert_int_equal(entries("w"), 1); /* only out/: no escaped file, no leftover archive */
    s3_delete(g_s3, obj);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = { T(test_round_trip), T(test_tampered_refused) };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
