/* test_cron.c — the cron parser and next-fire search against known fire times, every error
 * message, the normalised text, impossible schedules, and a minute-by-minute cross-check
 * against libc's calendar (gmtime_r). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cron.h"
#include "ml.h"

typedef struct fire_case {
    const char *expr;
    int64_t after, next; /* -1: never fires */
} fire_case;

/* Expected values were computed independently with /usr/bin/python3 and datetime: for each
 * case the five sets were written out by hand (e.g. "*\/5" as set(range(0, 60, 5)), not by
 * parsing), then every day from `after` was walked with vixie's day rule (OR when neither
 * day field begins with '*', else AND) and every (hour, minute) of a matching day tried in
 * order until one lay strictly after `after`. The comment shows the UTC times. */
static const fire_case known[] = {
    /* steps over the whole field; strictly after; year rollover */
    { "*/5 * * * *", 1705313250, 1705313400 },   /* 2024-01-15 10:07:30 -> 2024-01-15 10:10 Mon */
    { "*/5 * * * *", 1705313400, 1705313700 },   /* 2024-01-15 10:10:00 -> 2024-01-15 10:15 Mon */
    { "*/5 * * * *", 1704067080, 1704067200 },   /* 2023-12-31 23:58:00 -> 2024-01-01 00:00 Mon */
    /* ranges */
    { "0 9-17 * * *", 1710091800, 1710147600 },  /* 2024-03-10 17:30:00 -> 2024-03-11 09:00 Mon */
    { "0 9-17 * * *", 1710072000, 1710075600 },  /* 2024-03-10 12:00:00 -> 2024-03-10 13:00 Sun */
    /* lists */
    { "15,45 8,20 * * *", 1710060300, 1710101700 }, /* 2024-03-10 08:45:00 -> 2024-03-10 20:15 Sun */
    { "15,45 8,20 * * *", 1710103500, 1710144900 }, /* 2024-03-10 20:45:00 -> 2024-03-11 08:15 Mon */
    /* names, mixed case; day-of-week restricted, day-of-month '*': weekdays only */
    { "30 6 * JAN,jul MON-FRI", 1706684400, 1719815400 }, /* 2024-01-31 07:00 -> 2024-07-01 06:30 Mon */
    { "0 12 * * sun", 1714521600, 1714910400 },  /* 2024-05-01 00:00:00 -> 2024-05-05 12:00 Sun */
    /* 7 is Sunday too */
    { "0 0 * * 7", 1714521600, 1714867200 },     /* 2024-05-01 00:00:00 -> 2024-05-05 00:00 Sun */
    { "0 0 * * 5-7", 1714780800, 1714867200 },   /* 2024-05-04 00:00:00 -> 2024-05-05 00:00 Sun */
    /* steps in ranges, a/n */
    { "10-40/15 * * * *", 1717245600, 1717247400 },  /* 2024-06-01 12:40:00 -> 2024-06-01 13:10 Sat */
    { "5/20 1-23/6 * * *", 1717271100, 1717290300 }, /* 2024-06-01 19:45:00 -> 2024-06-02 01:05 Sun */
    { "5/20 1-23/6 * * *", 1717290300, 1717291500 }, /* 2024-06-02 01:05:00 -> 2024-06-02 01:25 Sun */
    { "0 0 1-31/10 feb-dec/3 *", 1708473600, 1714521600 }, /* 2024-02-21 00:00 -> 2024-05-01 00:00 Wed */
    /* both day fields restricted: the 13th OR a Friday */
    { "0 0 13 * FRI", 1725148800, 1725580800 },  /* 2024-09-01 00:00:00 -> 2024-09-06 00:00 Fri */
    { "0 0 13 * FRI", 1725926400, 1726185600 },  /* 2024-09-10 00:00:00 -> 2024-09-13 00:00 Fri */
    { "0 0 13 * FRI", 1728604800, 1728777600 },  /* 2024-10-11 00:00:00 -> 2024-10-13 00:00 Sun */
    /* day-of-month begins with '*': AND (odd days that are Mondays) */
    { "0 0 */2 * MON", 1725148800, 1725840000 }, /* 2024-09-01 00:00:00 -> 2024-09-09 00:00 Mon */
    /* Feb 30 never exists, but the OR rule still fires on February's Mondays */
    { "0 0 30 2 MON", 1709251200, 1738540800 },  /* 2024-03-01 00:00:00 -> 2025-02-03 00:00 Mon */
    /* month boundaries: months without a 31st are skipped */
    { "0 0 31 * *", 1711929600, 1717113600 },    /* 2024-04-01 00:00:00 -> 2024-05-31 00:00 Fri */
    { "0 0 31 * *", 1706659200, 1711843200 },    /* 2024-01-31 00:00:00 -> 2024-03-31 00:00 Sun */
    /* leap years: 2000 is one (divisible by 400); 2100 is not, so 8 years */
    { "0 0 29 2 *", 920246400, 951782400 },      /* 1999-03-01 00:00:00 -> 2000-02-29 00:00 Tue */
    { "0 0 29 2 *", 1709164740, 1709164800 },    /* 2024-02-28 23:59:00 -> 2024-02-29 00:00 Thu */
    { "0 0 29 2 *", 1709251200, 1835395200 },    /* 2024-03-01 00:00:00 -> 2028-02-29 00:00 Tue */
    { "0 0 29 2 *", 3981398400, 4233686400 },    /* 2096-03-01 00:00:00 -> 2104-02-29 00:00 Fri */
    /* Feb 1 or 29 that is a Monday (AND): 6 and then 11 years away */
    { "0 0 */28 2 1", 1614556800, 1801440000 },  /* 2021-03-01 00:00:00 -> 2027-02-01 00:00 Mon */
    { "0 0 */28 2 1", 1803859200, 2148595200 },  /* 2027-03-01 00:00:00 -> 2038-02-01 00:00 Mon */
    /* year rollover */
    { "0 0 1 1 *", 1735689540, 1735689600 },     /* 2024-12-31 23:59:00 -> 2025-01-01 00:00 Wed */
    { "59 23 31 12 *", 1735689540, 1767225540 }, /* 2024-12-31 23:59:00 -> 2025-12-31 23:59 Wed */
    { "* * * * *", 1735689599, 1735689600 },     /* 2024-12-31 23:59:59 -> 2025-01-01 00:00 Wed */
    /* macros */
    { "@hourly", 1720087200, 1720090800 },       /* 2024-07-04 10:00:00 -> 2024-07-04 11:00 Thu */
    { "@daily", 1720087200, 1720137600 },        /* 2024-07-04 10:00:00 -> 2024-07-05 00:00 Fri */
    { "@weekly", 1720087200, 1720310400 },       /* 2024-07-04 10:00:00 -> 2024-07-07 00:00 Sun */
    { "@monthly", 1720087200, 1722470400 },      /* 2024-07-04 10:00:00 -> 2024-08-01 00:00 Thu */
    { "@YEARLY", 1720087200, 1735689600 },       /* 2024-07-04 10:00:00 -> 2025-01-01 00:00 Wed */
    /* never (python: nothing in 401 years) */
    { "0 0 30 2 *", 1704067200, -1 },
    { "0 0 31 4,6,9,11 *", 1704067200, -1 },
    /* results stay within the range (RFC 3339 has four-digit years): the last minute is
     * 9999-12-31 23:59; after it, and Feb 29 from 9999 (next: 10000-02-29), is never */
    { "* * * * *", CRON_TIME_MAX - 60, CRON_TIME_MAX - 59 },
    { "* * * * *", CRON_TIME_MAX - 59, -1 },
    { "* * * * *", CRON_TIME_MAX, -1 },
    { "0 0 29 2 *", INT64_C(253370764800), -1 },        /* 9999-01-01 00:00:00 */
};

