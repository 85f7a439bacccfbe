/* registry_cache.c — the registry's two caches: the process cache (a hash of fn_info by id
 * and by name, short TTL, epoch-guarded fills) and Redis (the thread's client, bounded to
 * REGISTRY_REDIS_TIMEOUT_MS, behind a circuit breaker, with invalidations owed while it is
 * down). */
#include "registry-int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

/* key: an id, or a name key "namespace/name" (two namespaces' `hello` never share an entry).
 * ML_ERR when key does not fit (a cut key would name another entry). */
static int redis_key(char out[KEY_MAX], const char *key, bool by_id)
{
    return ml_snprintf(out, KEY_MAX, "%s%s", by_id ? "ml:fn:" : "ml:fnname:", key);
}

static size_t cache_hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 1099511628211ULL;
    return (size_t)(h & (CACHE_BUCKETS - 1));
}

static cache_entry *cache_find(registry *r, const char *key)
{
    cache_entry *e = r->buckets[cache_hash(key)];

    while (e && strcmp(e->key, key) != 0)
        e = e->next;
    return e;
}

/* Copies a cached entry into *out (when found) and says how fresh it is; *found tells a
 * cached absence. */
cache_probe reg_cache_lookup(registry *r, const char *key, fn_info *out, bool *found)
{
    cache_probe p = PROBE_NONE;
    cache_entry *e;

    pthread_rwlock_rdlock(&r->lock);
    if ((e = cache_find(r, key)) != NULL) {
        p = ml_now_ms() - e->fetched_ms < r->cfg.local_ttl_ms ? PROBE_FRESH : PROBE_STALE;
        *found = e->found;
        if (e->found)
            memcpy(out, &e->info, sizeof(*out));
    }
    pthread_rwlock_unlock(&r->lock);
    return p;
}

static void cache_unlink(registry *r, cache_entry **link)
{
    cache_entry *e = *link;

    *link = e->next;
    free(e);
    r->count--;
}

/* Makes room when the cache is full: drops absences and entries older than a minute; if
 * that frees nothing, the oldest entry. Caller holds the write lock. */
static void cache_evict(registry *r)
{
    int64_t now = ml_now_ms();
    cache_entry **oldest = NULL;
    size_t before = r->count;

    for (size_t b = 0; b < CACHE_BUCKETS; b++) {
        for (cache_entry **l = &r->buckets[b]; *l;) {
            if (!(*l)->found || now - (*l)->fetched_ms > 60000) {
                cache_unlink(r, l);
                continue;
            }
            if (!oldest || (*l)->fetched_ms < (*oldest)->fetched_ms)
                oldest = l;
            l = &(*l)->next;
        }
    }
    if (r->count == before && oldest)
        cache_unlink(r, oldest);
}

/* Stores a fetch result unless an invalidation happened since the fetch began (epoch). */
void reg_cache_store(registry *r, const char *key, const fn_info *info, uint64_t epoch)
{
    cache_entry *e;

    pthread_rwlock_wrlock(&r->lock);
    if (atomic_load(&r->epoch) != epoch)
        goto out;
    if (!(e = cache_find(r, key))) {
        if (r->count >= (size_t)r->cfg.cache_max)
            cache_evict(r);
        if (!(e = calloc(1, sizeof(*e))))
            goto out;
        ml_strlcpy(e->key, key, sizeof(e->key));
        e->next = r->buckets[cache_hash(key)];
        r->buckets[cache_hash(key)] = e;
        r->count++;
    }
    e->fetched_ms = ml_now_ms();
    e->found = info != NULL;
    if (info)
        memcpy(&e->info, info, sizeof(*info));
out:
    pthread_rwlock_unlock(&r->lock);
}

static void cache_drop_key(registry *r, const char *key)
{
    for (cache_entry **l = &r->buckets[cache_hash(key)]; *l; l = &(*l)->next) {
        if (strcmp((*l)->key, key) == 0) {
            cache_unlink(r, l);
            return;
        }
    }
}

/* Drops id's and name_key's entries (either may be NULL or ""). */
static void forget_keys(registry *r, const char *id, const char *name_key)
{
    pthread_rwlock_wrlock(&r->lock);
    atomic_fetch_add(&r->epoch, 1);
    if (id && id[0])
        cache_drop_key(r, id);
    if (name_key && name_key[0])
        cache_drop_key(r, name_key);
    pthread_rwlock_unlock(&r->lock);
}

