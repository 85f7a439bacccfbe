/* deps.h — the backing services a daemon uses: their configuration variables and the
 * dedicated health-check connections, declared once for all four daemons. */
#ifndef ML_DEPS_H
#define ML_DEPS_H

#include "config.h"
#include "httpc.h"
#include "mq.h"
#include "pg.h"
#include "redis.h"
#include "s3.h"
#include "service.h"

enum {
    DEPS_BUILD_DB = 1 << 0,
    DEPS_LAMBDA_DB = 1 << 1,
    DEPS_REDIS = 1 << 2,
    DEPS_AMQP = 1 << 3,
    DEPS_S3 = 1 << 4,
};

/* Configuration read from MINILAMBDA_* (strings point into the environment). */
typedef struct deps_config {
    const char *build_db_url, *lambda_db_url, *redis_url, *amqp_url;
    s3_config s3;
    int64_t db_statement_timeout_ms;
} deps_config;

/* The health set's own connections; a zeroed deps is empty. */
typedef struct deps {
    unsigned need;
    pg_conn *db;
    rds_conn *redis;
    mq_conn *mq;
    s3_client *s3;
} deps;

/* Appends the variables for the dependencies in need to vars (capacity max); returns how many. */
size_t deps_cfg_vars(deps_config *c, unsigned need, cfg_var *vars, size_t max);

/* Opens check connections for need and registers their health checks on s (redis_optional:
 * Redis down only degrades). topo: the AMQP topology to declare, or NULL. Free with deps_close. */
int deps_open(deps *d, const deps_config *c, unsigned need, const mq_topology *topo,
              bool redis_optional, svc *s);
void deps_close(deps *d);

/* The calling thread's own clients for need, created on first use and closed when the thread
 * exits (one connection per thread, as libpq, hiredis and rabbitmq-c require). The same need,
 * topo and name must be passed on every call from a process. NULL on failure (logged). */
deps *deps_thread(const deps_config *c, unsigned need, const mq_topology *topo, const char *name);

/* pg/rds/mq/s3 options used by every service, so timeouts are uniform. */
pg_conn *deps_pg_new(const deps_config *c, const char *url, const char *app);
rds_conn *deps_redis_new(const deps_config *c, char *err, size_t errlen);
mq_conn *deps_mq_new(const deps_config *c, const mq_topology *topo, const char *name, char *err,
                     size_t errlen);

#endif
