/* cron.c — 5-field cron parsing and next-fire computation (see cron.h). */
#include "cron.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ml.h"

#define NFIELDS 5
/* Longest part of the input quoted in a message. */
#define QUOTE_MAX 40

typedef struct field_spec {
    const char *name;
    int lo, hi;                /* numeric bounds (day-of-week: 0-7) */
    const char *const *names;  /* three-letter names or NULL; names[i] is value names_base + i */
    int names_base, nnames;
    const char *expect;        /* what a value must be, for messages */
} field_spec;

static const char *const month_names[] = { "JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                           "JUL", "AUG", "SEP", "OCT", "NOV", "DEC" };
static const char *const day_names[] = { "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT" };

static const field_spec fields[NFIELDS] = {
    { "minute", 0, 59, NULL, 0, 0, "a number 0-59" },
    { "hour", 0, 23, NULL, 0, 0, "a number 0-23" },
    { "day-of-month", 1, 31, NULL, 0, 0, "a number 1-31" },
    { "month", 1, 12, month_names, 1, 12, "a month 1-12 or JAN-DEC" },
    { "day-of-week", 0, 7, day_names, 0, 7, "a day 0-7 or SUN-SAT" },
};

typedef struct macro {
    const char *name, *fields;
} macro;

static const macro macros[] = {
    { "@yearly", "0 0 1 1 *" }, { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
    { "@weekly", "0 0 * * 0" }, { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
    { "@hourly", "0 * * * *" },
};

/* A slice of the input. */
typedef struct span {
    const char *p;
    size_t len;
} span;

ML_PRINTF(3, 4) static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        ml_vsnprintf_trunc(err, errlen, fmt, ap);
        va_end(ap);
    }
    return ML_ERR;
}

static int quote_len(span s)
{
    return (int)(s.len < QUOTE_MAX ? s.len : QUOTE_MAX);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_alnum(char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* ------------------------------------------------------------------------------------ */
/* Fields                                                                               */

/* The value token at *pos (a run of letters and digits): a number or, where the field has
 * them, a name. Advances *pos past it. */
static int parse_value(const field_spec *f, span el, size_t *pos, int *out, char *err, size_t errlen)
{
    span tok = { el.p + *pos, 0 };
    bool digits = true;
    long v = 0;

    while (*pos + tok.len < el.len && is_alnum(tok.p[tok.len])) {
        digits = digits && tok.p[tok.len] >= '0' && tok.p[tok.len] <= '9';
        tok.len++;
    }
    if (tok.len == 0)
        return fail(err, errlen, "%s field '%.*s' is not valid (expected *, n, a-b, */n, a-b/n or a/n)",
                    f->name, quote_len(el), el.p);
    *pos += tok.len;
    if (digits) {
        for (size_t i = 0; i < tok.len; i++)
            v = v < 1000 ? v * 10 + (tok.p[i] - '0') : v; /* saturates: only the range matters */
        if (v < f->lo || v > f->hi)
            return fail(err, errlen, "%s field '%.*s' is out of range %d-%d", f->name,
                        quote_len(tok), tok.p, f->lo, f->hi);
        *out = (int)v;
        return ML_OK;
    }
    for (int i = 0; tok.len == 3 && i < f->nnames; i++) {
        if (strncasecmp(tok.p, f->names[i], 3) == 0) {
            *out = f->names_base + i;
            return ML_OK;
        }
    }
    return fail(err, errlen, "%s field '%.*s' is not %s", f->name, quote_len(tok), tok.p, f->expect);
}

/* The step after '/' at *pos: 1 to the field's maximum. */
static int parse_step(const field_spec *f, span el, size_t *pos, int *step, char *err, size_t errlen)
{
    long v = 0;
    size_t start = *pos;

    while (*pos < el.len && el.p[*pos] >= '0' && el.p[*pos] <= '9') {
        v = v < 1000 ? v * 10 + (el.p[*pos] - '0') : v;
        (*pos)++;
    }
    if (*pos == start)
        return fail(err, errlen, "%s field '%.*s' is not valid (a step '/' needs a number after it)",
                    f->name, quote_len(el), el.p);
    if (v < 1 || v > f->hi)
        return fail(err, errlen, "%s field '%.*s' has a step out of range 1-%d", f->name,
                    quote_len(el), el.p, f->hi);
    *step = (int)v;
    return ML_OK;
}

/* One list element: *, n, a-b, with an optional /step; sets its bits. */
static int parse_element(const field_spec *f, span el, uint64_t *bits, char *err, size_t errlen)
{
    size_t pos = 0;
    int a, b, step = 1;

    if (el.len == 0)
        return fail(err, errlen, "%s field has an empty list element", f->name);
    if (el.p[0] == '*') {
        a = f->lo;
        b = f->hi;
        pos = 1;
    } else {
        if (parse_value(f, el, &pos, &a, err, errlen) != ML_OK)
            return ML_ERR;
        b = a;
        if (pos < el.len && el.p[pos] == '-') {
            pos++;
            if (parse_value(f, el, &pos, &b, err, errlen) != ML_OK)
                return ML_ERR;
            if (a > b)
                return fail(err, errlen, "%s field '%.*s' is a reversed range (start after end)",
                            f->name, quote_len(el), el.p);
        } else if (pos < el.len && el.p[pos] == '/') {
            b = f->hi; /* a/n: from a through the maximum */
        }
    }
    if (pos < el.len && el.p[pos] == '/') {
        pos++;
        if (parse_step(f, el, &pos, &step, err, errlen) != ML_OK)
            return ML_ERR;
    }
    if (pos != el.len)
        return fail(err, errlen, "%s field '%.*s' is not valid (expected *, n, a-b, */n, a-b/n or a/n)",
                    f->name, quote_len(el), el.p);
    for (int v = a; v <= b; v += step)
        *bits |= UINT64_C(1) << v;
    return ML_OK;
}

/* A comma-separated list of elements. */
static int parse_field(const field_spec *f, span field, uint64_t *bits, char *err, size_t errlen)
{
    size_t start = 0;

    *bits = 0;
    for (size_t i = 0; i <= field.len; i++) {
        if (i < field.len && field.p[i] != ',')
            continue;
        if (parse_element(f, (span){ field.p + start, i - start }, bits, err, errlen) != ML_OK)
            return ML_ERR;
        start = i + 1;
    }
    return ML_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Expressions                                                                          */

/* Splits s at blanks into at most max fields; returns how many there are in all. */
static size_t split_fields(const char *s, span *out, size_t max)
{
    size_t n = 0;

    while (*s) {
        size_t len = 0;
        while (is_blank(*s))
            s++;
        if (!*s)
            break;
        while (s[len] && !is_blank(s[len]))
            len++;
        if (n < max)
            out[n] = (span){ s, len };
        n++;
        s += len;
    }
    return n;
}

static int expand_macro(span tok, size_t nfields, const char **fields_text, char *err, size_t errlen)
{
    if (tok.len == 7 && strncasecmp(tok.p, "@reboot", 7) == 0)
        return fail(err, errlen, "@reboot is not supported (schedules fire at times, not at start-up)");
    for (size_t i = 0; i < ML_ARRAY_LEN(macros); i++) {
        if (strlen(macros[i].name) == tok.len && strncasecmp(tok.p, macros[i].name, tok.len) == 0) {
            if (nfields != 1)
                return fail(err, errlen, "macro '%s' takes no fields after it", macros[i].name);
            *fields_text = macros[i].fields;
            return ML_OK;
        }
    }
    return fail(err, errlen, "unknown macro '%.*s' (supported: @yearly, @annually, @monthly, @weekly,"
                " @daily, @midnight, @hourly)", quote_len(tok), tok.p);
}

/* Parses exactly five fields into out and writes the normalised text. */
static int parse_fields(const span *f, cron_expr *out, char *err, size_t errlen)
{
    uint64_t bits[NFIELDS];
    size_t used = 0;

    for (int i = 0; i < NFIELDS; i++) {
        if (parse_field(&fields[i], f[i], &bits[i], err, errlen) != ML_OK)
            return ML_ERR;
        /* fits: the fields and separators are no longer than the checked input */
        memcpy(out->text + used, f[i].p, f[i].len);
        used += f[i].len;
        out->text[used++] = i + 1 < NFIELDS ? ' ' : '\0';
    }
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->days = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    /* day-of-week 7 is Sunday, like 0 */
    out->weekdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f);
    out->days_star = f[2].p[0] == '*';
    out->weekdays_star = f[4].p[0] == '*';
    return ML_OK;
}

int cron_parse(const char *expr, cron_expr *out, char *err, size_t errlen)
{
    span f[NFIELDS];
    size_t len, n;
    const char *fields_text = NULL;

    if (!expr || !out)
        return fail(err, errlen, "no cron expression");
    len = strnlen(expr, CRON_TEXT_MAX);
    if (len >= CRON_TEXT_MAX)
        return fail(err, errlen, "cron expression is longer than %d characters", CRON_TEXT_MAX - 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)expr[i];
        if ((c < 0x20 && c != '\t') || c >= 0x7f)
            return fail(err, errlen, "cron expression contains an invalid character (byte 0x%02x at %zu)", c, i);
    }
    memset(out, 0, sizeof(*out));
    n = split_fields(expr, f, NFIELDS);
    if (n == 0)
        return fail(err, errlen, "cron expression is empty");
    if (f[0].p[0] == '@') {
        if (expand_macro(f[0], n, &fields_text, err, errlen) != ML_OK)
            return ML_ERR;
        n = split_fields(fields_text, f, NFIELDS);
    }
    if (n != NFIELDS)
        return fail(err, errlen, "expected 5 fields, got %zu (minute hour day-of-month month day-of-week)", n);
    return parse_fields(f, out, err, errlen);
}

/* ------------------------------------------------------------------------------------ */
/* Next fire                                                                            */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The inverse, for days >= 0 (all cron_next handles). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = z / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int len[13] = { 0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : len[m];
}

/* The lowest set bit at or above from, or -1. */
static int next_bit(uint64_t mask, int from)
{
    if (from > 63)
        return -1;
    mask >>= from;
    return mask ? from + __builtin_ctzll(mask) : -1;
}

static bool day_matches(const cron_expr *c, int64_t days, int mday)
{
    bool dom = c->days >> mday & 1;
    bool dow = c->weekdays >> ((days + 4) % 7) & 1; /* 1970-01-01 was a Thursday */

    return c->days_star || c->weekdays_star ? dom && dow : dom || dow;
}

/* The first (hour, minute) of the day at or after (*h, *m); false if none is left. */
static bool time_in_day(const cron_expr *c, int *h, int *m)
{
    int hour = next_bit(c->hours, *h), min;

    if (hour < 0)
        return false;
    min = next_bit(c->minutes, hour == *h ? *m : 0);
    if (min < 0) {
        if ((hour = next_bit(c->hours, hour + 1)) < 0)
            return false;
        min = next_bit(c->minutes, 0);
    }
    *h = hour;
    *m = min;
    return min >= 0;
}

int cron_next(const cron_expr *c, int64_t after_unix_s, int64_t *next_unix_s)
{
    int64_t start, y, days;
    int m, d, h, min;

    if (!c || !next_unix_s || after_unix_s < CRON_TIME_MIN || after_unix_s > CRON_TIME_MAX)
        return ML_ERR;
    start = after_unix_s / 60 * 60 + 60; /* the next whole minute, strictly after */
    days = start / 86400;
    civil_from_days(days, &y, &m, &d);
    h = (int)(start % 86400 / 3600);
    min = (int)(start % 3600 / 60);
    /* One Gregorian cycle (400 years, a whole number of weeks) plus the partial first
     * month: if nothing matches in it, nothing ever will. */
    for (int months = 0; months <= 400 * 12; months++) {
        if (c->months >> m & 1) {
            for (int dim = days_in_month(y, m); d <= dim; d++, days++, h = min = 0) {
                if (day_matches(c, days, d) && time_in_day(c, &h, &min)) {
                    int64_t t = days * 86400 + h * 3600 + min * 60;

                    if (t > CRON_TIME_MAX) /* a year-10000 date: outside what we render */
                        return ML_ERR;
                    *next_unix_s = t;
                    return ML_OK;
                }
            }
        }
        days = days_from_civil(y, m, 1) + days_in_month(y, m);
        if (++m > 12) {
            m = 1;
            y++;
        }
        d = 1;
        h = min = 0;
    }
    return ML_ERR;
}
