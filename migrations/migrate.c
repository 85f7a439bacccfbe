/* migrate.c — ml-migrate <database-url> <dir>
 *
 * Applies the pending NNNN_name.sql files of <dir> in lexical order. Each file runs in its
 * own transaction together with its schema_migrations row, so a file is either wholly
 * applied and recorded or not at all. A session advisory lock serialises concurrent
 * runners (several service replicas may start at once): the second one waits, then finds
 * nothing left to do. Files must not contain transaction control (BEGIN/COMMIT) or
 * statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY).
 * Exit status: 0 done (or nothing to do), 1 failure (logged with the file and the server's
 * message), 2 usage. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "ml.h"
#include "pg.h"

#define MIG_FILE_MAX (1024u * 1024u)
#define MIG_MAX_FILES 10000
#define MIG_NAME_MAX 128
#define MIG_LOCK_KEY "7813586997262807412" /* any fixed bigint, shared by all runners */
#define MIG_LOCK_WAIT_MS 120000
#define MIG_LOCK_POLL_MS 200

typedef struct mig_file {
    char name[MIG_NAME_MAX];
    char version[32]; /* the NNNN prefix */
} mig_file;

typedef struct mig_list {
    mig_file *files;
    size_t n;
} mig_list;

/* "NNNN_words.sql" with at least 4 digits; version gets the digits. */
static int parse_name(const char *name, char *version, size_t vsize)
{
    size_t len = strlen(name), digits = strspn(name, "0123456789");

    if (len >= MIG_NAME_MAX || len < 5 || strcmp(name + len - 4, ".sql") != 0)
        return ML_ERR;
    if (digits < 4 || digits >= vsize || name[digits] != '_')
        return ML_ERR;
    memcpy(version, name, digits);
    version[digits] = '\0';
    return ML_OK;
}

static int cmp_files(const void *a, const void *b)
{
    return strcmp(((const mig_file *)a)->name, ((const mig_file *)b)->name);
}

/* Appends one directory entry if it is a migration; ignores others (warns about odd *.sql). */
static int add_file(mig_list *l, const char *name)
{
    mig_file f;
    mig_file *grown;
    size_t len = strlen(name);

    if (parse_name(name, f.version, sizeof(f.version)) != ML_OK) {
        if (len > 4 && strcmp(name + len - 4, ".sql") == 0)
            ml_log_kv(ML_LOG_WARN, "ignoring file not named NNNN_name.sql", "file", name, NULL);
        return ML_OK;
    }
    if (l->n >= MIG_MAX_FILES) {
        ml_log_error("more than %d migration files", MIG_MAX_FILES);
        return ML_ERR;
    }
    grown = realloc(l->files, (l->n + 1) * sizeof(*grown));
    if (!grown) {
        ml_log_error("out of memory");
        return ML_ERR;
    }
    l->files = grown;
    ml_strlcpy(f.name, name, sizeof(f.name));
    l->files[l->n++] = f;
    return ML_OK;
}

/* Sorted migration files of dir; two files with one version number are an error. */
static int list_files(const char *dir, mig_list *l)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int rc = ML_OK;

    if (!d) {
        ml_log_kv(ML_LOG_ERROR, "cannot open migrations directory", "dir", dir, "error",
                  strerror(errno), NULL);
        return ML_ERR;
    }
    while (rc == ML_OK && (e = readdir(d)) != NULL)
        rc = add_file(l, e->d_name);
    closedir(d);
    if (rc != ML_OK)
        return ML_ERR;
    if (l->n > 1)
        qsort(l->files, l->n, sizeof(*l->files), cmp_files);
    for (size_t i = 1; i < l->n; i++) {
        if (strcmp(l->files[i - 1].version, l->files[i].version) == 0) {
            ml_log_kv(ML_LOG_ERROR, "two migrations share a version", "file", l->files[i - 1].name,
                      "other", l->files[i].name, NULL);
            return ML_ERR;
        }
    }
    return ML_OK;
}

