/* ratelimit.h — shared rate limits: GCRA in Redis (one EVALSHA round trip, Redis TIME), with
 * a per-instance in-memory fallback while Redis is unreachable.
 *
 * Two parts. gw_limiter is process-wide and thread-safe: the Redis address, the script, the
 * in-memory fallback table, the fallback flag and metrics. gw_rl is one event loop's
 * asynchronous Redis connection (hiredis async, driven by that loop's epoll set): decisions
 * are pipelined on it, so a loop waits for Redis without blocking and without a thread per
 * request. Only its loop thread may touch a gw_rl.
 *
 * Failure model: a command that gets no reply within the timeout drops the connection;
 * every decision Redis cannot make (down, timing out, backing off between reconnects, an
 * error reply) is made in memory instead, so requests never fail or wait because of Redis.
 * Reconnects back off from 100 ms to 5 s. The switch to memory and back is logged once each
 * way and exported as minilambda_gateway_ratelimit_fallback (0/1); a failure within
 * GW_LIMITER_GRACE_MS of a success (another loop still reconnecting) does not flip it. The
 * script is sent with EVALSHA; a NOSCRIPT reply (Redis restarted or flushed its scripts) is
 * answered by EVAL with the source, which reloads it. */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "gcra.h"
#include "metrics.h"
#include "redis.h"

#define GW_LIMITER_GRACE_MS 1000

typedef struct gw_limiter {
    bool redis_enabled;
    rds_url url;
    int timeout_ms;
    rds_script script;
    gcra_mem mem;
    atomic_bool fallback;
    _Atomic int64_t last_ok_ms;
    metric *m_fallback, *m_redis_errors;
} gw_limiter;

/* Prepares the shared part (no I/O). redis_url NULL or "" means memory only. reg may be
 * NULL. ML_ERR with a reason in err on a malformed URL. Free with gw_limiter_free after
 * every gw_rl using it. */
int gw_limiter_init(gw_limiter *l, const char *redis_url, int timeout_ms, metrics_registry *reg,
                    char *err, size_t errlen);
void gw_limiter_free(gw_limiter *l);
/* True while decisions are made in memory. */
bool gw_limiter_in_fallback(gw_limiter *l);
/* A decision in memory at the current monotonic time (the fallback; thread-safe). */
void gw_limiter_take_memory(gw_limiter *l, const char *key, gcra_limit lim, gcra_result *out);

/* Receives a decision on the loop thread. */
typedef void (*gw_limit_fn)(void *ud, const gcra_result *r);

typedef struct gw_rl gw_rl;

/* A loop's connection, registered in epoll set epfd with tag as the event's data.u64 (the
 * loop hands events carrying it to gw_rl_io). Connects lazily. NULL when out of memory.
 * Free with gw_rl_free on the loop thread; decisions still pending are made in memory. */
gw_rl *gw_rl_new(gw_limiter *shared, int epfd, uint64_t tag);
void gw_rl_free(gw_rl *rl);
/* Decides one request of key's budget; done runs exactly once, possibly before this
 * returns (memory fallback). key is copied. */
void gw_rl_take(gw_rl *rl, const char *key, gcra_limit lim, gw_limit_fn done, void *ud);
/* Handles epoll events for the connection's socket. */
void gw_rl_io(gw_rl *rl, uint32_t events);
/* Writes the commands appended since the last call; the loop calls it before it waits. */
void gw_rl_flush(gw_rl *rl);
/* Expires timed-out commands; returns the next time (monotonic ms) it needs a call, or -1. */
int64_t gw_rl_tick(gw_rl *rl, int64_t now_ms);

#endif
