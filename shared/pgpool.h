/* pgpool.h — a bounded, thread-safe pool of Postgres connections (pg_conn, see pg.h).
 *
 * Why: a libpq connection serves one thread at a time, and a daemon with hundreds of worker
 * threads must not open one connection per thread. The pool keeps at most `size` connections
 * open and lends each to one thread at a time:
 *
 *     pg_conn *db;
 *     if (pgpool_acquire(&pool, 2000, &db) != PGPOOL_OK)
 *         ... answer 503 ...
 *     ... pg_query(db, ...), pg_begin/pg_commit(db) ...   (one query group, no long waits)
 *     pgpool_release(&pool, db);
 *
 * Ownership: the pool owns every pg_conn it hands out. Between acquire and release the
 * calling thread has exclusive use of it; it must not pg_close() it, keep it after release,
 * or hold it across slow work that does not need the database (HTTP calls, sandboxes), or
 * the other threads wait. Every successful acquire must be followed by exactly one release
 * (or discard) of the same pg_conn.
 *
 * Health: a connection is never handed out broken.
 *  - On release it is thrown away (closed; the slot is free to open a new one) if its last
 *    call failed with a connection error (pg_error_is_connection), if its link is down
 *    (PQstatus != CONNECTION_OK, or the server closed it), or if it is still inside a
 *    transaction that a ROLLBACK cannot end. A transaction left open is rolled back.
 *    Server errors (unique violation, statement timeout...) leave it usable: it is kept.
 *  - On acquire an idle connection is checked without a round trip (did the server close
 *    it while idle, e.g. pg_terminate_backend?); if it sat idle longer than idle_check_ms it
 *    also answers SELECT 1 first. A failed check throws it away and the acquire goes on.
 *  - Idle connections older than idle_close_ms are closed by acquire/release/pgpool_sweep.
 *
 * Threads: every function may be called from any thread once pgpool_start returned, except
 * pgpool_close, which must not race with other calls on the same pool (stop first, join
 * the users, then close).
 *
 * Bound: connections open, being opened, being closed, idle and checked out together never
 * exceed `size`; the extra threads wait in pgpool_acquire. Opening a connection happens
 * outside the lock and may take pg_options' connect timeout x reconnect attempts, which can
 * exceed the acquire timeout. Idle connections are reused newest first (LIFO), so a thread
 * that releases and reacquires in a quiet pool gets the same backend. */
#ifndef ML_PGPOOL_H
#define ML_PGPOOL_H

#include <stddef.h>

#include "pgpool-t.h"

/* Makes a zeroed (or closed) pool usable for `url` (copied). Opens nothing: connections are
 * opened on demand. ML_ERR on a bad argument (p already started, empty url) or out of
 * memory, leaving p zeroed. */
int pgpool_start(pgpool *p, const char *url, const pgpool_options *opts);

/* Checks out a connection for the calling thread into *out (set to NULL on failure).
 * timeout_ms: how long to wait while all `size` connections are checked out; 0 does not
 * wait, < 0 waits without limit. Returns PGPOOL_OK, PGPOOL_TIMEOUT (nothing came free in
 * time), PGPOOL_STOPPED (pgpool_stop ran, also while waiting, or p was never started),
 * PGPOOL_CONNECT_FAILED (pgpool_error says why) or PGPOOL_NOMEM. */
pgpool_status pgpool_acquire(pgpool *p, int timeout_ms, pg_conn **out);

/* Gives c back (see Health above for when it is closed instead of kept). c NULL does
 * nothing; a c this pool did not hand out is logged and left alone. After pgpool_stop
 * every released connection is closed. */
void pgpool_release(pgpool *p, pg_conn *c);

/* Gives c back and closes it, whatever its state (the caller knows it is unusable). */
void pgpool_discard(pgpool *p, pg_conn *c);

/* Closes idle connections older than idle_close_ms. Acquire and release do it too; call it
 * from a timer if the pool can sit unused for long. */
void pgpool_sweep(pgpool *p);

/* Stops lending: waiting and later acquisitions get PGPOOL_STOPPED, idle connections are
 * closed now, checked-out ones when they are released. Safe with connections checked out;
 * idempotent; does nothing on a zeroed pool. */
void pgpool_stop(pgpool *p);

/* Stops the pool, waits up to wait_ms (< 0: without limit) for every checked-out connection
 * to come back and every waiter to leave, then frees everything and zeroes p (PGPOOL_OK;
 * also for a zeroed pool). PGPOOL_TIMEOUT if connections are still out: p stays allocated
 * and stopped, and pgpool_close may be called again later. */
pgpool_status pgpool_close(pgpool *p, int wait_ms);

/* A consistent snapshot (all zero for a zeroed pool). */
void pgpool_get_stats(pgpool *p, pgpool_stats *st);

/* Copies the last connect failure message ("" if none) into buf. */
void pgpool_error(pgpool *p, char *buf, size_t size);

/* A static name for s ("ok", "timeout", "stopped", "connect_failed", "nomem"). */
const char *pgpool_status_str(pgpool_status s);

#endif
