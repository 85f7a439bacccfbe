/* pool.c — warm instance pools (see pool.h). One mutex guards every pool: the critical
 * sections are a few pointer moves; starting and destroying instances happens outside it. */
#include "pool.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "prio.h"

#define MAX_ENV 256

struct pool_fn {
    struct pool_fn *next;
    char function_id[ML_UUID_LEN], name[72], generation[64];
    char executed[16];                     /* "$LATEST" or a published version number */
    int64_t version, max;
    sandbox_spec spec;                     /* strings below are owned */
    char *runtime, *interpreter, *handler, *code_dir, *runtimes_dir, *fname, *fversion;
    char **env;
    sandbox_instance **idle;               /* LIFO: the most recently used is warmest */
    int64_t *idle_since;
    size_t nidle, cap;
    int64_t busy, starting;
    bool draining;
    pthread_cond_t changed;
};

struct pool {
    pthread_mutex_t lock;
    pool_fn *fns;
    pool_config cfg;
    int64_t total;                         /* instances on this host (idle + busy + starting) */
    pthread_t reaper;
    bool stop;
    pthread_cond_t stop_cv;
    metric *m_instances, *m_cold_seconds, *m_cold_path;
};

static void fn_free(pool_fn *f)
{
    for (size_t i = 0; f->env && f->env[i]; i++)
        free(f->env[i]);
    free(f->env);
    free(f->runtime), free(f->interpreter), free(f->handler), free(f->code_dir), free(f->runtimes_dir);
    free(f->fname), free(f->fversion);
    free(f->idle);
    free(f->idle_since);
    pthread_cond_destroy(&f->changed);
    free(f);
}

static const char *executed_of(const pool_want *w)
{
    return w->executed_version ? w->executed_version : "$LATEST";
}

/* Deep-copies want into a new pool. NULL on OOM. */
static pool_fn *fn_new(const pool_want *w)
{
    pool_fn *f = calloc(1, sizeof(*f));
    size_t n = 0;

    if (!f)
        return NULL;
    pthread_cond_init(&f->changed, NULL);
    ml_strlcpy(f->function_id, w->function_id, sizeof(f->function_id));
    ml_strlcpy(f->name, w->function_name, sizeof(f->name));
    ml_strlcpy(f->generation, w->generation ? w->generation : "", sizeof(f->generation));
    ml_strlcpy(f->executed, executed_of(w), sizeof(f->executed));
    f->version = w->version;
    f->max = w->concurrency > 0 ? w->concurrency : 1;
    f->spec = w->spec;
    f->runtime = strdup(w->spec.runtime);
    f->interpreter = w->spec.interpreter ? strdup(w->spec.interpreter) : NULL;
    f->handler = strdup(w->spec.handler);
    f->code_dir = strdup(w->spec.code_dir);
    f->runtimes_dir = strdup(w->spec.runtimes_dir);
    f->fname = strdup(w->spec.function_name ? w->spec.function_name : w->function_name);
    f->fversion = strdup(w->spec.function_version ? w->spec.function_version : "");
    while (w->spec.env && w->spec.env[n] && n < MAX_ENV)
        n++;
    f->env = calloc(n + 1, sizeof(char *));
    if (!f->runtime || (w->spec.interpreter && !f->interpreter) || !f->handler || !f->code_dir || !f->runtimes_dir || !f->fname ||
        !f->fversion || !f->env)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (!(f->env[i] = strdup(w->spec.env[i])))
            goto fail;
    f->spec.runtime = f->runtime;
    f->spec.interpreter = f->interpreter;
    f->spec.handler = f->handler;
    f->spec.code_dir = f->code_dir;
    f->spec.runtimes_dir = f->runtimes_dir;
    f->spec.function_name = f->fname;
    f->spec.function_version = f->fversion;
    f->spec.env = (const char *const *)f->env;
    f->spec.log = NULL;   /* the caller's, per start (start_instance) */
    return f;
fail:
    fn_free(f);
    return NULL;
}

/* The same function and executed version: want's pool, or one it replaces. */
static bool fn_same_line(const pool_fn *f, const pool_want *w)
{
    return strcmp(f->function_id, w->function_id) == 0 && strcmp(f->executed, executed_of(w)) == 0;
}

