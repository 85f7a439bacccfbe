/* schedules.h — cron schedules of functions: the REST endpoints and the scheduler thread.
 *
 * POST/GET /functions/{fn}/schedules and DELETE /functions/{fn}/schedules/{id} keep rows in
 * lambda_service_db's `schedules`. The scheduler thread (one per executor) claims due rows
 * with FOR UPDATE SKIP LOCKED, turns each into an async invocation (trigger "cron") and
 * advances next_fire_at in the same transaction, so each fire happens once however many
 * executors run; a fire missed while every executor was down runs once on recovery.
 * See docs/schedules.md. */
#ifndef LE_SCHEDULES_H
#define LE_SCHEDULES_H

#include <stddef.h>

#include "app.h"
#include "httpd.h"
#include "metrics.h"

/* Most schedules one function may have (keeps GET .../schedules bounded). */
#define SCHEDULES_MAX_PER_FUNCTION 100
/* Largest payload, as Postgres renders it (the table's limit; also async's event limit). */
#define SCHEDULES_MAX_PAYLOAD FNSPEC_MAX_EVENT_BODY

/* Registers minilambda_schedule_fires_total{result="fired|skipped|failed"} on reg. Call
 * once, before schedules_main starts. ML_OK, or ML_ERR when the metric cannot be created. */
int schedules_init(metrics_registry *reg);

/* Writes the three schedule routes (all blocking; each uses the calling worker thread's
 * connection, app_thread_deps(app)->db) to out; returns how many (at most max; 3 are needed). */
size_t schedules_routes(ex_app *app, httpd_route *out, size_t max);

/* The scheduler thread's body (arg: the ex_app). Claims due schedules about once a second
 * (sooner when a fire is due earlier) until svc_stopping(), using this thread's own clients
 * (app_thread_deps): its Postgres connection for the claim and its AMQP connection for
 * async_enqueue. Returns NULL. Start one per executor with pthread_create after the
 * registry and audit log exist; join it before freeing them. */
void *schedules_main(void *arg);

#endif
