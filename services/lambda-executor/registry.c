/* registry.c — functions and versions: build-status webhook receiver, the functions
 * endpoints, and the cached lookup behind every invocation (see registry.h and
 * docs/executor-registry.md). */
#include "registry.h"

#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fnwait.h"
#include "log.h"
#include "redis.h"
#include "webhook.h"

#define CACHE_BUCKETS 1024u            /* power of two */
#define REDIS_TIMEOUT_MS 250           /* a lookup never waits longer on Redis */
#define REDIS_SKIP_MIN_MS 1000         /* after a Redis failure, skip it this long ... */
#define REDIS_SKIP_MAX_MS 10000        /* ... doubling up to this */
#define DIRTY_MAX 512                  /* changes whose Redis write-through is still owed */
#define KEY_MAX 96
#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define URL_MAX 2048
#define DELETE_TIMEOUT "300s"          /* DELETE /functions/{fn}: the cascade over its audit log */

/* ------------------------------------------------------------------------------------ */
/* State                                                                                */

typedef struct cache_entry {
    struct cache_entry *next;
    char key[FN_NAME_MAX];   /* a lower-case id or a name, as looked up */
    int64_t fetched_ms;      /* monotonic time of the fetch */
    bool found;              /* false: a cached "no such function" */
    fn_info info;
} cache_entry;

/* A change whose Redis write-through failed: its keys must be deleted once Redis answers. */
typedef struct dirty_fn {
    char id[ML_UUID_LEN];
    char name[FN_NAME_MAX];
} dirty_fn;

struct registry {
    registry_config cfg;
    pthread_key_t tls;              /* this thread's rds_conn */
    /* process cache */
    pthread_rwlock_t lock;
    cache_entry *buckets[CACHE_BUCKETS];
    size_t count;
    /* bumped by every local invalidation: a fetch that began before one must not store */
    atomic_uint_fast64_t epoch;
    /* Redis circuit breaker and owed invalidations */
    pthread_mutex_t redis_lock;
    int64_t redis_skip_until_ms, redis_backoff_ms;
    bool redis_down;
    atomic_int ndirty_hint;         /* a racy fast check of ndirty */
    dirty_fn dirty[DIRTY_MAX];
    size_t ndirty;
    bool dirty_overflow_logged;
    /* GET /functions/{fn}?wait=active */
    fnwait *waits;
    /* metrics */
    metric *m_lookups, *m_webhooks, *m_redis_errors;
};

/* ------------------------------------------------------------------------------------ */
/* Keys                                                                                 */

/* Function names as the build side allows them. */
static bool name_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    }
    return true;
}

/* {fn} → cache key: a UUID lower-cased (ids are compared as UUIDs), or a name as is.
 * ML_ERR when fn can be neither (so it names no function). */
static int fn_key(const char *fn, char key[FN_NAME_MAX], bool *by_id)
{
    if (!fn)
        return ML_ERR;
    *by_id = ml_uuid_valid(fn) == ML_OK;
    if (*by_id) {
        for (size_t i = 0; i < 36; i++)
            key[i] = (char)tolower((unsigned char)fn[i]);
        key[36] = '\0';
        return ML_OK;
    }
    if (!name_valid(fn))
        return ML_ERR;
    return ml_strlcpy(key, fn, FN_NAME_MAX);
}

static void redis_key(char out[KEY_MAX], const char *key, bool by_id)
{
    ml_snprintf(out, KEY_MAX, "%s%s", by_id ? "ml:fn:" : "ml:fnname:", key);
}

/* ------------------------------------------------------------------------------------ */
/* fn_info from the cache JSON (the same shape in Redis and from Postgres)               */

static int json_str(const cJSON *o, const char *k, char *dst, size_t size, bool nullable)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    if (nullable && (!v || cJSON_IsNull(v))) {
        dst[0] = '\0';
        return ML_OK;
    }
    return cJSON_IsString(v) ? ml_strlcpy(dst, v->valuestring, size) : ML_ERR;
}

/* Integer field; a missing/null nullable one is 0. */
static int json_int(const cJSON *o, const char *k, int64_t *out, bool nullable)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    if (nullable && (!v || cJSON_IsNull(v))) {
        *out = 0;
        return ML_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 9e15)
        return ML_ERR;
    *out = (int64_t)v->valuedouble;
    return ML_OK;
}

static int env_pack(const cJSON *env, fn_info *f)
{
    const cJSON *e;

    f->env_count = 0;
    f->env_len = 0;
    if (!cJSON_IsObject(env))
        return ML_ERR;
    cJSON_ArrayForEach(e, env)
    {
        size_t kn = strlen(e->string), vn;

        if (!cJSON_IsString(e))
            return ML_ERR;
        vn = strlen(e->valuestring);
        if (f->env_len + kn + vn + 2 > sizeof(f->env))
            return ML_ERR;
        memcpy(f->env + f->env_len, e->string, kn);
        f->env[f->env_len + kn] = '=';
        memcpy(f->env + f->env_len + kn + 1, e->valuestring, vn + 1);
        f->env_len += kn + vn + 2;
        f->env_count++;
    }
    return ML_OK;
}

static int fn_from_json(const cJSON *o, fn_info *f)
{
    char state[16];
    int64_t version, size, mem, tmo, conc, retries, age, gen, burst = 0;
    const cJSON *rl = cJSON_GetObjectItemCaseSensitive(o, "rate_limit");
    const cJSON *rps = cJSON_GetObjectItemCaseSensitive(rl, "rps");

    if (json_str(o, "id", f->id, sizeof(f->id), false) || json_str(o, "name", f->name, sizeof(f->name), false) ||
        json_str(o, "state", state, sizeof(state), false) ||
        json_str(o, "runtime", f->runtime, sizeof(f->runtime), false) ||
        json_str(o, "handler", f->handler, sizeof(f->handler), false) ||
        json_str(o, "artifact_prefix", f->artifact_prefix, sizeof(f->artifact_prefix), true) ||
        json_str(o, "artifact_sha256", f->artifact_sha256, sizeof(f->artifact_sha256), true) ||
        json_str(o, "build_id", f->build_id, sizeof(f->build_id), true) ||
        json_str(o, "on_success_url", f->on_success_url, sizeof(f->on_success_url), true) ||
        json_str(o, "on_failure_url", f->on_failure_url, sizeof(f->on_failure_url), true) ||
        json_int(o, "version", &version, true) || json_int(o, "artifact_size", &size, true) ||
        json_int(o, "memory_mb", &mem, false) || json_int(o, "timeout_s", &tmo, false) ||
        json_int(o, "concurrency", &conc, true) || json_int(o, "max_retries", &retries, false) ||
        json_int(o, "max_event_age_s", &age, false) || json_int(o, "generation", &gen, false) ||
        (rl && !cJSON_IsNull(rl) && (!cJSON_IsNumber(rps) || json_int(rl, "burst", &burst, true))) ||
        env_pack(cJSON_GetObjectItemCaseSensitive(o, "env"), f) != ML_OK)
        return ML_ERR;
    f->state = strcmp(state, "active") == 0 ? FN_ACTIVE : strcmp(state, "failed") == 0 ? FN_FAILED : FN_PENDING;
    f->version = (int)version;
    f->artifact_size = size;
    f->memory_mb = (int)mem;
    f->timeout_s = (int)tmo;
    f->concurrency = (int)conc;
    f->rate_rps = cJSON_IsNumber(rps) ? rps->valuedouble : 0;
    f->rate_burst = (int)burst;
    f->max_retries = (int)retries;
    f->max_event_age_s = (int)age;
    f->generation = gen;
    return ML_OK;
}