static bool fn_matches(const pool_fn *f, const pool_want *w)
{
    return !f->draining && f->version == w->version && fn_same_line(f, w) &&
           strcmp(f->generation, w->generation ? w->generation : "") == 0;
}

/* Moves idle instances of f into out (capacity max) for destruction outside the lock. */
static size_t take_idle(pool *p, pool_fn *f, sandbox_instance **out, size_t max)
{
    size_t n = 0;

    while (f->nidle && n < max) {
        out[n++] = f->idle[--f->nidle];
        p->total--;
    }
    return n;
}

static void destroy_all(sandbox_instance **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sandbox_destroy(v[i]);
}

/* Finds or creates want's pool; pools of the same function and executed version with another
 * code revision or config start draining. Called with the lock held; victims receives their idle instances. */
static pool_fn *fn_get(pool *p, const pool_want *w, sandbox_instance **victims, size_t *nvictims,
                       size_t max)
{
    pool_fn *found = NULL;

    for (pool_fn *f = p->fns; f; f = f->next) {
        if (fn_matches(f, w))
            found = f;
        else if (!f->draining && fn_same_line(f, w)) {
            f->draining = true;
            *nvictims += take_idle(p, f, victims + *nvictims, max - *nvictims);
            ml_log_kv(ML_LOG_INFO, "draining an old pool", "function", f->name, NULL);
        }
    }
    if (!found && (found = fn_new(w)) != NULL) {
        found->next = p->fns;
        p->fns = found;
    }
    if (found)
        found->max = w->concurrency > 0 ? w->concurrency : 1;
    return found;
}

/* At the host cap, frees a slot by evicting some other pool's idle instance. */
static sandbox_instance *evict_one(pool *p, pool_fn *except)
{
    for (pool_fn *f = p->fns; f; f = f->next) {
        if (f != except && f->nidle) {
            p->total--;
            /* the oldest idle one: the bottom of the LIFO stack */
            sandbox_instance *victim = f->idle[0];
            memmove(f->idle, f->idle + 1, (f->nidle - 1) * sizeof(*f->idle));
            memmove(f->idle_since, f->idle_since + 1, (f->nidle - 1) * sizeof(*f->idle_since));
            f->nidle--;
            return victim;
        }
    }
    return NULL;
}

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ms)
{
    struct timespec ts;
    int64_t wall = ml_wall_ms() + (deadline_ms - ml_now_ms());

    ts.tv_sec = wall / 1000;
    ts.tv_nsec = (wall % 1000) * 1000000;
    pthread_cond_timedwait(cv, mu, &ts);
}

/* Instances of f's function in use on this host (busy or starting) in all its pools: every
 * executed version and a draining old $LATEST share the function's concurrency, as
 * reserved concurrency does in AWS. Called with the lock held. */
static int64_t fn_in_use(const pool *p, const pool_fn *f)
{
    int64_t n = 0;

    for (const pool_fn *g = p->fns; g; g = g->next)
        if (strcmp(g->function_id, f->function_id) == 0)
            n += g->busy + g->starting;
    return n;
}

/* Wakes the waiters of every pool of f's function (a slot freed in one is a slot for all).
 * Called with the lock held. */
static void fn_wake(pool *p, const pool_fn *f)
{
    for (pool_fn *g = p->fns; g; g = g->next)
        if (strcmp(g->function_id, f->function_id) == 0)
            pthread_cond_broadcast(&g->changed);
}

/* Starts a new instance for f (lock not held); what it prints while starting goes to log
 * (the acquiring invocation's). */
