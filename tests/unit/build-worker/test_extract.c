/* test_extract.c — safe ZIP extraction: hostile packages are refused with a user-facing message
 * and nothing appears outside the scratch directory; valid packages unpack with the right
 * manifest; handler checks per runtime; ml_rmtree never follows links.
 *
 * Packages are built here: with libarchive's writer where it can express the case (deflate,
 * symlinks, encryption, a 300 MiB bomb) and with a tiny raw "stored" ZIP writer for what it
 * refuses to write (device files, FIFOs, control characters, duplicate names, lying sizes).
 *
 * Layout per test: <parent>/sub/dest is the scratch directory, so a "../../x" escape would land
 * in <parent> — every hostile case asserts <parent> holds only sub/ and sub/ only dest/. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
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

#include "buf.h"
#include "crypto.h"
#include "extract.h"

#define MIB (1024 * 1024)

typedef struct fixture {
    char parent[64];   /* mkdtemp */
    char sub[96];
    char dest[128];    /* the scratch directory */
    char zipdir[64];   /* mkdtemp, holds the package outside parent */
    char zip[128];
    extract_result res;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    ml_strlcpy(f->parent, "/tmp/test_extract_XXXXXX", sizeof(f->parent));
    ml_strlcpy(f->zipdir, "/tmp/test_extract_zip_XXXXXX", sizeof(f->zipdir));
    if (!mkdtemp(f->parent) || !mkdtemp(f->zipdir))
        return -1;
    snprintf(f->sub, sizeof(f->sub), "%s/sub", f->parent);
    snprintf(f->dest, sizeof(f->dest), "%s/dest", f->sub);
    snprintf(f->zip, sizeof(f->zip), "%s/package.zip", f->zipdir);
    if (mkdir(f->sub, 0755) != 0 || mkdir(f->dest, 0755) != 0)
        return -1;
    *state = f;
    return 0;
}

/* With EXTRACT_SEED_DIR set, each test's last package is kept there: the fuzzer's seed corpus
 * (tests/fuzz/README.md). */
static void save_seed(const fixture *f)
{
    static int n;
    const char *dir = getenv("EXTRACT_SEED_DIR");
    char path[256], buf[65536];
    FILE *in, *out;
    size_t len;

    if (!dir || !(in = fopen(f->zip, "rb")))
        return;
    assert_int_equal(ml_snprintf(path, sizeof(path), "%s/seed_%03d_%d.zip", dir, n++,
                                 (int)getpid()), ML_OK);
    out = fopen(path, "wb");
    assert_non_null(out);
    while ((len = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, len, out), len);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static int teardown(void **state)
{
    fixture *f = *state;

    save_seed(f);
    extract_result_free(&f->res);
    assert_int_equal(ml_rmtree(f->parent), ML_OK);
    assert_int_equal(ml_rmtree(f->zipdir), ML_OK);
    free(f);
    return 0;
}

/* Names in dir other than . and .., sorted, joined by ','. */
static void list_dir(const char *dir, char *out, size_t len)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort), i;
    size_t o = 0;

    assert_true(n >= 0);
    out[0] = '\0';
    for (i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, "..")) {
            assert_int_equal(ml_snprintf(out + o, len - o, "%s%s", o ? "," : "",
                                         names[i]->d_name), ML_OK);
            o += strlen(out + o);
        }
        free(names[i]);
    }
    free(names);
}

/* Back to an empty scratch directory and a zeroed result, for the next case of a test. */
static void reset_dest(fixture *f)
{
    extract_result_free(&f->res);
    assert_int_equal(ml_rmtree(f->dest), ML_OK);
    assert_int_equal(mkdir(f->dest, 0755), 0);
}

static void assert_nothing_outside(const fixture *f)
{
    char names[512];

    list_dir(f->parent, names, sizeof(names));
    assert_string_equal(names, "sub");
    list_dir(f->sub, names, sizeof(names));
    assert_string_equal(names, "dest");
}

static void assert_dest_empty(const fixture *f)
{
    char names[512];

    list_dir(f->dest, names, sizeof(names));
    assert_string_equal(names, "");
}

/* The metric label each kind of rejection message must carry. */
static const char *want_reason(const char *error)
{
    static const struct { const char *fragment, *reason; } map[] = {
        { "escapes the package", "traversal" },    { "'..' component", "traversal" },
        { "not valid UTF-8", "invalid_name" },      { "empty name", "invalid_name" },
        { "control character", "invalid_name" },   { "longer than", "invalid_name" },
        { "absolute path", "absolute_path" },       { "symbolic link", "symlink" },
        { "hard link", "hardlink" },                { "more than once", "duplicate" },
        { "to be a directory", "duplicate" },       { "has a directory by", "duplicate" },
        { "entries", "too_many_entries" },          { "compression ratio", "ratio" },
        { "unpacks to more than", "too_large" },    { "is corrupt", "corrupt" },
        { "not a valid ZIP", "not_zip" },           { "contains no files", "empty" },
        { "is encrypted", "encrypted" },            { "device file", "special_file" },
        { "socket", "special_file" },               { "unsupported file type", "special_file" },
    };

    for (size_t i = 0; i < ML_ARRAY_LEN(map); i++)
        if (strstr(error, map[i].fragment))
            return map[i].reason;
    fail_msg("no reason known for \"%s\"", error);
    return NULL;
}

/* Runs extract_zip and asserts a package rejection whose message contains want, with the
 * matching reason label. */
static void expect_reject(fixture *f, const extract_limits *lim, const char *want)
{
    int rc = extract_zip(f->zip, f->dest, lim, &f->res);

    if (rc != ML_ERR || !strstr(f->res.error, want))
        fail_msg("want ML_ERR with \"%s\", got rc=%d error=\"%s\"", want, rc, f->res.error);
    assert_true(f->res.rejected);
    assert_non_null(f->res.reason);
    assert_string_equal(f->res.reason, want_reason(f->res.error));
    assert_nothing_outside(f);
}

