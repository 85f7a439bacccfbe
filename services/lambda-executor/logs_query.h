/* logs_query.h — the query parameters of GET /functions/{fn}/logs (docs/logs.md §1 "Read"),
 * parsed and checked before any database work. */
#ifndef EX_LOGS_QUERY_H
#define EX_LOGS_QUERY_H

#include <stdbool.h>
#include <stdint.h>

#include "ml.h"

#define LOGS_LIMIT_DEFAULT 100
#define LOGS_LIMIT_MAX 1000

typedef struct logs_query {
    int64_t since_us, until_us;  /* since is always set; until when has_until */
    bool has_until;
    char request_id[ML_UUID_LEN]; /* "" when not given */
    char streams[16];             /* a smallint[] literal ("{0,2}"), "" for every stream */
    const char *q;                /* borrowed from the request; NULL when not given */
    bool has_cursor;
    int64_t cursor_us, cursor_id;
    int64_t limit;
    bool follow;
} logs_query;

/* Reads a query parameter (NULL when absent). */
typedef const char *(*logs_param_fn)(void *ud, const char *name);

/* Parses the parameters read through get (now_us: the wall clock). ML_ERR with the bad
 * parameter's name in bad. */
int logs_query_from(logs_param_fn get, void *ud, int64_t now_us, logs_query *out, char *bad,
                    size_t badlen);

/* A time as `since`/`until` take it: RFC 3339, epoch milliseconds, or a duration back from
 * now_us ("10m", "2h", "7d", "30s"). ML_ERR when it is none of them. */
int logs_parse_time(const char *s, int64_t now_us, int64_t *out_us);

/* A cursor as next_cursor gives it ("<ts µs>.<id>"). ML_ERR when malformed. */
int logs_parse_cursor(const char *s, int64_t *ts_us, int64_t *id);

struct httpd_req;
/* logs_query_from over the request's query string. */
int logs_query_parse(struct httpd_req *req, int64_t now_us, logs_query *out, char *bad, size_t badlen);

#endif