static int start_instance(pool *p, pool_fn *f, const sandbox_sink *log, pool_lease *out, char *err,
                          size_t errlen)
{
    int64_t t0 = ml_now_ms();
    sandbox_spec spec = f->spec;
    int rc;

    spec.log = log;
    rc = p->cfg.stems ? sandbox_start_from_stem(p->cfg.stems, &spec, &out->inst, err, errlen)
                      : SANDBOX_STEM_NONE;
    out->stem = rc != SANDBOX_STEM_NONE;
    if (!out->stem)
        rc = sandbox_start(&spec, &out->inst, err, errlen);
    metric_inc(p->m_cold_path, (const char *[]){ out->stem ? "stem" : "fresh" });

    pthread_mutex_lock(&p->lock);
    f->starting--;
    if (rc == ML_OK)
        f->busy++;
    else
        p->total--;
    fn_wake(p, f);
    pthread_mutex_unlock(&p->lock);
    out->cold = true;
    out->start_ms = ml_now_ms() - t0;
    if (rc == ML_OK)
        metric_observe(p->m_cold_seconds, (const char *[]){ f->runtime }, (double)out->start_ms / 1000.0);
    return rc;
}

pool_rc pool_acquire(pool *p, const pool_want *want, int64_t wait_ms, pool_lease *out,
                     char *err, size_t errlen)
{
    sandbox_instance *victims[64];
    size_t nvictims = 0;
    int64_t deadline = ml_now_ms() + wait_ms;
    pool_fn *f;
    pool_rc rc = POOL_SATURATED;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->lock);
    f = fn_get(p, want, victims, &nvictims, ML_ARRAY_LEN(victims));
    while (f) {
        if (f->nidle) {
            f->nidle--;
            out->inst = f->idle[f->nidle];
            f->busy++;
            rc = POOL_OK;
            break;
        }
        if (fn_in_use(p, f) < f->max) {
            sandbox_instance *evicted = p->total >= p->cfg.max_instances ? evict_one(p, f) : NULL;
            if (p->total < p->cfg.max_instances || evicted) {
                f->starting++;
                p->total++;
                out->fn = f;
                pthread_mutex_unlock(&p->lock);
                if (evicted)
                    sandbox_destroy(evicted);
                destroy_all(victims, nvictims);
                return start_instance(p, f, want->spec.log, out, err, errlen) == ML_OK ? POOL_OK : POOL_ERR;
            }
        }
        if (ml_now_ms() >= deadline)
            break;
        timed_wait(&f->changed, &p->lock, deadline);
    }
    out->fn = f;
    pthread_mutex_unlock(&p->lock);
    destroy_all(victims, nvictims);
    if (!f) {
        ml_snprintf_trunc(err, errlen, "out of memory");
        return POOL_ERR;
    }
    if (rc == POOL_SATURATED)
        ml_snprintf_trunc(err, errlen, "function '%s' is at its concurrency limit (%lld)",
                          want->function_name, (long long)want->concurrency);
    return rc;
}

void pool_release(pool *p, pool_lease *lease, bool reusable)
{
    pool_fn *f = lease->fn;
    sandbox_instance *destroy = NULL;

    if (!f || !lease->inst)
        return;
    pthread_mutex_lock(&p->lock);
    f->busy--;
    if (reusable && !f->draining && sandbox_alive(lease->inst)) {
        if (f->nidle == f->cap) {
            size_t cap = f->cap ? f->cap * 2 : 4;
            sandbox_instance **idle = realloc(f->idle, cap * sizeof(*idle));
            int64_t *since = idle ? realloc(f->idle_since, cap * sizeof(*since)) : NULL;
            if (idle)
                f->idle = idle;
            if (since) {
                f->idle_since = since;
                f->cap = cap;
            }
        }
        if (f->nidle < f->cap) {
            f->idle[f->nidle] = lease->inst;
            f->idle_since[f->nidle++] = ml_now_ms();
        } else {
            destroy = lease->inst;
        }
    } else {
        destroy = lease->inst;
    }
    if (destroy)
        p->total--;
    fn_wake(p, f);
    pthread_mutex_unlock(&p->lock);
    if (destroy)
        sandbox_destroy(destroy);
    lease->inst = NULL;
}