static void read_file(const char *path, char *out, size_t len)
{
    FILE *fp = fopen(path, "rb");
    size_t n;

    assert_non_null(fp);
    n = fread(out, 1, len - 1, fp);
    out[n] = '\0';
    fclose(fp);
}

/* ---- libarchive writer ---- */

static struct archive *zw_open(const char *path)
{
    struct archive *a = archive_write_new();

    assert_non_null(a);
    assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    return a;
}

static void zw_entry(struct archive *a, const char *name, mode_t type, unsigned perm,
                     const char *link, const void *data, size_t len)
{
    struct archive_entry *e = archive_entry_new();

    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    if (link)
        archive_entry_set_symlink(e, link);
    if (type == AE_IFREG)
        archive_entry_set_size(e, (la_int64_t)len);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    if (len)
        assert_int_equal(archive_write_data(a, data, len), (la_ssize_t)len);
    archive_entry_free(e);
}

static void zw_file(struct archive *a, const char *name, unsigned perm, const char *text)
{
    zw_entry(a, name, AE_IFREG, perm, NULL, text, strlen(text));
}

static void zw_close(struct archive *a)
{
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* ---- raw stored-ZIP writer (Info-ZIP unix external attributes) ---- */

typedef struct raw_entry {
    const char *name;
    size_t namelen;      /* 0: strlen(name) */
    unsigned mode;       /* full st_mode, type bits included */
    const void *data;
    size_t len;
    int64_t declared;    /* >= 0: lie about the uncompressed size */
    int bad_crc;
    int legacy_name;     /* clear the "name is UTF-8" flag (as old DOS/Windows tools do) */
} raw_entry;

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    int k;

    while (n--) {
        c ^= *p++;
        for (k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put16(ml_buf *b, unsigned v)
{
    unsigned char x[2] = { (unsigned char)v, (unsigned char)(v >> 8) };

    assert_int_equal(ml_buf_append(b, x, 2), ML_OK);
}

static void put32(ml_buf *b, uint32_t v)
{
    put16(b, v & 0xffffu);
    put16(b, v >> 16);
}

/* Header fields shared by the local and central records, from "version needed" on. */
static void put_common(ml_buf *b, const raw_entry *e, size_t namelen)
{
    uint32_t crc = crc32_of(e->data, e->len) ^ (e->bad_crc ? 1u : 0u);

    put16(b, 20);          /* version needed */
    put16(b, e->legacy_name ? 0 : 0x800); /* flags: name is UTF-8 */
    put16(b, 0);           /* stored */
    put16(b, 0);           /* time */
    put16(b, 0x21);        /* date 1980-01-01 */
    put32(b, crc);
    put32(b, (uint32_t)e->len);
    put32(b, (uint32_t)(e->declared >= 0 ? (size_t)e->declared : e->len));
    put16(b, (unsigned)namelen);
    put16(b, 0);           /* extra */
}

static void put64(ml_buf *b, uint64_t v)
{
    put32(b, (uint32_t)v);
    put32(b, (uint32_t)(v >> 32));
}

/* The ZIP64 end records: the real counts and offsets, with the classic record saturated. */
static void put_end64(ml_buf *cd, size_t n, size_t cdlen, uint64_t cdoff)
{
    uint64_t at = cdoff + cd->len; /* where the ZIP64 end record starts */

    put32(cd, 0x06064b50);
    put64(cd, 44);
    put16(cd, 45);
    put16(cd, 45);
    put32(cd, 0);
    put32(cd, 0);
    put64(cd, n);
    put64(cd, n);
    put64(cd, cdlen);
    put64(cd, cdoff);
    put32(cd, 0x07064b50); /* locator */
    put32(cd, 0);
    put64(cd, at);
    put32(cd, 1);
    put32(cd, 0x06054b50);
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, 0xffff);
    put16(cd, 0xffff);
    put32(cd, 0xffffffffu);
    put32(cd, 0xffffffffu);
    put16(cd, 0);
}

/* Writes the entries as a stored ZIP; junk bytes are prepended (offsets not adjusted, as `cat
 * stub package.zip` makes a self-extractor); zip64 writes ZIP64 end records. */
static void raw_write(const char *path, const raw_entry *ents, size_t n, size_t junk, int zip64)
{
    ml_buf body = { 0 }, cd = { 0 };
    size_t i, namelen, cdlen;
    FILE *fp;

    ml_buf_init(&body, 256u * MIB);
    for (i = 0; i < junk; i++)
        assert_int_equal(ml_buf_append(&body, "J", 1), ML_OK);
    for (i = 0; i < n; i++) {
        const raw_entry *e = &ents[i];
        uint32_t off = (uint32_t)(body.len - junk);

        namelen = e->namelen ? e->namelen : strlen(e->name);
        put32(&body, 0x04034b50);
        put_common(&body, e, namelen);
        assert_int_equal(ml_buf_append(&body, e->name, namelen), ML_OK);
        if (e->len)
            assert_int_equal(ml_buf_append(&body, e->data, e->len), ML_OK);
        put32(&cd, 0x02014b50);
        put16(&cd, 3u << 8 | 20); /* made by unix */
        put_common(&cd, e, namelen);
        put16(&cd, 0);            /* comment */
        put16(&cd, 0);            /* disk */
        put16(&cd, 0);            /* internal attributes */
        put32(&cd, (uint32_t)e->mode << 16);
        put32(&cd, off);
        assert_int_equal(ml_buf_append(&cd, e->name, namelen), ML_OK);
    }
    cdlen = cd.len;
    if (zip64) {
        put_end64(&cd, n, cdlen, body.len - junk);
        goto write;
    }
    put32(&cd, 0x06054b50);
    put16(&cd, 0);
    put16(&cd, 0);
    put16(&cd, (unsigned)n);
    put16(&cd, (unsigned)n);
    put32(&cd, (uint32_t)cdlen);
    put32(&cd, (uint32_t)(body.len - junk));
    put16(&cd, 0);
write:
    fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(body.data, 1, body.len, fp), body.len);
    assert_int_equal(fwrite(cd.data, 1, cd.len, fp), cd.len);
    assert_int_equal(fclose(fp), 0);
    ml_buf_free(&body);
    ml_buf_free(&cd);
}

static void raw_zip(const char *path, const raw_entry *ents, size_t n, size_t junk)
{
    raw_write(path, ents, n, junk, 0);
}

#define RAW(nm, md, txt) { .name = (nm), .mode = (md), .data = (txt), .len = strlen(txt), .declared = -1 }

static void raw_one(fixture *f, const char *name, unsigned mode)
{
    raw_entry e = RAW(name, mode, "x");

    raw_zip(f->zip, &e, 1, 0);
}

static void raw_legacy(fixture *f, const char *name)
{
    raw_entry e = RAW(name, S_IFREG | 0644, "x");

    e.legacy_name = 1;
    raw_zip(f->zip, &e, 1, 0);
}

/* ---- valid packages ---- */

static void test_valid_python_package(void **state)
{
    fixture *f = *state;
    char path[256], got[64], want_sha[CRYPTO_SHA256_HEX_LEN], err[256];
    static const char app[] = "def handler(event, context):\n    return event\n";
    ml_buf m = { 0 };
    struct stat st;
    mode_t old = umask(077); /* modes must not depend on the worker's umask */
    struct archive *a = zw_open(f->zip);

    zw_entry(a, "data/", AE_IFDIR, 0700, NULL, NULL, 0);
    zw_file(a, "app.py", 06755, app);          /* setuid/setgid must be stripped */
    zw_file(a, "./lib//util.py", 0600, "X = 1\n"); /* no directory entry for lib/ */
    zw_file(a, "caf\xc3\xa9.txt", 0644, "");
    zw_close(a);
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_OK);
    umask(old);

    assert_int_equal(f->res.nfiles, 3);
    assert_string_equal(f->res.files[0].path, "app.py");
    assert_string_equal(f->res.files[1].path, "caf\xc3\xa9.txt");
    assert_string_equal(f->res.files[2].path, "lib/util.py");
    assert_int_equal(f->res.files[0].size, strlen(app));
    assert_int_equal(f->res.files[0].mode, 0755);
    assert_int_equal(f->res.files[2].mode, 0644);
    assert_int_equal(f->res.total_bytes, strlen(app) + 6);
    crypto_sha256_hex(app, strlen(app), want_sha);
    assert_string_equal(f->res.files[0].sha256, want_sha);
    crypto_sha256_hex("", 0, want_sha);
    assert_string_equal(f->res.files[1].sha256, want_sha);

    snprintf(path, sizeof(path), "%s/app.py", f->dest);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_mode, S_IFREG | 0755);
    snprintf(path, sizeof(path), "%s/lib/util.py", f->dest);
    read_file(path, got, sizeof(got));
    assert_string_equal(got, "X = 1\n");
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_mode, S_IFREG | 0644);
    snprintf(path, sizeof(path), "%s/lib", f->dest);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_mode, S_IFDIR | 0755);
    snprintf(path, sizeof(path), "%s/data", f->dest);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_mode, S_IFDIR | 0755);

    /* The artifact hash is the SHA-256 of the documented manifest text. */
    assert_int_equal(extract_manifest(&f->res, &m), ML_OK);
    crypto_sha256_hex(app, strlen(app), want_sha);
    snprintf(path, sizeof(path), "app.py\t%zu\t%s\n", strlen(app), want_sha);
    assert_memory_equal(m.data, path, strlen(path));
    crypto_sha256_hex(m.data, m.len, want_sha);
    assert_string_equal(f->res.sha256, want_sha);
    assert_int_equal(m.len, strlen(path) + strlen("caf\xc3\xa9.txt\t0\t") + 65 +
                                strlen("lib/util.py\t6\t") + 65);
    ml_buf_free(&m);

    assert_int_equal(extract_check_handler(&f->res, "python3", "app.handler", err, sizeof(err)),
                     ML_OK);
    assert_int_equal(extract_check_handler(&f->res, "python3", "main.handler", err, sizeof(err)),
                     ML_ERR);
    assert_string_equal(err, "handler module 'main.py' not found at the package root");
    assert_int_equal(extract_check_handler(&f->res, "python3", "app", err, sizeof(err)), ML_ERR);
    assert_string_equal(err, "handler 'app' must have the form module.function (e.g. app.handler)");
    assert_int_equal(extract_check_handler(&f->res, "python3", "lib.util.x", err, sizeof(err)),
                     ML_ERR);
    assert_non_null(strstr(err, "must have the form module.function"));
    assert_int_equal(extract_check_handler(&f->res, "python3", "1app.handler", err, sizeof(err)),
                     ML_ERR);
    assert_int_equal(extract_check_handler(&f->res, "nodejs", "app.handler", err, sizeof(err)),
                     ML_ERR);
    assert_string_equal(err, "handler file 'app.js' not found at the package root");
    /* a nodejs file name may hold '-', as POST /functions accepts it (fnspec) */
    assert_int_equal(extract_check_handler(&f->res, "nodejs", "my-app.handler", err, sizeof(err)),
                     ML_ERR);
    assert_string_equal(err, "handler file 'my-app.js' not found at the package root");
    assert_int_equal(extract_check_handler(&f->res, "ruby", "app.handler", err, sizeof(err)),
                     ML_ERR);
    assert_string_equal(err, "unknown runtime 'ruby' (expected python3.9 ... python3.13, "
                        "nodejs18.x ... nodejs22.x, provided.al2, provided.al2023 or an alias)");
    /* AWS's names follow their family's rules (docs/versions.md "Runtimes") */
    assert_int_equal(extract_check_handler(&f->res, "python3.12", "app.handler", err, sizeof(err)), ML_OK);
    assert_int_equal(extract_check_handler(&f->res, "nodejs20.x", "my-app.handler", err, sizeof(err)),
                     ML_ERR);
    assert_string_equal(err, "handler file 'my-app.js' not found at the package root");
    assert_int_equal(extract_check_handler(&f->res, "provided.al2023", "bootstrap", err, sizeof(err)),
                     ML_ERR);
    assert_string_equal(err, "executable 'bootstrap' not found at the package root");
    assert_int_equal(extract_check_handler(&f->res, "provided", "bootstrap", err, sizeof(err)),
                     ML_ERR);
    assert_string_equal(err, "executable 'bootstrap' not found at the package root");
}

