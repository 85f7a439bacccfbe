/* deps.h — the backing services a daemon uses: their configuration variables and the
 * dedicated health-check connections, declared once for all four daemons.
 *
 * Postgres through a pool (optional): instead of one connection per thread, a service may
 * start one pgpool for the process (deps_pool_start, sized by MINILAMBDA_DB_POOL_SIZE, see
 * deps_pool_cfg_vars) and get its per-thread clients with deps_thread_pooled. Such a
 * thread's d->db is then NULL except between deps_db_acquire(d) and deps_db_release(d),
 * which bracket each group of queries (a transaction, or the reads of one request). The
 * same code works unpooled: there acquire/release do nothing and d->db is the thread's own. */
#ifndef ML_DEPS_H
#define ML_DEPS_H

#include "config.h"
#include "httpc.h"
#include "mq.h"
#include "pg.h"
#include "pgpool-t.h"
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
    int64_t db_pool_size;       /* deps_pool_cfg_vars; 0: no pool (one connection a thread) */
    int64_t db_pool_timeout_ms; /* how long deps_db_acquire waits for a free connection */
} deps_config;

/* The health set's own connections, or a thread's; a zeroed deps is empty. */
typedef struct deps {
    unsigned need;
    pg_conn *db;          /* owned, or (pool set) lent by the pool while db_depth > 0 */
    struct check_pg_target *pg_check; /* deps_open's bounded Postgres check, owned */
    rds_conn *redis;
    mq_conn *mq;
    s3_client *s3;
    pgpool *pool;         /* not owned; NULL: db is the thread's own connection */
    int pool_timeout_ms;
    int db_depth;         /* nesting of deps_db_acquire calls */
} deps;

/* Appends the variables for the dependencies in need to vars (capacity max); returns how many. */
size_t deps_cfg_vars(deps_config *c, unsigned need, cfg_var *vars, size_t max);

/* Creates check clients for need, every one bounded by HEALTH_CHECK_BUDGET_MS (connect and
 * command), and registers their health checks on s as "postgres", "redis", "rabbitmq", "s3"
 * (required, except Redis when redis_optional; capabilities name them). topo is not
 * declared by the check connection (the service's own connections declare it); it is kept
 * for the callers. No I/O: the checks connect. Free with deps_close. */
int deps_open(deps *d, const deps_config *c, unsigned need, const mq_topology *topo,
              bool redis_optional, svc *s);
void deps_close(deps *d);

/* The calling thread's own clients for need, created on first use and closed when the thread
 * exits (one connection per thread, as libpq, hiredis and rabbitmq-c require). The same need,
 * topo and name must be passed on every call from a process. NULL on failure (logged). */
deps *deps_thread(const deps_config *c, unsigned need, const mq_topology *topo, const char *name);

/* Pooled Postgres (see the top of this file). */

/* Appends MINILAMBDA_DB_POOL_SIZE (default 16; 0 turns the pool off) and
 * MINILAMBDA_DB_POOL_TIMEOUT_MS (default 5000) to vars (capacity max); returns how many.
 * Only services that call deps_pool_start read them. */
size_t deps_pool_cfg_vars(deps_config *c, cfg_var *vars, size_t max);

/* Starts pool (zeroed) on the database of need (build or lambda DB) with the connection
 * options of deps_pg_new, c->db_pool_size connections, metrics on s->metrics (pool label
 * "build_db"/"lambda_db"). With c->db_pool_size 0 it leaves pool zeroed and returns ML_OK:
 * deps_thread_pooled then gives every thread its own connection. The caller owns the pool
 * and closes it with pgpool_close after the threads that use it have stopped. */
int deps_pool_start(pgpool *pool, const deps_config *c, unsigned need, svc *s);

/* deps_thread whose database access goes through pool (when started): the thread opens no
 * connection of its own, d->db is lent by deps_db_acquire. pool NULL or zeroed: same as
 * deps_thread. Pass the same pool on every call from a process. */
deps *deps_thread_pooled(const deps_config *c, unsigned need, const mq_topology *topo,
                         const char *name, pgpool *pool);

/* Borrows a connection into d->db for one group of queries; nested calls just count.
 * PGPOOL_OK, or the pool's failure (PGPOOL_TIMEOUT: every connection busy for
 * db_pool_timeout_ms; callers answer 503 with Retry-After). Unpooled: PGPOOL_OK, no-op.
 * Do not hold it across slow work that needs no database (S3, HTTP, AMQP waits). */
pgpool_status deps_db_acquire(deps *d);
/* Gives d->db back (at the outermost level) and sets it NULL. Unpooled: no-op. Must follow
 * every successful deps_db_acquire, on every path. */
void deps_db_release(deps *d);
/* deps_db_acquire for a request handler: ML_OK with d->db usable (pair with
 * deps_db_release), or ML_ERR with 503 + Retry-After written to resp naming what ("build
 * database"). d may be NULL (the thread has no clients): ML_ERR, 503. */
int deps_db_acquire_http(deps *d, httpd_resp *resp, const char *what);

/* pg/rds/mq/s3 options used by every service, so timeouts are uniform. */
pg_conn *deps_pg_new(const deps_config *c, const char *url, const char *app);
rds_conn *deps_redis_new(const deps_config *c, char *err, size_t errlen);
mq_conn *deps_mq_new(const deps_config *c, const mq_topology *topo, const char *name, char *err,
                     size_t errlen);

#endif
