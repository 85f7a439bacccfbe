/* tenants.c — access keys, namespace quotas and concurrency slots (see tenants.h). */
#include "tenants.h"

#include <cJSON.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fnspec.h"
#include "httpc.h"
#include "intauth.h"
#include "log.h"
#include "routes.h"
#include "sigv4.h"

#define CONC_KEY_PREFIX "ml:gw:conc:"
#define FETCH_MAX_BYTES (64u * 1024u)

/* Drops expired slots, then takes one if the namespace is below its limit; answers the
 * number in flight (taken) or -(number in flight) - 1 (refused). The key expires with its
 * last slot, so an idle namespace leaves nothing behind. */
static const char acquire_lua[] =
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])\n"
    "local n = redis.call('ZCARD', KEYS[1])\n"
    "if n >= tonumber(ARGV[4]) then return -n - 1 end\n"
    "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])\n"
    "local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')\n"
    "redis.call('PEXPIREAT', KEYS[1], last[2])\n"
    "return n + 1\n";

/* ---- the cache ---- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ULL;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void gw_tn_cache_init(gw_tn_cache *c, int64_t ttl_found_ms, int64_t ttl_missing_ms)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    c->ttl_found_ms = ttl_found_ms;
    c->ttl_missing_ms = ttl_missing_ms;
}

static void entry_free(gw_tn_entry *e)
{
    OPENSSL_cleanse(e->key.secret, sizeof(e->key.secret));
    free(e);
}

/* Caller holds the lock. */
static void clear_locked(gw_tn_cache *c)
{
    for (size_t i = 0; i < GW_TN_BUCKETS; i++) {
        while (c->buckets[i]) {
            gw_tn_entry *e = c->buckets[i];
            c->buckets[i] = e->next;
            entry_free(e);
        }
    }
    c->n = 0;
}

void gw_tn_cache_free(gw_tn_cache *c)
{
    pthread_mutex_lock(&c->lock);
    clear_locked(c);
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_destroy(&c->lock);
}

