/* fnurl-t.h — types of function URLs (docs/http.md): a function's URL configuration as the
 * executor keeps it (GET /functions/{fn} "url_config"), and what one URL request got back
 * from the function, whether it ran alone or in a batch. Functions: fnurl.h, batch.h. */
#ifndef GW_FNURL_T_H
#define GW_FNURL_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_FNURL_LIST_MAX 1024  /* a CORS list, comma-joined ("https://a.example,https://b.example") */
#define GW_FNURL_QUALIFIER_MAX 129
#define GW_FNURL_MAX_KEYS 4     /* extra batch key dimensions */
#define GW_FNURL_KEY_MAX 72     /* "header:x-tenant-id", "query:region", "method", "path" */

typedef enum { GW_FNURL_AUTH_JWT = 0, GW_FNURL_AUTH_NONE = 1 } gw_fnurl_auth;

typedef struct gw_fnurl_cors {
    bool enabled;                            /* a "cors" object was configured */
    char allow_origins[GW_FNURL_LIST_MAX];   /* "*" or origins */
    char allow_methods[GW_FNURL_LIST_MAX];   /* "*" or methods */
    char allow_headers[GW_FNURL_LIST_MAX];
    char expose_headers[GW_FNURL_LIST_MAX];
    int64_t max_age;                         /* seconds; 0: no Access-Control-Max-Age */
    bool allow_credentials;
} gw_fnurl_cors;

/* Per-route micro-batching (docs/http.md "Batching"). A zeroed struct: off. */
typedef struct gw_fnurl_batching {
    bool enabled;
    int64_t max_wait_ms;       /* 1..1000: the longest the first request of a batch waits */
    int64_t max_batch_size;    /* 2..1000: a batch this large goes at once */
    size_t nkeys;
    char keys[GW_FNURL_MAX_KEYS][GW_FNURL_KEY_MAX];
    bool dynamic;              /* the wait follows the key's request rate (sigmoid) */
    double rate_mid;           /* requests/s at which the wait is half of max_wait_ms */
    double rate_width;         /* how smoothly it grows around rate_mid (requests/s) */
} gw_fnurl_batching;

/* A zeroed struct: the function has no URL. */
typedef struct gw_fnurl_cfg {
    bool enabled;
    gw_fnurl_auth auth;
    char qualifier[GW_FNURL_QUALIFIER_MAX]; /* "" : $LATEST */
    gw_fnurl_cors cors;
    gw_fnurl_batching batching;
} gw_fnurl_cfg;

/* What one URL request got back. Strings are borrowed for the duration of the callback
 * that hands it over. */
typedef enum {
    GW_FNOUT_RESULT = 0,     /* json: the handler's value (a v2 response object, or any value) */
    GW_FNOUT_FUNCTION_ERROR, /* json: {"errorType","errorMessage",...}: 502 function_error */
    GW_FNOUT_TIMEOUT,        /* the function (or the request's own deadline) timed out: 504 */
    GW_FNOUT_GATEWAY,        /* status/code/message: an error the gateway answers as such */
} gw_fnout_kind;

typedef struct gw_fnout {
    gw_fnout_kind kind;
    const char *json;
    size_t len;
    int status;              /* GW_FNOUT_GATEWAY: 503, 502, 429, ... */
    const char *code;        /* GW_FNOUT_GATEWAY: "upstream_unavailable", ... */
    const char *message;     /* GW_FNOUT_GATEWAY / GW_FNOUT_TIMEOUT: for the error body */
} gw_fnout;

#endif
