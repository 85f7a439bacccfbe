/* dlq.h — the dead-letter queue API: GET /functions/{fn}/dlq, POST /dlq/{id}/replay,
 * DELETE /dlq/{id}. */
#ifndef EX_DLQ_H
#define EX_DLQ_H

#include "app.h"
#include "httpd.h"

size_t dlq_routes(ex_app *app, httpd_route *out, size_t max);

#endif
