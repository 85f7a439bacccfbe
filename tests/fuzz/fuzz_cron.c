/* libFuzzer target: cron expressions (services/lambda-executor/cron.c), which users give
 * for schedules.
 *
 * Input: 8 bytes of a start time, then the expression text.
 * Oracles (besides ASan/UBSan):
 *   - a refusal has a reason; an accepted expression has non-empty sets within their field
 *     ranges (weekday 7 folded into 0) and a normalised text of at most CRON_TEXT_MAX - 1
 *     bytes that parses back to the same sets;
 *   - cron_next returns a minute (multiple of 60) strictly after the start, inside
 *     within one 400-year cycle of it, that matches the sets by gmtime_r and the day
 *     rule; and no earlier minute within the next two days matches;
 *   - cron_next from (result - 1) gives the result again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron.h"
#include "ml.h"

static bool fires_at(const cron_expr *c, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    bool dom, dow;

    if (!gmtime_r(&tt, &tm))
        abort();
    if (!(c->minutes >> tm.tm_min & 1) || !(c->hours >> tm.tm_hour & 1) ||
        !(c->months >> (tm.tm_mon + 1) & 1))
        return false;
    dom = c->days >> tm.tm_mday & 1;
    dow = c->weekdays >> tm.tm_wday & 1;
    if (!c->days_star && !c->weekdays_star)
        return dom || dow;
    return dom && dow;
}

static bool same_sets(const cron_expr *a, const cron_expr *b)
{
    return a->minutes == b->minutes && a->hours == b->hours && a->days == b->days &&
           a->months == b->months && a->weekdays == b->weekdays &&
           a->days_star == b->days_star && a->weekdays_star == b->weekdays_star;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[CRON_TEXT_MAX + 64], err[256];
    cron_expr c, again;
    uint64_t raw = 0;
    int64_t start, next, next2;

    if (size < 8)
        return 0;
    memcpy(&raw, data, 8);
    data += 8;
    size -= 8;
    if (size >= sizeof(text))
        size = sizeof(text) - 1;
    memcpy(text, data, size);
    text[size] = '\0';
    err[0] = '\0';
    if (cron_parse(text, &c, err, sizeof(err)) != ML_OK) {
        if (!err[0] || strnlen(err, sizeof(err)) == sizeof(err))
            abort();
        return 0;
    }
    if (!c.minutes || !c.hours || !c.days || !c.months || !c.weekdays)
        abort(); /* an empty set never fires */
    if (c.minutes >> 60 || c.hours >> 24 || c.days & 1 || c.months & 1 ||
        c.months >> 13 || c.weekdays >> 7)
        abort(); /* out-of-range bits */
    if (strnlen(c.text, sizeof(c.text)) == sizeof(c.text) ||
        cron_parse(c.text, &again, err, sizeof(err)) != ML_OK || !same_sets(&c, &again) ||
        strcmp(again.text, c.text) != 0)
        abort(); /* the normalised text is not a fixed point */
    /* a start time anywhere in the supported range (and a little outside it) */
    start = (int64_t)(raw % (uint64_t)(CRON_TIME_MAX + 200000)) - 100000;
    if (cron_next(&c, start, &next) != ML_OK) {
        if (start >= CRON_TIME_MIN && start <= CRON_TIME_MAX - 400LL * 366 * 86400 &&
            c.days_star && c.weekdays_star)
            abort(); /* any-day expressions always fire within a 400-year cycle */
        return 0;
    }
    if (start < CRON_TIME_MIN || start > CRON_TIME_MAX)
        abort(); /* out-of-range start accepted */
    if (next <= start || next > CRON_TIME_MAX || next % 60 != 0 || next - start > 401LL * 366 * 86400 ||
        !fires_at(&c, next))
        abort();
    for (int64_t t = (start / 60 + 1) * 60; t < next && t < start + 2 * 86400; t += 60)
        if (fires_at(&c, t))
            abort(); /* skipped an earlier firing */
    if (next - 1 <= CRON_TIME_MAX && (cron_next(&c, next - 1, &next2) != ML_OK || next2 != next))
        abort();
    return 0;
}
