/* notify.h — the "queued" build-status event, delivered to the lambda-executor inline.
 *
 * Read-your-writes after create: POST /functions answers 202 only after the executor has
 * heard of the build (so it knows the function as pending at once), when that is possible.
 * The event is the outbox row buildstate_record wrote (target 'lambda', status 'queued'),
 * sent with the same bytes and webhook-id the outbox would use, signed with the internal
 * secret. Call it while the row is still held (before buildstate_release), so no outbox
 * dispatcher sends it at the same time; on success the row is settled as delivered. On any
 * failure the row stays pending and the outbox delivers it later: nothing is lost. */
#ifndef BM_NOTIFY_H
#define BM_NOTIFY_H

#include "app.h"

/* Sends build_id's held queued event to the executor (timeout about 2 s in all). ML_OK when
 * the executor acknowledged it (2xx) and the row was marked delivered; ML_ERR otherwise
 * (logged; the outbox takes over). No-op ML_ERR when app->internal_secret is unset. */
int notify_queued_inline(bm_app *app, deps *d, const char *build_id);

#endif