gw_tn_hit gw_tn_cache_get(gw_tn_cache *c, const char *id, int64_t now_ms, gw_tn_entry *out)
{
    gw_tn_hit hit = GW_TN_MISS;

    pthread_mutex_lock(&c->lock);
    for (gw_tn_entry *e = c->buckets[fnv1a(id) % GW_TN_BUCKETS]; e; e = e->next) {
        int64_t age = now_ms - e->stored_ms;

        if (strcmp(e->id, id) != 0)
            continue;
        if (age < (e->status == 200 ? c->ttl_found_ms : c->ttl_missing_ms))
            hit = GW_TN_FRESH;
        else if (age < GW_TN_MAX_STALE_MS)
            hit = GW_TN_STALE;
        if (hit != GW_TN_MISS) {
            memcpy(out, e, sizeof(*out)); /* the fixed part: id[] is not copied */
            out->next = NULL;
        }
        break;
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void gw_tn_cache_put(gw_tn_cache *c, const char *id, const gw_tn_entry *val, int64_t now_ms)
{
    size_t len = strlen(id);
    gw_tn_entry *e = malloc(sizeof(*e) + len + 1), **pp;

    if (!e)
        return; /* not cached: the next request asks again */
    memcpy(e, val, sizeof(*e));
    memcpy(e->id, id, len + 1);
    e->stored_ms = now_ms;
    pthread_mutex_lock(&c->lock);
    pp = &c->buckets[fnv1a(id) % GW_TN_BUCKETS];
    for (gw_tn_entry **q = pp; *q; q = &(*q)->next) {
        if (strcmp((*q)->id, id) == 0) {
            gw_tn_entry *old = *q;
            *q = old->next;
            entry_free(old);
            c->n--;
            break;
        }
    }
    if (c->n >= GW_TN_CACHE_MAX) /* bounded: a flood of made-up key ids costs one refill */
        clear_locked(c);
    e->next = *pp;
    *pp = e;
    c->n++;
    pthread_mutex_unlock(&c->lock);
}

/* ---- parsing ---- */

int gw_tn_akey_parse(const char *json, size_t len, gw_tn_akey *out)
{
    cJSON *doc = cJSON_ParseWithLength(json, len);
    const cJSON *sec = cJSON_GetObjectItemCaseSensitive(doc, "secret_access_key");
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(doc, "namespace");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(doc, "scopes");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(doc, "status");
    int rc = ML_ERR;

    memset(out, 0, sizeof(*out));
    if (!cJSON_IsString(sec) || !sec->valuestring[0] || !cJSON_IsString(ns) ||
        fnspec_ns_valid(ns->valuestring) != ML_OK || !cJSON_IsString(st))
        goto out;
    if (ml_strlcpy(out->secret, sec->valuestring, sizeof(out->secret)) != ML_OK ||
        ml_strlcpy(out->ns, ns->valuestring, sizeof(out->ns)) != ML_OK)
        goto out;
    /* a key's scopes never include admin: the admin API is for tokens only */
    out->scopes = gw_scopes_parse(cJSON_IsString(sc) ? sc->valuestring : NULL) & ~GW_SCOPE_ADMIN;
    if (out->scopes == 0 && !cJSON_IsString(sc))
        out->scopes = GW_SCOPE_INVOKE; /* the key's purpose when it says nothing */
    out->active = strcmp(st->valuestring, "active") == 0;
    rc = ML_OK;
out:
    if (rc != ML_OK)
        OPENSSL_cleanse(out->secret, sizeof(out->secret));
    cJSON_Delete(doc);
    return rc;
}

static int64_t quota(const cJSON *q, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(q, name);

    if (!cJSON_IsNumber(v) || v->valuedouble < 0)
        return GW_TN_UNLIMITED;
    return v->valuedouble > 1e15 ? (int64_t)1e15 : (int64_t)v->valuedouble;
}

int gw_tn_quotas_parse(const char *json, size_t len, gw_tn_quotas *out)
{
    cJSON *doc = cJSON_ParseWithLength(json, len);
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(doc, "quotas");

    out->max_functions = out->max_concurrency = out->builds_per_minute = GW_TN_UNLIMITED;
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return ML_ERR;
    }
    if (!cJSON_IsObject(q))
        q = doc;
    out->max_functions = quota(q, "max_functions");
    out->max_concurrency = quota(q, "max_concurrency");
    out->builds_per_minute = quota(q, "builds_per_minute");
    cJSON_Delete(doc);
    return ML_OK;
}

/* ---- life cycle ---- */

static void tls_http_free(void *h) { httpc_free(h); }
static void tls_redis_free(void *r) { rds_free(r); }

int gw_tenants_init(gw_tenants *t, gw_pool *executors, const char *redis_url,
                    int redis_timeout_ms)
{
    memset(t, 0, sizeof(*t));
    t->executors = executors;
    t->redis_timeout_ms = redis_timeout_ms;
    t->redis_enabled = redis_url && *redis_url &&
                       ml_strlcpy(t->redis_url, redis_url, sizeof(t->redis_url)) == ML_OK;
    rds_script_init(&t->acquire, acquire_lua);
    gw_tn_cache_init(&t->keys, GW_TN_KEY_TTL_MS, GW_TN_MISSING_TTL_MS);
    gw_tn_cache_init(&t->namespaces, GW_TN_NS_TTL_MS, GW_TN_NS_TTL_MS);
    if (pthread_key_create(&t->tls_http, tls_http_free) != 0)
        return ML_ERR;
    if (pthread_key_create(&t->tls_redis, tls_redis_free) != 0) {
        pthread_key_delete(t->tls_http);
        return ML_ERR;
    }
    t->ready = true;
    return ML_OK;
}

void gw_tenants_free(gw_tenants *t)
{
    if (!t->ready)
        return;
    /* this thread's connections (the others' went with their threads) */
    httpc_free(pthread_getspecific(t->tls_http));
    rds_free(pthread_getspecific(t->tls_redis));
    pthread_key_delete(t->tls_http);
    pthread_key_delete(t->tls_redis);
    gw_tn_cache_free(&t->keys);
    gw_tn_cache_free(&t->namespaces);
    t->ready = false;
}

/* ---- executor lookups ---- */

/* This thread's HTTP client (created on first use); NULL when out of memory. */
static httpc *thread_http(gw_tenants *t)
{
    httpc *h = pthread_getspecific(t->tls_http);

    if (!h && (h = httpc_new()) && pthread_setspecific(t->tls_http, h) != 0) {
        httpc_free(h);
        h = NULL;
    }
    return h;
}

/* GET path on an executor that can read, as the gateway itself (internal token), acting in
 * ns. ML_OK with *status and body when an answer came. */
static int fetch(gw_tenants *t, const char *path, const char *ns, long *status, ml_buf *body,
                 char *err, size_t errlen)
{
    gw_admit how;
    gw_instance *in = gw_pool_pick(t->executors, GW_CAP_READ, NULL, ml_now_ms(), &how);
    httpc *h = thread_http(t);
    char url[GW_URL_MAX + 256], nsline[sizeof(TENANT_HEADER) + TENANT_MAX + 2];
    const char *headers[3] = { ml_intauth_header_line(), nsline, NULL };
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    int rc = ML_ERR;

    if (!in || !h) {
        ml_snprintf_trunc(err, errlen, "no lambda-executor can read right now");
        if (in)
            gw_pool_report(in, how, true, ml_now_ms()); /* not its fault */
        return ML_ERR;
    }
    if (ml_snprintf(url, sizeof(url), "%s%s", in->base_url, path) != ML_OK ||
        ml_snprintf(nsline, sizeof(nsline), TENANT_HEADER ": %s", ns) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "lookup URL too long");
        gw_pool_report(in, how, true, ml_now_ms());
        return ML_ERR;
    }
    if (!headers[0] || !*headers[0]) { /* insecure mode: no internal token to send */
        headers[0] = nsline;
        headers[1] = NULL;
    }
    req.url = url;
    req.headers = headers;
    req.timeout_ms = GW_TN_FETCH_TIMEOUT_MS;
    req.connect_timeout_ms = GW_TN_FETCH_TIMEOUT_MS;
    req.max_body = FETCH_MAX_BYTES;
    if (httpc_do(h, &req, &resp) == ML_OK && resp.status < 500) {
        *status = resp.status;
        *body = resp.body;
        memset(&resp.body, 0, sizeof(resp.body));
        rc = ML_OK;
    } else {
        ml_snprintf_trunc(err, errlen, "%s", resp.status ? "server error" : httpc_error(h));
    }
    gw_pool_report(in, how, rc == ML_OK, ml_now_ms());
    httpc_response_free(&resp);
    return rc;
}

