/* async.h — asynchronous invocations (X-Invocation-Type: Event, cron fires, DLQ replays):
 * durably queued in RabbitMQ before anyone is told "accepted", run by consumer threads,
 * retried with backoff, dead-lettered after the last attempt. */
#ifndef EX_ASYNC_H
#define EX_ASYNC_H

#include "app.h"

#define ASYNC_MAX_EVENT FNSPEC_MAX_EVENT_BODY

typedef struct async_event {
    const fn_info *fn;
    const void *payload;
    size_t len;
    audit_trigger trigger;      /* AUDIT_HTTP_ASYNC, AUDIT_CRON, AUDIT_DLQ_REPLAY */
    const char *schedule_id;    /* cron: the schedule that fired, else NULL */
    const char *replay_of;      /* replay: the dead-lettered invocation, else NULL */
    const char *request_id;     /* NULL when none */
    const char *id;             /* the invocation id fixed by the caller (a UUID), or NULL for a new one */
    const char *executed_version; /* the version that will run ("3"; an alias already picked);
                                   * NULL: $LATEST as it is when the event runs */
    const char *alias;          /* the alias invoked through, or NULL */
} async_event;

/* Publishes the event (persistent, publisher-confirmed) and records the invocation as
 * queued. id is filled first (ev->id, or a new one), whatever the outcome. ML_OK: durably
 * queued. ML_ERR: not confirmed (broker unavailable; err says why) — the caller must not
 * report success; the event MAY still have been queued (a confirm lost with the
 * connection), so the caller answers the id: a retry with it runs the event at most once
 * (consumers deduplicate by id, completion.h). Uses d's AMQP connection (this thread's). */
int async_enqueue(ex_app *app, deps *d, const async_event *ev, char id[ML_UUID_LEN], char *err,
                  size_t errlen);

/* Consumer thread body (arg: ex_app *): runs queued events until svc_stopping(). */
void *async_main(void *arg);

#endif
