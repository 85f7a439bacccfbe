/* gcra.h — the Generic Cell Rate Algorithm: one stored number per key (the theoretical
 * arrival time, TAT) decides each request exactly, with no windows and no drift.
 *
 * A limit of r requests/s with burst b admits b requests at once on a full bucket and one
 * every T = 1/r afterwards: a request at time now is allowed when
 * max(TAT, now) + T - b*T <= now, and then TAT becomes max(TAT, now) + T.
 * The same math runs in Redis (gcra_lua, shared by every gateway) and in memory
 * (gcra_mem, the per-instance fallback while Redis is down). Times are microseconds. */
#ifndef GW_GCRA_H
#define GW_GCRA_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A limit: one request per interval_us, up to burst at once. */
typedef struct gcra_limit {
    int64_t interval_us; /* >= 1 */
    int64_t burst;       /* >= 1 */
} gcra_limit;

typedef struct gcra_result {
    bool allowed;
    int64_t limit;          /* = burst */
    int64_t remaining;      /* requests still allowed right now after this one */
    int64_t retry_after_us; /* denied: when this request would have been allowed; else 0 */
    int64_t reset_after_us; /* when the bucket is full again */
} gcra_result;

/* A limit of rps requests per second (fractions allowed) with burst b; rps <= 0 or a burst
 * below 1 are clamped to the smallest valid values. */
gcra_limit gcra_limit_rps(double rps, int64_t burst);
/* per_minute requests a minute with burst b. */
gcra_limit gcra_limit_per_minute(int64_t per_minute, int64_t burst);

/* Decides one request at now_us against *tat_us (0 = never seen), advancing it if allowed. */
void gcra_decide(int64_t *tat_us, int64_t now_us, gcra_limit lim, gcra_result *out);

/* The Redis side of a batch of decisions, for EVALSHA with KEYS = the batch's distinct keys
 * and ARGV = four numbers per group of decisions (one key, one limit): the index of its key
 * in KEYS (from 1), interval_us, burst, count. Time comes from Redis TIME, so every gateway
 * shares one clock. It admits what gcra_decide would admit of each group in turn, stores
 * the TATs, and returns per group the TAT before it, minus now (>= 0): replaying the
 * group's decisions with gcra_decide from that TAT at time 0 gives each one's result. */
extern const char gcra_lua[];

/* The in-memory limiter: a bounded hash of key -> TAT under one mutex. A zeroed gcra_mem is
 * not valid: call gcra_mem_init. Thread-safe. */
#define GCRA_MEM_BUCKETS 1024

typedef struct gcra_mem_entry {
    struct gcra_mem_entry *next;
    int64_t tat_us;
    char key[]; /* NUL-terminated */
} gcra_mem_entry;

typedef struct gcra_mem {
    pthread_mutex_t lock;
    gcra_mem_entry *buckets[GCRA_MEM_BUCKETS];
    size_t n, max_entries;
} gcra_mem;

/* max_entries bounds memory (0: 100000). When full, keys whose bucket has refilled (TAT in
 * the past: the same as an unknown key) are dropped first. */
void gcra_mem_init(gcra_mem *m, size_t max_entries);
void gcra_mem_free(gcra_mem *m);
/* gcra_decide for key in the table at now_us. If the table is full of live keys the
 * request is allowed untracked (fail open) rather than refusing unrelated callers. */
void gcra_mem_take(gcra_mem *m, const char *key, int64_t now_us, gcra_limit lim,
                   gcra_result *out);
/* Moves key's TAT forward to tat_us (never back): mirrors a decision Redis made, so that
 * if Redis stops answering the fallback goes on from where the shared limit was instead of
 * from a full bucket (which would admit an extra burst). Nothing is stored for a TAT at or
 * before now_us (a full bucket, the same as no entry). */
void gcra_mem_raise(gcra_mem *m, const char *key, int64_t now_us, int64_t tat_us);

#endif
