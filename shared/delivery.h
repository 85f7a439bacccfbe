/* delivery.h — reading webhook deliveries back and redelivering them (docs/logs.md §4), for
 * both outbox tables (outbox.h): the build-master's GET /builds/{id}/deliveries (user
 * webhooks only) and the lambda-executor's GET /invocations/{id}/deliveries (destinations),
 * each with POST …/deliveries/{delivery_id}/redeliver.
 *
 * A redelivery is a new pending row with the original's event (or kind), url and payload, a
 * new id (so a new webhook-id), redelivery_of = the first original's id and next_attempt_at
 * = now: the dispatchers claim it like any row (on the build side it keeps its event's seq,
 * so the per-build ordering rule holds for it too). 409 while the original or an earlier
 * redelivery of it is still pending. Another namespace's build or invocation, or a delivery
 * not of it, is 404. */
#ifndef ML_DELIVERY_H
#define ML_DELIVERY_H

#include "deps.h"
#include "httpd.h"
#include "outbox.h"

/* What a service's routes need: the table pair and its thread's clients. */
typedef struct delivery_api {
    outbox_kind kind;                /* OUTBOX_BUILD_WEBHOOKS or OUTBOX_DESTINATIONS */
    deps *(*thread_deps)(void *ud);  /* this thread's clients (may return NULL) */
    void *ud;
} delivery_api;

/* Handlers (ud: a delivery_api that outlives the server). The route's parameters are {id}
 * (the build or invocation) and, for redeliver, {delivery_id}; the namespace is the
 * request's TENANT_HEADER. Blocking routes. */
httpd_result delivery_h_list(httpd_req *req, httpd_resp *resp, void *ud);
httpd_result delivery_h_redeliver(httpd_req *req, httpd_resp *resp, void *ud);

#endif
