/* consumer.c — the consume loop shared by the build and dead-letter consumers. */
#include "consumer.h"

#include "log.h"
#include "service.h"

/* Quorum queues count deliveries in x-delivery-count; back off 1 s, 2 s, 4 s ... 30 s so a
 * brief S3 or Postgres outage does not burn through the delivery limit. */
static int64_t retry_delay_ms(const mq_message *m)
{
    const mq_header *h = mq_message_header(m, "x-delivery-count");
    int64_t n = h && !h->str ? h->num : 0, delay = 1000;

    while (n-- > 0 && delay < 30000)
        delay *= 2;
    return delay > 30000 ? 30000 : delay;
}

static void sleep_unless_stopping(int64_t ms)
{
    for (int64_t t = 0; t < ms && !svc_stopping(); t += 100)
        ml_sleep_ms(100);
}

static void settle(deps *d, const mq_message *m, job_outcome out)
{
    int rc;

    if (out == JOB_RETRY)
        sleep_unless_stopping(retry_delay_ms(m));
    rc = out == JOB_ACK ? mq_ack(d->mq, m) : mq_nack(d->mq, m, out == JOB_RETRY);
    if (rc != ML_OK) /* the broker redelivers it: our work is idempotent */
        ml_log_kv(ML_LOG_WARN, "cannot settle message", "error", mq_error(d->mq), NULL);
}

void *consumer_main(void *arg)
{
    consumer *c = arg;
    deps *d = bw_deps(c->app);
    int64_t backoff = 100;
    bool consuming = false;

    if (!d)
        return NULL;
    while (!svc_stopping()) {
        mq_message m = { 0 };
        mq_status rc = MQ_OK;

        /* once started, the consumer survives reconnects inside mq_consume_next */
        if (!consuming) {
            if (mq_consume(d->mq, c->queue, 1) == ML_OK)
                consuming = true;
            else
                rc = MQ_ERR;
        }
        if (rc == MQ_OK)
            rc = mq_consume_next(d->mq, 1000, &m);
        if (rc == MQ_TIMEOUT)
            continue;
        if (rc != MQ_OK) {
            ml_log_kv(ML_LOG_WARN, "consumer cannot reach the broker", "queue", c->queue, "error",
                      mq_error(d->mq), NULL);
            sleep_unless_stopping(backoff);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
            continue;
        }
        backoff = 100;
        settle(d, &m, c->fn(c->app, d, &m));
        mq_message_destroy(&m);
    }
    return NULL;
}
