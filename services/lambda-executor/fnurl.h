/* fnurl.h — a function's URL configuration (docs/http.md "Function URLs"): the rules a
 * PUT /functions/{fn}/url body must follow, its storage (function_urls, migration 0017) and
 * the routes PUT/GET/DELETE /functions/{fn}/url. The gateway reads the stored document as
 * "url_config" of GET /functions/{fn} (FNURL_DOC_SQL) and enforces it; nothing here runs a
 * function. Threads: the rules are pure; the routes are blocking (HTTP worker threads). */
#ifndef EX_FNURL_H
#define EX_FNURL_H

#include <cJSON.h>
#include <stddef.h>

#include "app.h"
#include "httpd.h"

/* Limits (the gateway's fnurl-t.h sizes its copies by the same numbers). */
#define FNURL_ORIGINS_MAX 16
#define FNURL_HEADERS_MAX 32
#define FNURL_LIST_BYTES_MAX 1023 /* a list joined with commas */
#define FNURL_KEYS_MAX 4
#define FNURL_KEY_BYTES_MAX 71
#define FNURL_MAX_AGE_MAX 86400
#define FNURL_FIELD_MAX 64

/* The document of a function's URL, for a query over "functions f" (NULL when it has
 * none): the stored configuration plus function, function_id, url, created_at, updated_at. */
#define FNURL_ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
/* over a function_urls row u and its functions row f */
#define FNURL_DOC_EXPR                                                                         \
    "(u.config || jsonb_build_object('function', f.name, 'function_id', f.id, 'url',"          \
    " CASE WHEN f.namespace = 'default' THEN '/fn/' || f.name"                                 \
    " ELSE '/ns/' || f.namespace || '/fn/' || f.name END,"                                     \
    " 'created_at', " FNURL_ISO("u.created_at") ", 'updated_at', " FNURL_ISO("u.updated_at") "))"
#define FNURL_DOC_SQL "(SELECT " FNURL_DOC_EXPR " FROM function_urls u WHERE u.function_id = f.id)"

/* Checks a PUT body and returns its normalised configuration (every member present,
 * defaults filled: auth, qualifier, cors, batching; caller frees with cJSON_Delete), or NULL
 * with the offending field's dotted name ("cors.allow_origins") in field and why in why. */
cJSON *fnurl_rules_check(const cJSON *body, char field[FNURL_FIELD_MAX], char *why, size_t whylen);

/* Writes the URL routes to out; returns how many (3 are needed). */
size_t fnurl_routes(ex_app *app, httpd_route *out, size_t max);

#endif
