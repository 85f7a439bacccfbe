/* extract.c — safe ZIP extraction with libarchive (read side only) plus our own dirfd-relative
 * writer; see extract.h for the safety model. */
#include "extract.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>

#include "crypto.h"
#include "fnspec.h"

#define MIB (1024LL * 1024)
/* Read chunk; also large enough for the ZIP tail (22-byte EOCD + 65535-byte comment). */
#define CHUNK (128 * 1024)
/* Longest accepted entry name: keeps dest_dir + name well below PATH_MAX for path-based
 * consumers (nftw in ml_rmtree, the artifact uploader). */
#define MAX_NAME 1024
/* Room for a quoted entry name inside a message. */
#define QUOTED 200

typedef struct xctx {
    struct archive *ar;
    EVP_MD_CTX *md;
    unsigned char *chunk;
    int rootfd, zipfd;
    int64_t zip_size;
    int64_t entries;   /* entries seen so far */
    bool empty_cd;     /* the end record says the central directory is empty */
    size_t cap;        /* slots allocated in out->files */
    extract_limits lim;
    extract_result *out;
    extract_reject_fn on_reject; /* optional: told every refusal as it happens */
    void *reject_ud;
    const char *last_reason;     /* the latest refusal's reason (the first one's is in out) */
    bool check_only;             /* an entry was refused: only name the others, write nothing */
} xctx;