/* Reaps idle instances past the TTL and frees drained pools. */
static void reap(pool *p)
{
    sandbox_instance *victims[64];
    size_t n = 0;
    int64_t now = ml_now_ms();
    pool_fn **link;

    pthread_mutex_lock(&p->lock);
    for (link = &p->fns; *link;) {
        pool_fn *f = *link;
        size_t keep = 0;
        for (size_t i = 0; i < f->nidle; i++) {
            if (now - f->idle_since[i] >= p->cfg.idle_ttl_ms && n < ML_ARRAY_LEN(victims)) {
                victims[n++] = f->idle[i];
                p->total--;
            } else {
                f->idle[keep] = f->idle[i];
                f->idle_since[keep++] = f->idle_since[i];
            }
        }
        f->nidle = keep;
        if (f->nidle == 0 && f->busy == 0 && f->starting == 0 && f->draining) {
            *link = f->next;
            fn_free(f);
        } else {
            link = &f->next;
        }
    }
    pthread_mutex_unlock(&p->lock);
    destroy_all(victims, n);
}

static void *reaper_main(void *arg)
{
    pool *p = arg;

    ex_thread_background("pool-reaper");
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        timed_wait(&p->stop_cv, &p->lock, ml_now_ms() + 1000);
        pthread_mutex_unlock(&p->lock);
        reap(p);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

void pool_counts(pool *p, int64_t *idle, int64_t *busy, int64_t *starting)
{
    *idle = *busy = *starting = 0;
    pthread_mutex_lock(&p->lock);
    for (pool_fn *f = p->fns; f; f = f->next) {
        *idle += (int64_t)f->nidle;
        *busy += f->busy;
        *starting += f->starting;
    }
    pthread_mutex_unlock(&p->lock);
}

/* Per-function instance gauges, refreshed at each scrape. Replaced as a whole: pools of one
 * function (an old version draining, a new one) and functions past the label cap add up, and
 * a freed pool's series go away. */
static void collect(metrics_registry *reg, void *ud)
{
    static const char *const states[] = { "idle", "busy", "starting" };
    pool *p = ud;
    metric_sample *samples = NULL;
    const char *(*values)[2] = NULL;
    size_t n = 0, i = 0;

    ML_UNUSED(reg);
    pthread_mutex_lock(&p->lock);
    for (pool_fn *f = p->fns; f; f = f->next)
        n += ML_ARRAY_LEN(states);
    samples = calloc(n + 1, sizeof(*samples));
    values = calloc(n + 1, sizeof(*values));
    for (pool_fn *f = p->fns; f && samples && values; f = f->next) {
        const double counts[] = { (double)f->nidle, (double)f->busy, (double)f->starting };
        for (size_t k = 0; k < ML_ARRAY_LEN(states); k++, i++) {
            values[i][0] = metrics_function_label(f->name);
            values[i][1] = states[k];
            samples[i] = (metric_sample){ values[i], counts[k] };
        }
    }
    if (samples && values)
        metric_gauge_replace(p->m_instances, samples, i);
    pthread_mutex_unlock(&p->lock);
    free(samples);
    free(values);
}

pool *pool_new(const pool_config *cfg)
{
    static const double cold_buckets[] = { 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
                                           0.25, 0.5,  1,    2.5,  5 };
    pool *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->cfg = *cfg;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->stop_cv, NULL);
    if (cfg->metrics) {
        p->m_instances = metrics_gauge(cfg->metrics, "minilambda_pool_instances",
                                       "Sandbox instances by function and state.", "function,state");
        p->m_cold_seconds = metrics_histogram(cfg->metrics, "minilambda_cold_start_duration_seconds",
                                              "Time to start a sandboxed instance and load its handler.",
                                              "runtime", cold_buckets, ML_ARRAY_LEN(cold_buckets));
        p->m_cold_path = metrics_counter(cfg->metrics, "minilambda_cold_starts_total",
                                         "Cold starts by path: from a stem cell or fresh.", "path");
        metrics_add_collector(cfg->metrics, collect, p);
    }
    if (pthread_create(&p->reaper, NULL, reaper_main, p) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

void pool_free(pool *p)
{
    pool_fn *f;

    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->stop_cv);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->reaper, NULL);
    if (p->cfg.metrics)
        metrics_remove_collector(p->cfg.metrics, collect, p);
    while ((f = p->fns) != NULL) {
        p->fns = f->next;
        destroy_all(f->idle, f->nidle);
        fn_free(f);
    }
    free(p);
}
