/* fncache.c — function configuration cache (see fncache.h). */
#include "fncache.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ml.h"

#define DEFAULT_TTL_MS 5000
#define DEFAULT_MAX_ENTRIES 10000

/* The field at the top level, else under "config". */
static const cJSON *field(const cJSON *doc, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);

    if (!v)
        v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "config"), name);
    return v;
}

static void copy_string(const cJSON *v, char *dst, size_t size)
{
    if (cJSON_IsString(v) && strlen(v->valuestring) < size)
        ml_strlcpy(dst, v->valuestring, size);
}

static void parse_rate_limit(const cJSON *rl, gw_fn_info *out)
{
    const cJSON *rps = cJSON_GetObjectItemCaseSensitive(rl, "rps");
    const cJSON *burst = cJSON_GetObjectItemCaseSensitive(rl, "burst");

    if (!cJSON_IsObject(rl) || !cJSON_IsNumber(rps) || !(rps->valuedouble > 0))
        return;
    out->has_rate_limit = true;
    out->rps = rps->valuedouble;
    if (cJSON_IsNumber(burst) && burst->valuedouble >= 1 && burst->valuedouble < 1e9)
        out->burst = (int64_t)burst->valuedouble;
    else
        out->burst = out->rps >= 1e9 ? (int64_t)1e9 : (int64_t)ceil(out->rps);
}

int gw_fn_info_parse(const char *json, size_t len, gw_fn_info *out)
{
    cJSON *doc = cJSON_ParseWithLength(json, len);
    const cJSON *id, *timeout;

    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return ML_ERR;
    }
    out->status = 200;
    id = field(doc, "function_id");
    copy_string(id ? id : field(doc, "id"), out->id, sizeof(out->id));
    copy_string(field(doc, "name"), out->name, sizeof(out->name));
    timeout = field(doc, "timeout_s");
    if (cJSON_IsNumber(timeout) && timeout->valuedouble >= 1 && timeout->valuedouble <= 86400)
        out->timeout_s = (int64_t)timeout->valuedouble;
    parse_rate_limit(field(doc, "rate_limit"), out);
    cJSON_Delete(doc);
    return ML_OK;
}

void gw_fncache_init(gw_fncache *c, int64_t ttl_ms, size_t max_entries)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    c->ttl_ms = ttl_ms > 0 ? ttl_ms : DEFAULT_TTL_MS;
    c->max_entries = max_entries ? max_entries : DEFAULT_MAX_ENTRIES;
}

/* Removes the entries too old even to be used stale (all of them if all); lock held. */
static void purge(gw_fncache *c, int64_t now_ms, bool all)
{
    for (size_t i = 0; i < GW_FNCACHE_BUCKETS; i++) {
        gw_fncache_entry **pp = &c->buckets[i];
        while (*pp) {
            gw_fncache_entry *e = *pp;
            if (all || now_ms - e->stored_ms > GW_FNCACHE_MAX_STALE_MS) {
                *pp = e->next;
                free(e);
                c->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

void gw_fncache_free(gw_fncache *c)
{
    purge(c, 0, true);
    pthread_mutex_destroy(&c->lock);
}

static size_t bucket(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)(h % GW_FNCACHE_BUCKETS);
}

static gw_fncache_entry *find(gw_fncache *c, const char *fn)
{
    for (gw_fncache_entry *e = c->buckets[bucket(fn)]; e; e = e->next) {
        if (strcmp(e->key, fn) == 0)
            return e;
    }
    return NULL;
}

gw_fncache_hit gw_fncache_get(gw_fncache *c, const char *fn, int64_t now_ms, gw_fn_info *out)
{
    gw_fncache_hit hit = GW_FNCACHE_MISS;
    gw_fncache_entry *e;

    pthread_mutex_lock(&c->lock);
    e = find(c, fn);
    if (e && now_ms - e->stored_ms <= GW_FNCACHE_MAX_STALE_MS) {
        int64_t ttl = e->info.status == 404 ? GW_FNCACHE_NEGATIVE_TTL_MS : c->ttl_ms;
        if (ttl > c->ttl_ms)
            ttl = c->ttl_ms;
        *out = e->info;
        hit = now_ms - e->stored_ms < ttl ? GW_FNCACHE_FRESH : GW_FNCACHE_STALE;
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void gw_fncache_put(gw_fncache *c, const char *fn, const gw_fn_info *info, int64_t now_ms)
{
    size_t len = strlen(fn), b = bucket(fn);
    gw_fncache_entry *e;

    pthread_mutex_lock(&c->lock);
    e = find(c, fn);
    if (!e) {
        if (c->n >= c->max_entries)
            purge(c, now_ms, false);
        if (c->n >= c->max_entries)
            purge(c, now_ms, true);
        e = calloc(1, sizeof(*e) + len + 1);
        if (e) {
            memcpy(e->key, fn, len + 1);
            e->next = c->buckets[b];
            c->buckets[b] = e;
            c->n++;
        }
    }
    if (e) {
        e->info = *info;
        e->stored_ms = now_ms;
    }
    pthread_mutex_unlock(&c->lock);
}