/* Records the first error; a reason (an EXTRACT_R_* label) means the package is at fault. */
static int ML_PRINTF(3, 4) fail(xctx *x, const char *reason, const char *fmt, ...)
{
    char msg[sizeof(x->out->error)];
    va_list ap;

    va_start(ap, fmt);
    ml_vsnprintf_trunc(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    x->last_reason = reason;
    if (reason && x->on_reject)
        x->on_reject(x->reject_ud, reason, msg);
    if (!x->out->error[0]) {
        ml_strlcpy(x->out->error, msg, sizeof(x->out->error));
        x->out->rejected = reason != NULL;
        x->out->reason = reason;
    }
    return ML_ERR;
}

/* A refusal of one entry that leaves the rest readable: extraction goes on (writing nothing
 * for it) so that every such entry is named, and fails at the end. Limits, corruption and
 * local trouble stop it at once. */
static bool entry_refusal(const char *reason)
{
    static const char *const skippable[] = { EXTRACT_R_INVALID_NAME, EXTRACT_R_ABSOLUTE_PATH,
                                             EXTRACT_R_TRAVERSAL, EXTRACT_R_SYMLINK,
                                             EXTRACT_R_HARDLINK, EXTRACT_R_SPECIAL_FILE,
                                             EXTRACT_R_DUPLICATE, EXTRACT_R_ENCRYPTED };

    for (size_t i = 0; reason && i < ML_ARRAY_LEN(skippable); i++)
        if (strcmp(reason, skippable[i]) == 0)
            return true;
    return false;
}

#define reject(x, reason, ...) fail((x), (reason), __VA_ARGS__)
#define internal(x, ...) fail((x), NULL, __VA_ARGS__)

/* Length (1-4) of the valid UTF-8 sequence at s, or 0 (overlongs and surrogates are invalid). */
static size_t utf8_len(const unsigned char *s)
{
    unsigned cp;
    size_t n, i;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2, cp = s[0] & 0x1fu;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, cp = s[0] & 0x0fu;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, cp = s[0] & 0x07u;
    else
        return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/* Copies a user-supplied name for a message: control bytes and invalid UTF-8 become \xNN (so
 * the message is clean UTF-8 for JSON), long names end in "...". outlen must be >= 4. */
static void quote_name(const char *name, char *out, size_t outlen)
{
    const unsigned char *s = (const unsigned char *)(name ? name : "");
    size_t o = 0, n, need;
    bool esc;

    /* Invariant: o + 4 <= outlen, so "..." and the NUL always fit. */
    while (*s) {
        n = utf8_len(s);
        esc = n == 0 || *s < 0x20 || *s == 0x7f;
        need = esc ? 4 : n;
        if (o + need + 4 > outlen) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (esc)
            ml_snprintf_trunc(out + o, 5, "\\x%02x", *s); /* 4 chars + NUL: fits by the invariant */
        else
            memcpy(out + o, s, n);
        o += need;
        s += esc ? 1 : n;
    }
    out[o] = '\0';
}

static void fmt_bytes(int64_t n, char *out, size_t len)
{
    if (n % MIB == 0)
        ml_snprintf_trunc(out, len, "%lld MiB", (long long)(n / MIB));
    else if (n % 1024 == 0)
        ml_snprintf_trunc(out, len, "%lld KiB", (long long)(n / 1024));
    else
        ml_snprintf_trunc(out, len, "%lld bytes", (long long)n);
}

/* Validates a raw entry name and writes its normalised form ("." and empty components
 * dropped, no trailing '/') to norm (MAX_NAME + 1 bytes). */
static int normalise_name(xctx *x, const char *raw, const char *q, char *norm)
{
    const unsigned char *s = (const unsigned char *)raw;
    size_t i, n, o = 0;
    int depth = 0;
    bool dotdot = false, escapes = false;

    /* libarchive gives NULL when a name flagged as UTF-8 is not. */
    if (!raw)
        return reject(x, EXTRACT_R_INVALID_NAME,
                      "zip entry #%lld has a name that is not valid UTF-8",
                      (long long)x->entries);
    if (!*raw)
        return reject(x, EXTRACT_R_INVALID_NAME,
                      "zip entry #%lld has an empty name", (long long)x->entries);
    for (i = 0; s[i]; i += n) {
        n = utf8_len(s + i);
        if (n == 0)
            return reject(x, EXTRACT_R_INVALID_NAME,
                          "zip entry '%s' has a name that is not valid UTF-8", q);
        if (s[i] < 0x20 || s[i] == 0x7f)
            return reject(x, EXTRACT_R_INVALID_NAME,
                          "zip entry '%s' has a control character in its name", q);
    }
    if (raw[0] == '/')
        return reject(x, EXTRACT_R_ABSOLUTE_PATH, "zip entry '%s' is an absolute path", q);
    if (i > MAX_NAME)
        return reject(x, EXTRACT_R_INVALID_NAME,
                      "zip entry '%s' has a name longer than %d bytes", q, MAX_NAME);
    for (i = 0; raw[i]; i += n + (raw[i + n] == '/')) {
        n = strcspn(raw + i, "/");
        if (n == 0 || (n == 1 && raw[i] == '.'))
            continue;
        if (n == 2 && raw[i] == '.' && raw[i + 1] == '.') {
            dotdot = true;
            escapes |= --depth < 0;
            continue;
        }
        if (n > NAME_MAX)
            return reject(x, EXTRACT_R_INVALID_NAME,
                          "zip entry '%s' has a path component longer than %d bytes", q,
                          NAME_MAX);
        depth++;
        if (o)
            norm[o++] = '/';
        memcpy(norm + o, raw + i, n);
        o += n;
    }
    norm[o] = '\0';
    if (escapes)
        return reject(x, EXTRACT_R_TRAVERSAL, "zip entry '%s' escapes the package", q);
    if (dotdot)
        return reject(x, EXTRACT_R_TRAVERSAL, "zip entry '%s' has a '..' component", q);
    return ML_OK;
}

/* True if a link target, resolved lexically from a directory depth levels below the root,
 * leaves the tree (absolute targets always do). */
static bool target_escapes(const char *t, int depth)
{
    size_t i, n;

    if (!t || !*t)
        return false;
    if (t[0] == '/')
        return true;
    for (i = 0; t[i]; i += n + (t[i + n] == '/')) {
        n = strcspn(t + i, "/");
        if (n == 2 && t[i] == '.' && t[i + 1] == '.') {
            if (--depth < 0)
                return true;
        } else if (n > 0 && !(n == 1 && t[i] == '.')) {
            depth++;
        }
    }
    return false;
}

static int reject_link(xctx *x, struct archive_entry *e, const char *path, const char *q)
{
    const char *hard = archive_entry_hardlink(e);
    const char *kind = hard ? "hard link" : "symbolic link";
    const char *reason = hard ? EXTRACT_R_HARDLINK : EXTRACT_R_SYMLINK;
    int depth = 0;
    const char *p;

    /* A symlink resolves from its own directory, a hard link target from the archive root. */
    for (p = path; !hard && *p; p++)
        depth += *p == '/';
    if (target_escapes(hard ? hard : archive_entry_symlink(e), depth))
        return reject(x, reason, "zip entry '%s' is a %s pointing outside the package", q, kind);
    return reject(x, reason,
                  "zip entry '%s' is a %s; links are not supported (store the file itself, "
                  "e.g. zip without -y)", q, kind);
}

/* Creates (as needed) and opens the directories path[0..len) below the root, each component
 * opened with O_NOFOLLOW relative to its parent; *out is the last one's fd (caller closes). */
static int open_dirs(xctx *x, const char *path, size_t len, const char *q, int *out)
{
    char comp[NAME_MAX + 1], prefix[MAX_NAME + 1], qp[QUOTED];
    int fd = fcntl(x->rootfd, F_DUPFD_CLOEXEC, 0), next;
    size_t i = 0, n;
    bool made;

    if (fd < 0)
        return internal(x, "cannot duplicate the scratch directory fd: %s", strerror(errno));
    while (i < len) {
        n = strcspn(path + i, "/"); /* path is normalised: components are non-empty */
        memcpy(comp, path + i, n);
        comp[n] = '\0';
        made = mkdirat(fd, comp, 0755) == 0;
        if (!made && errno != EEXIST) {
            internal(x, "cannot create a directory for '%s': %s", q, strerror(errno));
            goto fail;
        }
        next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            if (errno == ENOTDIR || errno == ELOOP) {
                memcpy(prefix, path, i + n);
                prefix[i + n] = '\0';
                quote_name(prefix, qp, sizeof(qp));
                reject(x, EXTRACT_R_DUPLICATE,
                       "zip entry '%s' needs '%s' to be a directory, but the package also "
                       "has a file by that name", q, qp);
            } else {
                internal(x, "cannot open a directory for '%s': %s", q, strerror(errno));
            }
            goto fail;
        }
        close(fd);
        fd = next;
        /* The umask must not decide what the function can read: directories are 0755. */
        if (made && fchmod(fd, 0755) != 0) {
            internal(x, "cannot chmod a directory for '%s': %s", q, strerror(errno));
            goto fail;
        }
        i += n + 1;
    }
    *out = fd;
    return ML_OK;
fail:
    close(fd);
    return ML_ERR;
}

/* Checks real (or declared) byte counts against the limits; the first crossed one rejects. */
static int check_limits(xctx *x, const char *q, int64_t file_bytes, int64_t total)
{
    char lim[32];

    if (total > x->lim.max_total_bytes) {
        fmt_bytes(x->lim.max_total_bytes, lim, sizeof(lim));
        return reject(x, EXTRACT_R_TOO_LARGE, "package unpacks to more than %s", lim);
    }
    if (file_bytes > x->lim.max_file_bytes) {
        fmt_bytes(x->lim.max_file_bytes, lim, sizeof(lim));
        return reject(x, EXTRACT_R_TOO_LARGE, "zip entry '%s' unpacks to more than %s", q, lim);
    }
    if (total > EXTRACT_RATIO_MIN_BYTES && (double)total > x->lim.max_ratio * (double)x->zip_size)
        return reject(x, EXTRACT_R_RATIO,
                      "package compression ratio exceeds %g:1 (zip bomb?)", x->lim.max_ratio);
    return ML_OK;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    ssize_t w;

    while (n > 0) {
        w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return ML_ERR;
        p += w;
        n -= (size_t)w;
    }
    return ML_OK;
}

/* Streams the current entry's data into fd, counting real bytes and hashing as it goes. */
static int copy_data(xctx *x, int fd, const char *q, int64_t *size, char hex[65])
{
    unsigned char md[CRYPTO_SHA256_LEN];
    char why[QUOTED];
    la_ssize_t n;

    *size = 0;
    if (!EVP_DigestInit_ex(x->md, EVP_sha256(), NULL))
        return internal(x, "OpenSSL SHA-256 init failed");
    while ((n = archive_read_data(x->ar, x->chunk, CHUNK)) > 0) {
        *size += n;
        x->out->total_bytes += n;
        if (check_limits(x, q, *size, x->out->total_bytes) != ML_OK)
            return ML_ERR;
        EVP_DigestUpdate(x->md, x->chunk, (size_t)n);
        if (write_all(fd, x->chunk, (size_t)n) != ML_OK)
            return internal(x, "cannot write '%s': %s", q, strerror(errno));
    }
    if (n < 0) { /* includes a bad CRC and a size that differs from the declared one */
        quote_name(archive_error_string(x->ar), why, sizeof(why));
        return reject(x, EXTRACT_R_CORRUPT, "zip entry '%s' is corrupt: %s", q, why);
    }
    EVP_DigestFinal_ex(x->md, md, NULL);
    crypto_hex_encode(md, sizeof(md), hex);
    return ML_OK;
}

static int add_file(xctx *x, const char *path, int64_t size, const char *hex, unsigned mode)
{
    extract_result *r = x->out;
    extract_file *f;
    size_t cap;

    if (r->nfiles == x->cap) {
        cap = x->cap ? 2 * x->cap : 64;
        f = realloc(r->files, cap * sizeof(*f));
        if (!f)
            return internal(x, "out of memory");
        r->files = f;
        x->cap = cap;
    }
    f = &r->files[r->nfiles];
    f->path = strdup(path);
    if (!f->path)
        return internal(x, "out of memory");
    f->size = size;
    memcpy(f->sha256, hex, sizeof(f->sha256));
    f->mode = mode;
    r->nfiles++;
    return ML_OK;
}

static int write_file(xctx *x, struct archive_entry *e, const char *path, const char *q)
{
    const char *slash = strrchr(path, '/'), *leaf = slash ? slash + 1 : path;
    unsigned mode = (archive_entry_perm(e) & 0111) ? 0755 : 0644;
    int64_t declared = archive_entry_size(e), size;
    int dirfd = -1, fd = -1, rc = ML_ERR;
    char hex[CRYPTO_SHA256_HEX_LEN];
    struct stat st;

    if (!*path)
        return reject(x, EXTRACT_R_INVALID_NAME, "zip entry '%s' has an empty name", q);
    if (archive_entry_is_encrypted(e))
        return reject(x, EXTRACT_R_ENCRYPTED,
                      "zip entry '%s' is encrypted; password-protected packages are not "
                      "supported", q);
    /* Fast path: an honest declared size over a limit fails now; a lying one is caught by the
     * real count below (or by libarchive's size check). */
    if (archive_entry_size_is_set(e) && declared > 0 &&
        check_limits(x, q, declared,
                     declared > INT64_MAX - x->out->total_bytes ? INT64_MAX
                                                                : x->out->total_bytes + declared))
        return ML_ERR;
    if (open_dirs(x, path, slash ? (size_t)(slash - path) : 0, q, &dirfd) != ML_OK)
        return ML_ERR;
    fd = openat(dirfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno != EEXIST)
            internal(x, "cannot create '%s': %s", q, strerror(errno));
        else if (fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
            reject(x, EXTRACT_R_DUPLICATE,
                   "zip entry '%s' is a file, but the package also has a directory by that "
                   "name", q);
        else
            reject(x, EXTRACT_R_DUPLICATE,
                   "zip entry '%s' appears more than once in the package", q);
        goto out;
    }
    if (copy_data(x, fd, q, &size, hex) != ML_OK)
        goto out;
    if (fchmod(fd, mode) != 0) {
        internal(x, "cannot chmod '%s': %s", q, strerror(errno));
        goto out;
    }
    rc = add_file(x, path, size, hex, mode);
out:
    if (fd >= 0)
        close(fd);
    close(dirfd);
    return rc;
}

static int handle_entry(xctx *x, struct archive_entry *e)
{
    const char *raw = archive_entry_pathname(e);
    char path[MAX_NAME + 1], q[QUOTED];
    int dirfd;

    quote_name(raw, q, sizeof(q));
    if (normalise_name(x, raw, q, path) != ML_OK)
        return ML_ERR;
    if (archive_entry_hardlink(e) || archive_entry_filetype(e) == AE_IFLNK)
        return reject_link(x, e, path, q);
    switch (archive_entry_filetype(e)) {
    case AE_IFREG:
        if (x->check_only) /* nothing more is written once the package is refused */
            return archive_entry_is_encrypted(e) ? write_file(x, e, path, q) : ML_OK;
        return write_file(x, e, path, q);
    case AE_IFDIR:
        if (x->check_only)
            return ML_OK;
        if (open_dirs(x, path, strlen(path), q, &dirfd) != ML_OK)
            return ML_ERR;
        close(dirfd);
        return ML_OK;
    case AE_IFCHR:
    case AE_IFBLK:
        return reject(x, EXTRACT_R_SPECIAL_FILE, "zip entry '%s' is a device file", q);
    case AE_IFSOCK:
        return reject(x, EXTRACT_R_SPECIAL_FILE, "zip entry '%s' is a socket", q);
    default:
        return reject(x, EXTRACT_R_SPECIAL_FILE, "zip entry '%s' has an unsupported file type", q);
    }
}

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static bool pread_full(int fd, void *buf, size_t n, int64_t off)
{
    return off >= 0 && pread(fd, buf, n, off) == (ssize_t)n;
}

/* Counts central-directory records (up to max + 1) before libarchive indexes them all in
 * memory. Best effort: anything unexpected ends the count early, and libarchive's own walk plus
 * the per-entry count in extract_zip stay authoritative. */
static int64_t precount_entries(xctx *x, int64_t max)
{
    unsigned char *tail = x->chunk, rec[56];
    size_t tlen = x->zip_size < CHUNK ? (size_t)x->zip_size : CHUNK;
    int64_t tstart = x->zip_size - (int64_t)tlen, i, n = 0;
    uint64_t off;

    if (tlen < 22 || !pread_full(x->zipfd, tail, tlen, tstart))
        return 0;
    for (i = (int64_t)tlen - 22; i >= 0 && memcmp(tail + i, "PK\5\6", 4) != 0; i--)
        ;
    if (i < 0)
        return 0;
    x->empty_cd = le16(tail + i + 10) == 0 && le32(tail + i + 12) == 0;
    off = le32(tail + i + 16);
    if (off == 0xffffffffu) { /* ZIP64: the locator sits just before the EOCD record */
        if (i < 20 || memcmp(tail + i - 20, "PK\6\7", 4) != 0 || le64(tail + i - 12) > INT64_MAX ||
            !pread_full(x->zipfd, rec, 56, (int64_t)le64(tail + i - 12)) ||
            memcmp(rec, "PK\6\6", 4) != 0)
            return 0;
        off = le64(rec + 48);
    }
    while (n <= max && x->zip_size >= 46 && off <= (uint64_t)x->zip_size - 46 &&
           pread_full(x->zipfd, rec, 46, (int64_t)off) && memcmp(rec, "PK\1\2", 4) == 0) {
        n++;
        off += 46u + le16(rec + 28) + le16(rec + 30) + le16(rec + 32);
    }
    return n;
}

static int open_inputs(xctx *x, const char *zip_path, const char *dest_dir)
{
    struct stat st;
    struct dirent *de;
    DIR *d;
    int fd;

    x->rootfd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (x->rootfd < 0)
        return internal(x, "cannot open scratch directory '%s': %s", dest_dir, strerror(errno));
    fd = fcntl(x->rootfd, F_DUPFD_CLOEXEC, 0);
    d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return internal(x, "cannot list scratch directory '%s': %s", dest_dir, strerror(errno));
    }
    while ((de = readdir(d)) && (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")))
        ;
    closedir(d);
    if (de)
        return internal(x, "scratch directory '%s' is not empty", dest_dir);
    x->zipfd = open(zip_path, O_RDONLY | O_CLOEXEC);
    if (x->zipfd < 0 || fstat(x->zipfd, &st) != 0)
        return internal(x, "cannot open package '%s': %s", zip_path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return internal(x, "package '%s' is not a regular file", zip_path);
    x->zip_size = st.st_size;
    return ML_OK;
}

/* Formats one manifest line into buf; the length, or -1 if it does not fit. */
static int manifest_line(const extract_file *f, char *buf, size_t len)
{
    if (ml_snprintf(buf, len, "%s\t%lld\t%s\n", f->path, (long long)f->size, f->sha256) != ML_OK)
        return -1;
    return (int)strlen(buf);
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(((const extract_file *)a)->path, ((const extract_file *)b)->path);
}

/* Sorts the files and hashes the manifest line by line (no copy of the whole text). */
static int finish(xctx *x)
{
    extract_result *r = x->out;
    unsigned char md[CRYPTO_SHA256_LEN];
    char line[MAX_NAME + 96];
    size_t i;
    int n;

    if (r->nfiles == 0)
        return reject(x, EXTRACT_R_EMPTY, "package contains no files");
    qsort(r->files, r->nfiles, sizeof(*r->files), cmp_path);
    if (!EVP_DigestInit_ex(x->md, EVP_sha256(), NULL))
        return internal(x, "OpenSSL SHA-256 init failed");
    for (i = 0; i < r->nfiles; i++) {
        n = manifest_line(&r->files[i], line, sizeof(line));
        if (n < 0)
            return internal(x, "manifest line too long");
        EVP_DigestUpdate(x->md, line, (size_t)n);
    }
    EVP_DigestFinal_ex(x->md, md, NULL);
    crypto_hex_encode(md, sizeof(md), r->sha256);
    return ML_OK;
}

static void set_limits(extract_limits *dst, const extract_limits *src)
{
    static const extract_limits zero;

    if (!src)
        src = &zero;
    dst->max_entries = src->max_entries > 0 ? src->max_entries : EXTRACT_DEFAULT_MAX_ENTRIES;
    dst->max_total_bytes =
        src->max_total_bytes > 0 ? src->max_total_bytes : EXTRACT_DEFAULT_MAX_TOTAL_BYTES;
    dst->max_file_bytes =
        src->max_file_bytes > 0 ? src->max_file_bytes : EXTRACT_DEFAULT_MAX_FILE_BYTES;
    dst->max_ratio = src->max_ratio > 0 ? src->max_ratio : EXTRACT_DEFAULT_MAX_RATIO;
}

static int reject_not_zip(xctx *x)
{
    char why[QUOTED];

    /* libarchive's seekable reader does not recognise a ZIP without entries. */
    if (x->empty_cd)
        return reject(x, EXTRACT_R_EMPTY, "package contains no files");
    quote_name(archive_error_string(x->ar), why, sizeof(why));
    return reject(x, EXTRACT_R_NOT_ZIP,
                  "package is not a valid ZIP file: %s", why[0] ? why : "unreadable");
}

/* The copy buffer, the hasher and (with_reader) a libarchive reader of x; ML_ERR (reported)
 * when memory is short. Freed with the rest of x at the end of each entry point. */
static int xctx_alloc(xctx *x, bool with_reader)
{
    x->chunk = malloc(CHUNK);
    x->md = EVP_MD_CTX_new();
    x->ar = with_reader ? archive_read_new() : NULL;
    if (!x->chunk || !x->md || (with_reader && !x->ar)) {
        internal(x, "out of memory");
        return ML_ERR;
    }
    return ML_OK;
}

int extract_zip(const char *zip_path, const char *dest_dir, const extract_limits *lim,
                extract_result *out)
{
    return extract_zip_report(zip_path, dest_dir, lim, NULL, NULL, out);
}

int extract_zip_report(const char *zip_path, const char *dest_dir, const extract_limits *lim,
                       extract_reject_fn on_reject, void *ud, extract_result *out)
{
    xctx x = { .rootfd = -1, .zipfd = -1, .out = out, .on_reject = on_reject, .reject_ud = ud };
    struct archive_entry *e;
    locale_t utf8, prev = (locale_t)0;
    int r, rc = ML_ERR;

    memset(out, 0, sizeof(*out));
    set_limits(&x.lim, lim);
    /* In the C locale libarchive cannot return any name flagged as UTF-8 that is not ASCII;
     * a per-thread UTF-8 LC_CTYPE (uselocale, unlike setlocale, is thread-safe) fixes that.
     * Names without the flag come through as raw bytes and must pass our UTF-8 check. */
    utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (!utf8) {
        internal(&x, "cannot load the C.UTF-8 locale: %s", strerror(errno));
        goto out;
    }
    prev = uselocale(utf8);
    if (xctx_alloc(&x, true) != ML_OK)
        goto out;
    if (open_inputs(&x, zip_path, dest_dir) != ML_OK)
        goto out;
    if (precount_entries(&x, x.lim.max_entries) > x.lim.max_entries) {
        reject(&x, EXTRACT_R_TOO_MANY_ENTRIES,
               "package has more than %lld entries", (long long)x.lim.max_entries);
        goto out;
    }
    /* Only the seekable reader: it trusts the central directory (the ZIP's real index, and
     * the only place modes and symlink flags live), never guesses from local headers. */
    archive_read_support_format_zip_seekable(x.ar);
    if (archive_read_open_fd(x.ar, x.zipfd, CHUNK) != ARCHIVE_OK) {
        reject_not_zip(&x);
        goto out;
    }
    while ((r = archive_read_next_header(x.ar, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
        if (++x.entries > x.lim.max_entries) {
            reject(&x, EXTRACT_R_TOO_MANY_ENTRIES,
                   "package has more than %lld entries", (long long)x.lim.max_entries);
            goto out;
        }
        out->entries = x.entries;
        if (handle_entry(&x, e) != ML_OK) {
            if (!entry_refusal(x.last_reason))
                goto out;
            x.check_only = true;
        }
    }
    if (r != ARCHIVE_EOF) {
        reject_not_zip(&x);
        goto out;
    }
    if (!out->error[0])
        rc = finish(&x);
out:
    if (x.ar)
        archive_read_free(x.ar); /* does not close zipfd */
    if (x.zipfd >= 0)
        close(x.zipfd);
    if (x.rootfd >= 0)
        close(x.rootfd);
    EVP_MD_CTX_free(x.md);
    free(x.chunk);
    if (utf8) {
        uselocale(prev);
        freelocale(utf8);
    }
    return rc;
}

int extract_tar_gz(const char *path, const char *dest_dir, const extract_limits *lim,
                   extract_result *out)
{
    xctx x = { .rootfd = -1, .zipfd = -1, .out = out };
    struct archive_entry *e;
    char why[QUOTED];
    int r, rc = ML_ERR;

    memset(out, 0, sizeof(*out));
    set_limits(&x.lim, lim);
    if (xctx_alloc(&x, true) != ML_OK)
        goto out;
    if (open_inputs(&x, path, dest_dir) != ML_OK)
        goto out;
    archive_read_support_filter_gzip(x.ar);
    archive_read_support_format_tar(x.ar);
    if (archive_read_open_fd(x.ar, x.zipfd, CHUNK) != ARCHIVE_OK) {
        quote_name(archive_error_string(x.ar), why, sizeof(why));
        reject(&x, EXTRACT_R_NOT_ZIP, "not a readable tar.gz: %s", why);
        goto out;
    }
    while ((r = archive_read_next_header(x.ar, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
        if (++x.entries > x.lim.max_entries) {
            reject(&x, EXTRACT_R_TOO_MANY_ENTRIES, "archive has more than %lld entries",
                   (long long)x.lim.max_entries);
            goto out;
        }
        out->entries = x.entries;
        /* a cache object is ours: one bad entry condemns the whole object, stop at once */
        if (handle_entry(&x, e) != ML_OK)
            goto out;
    }
    if (r != ARCHIVE_EOF) {
        quote_name(archive_error_string(x.ar), why, sizeof(why));
        reject(&x, EXTRACT_R_CORRUPT, "tar.gz is corrupt: %s", why);
        goto out;
    }
    rc = finish(&x);
out:
    if (x.ar)
        archive_read_free(x.ar);
    if (x.zipfd >= 0)
        close(x.zipfd);
    if (x.rootfd >= 0)
        close(x.rootfd);
    EVP_MD_CTX_free(x.md);
    free(x.chunk);
    return rc;
}

/* Hashes the regular file at dirfd/name (opened without following) into hex. */
static int scan_file(xctx *x, int dirfd, const char *name, const char *path, int64_t *size,
                     char hex[65])
{
    unsigned char md[CRYPTO_SHA256_LEN];
    ssize_t n;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    *size = 0;
    if (fd < 0)
        return internal(x, "cannot open '%s': %s", path, strerror(errno));
    if (!EVP_DigestInit_ex(x->md, EVP_sha256(), NULL)) {
        close(fd);
        return internal(x, "OpenSSL SHA-256 init failed");
    }
    while ((n = read(fd, x->chunk, CHUNK)) > 0) {
        *size += n;
        EVP_DigestUpdate(x->md, x->chunk, (size_t)n);
    }
    close(fd);
    if (n < 0)
        return internal(x, "cannot read '%s': %s", path, strerror(errno));
    EVP_DigestFinal_ex(x->md, md, NULL);
    crypto_hex_encode(md, sizeof(md), hex);
    return ML_OK;
}

/* Walks the directory open at dirfd (closed here), prefix its path below the root. */
static int scan_tree(xctx *x, int dirfd, const char *prefix, int depth)
{
    char path[MAX_NAME + 1], hex[CRYPTO_SHA256_HEX_LEN];
    DIR *d = fdopendir(dirfd);
    struct dirent *de;
    struct stat st;
    int64_t size;
    int sub, rc = ML_OK;

    if (!d) {
        close(dirfd);
        return internal(x, "cannot list '%s': %s", prefix[0] ? prefix : ".", strerror(errno));
    }
    while (rc == ML_OK && (errno = 0, de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (ml_snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "/" : "", de->d_name) != ML_OK) {
            rc = internal(x, "a path in the tree is longer than %d bytes", MAX_NAME);
            break;
        }
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = internal(x, "cannot stat '%s': %s", path, strerror(errno));
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            x->entries++;
            if (depth >= 128) {
                rc = internal(x, "the tree is nested deeper than 128 directories at '%s'", path);
                break;
            }
            sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            rc = sub < 0 ? internal(x, "cannot open '%s': %s", path, strerror(errno))
                         : scan_tree(x, sub, path, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            x->entries++;
            rc = scan_file(x, dirfd, de->d_name, path, &size, hex);
            if (rc == ML_OK) {
                x->out->total_bytes += size;
                rc = add_file(x, path, size, hex, (st.st_mode & 0111) ? 0755 : 0644);
            }
        }
    }
    if (rc == ML_OK && errno != 0)
        rc = internal(x, "cannot list '%s': %s", prefix[0] ? prefix : ".", strerror(errno));
    closedir(d); /* closes dirfd */
    return rc;
}

int extract_scan_dir(const char *dir, extract_result *out)
{
    xctx x = { .rootfd = -1, .zipfd = -1, .out = out };
    int fd, rc = ML_ERR;

    memset(out, 0, sizeof(*out));
    if (xctx_alloc(&x, false) != ML_OK)
        goto out;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        internal(&x, "cannot open '%s': %s", dir, strerror(errno));
        goto out;
    }
    if (scan_tree(&x, fd, "", 0) != ML_OK)
        goto out;
    out->entries = x.entries;
    rc = finish(&x);
    if (rc != ML_OK)
        out->rejected = false, out->reason = NULL; /* an empty tree is our problem here */
out:
    EVP_MD_CTX_free(x.md);
    free(x.chunk);
    return rc;
}

int extract_manifest(const extract_result *r, ml_buf *out)
{
    char line[MAX_NAME + 96];
    size_t i;
    int n;

    for (i = 0; i < r->nfiles; i++) {
        n = manifest_line(&r->files[i], line, sizeof(line));
        if (n < 0 || ml_buf_append(out, line, (size_t)n) != ML_OK)
            return ML_ERR;
    }
    return ML_OK;
}

static const extract_file *find_file(const extract_result *r, const char *path)
{
    extract_file key = { .path = (char *)path };

    return r->nfiles ? bsearch(&key, r->files, r->nfiles, sizeof(key), cmp_path) : NULL;
}

/* A file named name in some subdirectory: the usual "zipped the folder" mistake. */
static const extract_file *find_nested(const extract_result *r, const char *name)
{
    size_t i, n = strlen(name), len;

    for (i = 0; i < r->nfiles; i++) {
        len = strlen(r->files[i].path);
        if (len > n && r->files[i].path[len - n - 1] == '/' &&
            !strcmp(r->files[i].path + len - n, name))
            return &r->files[i];
    }
    return NULL;
}

static int missing(const extract_result *r, const char *what, const char *file, char *err,
                   size_t errlen)
{
    const extract_file *nested = find_nested(r, file);
    char qn[QUOTED];

    if (!nested) {
        ml_snprintf_trunc(err, errlen, "%s '%s' not found at the package root", what, file);
        return ML_ERR;
    }
    quote_name(nested->path, qn, sizeof(qn));
    ml_snprintf_trunc(err, errlen, "%s '%s' not found at the package root (found '%s': zip the folder's "
                      "contents, not the folder itself)", what, file, qn);
    return ML_ERR;
}

static int check_bootstrap(const extract_result *r, char *err, size_t errlen)
{
    const extract_file *f = find_file(r, "bootstrap");

    if (!f)
        return missing(r, "executable", "bootstrap", err, errlen);
    if (!(f->mode & 0111)) {
        ml_snprintf_trunc(err, errlen, "'bootstrap' is not executable: set its x bit (chmod +x "
                          "bootstrap) before zipping");
        return ML_ERR;
    }
    return ML_OK;
}

int extract_check_handler(const extract_result *r, const char *runtime, const char *handler,
                          char *err, size_t errlen)
{
    const char *form, *what, *fam = fnspec_runtime_family(runtime); /* python3.12: python3's rules */
    char file[NAME_MAX + 1], qh[QUOTED];

    if (fam && !strcmp(fam, "provided"))
        return check_bootstrap(r, err, errlen);
    if (fam && !strcmp(fam, "python3")) {
        form = "module.function", what = "handler module";
    } else if (fam && !strcmp(fam, "nodejs")) {
        form = "file.export", what = "handler file";
    } else {
        quote_name(runtime, qh, sizeof(qh));
        ml_snprintf_trunc(err, errlen, "unknown runtime '%s' (expected python3.9 ... python3.13, "
                          "nodejs18.x ... nodejs22.x, provided.al2, provided.al2023 or an alias)", qh);
        return ML_ERR;
    }
    if (fnspec_handler_file(runtime, handler, file, sizeof(file)) != ML_OK) {
        quote_name(handler, qh, sizeof(qh));
        ml_snprintf_trunc(err, errlen, "handler '%s' must have the form %s (e.g. app.handler)", qh, form);
        return ML_ERR;
    }
    if (!find_file(r, file))
        return missing(r, what, file, err, errlen);
    return ML_OK;
}

void extract_result_free(extract_result *r)
{
    size_t i;

    for (i = 0; i < r->nfiles; i++)
        free(r->files[i].path);
    free(r->files);
    memset(r, 0, sizeof(*r));
}

