/* fncache.c — function configuration cache (see fncache.h). */
#include "fncache.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fnspec.h"
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

/* Joins an array of strings with ","; ML_ERR when it is not one or does not fit. */
static int join_list(const cJSON *arr, char *dst, size_t size)
{
    const cJSON *v;
    size_t used = 0;

    dst[0] = '\0';
    if (!arr || cJSON_IsNull(arr))
        return ML_OK;
    if (!cJSON_IsArray(arr))
        return ML_ERR;
    cJSON_ArrayForEach(v, arr) {
        if (!cJSON_IsString(v) ||
            ml_snprintf(dst + used, size - used, "%s%s", used ? "," : "", v->valuestring) != ML_OK)
            return ML_ERR;
        used += strlen(dst + used);
    }
    return ML_OK;
}

static double num_or(const cJSON *o, const char *name, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : dflt;
}

static void parse_cors(const cJSON *o, gw_fnurl_cors *c)
{
    const cJSON *cred = cJSON_GetObjectItemCaseSensitive(o, "allow_credentials");
    double age = num_or(o, "max_age", 0);

    memset(c, 0, sizeof(*c));
    if (!cJSON_IsObject(o))
        return;
    if (join_list(cJSON_GetObjectItemCaseSensitive(o, "allow_origins"), c->allow_origins,
                  sizeof(c->allow_origins)) != ML_OK ||
        join_list(cJSON_GetObjectItemCaseSensitive(o, "allow_methods"), c->allow_methods,
                  sizeof(c->allow_methods)) != ML_OK ||
        join_list(cJSON_GetObjectItemCaseSensitive(o, "allow_headers"), c->allow_headers,
                  sizeof(c->allow_headers)) != ML_OK ||
        join_list(cJSON_GetObjectItemCaseSensitive(o, "expose_headers"), c->expose_headers,
                  sizeof(c->expose_headers)) != ML_OK) {
        memset(c, 0, sizeof(*c)); /* half a CORS policy would allow what nobody configured */
        return;
    }
    c->max_age = age >= 0 && age <= 86400 * 365 ? (int64_t)age : 0;
    c->allow_credentials = cJSON_IsTrue(cred);
    c->enabled = true;
}

static void parse_batching(const cJSON *o, gw_fnurl_batching *b)
{
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(o, "key"), *k;

    memset(b, 0, sizeof(*b));
    if (!cJSON_IsObject(o))
        return;
    b->max_wait_ms = (int64_t)num_or(o, "max_wait_ms", 0);
    b->max_batch_size = (int64_t)num_or(o, "max_batch_size", 0);
    b->dynamic = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "dynamic"));
    b->rate_mid = num_or(o, "rate_mid", 0);
    b->rate_width = num_or(o, "rate_width", 0);
    if (!cJSON_IsArray(keys))
        keys = NULL;
    cJSON_ArrayForEach(k, keys) {
        if (b->nkeys == GW_FNURL_MAX_KEYS || !cJSON_IsString(k) ||
            ml_strlcpy(b->keys[b->nkeys], k->valuestring, GW_FNURL_KEY_MAX) != ML_OK) {
            memset(b, 0, sizeof(*b)); /* a key cut short would merge what should stay apart */
            return;
        }
        b->nkeys++;
    }
    b->enabled = b->max_wait_ms >= 1 && b->max_batch_size >= 2;
    if (!b->enabled)
        memset(b, 0, sizeof(*b));
}

static void parse_url_config(const cJSON *o, gw_fnurl_cfg *u)
{
    const cJSON *auth = cJSON_GetObjectItemCaseSensitive(o, "auth");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "qualifier");

    memset(u, 0, sizeof(*u));
    if (!cJSON_IsObject(o))
        return;
    /* anything but an explicit NONE needs a token: a typo must not make a URL public */
    u->auth = cJSON_IsString(auth) && strcmp(auth->valuestring, "NONE") == 0 ? GW_FNURL_AUTH_NONE
                                                                             : GW_FNURL_AUTH_JWT;
    if (cJSON_IsString(q) && ml_strlcpy(u->qualifier, q->valuestring, sizeof(u->qualifier)) != ML_OK)
    {
        memset(u, 0, sizeof(*u)); /* a qualifier that does not fit: no URL, not the wrong version */
        return;
    }
    parse_cors(cJSON_GetObjectItemCaseSensitive(o, "cors"), &u->cors);
    parse_batching(cJSON_GetObjectItemCaseSensitive(o, "batching"), &u->batching);
    u->enabled = true;
}

int64_t gw_fn_timeout_s(const gw_fn_info *info)
{
    return info->timeout_s > 0 ? info->timeout_s : fnspec_field_get(FNSPEC_TIMEOUT_S)->max;
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
    parse_url_config(field(doc, "url_config"), &out->url);
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
