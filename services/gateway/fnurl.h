/* fnurl.h — function URLs (docs/http.md): any method on /fn/{fn}[/{proxy+}] and
 * /ns/{ns}/fn/{fn}[/{proxy+}] invokes the function with an API Gateway HTTP API payload v2.0
 * event and maps its result back to an HTTP response, as AWS Function URLs do.
 *
 * Pieces, each in its own file so the unit tests link only what they test:
 *   fnurl_event.c  the v2 event of a request (pure: built from gw_fnurl_req)
 *   fnurl_resp.c   the function's result (gw_fnout) -> the client's response
 *   fnurl_cors.c   CORS decisions: preflight answers and the headers of actual responses
 *   fnurl.c        the request path on the gateway's loops (lookup, auth, limits, invoke)
 * Threads: the builders are pure and thread-safe; gw_fnurl_handle runs on the HTTP server's
 * loop and continues on the proxy's loops (gateway.h). */
#ifndef GW_FNURL_H
#define GW_FNURL_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fnurl-t.h"
#include "httpd.h"

#define GW_FNURL_MAX_BODY (4u * 1024u * 1024u) /* a URL request's raw body */

/* ---- the v2 event ---- */

typedef struct gw_fnurl_kv {
    const char *name, *value; /* a bare query key ("?x") has value NULL */
} gw_fnurl_kv;

/* What an event is built from; everything borrowed. */
typedef struct gw_fnurl_req {
    const char *method;
    const char *raw_path;       /* the path after /fn/{fn}: "/" when none */
    const char *raw_query;      /* as sent, "" when none */
    const char *proxy;          /* pathParameters.proxy ("a/b"), NULL when no rest */
    const gw_fnurl_kv *headers; /* as received, repeats included */
    size_t nheaders;
    const gw_fnurl_kv *query;   /* decoded, in order, repeats included */
    size_t nquery;
    const char *body;
    size_t body_len;
    const char *source_ip;
    const char *request_id;
    const char *account_id;     /* gw_awsarn_account of the namespace */
    const char *api_id;         /* the function's name */
    int64_t time_ms;            /* when the request arrived (unix ms) */
    const cJSON *jwt_claims;    /* JWT mode: the token's claims (NULL: no authorizer) */
} gw_fnurl_req;

/* Whether a Content-Type (NULL: none) is text: text/..., or naming json, xml,
 * x-www-form-urlencoded or javascript. */
bool gw_fnurl_textual(const char *content_type);

/* The v2 event as JSON text (docs/http.md "The event"). Caller frees *out. ML_ERR when out
 * of memory. */
int gw_fnurl_event(const gw_fnurl_req *r, char **out, size_t *len);

/* ---- the response ---- */

/* Writes the client's response for what the function returned (docs/http.md "The
 * response"): a v2 response object, a bare value (200 JSON), a function error (502
 * function_error), a timeout (504 function_timeout) or a gateway error. Used for single
 * invokes and batch items alike. Returns the status written. */
int gw_fnurl_answer(httpd_resp *resp, const gw_fnout *out);

/* The head of a response from an object {"statusCode","headers","multiValueHeaders",
 * "cookies"} (a streamed response's metadata; no statusCode: 200): status and headers into
 * resp, no body.
 * *ctype is set to the Content-Type given (borrowed from http; NULL: none). ML_ERR with a
 * reason in why (static) when the object breaks a rule; resp is then untouched. */
int gw_fnurl_head(httpd_resp *resp, const cJSON *http, const char **ctype, const char **why);

/* ---- CORS ---- */

/* Whether origin (NULL: none) may see responses under cors. */
bool gw_fnurl_cors_allowed(const gw_fnurl_cors *cors, const char *origin);
/* A preflight (OPTIONS with Origin and Access-Control-Request-Method): 204, with the
 * Access-Control-* headers only when cors is configured and the origin allowed. req_method
 * and req_headers are the Access-Control-Request-* values (echoed where the list is "*"). */
void gw_fnurl_cors_preflight(httpd_resp *resp, const gw_fnurl_cors *cors, const char *origin,
                             const char *req_method, const char *req_headers);
/* An actual response: when cors is configured, the function's own Access-Control-*
 * headers go, and for an allowed origin Access-Control-Allow-Origin, Vary: Origin,
 * -Expose-Headers and -Allow-Credentials come. */
void gw_fnurl_cors_actual(httpd_resp *resp, const gw_fnurl_cors *cors, const char *origin);

/* ---- the request path (fnurl.c) ---- */

struct gw_app;
struct gw_route_def;

/* The handler of the function URL routes (called by gateway.c's handle for GW_KIND_FNURL). */
httpd_result gw_fnurl_handle(struct gw_app *a, const struct gw_route_def *d, httpd_req *req,
                             httpd_resp *resp);

#endif
