/* batch.c — collecting function URL requests into micro-batches (batch.h): the per-loop
 * keys with their arrival rate, each key's open batch and its window, every request's own
 * deadline, and the idle keys' sweep. Sending a batch and routing its answer: batch_send.c;
 * answering and freeing items and batches (what both use): batch_item.c. */
#include "batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batch-int.h"
#include "ml.h"

#define RATE_TAU_S 1.0     /* the arrival rate is an EWMA over about a second */
#define KEY_IDLE_MS 30000  /* a key without traffic for this long is freed */
#define SWEEP_MS 5000
#define MIN_SLOTS 64

/* One batch key on one loop. */
struct gw_bkey {
    gw_bkey *next;           /* hash chain */
    uint64_t hash;
    char *name;              /* owned */
    double rate;             /* requests/s, as of last_ms */
    int64_t last_ms;
    gw_bbatch *open;         /* its open batch, or NULL */
};

/* The batcher's state on one loop (gw_loop_user). */
typedef struct bstate {
    gw_timer sweep;          /* frees idle keys; cancelled: ends everything (the proxy stops) */
    gw_bkey **slots;
    size_t nslots, nkeys;
} bstate;

double gw_batch_dynamic_wait_ms(const gw_fnurl_batching *cfg, double rate)
{
    double max = (double)cfg->max_wait_ms, z;

    if (max <= 0)
        return 0;
    if (!(cfg->rate_width > 0)) /* no width: a step at rate_mid */
        return rate >= cfg->rate_mid ? max : 0;
    z = -(rate - cfg->rate_mid) / cfg->rate_width;
    return z > 700 ? 0 : max / (1 + exp(z)); /* exp(>709) overflows; the window is 0 anyway */
}

/* ---- keys ---- */

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Appends one dimension's value, length-prefixed ("-" when absent), so that no value can
 * imitate a boundary. */
static int key_dim(ml_buf *b, const char *v)
{
    if (!v)
        return ml_buf_append_str(b, "\n-");
    return ml_buf_printf(b, "\n%zu:%s", strlen(v), v);
}

int gw_batch_key(const gw_batch_target *t, gw_batch_lookup_fn lookup, void *ud, char **out)
{
    ml_buf b = { 0 };
    int rc = ML_ERR;
    size_t nkeys = t->cfg ? t->cfg->nkeys : 0;

    *out = NULL;
    if (ml_buf_printf(&b, "%s/%s:%s", t->ns, t->fn, t->qualifier ? t->qualifier : "") != ML_OK)
        goto out;
    for (size_t i = 0; i < nkeys && i < GW_FNURL_MAX_KEYS; i++) {
        const char *k = t->cfg->keys[i], *v;

        if (strncmp(k, "header:", 7) == 0 && k[7])
            v = lookup(ud, "header", k + 7);
        else if (strncmp(k, "query:", 6) == 0 && k[6])
            v = lookup(ud, "query", k + 6);
        else if (strcmp(k, "method") == 0 || strcmp(k, "path") == 0)
            v = lookup(ud, k, "");
        else
            goto out; /* the URL config's validation lets no other kind through */
        if (key_dim(&b, v) != ML_OK)
            goto out;
    }
    *out = ml_buf_steal(&b, NULL);
    rc = *out ? ML_OK : ML_ERR;
out:
    ml_buf_free(&b);
    return rc;
}

static void key_free(gw_bkey *k)
{
    if (!k)
        return;
    free(k->name);
    free(k);
}

/* Doubles the table (keeps the old one when out of memory: chains just grow longer). */
static void slots_grow(bstate *st)
{
    size_t n = st->nslots * 2;
    gw_bkey **slots = calloc(n, sizeof(*slots));

    if (!slots)
        return;
    for (size_t i = 0; i < st->nslots; i++) {
        while (st->slots[i]) {
            gw_bkey *k = st->slots[i];
            st->slots[i] = k->next;
            k->next = slots[k->hash & (n - 1)];
            slots[k->hash & (n - 1)] = k;
        }
    }
    free(st->slots);
    st->slots = slots;
    st->nslots = n;
}

