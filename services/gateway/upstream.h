/* upstream.h — the instances of each upstream service: round-robin choice among the ones
 * that can serve a request, active health checks, passive failure counting and a circuit
 * breaker per instance.
 *
 * Capabilities: each instance's GET /health body lists what it can do right now
 * ("capabilities":{"invoke":true,"async":false,...}); a request only goes to an instance
 * that has the capability its route needs, so one dependency down takes away only what
 * depends on it (issue 15).
 * Breaker (per instance): CLOSED counts consecutive failures — connect failures, timeouts,
 * broken connections and answers carrying X-Minilambda-Overloaded: 1. A service's own
 * 4xx/5xx is never a failure: it is about the request, and counting it would let one client
 * switch an instance off for everyone. At `failures` it goes OPEN and takes no traffic for
 * open_ms, or until a health check passes; then HALF_OPEN admits at most `probes` requests
 * at a time: `probes` successes close it, one failure reopens it. Results of requests
 * admitted before a transition (not probes) do not move a HALF_OPEN or OPEN breaker.
 * Health: a background thread GETs {base}/health every interval; an instance whose check
 * fails (or that reports no capability) takes no traffic until a check passes again, so a
 * known-dead instance costs a request nothing (no connect attempt, no timeout).
 * Thread-safety: a pool's state is behind its mutex; every function here is thread-safe. */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"
#include "ml.h"

#define GW_MAX_INSTANCES 16
#define GW_URL_MAX 256

/* Capability bits (the names of the /health "capabilities" object). */
enum {
    GW_CAP_INVOKE = 1u << 0, /* executor: sync invoke */
    GW_CAP_ASYNC = 1u << 1,  /* executor: Event invoke */
    GW_CAP_READ = 1u << 2,   /* GETs */
    GW_CAP_WRITE = 1u << 3,  /* PUT/PATCH/DELETE and other changes */
    GW_CAP_BUILD = 1u << 4,  /* build-master: create, code upload */
    GW_CAP_ALL = (1u << 5) - 1,
};

/* The capabilities a GET /health answer grants: the "capabilities" object's true members
 * when the status is 200 or 503; without that object (a service predating capabilities)
 * every capability on 200 and none otherwise. body may be NULL. */
unsigned gw_caps_parse(long status, const char *body, size_t len);
/* "invoke" etc. for one capability bit; "" for anything else. */
const char *gw_cap_name(unsigned cap);

typedef enum { GW_BREAKER_CLOSED = 0, GW_BREAKER_HALF_OPEN = 1, GW_BREAKER_OPEN = 2 } gw_breaker_state;

typedef struct gw_breaker_cfg {
    int failures;    /* consecutive failures that open it; 0: 5 */
    int64_t open_ms; /* how long it stays open; 0: 5000 */
    int probes;      /* half-open: concurrent probes and successes needed to close; 0: 2 */
} gw_breaker_cfg;

/* A zeroed breaker is closed. */
typedef struct gw_breaker {
    gw_breaker_state state;
    int failures;
    int64_t opened_ms;
    int probes_inflight, probe_successes;
} gw_breaker;

typedef enum { GW_ADMIT_NO = 0, GW_ADMIT_YES, GW_ADMIT_PROBE } gw_admit;

/* Whether a request may go to this instance now; GW_ADMIT_PROBE takes a half-open slot that
 * gw_breaker_record must give back. Moves OPEN to HALF_OPEN once open_ms has passed. */
gw_admit gw_breaker_admit(gw_breaker *b, const gw_breaker_cfg *cfg, int64_t now_ms);
/* Records the outcome of a request admitted with `how`. */
void gw_breaker_record(gw_breaker *b, const gw_breaker_cfg *cfg, gw_admit how, bool success,
                       int64_t now_ms);
/* A health check passed: an OPEN breaker goes HALF_OPEN at once (its probes decide). */
void gw_breaker_health_passed(gw_breaker *b);
const char *gw_breaker_state_name(gw_breaker_state s);

typedef struct gw_instance {
    char base_url[GW_URL_MAX]; /* no trailing slash */
    bool healthy;              /* last active check answered with a capability (true until not) */
    unsigned caps;             /* GW_CAP_* of the last check (all until the first one) */
    char health_error[160];
    gw_breaker breaker;
    struct gw_pool *pool;
} gw_instance;

typedef struct gw_pool {
    const char *service;       /* "lambda-executor" */
    gw_instance inst[GW_MAX_INSTANCES];
    size_t n;
    unsigned rr;
    gw_breaker_cfg bcfg;
    int64_t health_interval_ms;
    pthread_mutex_t lock;
    metric *m_healthy, *m_breaker, *m_transitions, *m_caps;
} gw_pool;

/* Parses a comma-separated list of http(s) base URLs into p. reg may be NULL. ML_ERR with
 * a reason in err on an empty list, a bad URL or more than GW_MAX_INSTANCES. Free with
 * gw_pool_free. */
int gw_pool_init(gw_pool *p, const char *service, const char *urls, const gw_breaker_cfg *bcfg,
                 int64_t health_interval_ms, metrics_registry *reg, char *err, size_t errlen);
void gw_pool_free(gw_pool *p);

/* The next instance in round-robin order that is healthy, has capability `cap` (a GW_CAP_*
 * bit) and is admitted by its breaker, skipping `exclude` (may be NULL); NULL when none is.
 * *how receives the admission to pass to gw_pool_report. */
gw_instance *gw_pool_pick(gw_pool *p, unsigned cap, const gw_instance *exclude, int64_t now_ms,
                          gw_admit *how);
/* The outcome of a request sent to in (admitted with how). */
void gw_pool_report(gw_instance *in, gw_admit how, bool success, int64_t now_ms);
/* Records an active health check result: the capabilities it granted (0: the check failed,
 * error says why). A passing check half-opens an open breaker. */
void gw_pool_set_health(gw_instance *in, unsigned caps, const char *error);
/* Seconds a client should wait before retrying when no instance is available (>= 1). */
int64_t gw_pool_retry_after_s(gw_pool *p, int64_t now_ms);
/* Number of instances that are healthy and not open (for /health). */
size_t gw_pool_available(gw_pool *p, char *detail, size_t detail_len);

/* The active health checker: one thread checking every instance of the pools. */
typedef struct gw_health_checker gw_health_checker;
/* Starts the checker over pools[0..npools) (which must outlive it). NULL on failure. */
gw_health_checker *gw_health_start(gw_pool **pools, size_t npools);
/* Stops and joins the thread, frees the checker (NULL is fine). */
void gw_health_stop(gw_health_checker *hc);
/* One check round now, in the calling thread (tests, and start-up). */
void gw_health_round(gw_pool **pools, size_t npools);

#endif
