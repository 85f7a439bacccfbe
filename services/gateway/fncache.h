/* fncache.h — what the gateway needs to know about a function (its id, timeout_s,
 * rate_limit and function URL configuration), read from the executor's GET /functions/{fn} and cached briefly.
 *
 * Entries are fresh for the TTL (a "no such function" answer for at most a second, so a
 * function that appears is invocable promptly); past it they are stale and only used when
 * the executor cannot be asked. Bounded: when full, expired entries go first, then all.
 * Thread-safe (one mutex). */
#ifndef GW_FNCACHE_H
#define GW_FNCACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fnurl-t.h"
#include "ml.h"

#define GW_FN_ID_MAX 64
#define GW_FN_NAME_MAX 80
#define GW_FNCACHE_BUCKETS 256
#define GW_FNCACHE_NEGATIVE_TTL_MS 1000
#define GW_FNCACHE_MAX_STALE_MS (5 * 60 * 1000)

typedef struct gw_fn_info {
    int status;             /* 200 found, 404 no such function */
    char id[GW_FN_ID_MAX];  /* "" if unknown */
    char name[GW_FN_NAME_MAX];
    int64_t timeout_s;      /* 0 if unknown */
    bool has_rate_limit;
    double rps;
    int64_t burst;          /* the configured burst, or ceil(rps) when it has none */
    gw_fnurl_cfg url;       /* "url_config" (docs/http.md); zeroed: no function URL */
} gw_fn_info;

/* The function's timeout_s, or the longest any function may run when it is unknown (a
 * long function must never die at a gateway default). */
int64_t gw_fn_timeout_s(const gw_fn_info *info);

/* Parses the executor's function document. Accepts the fields at the top level or under
 * "config": function_id (or id), name, timeout_s, rate_limit {"rps","burst"} (null = none),
 * url_config (null = no URL; its CORS lists comma-joined; a list too long for the struct
 * drops the cors object, an unusable batching object turns batching off).
 * Sets status 200. ML_ERR if the body is not a JSON object. */
int gw_fn_info_parse(const char *json, size_t len, gw_fn_info *out);

typedef enum { GW_FNCACHE_MISS = 0, GW_FNCACHE_FRESH, GW_FNCACHE_STALE } gw_fncache_hit;

typedef struct gw_fncache_entry {
    struct gw_fncache_entry *next;
    int64_t stored_ms;
    gw_fn_info info;
    char key[]; /* the {fn} the caller used: id or name */
} gw_fncache_entry;

typedef struct gw_fncache {
    pthread_mutex_t lock;
    gw_fncache_entry *buckets[GW_FNCACHE_BUCKETS];
    size_t n, max_entries;
    int64_t ttl_ms;
} gw_fncache;

/* ttl_ms: freshness (0: 5000); max_entries: bound (0: 10000). Free with gw_fncache_free. */
void gw_fncache_init(gw_fncache *c, int64_t ttl_ms, size_t max_entries);
void gw_fncache_free(gw_fncache *c);
/* Copies the entry for fn into *out; says whether it was fresh, stale or absent. */
gw_fncache_hit gw_fncache_get(gw_fncache *c, const char *fn, int64_t now_ms, gw_fn_info *out);
void gw_fncache_put(gw_fncache *c, const char *fn, const gw_fn_info *info, int64_t now_ms);

#endif