/* The key named name, created when new; NULL when out of memory. */
static gw_bkey *key_get(bstate *st, const char *name)
{
    size_t len = strlen(name);
    uint64_t h = fnv1a(name, len);
    gw_bkey *k;

    for (k = st->slots[h & (st->nslots - 1)]; k; k = k->next) {
        if (k->hash == h && strcmp(k->name, name) == 0)
            return k;
    }
    if (st->nkeys >= st->nslots * 2)
        slots_grow(st);
    if (!(k = calloc(1, sizeof(*k))) || !(k->name = strdup(name))) {
        free(k);
        return NULL;
    }
    k->hash = h;
    k->next = st->slots[h & (st->nslots - 1)];
    st->slots[h & (st->nslots - 1)] = k;
    st->nkeys++;
    return k;
}

/* One more arrival: the rate decays over the gap, then counts it (in requests/s). */
static void key_arrival(gw_bkey *k, int64_t now)
{
    double dt = k->last_ms ? (double)(now - k->last_ms) / 1000.0 : 0;

    k->rate = k->rate * exp(-(dt > 0 ? dt : 0) / RATE_TAU_S) + 1.0 / RATE_TAU_S;
    k->last_ms = now;
}

static void on_deadline(gw_loop *l, gw_timer *t, bool cancelled)
{
    gw_bitem *it = (gw_bitem *)((char *)t - offsetof(gw_bitem, deadline));
    gw_fnout out = { .kind = GW_FNOUT_TIMEOUT,
                     .message = "the request's deadline passed before its batch answered" };

    ML_UNUSED(l);
    if (cancelled) {
        out = (gw_fnout){ .kind = GW_FNOUT_GATEWAY, .status = 503, .code = "shutting_down",
                          .message = "the gateway is shutting down" };
    }
    gw_bitem_answer(it, &out);
}

/* The window ended, or the batch is full (armed for now), or the proxy stops. */
static void on_window(gw_loop *l, gw_timer *t, bool cancelled)
{
    gw_bbatch *b = (gw_bbatch *)((char *)t - offsetof(gw_bbatch, window));

    if (b->key) {
        b->key->open = NULL;
        b->key = NULL;
    }
    if (cancelled) {
        gw_bbatch_fail_gw(b, 503, "shutting_down", "the gateway is shutting down");
        gw_bbatch_free(b);
        return;
    }
    gw_bbatch_send(l, b);
}

/* A new open batch for k, its target copied, its window armed. NULL when out of memory. */
static gw_bbatch *batch_open(gw_loop *l, const gw_batch_target *t, gw_bkey *k, int64_t now)
{
    gw_bbatch *b = calloc(1, sizeof(*b));
    double wait;

    if (!b)
        return NULL;
    b->loop = l;
    b->pool = t->pool;
    b->cfg = *t->cfg;
    b->function_timeout_s = t->function_timeout_s;
    b->margin_s = t->margin_s;
    b->connect_timeout_ms = t->connect_timeout_ms;
    b->max_response = t->max_response;
    b->opened_ms = now;
    b->ns = strdup(t->ns);
    b->fn = strdup(t->fn);
    b->qualifier = strdup(t->qualifier ? t->qualifier : "");
    if (!b->ns || !b->fn || !b->qualifier) {
        gw_bbatch_free(b);
        return NULL;
    }
    wait = b->cfg.dynamic ? gw_batch_dynamic_wait_ms(&b->cfg, k->rate) : (double)b->cfg.max_wait_ms;
    b->window.fn = on_window;
    gw_loop_timer_set(l, &b->window, now + (int64_t)ceil(wait > 0 ? wait : 0));
    b->key = k;
    k->open = b;
    return b;
}

/* A new item (event and id copied); NULL when out of memory or event is not an object. */
static gw_bitem *item_new(const char *event, size_t len, const char *id, gw_batch_done_fn done,
                          void *ud)
{
    size_t skip = 0;
    gw_bitem *it;

    while (skip < len && (event[skip] == ' ' || event[skip] == '\t' || event[skip] == '\r' ||
                          event[skip] == '\n'))
        skip++;
    if (skip >= len || event[skip] != '{' || !(it = calloc(1, sizeof(*it))))
        return NULL;
    it->event = strndup(event, len);
    it->id = strdup(id);
    it->event_len = len;
    it->done = done;
    it->ud = ud;
    it->deadline.fn = on_deadline;
    if (!it->event || !it->id) {
        free(it->event);
        free(it->id);
        free(it);
        return NULL;
    }
    return it;
}