/* The same content gives the same artifact hash, whatever the entry order or compression. */
static void test_artifact_hash_is_content_only(void **state)
{
    fixture *f = *state;
    char first[CRYPTO_SHA256_HEX_LEN];
    raw_entry ents[] = { RAW("b.py", S_IFREG | 0644, "B"), RAW("a.py", S_IFREG | 0644, "A") };
    struct archive *a = zw_open(f->zip);

    zw_file(a, "a.py", 0644, "A");
    zw_file(a, "b.py", 0644, "B");
    zw_close(a);
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_OK);
    memcpy(first, f->res.sha256, sizeof(first));
    reset_dest(f);
    raw_zip(f->zip, ents, 2, 0);
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_OK);
    assert_string_equal(f->res.sha256, first);
    assert_string_equal(f->res.files[0].path, "a.py");
}

static void test_valid_nodejs_and_nested_hint(void **state)
{
    fixture *f = *state;
    char err[512];
    struct archive *a = zw_open(f->zip);

    zw_file(a, "index.js", 0644, "exports.handler = async (e) => e;\n");
    zw_file(a, "myproj/app.py", 0644, "def h(e, c): pass\n");
    zw_close(a);
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_OK);
    assert_int_equal(extract_check_handler(&f->res, "nodejs", "index.handler", err, sizeof(err)),
                     ML_OK);
    assert_int_equal(extract_check_handler(&f->res, "python3", "app.h", err, sizeof(err)), ML_ERR);
    assert_string_equal(err, "handler module 'app.py' not found at the package root (found "
                        "'myproj/app.py': zip the folder's contents, not the folder itself)");
}

