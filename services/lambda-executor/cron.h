/* cron.h — 5-field cron expressions in UTC: parsing and "when does it fire next".
 *
 * Syntax (vixie cron's, see docs/schedules.md): minute hour day-of-month month day-of-week,
 * separated by blanks. Each field is a list "a,b,c" of `*`, `n`, `a-b`, `*` + "/step",
 * `a-b/step` or `a/step` (a through the field's maximum). Months take JAN-DEC, days of the
 * week SUN-SAT (case-insensitive); day-of-week 0 and 7 are both Sunday. Macros: @yearly
 * (@annually), @monthly, @weekly, @daily (@midnight), @hourly.
 *
 * Day rule (vixie): when both day fields are restricted — neither begins with `*` — a day
 * matches if EITHER matches; otherwise it must match both (so the restricted one decides).
 *
 * Pure code: no globals, no I/O, no allocation, so it is thread-safe and a libFuzzer target
 * can call it directly. */
#ifndef LE_CRON_H
#define LE_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest accepted expression (the schedules table's limit), plus the NUL. */
#define CRON_TEXT_MAX 257

/* A parsed expression: one bit per allowed value. Plain data; a copy is independent. */
typedef struct cron_expr {
    uint64_t minutes;      /* bits 0-59 */
    uint32_t hours;        /* bits 0-23 */
    uint32_t days;         /* day of month: bits 1-31 */
    uint16_t months;       /* bits 1-12 */
    uint8_t weekdays;      /* bits 0-6, 0 = Sunday (7 is folded into 0) */
    bool days_star;        /* the day-of-month field begins with '*' */
    bool weekdays_star;    /* the day-of-week field begins with '*' */
    /* the expression normalised: the five fields joined by single spaces, macros expanded
     * (what the schedules table stores; parses back to the same sets) */
    char text[CRON_TEXT_MAX];
} cron_expr;

/* Parses expr into *out. ML_OK, or ML_ERR with a one-line reason in err naming the field
 * and the offending part, e.g. "minute field '61' is out of range 0-59" or
 * "expected 5 fields, got 4 (minute hour day-of-month month day-of-week)". *out is
 * unspecified after a failure. err may be NULL. */
int cron_parse(const char *expr, cron_expr *out, char *err, size_t errlen);

/* Earliest time accepted by cron_next: 1970-01-01T00:00:00Z. */
#define CRON_TIME_MIN INT64_C(0)
/* Latest: 9999-12-31T23:59:59Z. */
#define CRON_TIME_MAX INT64_C(253402300799)

/* The first minute (unix seconds, a multiple of 60) strictly after after_unix_s at which c
 * fires. ML_OK with *next_unix_s set, or ML_ERR when the expression never fires (e.g.
 * "0 0 30 2 *"), its next firing is after CRON_TIME_MAX, or after_unix_s is outside
 * [CRON_TIME_MIN, CRON_TIME_MAX]; a result is always within that range. Searches one
 * 400-year Gregorian cycle — after it the calendar repeats — month by month, then day,
 * hour and minute through the bit sets: at most ~150k cheap day tests, never minute by
 * minute. */
int cron_next(const cron_expr *c, int64_t after_unix_s, int64_t *next_unix_s);

#endif
