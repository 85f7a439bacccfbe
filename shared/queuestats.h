/* queuestats.h — broker queue depth and consumer gauges, refreshed off the scrape path.
 *
 * A background thread with its own AMQP connection (rabbitmq-c wants one per thread) asks the
 * broker every interval_ms, with a passive queue.declare per queue, for the queue's ready
 * message count and consumer count, and publishes
 *   minilambda_queue_messages{queue}   ready (not yet delivered) messages
 *   minilambda_queue_consumers{queue}  consumers attached to the queue
 *   minilambda_queue_stats_up          1 when the last refresh reached the broker, else 0
 * Nothing stale is ever reported: while the broker cannot be reached the per-queue series are
 * removed (only minilambda_queue_stats_up 0 remains), and a queue that does not exist (yet)
 * has no series. The connection reconnects by itself (mq.h's backoff) on the next refresh.
 * A scrape never waits on the broker: it reads the last published values. Every replica of a
 * service reports the same broker-wide numbers: aggregate them with max, not sum. */
#ifndef ML_QUEUESTATS_H
#define ML_QUEUESTATS_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

#define QSTATS_MAX_QUEUES 16

typedef struct qstats qstats;

typedef struct qstats_config {
    const char *amqp_url;
    const char *const *queues;   /* queue names; the array and strings must outlive the qstats */
    size_t nqueues;              /* 1..QSTATS_MAX_QUEUES */
    int64_t interval_ms;         /* between refreshes; <= 0: 5000 */
    const char *connection_name; /* shown by the broker's management UI; copied */
    metrics_registry *metrics;
} qstats_config;

/* Registers the gauges in cfg->metrics and starts the refresh thread (the first refresh runs
 * at once). NULL with the reason in err on a bad config, an unparsable URL or out of
 * resources. The caller owns the result: stop it with qstats_stop. */
qstats *qstats_start(const qstats_config *cfg, char *err, size_t errlen);

/* Wakes and joins the thread (a refresh in progress finishes first, bounded by the AMQP
 * timeouts), closes its connection and frees q. NULL is a no-op. */
void qstats_stop(qstats *q);

#endif
