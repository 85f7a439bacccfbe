/* tenants.h — what the gateway needs to know about namespaces and their credentials
 * (docs/tenants.md), read from the lambda-executor and cached briefly:
 *
 *  - access keys (GET /internal/keys/{id}): the secret, namespace, scopes and status of a
 *    SigV4 access key; found for GW_TN_KEY_TTL_MS, not found for GW_TN_MISSING_TTL_MS, so a
 *    disabled or rotated key stops working within 5 s. Executor unreachable: refused (a
 *    credential is never accepted on stale knowledge).
 *  - namespace quotas (GET /admin/namespaces/{ns}): for GW_TN_NS_TTL_MS; executor
 *    unreachable: the last known quotas (kept up to GW_TN_MAX_STALE_MS), else no limits.
 *  - max_concurrency: sync invocations in flight per namespace, all gateways together, as a
 *    Redis sorted set of request ids scored by the time the call must have ended (its
 *    function's timeout plus the margin), so the slots of a crashed gateway expire by
 *    themselves. Redis unreachable: admitted (fail open, as the rate limits' memory
 *    fallback never refuses for want of Redis).
 *
 * The lookups block the calling thread (the gateway's HTTP/proxy loop) for at most
 * GW_TN_FETCH_TIMEOUT_MS (Redis: the limiter's timeout); they happen once per TTL per key
 * or namespace, and the Redis calls only in namespaces that have a max_concurrency quota.
 * Caches are bounded (GW_TN_CACHE_MAX entries: full, everything goes) and thread-safe (one
 * mutex each); each thread has its own HTTP and Redis connection. */
#ifndef GW_TENANTS_H
#define GW_TENANTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis.h"
#include "tenant.h"
#include "upstream.h"

#define GW_TN_KEY_TTL_MS 5000
#define GW_TN_MISSING_TTL_MS 1000
#define GW_TN_NS_TTL_MS 5000
#define GW_TN_MAX_STALE_MS (10 * 60 * 1000)
#define GW_TN_FETCH_TIMEOUT_MS 500
#define GW_TN_CACHE_MAX 4096
#define GW_TN_BUCKETS 128
#define GW_TN_SECRET_MAX 128
#define GW_TN_KEY_ID_MAX 128
#define GW_TN_UNLIMITED (-1)

/* A SigV4 access key as the executor describes it. */
typedef struct gw_tn_akey {
    char secret[GW_TN_SECRET_MAX];
    char ns[TENANT_MAX + 1];
    unsigned scopes; /* GW_SCOPE_* */
    bool active;
} gw_tn_akey;

/* A namespace's quotas; GW_TN_UNLIMITED for null. */
typedef struct gw_tn_quotas {
    int64_t max_functions, max_concurrency, builds_per_minute;
} gw_tn_quotas;

typedef struct gw_tn_entry {
    struct gw_tn_entry *next;
    int64_t stored_ms;
    int status; /* 200 found, 404 not */
    gw_tn_akey key;
    gw_tn_quotas q;
    char id[]; /* the access key id or namespace */
} gw_tn_entry;

typedef struct gw_tn_cache {
    pthread_mutex_t lock;
    gw_tn_entry *buckets[GW_TN_BUCKETS];
    size_t n;
    int64_t ttl_found_ms, ttl_missing_ms;
} gw_tn_cache;

typedef enum { GW_TN_MISS = 0, GW_TN_FRESH, GW_TN_STALE } gw_tn_hit;

void gw_tn_cache_init(gw_tn_cache *c, int64_t ttl_found_ms, int64_t ttl_missing_ms);
/* Frees every entry (secrets wiped). */
void gw_tn_cache_free(gw_tn_cache *c);
/* Copies id's entry into *out (its id member is not copied); fresh within its TTL, stale up
 * to GW_TN_MAX_STALE_MS, else a miss. */
gw_tn_hit gw_tn_cache_get(gw_tn_cache *c, const char *id, int64_t now_ms, gw_tn_entry *out);
/* Stores (a copy of) *val under id. */
void gw_tn_cache_put(gw_tn_cache *c, const char *id, const gw_tn_entry *val, int64_t now_ms);

/* The executor's key document {"secret_access_key","namespace","scopes","status"}.
 * ML_ERR when a field is missing or invalid. */
int gw_tn_akey_parse(const char *json, size_t len, gw_tn_akey *out);
/* A namespace document: {"quotas":{"max_functions","max_concurrency","builds_per_minute"}}
 * (or the members at the top level); null, absent or negative = unlimited. ML_ERR when it
 * is not a JSON object. */
int gw_tn_quotas_parse(const char *json, size_t len, gw_tn_quotas *out);

typedef struct gw_tenants {
    gw_pool *executors;
    gw_tn_cache keys, namespaces;
    bool redis_enabled;
    char redis_url[512];
    int redis_timeout_ms;
    rds_script acquire;
    pthread_key_t tls_http, tls_redis;
    bool ready;
} gw_tenants;

/* executors must outlive t; redis_url NULL or "" disables max_concurrency. ML_ERR when out
 * of thread keys. Free with gw_tenants_free after the threads that used it have exited. */
int gw_tenants_init(gw_tenants *t, gw_pool *executors, const char *redis_url,
                    int redis_timeout_ms);
void gw_tenants_free(gw_tenants *t);

/* The active access key id into *out: ML_OK, or ML_ERR when it is unknown, disabled or
 * cannot be looked up now (the reason in err). */
int gw_tn_key_lookup(gw_tenants *t, const char *akid, gw_tn_akey *out, char *err, size_t errlen);
/* ns's quotas (all unlimited when they cannot be known). */
void gw_tn_quotas_get(gw_tenants *t, const char *ns, gw_tn_quotas *out);

/* Takes one of ns's limit in-flight slots for request id for at most hold_ms: 1 taken,
 * 0 refused (the namespace is at its limit; *in_flight says how many), -1 Redis could not
 * decide (admitted, nothing taken). */
int gw_tn_conc_acquire(gw_tenants *t, const char *ns, const char *id, int64_t limit,
                       int64_t hold_ms, int64_t *in_flight);
/* Gives id's slot back (best effort: it expires anyway). */
void gw_tn_conc_release(gw_tenants *t, const char *ns, const char *id);

#endif
