/* deps.c — dependency configuration and health-check connections. */
#include "deps.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "checks.h"
#include "log.h"
#include "pgpool.h"

size_t deps_cfg_vars(deps_config *c, unsigned need, cfg_var *vars, size_t max)
{
    const cfg_var all[] = {
        { "MINILAMBDA_BUILD_DB_URL", CFG_URL, NULL, 0, 0, "postgres|postgresql", "Postgres URL of build_service_db", &c->build_db_url, true },
        { "MINILAMBDA_LAMBDA_DB_URL", CFG_URL, NULL, 0, 0, "postgres|postgresql", "Postgres URL of lambda_service_db", &c->lambda_db_url, true },
        { "MINILAMBDA_DB_STATEMENT_TIMEOUT_MS", CFG_INT, "10000", 0, 3600000, NULL, "Postgres statement_timeout per connection (0: none)", &c->db_statement_timeout_ms, false },
        { "MINILAMBDA_REDIS_URL", CFG_URL, NULL, 0, 0, "redis", "Redis URL, redis://[:password@]host:port/db", &c->redis_url, true },
        { "MINILAMBDA_AMQP_URL", CFG_URL, NULL, 0, 0, "amqp", "RabbitMQ URL, amqp://user:pass@host:port/vhost", &c->amqp_url, true },
        { "MINILAMBDA_S3_ENDPOINT", CFG_URL, NULL, 0, 0, "http|https", "S3 endpoint (path-style), e.g. http://127.0.0.1:9000", &c->s3.endpoint, false },
        { "MINILAMBDA_S3_REGION", CFG_STR, "us-east-1", 0, 0, NULL, "S3 region used in SigV4 signatures", &c->s3.region, false },
        { "MINILAMBDA_S3_BUCKET", CFG_STR, "minilambda", 0, 0, NULL, "S3 bucket for packages and artifacts", &c->s3.bucket, false },
        { "MINILAMBDA_S3_ACCESS_KEY", CFG_STR, NULL, 0, 0, NULL, "S3 access key id", &c->s3.access_key, false },
        { "MINILAMBDA_S3_SECRET_KEY", CFG_STR, NULL, 0, 0, NULL, "S3 secret access key", &c->s3.secret_key, true },
    };
    /* which dependency each row belongs to (the statement timeout goes with either DB) */
    const unsigned owner[] = { DEPS_BUILD_DB, DEPS_LAMBDA_DB, DEPS_BUILD_DB | DEPS_LAMBDA_DB,
                               DEPS_REDIS,    DEPS_AMQP,      DEPS_S3, DEPS_S3, DEPS_S3,
                               DEPS_S3,       DEPS_S3 };
    size_t n = 0;

    for (size_t i = 0; i < ML_ARRAY_LEN(all) && n < max; i++) {
        if (owner[i] & need)
            vars[n++] = all[i];
    }
    return n;
}

pg_conn *deps_pg_new(const deps_config *c, const char *url, const char *app)
{
    pg_options o = { 0 };

    o.connect_timeout_s = 3;
    o.statement_timeout_ms = (int)c->db_statement_timeout_ms;
    o.application_name = app;
    return pg_new(url, &o);
}

rds_conn *deps_redis_new(const deps_config *c, char *err, size_t errlen)
{
    rds_options o = { .connect_timeout_ms = 1000, .command_timeout_ms = 1000 };

    return rds_new(c->redis_url, &o, err, errlen);
}

mq_conn *deps_mq_new(const deps_config *c, const mq_topology *topo, const char *name, char *err,
                     size_t errlen)
{
    mq_options o = { .connect_timeout_ms = 3000, .op_timeout_ms = 5000, .connection_name = name };

    return mq_new(c->amqp_url, &o, topo, err, errlen);
}

/* Creates the clients for need (no I/O: each connects on first use). */
static int deps_create(deps *d, const deps_config *c, unsigned need, const mq_topology *topo,
                       const char *name, char *err, size_t errlen)
{
    d->need = need;
    if (need & (DEPS_BUILD_DB | DEPS_LAMBDA_DB)) {
        d->db = deps_pg_new(c, (need & DEPS_BUILD_DB) ? c->build_db_url : c->lambda_db_url, name);
        if (!d->db)
            return ML_ERR;
    }
    if ((need & DEPS_REDIS) && !(d->redis = deps_redis_new(c, err, errlen)))
        return ML_ERR;
    if ((need & DEPS_AMQP) && !(d->mq = deps_mq_new(c, topo, name, err, errlen)))
        return ML_ERR;
    if ((need & DEPS_S3) && !(d->s3 = s3_new(&c->s3, err, errlen)))
        return ML_ERR;
    return ML_OK;
}

