/* registry.c — the registry's life cycle and the cached lookup behind every invocation:
 * process cache, then Redis, then Postgres (see registry.h, registry-int.h for the rooms,
 * and docs/executor-registry.md). */
#include "registry-int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "secretbox.h"
#include "webhook.h"

/* How long a lookup that could not reach Postgres keeps the others from trying: meanwhile a
 * function this process has seen is served from its stale cache entry at once, instead of
 * every invocation paying the connection back-off (~300 ms) during an outage. */
#define DB_BREAKER_MS 1000

static void count_lookup(registry *r, const char *source)
{
    const char *labels[] = { source };

    metric_inc(r->m_lookups, labels);
}

/* An id names one function in every namespace: a caller of another namespace must not
 * see it (docs/tenants.md: 404, as for a missing one). */
static bool ns_mismatch(const char *ns, const fn_info *f)
{
    return ns && strcmp(ns, f->ns) != 0;
}

registry_rc registry_get_cached(registry *r, const char *ns, const char *fn, fn_info *out)
{
    char key[FN_KEY_MAX];
    bool by_id, found = false;

    if (reg_fn_key(ns, fn, key, &by_id) != ML_OK)
        return REGISTRY_NOT_FOUND;
    if (reg_cache_lookup(r, key, out, &found) != PROBE_FRESH)
        return REGISTRY_MISS;
    count_lookup(r, "local");
    return found && !ns_mismatch(ns, out) ? ML_OK : REGISTRY_NOT_FOUND;
}

/* Postgres, then fill Redis and the process cache. overwrite: Redis holds a tombstone for
 * this name, which a function found now must replace. */
/* true: a lookup may ask Postgres. Open: no, until the period ends; then exactly one caller
 * (the one that moves the deadline on) probes while the others keep the breaker's answer. */
static bool db_breaker_allows(registry *r)
{
    int_fast64_t until = atomic_load(&r->db_open_until_ms), now = ml_now_ms();

    if (until == 0)
        return true;
    if (now < until)
        return false;
    return atomic_compare_exchange_strong(&r->db_open_until_ms, &until, now + DB_BREAKER_MS);
}

/* Records how a Postgres lookup went: unreachable opens the breaker, an answer closes it. */
static void db_breaker_record(registry *r, bool reached)
{
    int_fast64_t was = atomic_exchange(&r->db_open_until_ms, reached ? 0 : ml_now_ms() + DB_BREAKER_MS);

    if (reached && was != 0)
        ml_log_info("function database reachable again: registry lookups use it");
    else if (!reached && was == 0)
        ml_log_warn("function database unreachable: registry lookups serve cached metadata for %d ms",
                    DB_BREAKER_MS);
}

static int lookup_db(registry *r, const char *key, bool by_id, bool overwrite, fn_info *out,
                     uint64_t epoch, char *err, size_t errlen)
{
    pg_conn *db = db_breaker_allows(r) ? reg_need_db(r, NULL) : NULL;
    char *json = NULL;
    int rc = ML_ERR;

    if (!db) {
        ml_snprintf_trunc(err, errlen, "cannot reach the function database (or no free connection)");
        if (atomic_load(&r->db_open_until_ms) == 0)
            db_breaker_record(r, false);
    } else {
        rc = reg_db_fetch_json(db, key, by_id, &json, err, errlen);
        db_breaker_record(r, rc != ML_ERR || !pg_error_is_connection(db));
        reg_put_db(r); /* before the Redis write-through */
    }
    if (rc == REGISTRY_NOT_FOUND) {
        reg_mark_absent(r, key, by_id); /* never a local absence: other executors create functions */
    } else if (rc == ML_OK) {
        if (reg_fn_parse(json, strlen(json), out) != ML_OK) {
            ml_snprintf_trunc(err, errlen, "malformed function row for '%s'", key);
            rc = ML_ERR;
        } else {
            char nk[FN_KEY_MAX];
            reg_redis_store(r, out->id, reg_name_key(out->ns, out->name, nk) == ML_OK ? nk : NULL, json,
                            !overwrite);
            reg_cache_store(r, key, out, epoch);
        }
    }
    free(json);
    return rc;
}

/* The cached lookup by key; by id it may find another namespace's function (registry_get
 * checks). */
