/* fuzz_extract.c — libFuzzer target for extract_zip (build and run: tests/fuzz/README.md).
 *
 * Each input is written to a file and unpacked into a fresh scratch directory nested three
 * levels below a private base directory. Besides the sanitizers, it aborts when:
 *  - anything other than the scratch directory appears in the levels above it (an escape);
 *  - a success does not match the tree on disk (a listed file missing, not a regular file,
 *    wrong size, or an unlisted file), or r.sha256 differs from the hash of extract_manifest();
 *  - a failure has no message, or a message with a control character (it is shown to users
 *    and stored in JSON);
 *  - ml_rmtree cannot remove the tree. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "crypto.h"
#include "extract.h"

static char base[256], zip[300], level[3][300], dest[320];

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "fuzz_extract: check failed: %s (line %d)\n", #cond, __LINE__);   \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

static void cleanup(void)
{
    ml_rmtree(base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");

    (void)argc;
    (void)argv;
    CHECK(ml_snprintf(base, sizeof(base), "%s/fuzz_extract_XXXXXX", tmp ? tmp : "/tmp") == ML_OK);
    CHECK(mkdtemp(base) != NULL);
    snprintf(zip, sizeof(zip), "%s/input.zip", base);
    snprintf(level[0], sizeof(level[0]), "%s/a", base);
    snprintf(level[1], sizeof(level[1]), "%s/b", level[0]);
    snprintf(level[2], sizeof(level[2]), "%s/c", level[1]);
    snprintf(dest, sizeof(dest), "%s/dest", level[2]);
    for (int i = 0; i < 3; i++)
        CHECK(mkdir(level[i], 0755) == 0);
    atexit(cleanup);
    return 0;
}

/* dir may contain only a and b (b may be NULL). */
static void expect_only(const char *dir, const char *a, const char *b)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    CHECK(d != NULL);
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (strcmp(de->d_name, a) && (!b || strcmp(de->d_name, b))) {
            fprintf(stderr, "fuzz_extract: unexpected '%s' in %s\n", de->d_name, dir);
            abort();
        }
    }
    closedir(d);
}

static size_t count_regular(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct stat st;
    char path[8192];
    size_t n = 0;

    CHECK(d != NULL);
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        CHECK(ml_snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) == ML_OK);
        CHECK(lstat(path, &st) == 0);
        CHECK(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)); /* no links, no special files */
        n += S_ISDIR(st.st_mode) ? count_regular(path) : 1;
    }
    closedir(d);
    return n;
}

static void check_success(const extract_result *r)
{
    char path[8192], hex[CRYPTO_SHA256_HEX_LEN], err[512];
    ml_buf m = { 0 };
    struct stat st;
    size_t i;

    for (i = 0; i < r->nfiles; i++) {
        CHECK(ml_snprintf(path, sizeof(path), "%s/%s", dest, r->files[i].path) == ML_OK);
        CHECK(lstat(path, &st) == 0);
        CHECK(S_ISREG(st.st_mode) && st.st_size == r->files[i].size);
        CHECK((st.st_mode & 07777) == r->files[i].mode);
        CHECK(i == 0 || strcmp(r->files[i - 1].path, r->files[i].path) < 0);
    }
    CHECK(count_regular(dest) == r->nfiles);
    CHECK(extract_manifest(r, &m) == ML_OK);
    crypto_sha256_hex(m.data ? m.data : "", m.len, hex);
    CHECK(!strcmp(hex, r->sha256));
    ml_buf_free(&m);
    /* Exercise the handler checks; either answer is fine, a crash is not. */
    extract_check_handler(r, "python3", "app.handler", err, sizeof(err));
    extract_check_handler(r, "nodejs", "index.handler", err, sizeof(err));
    extract_check_handler(r, "provided", "bootstrap", err, sizeof(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    extract_limits lim = { .max_total_bytes = 8 * 1024 * 1024, .max_entries = 2000 };
    extract_result r = { 0 };
    FILE *fp = fopen(zip, "wb");
    const unsigned char *p;

    CHECK(fp != NULL);
    CHECK(fwrite(data, 1, size, fp) == size);
    CHECK(fclose(fp) == 0);
    CHECK(mkdir(dest, 0755) == 0);
    if (extract_zip(zip, dest, &lim, &r) == ML_OK) {
        check_success(&r);
    } else {
        CHECK(r.error[0] != '\0');
        for (p = (const unsigned char *)r.error; *p; p++)
            CHECK(*p >= 0x20 && *p != 0x7f);
    }
    expect_only(base, "input.zip", "a");
    expect_only(level[0], "b", NULL);
    expect_only(level[1], "c", NULL);
    expect_only(level[2], "dest", NULL);
    extract_result_free(&r);
    CHECK(ml_rmtree(dest) == ML_OK);
    return 0;
}