static void test_provided_bootstrap(void **state)
{
    fixture *f = *state;
    char err[256];
    struct archive *a = zw_open(f->zip);

    zw_file(a, "bootstrap", 0755, "#!/bin/sh\n");
    zw_close(a);
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_OK);
    assert_int_equal(extract_check_handler(&f->res, "provided", "bootstrap", err, sizeof(err)),
                     ML_OK);
    reset_dest(f);

    a = zw_open(f->zip);
    zw_file(a, "bootstrap", 0644, "#!/bin/sh\n");
    zw_close(a);
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_OK);
    assert_int_equal(extract_check_handler(&f->res, "provided", "bootstrap", err, sizeof(err)),
                     ML_ERR);
    assert_string_equal(err, "'bootstrap' is not executable: set its x bit (chmod +x bootstrap) "
                        "before zipping");
}

/* ---- hostile names ---- */

static void test_traversal(void **state)
{
    fixture *f = *state;
    struct archive *a = zw_open(f->zip);

    zw_file(a, "ok.py", 0644, "x");
    zw_file(a, "../../etc/passwd", 0644, "root::0:0::/:/bin/sh\n");
    zw_close(a);
    expect_reject(f, NULL, "zip entry '../../etc/passwd' escapes the package");
}

static void test_traversal_inside_then_out(void **state)
{
    fixture *f = *state;
    struct archive *a = zw_open(f->zip);

    zw_file(a, "a/b/../../../escaped.txt", 0644, "x");
    zw_close(a);
    expect_reject(f, NULL, "zip entry 'a/b/../../../escaped.txt' escapes the package");
    assert_dest_empty(f);
}

static void test_dotdot_that_stays_inside_is_refused(void **state)
{
    fixture *f = *state;
    struct archive *a = zw_open(f->zip);

    zw_file(a, "a/../b.py", 0644, "x");
    zw_close(a);
    expect_reject(f, NULL, "zip entry 'a/../b.py' has a '..' component");
}

static void test_absolute_path(void **state)
{
    fixture *f = *state;
    char name[160], want[256];
    struct archive *a = zw_open(f->zip);

    /* Aimed at our own parent directory, so a broken check cannot touch the real system. */
    snprintf(name, sizeof(name), "%s/abs.txt", f->parent);
    zw_file(a, name, 0644, "x");
    zw_close(a);
    snprintf(want, sizeof(want), "zip entry '%s' is an absolute path", name);
    expect_reject(f, NULL, want);
}