static registry_rc get_any(registry *r, const char *ns, const char *fn, fn_info *out, char *err,
                           size_t errlen)
{
    char key[FN_KEY_MAX], ebuf[256];
    bool by_id, found = false;
    cache_probe p;
    uint64_t epoch;
    int rc;

    if (!err) {
        err = ebuf;
        errlen = sizeof(ebuf);
    }
    if (reg_fn_key(ns, fn, key, &by_id) != ML_OK) {
        count_lookup(r, "not_found");
        return REGISTRY_NOT_FOUND;
    }
    p = reg_cache_lookup(r, key, out, &found);
    if (p == PROBE_FRESH) {
        count_lookup(r, "local");
        return found ? ML_OK : REGISTRY_NOT_FOUND;
    }
    epoch = atomic_load(&r->epoch);
    rc = reg_redis_fetch(r, key, by_id, out);
    /* a name's tombstone may predate a new function of that name: ask Postgres */
    if (rc == ML_OK || rc == REGISTRY_ABSENT || (rc == REGISTRY_NOT_FOUND && by_id)) {
        if (rc == ML_OK)
            reg_cache_store(r, key, out, epoch);
        count_lookup(r, "redis");
        return rc == ML_OK ? ML_OK : REGISTRY_NOT_FOUND;
    }
    rc = lookup_db(r, key, by_id, rc == REGISTRY_NOT_FOUND, out, epoch, err, errlen);
    if (rc == ML_ERR && p == PROBE_STALE && found) {
        /* Postgres is down: a function this process has seen keeps serving */
        p = reg_cache_lookup(r, key, out, &found);
        if (p != PROBE_NONE && found) {
            count_lookup(r, "stale");
            return ML_OK;
        }
    }
    count_lookup(r, rc == ML_OK ? "postgres" : rc == REGISTRY_NOT_FOUND ? "not_found" : "error");
    return rc;
}

registry_rc registry_get(registry *r, const char *ns, const char *fn, fn_info *out, char *err,
                         size_t errlen)
{
    registry_rc rc = get_any(r, ns, fn, out, err, errlen);

    /* by name the key already holds ns; by id the entry is global and checked here */
    return rc == ML_OK && ns_mismatch(ns, out) ? REGISTRY_NOT_FOUND : rc;
}

size_t registry_cfg_vars(registry_config *c, cfg_var *vars, size_t max)
{
    const cfg_var all[] = {
        { "MINILAMBDA_INTERNAL_WEBHOOK_SECRET", CFG_STR, NULL, 0, 0, NULL,
          "whsec_ secret signing build-status webhooks to the lambda-executor (both sides)",
          &c->webhook_secret, true },
        { "MINILAMBDA_SECRETS_KEY", CFG_STR, "", 0, 0, NULL,
          SECRETBOX_KEY_HELP,
          &c->secrets_key, true },
        { "MINILAMBDA_REGISTRY_LOCAL_TTL_MS", CFG_INT, "2000", 0, 600000, NULL,
          "how long a process caches a function's metadata (bounds staleness across executors)",
          &c->local_ttl_ms, false },
        { "MINILAMBDA_REGISTRY_REDIS_TTL_S", CFG_INT, "60", 1, 86400, NULL,
          "lifetime of a function's metadata in the Redis cache", &c->redis_ttl_s, false },
        { "MINILAMBDA_REGISTRY_CACHE_MAX", CFG_INT, "4096", 16, 1000000, NULL,
          "functions (ids and names) held in the process cache", &c->cache_max, false },
    };
    return cfg_copy(vars, max, all, ML_ARRAY_LEN(all));
}

registry *registry_new(const registry_config *cfg, svc *s, char *err, size_t errlen)
{
    registry *r;

    if (!cfg->webhook_secret || webhook_secret_valid(cfg->webhook_secret) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "MINILAMBDA_INTERNAL_WEBHOOK_SECRET must be whsec_ + base64 of 24..64 bytes");
        return NULL;
    }
    if (secretbox_global_init(err, errlen) != ML_OK) /* env values are sealed at rest */
        return NULL;
    if (!cfg->thread_deps || cfg->cache_max < 1) {
        ml_snprintf_trunc(err, errlen, "registry: thread_deps and cache_max are required");
        return NULL;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        ml_snprintf_trunc(err, errlen, "out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    reg_cache_init(r);
    if (!(r->waits = fnwait_new(&(fnwait_config){ .fetch = reg_wait_fetch, .fetch_ud = r,
                                                  .should_stop = svc_stopping },
                                err, errlen))) {
        registry_free(r);
        return NULL;
    }
    r->m_lookups = metrics_counter(s->metrics, "minilambda_registry_lookups_total",
                                   "Function lookups by where the answer came from "
                                   "(local, redis, postgres, stale, not_found, error).",
                                   "source");
    r->m_webhooks = metrics_counter(s->metrics, "minilambda_build_webhooks_received_total",
                                    "Build-status webhooks received, by build status and result.",
                                    "status,result");
    r->m_redis_errors = metrics_counter(s->metrics, "minilambda_registry_redis_errors_total",
                                        "Redis commands of the registry cache that failed.", NULL);
    return r;
}

void registry_free(registry *r)
{
    if (!r)
        return;
    fnwait_free(r->waits);
    reg_cache_free(r);
    free(r);
}

