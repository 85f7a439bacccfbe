/* queuestats.c — queue depth gauges from passive declares (see queuestats.h). */
#include "queuestats.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mq.h"

#define DEFAULT_INTERVAL_MS 5000

struct qstats {
    qstats_config cfg;
    mq_conn *mq;                 /* used by the refresh thread only */
    metric *m_messages, *m_consumers, *m_up;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;         /* CLOCK_MONOTONIC, so a clock step cannot stall refreshes */
    bool stop, up;
};

/* Asks the broker about every queue into msgs/cons; returns how many queues answered, or -1
 * when the broker could not be reached. A missing queue (404) is skipped. */
static int poll_queues(qstats *q, metric_sample *msgs, metric_sample *cons)
{
    int n = 0;

    for (size_t i = 0; i < q->cfg.nqueues; i++) {
        uint32_t m = 0, c = 0;
        if (mq_queue_stats(q->mq, q->cfg.queues[i], &m, &c) != ML_OK) {
            if (strstr(mq_error(q->mq), "404 NOT_FOUND"))
                continue;
            return -1;
        }
        msgs[n] = (metric_sample){ &q->cfg.queues[i], (double)m };
        cons[n++] = (metric_sample){ &q->cfg.queues[i], (double)c };
    }
    return n;
}

static void refresh(qstats *q)
{
    metric_sample msgs[QSTATS_MAX_QUEUES] = { 0 }, cons[QSTATS_MAX_QUEUES] = { 0 };
    int n = poll_queues(q, msgs, cons);
    bool up = n >= 0;

    metric_gauge_replace(q->m_messages, msgs, up ? (size_t)n : 0);
    metric_gauge_replace(q->m_consumers, cons, up ? (size_t)n : 0);
    metric_set(q->m_up, NULL, up ? 1 : 0);
    if (up && !q->up)
        ml_log_kv(ML_LOG_INFO, "queue stats: broker reachable", NULL);
    else if (!up && q->up)
        ml_log_kv(ML_LOG_WARN, "queue stats: broker unreachable", "error", mq_error(q->mq), NULL);
    q->up = up;
}

static void *qstats_main(void *arg)
{
    qstats *q = arg;
    struct timespec ts;

    pthread_mutex_lock(&q->lock);
    while (!q->stop) {
        pthread_mutex_unlock(&q->lock);
        refresh(q);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += q->cfg.interval_ms / 1000;
        ts.tv_nsec += (q->cfg.interval_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&q->lock);
        while (!q->stop && pthread_cond_timedwait(&q->wake, &q->lock, &ts) == 0)
            ; /* woken early without stop: keep waiting out the interval */
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static int register_metrics(qstats *q, char *err, size_t errlen)
{
    metrics_registry *reg = q->cfg.metrics;

    q->m_messages = metrics_gauge(reg, "minilambda_queue_messages",
                                  "Ready messages in a broker queue (absent while the broker "
                                  "is unreachable).", "queue");
    q->m_consumers = metrics_gauge(reg, "minilambda_queue_consumers",
                                   "Consumers on a broker queue (absent while the broker is "
                                   "unreachable).", "queue");
    q->m_up = metrics_gauge(reg, "minilambda_queue_stats_up",
                            "1 if the last queue stats refresh reached the broker.", NULL);
    if (!q->m_messages || !q->m_consumers || !q->m_up) {
        ml_snprintf_trunc(err, errlen, "queue stats: cannot register metrics (name clash?)");
        return ML_ERR;
    }
    return ML_OK;
}

qstats *qstats_start(const qstats_config *cfg, char *err, size_t errlen)
{
    mq_options o = { .connect_timeout_ms = 2000, .op_timeout_ms = 3000,
                     .connection_name = cfg->connection_name };
    pthread_condattr_t ca;
    qstats *q;

    if (!cfg->metrics || !cfg->amqp_url || cfg->nqueues == 0 || cfg->nqueues > QSTATS_MAX_QUEUES) {
        ml_snprintf_trunc(err, errlen, "queue stats: need metrics, a URL and 1..%d queues",
                          QSTATS_MAX_QUEUES);
        return NULL;
    }
    if (!(q = calloc(1, sizeof(*q)))) {
        ml_snprintf_trunc(err, errlen, "out of memory");
        return NULL;
    }
    q->cfg = *cfg;
    if (q->cfg.interval_ms <= 0)
        q->cfg.interval_ms = DEFAULT_INTERVAL_MS;
    q->up = true;                  /* so a broker down from the start is logged */
    if (register_metrics(q, err, errlen) != ML_OK || !(q->mq = mq_new(cfg->amqp_url, &o, NULL, err, errlen)))
        goto fail;
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&q->thread, NULL, qstats_main, q) == 0)
        return q;
    ml_snprintf_trunc(err, errlen, "queue stats: cannot start a thread");
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->lock);
fail:
    mq_close(q->mq);
    free(q);
    return NULL;
}

void qstats_stop(qstats *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    q->stop = true;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
    mq_close(q->mq);
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->lock);
    free(q);
}
