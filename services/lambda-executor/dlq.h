/* dlq.h — the dead-letter queue API: GET /functions/{fn}/dlq, POST /dlq/{id}/replay,
 * DELETE /dlq/{id}. */
#ifndef EX_DLQ_H
#define EX_DLQ_H

#include "app.h"
#include "httpd.h"

size_t dlq_routes(ex_app *app, httpd_route *out, size_t max);

/* Thread body (arg: ex_app *): until svc_stopping(), refreshes app->m_dlq
 * (minilambda_dlq_messages: entries neither replayed nor deleted) from Postgres every
 * app->queue_stats_interval_ms on the thread's own connection. While the count cannot be
 * read the series is removed, so a scrape never shows a stale count. */
void *dlq_gauge_main(void *arg);

#endif