/* Parses cache JSON text. ML_OK, REGISTRY_NOT_FOUND for a deletion tombstone,
 * REGISTRY_ABSENT for an absence marker, ML_ERR if malformed. */
static int fn_parse(const char *text, size_t len, fn_info *f)
{
    cJSON *o = cJSON_ParseWithLength(text, len);
    int rc = ML_ERR;

    if (cJSON_IsObject(o))
        rc = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "deleted"))  ? REGISTRY_NOT_FOUND
             : cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "absent")) ? REGISTRY_ABSENT
                                                                           : fn_from_json(o, f);
    cJSON_Delete(o);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Process cache                                                                        */

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

typedef enum { PROBE_NONE = 0, PROBE_FRESH, PROBE_STALE } cache_probe;

/* Copies a cached entry into *out (when found) and says how fresh it is; *found tells a
 * cached absence. */
static cache_probe cache_lookup(registry *r, const char *key, fn_info *out, bool *found)
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
static void cache_store(registry *r, const char *key, const fn_info *info, uint64_t epoch)
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

void registry_forget(registry *r, const char *id, const char *name)
{
    pthread_rwlock_wrlock(&r->lock);
    atomic_fetch_add(&r->epoch, 1);
    if (id)
        cache_drop_key(r, id);
    if (name)
        cache_drop_key(r, name);
    pthread_rwlock_unlock(&r->lock);
}

/* ------------------------------------------------------------------------------------ */
/* Redis: per-thread connection, circuit breaker, owed invalidations                     */

static rds_conn *redis_conn(registry *r)
{
    rds_options o = { .connect_timeout_ms = REDIS_TIMEOUT_MS, .command_timeout_ms = REDIS_TIMEOUT_MS };
    rds_conn *c = pthread_getspecific(r->tls);
    char err[256];

    if (c)
        return c;
    if (!(c = rds_new(r->cfg.redis_url, &o, err, sizeof(err)))) {
        ml_log_error("registry: cannot create a Redis client: %s", err);
        return NULL;
    }
    pthread_setspecific(r->tls, c);
    return c;
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

static void redis_owe(registry *r, const char *id, const char *name)
{
    pthread_mutex_lock(&r->redis_lock);
    if (r->ndirty < DIRTY_MAX) {
        ml_strlcpy(r->dirty[r->ndirty].id, id, ML_UUID_LEN);
        ml_strlcpy(r->dirty[r->ndirty].name, name ? name : "", FN_NAME_MAX);
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

    redis_key(k1, id, true);
    redis_key(k2, name, false);
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
        redis_owe(r, owed[i].id, owed[i].name);
}

/* Cache JSON from Redis: ML_OK, REGISTRY_NOT_FOUND (tombstone), REGISTRY_ABSENT (absence
 * marker), REGISTRY_MISS (no key, or Redis skipped/unavailable). RDS_NIL is never returned:
 * it equals REGISTRY_NOT_FOUND. */
static int redis_fetch(registry *r, const char *key, bool by_id, fn_info *out)
{
    rds_conn *c = redis_get(r);
    char k[KEY_MAX];
    ml_buf v;
    int rc;

    if (!c)
        return REGISTRY_MISS;
    ml_buf_init(&v, 256 * 1024);
    redis_key(k, key, by_id);
    rc = rds_get(c, k, &v);
    if (rc == ML_ERR) {
        redis_failed(r, c);
        rc = REGISTRY_MISS;
    } else if (rc == RDS_NIL) {
        redis_ok(r, c);
        rc = REGISTRY_MISS;
    } else {
        redis_ok(r, c);
        if (rc == ML_OK && (rc = fn_parse(v.data, v.len, out)) == ML_ERR) {
            ml_log_warn("registry: malformed cache entry %s ignored", k);
            rc = REGISTRY_MISS;
        }
    }
    ml_buf_free(&v);
    return rc;
}

/* Stores cache JSON under both keys; nx: only where absent (a fill must never overwrite
 * what a change wrote through). ML_ERR when Redis is unavailable. */
static int redis_store(registry *r, const char *id, const char *name, const char *json, bool nx)
{
    rds_conn *c = redis_get(r);
    char k[KEY_MAX], ttl[24];
    const char *keys[2] = { id, name };

    if (!c)
        return ML_ERR;
    ml_snprintf(ttl, sizeof(ttl), "%lld", (long long)(r->cfg.redis_ttl_s * 1000));
    for (int i = 0; i < 2; i++) {
        const char *argv[] = { "SET", k, json, "PX", ttl, "NX" };
        redisReply *rep;

        if (!keys[i] || !keys[i][0])
            continue;
        redis_key(k, keys[i], i == 0);
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
 * It is the only negative cache: every executor's create of that function (publish_change)
 * overwrites the key, so a function is never reported absent once it was written through,
 * and a marker that outlived a failed write-through lasts local_ttl_ms at most. */
static void mark_absent(registry *r, const char *key, bool by_id)
{
    rds_conn *c = redis_get(r);
    char k[KEY_MAX], ttl[24];
    const char *argv[] = { "SET", k, "{\"absent\":true}", "PX", ttl, "NX" };
    redisReply *rep;

    if (!c || r->cfg.local_ttl_ms < 1)
        return;
    redis_key(k, key, by_id);
    ml_snprintf(ttl, sizeof(ttl), "%lld", (long long)r->cfg.local_ttl_ms);
    if (!(rep = rds_command(c, 6, argv, NULL))) {
        redis_failed(r, c);
        return;
    }
    freeReplyObject(rep);
}

/* After a change: write the new state through to Redis (or owe it) and drop local copies. */
static void publish_change(registry *r, const char *id, const char *name, const char *json)
{
    registry_forget(r, id, name);
    if (redis_store(r, id, name, json, false) != ML_OK)
        redis_owe(r, id, name);
}

/* ------------------------------------------------------------------------------------ */
/* Postgres                                                                             */

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The cache shape (parsed by fn_from_json). */
#define CACHE_JSON                                                                             \
    "json_build_object('id', f.id, 'name', f.name, 'state', f.state, 'version', f.active_version," \
    " 'runtime', coalesce(v.runtime, f.runtime), 'handler', coalesce(v.handler, f.handler),"    \
    " 'artifact_prefix', v.artifact_prefix, 'artifact_sha256', v.artifact_sha256,"              \
    " 'artifact_size', v.artifact_size, 'memory_mb', f.memory_mb, 'timeout_s', f.timeout_s,"   \
    " 'concurrency', f.concurrency, 'rate_limit', f.rate_limit, 'max_retries', f.max_retries,"  \
    " 'max_event_age_s', f.max_event_age_s, 'on_success_url', f.on_success_url,"                \
    " 'on_failure_url', f.on_failure_url, 'env', f.env, 'generation', f.generation,"           \
    " 'build_id', (SELECT b.build_id FROM function_builds b WHERE b.function_id = f.id"         \
    " ORDER BY b.queued_at DESC LIMIT 1))::text"

/* The API shape (GET /functions, GET/PATCH /functions/{fn}). */
#define API_JSON                                                                               \
    "json_build_object('id', f.id, 'name', f.name, 'runtime', coalesce(v.runtime, f.runtime),"  \
    " 'handler', coalesce(v.handler, f.handler), 'state', f.state, 'version', f.active_version," \
    " 'error', f.state_reason, 'memory_mb', f.memory_mb, 'timeout_s', f.timeout_s, 'env', f.env," \
    " 'rate_limit', f.rate_limit, 'concurrency', f.concurrency, 'max_retries', f.max_retries,"  \
    " 'max_event_age_s', f.max_event_age_s, 'on_success_url', f.on_success_url,"                \
    " 'on_failure_url', f.on_failure_url,"                                                      \
    " 'artifact', CASE WHEN v.version IS NOT NULL THEN json_build_object('sha256',"             \
    " v.artifact_sha256, 'size_bytes', v.artifact_size, 'files', v.artifact_files) END,"        \
    " 'last_build', (SELECT json_build_object('build_id', b.build_id, 'status', b.status,"      \
    " 'error', b.error, 'updated_at', " ISO("b.updated_at") ") FROM function_builds b"          \
    " WHERE b.function_id = f.id ORDER BY b.queued_at DESC LIMIT 1),"                           \
    " 'created_at', " ISO("f.created_at") ", 'updated_at', " ISO("f.updated_at") ")"

#define FROM_FN \
    " FROM functions f LEFT JOIN function_versions v ON v.function_id = f.id AND v.version = f.active_version"
/* $1 the id (or NULL), $2 the name (or NULL) */
#define WHERE_FN " WHERE (f.id = $1::uuid OR f.name = $2)"

static pg_conn *need_db(registry *r, httpd_resp *resp)
{
    pg_conn *db = r->cfg.thread_db(r->cfg.thread_db_ud);

    if (!db && resp) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "cannot reach the function database");
    }
    return db;
}

/* Answers a failed statement: 503 when the database is unreachable, else 500. */
static void db_fail(httpd_resp *resp, pg_conn *db, const char *what)
{
    ml_log_warn("registry: %s: %s", what, pg_error(db));
    if (pg_error_is_connection(db)) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "function database unavailable: %s", pg_error(db));
    } else {
        httpd_resp_error(resp, 500, "internal", "%s failed", what);
    }
}