static void test_bad_names(void **state)
{
    static const struct {
        const char *name;
        const char *want;
    } cases[] = {
        { "bad\nname.py", "zip entry 'bad\\x0aname.py' has a control character in its name" },
        { "tab\there", "zip entry 'tab\\x09here' has a control character in its name" },
        /* libarchive turns '\\' into '/', so this is a traversal like any other. */
        { "..\\..\\evil.txt", "zip entry '../../evil.txt' escapes the package" },
    };
    /* Names without the UTF-8 flag arrive as raw bytes; ours is the only check. */
    static const struct {
        const char *name;
        const char *want;
    } legacy[] = {
        { "caf\xe9.py", "zip entry 'caf\\xe9.py' has a name that is not valid UTF-8" },
        /* Overlong encoding of '/', the classic "..\xc0\xaf.." traversal trick. */
        { "..\xc0\xaf..\xc0\xafx", "zip entry '..\\xc0\\xaf..\\xc0\\xafx' has a name that is not valid" },
        { "\xed\xa0\x80.py", "zip entry '\\xed\\xa0\\x80.py' has a name that is not valid UTF-8" },
    };
    fixture *f = *state;
    size_t i;

    for (i = 0; i < ML_ARRAY_LEN(cases); i++) {
        raw_one(f, cases[i].name, S_IFREG | 0644);
        expect_reject(f, NULL, cases[i].want);
        assert_dest_empty(f);
        reset_dest(f);
    }
    for (i = 0; i < ML_ARRAY_LEN(legacy); i++) {
        raw_legacy(f, legacy[i].name);
        expect_reject(f, NULL, legacy[i].want);
        assert_dest_empty(f);
        reset_dest(f);
    }
    /* Flagged as UTF-8 but not: libarchive cannot decode it at all. */
    raw_one(f, "caf\xe9.py", S_IFREG | 0644);
    expect_reject(f, NULL, "zip entry #1 has a name that is not valid UTF-8");
    reset_dest(f);
    /* Valid UTF-8 with and without the flag is fine (with the flag it needs the UTF-8
     * LC_CTYPE extract_zip sets: the test runs in the C locale). */
    raw_legacy(f, "\xe6\x97\xa5\xe6\x9c\xac.py");
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_OK);
    assert_string_equal(f->res.files[0].path, "\xe6\x97\xa5\xe6\x9c\xac.py");
    reset_dest(f);
    raw_one(f, "\xe6\x97\xa5\xe6\x9c\xac.py", S_IFREG | 0644);
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_OK);
    assert_string_equal(f->res.files[0].path, "\xe6\x97\xa5\xe6\x9c\xac.py");
}

static void test_empty_and_long_names(void **state)
{
    fixture *f = *state;
    char name[1100];
    raw_entry dot = RAW(".", S_IFREG | 0644, "x");

    raw_one(f, "", S_IFREG | 0644);
    expect_reject(f, NULL, "zip entry #1 has an empty name");
    extract_result_free(&f->res);

    /* "." typed as a file normalises to nothing. */
    raw_zip(f->zip, &dot, 1, 0);
    expect_reject(f, NULL, "has an empty name");
    extract_result_free(&f->res);

    memset(name, 'a', 1030);
    name[1030] = '\0';
    name[500] = '/';
    raw_one(f, name, S_IFREG | 0644);
    expect_reject(f, NULL, "has a name longer than 1024 bytes");
    assert_non_null(strstr(f->res.error, "aaa...'")); /* quoted name is truncated */
    extract_result_free(&f->res);

    memset(name, 'b', 300);
    name[300] = '\0';
    raw_one(f, name, S_IFREG | 0644);
    expect_reject(f, NULL, "has a path component longer than 255 bytes");
}

/* ---- links and special files ---- */

static void test_symlink_escape(void **state)
{
    fixture *f = *state;
    struct archive *a = zw_open(f->zip);

    /* The classic two-step: a link to the parent, then a file written "through" it. */
    zw_entry(a, "link", AE_IFLNK, 0777, "../..", NULL, 0);
    zw_file(a, "link/escaped.txt", 0644, "pwned");
    zw_close(a);
    expect_reject(f, NULL, "zip entry 'link' is a symbolic link pointing outside the package");
    assert_dest_empty(f);
}

/* extract_zip_report's collector: every refusal, "reason: message" lines. */
typedef struct reports {
    char text[2048];
    int n;
} reports;

static void collect(void *ud, const char *reason, const char *message)
{
    reports *r = ud;
    size_t len = strlen(r->text);

    ml_snprintf_trunc(r->text + len, sizeof(r->text) - len, "%s: %s\n", reason, message);
    r->n++;
}

/* Every refused entry is named (the build log shows them all), the first one's error stands,
 * nothing is written after the first refusal, and a limit still stops at once. */
static void test_report_names_every_refused_entry(void **state)
{
    fixture *f = *state;
    struct archive *a = zw_open(f->zip);
    reports r = { .n = 0 };

    zw_entry(a, "../evil.py", AE_IFREG, 0644, NULL, "x", 1);
    zw_entry(a, "link", AE_IFLNK, 0777, "../..", NULL, 0);
    zw_file(a, "link/escaped.txt", 0644, "pwned");
    zw_entry(a, "/abs.py", AE_IFREG, 0644, NULL, "y", 1);
    zw_file(a, "app.py", 0644, "def handler(e, c): pass\n");
    zw_close(a);
    assert_int_equal(extract_zip_report(f->zip, f->dest, NULL, collect, &r, &f->res), ML_ERR);
    assert_int_equal(r.n, 3);
    assert_non_null(strstr(r.text, "traversal: zip entry '../evil.py' escapes the package\n"));
    assert_non_null(strstr(r.text, "symlink: zip entry 'link' is a symbolic link pointing outside the package"));
    assert_non_null(strstr(r.text, "absolute_path: zip entry '/abs.py' is an absolute path\n"));
    assert_true(f->res.rejected);
    assert_string_equal(f->res.reason, EXTRACT_R_TRAVERSAL);
    assert_int_equal(f->res.entries, 5);
    assert_dest_empty(f);
    extract_result_free(&f->res);

    /* a limit is not an entry's refusal: it stops there, and is reported too */
    reset_dest(f);
    a = zw_open(f->zip);
    zw_file(a, "big.txt", 0644, "0123456789");
    zw_entry(a, "link", AE_IFLNK, 0777, "/etc", NULL, 0);
    zw_close(a);
    memset(&r, 0, sizeof(r));
    extract_limits lim = { .max_file_bytes = 4 };
    assert_int_equal(extract_zip_report(f->zip, f->dest, &lim, collect, &r, &f->res), ML_ERR);
    assert_int_equal(r.n, 1);
    assert_string_equal(f->res.reason, EXTRACT_R_TOO_LARGE);
}

