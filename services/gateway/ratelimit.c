/* ratelimit.c — Redis GCRA with an in-memory fallback (see ratelimit.h). */
#include "ratelimit.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void conn_destroy(void *c)
{
    rds_free(c);
}

int gw_limiter_init(gw_limiter *l, const char *redis_url, int redis_timeout_ms,
                    metrics_registry *reg)
{
    memset(l, 0, sizeof(*l));
    l->redis_url = redis_url && *redis_url ? redis_url : NULL;
    l->redis_timeout_ms = redis_timeout_ms > 0 ? redis_timeout_ms : 100;
    rds_script_init(&l->script, gcra_lua);
    gcra_mem_init(&l->mem, 0);
    if (pthread_key_create(&l->conn_key, conn_destroy) != 0) {
        gcra_mem_free(&l->mem);
        return ML_ERR;
    }
    l->key_created = true;
    atomic_init(&l->fallback, l->redis_url == NULL);
    if (reg) {
        l->m_fallback = metrics_gauge(reg, "minilambda_gateway_ratelimit_fallback",
                                      "1 while rate limits are decided per instance in memory "
                                      "because Redis is unreachable.", NULL);
        l->m_redis_errors = metrics_counter(reg, "minilambda_gateway_ratelimit_redis_errors_total",
                                            "Rate-limit decisions Redis could not make.", NULL);
        metric_set(l->m_fallback, NULL, l->redis_url ? 0 : 1);
    }
    return ML_OK;
}

void gw_limiter_free(gw_limiter *l)
{
    rds_conn *c;

    if (!l->key_created)
        return;
    /* the calling thread's connection; other threads' are freed as they exit */
    c = pthread_getspecific(l->conn_key);
    rds_free(c);
    pthread_setspecific(l->conn_key, NULL);
    pthread_key_delete(l->conn_key);
    gcra_mem_free(&l->mem);
    l->key_created = false;
}

bool gw_limiter_in_fallback(gw_limiter *l)
{
    return atomic_load(&l->fallback);
}

/* The calling thread's Redis handle, created on first use (no I/O until a command). */
static rds_conn *thread_conn(gw_limiter *l)
{
    rds_conn *c = pthread_getspecific(l->conn_key);
    rds_options o = { .connect_timeout_ms = l->redis_timeout_ms,
                      .command_timeout_ms = l->redis_timeout_ms };
    char err[256];

    if (c)
        return c;
    c = rds_new(l->redis_url, &o, err, sizeof(err));
    if (!c) {
        ml_log_warn("rate limiter: cannot create a Redis client: %s", err);
        return NULL;
    }
    pthread_setspecific(l->conn_key, c);
    return c;
}

/* ML_OK with *out filled from Redis; ML_ERR (reason in err) when Redis could not decide. */
static int take_redis(gw_limiter *l, const char *key, gcra_limit lim, gcra_result *out,
                      char *err, size_t errlen)
{
    rds_conn *c = thread_conn(l);
    char iv[24], burst[24];
    const char *args[] = { iv, burst };
    redisReply *r;
    int rc = ML_ERR;

    if (!c) {
        ml_snprintf(err, errlen, "no Redis client");
        return ML_ERR;
    }
    snprintf(iv, sizeof(iv), "%" PRId64, lim.interval_us);
    snprintf(burst, sizeof(burst), "%" PRId64, lim.burst);
    r = rds_evalsha(c, &l->script, 1, &key, 2, args);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
        out->allowed = r->element[0]->integer == 1;
        out->limit = lim.burst;
        out->remaining = r->element[1]->integer;
        out->retry_after_us = r->element[2]->integer;
        out->reset_after_us = r->element[3]->integer;
        rc = ML_OK;
    } else {
        ml_snprintf(err, errlen, "%s", r ? "unexpected script reply" : rds_error(c));
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

/* Logs and exports a switch between Redis and memory, once per transition. Each thread's
 * connection backs off on its own, so right after Redis returns some threads still fail for
 * a while: a failure within GW_LIMITER_GRACE_MS of any success does not switch back. */
static void set_fallback(gw_limiter *l, bool on, const char *why)
{
    int64_t now = ml_now_ms();

    if (!on)
        atomic_store(&l->last_ok_ms, now);
    else if (now - atomic_load(&l->last_ok_ms) < GW_LIMITER_GRACE_MS)
        return;
    if (atomic_exchange(&l->fallback, on) == on)
        return;
    metric_set(l->m_fallback, NULL, on ? 1 : 0);
    if (on)
        ml_log_kv(ML_LOG_WARN, "rate limiter: Redis unavailable, limiting per instance in memory",
                  "error", why, NULL);
    else
        ml_log_info("rate limiter: Redis is back, limits are shared again");
}

void gw_limiter_take(gw_limiter *l, const char *key, gcra_limit lim, gcra_result *out)
{
    char err[256] = "";

    if (l->redis_url) {
        if (take_redis(l, key, lim, out, err, sizeof(err)) == ML_OK) {
            set_fallback(l, false, NULL);
            return;
        }
        metric_inc(l->m_redis_errors, NULL);
        set_fallback(l, true, err);
    }
    gcra_mem_take(&l->mem, key, now_us(), lim, out);
}
