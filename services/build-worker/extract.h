/* extract.h — safe extraction of a function package (ZIP) into an empty scratch directory,
 * with the per-file manifest the artifact is described by, and the runtime handler check.
 *
 * Safety model (why it cannot write outside dest_dir):
 *  - Only libarchive's seekable ZIP reader is registered: it reads the central directory (the
 *    ZIP's index, and the only place that holds modes and the symlink flag) and never guesses
 *    entries from local headers. It runs under a per-thread C.UTF-8 LC_CTYPE so UTF-8 names
 *    decode; it turns '\' into '/'.
 *  - Every entry name is validated first: no absolute path, no ".." component, no control
 *    character, valid UTF-8 (overlong forms like "\xc0\xaf" refused), at most 1024 bytes and
 *    255 per component. "." and empty components are dropped ("./a//b" is "a/b").
 *  - Nothing is written by path string. Each directory component is created with mkdirat and
 *    opened with openat(O_DIRECTORY | O_NOFOLLOW) relative to the previous directory's fd,
 *    starting from an fd of dest_dir; files are created with O_CREAT | O_EXCL | O_NOFOLLOW. No
 *    symlink is ever created, so nothing can be written through one. libarchive's
 *    archive_write_disk is not used: its SECURE_* flags are path-string checks with a history
 *    of symlink-following bugs (e.g. CVE-2021-31566), and writing ourselves lets us count and
 *    hash the real bytes as they stream.
 *  - Symbolic links and hard links are rejected, all of them: the artifact is a flat list of
 *    regular files (the manifest), and in-tree links can still chain out of the tree
 *    ("s" -> ".", "e" -> "s/s/../.." resolves outside although each target looks inside).
 *    A link whose target leaves the tree gets "... pointing outside the package", any other
 *    link "... links are not supported". (libarchive's ZIP reader never reports hard links;
 *    they are refused anyway in case it ever does.)
 *  - Device files, FIFOs, sockets and unknown types are rejected. Encrypted entries too.
 *  - Limits count the bytes libarchive actually returns (declared sizes lie) and abort as soon
 *    as one is crossed. The entry limit is also checked against the ZIP's central directory
 *    before libarchive indexes it (libarchive 3.6.2 holds the whole index in memory before the
 *    first entry: ~160 MB and 2.5 s for 1M entries, measured).
 *  - Duplicate names (after normalisation) are rejected, as is a file clashing with a directory.
 *  - Files get mode 0755 if the archive gave any x bit, else 0644; directories 0755. No
 *    setuid/setgid/sticky, no ownership, no timestamps from the archive.
 *
 * Thread-safety: every function here is safe to call from several threads at once
 * (no shared state; one libarchive reader per call). */
#ifndef ML_EXTRACT_H
#define ML_EXTRACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "fnspec-t.h"
#include "ml.h"

/* the contract's package limits (fnspec-t.h) */
#define EXTRACT_DEFAULT_MAX_ENTRIES FNSPEC_MAX_ZIP_ENTRIES
#define EXTRACT_DEFAULT_MAX_TOTAL_BYTES FNSPEC_MAX_UNPACKED_BYTES
#define EXTRACT_DEFAULT_MAX_FILE_BYTES EXTRACT_DEFAULT_MAX_TOTAL_BYTES
#define EXTRACT_DEFAULT_MAX_RATIO 100.0
/* The ratio limit applies only once this many bytes are unpacked, so a tiny package holding
 * one very compressible file (a 200-byte ZIP of 50 KB of spaces) is not called a bomb. */
#define EXTRACT_RATIO_MIN_BYTES (1LL * 1024 * 1024)

/* Any field <= 0 takes its default; a zeroed struct (or NULL) means all defaults. */
typedef struct extract_limits {
    int64_t max_entries;     /* entries of any type, directories included */
    int64_t max_total_bytes; /* real unpacked bytes of all files */
    int64_t max_file_bytes;  /* real unpacked bytes of one file */
    double max_ratio;        /* real unpacked bytes / ZIP file size */
} extract_limits;

typedef struct extract_file {
    char *path;        /* normalised, relative to dest_dir, '/'-separated, e.g. "lib/util.py" */
    int64_t size;      /* bytes written */
    char sha256[65];   /* lower-case hex of the content */
    unsigned mode;     /* 0644 or 0755 */
} extract_file;

/* A zeroed extract_result is valid and empty. */
typedef struct extract_result {
    extract_file *files; /* regular files only, sorted by path (strcmp order) */
    size_t nfiles;
    int64_t total_bytes;
    /* SHA-256 of the manifest text (see extract_manifest): identifies the artifact's content.
     * Empty directories are not part of it. */
    char sha256[65];
    /* On ML_ERR: a message for the user, e.g. "zip entry '../x' escapes the package". */
    char error[512];
    /* On ML_ERR: true when the package itself was refused (fail the build, don't retry);
     * false for a local problem (I/O error, out of memory, bad dest_dir) worth retrying. */
    bool rejected;
    /* When rejected: why, as one of the EXTRACT_R_* labels (static), for metrics. */
    const char *reason;
    int64_t entries;     /* entries read from the archive (directories and refused ones too) */
} extract_result;