static void test_symlink_absolute_and_deep_escape(void **state)
{
    fixture *f = *state;
    struct archive *a = zw_open(f->zip);

    zw_entry(a, "etc", AE_IFLNK, 0777, "/etc", NULL, 0);
    zw_close(a);
    expect_reject(f, NULL, "zip entry 'etc' is a symbolic link pointing outside the package");
    extract_result_free(&f->res);

    a = zw_open(f->zip);
    zw_entry(a, "a/b/up", AE_IFLNK, 0777, "../x/../../..", NULL, 0);
    zw_close(a);
    expect_reject(f, NULL, "zip entry 'a/b/up' is a symbolic link pointing outside the package");
}

/* Links inside the tree are refused too (documented choice: the artifact is regular files,
 * and in-tree links can chain out: "s" -> "." then "e" -> "s/s/../.."). */
static void test_symlink_inside_tree_refused(void **state)
{
    fixture *f = *state;
    struct archive *a = zw_open(f->zip);

    zw_file(a, "lib/real.py", 0644, "x");
    zw_entry(a, "lib/alias.py", AE_IFLNK, 0777, "../lib/./real.py", NULL, 0);
    zw_close(a);
    expect_reject(f, NULL, "zip entry 'lib/alias.py' is a symbolic link; links are not "
                           "supported (store the file itself, e.g. zip without -y)");
    reset_dest(f);

    a = zw_open(f->zip);
    zw_entry(a, "s", AE_IFLNK, 0777, ".", NULL, 0);
    zw_entry(a, "e", AE_IFLNK, 0777, "s/s/../..", NULL, 0);
    zw_close(a);
    expect_reject(f, NULL, "zip entry 's' is a symbolic link; links are not supported");
    assert_dest_empty(f);
}

static void test_special_files(void **state)
{
    static const struct {
        unsigned mode;
        const char *want;
    } cases[] = {
        { S_IFCHR | 0644, "zip entry 'dev' is a device file" },
        { S_IFBLK | 0644, "zip entry 'dev' is a device file" },
        { S_IFSOCK | 0644, "zip entry 'dev' is a socket" },
        { 0170644, "zip entry 'dev' has an unsupported file type" },
    };
    fixture *f = *state;
    size_t i;

    char path[256];
    struct stat st;

    for (i = 0; i < ML_ARRAY_LEN(cases); i++) {
        raw_one(f, "dev", cases[i].mode);
        expect_reject(f, NULL, cases[i].want);
        assert_dest_empty(f);
        reset_dest(f);
    }
    /* libarchive 3.6.2 reports a FIFO-typed ZIP entry as a regular file: it is unpacked as
     * plain data, never as a FIFO. */
    raw_one(f, "fifo", S_IFIFO | 0644);
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_OK);
    snprintf(path, sizeof(path), "%s/fifo", f->dest);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_mode, S_IFREG | 0644);
}

static void test_duplicates_and_clashes(void **state)
{
    fixture *f = *state;
    raw_entry dup[] = { RAW("a.py", S_IFREG | 0644, "1"), RAW("./a.py", S_IFREG | 0644, "2") };
    raw_entry file_then_dir[] = { RAW("a", S_IFREG | 0644, "1"), RAW("a/b.py", S_IFREG | 0644, "2") };
    raw_entry dir_then_file[] = { RAW("d/x.py", S_IFREG | 0644, "1"), RAW("d", S_IFREG | 0644, "2") };
    char path[256], got[8];

    raw_zip(f->zip, dup, 2, 0);
    expect_reject(f, NULL, "zip entry './a.py' appears more than once in the package");
    /* The first copy stays as written: no overwrite happened. */
    snprintf(path, sizeof(path), "%s/a.py", f->dest);
    read_file(path, got, sizeof(got));
    assert_string_equal(got, "1");
    reset_dest(f);

    raw_zip(f->zip, file_then_dir, 2, 0);
    expect_reject(f, NULL, "zip entry 'a/b.py' needs 'a' to be a directory, but the package "
                           "also has a file by that name");
    reset_dest(f);

    raw_zip(f->zip, dir_then_file, 2, 0);
    expect_reject(f, NULL, "zip entry 'd' is a file, but the package also has a directory by "
                           "that name");
}

/* ---- limits ---- */

static raw_entry *many_entries(size_t n, char (*names)[16])
{
    raw_entry *ents = calloc(n, sizeof(*ents));
    size_t i;

    assert_non_null(ents);
    for (i = 0; i < n; i++) {
        snprintf(names[i], 16, "f%05u", (unsigned)(i % 100000));
        ents[i] = (raw_entry)RAW(names[i], S_IFREG | 0644, "");
    }
    return ents;
}

static void test_too_many_entries(void **state)
{
    fixture *f = *state;
    size_t n = 10001;
    char(*names)[16] = calloc(n, sizeof(*names));
    raw_entry *ents = many_entries(n, names);

    /* The first entry is hostile: the count must be refused before any entry is looked at,
     * i.e. from the central directory, without libarchive indexing it all. */
    ents[0].name = "../escape.txt";
    raw_zip(f->zip, ents, n, 0);
    expect_reject(f, NULL, "package has more than 10000 entries");
    assert_dest_empty(f);
    extract_result_free(&f->res);

    /* With a self-extractor-style prefix the pre-count cannot find the records; the per-entry
     * count still stops at entry 10,001. */
    ents[0].name = "f00000";
    raw_zip(f->zip, ents, n, 100);
    expect_reject(f, NULL, "package has more than 10000 entries");
    reset_dest(f);

    /* ZIP64 end records: the pre-count follows them too (hostile first entry again). */
    ents[0].name = "../escape.txt";
    raw_write(f->zip, ents, n, 0, 1);
    expect_reject(f, NULL, "package has more than 10000 entries");
    assert_dest_empty(f);
    reset_dest(f);
    /* ...and such a package is otherwise an ordinary ZIP to libarchive. */
    ents[0].name = "f00000";
    raw_write(f->zip, ents, 3, 0, 1);
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_OK);
    assert_int_equal(f->res.nfiles, 3);
    free(ents);
    free(names);
}

