/* job.h — one build job, from claim to completed/failed. */
#ifndef BW_JOB_H
#define BW_JOB_H

#include "app.h"
#include "mq.h"

typedef enum {
    JOB_ACK,   /* done (completed, failed, or nothing to do) */
    JOB_RETRY, /* transient failure: requeue after a backoff */
    JOB_DROP,  /* poison message: reject without requeue (dead-lettered) */
} job_outcome;

job_outcome job_handle(bw_app *app, deps *d, const mq_message *m);

/* A job the broker dead-lettered after repeated failures: mark its build failed. */
job_outcome job_dead_lettered(bw_app *app, deps *d, const mq_message *m);

#endif