static void test_known_fire_times(void **state)
{
    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(known); i++) {
        const fire_case *k = &known[i];
        char err[256] = "";
        cron_expr c;
        int64_t next = 0;
        int rc;

        if (cron_parse(k->expr, &c, err, sizeof(err)) != ML_OK)
            fail_msg("'%s' did not parse: %s", k->expr, err);
        rc = cron_next(&c, k->after, &next);
        if (k->next < 0 && rc != ML_ERR)
            fail_msg("'%s' after %lld: expected never, got %lld", k->expr, (long long)k->after,
                     (long long)next);
        if (k->next >= 0 && (rc != ML_OK || next != k->next))
            fail_msg("'%s' after %lld: expected %lld, got rc %d next %lld", k->expr,
                     (long long)k->after, (long long)k->next, rc, (long long)next);
    }
}

/* Chains cron_next: consecutive fires of "0 0 13 * FRI" through October 2024 (python as
 * above: Fridays 4, 11, 18, 25 and Sunday the 13th). */
static void test_chained_fires(void **state)
{
    static const int64_t want[] = {
        1727740800, /* 2024-10-01 00:00 Tue (not a fire: the start) */
        1728000000, /* 2024-10-04 Fri */
        1728604800, /* 2024-10-11 Fri */
        1728777600, /* 2024-10-13 Sun, the 13th */
        1729209600, /* 2024-10-18 Fri */
        1729814400, /* 2024-10-25 Fri */
        1730419200, /* 2024-11-01 Fri */
    };
    cron_expr c;
    int64_t t = want[0];

    (void)state;
    assert_int_equal(cron_parse("0 0 13 * FRI", &c, NULL, 0), ML_OK);
    for (size_t i = 1; i < ML_ARRAY_LEN(want); i++) {
        assert_int_equal(cron_next(&c, t, &t), ML_OK);
        assert_int_equal(t, want[i]);
    }
}