/* Cache JSON of one function by key: ML_OK with *json (caller frees), REGISTRY_NOT_FOUND,
 * ML_ERR (err written). */
static int db_fetch_json(pg_conn *db, const char *key, bool by_id, char **json, char *err, size_t errlen)
{
    const char *params[] = { by_id ? key : NULL, by_id ? NULL : key };
    PGresult *res = pg_query(db, "reg_fetch", "SELECT " CACHE_JSON FROM_FN WHERE_FN, 2, params);
    int rc = ML_ERR;

    if (!res)
        ml_snprintf(err, errlen, "function database: %s", pg_error(db));
    else if (PQntuples(res) == 0)
        rc = REGISTRY_NOT_FOUND;
    else if ((*json = strdup(pg_get_text(res, 0, 0))) != NULL)
        rc = ML_OK;
    else
        ml_snprintf(err, errlen, "out of memory");
    PQclear(res);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Lookup                                                                               */

static void count_lookup(registry *r, const char *source)
{
    const char *labels[] = { source };

    metric_inc(r->m_lookups, labels);
}

registry_rc registry_get_cached(registry *r, const char *fn, fn_info *out)
{
    char key[FN_NAME_MAX];
    bool by_id, found = false;

    if (fn_key(fn, key, &by_id) != ML_OK)
        return REGISTRY_NOT_FOUND;
    if (cache_lookup(r, key, out, &found) != PROBE_FRESH)
        return REGISTRY_MISS;
    count_lookup(r, "local");
    return found ? ML_OK : REGISTRY_NOT_FOUND;
}

/* Postgres, then fill Redis and the process cache. overwrite: Redis holds a tombstone for
 * this name, which a function found now must replace. */
static int lookup_db(registry *r, const char *key, bool by_id, bool overwrite, fn_info *out,
                     uint64_t epoch, char *err, size_t errlen)
{
    pg_conn *db = need_db(r, NULL);
    char *json = NULL;
    int rc = ML_ERR;

    if (!db)
        ml_snprintf(err, errlen, "cannot reach the function database");
    else
        rc = db_fetch_json(db, key, by_id, &json, err, errlen);
    if (rc == REGISTRY_NOT_FOUND) {
        mark_absent(r, key, by_id); /* never a local absence: other executors create functions */
    } else if (rc == ML_OK) {
        if (fn_parse(json, strlen(json), out) != ML_OK) {
            ml_snprintf(err, errlen, "malformed function row for '%s'", key);
            rc = ML_ERR;
        } else {
            redis_store(r, out->id, out->name, json, !overwrite);
            cache_store(r, key, out, epoch);
        }
    }
    free(json);
    return rc;
}

registry_rc registry_get(registry *r, const char *fn, fn_info *out, char *err, size_t errlen)
{
    char key[FN_NAME_MAX], ebuf[256];
    bool by_id, found = false;
    cache_probe p;
    uint64_t epoch;
    int rc;

    if (!err) {
        err = ebuf;
        errlen = sizeof(ebuf);
    }
    if (fn_key(fn, key, &by_id) != ML_OK) {
        count_lookup(r, "not_found");
        return REGISTRY_NOT_FOUND;
    }
    p = cache_lookup(r, key, out, &found);
    if (p == PROBE_FRESH) {
        count_lookup(r, "local");
        return found ? ML_OK : REGISTRY_NOT_FOUND;
    }
    epoch = atomic_load(&r->epoch);
    rc = redis_fetch(r, key, by_id, out);
    /* a name's tombstone may predate a new function of that name: ask Postgres */
    if (rc == ML_OK || rc == REGISTRY_ABSENT || (rc == REGISTRY_NOT_FOUND && by_id)) {
        if (rc == ML_OK)
            cache_store(r, key, out, epoch);
        count_lookup(r, "redis");
        return rc == ML_OK ? ML_OK : REGISTRY_NOT_FOUND;
    }
    rc = lookup_db(r, key, by_id, rc == REGISTRY_NOT_FOUND, out, epoch, err, errlen);
    if (rc == ML_ERR && p == PROBE_STALE && found) {
        /* Postgres is down: a function this process has seen keeps serving */
        p = cache_lookup(r, key, out, &found);
        if (p != PROBE_NONE && found) {
            count_lookup(r, "stale");
            return ML_OK;
        }
    }
    count_lookup(r, rc == ML_OK ? "postgres" : rc == REGISTRY_NOT_FOUND ? "not_found" : "error");
    return rc;
}

/* Re-reads the function after a change and publishes it (Redis write-through, local drop). */
static void refresh_after_change(registry *r, pg_conn *db, const char *id)
{
    char *json = NULL, err[256];
    fn_info *f = malloc(sizeof(*f));

    if (f && db_fetch_json(db, id, true, &json, err, sizeof(err)) == ML_OK &&
        fn_parse(json, strlen(json), f) == ML_OK) {
        publish_change(r, f->id, f->name, json);
    } else {
        /* cannot tell the new state: make sure nobody keeps the old one */
        registry_forget(r, id, NULL);
        redis_owe(r, id, "");
    }
    free(json);
    free(f);
}

/* ------------------------------------------------------------------------------------ */
/* Field validation (PATCH and the webhook's config)                                      */

typedef enum { FIELD_INT, FIELD_ENV, FIELD_RATE, FIELD_URL } field_kind;

typedef struct field_rule {
    const char *name;
    field_kind kind;
    int64_t min, max;
    bool nullable;
    const char *rule; /* the message's "must ..." */
} field_rule;

static const field_rule patch_rules[] = {
    { "memory_mb", FIELD_INT, 64, 4096, false, "must be an integer from 64 to 4096" },
    { "timeout_s", FIELD_INT, 1, 900, false, "must be an integer from 1 to 900" },
    { "env", FIELD_ENV, 0, 0, false,
      "must be an object mapping variable names ([A-Za-z_][A-Za-z0-9_]*) to strings, at most 4096 bytes of names and values" },
    { "rate_limit", FIELD_RATE, 0, 0, true,
      "must be null or {\"rps\": 0 < N <= 100000, \"burst\": integer 1..100000 (optional)}" },
    { "concurrency", FIELD_INT, 1, 1000, true, "must be null (no cap) or an integer from 1 to 1000" },
    { "max_retries", FIELD_INT, 0, 2, false, "must be an integer from 0 to 2" },
    { "max_event_age_s", FIELD_INT, 60, 21600, false, "must be an integer from 60 to 21600" },
    { "on_success_url", FIELD_URL, 0, 0, true, "must be null or an http:// or https:// URL of at most 2048 characters" },
    { "on_failure_url", FIELD_URL, 0, 0, true, "must be null or an http:// or https:// URL of at most 2048 characters" },
};

static bool is_ident(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_'))
        return false;
    for (s++; *s; s++) {
        if (!isalnum((unsigned char)*s) && *s != '_')
            return false;
    }
    return true;
}

static bool int_in(const cJSON *v, int64_t min, int64_t max)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= (double)min &&
           v->valuedouble <= (double)max;
}

