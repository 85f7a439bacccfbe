/* registry-int.h — the registry's private shared types and functions; only registry*.c
 * include it. The rooms:
 *   registry.c         life cycle and the cached lookup (registry_get) tying the rest
 *   registry_rules.c   names and keys, the cache document -> fn_info, PATCH/config fields
 *   registry_cache.c   the process cache and the Redis cache (breaker, owed invalidations)
 *   registry_store.c   Postgres: the function documents, reads, PATCH, delete with tombstone
 *   registry_events.c  POST /webhooks/build-status/{build_id}: build events become versions
 *   registry_http.c    the functions endpoints and the route table
 * The registry struct below is owned by registry.c (registry_new/registry_free); the cache
 * fields by registry_cache.c (reg_cache_init/reg_cache_free). */
#ifndef LE_REGISTRY_INT_H
#define LE_REGISTRY_INT_H

#include <cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "fnwait.h"
#include "redis.h"
#include "registry.h"

#define CACHE_BUCKETS 1024u            /* power of two */
#define REDIS_SKIP_MIN_MS 1000         /* after a Redis failure, skip it this long ... */
#define REDIS_SKIP_MAX_MS 10000        /* ... doubling up to this */
#define DIRTY_MAX 512                  /* changes whose Redis write-through is still owed */
#define KEY_MAX 160                    /* a Redis key: prefix + FN_KEY_MAX */
#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define DELETE_TIMEOUT "300s"          /* DELETE /functions/{fn}: the cascade over its audit log */

typedef struct cache_entry {
    struct cache_entry *next;
    char key[FN_KEY_MAX];    /* a lower-case id or "namespace/name", as looked up */
    int64_t fetched_ms;      /* monotonic time of the fetch */
    bool found;              /* false: a cached "no such function" */
    fn_info info;
} cache_entry;

/* A change whose Redis write-through failed: its keys must be deleted once Redis answers. */
typedef struct dirty_fn {
    char id[ML_UUID_LEN];
    char name[FN_KEY_MAX]; /* its name key ("namespace/name"), "" when unknown */
} dirty_fn;

struct registry {
    registry_config cfg;
    /* process cache */
    pthread_rwlock_t lock;
    cache_entry *buckets[CACHE_BUCKETS];
    size_t count;
    /* bumped by every local invalidation: a fetch that began before one must not store */
    atomic_uint_fast64_t epoch;
    /* Redis circuit breaker and owed invalidations */
    pthread_mutex_t redis_lock;
    int64_t redis_skip_until_ms, redis_backoff_ms;
    bool redis_down;
    atomic_int ndirty_hint;         /* a racy fast check of ndirty */
    dirty_fn dirty[DIRTY_MAX];
    size_t ndirty;
    bool dirty_overflow_logged;
    /* Postgres breaker for lookups: 0 closed, else open until this ml_now_ms (then one caller
     * probes, see db_breaker_allows in registry.c) */
    atomic_int_fast64_t db_open_until_ms;
    /* GET /functions/{fn}?wait=active */
    fnwait *waits;
    /* metrics */
    metric *m_lookups, *m_webhooks, *m_redis_errors;
};

typedef enum { PROBE_NONE = 0, PROBE_FRESH, PROBE_STALE } cache_probe;

/* ---- registry_rules.c ---- */

/* {fn} in namespace ns (NULL: default) -> cache key: a UUID lower-cased, or "ns/name".
 * ML_ERR when fn names nothing (or ns is no namespace name). */
int reg_fn_key(const char *ns, const char *fn, char key[FN_KEY_MAX], bool *by_id);
/* The name key "ns/name" of a function; ML_ERR when either is invalid. */
int reg_name_key(const char *ns, const char *name, char key[FN_KEY_MAX]);
/* A name key back into its parts; ML_ERR when key is not one. */
int reg_name_key_split(const char *key, char ns[FN_NS_MAX], char name[FN_NAME_MAX]);
/* Integer member k of o; a missing/null nullable one is 0. */
int reg_json_int(const cJSON *o, const char *k, int64_t *out, bool nullable);
/* Cache JSON text -> f: ML_OK, REGISTRY_NOT_FOUND (tombstone), REGISTRY_ABSENT (absence
 * marker), ML_ERR (malformed). */
int reg_fn_parse(const char *text, size_t len, fn_info *f);

/* ---- registry_cache.c ---- */

/* The locks of a calloc'ed registry. */
void reg_cache_init(registry *r);
/* Frees the cache entries and the locks. */
void reg_cache_free(registry *r);
/* Copies a cached entry into *out (when found) and says how fresh it is; *found tells a
 * cached absence. */
cache_probe reg_cache_lookup(registry *r, const char *key, fn_info *out, bool *found);
/* Stores a fetch result (info NULL: an absence) unless an invalidation happened since the
 * fetch began (epoch). */