typedef struct error_case {
    const char *expr, *message;
} error_case;

static const error_case errors[] = {
    { "", "cron expression is empty" },
    { " \t ", "cron expression is empty" },
    { "* * * *", "expected 5 fields, got 4 (minute hour day-of-month month day-of-week)" },
    { "* * * * * *", "expected 5 fields, got 6 (minute hour day-of-month month day-of-week)" },
    { "61 * * * *", "minute field '61' is out of range 0-59" },
    { "1-61 * * * *", "minute field '61' is out of range 0-59" },
    { "99999999999999999999 * * * *", "minute field '99999999999999999999' is out of range 0-59" },
    { "* 24 * * *", "hour field '24' is out of range 0-23" },
    { "* * 0 * *", "day-of-month field '0' is out of range 1-31" },
    { "* * 32 * *", "day-of-month field '32' is out of range 1-31" },
    { "* * * 0 *", "month field '0' is out of range 1-12" },
    { "* * * 13 *", "month field '13' is out of range 1-12" },
    { "* * * * 8", "day-of-week field '8' is out of range 0-7" },
    { "* * * FOO *", "month field 'FOO' is not a month 1-12 or JAN-DEC" },
    { "* * * January *", "month field 'January' is not a month 1-12 or JAN-DEC" },
    { "* * * * FUN", "day-of-week field 'FUN' is not a day 0-7 or SUN-SAT" },
    { "* * * * MON-FUN", "day-of-week field 'FUN' is not a day 0-7 or SUN-SAT" },
    { "* * * MON *", "month field 'MON' is not a month 1-12 or JAN-DEC" },
    { "* * * * JAN", "day-of-week field 'JAN' is not a day 0-7 or SUN-SAT" },
    { "MON * * * *", "minute field 'MON' is not a number 0-59" },
    { "* 5x * * *", "hour field '5x' is not a number 0-23" },
    { "* * L * *", "day-of-month field 'L' is not a number 1-31" },
    { "5-1 * * * *", "minute field '5-1' is a reversed range (start after end)" },
    { "* * * * SAT-SUN", "day-of-week field 'SAT-SUN' is a reversed range (start after end)" },
    { "*/0 * * * *", "minute field '*/0' has a step out of range 1-59" },
    { "*/60 * * * *", "minute field '*/60' has a step out of range 1-59" },
    { "* * */32 * *", "day-of-month field '*/32' has a step out of range 1-31" },
    { "*/ * * * *", "minute field '*/' is not valid (a step '/' needs a number after it)" },
    { "*/x * * * *", "minute field '*/x' is not valid (a step '/' needs a number after it)" },
    { "1,,2 * * * *", "minute field has an empty list element" },
    { "1, * * * *", "minute field has an empty list element" },
    { ",1 * * * *", "minute field has an empty list element" },
    { "1- * * * *", "minute field '1-' is not valid (expected *, n, a-b, */n, a-b/n or a/n)" },
    { "*5 * * * *", "minute field '*5' is not valid (expected *, n, a-b, */n, a-b/n or a/n)" },
    { "*-5 * * * *", "minute field '*-5' is not valid (expected *, n, a-b, */n, a-b/n or a/n)" },
    { "1-5-7 * * * *", "minute field '1-5-7' is not valid (expected *, n, a-b, */n, a-b/n or a/n)" },
    { "*/5/2 * * * *", "minute field '*/5/2' is not valid (expected *, n, a-b, */n, a-b/n or a/n)" },
    { "? * * * *", "minute field '?' is not valid (expected *, n, a-b, */n, a-b/n or a/n)" },
    { "* * * * 5#2", "day-of-week field '5#2' is not valid (expected *, n, a-b, */n, a-b/n or a/n)" },
    { "@foo", "unknown macro '@foo' (supported: @yearly, @annually, @monthly, @weekly, @daily,"
              " @midnight, @hourly)" },
    { "@reboot", "@reboot is not supported (schedules fire at times, not at start-up)" },
    { "@daily 5", "macro '@daily' takes no fields after it" },
    { "0 0 * * *\n", "cron expression contains an invalid character (byte 0x0a at 9)" },
    { "0 0 * * \x01", "cron expression contains an invalid character (byte 0x01 at 8)" },
    { "0 0 * * \xc3\xa9", "cron expression contains an invalid character (byte 0xc3 at 8)" },
};