/* Rejection reasons: a small fixed set, so they can label a metric. */
#define EXTRACT_R_NOT_ZIP "not_zip"                   /* not a readable ZIP */
#define EXTRACT_R_EMPTY "empty"                       /* no regular file at all */
#define EXTRACT_R_CORRUPT "corrupt"                   /* an entry fails to decompress or its CRC */
#define EXTRACT_R_ENCRYPTED "encrypted"
#define EXTRACT_R_INVALID_NAME "invalid_name"         /* empty, not UTF-8, control chars, too long */
#define EXTRACT_R_ABSOLUTE_PATH "absolute_path"
#define EXTRACT_R_TRAVERSAL "traversal"               /* a ".." component */
#define EXTRACT_R_SYMLINK "symlink"
#define EXTRACT_R_HARDLINK "hardlink"
#define EXTRACT_R_SPECIAL_FILE "special_file"         /* device, socket, FIFO, unknown type */
#define EXTRACT_R_DUPLICATE "duplicate"               /* a name twice, or a file vs a directory */
#define EXTRACT_R_TOO_MANY_ENTRIES "too_many_entries"
#define EXTRACT_R_TOO_LARGE "too_large"               /* a file or the total past its limit */
#define EXTRACT_R_RATIO "ratio"                       /* compression ratio past its limit */
#define EXTRACT_R_NO_HANDLER "no_handler"             /* extract_check_handler refused */

/* Unpacks the ZIP at zip_path into dest_dir, which must exist and be empty. lim may be NULL.
 * out is reset first; on return it owns heap memory whatever the result: always release it
 * with extract_result_free(). On ML_ERR, dest_dir may hold a partial tree: the caller removes
 * it (ml_rmtree). A package with no regular file at all is refused. */
int extract_zip(const char *zip_path, const char *dest_dir, const extract_limits *lim,
                extract_result *out);

/* Told each refusal as it happens: reason an EXTRACT_R_* label, message as in
 * extract_result.error (valid during the call). */
typedef void (*extract_reject_fn)(void *ud, const char *reason, const char *message);

/* extract_zip, telling on_reject (may be NULL) every refusal. Both go on past a refused
 * entry (a link, a bad or duplicate name, a special file, an encrypted entry) to name the
 * others (their names, types and encryption; nothing more is written once one is refused,
 * so duplicates are found only before it) and still fail with the first one's error; a
 * limit, a corrupt or unreadable archive stops them at once. */
int extract_zip_report(const char *zip_path, const char *dest_dir, const extract_limits *lim,
                       extract_reject_fn on_reject, void *ud, extract_result *out);

/* Appends the manifest of r to out: one line "path\tsize\tsha256\n" per file in r->files order
 * (sorted by path; size in decimal bytes; sha256 lower-case hex). Paths never contain a tab or
 * newline (control characters are refused). r->sha256 is the SHA-256 of exactly this text.
 * ML_ERR if out's limit is reached. */
int extract_manifest(const extract_result *r, ml_buf *out);

/* Checks that the handler exists in the extracted package for the runtime (API.md):
 *  python3  "module.function" -> regular file "module.py" at the root;
 *  nodejs   "file.export"     -> regular file "file.js" at the root;
 *  provided (handler not checked) -> regular file "bootstrap" at the root with an x bit.
 * module/file and function/export match [A-Za-z_][A-Za-z0-9_]*. ML_OK, or ML_ERR with a
 * message for the user in err, e.g. "handler module 'app.py' not found at the package root". */
int extract_check_handler(const extract_result *r, const char *runtime, const char *handler,
                          char *err, size_t errlen);

/* Rebuilds a result from a tree on disk (the package after dependencies were merged in): its
 * regular files sorted by path, real sizes, modes 0755 (any x bit) or 0644, sha256 of each
 * and of the manifest; entries counts files and directories. Nothing is followed: every
 * directory is opened with O_NOFOLLOW relative to its parent, and anything that is neither a
 * regular file nor a directory is left out (the merge never writes one). out is reset first
 * and owns heap memory whatever the result (extract_result_free). ML_ERR with out->error
 * (rejected false) on an I/O problem, a path over 1024 bytes or an empty tree. */
int extract_scan_dir(const char *dir, extract_result *out);

/* Unpacks a tar.gz (the dependency cache's objects, depcache.h) into the empty dest_dir with
 * the ZIP extractor's rules: names validated, links, devices and other special entries
 * refused, files written dirfd-relative with O_NOFOLLOW, real bytes counted against lim.
 * Same ownership and error conventions as extract_zip. */
int extract_tar_gz(const char *path, const char *dest_dir, const extract_limits *lim,
                   extract_result *out);

/* Frees everything r owns and zeroes it. Safe on a zeroed or already-freed result. */
void extract_result_free(extract_result *r);


#endif
