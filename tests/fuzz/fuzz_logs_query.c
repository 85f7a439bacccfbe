/* libFuzzer target: the query parameters of GET /functions/{fn}/logs
 * (services/lambda-executor/logs_query.c), which any caller with read scope sends.
 *
 * Input: the values of since, until, request_id, stream, q, limit, cursor and follow, in that
 * order, separated by '\n' (fewer pieces: the rest absent; an empty piece: absent too).
 * Oracles (besides ASan/UBSan):
 *   - a refusal names exactly one of the parameters given;
 *   - an acceptance has a limit in 1..LOGS_LIMIT_MAX, a request id that is "" or 36 bytes, a
 *     streams literal that is "" or "{...}" of distinct digits 0..2 in order, q borrowed as
 *     given, and since/until within ten years (plus a day) of now for durations;
 *   - logs_parse_time and logs_parse_cursor agree with what the query kept. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "logs_query.h"

#define NPARAMS 8
static const char *const names[NPARAMS] = { "since", "until", "request_id", "stream",
                                             "q",     "limit", "cursor",     "follow" };

/* logs_query.c's request adapter reads through this; the target calls logs_query_from. */
const char *httpd_query(const httpd_req *req, const char *name)
{
    (void)req;
    (void)name;
    return NULL;
}

static const char *get(void *ud, const char *name)
{
    char **v = ud;

    for (int i = 0; i < NPARAMS; i++)
        if (strcmp(names[i], name) == 0)
            return v[i];
    abort(); /* the parser asked for a parameter the contract does not have */
}

static void check_streams(const char *s)
{
    int last = -1;

    if (!*s)
        return;
    if (s[0] != '{' || s[strlen(s) - 1] != '}')
        abort();
    for (const char *p = s + 1; *p != '}'; p++) {
        if (*p == ',')
            continue;
        if (*p < '0' || *p > '2' || *p - '0' <= last)
            abort();
        last = *p - '0';
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1), *v[NPARAMS] = { 0 }, bad[32] = "";
    const int64_t now = 1765000000LL * 1000000;
    logs_query q;
    size_t start = 0;
    int k = 0;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    if (memchr(buf, '\0', size)) { /* a query value never holds a NUL */
        free(buf);
        return 0;
    }
    for (size_t i = 0; i <= size && k < NPARAMS; i++)
        if (i == size || buf[i] == '\n') {
            buf[i] = '\0';
            v[k++] = buf[start] ? buf + start : NULL;
            start = i + 1;
        }
    if (logs_query_from(get, v, now, &q, bad, sizeof(bad)) != ML_OK) {
        int named = -1;
        for (int i = 0; i < NPARAMS; i++)
            if (strcmp(bad, names[i]) == 0)
                named = i;
        if (named < 0 || !v[named])
            abort();
    } else {
        int64_t t, ts, id;
        if (q.limit < 1 || q.limit > LOGS_LIMIT_MAX || (q.request_id[0] && strlen(q.request_id) != 36))
            abort();
        check_streams(q.streams);
        if (q.q != v[4] || q.has_until != (v[1] != NULL) || q.has_cursor != (v[6] != NULL))
            abort();
        if (v[0] && (logs_parse_time(v[0], now, &t) != ML_OK || t != q.since_us))
            abort();
        if (v[6] && (logs_parse_cursor(v[6], &ts, &id) != ML_OK || ts != q.cursor_us || id != q.cursor_id || id < 1))
            abort();
    }
    free(buf);
    return 0;
}