static void test_error_messages(void **state)
{
    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(errors); i++) {
        char err[256] = "";
        cron_expr c;

        if (cron_parse(errors[i].expr, &c, err, sizeof(err)) != ML_ERR)
            fail_msg("'%s' parsed but should not", errors[i].expr);
        if (strcmp(err, errors[i].message) != 0)
            fail_msg("'%s': expected \"%s\", got \"%s\"", errors[i].expr, errors[i].message, err);
    }
}

static void test_limits_and_misuse(void **state)
{
    char long_expr[CRON_TEXT_MAX + 1], err[256], tiny[8];
    cron_expr c;
    int64_t next = 42;

    (void)state;
    /* 256 characters are fine, 257 are not */
    memset(long_expr, ' ', sizeof(long_expr));
    memcpy(long_expr, "* * * * *", 9);
    long_expr[CRON_TEXT_MAX - 1] = '\0';
    assert_int_equal(cron_parse(long_expr, &c, err, sizeof(err)), ML_OK);
    long_expr[CRON_TEXT_MAX - 1] = ' ';
    long_expr[CRON_TEXT_MAX] = '\0';
    assert_int_equal(cron_parse(long_expr, &c, err, sizeof(err)), ML_ERR);
    assert_string_equal(err, "cron expression is longer than 256 characters");
    /* a long token is quoted only in part */
    assert_int_equal(cron_parse("1234567890123456789012345678901234567890123456789 * * * *", &c, err,
                                sizeof(err)), ML_ERR);
    assert_string_equal(err, "minute field '1234567890123456789012345678901234567890' is out of range 0-59");
    /* NULLs and a small or absent error buffer */
    assert_int_equal(cron_parse(NULL, &c, err, sizeof(err)), ML_ERR);
    assert_string_equal(err, "no cron expression");
    assert_int_equal(cron_parse("61 * * * *", &c, NULL, 0), ML_ERR);
    assert_int_equal(cron_parse("61 * * * *", &c, tiny, sizeof(tiny)), ML_ERR);
    assert_string_equal(tiny, "minute ");
    /* cron_next's accepted range */
    assert_int_equal(cron_parse("* * * * *", &c, NULL, 0), ML_OK);
    assert_int_equal(cron_next(&c, -1, &next), ML_ERR);
    assert_int_equal(cron_next(&c, CRON_TIME_MAX + 1, &next), ML_ERR);
    assert_int_equal(next, 42);
    assert_int_equal(cron_next(&c, 0, &next), ML_OK);
    assert_int_equal(next, 60);
    assert_int_equal(cron_next(NULL, 0, &next), ML_ERR);
    assert_int_equal(cron_next(&c, 0, NULL), ML_ERR);
}

/* The sets behind the syntax, checked bit by bit. */
static void test_sets(void **state)
{
    cron_expr c;

    (void)state;
    assert_int_equal(cron_parse("*/15 0-23/8 1,15,31 */5 mon-fri", &c, NULL, 0), ML_OK);
    assert_true(c.minutes == ((UINT64_C(1) << 0) | (UINT64_C(1) << 15) | (UINT64_C(1) << 30) |
                              (UINT64_C(1) << 45)));
    assert_int_equal(c.hours, (1u << 0) | (1u << 8) | (1u << 16));
    assert_int_equal(c.days, (1u << 1) | (1u << 15) | (1u << 31));
    assert_int_equal(c.months, (1u << 1) | (1u << 6) | (1u << 11));
    assert_int_equal(c.weekdays, 0x3e);
    assert_false(c.days_star);
    assert_false(c.weekdays_star);
    /* a/n runs from a to the field's maximum */
    assert_int_equal(cron_parse("5/20 20/2 * * *", &c, NULL, 0), ML_OK);
    assert_true(c.minutes == ((UINT64_C(1) << 5) | (UINT64_C(1) << 25) | (UINT64_C(1) << 45)));
    assert_int_equal(c.hours, (1u << 20) | (1u << 22));
    /* 0-7 and 1-7/2 over day-of-week's 0-7: 7 folds into Sunday */
    assert_int_equal(cron_parse("* * * * 0-7", &c, NULL, 0), ML_OK);
    assert_int_equal(c.weekdays, 0x7f);
    assert_int_equal(cron_parse("* * * * 1-7/2", &c, NULL, 0), ML_OK); /* 1,3,5,7 */
    assert_int_equal(c.weekdays, (1u << 0) | (1u << 1) | (1u << 3) | (1u << 5));
    /* '*' at the start of a day field makes it "unrestricted" for the day rule (vixie) */
    assert_int_equal(cron_parse("* * */2 * *", &c, NULL, 0), ML_OK);
    assert_true(c.days_star);
    assert_true(c.weekdays_star);
    assert_int_equal(cron_parse("* * 1 * 1", &c, NULL, 0), ML_OK);
    assert_false(c.days_star);
    assert_false(c.weekdays_star);
    assert_true(c.minutes == (UINT64_C(1) << 60) - 1);
}

