/* ratelimit.h — shared rate limits: GCRA in Redis (one EVALSHA round trip, Redis TIME), with
 * a per-instance in-memory fallback while Redis is unreachable.
 *
 * Thread-safety: gw_limiter_take may be called from any thread; each calling thread gets
 * its own Redis connection (hiredis contexts are single-threaded), closed when the thread
 * exits. Fallback is per call: every call tries Redis (the client fails at once while it
 * backs off between reconnects), so limits become shared again by themselves when Redis
 * returns. The switch is logged once each way and exported as
 * minilambda_gateway_ratelimit_fallback (0/1); see GW_LIMITER_GRACE_MS for the hysteresis. */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "gcra.h"
#include "metrics.h"
#include "redis.h"

/* After a Redis success, failures for this long (other threads' connections still backing
 * off) are served from memory without declaring Redis down. */
#define GW_LIMITER_GRACE_MS 1000

typedef struct gw_limiter {
    const char *redis_url;
    int redis_timeout_ms;
    rds_script script;
    gcra_mem mem;
    atomic_bool fallback;
    _Atomic int64_t last_ok_ms;
    pthread_key_t conn_key;
    bool key_created;
    metric *m_fallback, *m_redis_errors;
} gw_limiter;

/* Prepares the limiter (no I/O). redis_url may be NULL or "" for memory only. reg may be
 * NULL. Free with gw_limiter_free once no thread uses it. ML_ERR on resource exhaustion. */
int gw_limiter_init(gw_limiter *l, const char *redis_url, int redis_timeout_ms,
                    metrics_registry *reg);
void gw_limiter_free(gw_limiter *l);

/* Takes one request of key's budget under lim; never fails (Redis trouble: in memory).
 * key is any string (binary-safe in Redis, NUL-terminated here). */
void gw_limiter_take(gw_limiter *l, const char *key, gcra_limit lim, gcra_result *out);

/* True while decisions are made in memory. */
bool gw_limiter_in_fallback(gw_limiter *l);

#endif
