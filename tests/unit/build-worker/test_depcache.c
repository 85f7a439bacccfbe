/* test_depcache.c — the dependency cache's key (stable for the same inputs, different when any
 * input changes) and object name, and the tar.gz reader its hits go through refusing tampered
 * archives (links, "../" and absolute names) without writing outside the destination. The S3
 * round trip is tests/integration/build-worker/test_depcache_s3.c. */
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

#include "bw_fixture.h"
#include "depcache.h"
#include "extract.h"

static void key_of(const depcache_key_in *in, char key[DEPCACHE_KEY_LEN])
{
    assert_int_equal(depcache_key(in, key), ML_OK);
    assert_int_equal(strlen(key), 64);
}

static void test_key(void **state)
{
    char files_a[2][256], k0[DEPCACHE_KEY_LEN], k[DEPCACHE_KEY_LEN], obj[200];
    const char *files[3];
    depcache_key_in in = { "pip", "python3.11", "Python 3.11.2", "x86_64-linux-gnu-glibc2.36",
                           "pip install --target --no-compile --only-binary=:all:",
                           "https://pypi.org/simple", files };
    depcache_key_in v;

    (void)state;
    assert_int_equal(mkdir(at("a"), 0755), 0);
    assert_int_equal(mkdir(at("b"), 0755), 0);
    put("a/requirements.txt", "six==1.16.0\n", 0644);
    put("b/requirements.txt", "six==1.16.0\n", 0644);
    ml_strlcpy(files_a[0], at("a/requirements.txt"), sizeof(files_a[0]));
    files[0] = files_a[0], files[1] = NULL;
    key_of(&in, k0);
    key_of(&in, k);
    assert_string_equal(k, k0); /* stable */
    /* the same bytes elsewhere (another build's work dir): the same key */
    ml_strlcpy(files_a[1], at("b/requirements.txt"), sizeof(files_a[1]));
    files[0] = files_a[1];
    key_of(&in, k);
    assert_string_equal(k, k0);
    files[0] = files_a[0];

    /* any input changes it */
#define DIFFERS(field, value) do { v = in; v.field = value; key_of(&v, k); assert_string_not_equal(k, k0); } while (0)
    DIFFERS(ecosystem, "npm");
    DIFFERS(runtime, "python3.12");
    DIFFERS(interp_version, "Python 3.11.3");
    DIFFERS(platform, "aarch64-linux-gnu-glibc2.36");
    DIFFERS(flags, "pip install --target --no-compile (sdists allowed)");
    DIFFERS(index_url, "https://mirror.example/simple");
    /* moving bytes between fields is not the same input */
    v = in;
    v.runtime = "python3.11P";
    v.interp_version = "ython 3.11.2";
    key_of(&v, k);
    assert_string_not_equal(k, k0);
    /* the file's bytes */
    put("a/requirements.txt", "six==1.16.1\n", 0644);
    key_of(&in, k);
    assert_string_not_equal(k, k0);
    put("a/requirements.txt", "six==1.16.0\n", 0644);
    key_of(&in, k);
    assert_string_equal(k, k0);
    /* one more file (a lockfile) */
    put("a/package-lock.json", "{}", 0644);
    files[1] = at("a/package-lock.json");
    files[2] = NULL;
    key_of(&in, k);
    assert_string_not_equal(k, k0);
    /* a missing input is an error */
    files[1] = at("a/nope");
    assert_int_equal(depcache_key(&in, k), ML_ERR);

    depcache_object("pip", k0, obj, sizeof(obj));
    assert_int_equal(strncmp(obj, "depcache/pip/", 13), 0);
    assert_string_equal(obj + 13 + 64, ".tar.gz");
}

/* Writes a tar.gz with one regular file "ok.py" and then the given hostile entry. */
static bool exists(const char *rel)
{
    struct stat st;

    return lstat(at(rel), &st) == 0;
}

static void test_tampered(void **state)
{
    extract_result r = { 0 };

    (void)state;
    assert_int_equal(mkdir(at("sub"), 0755), 0);
    /* a link */
    assert_int_equal(mkdir(at("sub/d1"), 0755), 0);
    tgz(at("t1.tar.gz"), "lib", AE_IFLNK, "/etc");
    assert_int_equal(extract_tar_gz(at("t1.tar.gz"), at("sub/d1"), NULL, &r), ML_ERR);
    assert_true(r.rejected);
    assert_non_null(strstr(r.error, "link"));
    assert_false(exists("sub/d1/lib"));
    extract_result_free(&r);
    /* ../ */
    assert_int_equal(mkdir(at("sub/d2"), 0755), 0);
    tgz(at("t2.tar.gz"), "../../escaped.py", AE_IFREG, NULL);
    assert_int_equal(extract_tar_gz(at("t2.tar.gz"), at("sub/d2"), NULL, &r), ML_ERR);
    assert_true(r.rejected);
    assert_false(exists("escaped.py"));
    assert_false(exists("sub/escaped.py"));
    extract_result_free(&r);
    /* absolute */
    assert_int_equal(mkdir(at("sub/d3"), 0755), 0);
    tgz(at("t3.tar.gz"), at("abs.py"), AE_IFREG, NULL);
    assert_int_equal(extract_tar_gz(at("t3.tar.gz"), at("sub/d3"), NULL, &r), ML_ERR);
    assert_false(exists("abs.py"));
    extract_result_free(&r);
    /* a clean one unpacks */
    assert_int_equal(mkdir(at("sub/d4"), 0755), 0);
    tgz(at("t4.tar.gz"), "pkg/mod.py", AE_IFREG, NULL);
    assert_int_equal(extract_tar_gz(at("t4.tar.gz"), at("sub/d4"), NULL, &r), ML_OK);
    assert_int_equal(r.nfiles, 2);
    assert_string_equal(r.files[1].path, "pkg/mod.py");
    assert_true(exists("sub/d4/pkg/mod.py"));
    extract_result_free(&r);
    /* not a tar.gz */
    put("junk.tar.gz", "not gzip at all", 0644);
    assert_int_equal(mkdir(at("sub/d5"), 0755), 0);
    assert_int_equal(extract_tar_gz(at("junk.tar.gz"), at("sub/d5"), NULL, &r), ML_ERR);
    extract_result_free(&r);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = { T(test_key), T(test_tampered) };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