static bool env_ok(const cJSON *v)
{
    size_t total = 0;
    const cJSON *e;

    if (!cJSON_IsObject(v))
        return false;
    cJSON_ArrayForEach(e, v)
    {
        if (!is_ident(e->string) || !cJSON_IsString(e))
            return false;
        total += strlen(e->string) + strlen(e->valuestring);
    }
    return total <= FN_ENV_BYTES_MAX;
}

static bool rate_ok(const cJSON *v)
{
    const cJSON *rps = cJSON_GetObjectItemCaseSensitive(v, "rps");
    const cJSON *burst = cJSON_GetObjectItemCaseSensitive(v, "burst");
    const cJSON *e;

    if (!cJSON_IsObject(v) || !cJSON_IsNumber(rps) || !(rps->valuedouble > 0) || rps->valuedouble > 100000 ||
        (burst && !int_in(burst, 1, 100000)))
        return false;
    cJSON_ArrayForEach(e, v)
    {
        if (strcmp(e->string, "rps") != 0 && strcmp(e->string, "burst") != 0)
            return false;
    }
    return true;
}

static bool url_ok(const cJSON *v)
{
    const char *s, *host;
    size_t n;

    if (!cJSON_IsString(v))
        return false;
    s = v->valuestring;
    n = strlen(s);
    if (n > URL_MAX || (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0))
        return false;
    host = strstr(s, "://") + 3;
    if (*host == '\0' || *host == '/' || *host == '?' || *host == '#')
        return false;
    for (; *s; s++) {
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return false;
    }
    return true;
}

static bool field_ok(const field_rule *f, const cJSON *v)
{
    if (cJSON_IsNull(v))
        return f->nullable;
    switch (f->kind) {
    case FIELD_INT: return int_in(v, f->min, f->max);
    case FIELD_ENV: return env_ok(v);
    case FIELD_RATE: return rate_ok(v);
    case FIELD_URL: return url_ok(v);
    }
    return false;
}

static const field_rule *rule_for(const char *name)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(patch_rules); i++) {
        if (strcmp(patch_rules[i].name, name) == 0)
            return &patch_rules[i];
    }
    return NULL;
}

/* Checks every member of obj against the rules; unknown members are an error when strict,
 * skipped otherwise. ML_ERR with a message naming the field. */
static int fields_check(const cJSON *obj, bool strict, char *err, size_t errlen)
{
    const cJSON *e;

    cJSON_ArrayForEach(e, obj)
    {
        const field_rule *f = rule_for(e->string);

        if (!f && strict) {
            ml_snprintf(err, errlen,
                        "unknown field '%s'; PATCH accepts memory_mb, timeout_s, env, rate_limit, "
                        "concurrency, max_retries, max_event_age_s, on_success_url, on_failure_url",
                        e->string);
            return ML_ERR;
        }
        if (f && !field_ok(f, e)) {
            ml_snprintf(err, errlen, "%s %s", f->name, f->rule);
            return ML_ERR;
        }
    }
    return ML_OK;
}

/* ------------------------------------------------------------------------------------ */
/* POST /webhooks/build-status/{build_id}                                                 */

typedef struct build_event {
    const char *build_id, *function_id, *status, *error, *timestamp;
    const char *name, *runtime, *handler;
    const cJSON *config;
    const char *prefix, *sha256;
    char size[24], files[24];
} build_event;

static const char *obj_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

#define BAD(...)                                                                               \
    do {                                                                                       \
        ml_snprintf(err, errlen, __VA_ARGS__);                                                 \
        return ML_ERR;                                                                         \
    } while (0)

