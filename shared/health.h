/* health.h — GET /health: named dependency checks rendered as
 * {"status":"ok"|"degraded"|"unavailable","checks":{name:{"status","latency_ms","error"}}}.
 * 503 when a required check fails; a failing optional check only degrades (200). */
#ifndef ML_HEALTH_H
#define ML_HEALTH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "httpd.h"

#define HEALTH_MAX_CHECKS 12
#define HEALTH_OVERLOAD_HEADER "X-Minilambda-Overloaded"

/* Returns ML_OK when healthy, else ML_ERR with a reason in err. Must bound its own time. */
typedef int (*health_check_fn)(void *ud, char *err, size_t errlen);

typedef struct health_check {
    const char *name;
    health_check_fn fn;
    void *ud;
    bool required;
    /* cached result: checks run at most once per cache window however often /health is hit */
    pthread_mutex_t lock;
    int64_t checked_ms;
    int last_rc;
    int64_t latency_ms;
    char error[256];
} health_check;

/* A zeroed health is an empty, valid set (always "ok"). */
typedef struct health {
    health_check checks[HEALTH_MAX_CHECKS];
    size_t n;
    int64_t cache_ms; /* 0: 1000 */
} health;

int health_add(health *h, const char *name, health_check_fn fn, void *ud, bool required);
/* Runs (or reuses cached) checks; ML_OK when every required check passes. Fills json
 * (caller owns, cJSON_Delete) when not NULL. */
int health_evaluate(health *h, cJSON **json);
/* Route handler: ud is the health set. Mark the route .blocking (checks do I/O). */
httpd_result health_handler(httpd_req *req, httpd_resp *resp, void *ud);

#endif
