/* versions_rules.c — the pure rules of versions and aliases (see versions.h): no I/O, so
 * tests/unit/lambda-executor/test_versions.c checks them directly. */
#include "versions.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* A version number: 1..VER_NUMBER_MAX in decimal, no sign, no leading zero. */
static bool parse_number(const char *s, int64_t *out)
{
    int64_t n = 0;
    size_t i = 0;

    if (!s || !s[0] || s[0] == '0')
        return false;
    for (; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 10)
            return false;
        n = n * 10 + (s[i] - '0');
    }
    if (n > VER_NUMBER_MAX)
        return false;
    *out = n;
    return true;
}

bool ver_alias_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    bool digits = true;

    if (n < 1 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return false;
        digits = digits && c >= '0' && c <= '9';
    }
    return !digits; /* "$LATEST" fails the alphabet above */
}

qual_kind ver_qualifier_kind(const char *q, int64_t *number)
{
    if (!q || !q[0] || strcmp(q, VER_LATEST) == 0)
        return QUAL_LATEST;
    if (parse_number(q, number))
        return QUAL_NUMBER;
    return ver_alias_name_valid(q) ? QUAL_ALIAS : QUAL_INVALID;
}

int ver_routing_parse(const cJSON *routing, ver_routing *out, char *err, size_t errlen)
{
    const cJSON *e;
    int n = 0;

    *out = (ver_routing){ 0 };
    if (!routing || cJSON_IsNull(routing))
        return ML_OK;
    if (!cJSON_IsObject(routing)) {
        ml_snprintf_trunc(err, errlen, "routing must be an object {\"<version>\": weight}");
        return ML_ERR;
    }
    cJSON_ArrayForEach(e, routing)
    {
        if (++n > 1) {
            ml_snprintf_trunc(err, errlen, "routing takes at most one additional version");
            return ML_ERR;
        }
        if (!parse_number(e->string, &out->extra)) {
            ml_snprintf_trunc(err, errlen, "routing: '%s' is not a published version number (not $LATEST)",
                              e->string);
            return ML_ERR;
        }
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble < 0 || e->valuedouble >= 1) {
            ml_snprintf_trunc(err, errlen, "routing: the weight of version %s must be a number in [0, 1)",
                              e->string);
            return ML_ERR;
        }
        out->weight = e->valuedouble;
    }
    return ML_OK;
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* This thread's state, seeded from the kernel (splitmix64 over one getrandom word when the
 * kernel cannot give four, so the state is never all zero). */
static uint64_t *thread_state(void)
{
    static _Thread_local uint64_t s[4];
    static _Thread_local bool seeded;

    if (!seeded) {
        if (getrandom(s, sizeof(s), 0) != (ssize_t)sizeof(s) || (s[0] | s[1] | s[2] | s[3]) == 0) {
            uint64_t z = (uint64_t)ml_now_ms() ^ (uint64_t)(uintptr_t)s;
            for (int i = 0; i < 4; i++) {
                z += 0x9e3779b97f4a7c15ull;
                uint64_t t = z;
                t = (t ^ (t >> 30)) * 0xbf58476d1ce4e5b9ull;
                t = (t ^ (t >> 27)) * 0x94d049bb133111ebull;
                s[i] = t ^ (t >> 31);
            }
        }
        seeded = true;
    }
    return s;
}

double ver_rand01(void)
{
    uint64_t *s = thread_state();
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (double)(result >> 11) * 0x1.0p-53; /* 53 random bits: exactly representable */
}

int64_t ver_pick(int64_t primary, const ver_routing *r, double draw)
{
    if (!r || r->extra <= 0 || r->weight <= 0)
        return primary;
    return draw < r->weight ? r->extra : primary;
}