/* Access key ids as the executor mints them: short, URL-safe (checked before a lookup so
 * a made-up id never becomes a path). */
static bool akid_valid(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n < GW_TN_KEY_ID_MAX &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == n;
}

/* Asks the executor about akid and caches the answer; ML_ERR when no answer came. */
static int key_fetch(gw_tenants *t, const char *akid, gw_tn_entry *e, char *err, size_t errlen)
{
    char path[GW_TN_KEY_ID_MAX + 32];
    ml_buf body = { 0 };
    long status = 0;
    int rc = ML_ERR;

    memset(e, 0, sizeof(*e));
    if (ml_snprintf(path, sizeof(path), "/internal/keys/%s", akid) != ML_OK ||
        fetch(t, path, TENANT_DEFAULT, &status, &body, err, errlen) != ML_OK)
        goto out;
    if (status == 200 && gw_tn_akey_parse(body.data, body.len, &e->key) == ML_OK)
        e->status = 200;
    else if (status == 404)
        e->status = 404;
    else {
        ml_snprintf_trunc(err, errlen, "unexpected answer %ld", status);
        goto out;
    }
    gw_tn_cache_put(&t->keys, akid, e, ml_now_ms());
    rc = ML_OK;
out:
    if (body.data)
        OPENSSL_cleanse(body.data, body.len);
    ml_buf_free(&body);
    return rc;
}

int gw_tn_key_lookup(gw_tenants *t, const char *akid, gw_tn_akey *out, char *err, size_t errlen)
{
    gw_tn_entry e;
    int rc = ML_ERR;

    if (!akid_valid(akid)) {
        ml_snprintf_trunc(err, errlen, "unknown access key id");
        return ML_ERR;
    }
    if (gw_tn_cache_get(&t->keys, akid, ml_now_ms(), &e) != GW_TN_FRESH &&
        key_fetch(t, akid, &e, err, errlen) != ML_OK)
        goto out; /* stale knowledge of a credential is not used */
    if (e.status != 200 || !e.key.active) {
        ml_snprintf_trunc(err, errlen, "%s access key id",
                          e.status == 200 ? "disabled" : "unknown");
        goto out;
    }
    *out = e.key;
    rc = ML_OK;
out:
    OPENSSL_cleanse(&e, sizeof(e));
    return rc;
}