void reg_cache_store(registry *r, const char *key, const fn_info *info, uint64_t epoch);
/* Cache JSON from Redis: ML_OK, REGISTRY_NOT_FOUND, REGISTRY_ABSENT or REGISTRY_MISS. */
int reg_redis_fetch(registry *r, const char *key, bool by_id, fn_info *out);
/* Stores cache JSON under id and name key (nx: only where absent); ML_ERR when Redis is down. */
int reg_redis_store(registry *r, const char *id, const char *name_key, const char *json, bool nx);
/* Leaves the short-lived "no such function" marker under key. */
void reg_mark_absent(registry *r, const char *key, bool by_id);
/* Remembers that id's and name_key's Redis keys must be deleted once Redis answers. */
void reg_redis_owe(registry *r, const char *id, const char *name_key);
/* After a change of function id (named name in ns; name NULL when unknown): writes json
 * through to Redis (or owes it) and drops local copies. */
void reg_publish_change(registry *r, const char *id, const char *ns, const char *name, const char *json);

/* ---- registry_store.c ---- */

/* Borrows this thread's connection (deps_db_acquire) for one group of statements; NULL
 * (and 503 with Retry-After in resp, when given) when there is none or no pooled one came
 * free in time. A non-NULL result must be given back with reg_put_db, on every path,
 * after its last use (pg_error included); nested borrows share one connection. */
pg_conn *reg_need_db(registry *r, httpd_resp *resp);
/* Gives back what reg_need_db lent. */
void reg_put_db(registry *r);
/* Answers a failed statement: 503 when the database is unreachable, else 500. */
void reg_db_fail(httpd_resp *resp, pg_conn *db, const char *what);
/* Cache JSON of one function: ML_OK with *json (caller frees), REGISTRY_NOT_FOUND, ML_ERR. */
int reg_db_fetch_json(pg_conn *db, const char *key, bool by_id, char **json, char *err,
                      size_t errlen);
/* The function parameters ($1 id or NULL, $2 name or NULL, $3 namespace) name; one in
 * another namespace is not found. */
typedef struct reg_fn_ref {
    const char *params[3];
} reg_fn_ref;
/* The API document of the function ref names. */
PGresult *reg_store_get(pg_conn *db, const reg_fn_ref *ref);
/* One page of namespace ns: cursor time (µs) and id or NULL, limit. */
PGresult *reg_store_list(pg_conn *db, const char *ns, const char *cursor_us, const char *cursor_id,
                         const char *limit);
/* Applies a validated patch (JSON) to the function ref names: (API doc, cache JSON). */
PGresult *reg_store_patch(pg_conn *db, const reg_fn_ref *ref, const char *patch);
/* Deletes the function, leaving a tombstone: *res holds (id, name, deleted, namespace). */
int reg_store_delete(pg_conn *db, const reg_fn_ref *ref, PGresult **res);
/* fnwait's fetch (ud: the registry). */
int reg_wait_fetch(void *ud, const char *const *keys, size_t n, char **docs);

/* A transaction-scoped lock on one function id ($1), taken by build events and by a delete
 * by id, so that each sees what the other committed. */
#define FN_XACT_LOCK "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))"

/* ---- registry_events.c ---- */

httpd_result reg_webhook_handler(httpd_req *req, httpd_resp *resp, void *ud);

/* A function's API document (or a {"functions": [...]} page of them), in place: env values,
 * stored sealed, become "***" or (reveal) their plaintext. ML_ERR with a reason. */
int reg_env_render(cJSON *doc, bool reveal, char *err, size_t errlen);

/* ---- the function record's own fields (registry_rules.c; docs/versions.md) ---- */

/* True when a PATCH body has a member reg_record_check must see against the current record
 * (runtime, handler, tags). */
bool reg_record_needs_current(const cJSON *body);
/* The record members of a PATCH body: description (string <= 256 characters), tags (an
 * object of strings or null, the merge with cur's at most 50 keys of 1..128 characters and
 * values <= 256), runtime (accepted and available in rt) and handler (valid for the runtime
 * the function will have). cur: the current API document (NULL when not needed). On ML_ERR
 * *code is the error code ("invalid_runtime" | "invalid_field") and err says why. */
int reg_record_check(const struct runtimes_table *rt, const cJSON *body, const cJSON *cur,
                     const char **code, char *err, size_t errlen);
/* A copy of a PATCH body without the record members, for fnspec_config_check; NULL when out
 * of memory. Caller deletes. */
cJSON *reg_config_part(const cJSON *body);
/* Adds runtime_version to a function's or version's API document (or each of a
 * {"functions": [...]} or {"versions": [...]} page):
 * the exact interpreter its runtime runs on here, null when this executor does not have it. */
void reg_doc_decorate(const struct runtimes_table *rt, cJSON *doc);

#endif
