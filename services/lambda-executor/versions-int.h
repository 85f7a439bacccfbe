/* versions-int.h — private to versions_*.c and qualifier.c: the resolution context and the
 * statements behind the routes. */
#ifndef EX_VERSIONS_INT_H
#define EX_VERSIONS_INT_H

#include "versions.h"

#define VCACHE_SLOTS 1024u            /* power of two; a slot holds one entry (overwritten) */

/* One cached resolution: a version's snapshot (alias "" ) or an alias's target. */
typedef struct vcache_entry {
    bool used, is_alias;
    char fn_id[ML_UUID_LEN];
    char alias[VER_ALIAS_MAX];
    int64_t fetched_ms;
    ver_alias target;             /* is_alias */
    ver_snapshot *snap;           /* !is_alias: owned */
} vcache_entry;

struct ver_ctx {
    registry *reg;
    int64_t alias_ttl_ms;
    deps *(*thread_deps)(void *ud);
    void *ud;
    pthread_mutex_t lock;
    vcache_entry slots[VCACHE_SLOTS];
    /* the registry's GET /functions/{fn}, which versions_wrap_get wraps */
    httpd_handler_fn get_fn;
    void *get_ud;
};

/* The version qualifier q shows (no weighted pick: an alias's main version; 0: $LATEST)
 * into *n; QR_NOT_FOUND for an unknown alias, QR_INVALID for no qualifier at all. */
qual_rc qualifier_main_version(ver_ctx *ctx, const char *fn_id, const char *q, int64_t *n);

/* publish outcomes beyond ML_OK / ML_ERR */
enum { PUB_NOT_FOUND = 1, PUB_NOT_ACTIVE = 2, PUB_SHA_MISMATCH = 3 };

/* Publishes $LATEST of fn_id (description NULL: the function's; sha NULL: unchecked):
 * *version the new or the equal newest one (*created tells which). ML_OK, PUB_*, ML_ERR. */
int ver_store_publish(pg_conn *db, const char *fn_id, const char *description, const char *sha,
                      int64_t *version, bool *created);
/* The version document (n 0: $LATEST) as text in (0, 0); no row when there is none. */
PGresult *ver_store_doc(pg_conn *db, const char *fn_id, int64_t n);
/* {"versions": [...], "next_cursor"} after ordinal after ("-1": from $LATEST). */
PGresult *ver_store_list(pg_conn *db, const char *fn_id, const char *after, const char *limit);
/* Deletes version num: a row when deleted; SQLSTATE 23503 while an alias routes to it. */
PGresult *ver_store_delete(pg_conn *db, const char *fn_id, const char *num);
PGresult *ver_store_alias_doc(pg_conn *db, const char *fn_id, const char *name);
/* {"aliases": [...], "next_cursor"} after name after (NULL: from the first). */
PGresult *ver_store_alias_list(pg_conn *db, const char *fn_id, const char *after, const char *limit);
PGresult *ver_store_alias_delete(pg_conn *db, const char *fn_id, const char *name);
PGresult *ver_store_alias_update(pg_conn *db, const char *const p[9]);
PGresult *ver_store_alias_create(pg_conn *db, const char *const p[9]);

#endif