/* Reads a regular file of at most MIG_FILE_MAX bytes with no NUL bytes into b. */
static int read_file(const char *path, ml_buf *b, char *err, size_t errlen)
{
    char chunk[65536];
    struct stat st;
    ssize_t n;
    int fd, rc = ML_ERR;

    ml_buf_init(b, MIG_FILE_MAX);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ml_snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return ML_ERR;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ml_snprintf(err, errlen, "not a regular file");
        goto out;
    }
    while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
        if (ml_buf_append(b, chunk, (size_t)n) != ML_OK) {
            ml_snprintf(err, errlen, "larger than %u bytes", MIG_FILE_MAX);
            goto out;
        }
    }
    if (n < 0) {
        ml_snprintf(err, errlen, "read failed: %s", strerror(errno));
        goto out;
    }
    /* libpq would silently stop at a NUL and run half the file. */
    if (memchr(ml_buf_cstr(b), '\0', b->len)) {
        ml_snprintf(err, errlen, "contains a NUL byte");
        goto out;
    }
    rc = ML_OK;
out:
    close(fd);
    return rc;
}

static void sha256_hex(const ml_buf *b, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    out[0] = '\0';
    if (!EVP_Digest(ml_buf_cstr(b), b->len, md, &mdlen, EVP_sha256(), NULL))
        return;
    for (unsigned int i = 0; i < mdlen && i < 32; i++)
        ml_snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Waits (bounded) for the session advisory lock that serialises runners. */
static int take_lock(pg_conn *c)
{
    const char *key[1] = { MIG_LOCK_KEY };
    int64_t deadline = ml_now_ms() + MIG_LOCK_WAIT_MS;
    int got = 0, logged = 0;
    PGresult *r;

    for (;;) {
        r = pg_query(c, "mig_try_lock", "SELECT pg_try_advisory_lock($1::bigint)", 1, key);
        if (!r || pg_get_bool(r, 0, 0, &got) != ML_OK) {
            ml_log_kv(ML_LOG_ERROR, "cannot take the migration lock", "error", pg_error(c), NULL);
            PQclear(r);
            return ML_ERR;
        }
        PQclear(r);
        if (got)
            return ML_OK;
        if (ml_now_ms() >= deadline) {
            ml_log_error("another ml-migrate held the migration lock for over %d s",
                         MIG_LOCK_WAIT_MS / 1000);
            return ML_ERR;
        }
        if (!logged++)
            ml_log_info("another ml-migrate is running; waiting for its lock");
        ml_sleep_ms(MIG_LOCK_POLL_MS);
    }
}

static int ensure_table(pg_conn *c)
{
    if (pg_exec_script(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                          " version text PRIMARY KEY,"
                          " name text NOT NULL,"
                          " checksum text NOT NULL,"
                          " applied_at timestamptz NOT NULL DEFAULT now())") == ML_OK)
        return ML_OK;
    ml_log_kv(ML_LOG_ERROR, "cannot create schema_migrations", "error", pg_error(c), NULL);
    return ML_ERR;
}

/* *applied = 1 if f is recorded; warns if the file changed since it was applied. */
static int check_applied(pg_conn *c, const mig_file *f, const char *sum, int *applied)
{
    const char *v[1] = { f->version };
    const char *old;
    PGresult *r = pg_query(c, "mig_applied",
                           "SELECT checksum FROM schema_migrations WHERE version = $1", 1, v);

    if (!r) {
        ml_log_kv(ML_LOG_ERROR, "cannot read schema_migrations", "error", pg_error(c), NULL);
        return ML_ERR;
    }
    *applied = PQntuples(r) > 0;
    old = pg_get_text(r, 0, 0);
    if (*applied && old && strcmp(old, sum) != 0)
        ml_log_kv(ML_LOG_WARN, "migration file changed after it was applied; not re-running it",
                  "file", f->name, NULL);
    PQclear(r);
    return ML_OK;
}

/* Runs the script and records it, all in one transaction. */
static int apply_file(pg_conn *c, const mig_file *f, const ml_buf *sql, const char *sum)
{
    const char *v[3] = { f->version, f->name, sum };
    char err[768];

    if (pg_begin(c) != ML_OK)
        goto fail;
    if (pg_exec_script(c, ml_buf_cstr(sql)) != ML_OK)
        goto fail;
    if (!pg_in_transaction(c)) {
        ml_log_kv(ML_LOG_ERROR, "migration ended the transaction itself (remove BEGIN/COMMIT "
                  "from it); its changes may be committed but it is NOT recorded",
                  "file", f->name, NULL);
        return ML_ERR;
    }
    if (pg_exec(c, "mig_record",
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                3, v, NULL) != ML_OK)
        goto fail;
    if (pg_commit(c) != ML_OK)
        goto fail;
    ml_log_kv(ML_LOG_INFO, "migration applied", "file", f->name, NULL);
    return ML_OK;
fail:
    ml_strlcpy(err, pg_error(c), sizeof(err)); /* rollback clears it */
    pg_rollback(c);
    ml_log_kv(ML_LOG_ERROR, "migration failed; rolled back", "file", f->name, "error", err, NULL);
    return ML_ERR;
}

/* Reads, checks and (if pending) applies one file. *count is bumped when applied. */
static int migrate_one(pg_conn *c, const char *dir, const mig_file *f, int *count)
{
    char path[PATH_MAX], err[256] = "", sum[65];
    ml_buf sql = { 0 };
    int applied = 0, rc = ML_ERR;

    if (ml_snprintf(path, sizeof(path), "%s/%s", dir, f->name) != ML_OK) {
        ml_log_kv(ML_LOG_ERROR, "path too long", "file", f->name, NULL);
        return ML_ERR;
    }
    if (read_file(path, &sql, err, sizeof(err)) != ML_OK) {
        ml_log_kv(ML_LOG_ERROR, "cannot read migration", "file", path, "error", err, NULL);
        goto out;
    }
    sha256_hex(&sql, sum);
    if (check_applied(c, f, sum, &applied) != ML_OK)
        goto out;
    if (!applied) {
        if (apply_file(c, f, &sql, sum) != ML_OK)
            goto out;
        (*count)++;
    }
    rc = ML_OK;
out:
    ml_buf_free(&sql);
    return rc;
}

static int migrate(const char *url, const char *dir)
{
    pg_options opts = { .application_name = "ml-migrate" };
    mig_list l = { 0 };
    pg_conn *c = NULL;
    int rc = ML_ERR, count = 0;

    if (list_files(dir, &l) != ML_OK)
        goto out;
    c = pg_new(url, &opts);
    if (!c) {
        ml_log_error("invalid database URL (empty or too long)");
        goto out;
    }
    if (pg_connect(c) != ML_OK) {
        ml_log_kv(ML_LOG_ERROR, "cannot connect", "error", pg_error(c), NULL);
        goto out;
    }
    if (take_lock(c) != ML_OK || ensure_table(c) != ML_OK)
        goto out;
    for (size_t i = 0; i < l.n; i++) {
        if (migrate_one(c, dir, &l.files[i], &count) != ML_OK)
            goto out;
    }
    ml_log_info("migrations done: %d applied, %zu present in %s", count, l.n, dir);
    rc = ML_OK;
out:
    pg_close(c); /* ends the session, which releases the advisory lock */
    free(l.files);
    return rc;
}

int main(int argc, char **argv)
{
    ml_log_init("ml-migrate", ML_LOG_INFO);
    if (argc != 3) {
        fprintf(stderr, "usage: ml-migrate <database-url> <migrations-dir>\n");
        return 2;
    }
    return migrate(argv[1], argv[2]) == ML_OK ? 0 : 1;
}
