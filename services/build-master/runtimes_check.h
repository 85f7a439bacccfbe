/* runtimes_check.h — may a new function use this runtime? The build-master asks the
 * lambda-executor's GET /runtimes (the executors own the runtimes table: docs/versions.md
 * "Runtimes") and keeps the answer BMR_TTL_MS. When the executor cannot be asked, any
 * accepted name passes: the executor refuses at invoke (Runtime.Unavailable), and a create
 * never fails because a cache could not be filled.
 *
 * Thread-safe: the cache is behind its own mutex, never held during the HTTP request. */
#ifndef BM_RUNTIMES_CHECK_H
#define BM_RUNTIMES_CHECK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "httpd.h"
#include "runtimes-t.h"

#define BMR_TTL_MS 30000      /* a known answer */
#define BMR_RETRY_MS 5000     /* after a failed ask: accept meanwhile, ask again after this */
#define BMR_TIMEOUT_MS 2000

typedef struct bmr_cache {
    pthread_mutex_t mu;
    runtimes_table table;     /* valid while known */
    bool known;
    int64_t until_ms;         /* monotonic: ask again after this */
} bmr_cache;

/* A code update builds with the function's runtime and handler as the executor has them now
 * (a PATCH there may have changed them: docs/versions.md), so the build-worker checks the
 * ZIP for the right file. ML_OK with both written (each valid by fnspec); ML_ERR when the
 * executor cannot say (the build-side values stay). ns: the function's namespace. */
int bmr_current(const char *executor_url, const char *ns, const char *id,
                char runtime[FNSPEC_RUNTIME_MAX + 1], char handler[FNSPEC_HANDLER_MAX + 1]);

/* A zeroed cache after bmr_init; bmr_free destroys the mutex. */
void bmr_init(bmr_cache *c);
void bmr_free(bmr_cache *c);

/* runtime is accepted (fnspec) already. ML_OK when the executor has it (or could not be
 * asked); ML_ERR with 400 invalid_runtime naming the available ones written to resp. */
int bmr_check(bmr_cache *c, const char *executor_url, const char *runtime, httpd_resp *resp);

#endif
