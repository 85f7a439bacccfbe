/* logs_query.c — parsing GET /functions/{fn}/logs's parameters (see logs_query.h). */
#include "logs_query.h"

#include <string.h>
#include <time.h>

#include "audit-int.h"
#include "httpd.h"

#define US_PER_S 1000000LL
#define DEFAULT_SINCE_US (3600 * US_PER_S) /* one hour back */
#define MAX_AGO_US (3660LL * 86400 * US_PER_S) /* ten years: more than any retention */

/* n decimal digits at *s into *v, advancing *s; ML_ERR unless all n are digits. */
static int digits(const char **s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++, (*s)++) {
        if (**s < '0' || **s > '9')
            return ML_ERR;
        *v = *v * 10 + (**s - '0');
    }
    return ML_OK;
}

static int expect(const char **s, const char *set)
{
    if (!**s || !strchr(set, **s))
        return ML_ERR;
    (*s)++;
    return ML_OK;
}

/* "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)". */
static int parse_rfc3339(const char *s, int64_t *out_us)
{
    struct tm tm = { 0 };
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    int64_t frac = 0, scale = US_PER_S;

    if (digits(&s, 4, &y) || expect(&s, "-") || digits(&s, 2, &mo) || expect(&s, "-") ||
        digits(&s, 2, &d) || expect(&s, "Tt ") || digits(&s, 2, &h) || expect(&s, ":") ||
        digits(&s, 2, &mi) || expect(&s, ":") || digits(&s, 2, &sec))
        return ML_ERR;
    if (*s == '.') {
        if (*++s < '0' || *s > '9')
            return ML_ERR;
        for (; *s >= '0' && *s <= '9'; s++)
            if (scale > 1) {
                scale /= 10;
                frac += (*s - '0') * scale;
            }
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        sign = *s++ == '-' ? -1 : 1;
        if (digits(&s, 2, &oh) || expect(&s, ":") || digits(&s, 2, &om) || oh > 23 || om > 59)
            return ML_ERR;
    } else {
        return ML_ERR;
    }
    if (*s || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return ML_ERR;
    tm.tm_year = y - 1900, tm.tm_mon = mo - 1, tm.tm_mday = d;
    tm.tm_hour = h, tm.tm_min = mi, tm.tm_sec = sec;
    *out_us = ((int64_t)timegm(&tm) - sign * (oh * 3600 + om * 60)) * US_PER_S + frac;
    return ML_OK;
}

int logs_parse_time(const char *s, int64_t now_us, int64_t *out_us)
{
    size_t n = s ? strlen(s) : 0;
    int64_t v, unit = 0;

    if (n == 0 || n > 40)
        return ML_ERR;
    switch (s[n - 1]) { /* a duration back from now */
    case 's': unit = US_PER_S; break;
    case 'm': unit = 60 * US_PER_S; break;
    case 'h': unit = 3600 * US_PER_S; break;
    case 'd': unit = 86400 * US_PER_S; break;
    default: break;
    }
    if (unit && n > 1 && s[0] >= '0' && s[0] <= '9') {
        char num[24];
        if (n - 1 >= sizeof(num))
            return ML_ERR;
        memcpy(num, s, n - 1);
        num[n - 1] = '\0';
        if (ml_parse_int64(num, 0, MAX_AGO_US / unit, &v) != ML_OK)
            return ML_ERR;
        *out_us = now_us - v * unit;
        return ML_OK;
    }
    if (ml_parse_int64(s, 0, INT64_MAX / 1000, &v) == ML_OK) { /* epoch milliseconds */
        *out_us = v * 1000;
        return ML_OK;
    }
    return parse_rfc3339(s, out_us);
}

int logs_parse_cursor(const char *s, int64_t *ts_us, int64_t *id)
{
    const char *dot = s ? strchr(s, '.') : NULL;
    char ts[24];

    if (!dot || (size_t)(dot - s) >= sizeof(ts) || dot == s)
        return ML_ERR;
    memcpy(ts, s, (size_t)(dot - s));
    ts[dot - s] = '\0';
    return ml_parse_int64(ts, INT64_MIN / 2, INT64_MAX / 2, ts_us) == ML_OK &&
                   ml_parse_int64(dot + 1, 1, INT64_MAX, id) == ML_OK
               ? ML_OK
               : ML_ERR;
}

/* "stdout,platform" → "{0,2}" (each named stream once). */
static int parse_streams(const char *s, char out[16])
{
    static const char *const names[] = { "stdout", "stderr", "platform" };
    bool seen[3] = { false, false, false };
    size_t o = 0;

    while (*s) {
        size_t len = strcspn(s, ","), k = 0;
        for (; k < 3 && !(strlen(names[k]) == len && strncmp(s, names[k], len) == 0); k++)
            ;
        if (k == 3)
            return ML_ERR;
        seen[k] = true;
        s += len + (s[len] == ',');
    }
    out[o++] = '{';
    for (int k = 0; k < 3; k++)
        if (seen[k]) {
            if (o > 1)
                out[o++] = ',';
            out[o++] = (char)('0' + k);
        }
    if (o == 1)
        return ML_ERR;
    out[o++] = '}';
    out[o] = '\0';
    return ML_OK;
}

/* q must be valid UTF-8 without control bytes that cannot be stored (NUL never arrives). */
static int valid_text(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 0, len;

    while (i < n) {
        if (u[i] < 0x80)
            i++;
        else if ((len = audit_utf8_len(u + i, n - i)) > 0)
            i += len;
        else
            return ML_ERR;
    }
    return n > 0 && n <= 1024 ? ML_OK : ML_ERR;
}

static int fail(char *bad, size_t badlen, const char *name)
{
    ml_snprintf_trunc(bad, badlen, "%s", name);
    return ML_ERR;
}

int logs_query_from(logs_param_fn get, void *ud, int64_t now_us, logs_query *out, char *bad,
                    size_t badlen)
{
    const char *since = get(ud, "since"), *until = get(ud, "until"), *rid = get(ud, "request_id");
    const char *stream = get(ud, "stream"), *limit = get(ud, "limit"), *follow = get(ud, "follow");
    const char *cursor = get(ud, "cursor");

    memset(out, 0, sizeof(*out));
    out->limit = LOGS_LIMIT_DEFAULT;
    out->q = get(ud, "q");
    if (rid && (ml_uuid_valid(rid) != ML_OK || ml_strlcpy(out->request_id, rid, sizeof(out->request_id)) != ML_OK))
        return fail(bad, badlen, "request_id");
    /* with a request id and no since: all of that invocation's lines */
    out->since_us = rid ? 0 : now_us - DEFAULT_SINCE_US;
    if (since && logs_parse_time(since, now_us, &out->since_us) != ML_OK)
        return fail(bad, badlen, "since");
    if (until && logs_parse_time(until, now_us, &out->until_us) != ML_OK)
        return fail(bad, badlen, "until");
    out->has_until = until != NULL;
    if (stream && parse_streams(stream, out->streams) != ML_OK)
        return fail(bad, badlen, "stream");
    if (out->q && valid_text(out->q) != ML_OK)
        return fail(bad, badlen, "q");
    if (limit && ml_parse_int64(limit, 1, LOGS_LIMIT_MAX, &out->limit) != ML_OK)
        return fail(bad, badlen, "limit");
    if (cursor && logs_parse_cursor(cursor, &out->cursor_us, &out->cursor_id) != ML_OK)
        return fail(bad, badlen, "cursor");
    out->has_cursor = cursor != NULL;
    if (follow && strcmp(follow, "1") != 0 && strcmp(follow, "true") != 0 && strcmp(follow, "0") != 0 &&
        strcmp(follow, "false") != 0)
        return fail(bad, badlen, "follow");
    out->follow = follow && (strcmp(follow, "1") == 0 || strcmp(follow, "true") == 0);
    return ML_OK;
}

static const char *req_param(void *ud, const char *name)
{
    return httpd_query(ud, name);
}

int logs_query_parse(struct httpd_req *req, int64_t now_us, logs_query *out, char *bad, size_t badlen)
{
    return logs_query_from(req_param, req, now_us, out, bad, badlen);
}
