/* health.h — GET /health and GET /ready/{cap}: named dependency checks and the capabilities
 * they enable (docs/health.md).
 *
 * Checks: each names one dependency (postgres, redis, rabbitmq, s3, ...) and bounds its own
 * time (HEALTH_CHECK_BUDGET_MS, through the client timeouts of its connection).
 * Capabilities: what a service can do (invoke, async, read, write, build), each needing all
 * of some checks and at least one of others (health_cap). A service declares its table
 * with health_set_caps.
 *
 * Once health_start ran, a background thread runs every check each HEALTH_INTERVAL_MS and
 * the handlers answer from its cached results at once, so a frozen dependency never makes
 * /health slow. Before that (or in unit tests) health_evaluate runs the checks itself,
 * reusing a result for cache_ms.
 *
 * GET /health body: {"status":"ok"|"degraded"|"unavailable",
 *   "checks":{name:{"status":"ok"|"down","required","latency_ms","age_ms","error"}},
 *   "capabilities":{cap:bool,...}, "degraded":[names of failing checks]}.
 * With capabilities it answers 200 while at least one is available, 503 when none is.
 * Without (the gateway) it keeps the older rule: 503 when a required check fails.
 * GET /ready/{cap}: 200 {"capability","ready":true}; 503 not_ready with Retry-After: 1;
 * 404 for a capability the service does not have. */
#ifndef ML_HEALTH_H
#define ML_HEALTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "httpd.h"

#define HEALTH_OVERLOAD_HEADER "X-Minilambda-Overloaded"

#define HEALTH_MAX_CHECKS 12
#define HEALTH_MAX_CAPS 8
#define HEALTH_CAP_DEPS 4          /* names in each of a capability's all[] and any[] */
#define HEALTH_INTERVAL_MS 500     /* background rounds */
#define HEALTH_CHECK_BUDGET_MS 250 /* what each check's client timeouts are set to */
#define HEALTH_FAILS_TO_DOWN 2     /* background: a check that passed before is down after
                                    * this many failed rounds in a row (one slow answer is
                                    * no outage) */

/* Returns ML_OK when healthy, else ML_ERR with a reason in err. Must bound its own time. */
typedef int (*health_check_fn)(void *ud, char *err, size_t errlen);

typedef struct health_check {
    const char *name;
    health_check_fn fn;
    void *ud;
    bool required;
    /* the last result; lock guards it (and, in the foreground mode, the check's run) */
    pthread_mutex_t lock;
    int64_t checked_ms;  /* -1: never run */
    int last_rc;         /* what the check returned last */
    int fails;           /* failed runs in a row */
    bool ever_ok;
    int64_t latency_ms;
    char error[256];
} health_check;

/* A capability is available when every check in all[] passes and, when any[] names any
 * check, at least one of those passes. Unused slots are NULL. */
typedef struct health_cap {
    const char *name;
    const char *all[HEALTH_CAP_DEPS];
    const char *any[HEALTH_CAP_DEPS];
} health_cap;

/* A zeroed health is an empty, valid set (always "ok"). */
typedef struct health {
    health_check checks[HEALTH_MAX_CHECKS];
    size_t n;
    health_cap caps[HEALTH_MAX_CAPS];
    size_t ncaps;
    int64_t cache_ms;    /* foreground: reuse a result this long; 0: 1000 */
    int64_t interval_ms; /* background: a round every; 0: HEALTH_INTERVAL_MS */
    pthread_t thread;
    atomic_bool running; /* the background thread answers for the checks */
    atomic_bool stop;
    atomic_llong rounds; /* background rounds completed */
} health;

int health_add(health *h, const char *name, health_check_fn fn, void *ud, bool required);

/* Declares the service's capabilities (copied). ML_ERR if there are too many or one names
 * a check not added yet: add every check first. */
int health_set_caps(health *h, const health_cap *caps, size_t n);

/* Starts the background thread (once; later calls do nothing). Stop it with health_stop
 * before anything a check uses is freed. ML_ERR if the thread cannot start. */
int health_start(health *h);
/* Stops and joins the background thread; a no-op when it is not running. */
void health_stop(health *h);

/* ML_OK when /health answers 200 (see the top of this file). Fills json (caller owns,
 * cJSON_Delete) when not NULL. */
int health_evaluate(health *h, cJSON **json);
/* 1 when the capability is available, 0 when not (reason in err), -1 when no such one. */
int health_cap_ready(health *h, const char *cap, char *err, size_t errlen);
/* True when every required check passes and every capability is available (start-up). */
bool health_all_ready(health *h);

/* Route handlers; ud is the health set. They do no I/O once health_start ran. */
httpd_result health_handler(httpd_req *req, httpd_resp *resp, void *ud);
httpd_result health_ready_handler(httpd_req *req, httpd_resp *resp, void *ud); /* /ready/{cap} */

/* Marks a 503 as the service's overload (pool or queue full), the one 5xx the gateway's
 * breaker counts: adds HEALTH_OVERLOAD_HEADER: 1. */
void health_mark_overloaded(httpd_resp *resp);

#endif