static void test_normalised_text(void **state)
{
    cron_expr c;

    (void)state;
    assert_int_equal(cron_parse("  0   9-17\t* *   mon-FRI ", &c, NULL, 0), ML_OK);
    assert_string_equal(c.text, "0 9-17 * * mon-FRI");
    assert_int_equal(cron_parse("@daily", &c, NULL, 0), ML_OK);
    assert_string_equal(c.text, "0 0 * * *");
    assert_int_equal(cron_parse(" @Weekly\t", &c, NULL, 0), ML_OK);
    assert_string_equal(c.text, "0 0 * * 0");
    assert_int_equal(cron_parse("@annually", &c, NULL, 0), ML_OK);
    assert_string_equal(c.text, "0 0 1 1 *");
    assert_int_equal(cron_parse("@midnight", &c, NULL, 0), ML_OK);
    assert_string_equal(c.text, "0 0 * * *");
}

/* Impossible schedules are answered from bit tests alone: 400 years of Februaries in
 * well under the time a naive minute loop would need. */
static void test_never_is_fast(void **state)
{
    struct timespec a, b;
    cron_expr c;
    int64_t next;
    double ms;

    (void)state;
    assert_int_equal(cron_parse("* * 31 2,4,6,9,11 *", &c, NULL, 0), ML_OK);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cron_next(&c, 1704067200, &next), ML_ERR);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    /* ~20k day tests each; even under ASan this is a few ms */
    assert_true(ms < 500.0);
}

/* libc's calendar as the oracle: does c fire at t? */
static bool fires_at(const cron_expr *c, time_t t)
{
    struct tm tm;
    bool dom, dow;

    gmtime_r(&t, &tm);
    dom = c->days >> tm.tm_mday & 1;
    dow = c->weekdays >> tm.tm_wday & 1;
    return (c->minutes >> tm.tm_min & 1) && (c->hours >> tm.tm_hour & 1) &&
           (c->months >> (tm.tm_mon + 1) & 1) &&
           (c->days_star || c->weekdays_star ? dom && dow : dom || dow);
}

/* Walks every minute of a window and checks each fire cron_next reports is the very next
 * minute the oracle accepts. */
static void test_cross_check_minute_by_minute(void **state)
{
    static const char *const exprs[] = {
        "*/7 */5 * * *", "0,30 8-18 1-7 * MON", "15 3 */10 * *", "* 0 29 2 *",
        "5-55/25 22,23 28-31 * *", "0 12 * feb,mar sun,sat", "@hourly",
    };
    const int64_t from = 1706745600; /* 2024-02-01 00:00:00 UTC */
    const int64_t to = from + 60 * 86400;

    (void)state;
    for (size_t i = 0; i < ML_ARRAY_LEN(exprs); i++) {
        cron_expr c;
        int64_t t = from, next;

        assert_int_equal(cron_parse(exprs[i], &c, NULL, 0), ML_OK);
        while (cron_next(&c, t, &next) == ML_OK && next < to) {
            if (next <= t)
                fail_msg("'%s' after %lld reported %lld, not later", exprs[i], (long long)t, (long long)next);
            for (int64_t m = (t / 60 + 1) * 60; m < next; m += 60)
                if (fires_at(&c, (time_t)m))
                    fail_msg("'%s' skipped a fire at %lld", exprs[i], (long long)m);
            if (!fires_at(&c, (time_t)next))
                fail_msg("'%s' reported %lld, which does not match", exprs[i], (long long)next);
            t = next;
        }
        for (int64_t m = (t / 60 + 1) * 60; m < to; m += 60)
            if (fires_at(&c, (time_t)m))
                fail_msg("'%s' skipped a fire at %lld", exprs[i], (long long)m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_fire_times),
        cmocka_unit_test(test_chained_fires),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_limits_and_misuse),
        cmocka_unit_test(test_sets),
        cmocka_unit_test(test_normalised_text),
        cmocka_unit_test(test_never_is_fast),
        cmocka_unit_test(test_cross_check_minute_by_minute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
