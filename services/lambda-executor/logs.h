/* logs.h — function logs as the executor serves them (docs/logs.md §1): the writer (logq.h),
 * retention (logs_maint.c) and GET /functions/{fn}/logs (logs_http.c). */
#ifndef EX_LOGS_H
#define EX_LOGS_H

#include "config.h"
#include "httpd.h"
#include "logq.h"
#include "metrics.h"

typedef struct logs_config {
    logq_config q;
    int64_t retention_days;       /* MINILAMBDA_LOG_RETENTION_DAYS: namespaces without their own */
    int64_t maint_interval_ms;    /* MINILAMBDA_LOG_MAINTENANCE_INTERVAL_MS */
    int64_t max_followers;        /* MINILAMBDA_LOG_MAX_FOLLOWERS */
} logs_config;

/* Appends the function-log configuration variables (the writer's too); returns how many. */
size_t logs_cfg_vars(logs_config *c, cfg_var *vars, size_t max);

/* Starts the retention thread (its own connection to c->q.db_url); ML_ERR logged. */
int logs_maint_start(const logs_config *c, metrics_registry *reg);
/* Stops and joins it; no-op when not started. */
void logs_maint_stop(void);

/* Starts the follow thread (?follow=1; its own connection to c->q.db_url); ML_ERR logged. */
int logs_follow_start(const logs_config *c);
/* Ends every follower's stream, stops and joins the thread; no-op when not started. */
void logs_follow_stop(void);

#endif
