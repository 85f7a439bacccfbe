/* versions.h — published versions, aliases and qualifiers (docs/versions.md).
 *
 * The rooms:
 *   versions_rules.c  pure rules: qualifier and alias-name syntax, the routing object, the
 *                     weighted pick and its per-thread generator (unit-tested)
 *   versions_store.c  Postgres: publish, the version and alias documents, delete
 *   versions_http.c   the routes (namespace-scoped like registry_http.c)
 *   qualifier.c       invoke-time resolution of a qualifier into the fn_info that runs, with a
 *                     per-process cache (versions: immutable; aliases: the registry's local TTL)
 * A published version is an immutable snapshot; an alias names one (or $LATEST) with at most
 * one weighted extra version. */
#ifndef EX_VERSIONS_H
#define EX_VERSIONS_H

#include <cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "httpd.h"
#include "registry.h"

#define VER_LATEST "$LATEST"
#define VER_ALIAS_MAX 129        /* an alias name (1-128) + NUL */
#define VER_EXEC_MAX 16          /* "$LATEST" or a version number + NUL */
#define VER_DESC_MAX 256
#define VER_NUMBER_MAX 2147483647LL

/* ---- versions_rules.c ---- */

typedef enum { QUAL_LATEST = 0, QUAL_NUMBER, QUAL_ALIAS, QUAL_INVALID } qual_kind;

/* What a qualifier is ($LATEST or absent/empty, a version number into *number, an alias
 * name, or nothing valid). */
qual_kind ver_qualifier_kind(const char *q, int64_t *number);
/* An alias name: ^(?!^[0-9]+$)[A-Za-z0-9_-]{1,128}$ and not $LATEST. */
bool ver_alias_name_valid(const char *name);

/* An alias's traffic split: primary version (0: $LATEST) and at most one extra. */
typedef struct ver_routing {
    int64_t extra;  /* 0: no split */
    double weight;  /* share of invocations that go to extra, in [0, 1) */
} ver_routing;

/* The routing member of a PUT body (NULL, JSON null or {} clear it) into *out. ML_ERR with a
 * reason in err: not an object, more than one version, a key that is not a version number,
 * a weight outside [0, 1). */
int ver_routing_parse(const cJSON *routing, ver_routing *out, char *err, size_t errlen);

/* A uniform draw in [0, 1) from this thread's xoshiro256** generator, seeded from the kernel
 * on first use (every thread its own stream; never rand()). */
double ver_rand01(void);
/* The version one invocation runs: extra with probability weight, else main. draw is a
 * uniform value in [0, 1) (ver_rand01). */
int64_t ver_pick(int64_t primary, const ver_routing *r, double draw);

/* ---- versions_store.c ---- */

/* The snapshot that replaces $LATEST's code and configuration when a version runs. */
typedef struct ver_snapshot {
    int64_t version;        /* the published version number */
    int code_revision;
    char runtime[FN_RUNTIME_MAX], handler[FN_HANDLER_MAX];
    char artifact_prefix[FN_PREFIX_MAX], artifact_sha256[FN_SHA256_MAX];
    int64_t artifact_size;
    int memory_mb, timeout_s;
    bool network;
    size_t env_count, env_len;
    char env[FN_ENV_MAX];   /* packed plaintext as fn_info's */
} ver_snapshot;

/* An alias as resolution needs it. */
typedef struct ver_alias {
    int64_t version;        /* 0: $LATEST */
    ver_routing routing;
} ver_alias;

/* Reads version n of function fn_id into *out (env opened). ML_OK, REGISTRY_NOT_FOUND, ML_ERR. */
int ver_store_snapshot(pg_conn *db, const char *fn_id, int64_t n, ver_snapshot *out);
/* Reads alias name of function fn_id. ML_OK, REGISTRY_NOT_FOUND, ML_ERR. */
int ver_store_alias(pg_conn *db, const char *fn_id, const char *name, ver_alias *out);

/* ---- versions_http.c ---- */

typedef struct ver_ctx ver_ctx;
/* The routes (9 are needed) into out; returns how many. ctx: qualifier_new's. */
size_t versions_routes(ver_ctx *ctx, httpd_route *out, size_t max);
/* Wraps the registry's GET /functions/{fn} route in table[0..n) so that ?qualifier= answers
 * the function with that version's configuration; the original handles the rest. */
void versions_wrap_get(ver_ctx *ctx, httpd_route *table, size_t n);

/* ---- qualifier.c ---- */

/* Creates the resolution context: the caches and the way to the database (thread_deps as
 * the registry's). alias_ttl_ms: the registry's local TTL. Free with qualifier_free. */
ver_ctx *qualifier_new(registry *reg, int64_t alias_ttl_ms, deps *(*thread_deps)(void *ud), void *ud);
void qualifier_free(ver_ctx *ctx);

typedef enum {
    QR_OK = ML_OK,
    QR_ERR = ML_ERR,          /* the database was needed and failed */
    QR_NOT_FOUND = 1,         /* no such version or alias: 404 qualifier_not_found */
    QR_INVALID = 2,           /* not a qualifier at all: 404 qualifier_not_found as well */
} qual_rc;

/* Resolves qualifier q (NULL or "" : $LATEST) of the function f (registry_get's, $LATEST)
 * into f itself: a version's code and configuration replace $LATEST's. executed gets
 * "$LATEST" or the number; alias gets the alias invoked through ("" when none). An alias is
 * resolved to one version here (its weighted pick). Cached; may block on Postgres on a miss. */
qual_rc qualifier_resolve(ver_ctx *ctx, fn_info *f, const char *q, char executed[VER_EXEC_MAX],
                          char alias[VER_ALIAS_MAX]);
/* Drops function fn_id's cached aliases (and version n's snapshot, n > 0): a local change. */
void qualifier_forget(ver_ctx *ctx, const char *fn_id, int64_t n);

/* Borrows this thread's connection (NULL and 503 written when resp is not NULL and there is
 * none); give it back with ver_put_db. */
pg_conn *ver_need_db(ver_ctx *ctx, httpd_resp *resp);
void ver_put_db(ver_ctx *ctx);
/* The registry the context resolves functions with. */
registry *ver_registry(ver_ctx *ctx);

#endif