static void test_entry_limit_boundary(void **state)
{
    fixture *f = *state;
    char names[6][16];
    raw_entry *ents = many_entries(6, names);
    extract_limits lim = { .max_entries = 6 };

    raw_zip(f->zip, ents, 6, 0);
    assert_int_equal(extract_zip(f->zip, f->dest, &lim, &f->res), ML_OK);
    assert_int_equal(f->res.nfiles, 6);
    reset_dest(f);
    lim.max_entries = 5;
    expect_reject(f, &lim, "package has more than 5 entries");
    free(ents);
}

static void test_zip_bomb(void **state)
{
    fixture *f = *state;
    struct archive *a = zw_open(f->zip);
    struct archive_entry *e = archive_entry_new();
    static const char zeros[MIB];
    int i;

    archive_entry_set_pathname(e, "zeros.bin");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 300LL * MIB);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    for (i = 0; i < 300; i++)
        assert_int_equal(archive_write_data(a, zeros, sizeof(zeros)), (la_ssize_t)sizeof(zeros));
    archive_entry_free(e);
    zw_close(a);
    /* The declared 300 MiB would trip the total limit before any byte is read; the point here
     * is the ratio of real bytes, so allow the size. */
    extract_limits lim = { .max_total_bytes = 400LL * MIB, .max_file_bytes = 400LL * MIB };
    expect_reject(f, &lim, "package compression ratio exceeds 100:1 (zip bomb?)");
    /* Stopped early: ~100x the ~300 KB package, not 300 MiB. */
    assert_true(f->res.total_bytes < 64LL * MIB);
    reset_dest(f);
    /* With default limits the honest declared size is refused before unpacking anything. */
    expect_reject(f, NULL, "package unpacks to more than 250 MiB");
}

static void fill_noise(unsigned char *p, size_t n, uint32_t seed)
{
    size_t i;

    for (i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
}

static void test_total_and_file_limits(void **state)
{
    fixture *f = *state;
    size_t len = 700 * 1024;
    unsigned char *noise = malloc(len);
    struct archive *a;
    extract_limits total = { .max_total_bytes = MIB };
    extract_limits file = { .max_file_bytes = 512 * 1024 };

    assert_non_null(noise);
    fill_noise(noise, len, 42);
    a = zw_open(f->zip);
    zw_entry(a, "one.bin", AE_IFREG, 0644, NULL, noise, len);
    zw_entry(a, "two.bin", AE_IFREG, 0644, NULL, noise, len);
    zw_close(a);
    expect_reject(f, &total, "package unpacks to more than 1 MiB");
    reset_dest(f);
    expect_reject(f, &file, "zip entry 'one.bin' unpacks to more than 512 KiB");
    free(noise);
}

/* Declared sizes lie: the limit must see the real bytes, not the 10 the header claims. */
static void test_lying_declared_size(void **state)
{
    fixture *f = *state;
    size_t len = 2 * MIB;
    unsigned char *data = malloc(len);
    raw_entry e = { .name = "liar.bin", .mode = S_IFREG | 0644, .len = len, .declared = 10 };
    extract_limits lim = { .max_file_bytes = MIB };

    assert_non_null(data);
    fill_noise(data, len, 7);
    e.data = data;
    raw_zip(f->zip, &e, 1, 0);
    expect_reject(f, &lim, "zip entry 'liar.bin' unpacks to more than 1 MiB");
    assert_true(f->res.total_bytes <= MIB + 128 * 1024);
    reset_dest(f);
    /* Within limits the mismatch itself is corruption. */
    expect_reject(f, NULL, "zip entry 'liar.bin' is corrupt");
    free(data);
}

static void test_small_compressible_package_is_not_a_bomb(void **state)
{
    fixture *f = *state;
    static const char spaces[512 * 1024];
    struct archive *a = zw_open(f->zip);

    zw_entry(a, "pad.txt", AE_IFREG, 0644, NULL, spaces, sizeof(spaces));
    zw_close(a);
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_OK);
    assert_int_equal(f->res.total_bytes, sizeof(spaces));
}

/* ---- broken input ---- */

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void test_not_a_zip(void **state)
{
    fixture *f = *state;
    static const char text[] = "this is not a zip file, just some text that goes on and on\n";

    write_bytes(f->zip, text, sizeof(text) - 1);
    expect_reject(f, NULL, "package is not a valid ZIP file: ");
    extract_result_free(&f->res);
    write_bytes(f->zip, "", 0);
    expect_reject(f, NULL, "package is not a valid ZIP file: ");
}

static void test_empty_zip(void **state)
{
    fixture *f = *state;
    struct archive *a = zw_open(f->zip);

    zw_close(a);
    expect_reject(f, NULL, "package contains no files");
    extract_result_free(&f->res);
    a = zw_open(f->zip);
    zw_entry(a, "only/dirs/", AE_IFDIR, 0755, NULL, NULL, 0);
    zw_close(a);
    expect_reject(f, NULL, "package contains no files");
}

static void test_truncated_and_bad_crc(void **state)
{
    fixture *f = *state;
    raw_entry bad = RAW("a.py", S_IFREG | 0644, "print(1)\n");
    struct stat st;

    bad.bad_crc = 1;
    raw_zip(f->zip, &bad, 1, 0);
    expect_reject(f, NULL, "zip entry 'a.py' is corrupt: ");
    reset_dest(f);

    bad.bad_crc = 0;
    raw_zip(f->zip, &bad, 1, 0);
    assert_int_equal(stat(f->zip, &st), 0);
    assert_int_equal(truncate(f->zip, st.st_size - 30), 0);
    expect_reject(f, NULL, "package is not a valid ZIP file: ");
}