/* The health checks' clients for need (no I/O), each held to the check budget so a frozen
 * dependency costs a check HEALTH_CHECK_BUDGET_MS, never the caller's whole timeout. */
static int deps_create_checks(deps *d, const deps_config *c, unsigned need, const char *name,
                              char *err, size_t errlen)
{
    const int budget = HEALTH_CHECK_BUDGET_MS;
    rds_options ro = { .connect_timeout_ms = budget, .command_timeout_ms = budget };
    mq_options mo = { .connect_timeout_ms = budget, .op_timeout_ms = budget, .connection_name = name };
    s3_config s3 = c->s3;

    s3.connect_timeout_ms = budget;
    s3.timeout_ms = budget;
    s3.max_retries = -1; /* the next round is the retry */
    d->need = need;
    if ((need & (DEPS_BUILD_DB | DEPS_LAMBDA_DB)) &&
        !(d->pg_check = check_pg_target_new((need & DEPS_BUILD_DB) ? c->build_db_url : c->lambda_db_url,
                                            name, budget)))
        return ML_ERR;
    if ((need & DEPS_REDIS) && !(d->redis = rds_new(c->redis_url, &ro, err, errlen)))
        return ML_ERR;
    if ((need & DEPS_AMQP) && !(d->mq = mq_new(c->amqp_url, &mo, NULL, err, errlen)))
        return ML_ERR;
    if ((need & DEPS_S3) && !(d->s3 = s3_new(&s3, err, errlen)))
        return ML_ERR;
    return ML_OK;
}

int deps_open(deps *d, const deps_config *c, unsigned need, const mq_topology *topo,
              bool redis_optional, svc *s)
{
    char err[256] = "";

    ML_UNUSED(topo);
    if (deps_create_checks(d, c, need, s->name, err, sizeof(err)) != ML_OK ||
        (d->pg_check && health_add(&s->health, "postgres", check_pg_bounded, d->pg_check, true) != ML_OK) ||
        (d->redis && health_add(&s->health, "redis", check_redis, d->redis, !redis_optional) != ML_OK) ||
        (d->mq && health_add(&s->health, "rabbitmq", check_mq, d->mq, true) != ML_OK) ||
        (d->s3 && health_add(&s->health, "s3", check_s3, d->s3, true) != ML_OK)) {
        ml_log_error("cannot set up dependency clients: %s", err[0] ? err : "out of memory");
        deps_close(d);
        return ML_ERR;
    }
    return ML_OK;
}

size_t deps_pool_cfg_vars(deps_config *c, cfg_var *vars, size_t max)
{
    const cfg_var all[] = {
        { "MINILAMBDA_DB_POOL_SIZE", CFG_INT, "16", 0, 4096, NULL, "Postgres connections the daemon's worker threads share at most (0: one per thread)", &c->db_pool_size, false },
        { "MINILAMBDA_DB_POOL_TIMEOUT_MS", CFG_INT, "5000", 0, 600000, NULL, "how long a request waits for a free pooled Postgres connection before 503", &c->db_pool_timeout_ms, false },
    };
    size_t n = 0;

    for (size_t i = 0; i < ML_ARRAY_LEN(all) && n < max; i++)
        vars[n++] = all[i];
    return n;
}

int deps_pool_start(pgpool *pool, const deps_config *c, unsigned need, svc *s)
{
    pgpool_options o = { 0 };
    bool build = (need & DEPS_BUILD_DB) != 0;

    if (c->db_pool_size <= 0 || !(need & (DEPS_BUILD_DB | DEPS_LAMBDA_DB)))
        return ML_OK;
    o.size = (int)c->db_pool_size;
    o.pg.connect_timeout_s = 3;
    o.pg.statement_timeout_ms = (int)c->db_statement_timeout_ms;
    o.pg.application_name = s->name;
    o.metrics = s->metrics;
    o.name = build ? "build_db" : "lambda_db";
    if (pgpool_start(pool, build ? c->build_db_url : c->lambda_db_url, &o) != ML_OK) {
        ml_log_error("cannot start the Postgres pool");
        return ML_ERR;
    }
    ml_log_kv(ML_LOG_INFO, "postgres pool started", "pool", o.name, NULL);
    return ML_OK;
}

