/* qualifier.c — resolves an invocation's qualifier into the code and configuration that run
 * (see versions.h), with a per-process cache so that a warm invoke by version or alias does
 * not ask Postgres every time: a version's snapshot is immutable (kept VER_SNAPSHOT_TTL_MS,
 * which only bounds how long another executor's delete goes unnoticed here); an alias's
 * target is kept for the registry's local TTL and dropped at once on a local change. The cache
 * is a fixed table of slots (a collision overwrites), guarded by one mutex held only for
 * copies; database reads happen outside it. */
#include "versions-int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define VER_SNAPSHOT_TTL_MS 60000

ver_ctx *qualifier_new(registry *reg, int64_t alias_ttl_ms, deps *(*thread_deps)(void *ud), void *ud)
{
    ver_ctx *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->reg = reg;
    c->alias_ttl_ms = alias_ttl_ms;
    c->thread_deps = thread_deps;
    c->ud = ud;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void qualifier_free(ver_ctx *ctx)
{
    if (!ctx)
        return;
    for (size_t i = 0; i < VCACHE_SLOTS; i++)
        free(ctx->slots[i].snap);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

registry *ver_registry(ver_ctx *ctx)
{
    return ctx->reg;
}

pg_conn *ver_need_db(ver_ctx *ctx, httpd_resp *resp)
{
    deps *d = ctx->thread_deps(ctx->ud);

    if (resp) {
        if (deps_db_acquire_http(d, resp, "function database") != ML_OK)
            return NULL;
    } else if (!d || deps_db_acquire(d) != PGPOOL_OK) {
        return NULL;
    }
    if (!d->db) { /* unpooled and the thread has no connection */
        deps_db_release(d);
        if (resp) {
            httpd_resp_header(resp, "Retry-After", "5");
            httpd_resp_error(resp, 503, "service_unavailable", "cannot reach the function database");
        }
    }
    return d->db;
}

void ver_put_db(ver_ctx *ctx)
{
    deps *d = ctx->thread_deps(ctx->ud);

    if (d)
        deps_db_release(d);
}

/* FNV-1a of the function id and the alias name or version number: the slot. */
static size_t slot_of(const char *fn_id, const char *alias, int64_t n)
{
    uint64_t h = 1469598103934665603ULL;

    for (const char *p = fn_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ (alias[0] ? 0xa1u : 0x5eu)) * 1099511628211ULL;
    for (const char *p = alias; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ (uint64_t)n) * 1099511628211ULL;
    return (size_t)(h & (VCACHE_SLOTS - 1));
}

/* Copies a fresh cached alias target into *out; false when not cached or too old. */
static bool alias_cached(ver_ctx *ctx, const char *fn_id, const char *name, ver_alias *out)
{
    vcache_entry *e = &ctx->slots[slot_of(fn_id, name, 0)];
    bool hit;

    pthread_mutex_lock(&ctx->lock);
    hit = e->used && e->is_alias && strcmp(e->fn_id, fn_id) == 0 && strcmp(e->alias, name) == 0 &&
          ml_now_ms() - e->fetched_ms < ctx->alias_ttl_ms;
    if (hit)
        *out = e->target;
    pthread_mutex_unlock(&ctx->lock);
    return hit;
}

static void alias_store(ver_ctx *ctx, const char *fn_id, const char *name, const ver_alias *t, int64_t t0)
{
    vcache_entry *e = &ctx->slots[slot_of(fn_id, name, 0)];

    pthread_mutex_lock(&ctx->lock);
    free(e->snap);
    *e = (vcache_entry){ .used = true, .is_alias = true, .fetched_ms = t0, .target = *t };
    ml_strlcpy(e->fn_id, fn_id, sizeof(e->fn_id));
    ml_strlcpy(e->alias, name, sizeof(e->alias));
    pthread_mutex_unlock(&ctx->lock);
}

static bool snap_cached(ver_ctx *ctx, const char *fn_id, int64_t n, ver_snapshot *out)
{
    vcache_entry *e = &ctx->slots[slot_of(fn_id, "", n)];
    bool hit;

    pthread_mutex_lock(&ctx->lock);
    hit = e->used && !e->is_alias && e->snap && e->snap->version == n && strcmp(e->fn_id, fn_id) == 0 &&
          ml_now_ms() - e->fetched_ms < VER_SNAPSHOT_TTL_MS;
    if (hit)
        *out = *e->snap;
    pthread_mutex_unlock(&ctx->lock);
    return hit;
}

/* Keeps a copy of s (nothing when out of memory: the next invoke reads it again). */
static void snap_store(ver_ctx *ctx, const char *fn_id, const ver_snapshot *s, int64_t t0)
{
    vcache_entry *e = &ctx->slots[slot_of(fn_id, "", s->version)];
    ver_snapshot *copy = malloc(sizeof(*copy));

    if (!copy)
        return;
    *copy = *s;
    pthread_mutex_lock(&ctx->lock);
    free(e->snap);
    *e = (vcache_entry){ .used = true, .fetched_ms = t0, .snap = copy };
    ml_strlcpy(e->fn_id, fn_id, sizeof(e->fn_id));
    pthread_mutex_unlock(&ctx->lock);
}

void qualifier_forget(ver_ctx *ctx, const char *fn_id, int64_t n)
{
    pthread_mutex_lock(&ctx->lock);
    for (size_t i = 0; i < VCACHE_SLOTS; i++) {
        vcache_entry *e = &ctx->slots[i];
        if (e->used && strcmp(e->fn_id, fn_id) == 0 && (e->is_alias || (n > 0 && e->snap && e->snap->version == n))) {
            free(e->snap);
            *e = (vcache_entry){ 0 };
        }
    }
    pthread_mutex_unlock(&ctx->lock);
}

/* Alias name's target: cache, else Postgres. QR_OK, QR_NOT_FOUND, QR_ERR. */
static qual_rc alias_target(ver_ctx *ctx, const char *fn_id, const char *name, ver_alias *out)
{
    int64_t t0 = ml_now_ms();
    pg_conn *db;
    int rc;

    if (alias_cached(ctx, fn_id, name, out))
        return QR_OK;
    if (!(db = ver_need_db(ctx, NULL)))
        return QR_ERR;
    rc = ver_store_alias(db, fn_id, name, out);
    ver_put_db(ctx);
    if (rc == ML_OK)
        alias_store(ctx, fn_id, name, out, t0);
    return rc == ML_OK ? QR_OK : rc == REGISTRY_NOT_FOUND ? QR_NOT_FOUND : QR_ERR;
}

/* Version n's snapshot into *out (heap: it is large). */
static qual_rc snapshot(ver_ctx *ctx, const char *fn_id, int64_t n, ver_snapshot *out)
{
    int64_t t0 = ml_now_ms();
    pg_conn *db;
    int rc;

    if (snap_cached(ctx, fn_id, n, out))
        return QR_OK;
    if (!(db = ver_need_db(ctx, NULL)))
        return QR_ERR;
    rc = ver_store_snapshot(db, fn_id, n, out);
    ver_put_db(ctx);
    if (rc == ML_OK)
        snap_store(ctx, fn_id, out, t0);
    return rc == ML_OK ? QR_OK : rc == REGISTRY_NOT_FOUND ? QR_NOT_FOUND : QR_ERR;
}

/* The version's code and configuration replace $LATEST's in f; what stays is the function's
 * (identity, state, concurrency, retries, destinations). generation 0: a published
 * version's pool never drains on a change of the function. */
static void overlay(fn_info *f, const ver_snapshot *s)
{
    f->version = s->code_revision;
    ml_strlcpy(f->runtime, s->runtime, sizeof(f->runtime));
    ml_strlcpy(f->handler, s->handler, sizeof(f->handler));
    ml_strlcpy(f->artifact_prefix, s->artifact_prefix, sizeof(f->artifact_prefix));
    ml_strlcpy(f->artifact_sha256, s->artifact_sha256, sizeof(f->artifact_sha256));
    f->artifact_size = s->artifact_size;
    f->memory_mb = s->memory_mb;
    f->timeout_s = s->timeout_s;
    f->network = s->network;
    f->env_count = s->env_count;
    f->env_len = s->env_len;
    memcpy(f->env, s->env, s->env_len);
    f->generation = 0;
}

qual_rc qualifier_resolve(ver_ctx *ctx, fn_info *f, const char *q, char executed[VER_EXEC_MAX],
                          char alias[VER_ALIAS_MAX])
{
    int64_t n = 0;
    qual_kind k = ver_qualifier_kind(q, &n);
    ver_snapshot *s;
    qual_rc rc;

    alias[0] = '\0';
    ml_strlcpy(executed, VER_LATEST, VER_EXEC_MAX);
    if (k == QUAL_INVALID)
        return QR_INVALID;
    if (k == QUAL_ALIAS) {
        ver_alias t;
        if ((rc = alias_target(ctx, f->id, q, &t)) != QR_OK)
            return rc;
        ml_strlcpy(alias, q, VER_ALIAS_MAX);
        n = ver_pick(t.version, &t.routing, ver_rand01());
        if (n == 0)
            return QR_OK; /* the alias names $LATEST */
    } else if (k == QUAL_LATEST) {
        return QR_OK;
    }
    if (!(s = malloc(sizeof(*s))))
        return QR_ERR;
    rc = snapshot(ctx, f->id, n, s);
    if (rc == QR_OK) {
        overlay(f, s);
        if (ml_snprintf(executed, VER_EXEC_MAX, "%lld", (long long)n) != ML_OK)
            rc = QR_ERR;
    }
    free(s);
    return rc;
}

qual_rc qualifier_main_version(ver_ctx *ctx, const char *fn_id, const char *q, int64_t *n)
{
    qual_kind k = ver_qualifier_kind(q, n);
    ver_alias t;
    qual_rc rc;

    if (k == QUAL_INVALID)
        return QR_INVALID;
    if (k == QUAL_LATEST)
        *n = 0;
    if (k != QUAL_ALIAS)
        return QR_OK;
    if ((rc = alias_target(ctx, fn_id, q, &t)) == QR_OK)
        *n = t.version;
    return rc;
}
