/* pool.h — warm pools of sandboxed instances, one pool per function version and config.
 *
 * An instance runs one invocation at a time and is reused for the next (warm start); a pool
 * grows up to the function's concurrency, and callers beyond that wait a short, bounded time
 * before being refused (429). Idle instances are reaped after a TTL; a crashed or timed-out
 * instance is destroyed, never reused; a newer code revision or configuration of the same
 * executed version drains the old pool (a published version's pool outlives $LATEST's changes). */
#ifndef EX_POOL_H
#define EX_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"
#include "ml.h"
#include "sandbox.h"
#include "sandbox_stem.h"

/* pool_acquire's results. */
typedef enum {
    POOL_OK = ML_OK,
    POOL_ERR = ML_ERR,
    POOL_SATURATED = 1, /* the concurrency stayed exhausted for the whole wait */
} pool_rc;

typedef struct pool pool;
typedef struct pool_fn pool_fn;

/* What identifies a pool and how its instances are made. Strings are copied. A function has
 * one pool per executed version ("$LATEST", "3": docs/versions.md); a change drains only the
 * pools of the same executed version. */
typedef struct pool_want {
    const char *function_id, *function_name;
    const char *executed_version; /* NULL: "$LATEST" */
    int64_t version;
    const char *generation;  /* changes whenever the function's config changes */
    int64_t concurrency;
    sandbox_spec spec;       /* spec.log: the acquiring invocation's log, which gets what a
                                cold start prints (borrowed for the call) */
} pool_want;

typedef struct pool_lease {
    pool_fn *fn;
    sandbox_instance *inst;
    bool cold;
    bool stem;               /* cold: started from a stem cell */
    int64_t start_ms;        /* cold: how long the instance took to start */
} pool_lease;

typedef struct pool_config {
    int64_t idle_ttl_ms;     /* idle instances older than this are destroyed */
    int64_t max_instances;   /* on this host, all functions together */
    metrics_registry *metrics;
    sandbox_stem_pool *stems; /* may be NULL: cold starts take a stem cell when one fits
                                 (sandbox_stem.h), else start fresh; borrowed */
} pool_config;

/* Creates the pools and their reaper thread. Free with pool_free. */
pool *pool_new(const pool_config *cfg);
/* Destroys every instance (after the reaper stops). Busy leases must be released first. */
void pool_free(pool *p);

/* An instance for want: idle (warm) or newly started (cold). ML_OK; POOL_SATURATED when the
 * function's concurrency (or the host's instance cap) stayed exhausted for wait_ms; ML_ERR
 * when a new instance could not start (err says why, e.g. the handler failed to load). */
pool_rc pool_acquire(pool *p, const pool_want *want, int64_t wait_ms, pool_lease *out,
                     char *err, size_t errlen);

/* Returns the instance; reusable=false destroys it (crash, timeout, OOM). */
void pool_release(pool *p, pool_lease *lease, bool reusable);

/* Instances by state, for /metrics and tests. */
void pool_counts(pool *p, int64_t *idle, int64_t *busy, int64_t *starting);

#endif
