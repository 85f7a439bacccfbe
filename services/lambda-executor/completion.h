/* completion.h — exactly-once completion of async invocations: the durable record, in
 * Postgres (async_completions, migration 0007), that an invocation's execution started or
 * completed, written synchronously by the consumer before it acknowledges the message.
 *
 * A consumer thread owns one completion handle (its own Postgres connection, never the
 * shared pool's: it holds the invocation's advisory lock for a whole attempt, which may
 * last up to the function's timeout). Per message:
 *   completion_begin   lock the id and mark an attempt started (or learn it is done/busy)
 *   ... run ...
 *   completion_finish  mark it completed (durably; before the ack)   or
 *   completion_retry   mark the attempt ended without completing (a retry is queued)
 *   completion_release drop the lock (always, after begin returned COMPLETION_RUN)
 * Not thread-safe: one handle per thread. */
#ifndef EX_COMPLETION_H
#define EX_COMPLETION_H

#include <stdbool.h>
#include <stdint.h>

#include "pg.h"

typedef struct completion completion;

typedef enum {
    COMPLETION_RUN,         /* locked and marked started: run it as *attempt */
    COMPLETION_DONE,        /* already completed (or the id belongs to another function): ack, don't run */
    COMPLETION_BUSY,        /* another consumer holds this id now: try again later */
    COMPLETION_UNAVAILABLE, /* Postgres cannot say: don't run blind, try again later */
} completion_rc;

/* A handle on db_url (no I/O yet); NULL when out of memory. Caller frees with completion_free. */
completion *completion_new(const char *db_url);
void completion_free(completion *c);

/* Claims id for one attempt. *attempt: in, the attempt the message carries; out (RUN), the
 * attempt this run is: one more than any attempt recorded as started before (an attempt cut
 * off by a crash is counted), never less than the message's. */
completion_rc completion_begin(completion *c, const char *id, const char *function_id,
                               int64_t *attempt);

/* The attempt numbered `attempt` ended without completing (pass attempt - 1 when nothing
 * ran, so the next delivery runs as the same attempt). ML_ERR: not recorded (the next
 * delivery then counts one attempt more; nothing runs twice at once). */
int completion_retry(completion *c, const char *id, int64_t attempt);

/* Records the completion (status: succeeded, failed, timed_out, dead_lettered) durably.
 * Retries while Postgres is unreachable until it takes the row or should_stop() says so
 * (then ML_ERR: the message must not be acked as done; its redelivery runs it again). */
int completion_finish(completion *c, const char *id, const char *function_id, int64_t attempt,
                      const char *status, bool (*should_stop)(void));

/* Records the completion as part of the caller's open transaction on completion_db(c). */
int completion_mark(completion *c, const char *id, const char *function_id, int64_t attempt,
                    const char *status);

/* The handle's own connection, for a transaction that must commit with the completion
 * (completion_mark). Borrowed. */
pg_conn *completion_db(completion *c);

/* Releases the advisory lock begin took (a lost connection already released it). */
void completion_release(completion *c, const char *id);

/* The decision behind completion_begin, given what the id's record says (found false: no
 * record; state "started" | "retrying" | "completed"; same_function false: the id was used
 * for another function) and the attempt the message carries. COMPLETION_RUN with *attempt
 * set, or COMPLETION_DONE. Pure (unit-tested). */
completion_rc completion_next(bool found, const char *state, int64_t recorded_attempt,
                              bool same_function, int64_t message_attempt, int64_t *attempt);

/* The advisory lock key of an id: (class, 32 bits of the id). Exposed for tests. */
#define COMPLETION_LOCK_CLASS 1634957683
int32_t completion_lock_key(const char *id);

#endif