/* Pulls the fields out of a build.status body; ML_ERR with a message when malformed. */
static int event_parse(const cJSON *body, const char *path_build_id, build_event *ev, char *err,
                       size_t errlen)
{
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(body, "function");
    const cJSON *art = cJSON_GetObjectItemCaseSensitive(body, "artifact");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(body, "error");
    const char *t = obj_str(body, "type");

    memset(ev, 0, sizeof(*ev));
    ev->build_id = obj_str(body, "build_id");
    ev->function_id = obj_str(body, "function_id");
    ev->status = obj_str(body, "status");
    ev->timestamp = obj_str(body, "timestamp");
    ev->error = cJSON_IsString(e) ? e->valuestring : NULL;
    ev->name = obj_str(fn, "name");
    ev->runtime = obj_str(fn, "runtime");
    ev->handler = obj_str(fn, "handler");
    ev->config = cJSON_GetObjectItemCaseSensitive(fn, "config");
    if (!t || strcmp(t, "build.status") != 0)
        BAD("type must be \"build.status\"");
    if (!ev->build_id || ml_uuid_valid(ev->build_id) != ML_OK || strcasecmp(ev->build_id, path_build_id) != 0)
        BAD("build_id must be the UUID in the path");
    if (!ev->function_id || ml_uuid_valid(ev->function_id) != ML_OK)
        BAD("function_id must be a UUID");
    if (!ev->status || (strcmp(ev->status, "queued") && strcmp(ev->status, "building") &&
                        strcmp(ev->status, "completed") && strcmp(ev->status, "failed")))
        BAD("status must be queued, building, completed or failed");
    if (!ev->timestamp)
        BAD("timestamp is required");
    if (!ev->name || !name_valid(ev->name) || !ev->runtime || !ev->handler)
        BAD("function must carry name, runtime and handler");
    if (ev->config && (!cJSON_IsObject(ev->config) || fields_check(ev->config, false, err, errlen) != ML_OK))
        return ML_ERR;
    if (strcmp(ev->status, "completed") == 0) {
        int64_t size, files;
        ev->prefix = obj_str(art, "prefix");
        ev->sha256 = obj_str(art, "sha256");
        if (!ev->prefix || !ev->sha256 || json_int(art, "size_bytes", &size, false) != ML_OK ||
            json_int(art, "files", &files, false) != ML_OK)
            BAD("a completed build must carry artifact prefix, sha256, size_bytes and files");
        ml_snprintf(ev->size, sizeof(ev->size), "%lld", (long long)size);
        ml_snprintf(ev->files, sizeof(ev->files), "%lld", (long long)files);
    }
    return ML_OK;
}

/* The config member as text (NULL when absent), for the INSERT. */
static char *config_text(const cJSON *config, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, k);

    return v && !cJSON_IsNull(v) ? cJSON_PrintUnformatted(v) : NULL;
}

static const char create_sql[] =
    "INSERT INTO functions (id, name, runtime, handler, memory_mb, timeout_s, env, rate_limit, concurrency)"
    " VALUES ($1, $2, $3, $4, coalesce($5::int, 128), coalesce($6::int, 30), coalesce($7::jsonb, '{}'),"
    " $8::jsonb, $9::int) ON CONFLICT (id) DO NOTHING";

/* Creates the function from the event unless it exists. */
static int ev_create(pg_conn *db, const build_event *ev)
{
    static const char *const keys[] = { "memory_mb", "timeout_s", "env", "rate_limit", "concurrency" };
    char *vals[ML_ARRAY_LEN(keys)] = { 0 };
    const char *params[9] = { ev->function_id, ev->name, ev->runtime, ev->handler };
    int rc;

    for (size_t i = 0; i < ML_ARRAY_LEN(keys); i++)
        params[4 + i] = vals[i] = config_text(ev->config, keys[i]);
    rc = pg_exec(db, "reg_ev_create", create_sql, 9, params, NULL);
    for (size_t i = 0; i < ML_ARRAY_LEN(keys); i++)
        cJSON_free(vals[i]);
    return rc;
}

/* The build's status only moves forward (queued < building < completed | failed); queued_at
 * keeps the earliest timestamp seen. */
#define BUILD_RANK(s) "CASE " s " WHEN 'queued' THEN 1 WHEN 'building' THEN 2 ELSE 3 END"
#define BUILD_NEWER "(" BUILD_RANK("EXCLUDED.status") " > " BUILD_RANK("b.status") ")"
static const char build_sql[] =
    "INSERT INTO function_builds AS b (build_id, function_id, status, error, queued_at)"
    " VALUES ($1, $2, $3, $4, $5::timestamptz)"
    " ON CONFLICT (build_id) DO UPDATE SET"
    "  status = CASE WHEN " BUILD_NEWER " THEN EXCLUDED.status ELSE b.status END,"
    "  error = CASE WHEN " BUILD_NEWER " THEN EXCLUDED.error ELSE b.error END,"
    "  queued_at = least(b.queued_at, EXCLUDED.queued_at)";

/* A completed build becomes a version (once: build_id is unique), numbered last_version+1. */
static const char version_sql[] =
    "WITH n AS (UPDATE functions SET last_version = last_version + 1 WHERE id = $1"
    "  AND NOT EXISTS (SELECT 1 FROM function_versions WHERE build_id = $2) RETURNING last_version)"
    " INSERT INTO function_versions (function_id, version, build_id, runtime, handler, artifact_prefix,"
    "  artifact_sha256, artifact_size, artifact_files)"
    " SELECT $1, n.last_version, $2, $3, $4, $5, $6, $7::bigint, $8::int FROM n";

/* State from the builds seen: the version of the newest completed build is active; without
 * one, the newest build decides between pending and failed (with its error). */
static const char state_sql[] =
    "UPDATE functions f SET active_version = c.active, state = c.state, state_reason = c.reason"
    " FROM (SELECT a.version AS active,"
    "   CASE WHEN a.version IS NOT NULL THEN 'active' WHEN nb.status = 'failed' THEN 'failed'"
    "        ELSE 'pending' END AS state,"
    "   CASE WHEN a.version IS NULL AND nb.status = 'failed' THEN nb.error END AS reason"
    "  FROM (SELECT 1) one"
    "  LEFT JOIN LATERAL (SELECT fv.version FROM function_versions fv"
    "    JOIN function_builds fb ON fb.build_id = fv.build_id WHERE fv.function_id = $1"
    "    ORDER BY fb.queued_at DESC, fv.version DESC LIMIT 1) a ON true"
    "  LEFT JOIN LATERAL (SELECT status, error FROM function_builds WHERE function_id = $1"
    "    ORDER BY queued_at DESC LIMIT 1) nb ON true) c"
    " WHERE f.id = $1 AND (f.active_version, f.state, f.state_reason)"
    "  IS DISTINCT FROM (c.active, c.state, c.reason)";

typedef enum { EV_APPLIED = 0, EV_DUPLICATE, EV_GONE, EV_FAILED } ev_outcome;

/* A transaction-scoped lock on one function id ($1), taken by build events and by a delete
 * by id, so that each sees what the other committed. */
#define FN_XACT_LOCK "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))"

