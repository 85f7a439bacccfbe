/* fnwait.h — GET /functions/{fn}?wait=active&timeout_s=N: answer once the function is active
 * or its build failed (or the timeout passed: then its current state).
 *
 * Why a parked request and one polling thread, not a blocked worker: a waiting client may
 * hold its request for up to a minute, and the HTTP workers also serve invocations; parking
 * (HTTPD_ASYNC: the connection is suspended, no thread is held) lets any number of waiters,
 * up to max_waiters, cost nothing but a list entry. One thread re-reads every waiter's
 * function in one batched query every poll_ms (200 ms by default: the state may change on
 * another executor, which this process does not hear of), and at once when fnwait_notify
 * says a build event was applied here. */
#ifndef LE_FNWAIT_H
#define LE_FNWAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "httpd.h"

#define FNWAIT_TIMEOUT_MIN_S 1
#define FNWAIT_TIMEOUT_MAX_S 60

/* Fills docs[i] with the API document (malloc'd JSON text, the caller frees) of the function
 * keys[i] names (a lower-case id; the registry parks on ids), or NULL when there is none. ML_ERR when the
 * database failed (docs are then all NULL). Called on fnwait's thread only. */
typedef int (*fnwait_fetch_fn)(void *ud, const char *const *keys, size_t n, char **docs);

typedef struct fnwait_config {
    fnwait_fetch_fn fetch;
    void *fetch_ud;
    bool (*should_stop)(void); /* when true, every waiter is answered with its current state */
    int64_t poll_ms;           /* 0: 200 */
    size_t max_waiters;        /* 0: 4096 */
} fnwait_config;

typedef struct fnwait fnwait;

/* Starts the waiting thread. NULL with a reason in err. Free with fnwait_free. */
fnwait *fnwait_new(const fnwait_config *cfg, char *err, size_t errlen);

/* Stops the thread and answers (503) anyone still waiting; NULL is fine. Call before the
 * HTTP server stops for good (its drain waits for parked requests, which should_stop ends). */
void fnwait_free(fnwait *w);

/* Parks req until key's function is active or failed (200 with its document), gone (404),
 * or timeout_s passes (200 with its current document). HTTPD_ASYNC when parked; HTTPD_DONE
 * with 503 written when too many are waiting. key is copied. */
httpd_result fnwait_park(fnwait *w, httpd_req *req, httpd_resp *resp, const char *key,
                         int timeout_s);

/* A function changed in this process: re-check the waiters now. Never blocks for long. */
void fnwait_notify(fnwait *w);

#endif
