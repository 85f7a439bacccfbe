/* logs_read.c — one page of a function's stored log lines (docs/logs.md §1 "Read"): the query
 * and the lines' JSON, shared by GET /functions/{fn}/logs (logs_http.c) and follow. */
#include <cJSON.h>
#include <string.h>

#include "logs-int.h"
#include "logs_query.h"

static const char *const stream_names[] = { "stdout", "stderr", "platform" };

/* LOGS_SELECT_FILTERED with $3 since, $8/$9 the cursor (ts µs, id) and $10 the limit; one
 * extra row tells whether there is a next page. */
#define LOGS_SQL                                                                                \
    LOGS_SELECT_FILTERED                                                                        \
    " AND ($8::bigint IS NULL OR (ts, id) > ('epoch'::timestamptz + $8::bigint * interval '1 microsecond', $9::bigint))" \
    " ORDER BY ts, id LIMIT $10::int + 1"

cJSON *logs_row_json(const PGresult *r, int i)
{
    cJSON *o = cJSON_CreateObject();
    int64_t s = 0;

    pg_get_int64(r, i, 1, &s);
    cJSON_AddStringToObject(o, "ts", PQgetvalue(r, i, 0));
    cJSON_AddStringToObject(o, "stream", stream_names[s >= 0 && s <= 2 ? s : 0]);
    cJSON_AddStringToObject(o, "level", PQgetvalue(r, i, 2));
    if (pg_is_null(r, i, 3))
        cJSON_AddNullToObject(o, "request_id");
    else
        cJSON_AddStringToObject(o, "request_id", PQgetvalue(r, i, 3));
    cJSON_AddStringToObject(o, "version", PQgetvalue(r, i, 4));
    cJSON_AddStringToObject(o, "message", PQgetvalue(r, i, 5));
    return o;
}

/* The page as the response body: lines and next_cursor ("ts_us.id" of the last line shown). */
static cJSON *page_json(const char *name, const PGresult *r, int64_t limit)
{
    cJSON *o = cJSON_CreateObject(), *lines;
    int n = PQntuples(r), shown = n > limit ? (int)limit : n;
    char cur[48];

    cJSON_AddStringToObject(o, "function", name);
    lines = cJSON_AddArrayToObject(o, "lines");
    for (int i = 0; i < shown; i++)
        cJSON_AddItemToArray(lines, logs_row_json(r, i));
    if (n > limit && ml_snprintf(cur, sizeof(cur), "%s.%s", PQgetvalue(r, shown - 1, 6),
                                 PQgetvalue(r, shown - 1, 7)) == ML_OK)
        cJSON_AddStringToObject(o, "next_cursor", cur);
    else
        cJSON_AddNullToObject(o, "next_cursor");
    return o;
}

cJSON *logs_read_page(pg_conn *db, const char *ns, const char *name, const logs_query *lq,
                      int64_t def_days)
{
    char since[24], until[24], cts[24], cid[24], lim[24], days[24];
    const char *p[11] = { ns, name, since, lq->has_until ? until : NULL,
                          lq->request_id[0] ? lq->request_id : NULL,
                          lq->streams[0] ? lq->streams : NULL, lq->q,
                          lq->has_cursor ? cts : NULL, lq->has_cursor ? cid : NULL, lim, days };
    PGresult *r;
    cJSON *o;

    ml_snprintf_trunc(since, sizeof(since), "%lld", (long long)lq->since_us);
    ml_snprintf_trunc(until, sizeof(until), "%lld", (long long)lq->until_us);
    ml_snprintf_trunc(cts, sizeof(cts), "%lld", (long long)lq->cursor_us);
    ml_snprintf_trunc(cid, sizeof(cid), "%lld", (long long)lq->cursor_id);
    ml_snprintf_trunc(lim, sizeof(lim), "%lld", (long long)lq->limit);
    ml_snprintf_trunc(days, sizeof(days), "%lld", (long long)def_days);
    if (!(r = pg_query(db, "logs_page", LOGS_SQL, 11, p)))
        return NULL;
    o = page_json(name, r, lq->limit);
    PQclear(r);
    return o;
}