/* Applies one event in the open transaction. */
static ev_outcome ev_apply(pg_conn *db, const build_event *ev, const char *webhook_id)
{
    const char *rcpt[] = { webhook_id, ev->build_id, ev->function_id, ev->status };
    const char *fid[] = { ev->function_id };
    const char *build[] = { ev->build_id, ev->function_id, ev->status, ev->error, ev->timestamp };
    int64_t n = 0;
    PGresult *res;

    if (pg_exec(db, "reg_ev_receipt",
                "INSERT INTO build_webhook_receipts (webhook_id, build_id, function_id, status)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (webhook_id) DO NOTHING",
                4, rcpt, &n) != ML_OK)
        return EV_FAILED;
    if (n == 0)
        return EV_DUPLICATE;
    /* one function's events and its delete by id take turns: otherwise a delete that found no
     * row yet and an event creating the row could both commit, the tombstone unseen */
    if (pg_exec(db, "reg_ev_fnlock", FN_XACT_LOCK, 1, fid, NULL) != ML_OK)
        return EV_FAILED;
    if (!(res = pg_query(db, "reg_ev_deleted", "SELECT 1 FROM deleted_functions WHERE id = $1", 1, fid)))
        return EV_FAILED;
    n = PQntuples(res);
    PQclear(res);
    if (n > 0)
        return EV_GONE;
    if (ev_create(db, ev) != ML_OK)
        return EV_FAILED;
    /* serialise events of one function: version numbers and state are read-modify-write */
    if (!(res = pg_query(db, "reg_ev_lock", "SELECT 1 FROM functions WHERE id = $1 FOR UPDATE", 1, fid)))
        return EV_FAILED;
    n = PQntuples(res);
    PQclear(res);
    if (n == 0)
        return EV_GONE; /* deleted meanwhile */
    if (pg_exec(db, "reg_ev_build", build_sql, 5, build, NULL) != ML_OK)
        return EV_FAILED;
    if (strcmp(ev->status, "completed") == 0) {
        const char *ver[] = { ev->function_id, ev->build_id, ev->runtime, ev->handler,
                              ev->prefix, ev->sha256, ev->size, ev->files };
        if (pg_exec(db, "reg_ev_version", version_sql, 8, ver, NULL) != ML_OK)
            return EV_FAILED;
    }
    return pg_exec(db, "reg_ev_state", state_sql, 1, fid, NULL) == ML_OK ? EV_APPLIED : EV_FAILED;
}

static void count_webhook(registry *r, const char *status, const char *result)
{
    const char *labels[] = { status, result };

    metric_inc(r->m_webhooks, labels);
}

/* Error for a failed event: unreachable database 503 (retried), a name held by another
 * function 409, data the schema refuses 400, else 500. */
static void ev_fail(httpd_resp *resp, pg_conn *db, const build_event *ev)
{
    const char *st = pg_sqlstate(db);

    if (strcmp(st, PG_SQLSTATE_UNIQUE_VIOLATION) == 0) {
        ml_log_kv(ML_LOG_WARN, "build webhook refused: conflicts with another function", "function_id",
                  ev->function_id, "name", ev->name, "error", pg_error(db), NULL);
        httpd_resp_error(resp, 409, "conflict", "the event conflicts with another function (name '%s' or build %s"
                         " taken): %s", ev->name, ev->build_id, pg_error(db));
    } else if (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0) {
        httpd_resp_error(resp, 400, "invalid_body", "the event does not fit the schema: %s", pg_error(db));
    } else {
        db_fail(resp, db, "applying a build event");
    }
}

static httpd_result h_webhook(httpd_req *req, httpd_resp *resp, void *ud)
{
    registry *r = ud;
    const char *wid = httpd_header(req, "webhook-id");
    char reason[128], err[256];
    size_t len;
    const char *body = httpd_body(req, &len);
    cJSON *json = NULL;
    build_event ev;
    ev_outcome out;
    pg_conn *db;

    if (webhook_verify(r->cfg.webhook_secret, wid, httpd_header(req, "webhook-timestamp"),
                       httpd_header(req, "webhook-signature"), body, len, ml_wall_ms() / 1000, reason,
                       sizeof(reason)) != ML_OK) {
        count_webhook(r, "unknown", "unauthorized");
        httpd_resp_error(resp, 401, "invalid_signature", "webhook signature rejected: %s", reason);
        return HTTPD_DONE;
    }
    if (!(json = httpd_body_json(req, resp)))
        goto invalid_counted;
    if (event_parse(json, httpd_param(req, "build_id"), &ev, err, sizeof(err)) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_body", "%s", err);
        goto invalid_counted;
    }
    if (!(db = need_db(r, resp)) || pg_begin(db) != ML_OK) {
        if (db)
            db_fail(resp, db, "starting a transaction");
        count_webhook(r, ev.status, "error");
        goto out;
    }
    out = ev_apply(db, &ev, wid);
    if (out == EV_FAILED || out == EV_GONE || out == EV_DUPLICATE) {
        if (out == EV_FAILED)
            ev_fail(resp, db, &ev);
        pg_rollback(db);
    } else if (pg_commit(db) != ML_OK) {
        out = EV_FAILED;
        db_fail(resp, db, "committing a build event");
    }
    switch (out) {
    case EV_APPLIED:
        refresh_after_change(r, db, ev.function_id);
        fnwait_notify(r->waits);
        ml_log_kv(ML_LOG_INFO, "build event applied", "build_id", ev.build_id, "function_id",
                  ev.function_id, "status", ev.status, NULL);
        /* fallthrough */
    case EV_DUPLICATE:
        httpd_resp_json(resp, 200, cJSON_Parse(out == EV_APPLIED ? "{\"ok\":true}" : "{\"ok\":true,\"duplicate\":true}"));
        break;
    case EV_GONE:
        httpd_resp_error(resp, 410, "function_deleted", "function %s was deleted", ev.function_id);
        break;
    case EV_FAILED:
        break;
    }
    count_webhook(r, ev.status,
                  out == EV_APPLIED ? "applied" : out == EV_DUPLICATE ? "duplicate" : out == EV_GONE ? "gone" : "error");
    goto out;
invalid_counted:
    count_webhook(r, "unknown", "invalid");
out:
    cJSON_Delete(json);
    return HTTPD_DONE;
}

/* ------------------------------------------------------------------------------------ */
/* Functions endpoints                                                                  */

/* Postgres' json text is padded; re-serialise it compactly (keeps key order). */
static void reply_json_text(httpd_resp *resp, int status, const char *text)
{
    cJSON *o = cJSON_Parse(text);

    if (!o)
        httpd_resp_error(resp, 500, "internal", "malformed JSON from the database");
    else
        httpd_resp_json(resp, status, o);
}

/* {fn} → (id, name) parameters for WHERE_FN; ML_ERR (404 written) if it can name nothing. */
static int fn_params(httpd_req *req, httpd_resp *resp, char key[FN_NAME_MAX], const char *params[2])
{
    const char *fn = httpd_param(req, "fn");
    bool by_id;

    if (fn_key(fn, key, &by_id) != ML_OK) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", fn ? fn : "");
        return ML_ERR;
    }
    params[0] = by_id ? key : NULL;
    params[1] = by_id ? NULL : key;
    return ML_OK;
}

/* ?wait=active&timeout_s=N: ML_OK with *timeout_s (0 when not waiting); ML_ERR with 400. */
static int wait_query(httpd_req *req, httpd_resp *resp, int *timeout_s)
{
    const char *wait = httpd_query(req, "wait"), *ts = httpd_query(req, "timeout_s");
    int64_t t = 30;

    *timeout_s = 0;
    if (!wait && !ts)
        return ML_OK;
    if (!wait || strcmp(wait, "active") != 0 ||
        (ts && ml_parse_int64(ts, FNWAIT_TIMEOUT_MIN_S, FNWAIT_TIMEOUT_MAX_S, &t) != ML_OK)) {
        httpd_resp_error(resp, 400, "invalid_query", "wait must be \"active\" and timeout_s %d..%d",
                         FNWAIT_TIMEOUT_MIN_S, FNWAIT_TIMEOUT_MAX_S);
        return ML_ERR;
    }
    *timeout_s = (int)t;
    return ML_OK;
}