static void test_encrypted_entry(void **state)
{
    fixture *f = *state;
    struct archive *a = archive_write_new();

    assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_set_options(a, "zip:encryption=traditional"), ARCHIVE_OK);
    assert_int_equal(archive_write_set_passphrase(a, "secret"), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, f->zip), ARCHIVE_OK);
    zw_file(a, "app.py", 0644, "x = 1\n");
    zw_close(a);
    expect_reject(f, NULL, "zip entry 'app.py' is encrypted");
}

/* ---- caller errors (not the package's fault) ---- */

static void test_dest_must_be_empty(void **state)
{
    fixture *f = *state;
    char path[256];
    struct archive *a = zw_open(f->zip);

    zw_file(a, "app.py", 0644, "x");
    zw_close(a);
    snprintf(path, sizeof(path), "%s/leftover", f->dest);
    write_bytes(path, "x", 1);
    assert_int_equal(extract_zip(f->zip, f->dest, NULL, &f->res), ML_ERR);
    assert_false(f->res.rejected);
    assert_null(f->res.reason); /* a local problem has no rejection reason */
    assert_non_null(strstr(f->res.error, "is not empty"));
    extract_result_free(&f->res);

    snprintf(path, sizeof(path), "%s/missing.zip", f->zipdir);
    assert_int_equal(unlink(f->zip), 0);
    assert_int_equal(extract_zip(path, f->sub, NULL, &f->res), ML_ERR);
    assert_false(f->res.rejected);
}

/* ---- threads ---- */

typedef struct worker {
    const char *zip;
    char dest[160];
    int ok; /* successful extractions with the expected result */
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    extract_result r = { 0 };
    int i;

    for (i = 0; i < 25; i++) {
        if (mkdir(w->dest, 0755) != 0)
            break;
        if (extract_zip(w->zip, w->dest, NULL, &r) == ML_OK && r.nfiles == 2 &&
            !strcmp(r.files[1].path, "\xe6\x97\xa5.py"))
            w->ok++;
        extract_result_free(&r);
        if (ml_rmtree(w->dest) != ML_OK)
            break;
    }
    return NULL;
}

/* Several threads at once, each with its own per-thread UTF-8 locale and libarchive reader. */
static void test_concurrent_extractions(void **state)
{
    fixture *f = *state;
    raw_entry ents[] = { RAW("app.py", S_IFREG | 0644, "x"),
                         RAW("\xe6\x97\xa5.py", S_IFREG | 0644, "y") };
    worker w[4];
    pthread_t t[4];
    int i;

    raw_zip(f->zip, ents, 2, 0);
    for (i = 0; i < 4; i++) {
        w[i] = (worker){ .zip = f->zip };
        snprintf(w[i].dest, sizeof(w[i].dest), "%s/dest%d", f->zipdir, i);
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].ok, 25);
    }
}

/* ---- ml_rmtree ---- */

static void test_rmtree_does_not_follow_symlinks(void **state)
{
    fixture *f = *state;
    char outside[160], keep[192], path[192];

    /* A tree holding a link to a directory outside it: the outside file must survive. */
    snprintf(outside, sizeof(outside), "%s/outside", f->zipdir);
    snprintf(keep, sizeof(keep), "%s/keep.txt", outside);
    assert_int_equal(mkdir(outside, 0755), 0);
    write_bytes(keep, "keep", 4);
    snprintf(path, sizeof(path), "%s/a/b", f->dest);
    snprintf(path, sizeof(path), "%s/a", f->dest);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/a/b", f->dest);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/a/b/link", f->dest);
    assert_int_equal(symlink(outside, path), 0);
    snprintf(path, sizeof(path), "%s/a/file", f->dest);
    write_bytes(path, "x", 1);

    assert_int_equal(ml_rmtree(f->dest), ML_OK);
    assert_int_equal(access(f->dest, F_OK), -1);
    assert_int_equal(access(keep, F_OK), 0);
    assert_int_equal(ml_rmtree(f->dest), ML_OK); /* already gone */

    /* A top-level symlink is removed itself, not its target. */
    snprintf(path, sizeof(path), "%s/toplink", f->zipdir);
    assert_int_equal(symlink(outside, path), 0);
    assert_int_equal(ml_rmtree(path), ML_OK);
    assert_int_equal(access(keep, F_OK), 0);
    assert_int_equal(mkdir(f->dest, 0755), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_valid_python_package),
        T(test_artifact_hash_is_content_only),
        T(test_valid_nodejs_and_nested_hint),
        T(test_provided_bootstrap),
        T(test_traversal),
        T(test_traversal_inside_then_out),
        T(test_dotdot_that_stays_inside_is_refused),
        T(test_absolute_path),
        T(test_bad_names),
        T(test_empty_and_long_names),
        T(test_symlink_escape),
        T(test_symlink_absolute_and_deep_escape),
        T(test_report_names_every_refused_entry),
        T(test_symlink_inside_tree_refused),
        T(test_special_files),
        T(test_duplicates_and_clashes),
        T(test_too_many_entries),
        T(test_entry_limit_boundary),
        T(test_zip_bomb),
        T(test_total_and_file_limits),
        T(test_lying_declared_size),
        T(test_small_compressible_package_is_not_a_bomb),
        T(test_not_a_zip),
        T(test_empty_zip),
        T(test_truncated_and_bad_crc),
        T(test_encrypted_entry),
        T(test_dest_must_be_empty),
        T(test_concurrent_extractions),
        T(test_rmtree_does_not_follow_symlinks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
