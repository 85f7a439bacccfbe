/* buildstate.h — build status transitions on the build side (build_service_db), shared by
 * the build-master (queued) and the build-workers (building, completed, failed).
 * A transition writes, in the caller's transaction: the status event, and one durable
 * webhook delivery per target (the function's webhook_url, and the lambda-executor's
 * /webhooks/build-status/{id}) carrying the exact body that will be signed. */
#ifndef ML_BUILDSTATE_H
#define ML_BUILDSTATE_H

#include <stdbool.h>

#include "pg.h"
#include "secretbox.h"

/* Records status (queued|building|completed|failed, error may be NULL) for build_id.
 * executor_url: lambda-executor base URL (NULL or "" = no lambda delivery). hold: the
 * deliveries wait (next_attempt_at = infinity) until buildstate_release, so nobody hears of a
 * build whose job is not yet confirmed by the broker. Must run inside a transaction;
 * the build row must already hold the new status. */
int buildstate_record(pg_conn *db, const char *build_id, const char *status, const char *error,
                      const char *executor_url, bool hold);

/* Marks the build's job as published and lets its held deliveries go. */
int buildstate_release(pg_conn *db, const char *build_id);

/* At rest (docs/secrets.md), at the build-master's start: every function's env values and
 * its sealed whsec_ secret end up sealed under sb's current key (plaintext from before
 * encryption, or the old key's), and settled webhook payloads (and every user copy) show
 * env names only. *sealed / *redacted: rows changed. ML_ERR with a reason (no values). */
int buildstate_seal_at_rest(pg_conn *db, const secretbox *sb, int64_t *sealed, int64_t *redacted,
                            char *err, size_t errlen);

#endif