/* True when the API document says the function is still pending. */
static bool doc_pending(const char *doc)
{
    cJSON *o = cJSON_Parse(doc);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
    bool pending = cJSON_IsString(st) && strcmp(st->valuestring, "pending") == 0;

    cJSON_Delete(o);
    return pending;
}

static httpd_result h_get(httpd_req *req, httpd_resp *resp, void *ud)
{
    registry *r = ud;
    char key[FN_NAME_MAX];
    const char *params[2];
    PGresult *res;
    pg_conn *db;
    int timeout_s;
    httpd_result hr = HTTPD_DONE;

    if (fn_params(req, resp, key, params) != ML_OK || wait_query(req, resp, &timeout_s) != ML_OK ||
        !(db = need_db(r, resp)))
        return HTTPD_DONE;
    res = pg_query(db, "reg_get", "SELECT " API_JSON "::text" FROM_FN WHERE_FN, 2, params);
    if (!res)
        db_fail(resp, db, "reading a function");
    else if (PQntuples(res) == 0)
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", key);
    else if (timeout_s > 0 && doc_pending(pg_get_text(res, 0, 0)))
        hr = fnwait_park(r->waits, req, resp, key, timeout_s);
    else
        reply_json_text(resp, 200, pg_get_text(res, 0, 0));
    PQclear(res);
    return hr;
}

/* fnwait's fetch: every key's API document in one statement (see fnwait_fetch_fn). */
static int wait_fetch(void *ud, const char *const *keys, size_t n, char **docs)
{
    registry *r = ud;
    pg_conn *db = need_db(r, NULL);
    ml_buf arr;
    const char *params[1];
    PGresult *res = NULL;
    int rc = ML_ERR;

    ml_buf_init(&arr, 0);
    for (size_t i = 0; i < n; i++) /* keys are UUIDs or names: no quotes or backslashes */
        if (ml_buf_printf(&arr, "%c\"%s\"", i ? ',' : '{', keys[i]) != ML_OK)
            goto out;
    if (!db || ml_buf_append_str(&arr, n ? "}" : "{}") != ML_OK)
        goto out;
    params[0] = ml_buf_cstr(&arr);
    res = pg_query(db, "reg_wait",
                   "SELECT k.i, " API_JSON "::text FROM unnest($1::text[]) WITH ORDINALITY AS k (key, i)"
                   " JOIN functions f ON f.name = k.key OR f.id = (CASE WHEN k.key ~"
                   " '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN k.key::uuid END)"
                   " LEFT JOIN function_versions v ON v.function_id = f.id AND v.version = f.active_version",
                   1, params);
    if (!res) {
        ml_log_warn("registry: reading waited-for functions: %s", pg_error(db));
        goto out;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t i = 0;
        if (pg_get_int64(res, row, 0, &i) == ML_OK && i >= 1 && (size_t)i <= n && !docs[i - 1])
            docs[i - 1] = strdup(pg_get_text(res, row, 1));
    }
    rc = ML_OK;
out:
    if (rc != ML_OK)
        for (size_t i = 0; i < n; i++) {
            free(docs[i]);
            docs[i] = NULL;
        }
    PQclear(res);
    ml_buf_free(&arr);
    return rc;
}

static httpd_result h_list(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *limit_s = httpd_query(req, "limit"), *cursor = httpd_query(req, "cursor");
    char us[24], id[ML_UUID_LEN], limit[8];
    int64_t n = PAGE_DEFAULT;
    const char *params[3] = { NULL, NULL, limit };
    PGresult *res;
    pg_conn *db;

    if ((limit_s && ml_parse_int64(limit_s, 1, PAGE_MAX, &n) != ML_OK) ||
        (cursor && ml_cursor_parse(cursor, us, id) != ML_OK)) {
        httpd_resp_error(resp, 400, "invalid_query", "limit must be 1..%d and cursor a value from next_cursor", PAGE_MAX);
        return HTTPD_DONE;
    }
    if (!(db = need_db(ud, resp)))
        return HTTPD_DONE;
    if (cursor) {
        params[0] = us;
        params[1] = id;
    }
    ml_snprintf(limit, sizeof(limit), "%lld", (long long)n);
    /* oldest first; one extra row tells whether there is a next page */
    res = pg_query(db, "reg_list",
                   "WITH page AS (SELECT f.id, f.created_at, " API_JSON " AS j" FROM_FN
                   " WHERE $1::bigint IS NULL OR (f.created_at, f.id) >"
                   " ('epoch'::timestamptz + $1::bigint * interval '1 microsecond', $2::uuid)"
                   " ORDER BY f.created_at, f.id LIMIT $3::int + 1),"
                   " numbered AS (SELECT *, row_number() OVER (ORDER BY created_at, id) AS rn FROM page)"
                   " SELECT json_build_object('functions', coalesce((SELECT json_agg(j ORDER BY rn)"
                   " FROM numbered WHERE rn <= $3::int), '[]'), 'next_cursor', (SELECT"
                   " (extract(epoch FROM created_at) * 1000000)::bigint || '.' || id FROM numbered"
                   " WHERE rn = $3::int AND (SELECT count(*) FROM numbered) > $3::int))::text",
                   3, params);
    if (!res)
        db_fail(resp, db, "listing functions");
    else
        reply_json_text(resp, 200, pg_get_text(res, 0, 0));
    PQclear(res);
    return HTTPD_DONE;
}

static httpd_result h_patch(httpd_req *req, httpd_resp *resp, void *ud)
{
    registry *r = ud;
    char key[FN_NAME_MAX], err[512], *patch = NULL;
    const char *params[3];
    cJSON *body = NULL;
    PGresult *res = NULL;
    pg_conn *db;

    if (fn_params(req, resp, key, params) != ML_OK || !(body = httpd_body_json(req, resp)))
        goto out;
    if (!cJSON_IsObject(body)) {
        httpd_resp_error(resp, 400, "invalid_body", "the request body must be a JSON object");
        goto out;
    }
    if (fields_check(body, true, err, sizeof(err)) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_field", "%s", err);
        goto out;
    }
    if (!(db = need_db(r, resp)) || !(patch = cJSON_PrintUnformatted(body)))
        goto out;
    params[2] = patch;
    /* members present in the patch replace the column; JSON null clears a nullable one */
    res = pg_query(db, "reg_patch",
                   "WITH u AS (UPDATE functions f SET"
                   " memory_mb = coalesce(($3::jsonb->>'memory_mb')::int, f.memory_mb),"
                   " timeout_s = coalesce(($3::jsonb->>'timeout_s')::int, f.timeout_s),"
                   " env = CASE WHEN $3::jsonb ? 'env' THEN $3::jsonb->'env' ELSE f.env END,"
                   " rate_limit = CASE WHEN $3::jsonb ? 'rate_limit'"
                   "   THEN nullif($3::jsonb->'rate_limit', 'null'::jsonb) ELSE f.rate_limit END,"
                   " concurrency = CASE WHEN $3::jsonb ? 'concurrency'"
                   "   THEN ($3::jsonb->>'concurrency')::int ELSE f.concurrency END,"
                   " max_retries = coalesce(($3::jsonb->>'max_retries')::int, f.max_retries),"
                   " max_event_age_s = coalesce(($3::jsonb->>'max_event_age_s')::int, f.max_event_age_s),"
                   " on_success_url = CASE WHEN $3::jsonb ? 'on_success_url'"
                   "   THEN $3::jsonb->>'on_success_url' ELSE f.on_success_url END,"
                   " on_failure_url = CASE WHEN $3::jsonb ? 'on_failure_url'"
                   "   THEN $3::jsonb->>'on_failure_url' ELSE f.on_failure_url END"
                   WHERE_FN " RETURNING f.*)"
                   " SELECT " API_JSON "::text, " CACHE_JSON
                   " FROM u f LEFT JOIN function_versions v ON v.function_id = f.id AND v.version = f.active_version",
                   3, params);
    if (!res) {
        db_fail(resp, db, "updating a function");
    } else if (PQntuples(res) == 0) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", key);
    } else {
        fn_info *f = malloc(sizeof(*f));
        const char *cache = pg_get_text(res, 0, 1);
        if (f && fn_parse(cache, strlen(cache), f) == ML_OK)
            publish_change(r, f->id, f->name, cache);
        free(f);
        reply_json_text(resp, 200, pg_get_text(res, 0, 0));
    }