void registry_forget(registry *r, const char *id, const char *ns, const char *name)
{
    char nk[FN_KEY_MAX];

    forget_keys(r, id, name && reg_name_key(ns, name, nk) == ML_OK ? nk : NULL);
}

/* This thread's Redis client (see registry_config.thread_deps), or NULL. */
static rds_conn *redis_conn(registry *r)
{
    deps *d = r->cfg.thread_deps(r->cfg.thread_deps_ud);

    return d ? d->redis : NULL;
}

/* The connection to use now, or NULL while the breaker says Redis is down. */
static rds_conn *redis_get(registry *r)
{
    bool skip;

    pthread_mutex_lock(&r->redis_lock);
    skip = r->redis_down && ml_now_ms() < r->redis_skip_until_ms;
    pthread_mutex_unlock(&r->redis_lock);
    return skip ? NULL : redis_conn(r);
}

static void redis_failed(registry *r, rds_conn *c)
{
    bool first;

    metric_inc(r->m_redis_errors, NULL);
    pthread_mutex_lock(&r->redis_lock);
    first = !r->redis_down;
    r->redis_backoff_ms = first ? REDIS_SKIP_MIN_MS
                                : (r->redis_backoff_ms * 2 > REDIS_SKIP_MAX_MS ? REDIS_SKIP_MAX_MS
                                                                               : r->redis_backoff_ms * 2);
    r->redis_down = true;
    r->redis_skip_until_ms = ml_now_ms() + r->redis_backoff_ms;
    pthread_mutex_unlock(&r->redis_lock);
    if (first)
        ml_log_warn("registry: Redis unavailable (%s); lookups use the process cache and Postgres "
                    "until it answers again", rds_error(c));
}

void reg_redis_owe(registry *r, const char *id, const char *name_key)
{
    pthread_mutex_lock(&r->redis_lock);
    if (r->ndirty < DIRTY_MAX) {
        ml_strlcpy(r->dirty[r->ndirty].id, id, ML_UUID_LEN);
        ml_strlcpy(r->dirty[r->ndirty].name, name_key ? name_key : "", FN_KEY_MAX);
        r->ndirty++;
        atomic_store(&r->ndirty_hint, 1);
    } else if (!r->dirty_overflow_logged) {
        r->dirty_overflow_logged = true;
        ml_log_warn("registry: too many changes made while Redis was down to invalidate later; "
                    "their Redis entries expire within %lld s", (long long)r->cfg.redis_ttl_s);
    }
    pthread_mutex_unlock(&r->redis_lock);
}

static int redis_del2(rds_conn *c, const char *id, const char *name)
{
    char k1[KEY_MAX], k2[KEY_MAX];
    const char *argv[] = { "DEL", k1, k2 };
    redisReply *rep;

    if (redis_key(k1, id, true) != ML_OK || redis_key(k2, name, false) != ML_OK)
        return ML_OK; /* no such key can have been written */
    rep = rds_command(c, name[0] ? 3 : 2, argv, NULL);
    if (!rep)
        return ML_ERR;
    freeReplyObject(rep);
    return ML_OK;
}

/* Redis answered: mark it up (logging the recovery once) and settle owed invalidations. */
static void redis_ok(registry *r, rds_conn *c)
{
    dirty_fn owed[DIRTY_MAX];
    size_t n = 0, i = 0;
    bool was_down;

    pthread_mutex_lock(&r->redis_lock);
    was_down = r->redis_down;
    r->redis_down = false;
    if (atomic_load(&r->ndirty_hint)) {
        n = r->ndirty;
        memcpy(owed, r->dirty, n * sizeof(*owed));
        r->ndirty = 0;
        r->dirty_overflow_logged = false;
        atomic_store(&r->ndirty_hint, 0);
    }
    pthread_mutex_unlock(&r->redis_lock);
    if (was_down)
        ml_log_info("registry: Redis available again");
    for (; i < n && redis_del2(c, owed[i].id, owed[i].name) == ML_OK; i++)
        ;
    for (; i < n; i++)
        reg_redis_owe(r, owed[i].id, owed[i].name);
}

/* Cache JSON from Redis: ML_OK, REGISTRY_NOT_FOUND (tombstone), REGISTRY_ABSENT (absence
 * marker), REGISTRY_MISS (no key, or Redis skipped/unavailable). RDS_NIL is never returned:
 * it equals REGISTRY_NOT_FOUND. */
