/* workers.h — the executor's background threads: the async consumers, the scheduler, the
 * DLQ gauge, the destination dispatcher, and the queue depth gauges.
 *
 * A zeroed ex_workers is a valid empty set (workers_stop is a no-op on it). The threads use
 * the ex_app handed to workers_start until workers_stop has joined them. */
#ifndef EX_WORKERS_H
#define EX_WORKERS_H

#include <pthread.h>

#include "app.h"
#include "outbox.h"
#include "queuestats.h"

typedef struct ex_workers {
    pthread_t threads[EX_MAX_CONSUMERS + 3];
    size_t nthreads;
    outbox *box;      /* the destination dispatcher's; NULL when destinations are disabled */
    qstats *stats;
} ex_workers;

/* Starts every background thread of app (after app_start). ML_ERR (logged) when the
 * scheduler's metrics or the queue gauges cannot be set up; call workers_stop either way. */
int workers_start(ex_workers *w, ex_app *app, svc *s);

/* Asks the threads to stop (svc_request_stop, when any run), joins them (each finishes the event in
 * hand) and frees what workers_start made. Call before app_stop. */
void workers_stop(ex_workers *w);

#endif