void gw_tn_quotas_get(gw_tenants *t, const char *ns, gw_tn_quotas *out)
{
    gw_tn_entry e;
    gw_tn_hit hit = gw_tn_cache_get(&t->namespaces, ns, ml_now_ms(), &e);
    char path[TENANT_MAX + 32], err[256];
    ml_buf body = { 0 };
    long status = 0;

    if (hit == GW_TN_FRESH) {
        *out = e.q;
        return;
    }
    memset(&e, 0, sizeof(e));
    if (ml_snprintf(path, sizeof(path), "/admin/namespaces/%s", ns) == ML_OK &&
        fetch(t, path, ns, &status, &body, err, sizeof(err)) == ML_OK && status == 200 &&
        gw_tn_quotas_parse(body.data, body.len, &e.q) == ML_OK) {
        e.status = 200;
        gw_tn_cache_put(&t->namespaces, ns, &e, ml_now_ms());
        *out = e.q;
    } else if (hit == GW_TN_STALE) {
        gw_tn_entry old;
        /* keep the last known quotas for another TTL: not one lookup per request */
        if (gw_tn_cache_get(&t->namespaces, ns, ml_now_ms(), &old) != GW_TN_MISS) {
            gw_tn_cache_put(&t->namespaces, ns, &old, ml_now_ms());
            *out = old.q;
        }
    } else {
        /* never known (or an executor without the admin API: 404): no limits, asked again
         * after a TTL, not on every request */
        e.q.max_functions = e.q.max_concurrency = e.q.builds_per_minute = GW_TN_UNLIMITED;
        e.status = 200;
        gw_tn_cache_put(&t->namespaces, ns, &e, ml_now_ms());
        *out = e.q;
        if (status != 404)
            ml_log_kv(ML_LOG_WARN, "namespace quotas unknown: no limits", "namespace", ns,
                      "status", status ? "unexpected answer" : "no answer", NULL);
    }
    ml_buf_free(&body);
}

/* ---- concurrency ---- */

static rds_conn *thread_redis(gw_tenants *t)
{
    rds_conn *r = pthread_getspecific(t->tls_redis);
    rds_options o = { t->redis_timeout_ms, t->redis_timeout_ms };
    char err[256];

    if (!r && (r = rds_new(t->redis_url, &o, err, sizeof(err))) &&
        pthread_setspecific(t->tls_redis, r) != 0) {
        rds_free(r);
        r = NULL;
    }
    return r;
}

/* Unix time in ms: slots are compared across gateways, so not a monotonic clock. */
static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int gw_tn_conc_acquire(gw_tenants *t, const char *ns, const char *id, int64_t limit,
                       int64_t hold_ms, int64_t *in_flight)
{
    rds_conn *r = t->redis_enabled ? thread_redis(t) : NULL;
    char key[sizeof(CONC_KEY_PREFIX) + TENANT_MAX], now[24], exp[24], lim[24];
    const char *keys[1] = { key }, *args[4] = { now, exp, id, lim };
    redisReply *rep;
    int rc = -1;

    *in_flight = 0;
    if (!r || ml_snprintf(key, sizeof(key), CONC_KEY_PREFIX "%s", ns) != ML_OK ||
        ml_snprintf(now, sizeof(now), "%" PRId64, wall_ms()) != ML_OK ||
        ml_snprintf(exp, sizeof(exp), "%" PRId64, wall_ms() + hold_ms) != ML_OK ||
        ml_snprintf(lim, sizeof(lim), "%" PRId64, limit) != ML_OK)
        return -1;
    rep = rds_evalsha(r, &t->acquire, 1, keys, 4, args);
    if (rep && rep->type == REDIS_REPLY_INTEGER) {
        rc = rep->integer > 0 ? 1 : 0;
        *in_flight = rep->integer > 0 ? rep->integer : -rep->integer - 1;
    } else {
        ml_log_kv(ML_LOG_WARN, "concurrency quota not enforced: Redis cannot decide",
                  "namespace", ns, "error", rep ? "unexpected reply" : rds_error(r), NULL);
    }
    if (rep)
        freeReplyObject(rep);
    return rc;
}

void gw_tn_conc_release(gw_tenants *t, const char *ns, const char *id)
{
    rds_conn *r = t->redis_enabled ? thread_redis(t) : NULL;
    char key[sizeof(CONC_KEY_PREFIX) + TENANT_MAX];
    const char *argv[3] = { "ZREM", key, id };
    redisReply *rep;

    if (!r || ml_snprintf(key, sizeof(key), CONC_KEY_PREFIX "%s", ns) != ML_OK)
        return;
    rep = rds_command(r, 3, argv, NULL);
    if (rep)
        freeReplyObject(rep);
}