int reg_redis_fetch(registry *r, const char *key, bool by_id, fn_info *out)
{
    rds_conn *c = redis_get(r);
    char k[KEY_MAX];
    ml_buf v;
    int rc;

    if (!c)
        return REGISTRY_MISS;
    if (redis_key(k, key, by_id) != ML_OK)
        return REGISTRY_MISS;
    ml_buf_init(&v, 256 * 1024);
    rc = rds_get(c, k, &v);
    if (rc == ML_ERR) {
        redis_failed(r, c);
        rc = REGISTRY_MISS;
    } else if (rc == RDS_NIL) {
        redis_ok(r, c);
        rc = REGISTRY_MISS;
    } else {
        redis_ok(r, c);
        if (rc == ML_OK && (rc = reg_fn_parse(v.data, v.len, out)) == ML_ERR) {
            ml_log_warn("registry: malformed cache entry %s ignored", k);
            rc = REGISTRY_MISS;
        }
    }
    ml_buf_free(&v);
    return rc;
}

/* Stores cache JSON under both keys; nx: only where absent (a fill must never overwrite
 * what a change wrote through). ML_ERR when Redis is unavailable. */
int reg_redis_store(registry *r, const char *id, const char *name, const char *json, bool nx)
{
    rds_conn *c = redis_get(r);
    char k[KEY_MAX], ttl[24];
    const char *keys[2] = { id, name };

    if (!c)
        return ML_ERR;
    if (ml_snprintf(ttl, sizeof(ttl), "%lld", (long long)(r->cfg.redis_ttl_s * 1000)) != ML_OK)
        return ML_ERR;
    for (int i = 0; i < 2; i++) {
        const char *argv[] = { "SET", k, json, "PX", ttl, "NX" };
        redisReply *rep;

        if (!keys[i] || !keys[i][0])
            continue;
        if (redis_key(k, keys[i], i == 0) != ML_OK)
            continue; /* too long to be looked up either */
        if (!(rep = rds_command(c, nx ? 6 : 5, argv, NULL))) {
            redis_failed(r, c);
            return ML_ERR;
        }
        freeReplyObject(rep);
    }
    redis_ok(r, c);
    return ML_OK;
}

/* Leaves a short-lived "no such function" marker under key (only where no entry is: NX).
 * It is the only negative cache: every executor's create of that function (reg_publish_change)
 * overwrites the key, so a function is never reported absent once it was written through,
 * and a marker that outlived a failed write-through lasts local_ttl_ms at most. */
void reg_mark_absent(registry *r, const char *key, bool by_id)
{
    rds_conn *c = redis_get(r);
    char k[KEY_MAX], ttl[24];
    const char *argv[] = { "SET", k, "{\"absent\":true}", "PX", ttl, "NX" };
    redisReply *rep;

    if (!c || r->cfg.local_ttl_ms < 1)
        return;
    if (redis_key(k, key, by_id) != ML_OK ||
        ml_snprintf(ttl, sizeof(ttl), "%lld", (long long)r->cfg.local_ttl_ms) != ML_OK)
        return;
    if (!(rep = rds_command(c, 6, argv, NULL))) {
        redis_failed(r, c);
        return;
    }
    freeReplyObject(rep);
}

/* After a change: write the new state through to Redis (or owe it) and drop local copies. */
void reg_publish_change(registry *r, const char *id, const char *ns, const char *name, const char *json)
{
    char nk[FN_KEY_MAX] = "";

    if (name && reg_name_key(ns, name, nk) != ML_OK)
        nk[0] = '\0';
    forget_keys(r, id, nk);
    if (reg_redis_store(r, id, nk, json, false) != ML_OK)
        reg_redis_owe(r, id, nk);
}

void reg_cache_init(registry *r)
{
    pthread_rwlock_init(&r->lock, NULL);
    pthread_mutex_init(&r->redis_lock, NULL);
}

void reg_cache_free(registry *r)
{
    for (size_t b = 0; b < CACHE_BUCKETS; b++) {
        while (r->buckets[b])
            cache_unlink(r, &r->buckets[b]);
    }
    pthread_rwlock_destroy(&r->lock);
    pthread_mutex_destroy(&r->redis_lock);
}
