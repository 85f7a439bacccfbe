/* workers.c — starts and joins the executor's background threads (see workers.h). */
#include "workers.h"

#include "async.h"
#include "dlq.h"
#include "log.h"
#include "schedules.h"
#include "topology.h"

static const char *const stats_queues[] = { TOPO_INVOKE_QUEUE, TOPO_INVOKE_RETRY1,
                                            TOPO_INVOKE_RETRY2, TOPO_INVOKE_DEAD_QUEUE };

static void *destinations_main(void *arg)
{
    outbox_run(arg, 100);
    return NULL;
}

/* Depth and consumers of the async invocation queues (see queuestats.h). */
static qstats *start_queue_stats(const ex_app *app, svc *s, char *err, size_t errlen)
{
    qstats_config qc = { .amqp_url = app->deps.amqp_url, .queues = stats_queues,
                         .nqueues = ML_ARRAY_LEN(stats_queues),
                         .interval_ms = app->queue_stats_interval_ms,
                         .connection_name = "lambda-executor queue stats", .metrics = s->metrics };

    return qstats_start(&qc, err, errlen);
}

static void start_thread(ex_workers *w, void *(*body)(void *), void *arg)
{
    if (pthread_create(&w->threads[w->nthreads], NULL, body, arg) == 0)
        w->nthreads++;
}

/* The destination dispatcher; a failure only disables destinations (logged). */
static void start_destinations(ex_workers *w, ex_app *app, svc *s)
{
    char err[256];
    outbox_config oc = { .kind = OUTBOX_DESTINATIONS, .db_url = app->deps.lambda_db_url,
                         .internal_secret = app->registry_cfg.webhook_secret, .metrics = s->metrics,
                         .ssrf = { app->allow_loopback, app->allow_private }, .should_stop = svc_stopping };

    if (!(w->box = outbox_new(&oc, err, sizeof(err))))
        ml_log_error("destinations disabled: %s", err);
    else
        start_thread(w, destinations_main, w->box);
}

int workers_start(ex_workers *w, ex_app *app, svc *s)
{
    char err[256];

    if (schedules_init(s->metrics) != ML_OK)
        return ML_ERR;
    if (!(w->stats = start_queue_stats(app, s, err, sizeof(err)))) {
        ml_log_error("%s", err);
        return ML_ERR;
    }
    for (int64_t i = 0; i < app->async_consumers && i < EX_MAX_CONSUMERS; i++)
        start_thread(w, async_main, app);
    start_thread(w, schedules_main, app);
    start_thread(w, dlq_gauge_main, app);
    start_destinations(w, app, s);
    return ML_OK;
}

void workers_stop(ex_workers *w)
{
    if (w->nthreads)
        svc_request_stop(); /* they run until svc_stopping() */
    for (size_t i = 0; i < w->nthreads; i++) /* each finishes the event in hand */
        pthread_join(w->threads[i], NULL);
    w->nthreads = 0;
    outbox_free(w->box);
    w->box = NULL;
    qstats_stop(w->stats);
    w->stats = NULL;
}