out:
    PQclear(res);
    cJSON_free(patch);
    cJSON_Delete(body);
    return HTTPD_DONE;
}

/* Deletes the function and everything below it (ON DELETE CASCADE) and leaves a tombstone,
 * which keeps late build webhooks from bringing it back. By id, the tombstone is written
 * even when there was no row: the build side deletes a function whose queued event may not
 * have arrived yet, and that event must not create it afterwards. The cascade over a long
 * audit log may outlast the usual statement timeout, so this transaction gets a longer one.
 * ML_OK with *res holding (id, name, deleted: whether a row went) — no rows if there was no
 * such function and it was named by name. */
static int delete_fn(pg_conn *db, const char *const params[2], PGresult **res)
{
    *res = NULL;
    if (pg_begin(db) != ML_OK)
        return ML_ERR;
    if (pg_exec(db, "reg_delete_timeout", "SET LOCAL statement_timeout = '" DELETE_TIMEOUT "'", 0, NULL, NULL) != ML_OK ||
        (params[0] && pg_exec(db, "reg_delete_fnlock", FN_XACT_LOCK, 1, params, NULL) != ML_OK) ||
        !(*res = pg_query(db, "reg_delete",
                          "WITH d AS (DELETE FROM functions f" WHERE_FN " RETURNING f.id, f.name),"
                          " g AS (SELECT id, name, true AS deleted FROM d UNION ALL"
                          "  SELECT $1::uuid, '', false WHERE $1::uuid IS NOT NULL"
                          "  AND NOT EXISTS (SELECT 1 FROM d)),"
                          " t AS (INSERT INTO deleted_functions (id, name) SELECT id, name FROM g"
                          "  ON CONFLICT (id) DO NOTHING)"
                          " SELECT id, name, deleted FROM g",
                          2, params)) ||
        pg_commit(db) != ML_OK) {
        pg_rollback(db);
        PQclear(*res);
        *res = NULL;
        return ML_ERR;
    }
    return ML_OK;
}

static httpd_result h_delete(httpd_req *req, httpd_resp *resp, void *ud)
{
    registry *r = ud;
    char key[FN_NAME_MAX], tomb[256];
    const char *params[2];
    PGresult *res = NULL;
    pg_conn *db;

    if (fn_params(req, resp, key, params) != ML_OK || !(db = need_db(r, resp)))
        return HTTPD_DONE;
    if (delete_fn(db, params, &res) != ML_OK) {
        db_fail(resp, db, "deleting a function");
    } else if (PQntuples(res) == 0) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", key);
    } else {
        const char *id = pg_get_text(res, 0, 0), *name = pg_get_text(res, 0, 1);
        ml_snprintf(tomb, sizeof(tomb), "{\"deleted\":true,\"id\":\"%s\",\"name\":\"%s\"}", id, name);
        publish_change(r, id, name[0] ? name : NULL, tomb);
        ml_log_kv(ML_LOG_INFO, strcmp(pg_get_text(res, 0, 2), "t") == 0
                                   ? "function deleted" : "function tombstoned before it arrived",
                  "function_id", id, "name", name, NULL);
        resp->status = 204;
    }
    PQclear(res);
    return HTTPD_DONE;
}

size_t registry_routes(registry *r, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "POST", "/webhooks/build-status/{build_id}", h_webhook, r, 0, true },
        { "GET", "/functions", h_list, r, 0, true },
        { "GET", "/functions/{fn}", h_get, r, 0, true },
        { "PATCH", "/functions/{fn}", h_patch, r, 0, true },
        { "DELETE", "/functions/{fn}", h_delete, r, 0, true },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}

/* ------------------------------------------------------------------------------------ */
/* Life cycle                                                                           */

size_t registry_cfg_vars(registry_config *c, cfg_var *vars, size_t max)
{
    const cfg_var all[] = {
        { "MINILAMBDA_INTERNAL_WEBHOOK_SECRET", CFG_STR, NULL, 0, 0, NULL,
          "whsec_ secret signing build-status webhooks to the lambda-executor (both sides)",
          &c->webhook_secret, true },
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

static void tls_free(void *p)
{
    rds_free(p);
}

registry *registry_new(const registry_config *cfg, svc *s, char *err, size_t errlen)
{
    registry *r;

    if (!cfg->webhook_secret || webhook_secret_valid(cfg->webhook_secret) != ML_OK) {
        ml_snprintf(err, errlen, "MINILAMBDA_INTERNAL_WEBHOOK_SECRET must be whsec_ + base64 of 24..64 bytes");
        return NULL;
    }
    if (!cfg->redis_url || !cfg->thread_db || cfg->cache_max < 1) {
        ml_snprintf(err, errlen, "registry: redis_url, thread_db and cache_max are required");
        return NULL;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        ml_snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    if (pthread_key_create(&r->tls, tls_free) != 0) {
        free(r);
        ml_snprintf(err, errlen, "pthread_key_create failed");
        return NULL;
    }
    pthread_rwlock_init(&r->lock, NULL);
    pthread_mutex_init(&r->redis_lock, NULL);
    if (!(r->waits = fnwait_new(&(fnwait_config){ .fetch = wait_fetch, .fetch_ud = r,
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
    rds_conn *c;

    if (!r)
        return;
    fnwait_free(r->waits);
    /* this thread's client (other threads' are freed when they exit) */
    if ((c = pthread_getspecific(r->tls)) != NULL) {
        rds_free(c);
        pthread_setspecific(r->tls, NULL);
    }
    pthread_key_delete(r->tls);
    for (size_t b = 0; b < CACHE_BUCKETS; b++) {
        while (r->buckets[b])
            cache_unlink(r, &r->buckets[b]);
    }
    pthread_rwlock_destroy(&r->lock);
    pthread_mutex_destroy(&r->redis_lock);
    free(r);
}
