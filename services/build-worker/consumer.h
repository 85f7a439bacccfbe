/* consumer.h — a consuming thread: one queue, manual acks, prefetch 1, backoff on retry. */
#ifndef BW_CONSUMER_H
#define BW_CONSUMER_H

#include "job.h"

typedef job_outcome (*consumer_fn)(bw_app *app, deps *d, const mq_message *m);

typedef struct consumer {
    bw_app *app;
    const char *queue;
    consumer_fn fn;
} consumer;

/* Thread body (arg: consumer *): consumes until svc_stopping(), finishing the job in hand. */
void *consumer_main(void *arg);

#endif
