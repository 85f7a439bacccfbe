/* gcra.c — GCRA decisions in C and in Redis Lua (see gcra.h). */
#include "gcra.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_ENTRIES 100000

/* Redis 7 replicates script effects, so reading TIME before a write is allowed. Numbers are
 * Lua doubles: microseconds since 1970 (~2^51) are exact; the division is corrected to be
 * exact too. '%d' keeps every digit where tostring() would print 14 significant ones. One
 * TIME serves the whole batch. A group of count requests admits the first k with
 * max(TAT, now) + k*T - b*T <= now (the rest fail: a denial leaves the TAT alone); a key's
 * TAT carries over to its next group and is written once. */
const char gcra_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local tats, dirty, out = {}, {}, {}\n"
    "for i = 1, #ARGV, 4 do\n"
    "  local k = tonumber(ARGV[i])\n"
    "  local interval = tonumber(ARGV[i + 1])\n"
    "  local burst = tonumber(ARGV[i + 2])\n"
    "  local count = tonumber(ARGV[i + 3])\n"
    "  local tat = tats[k] or tonumber(redis.call('GET', KEYS[k])) or 0\n"
    "  if tat < now then tat = now end\n"
    "  out[#out + 1] = tat - now\n"
    "  local room = burst * interval - (tat - now)\n"
    "  local admit = math.floor(room / interval)\n"
    "  if admit * interval > room then admit = admit - 1 end\n"
    "  if (admit + 1) * interval <= room then admit = admit + 1 end\n"
    "  if admit > count then admit = count end\n"
    "  if admit > 0 then\n"
    "    tat = tat + admit * interval\n"
    "    dirty[k] = true\n"
    "  end\n"
    "  tats[k] = tat\n"
    "end\n"
    "for k in pairs(dirty) do\n"
    "  local ttl_ms = math.floor((tats[k] - now) / 1000) + 1\n"
    "  redis.call('SET', KEYS[k], string.format('%d', tats[k]), 'PX', ttl_ms)\n"
    "end\n"
    "return out\n";

gcra_limit gcra_limit_rps(double rps, int64_t burst)
{
    gcra_limit l;
    double iv = rps > 0 ? 1e6 / rps : 1e12;

    l.interval_us = iv < 1 ? 1 : (iv > 1e12 ? (int64_t)1e12 : (int64_t)llround(iv));
    l.burst = burst < 1 ? 1 : burst;
    return l;
}

gcra_limit gcra_limit_per_minute(int64_t per_minute, int64_t burst)
{
    return gcra_limit_rps((double)per_minute / 60.0, burst);
}

void gcra_decide(int64_t *tat_us, int64_t now_us, gcra_limit lim, gcra_result *out)
{
    int64_t tat = *tat_us > now_us ? *tat_us : now_us;
    int64_t new_tat = tat + lim.interval_us;
    int64_t diff = now_us - (new_tat - lim.burst * lim.interval_us);

    out->limit = lim.burst;
    if (diff < 0) {
        out->allowed = false;
        out->remaining = 0;
        out->retry_after_us = -diff;
        out->reset_after_us = tat - now_us;
        return;
    }
    *tat_us = new_tat;
    out->allowed = true;
    out->remaining = diff / lim.interval_us;
    out->retry_after_us = 0;
    out->reset_after_us = new_tat - now_us;
}

void gcra_mem_init(gcra_mem *m, size_t max_entries)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    m->max_entries = max_entries ? max_entries : DEFAULT_MAX_ENTRIES;
}

void gcra_mem_free(gcra_mem *m)
{
    for (size_t i = 0; i < GCRA_MEM_BUCKETS; i++) {
        gcra_mem_entry *e = m->buckets[i];
        while (e) {
            gcra_mem_entry *next = e->next;
            free(e);
            e = next;
        }
        m->buckets[i] = NULL;
    }
    m->n = 0;
    pthread_mutex_destroy(&m->lock);
}

static size_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)(h % GCRA_MEM_BUCKETS);
}

/* Drops entries whose TAT has passed: a full bucket, indistinguishable from no entry. */
static void sweep(gcra_mem *m, int64_t now_us)
{
    for (size_t i = 0; i < GCRA_MEM_BUCKETS; i++) {
        gcra_mem_entry **pp = &m->buckets[i];
        while (*pp) {
            gcra_mem_entry *e = *pp;
            if (e->tat_us <= now_us) {
                *pp = e->next;
                free(e);
                m->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

/* The key's entry, created if there is room; NULL when the table is full of live keys. */
static gcra_mem_entry *lookup(gcra_mem *m, const char *key, int64_t now_us)
{
    size_t h = hash_key(key), len = strlen(key);
    gcra_mem_entry *e;

    for (e = m->buckets[h]; e; e = e->next) {
        if (strcmp(e->key, key) == 0)
            return e;
    }
    if (m->n >= m->max_entries)
        sweep(m, now_us);
    if (m->n >= m->max_entries)
        return NULL;
    e = calloc(1, sizeof(*e) + len + 1);
    if (!e)
        return NULL;
    memcpy(e->key, key, len + 1);
    e->next = m->buckets[h];
    m->buckets[h] = e;
    m->n++;
    return e;
}

void gcra_mem_take(gcra_mem *m, const char *key, int64_t now_us, gcra_limit lim,
                   gcra_result *out)
{
    gcra_mem_entry *e;
    int64_t scratch = 0;

    pthread_mutex_lock(&m->lock);
    e = lookup(m, key, now_us);
    gcra_decide(e ? &e->tat_us : &scratch, now_us, lim, out);
    pthread_mutex_unlock(&m->lock);
}

void gcra_mem_raise(gcra_mem *m, const char *key, int64_t now_us, int64_t tat_us)
{
    gcra_mem_entry *e;

    if (tat_us <= now_us)
        return;
    pthread_mutex_lock(&m->lock);
    e = lookup(m, key, now_us);
    if (e && e->tat_us < tat_us)
        e->tat_us = tat_us;
    pthread_mutex_unlock(&m->lock);
}