/* Warns at most once a second: an exhausted pool fails many borrows at once, and
 * minilambda_pgpool_acquire_timeouts_total has the exact count. */
static void warn_no_conn(pgpool_status st)
{
    static _Atomic int64_t last_ms;
    int64_t now = ml_now_ms(), prev = atomic_load(&last_ms);

    if (now - prev < 1000 || !atomic_compare_exchange_strong(&last_ms, &prev, now))
        return;
    ml_log_kv(ML_LOG_WARN, "no pooled postgres connection", "status", pgpool_status_str(st), NULL);
}

pgpool_status deps_db_acquire(deps *d)
{
    pgpool_status st;

    if (!d->pool)
        return PGPOOL_OK;
    if (d->db_depth > 0) {
        d->db_depth++;
        return PGPOOL_OK;
    }
    st = pgpool_acquire(d->pool, d->pool_timeout_ms, &d->db);
    if (st == PGPOOL_OK)
        d->db_depth = 1;
    else
        warn_no_conn(st);
    return st;
}

void deps_db_release(deps *d)
{
    if (!d->pool || d->db_depth <= 0 || --d->db_depth > 0)
        return;
    pgpool_release(d->pool, d->db);
    d->db = NULL;
}

int deps_db_acquire_http(deps *d, httpd_resp *resp, const char *what)
{
    pgpool_status st = d ? deps_db_acquire(d) : PGPOOL_CONNECT_FAILED;

    if (st == PGPOOL_OK && d->db)
        return ML_OK;
    if (st == PGPOOL_OK) /* unpooled, and the thread's own connection could not be opened */
        deps_db_release(d);
    httpd_resp_header(resp, "Retry-After", "5");
    if (st == PGPOOL_TIMEOUT) {
        health_mark_overloaded(resp); /* every pooled connection busy: this instance is full */
        httpd_resp_error(resp, 503, "service_unavailable", "%s: no free connection (%s)", what,
                         pgpool_status_str(st));
        return ML_ERR;
    }
    httpd_resp_error(resp, 503, "service_unavailable", "cannot reach the %s", what);
    return ML_ERR;
}

static pthread_key_t thread_key;
static pthread_once_t thread_key_once = PTHREAD_ONCE_INIT;

static void thread_deps_free(void *p)
{
    deps_close(p);
    free(p);
}

static void thread_key_init(void)
{
    pthread_key_create(&thread_key, thread_deps_free);
}

deps *deps_thread(const deps_config *c, unsigned need, const mq_topology *topo, const char *name)
{
    return deps_thread_pooled(c, need, topo, name, NULL);
}

deps *deps_thread_pooled(const deps_config *c, unsigned need, const mq_topology *topo,
                         const char *name, pgpool *pool)
{
    const unsigned db = DEPS_BUILD_DB | DEPS_LAMBDA_DB;
    bool pooled = pool && pool->started && (need & db);
    deps *d;
    char err[256] = "";

    pthread_once(&thread_key_once, thread_key_init);
    d = pthread_getspecific(thread_key);
    if (d)
        return d;
    d = calloc(1, sizeof(*d));
    if (d && pooled) {
        d->pool = pool;
        d->pool_timeout_ms = (int)c->db_pool_timeout_ms;
    }
    if (!d || deps_create(d, c, pooled ? need & ~db : need, topo, name, err, sizeof(err)) != ML_OK) {
        ml_log_error("cannot set up per-thread clients: %s", err[0] ? err : "out of memory");
        if (d)
            thread_deps_free(d);
        return NULL;
    }
    pthread_setspecific(thread_key, d);
    return d;
}

void deps_close(deps *d)
{
    if (d->pool) { /* lent, not ours: give it back if a thread exits holding it */
        d->db_depth = 1;
        deps_db_release(d);
        d->pool = NULL;
    }
    pg_close(d->db);
    check_pg_target_free(d->pg_check);
    rds_free(d->redis);
    mq_close(d->mq);
    s3_free(d->s3);
    d->db = NULL;
    d->pg_check = NULL;
    d->redis = NULL;
    d->mq = NULL;
    d->s3 = NULL;
}
