/* checks.h — health checks for each kind of dependency, for health_add().
 * Each check owns a dedicated connection (ud) that only the health set uses; the health
 * set's per-check lock keeps it single-threaded, per the one-connection-per-thread rule. */
#ifndef ML_CHECKS_H
#define ML_CHECKS_H

#include <stddef.h>

int check_pg(void *pg_conn, char *err, size_t errlen);     /* ud: pg_conn * */

/* A Postgres check held to budget_ms as a whole (connect and SELECT 1): libpq's own
 * connect_timeout counts whole seconds (2 at least), too coarse for a health budget, so
 * this one drives libpq's non-blocking calls against a deadline. */
typedef struct check_pg_target check_pg_target;
/* Copies url and app (application_name). NULL when out of memory. The caller owns it and
 * frees it with check_pg_target_free. */
check_pg_target *check_pg_target_new(const char *url, const char *app, int budget_ms);
void check_pg_target_free(check_pg_target *t);
int check_pg_bounded(void *target, char *err, size_t errlen); /* ud: check_pg_target * */
int check_redis(void *rds_conn, char *err, size_t errlen); /* ud: rds_conn * */
int check_mq(void *mq_conn, char *err, size_t errlen);     /* ud: mq_conn * */
int check_s3(void *s3_client, char *err, size_t errlen);   /* ud: s3_client * (lists one key) */
/* ud: a check_http_target; GET {url}/health must answer 200. */
typedef struct check_http_target {
    const char *base_url;
    struct httpc *client;
} check_http_target;
int check_http(void *target, char *err, size_t errlen);

#endif
