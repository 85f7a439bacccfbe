/* fnurl_cors.c — CORS for function URLs, answered at the gateway (see fnurl.h,
 * docs/http.md "CORS"). */
#include "fnurl.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ml.h"

/* Whether the comma-joined list holds item (case-insensitive, blanks around items ignored). */
static bool listed(const char *list, const char *item)
{
    size_t ilen = strlen(item);

    for (const char *p = list; *p;) {
        size_t len;

        p += strspn(p, " ,");
        len = strcspn(p, ",");
        while (len && p[len - 1] == ' ')
            len--;
        if (len && len == ilen && strncasecmp(p, item, len) == 0)
            return true;
        p += strcspn(p, ",");
    }
    return false;
}

bool gw_fnurl_cors_allowed(const gw_fnurl_cors *cors, const char *origin)
{
    if (!cors->enabled || !origin || !*origin)
        return false;
    return listed(cors->allow_origins, "*") || listed(cors->allow_origins, origin);
}

/* Access-Control-Allow-Origin: "*" only for a wildcard list without credentials (browsers
 * refuse "*" with credentials), else the origin itself, which makes the answer vary by it. */
static void allow_origin(httpd_resp *resp, const gw_fnurl_cors *cors, const char *origin)
{
    if (listed(cors->allow_origins, "*") && !cors->allow_credentials) {
        httpd_resp_header(resp, "Access-Control-Allow-Origin", "*");
        return;
    }
    httpd_resp_header(resp, "Access-Control-Allow-Origin", origin);
    httpd_resp_header(resp, "Vary", "Origin");
}

void gw_fnurl_cors_preflight(httpd_resp *resp, const gw_fnurl_cors *cors, const char *origin,
                             const char *req_method, const char *req_headers)
{
    char age[24];

    ml_buf_free(&resp->body);
    resp->status = 204;
    if (!gw_fnurl_cors_allowed(cors, origin))
        return;
    allow_origin(resp, cors, origin);
    /* "*" with credentials is a literal to browsers: echo what was asked instead */
    if (cors->allow_methods[0])
        httpd_resp_header(resp, "Access-Control-Allow-Methods",
                          listed(cors->allow_methods, "*") && req_method ? req_method : cors->allow_methods);
    if (cors->allow_headers[0] && (!listed(cors->allow_headers, "*") || req_headers))
        httpd_resp_header(resp, "Access-Control-Allow-Headers",
                          listed(cors->allow_headers, "*") ? req_headers : cors->allow_headers);
    if (cors->max_age > 0 && ml_snprintf(age, sizeof(age), "%lld", (long long)cors->max_age) == ML_OK)
        httpd_resp_header(resp, "Access-Control-Max-Age", age);
    if (cors->allow_credentials)
        httpd_resp_header(resp, "Access-Control-Allow-Credentials", "true");
}

/* Drops the function's own Access-Control-* headers: the URL's configuration decides. */
static void drop_function_cors(httpd_resp *resp)
{
    size_t w = 0;

    for (size_t i = 0; i < resp->nheaders; i++) {
        if (strncasecmp(resp->headers[i].name, "Access-Control-", 15) == 0) {
            free(resp->headers[i].name);
            free(resp->headers[i].value);
            continue;
        }
        resp->headers[w++] = resp->headers[i];
    }
    resp->nheaders = w;
}

void gw_fnurl_cors_actual(httpd_resp *resp, const gw_fnurl_cors *cors, const char *origin)
{
    if (!cors->enabled)
        return;
    drop_function_cors(resp);
    if (!gw_fnurl_cors_allowed(cors, origin))
        return;
    allow_origin(resp, cors, origin);
    if (cors->expose_headers[0])
        httpd_resp_header(resp, "Access-Control-Expose-Headers", cors->expose_headers);
    if (cors->allow_credentials)
        httpd_resp_header(resp, "Access-Control-Allow-Credentials", "true");
}