static int batch_push(gw_bbatch *b, gw_bitem *it)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        gw_bitem **items = realloc(b->items, cap * sizeof(*items));
        if (!items)
            return ML_ERR;
        b->items = items;
        b->cap = cap;
    }
    b->items[b->n++] = it;
    it->batch = b;
    b->live++;
    return ML_OK;
}

/* ---- the per-loop state ---- */

/* The proxy stops (the sweep timer runs cancelled): every open batch's requests end with
 * 503 and everything is freed. Detached first, so that a done that adds anew starts a
 * fresh state (ended in turn by the proxy's remaining cancelled timers). */
static void state_end(gw_loop *l, bstate *st)
{
    gw_loop_set_user(l, NULL);
    for (size_t i = 0; i < st->nslots; i++) {
        while (st->slots[i]) {
            gw_bkey *k = st->slots[i];
            gw_bbatch *b = k->open;
            st->slots[i] = k->next;
            if (b) {
                k->open = NULL;
                b->key = NULL;
                gw_bbatch_fail_gw(b, 503, "shutting_down", "the gateway is shutting down");
                gw_bbatch_free(b);
            }
            key_free(k);
        }
    }
    free(st->slots);
    free(st);
}

static void on_sweep(gw_loop *l, gw_timer *t, bool cancelled)
{
    bstate *st = (bstate *)((char *)t - offsetof(bstate, sweep));
    int64_t now = ml_now_ms();

    if (cancelled) {
        state_end(l, st);
        return;
    }
    for (size_t i = 0; i < st->nslots; i++) {
        for (gw_bkey **pp = &st->slots[i]; *pp;) {
            gw_bkey *k = *pp;
            if (k->open || now - k->last_ms < KEY_IDLE_MS) {
                pp = &k->next;
                continue;
            }
            *pp = k->next;
            st->nkeys--;
            key_free(k);
        }
    }
    gw_loop_timer_set(l, &st->sweep, now + SWEEP_MS);
}

/* This loop's state, created (with its sweep armed) on first use; NULL when out of memory. */
static bstate *state_get(gw_loop *l)
{
    bstate *st = gw_loop_user(l);

    if (st)
        return st;
    if (!(st = calloc(1, sizeof(*st))) || !(st->slots = calloc(MIN_SLOTS, sizeof(*st->slots)))) {
        free(st);
        return NULL;
    }
    st->nslots = MIN_SLOTS;
    st->sweep.fn = on_sweep;
    gw_loop_timer_set(l, &st->sweep, ml_now_ms() + SWEEP_MS);
    gw_loop_set_user(l, st);
    return st;
}

int gw_batch_add(gw_loop *l, const gw_batch_target *t, const char *key, const char *event,
                 size_t event_len, const char *id, int64_t deadline_ms, gw_batch_done_fn done,
                 void *ud)
{
    bstate *st = state_get(l);
    gw_bkey *k = st ? key_get(st, key) : NULL;
    gw_bitem *it = k ? item_new(event, event_len, id, done, ud) : NULL;
    gw_bbatch *b;
    int64_t now = ml_now_ms(), max = t->cfg->max_batch_size > 0 ? t->cfg->max_batch_size : 1;

    if (!it)
        return ML_ERR;
    key_arrival(k, now);
    b = k->open ? k->open : batch_open(l, t, k, now);
    if (!b || batch_push(b, it) != ML_OK) {
        if (b && b->n == 0) { /* opened for this item alone */
            k->open = NULL;
            gw_bbatch_free(b);
        }
        free(it->event);
        free(it->id);
        free(it);
        return ML_ERR;
    }
    gw_loop_timer_set(l, &it->deadline, deadline_ms);
    if ((int64_t)b->n >= max) { /* full: sealed, and sent on this turn of the loop */
        k->open = NULL;
        b->key = NULL;
        gw_loop_timer_set(l, &b->window, now);
    }
    return ML_OK;
}
