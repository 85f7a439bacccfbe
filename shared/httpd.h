/* httpd.h — the HTTP server layer every service uses, over libmicrohttpd.
 *
 * Route table with path parameters ("/functions/{fn}/invoke"), body accumulation with a hard
 * cap (413 once the over-long body has been read and dropped, up to max(16 MiB, 2 x the cap);
 * at once, and the connection closed, beyond that or for "Expect: 100-continue"), JSON errors
 * in the contract's shape (which a dialect may reshape: shape_reject), X-Request-Id in and out, per-route metrics, graceful shutdown.
 *
 * Threading: MHD runs an epoll thread pool (measured ~13k req/s here vs ~5k for
 * thread-per-connection). Those threads must never block, so a route that blocks (database,
 * S3, waiting for a sandbox) sets .blocking and runs on the server's worker threads while its
 * connection is suspended. A handler may also return HTTPD_ASYNC and later call
 * httpd_complete() from any thread (used for event-driven waits). */
#ifndef ML_HTTPD_H
#define ML_HTTPD_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "metrics.h"

#define HTTPD_MAX_PARAMS 8
#define HTTPD_MAX_RESP_HEADERS 64 /* functions send many headers, several Set-Cookie */

typedef struct httpd httpd;
typedef struct httpd_req httpd_req;

typedef struct httpd_resp_header {
    char *name, *value;
} httpd_header_kv;

typedef struct httpd_stream httpd_stream;

/* A zeroed httpd_resp is a valid empty 200. Owned by the server; handlers fill it. */
typedef struct httpd_resp {
    int status;
    const char *content_type; /* static string (or content_type_owned); default application/json */
    char *content_type_owned; /* httpd_resp_content_type's copy, freed with the response */
    ml_buf body;
    httpd_header_kv headers[HTTPD_MAX_RESP_HEADERS];
    size_t nheaders;
    const char *request_id;   /* set by the server: the id errors must carry */
    httpd_stream *stream;     /* set by httpd_resp_stream: the body is streamed */
} httpd_resp;

typedef enum { HTTPD_DONE = 0, HTTPD_ASYNC = 1 } httpd_result;
typedef httpd_result (*httpd_handler_fn)(httpd_req *req, httpd_resp *resp, void *ud);
/* Rewrites a refusal the server wrote itself (404, 405, 413, 503 while draining; resp holds
 * the contract's {"error":{...}}) before it is sent. Runs on an MHD thread: must not block. */
typedef void (*httpd_reject_fn)(const httpd_req *req, httpd_resp *resp, void *ud);
/* Admission check, run once per request as soon as its headers are in: before routing (so a
 * refused caller learns nothing about the routes) and before the body is read (so it cannot
 * make the server buffer one). Returns 0 to admit, or the HTTP status to refuse with; the
 * refusal is {"error":{"code","message"}} from *code and *msg (static strings) and closes the
 * connection. Runs on an MHD thread: must not block. */
typedef int (*httpd_guard_fn)(const httpd_req *req, void *ud, const char **code, const char **msg);
/* What the server knows about a request once its response is sent (or the client gone). */
typedef struct httpd_done_info {
    int status;
    uint64_t bytes_in;     /* request body bytes read (kept or discarded) */
    uint64_t bytes_out;    /* response body bytes queued */
    int64_t duration_us;   /* from its headers' arrival to now */
    bool aborted;          /* the connection ended before the response was sent */
} httpd_done_info;
/* Called once per request after its response, refused ones included (an access log). Runs on
 * an MHD thread (the request's loop): must not block. It owns the request's note. */
typedef void (*httpd_done_fn)(const httpd_req *req, const httpd_done_info *info, void *ud);

typedef struct httpd_route {
    const char *method;  /* "GET", "POST", ...; "*": any method (a route with the exact
                          * method for the same path wins) */
    const char *pattern; /* "/functions/{fn}/invoke": {name} matches one non-empty segment;
                          * a last segment {name+} matches the rest of the path (one or more
                          * segments, slashes included) */
    httpd_handler_fn fn;
    void *ud;
    size_t max_body;     /* 0: the server's default */
    bool blocking;       /* run on a worker thread: the handler may block */
} httpd_route;

typedef struct httpd_config {
    const char *service;    /* label value in the HTTP metrics */
    const char *bind_addr;  /* NULL or "0.0.0.0": all interfaces */
    uint16_t port;          /* 0: pick a free port (tests); see httpd_port */
    unsigned threads;       /* MHD polling threads; 0: 2 */
    unsigned workers;       /* worker threads for blocking routes; 0: 16 */
    size_t max_body;        /* default body cap; 0: 1 MiB */
    unsigned conn_timeout_s;/* idle connection timeout; 0: 60 */
    unsigned drain_timeout_s; /* httpd_stop waits this long for in-flight requests; 0: 30 */
    metrics_registry *metrics; /* optional: per-route metrics and GET /metrics */
    bool external;          /* no MHD threads: the caller runs `threads` loops (httpd_loop_*) */
    httpd_reject_fn shape_reject; /* optional: e.g. the AWS error shape on an AWS route */
    void *shape_reject_ud;
    httpd_guard_fn guard;   /* optional: e.g. the internal credential (intauth.h) */
    void *guard_ud;
    httpd_done_fn done;     /* optional: e.g. the gateway's access log */
    void *done_ud;
} httpd_config;

/* Starts serving routes (the array must outlive the server). On failure returns NULL and
 * writes a reason to err. Free with httpd_stop. */
httpd *httpd_start(const httpd_config *cfg, const httpd_route *routes, size_t nroutes,
                   char *err, size_t errlen);
/* Stops accepting, waits (bounded) for in-flight requests, stops and frees the server. */
void httpd_stop(httpd *h);

/* Stops listening, answers new requests on open connections with 503 and waits (up to the
 * drain timeout) for in-flight requests; true when none is left. httpd_stop does this too;
 * in external mode the caller's loops must keep running until it returns. */
bool httpd_drain(httpd *h);

/* External mode (cfg.external): the caller runs one event loop per daemon, always from the
 * same thread. Loop i calls httpd_loop_run(h, i) when MHD's epoll fd (returned by
 * httpd_loop_fd) is readable, when the eventfd *wake_fd is (after reading its 8 bytes: a
 * request was completed on another thread), when httpd_loop_again says a request was
 * completed on the loop's own thread, and when httpd_loop_timeout_ms(h, i) (-1: none) has
 * passed. The loops must have stopped before httpd_stop frees the daemons. httpd_loops is
 * 0 in the default mode. */
unsigned httpd_loops(const httpd *h);
int httpd_loop_fd(const httpd *h, unsigned i, int *wake_fd);
void httpd_loop_run(httpd *h, unsigned i);
bool httpd_loop_again(const httpd *h, unsigned i);
int64_t httpd_loop_timeout_ms(httpd *h, unsigned i);
uint16_t httpd_port(const httpd *h);

/* Request accessors. Strings live until the response is sent. */
const char *httpd_method(const httpd_req *req);
const char *httpd_path(const httpd_req *req);
const char *httpd_route_pattern(const httpd_req *req); /* "unmatched" if none */
const char *httpd_param(const httpd_req *req, const char *name);
const char *httpd_header(const httpd_req *req, const char *name); /* case-insensitive */
/* Calls fn for every request header in the order received, repeats included (names as the
 * client spelled them). */
void httpd_header_each(const httpd_req *req, void (*fn)(void *ud, const char *name, const char *value),
                       void *ud);
/* The query string exactly as sent (after '?', not decoded); "" when there is none. */
const char *httpd_raw_query(const httpd_req *req);
const char *httpd_query(const httpd_req *req, const char *name);
/* Calls fn for every query argument in order, repeated keys included (value NULL for a
 * bare "?key"); SigV4 signs them all. */
void httpd_query_each(const httpd_req *req, void (*fn)(void *ud, const char *key, const char *value),
                      void *ud);
const char *httpd_body(const httpd_req *req, size_t *len);        /* NUL-terminated */
const char *httpd_request_id(const httpd_req *req);
const char *httpd_client_ip(const httpd_req *req);
/* One pointer a service attaches to a request for its done callback (which frees it). */
void httpd_req_set_note(httpd_req *req, void *note);
void *httpd_req_note(const httpd_req *req); /* NULL for a NULL req */
/* Parses the body as JSON; NULL (and a 400 written to resp) if it is not. Caller frees
 * the result with cJSON_Delete. */
cJSON *httpd_body_json(const httpd_req *req, httpd_resp *resp);

/* Finishes a request whose handler returned HTTPD_ASYNC; callable from any thread, once. */
void httpd_complete(httpd_req *req);

/* Response helpers. */
/* Sets status and serialises json as the body; takes ownership of json (frees it). */
int httpd_resp_json(httpd_resp *resp, int status, cJSON *json);
/* {"error":{"code","message","request_id"}} with the given status. */
int httpd_resp_error(httpd_resp *resp, int status, const char *code, const char *fmt, ...)
    ML_PRINTF(4, 5);
int httpd_resp_text(httpd_resp *resp, int status, const char *content_type, const char *text);
/* Sets the response's Content-Type to a copy of ct (for values that are not static
 * strings). ML_ERR (type unchanged) when out of memory. */
int httpd_resp_content_type(httpd_resp *resp, const char *ct);
/* Adds a header (copied; an empty value is sent as an empty field). ML_ERR when the header
 * table is full. */
int httpd_resp_header(httpd_resp *resp, const char *name, const char *value);

/* ---- streamed responses (SSE, NDJSON; docs/logs.md): a body written after the handler returns.
 * httpd_resp_stream makes resp (status, headers as set on it) a stream of content_type
 * (copied); the handler then returns HTTPD_DONE (or completes its HTTPD_ASYNC
 * request). The stream has two owners: the server (until the client is done or gone) and
 * the producer (until it calls httpd_stream_close exactly once); it is freed when both
 * have let go. NULL on allocation failure (resp is then
 * a 500 and there is nothing to close). The client's going away is noticed when MHD next
 * sends (a suspended connection is not polled), i.e. at the next write. httpd_drain ends
 * every stream for its client (writes then fail) so that the server can stop. */
httpd_stream *httpd_resp_stream(httpd_resp *resp, const char *content_type);
/* Queues bytes for the client, from any thread; they go out at once. ML_OK, or ML_ERR once the
 * client has gone or more than HTTPD_STREAM_MAX_BUFFERED bytes would wait unsent (the stream
 * is then over for the client; the producer should close). */
#define HTTPD_STREAM_MAX_BUFFERED (1u << 20)
int httpd_stream_write(httpd_stream *s, const void *data, size_t len);
/* Bytes queued and not yet sent; true once the client has gone (both: any thread). */
size_t httpd_stream_pending(const httpd_stream *s);
bool httpd_stream_gone(const httpd_stream *s);
/* Ends the body after what is queued; the producer must not touch s afterwards. */
void httpd_stream_close(httpd_stream *s);
/* As httpd_stream_close, but the body ends cut (no final chunk: the client sees an
 * incomplete response, not a whole one) after what is queued. */
void httpd_stream_abort(httpd_stream *s);
/* Asks for fn(ud) when the queue falls from above low_water to low_water or below (the
 * client read it: a producer that paused may go on) and once when the client goes. fn runs
 * on a server thread with the stream's lock held: it must not call httpd_stream_* (set a
 * flag, wake a thread). Never called after httpd_stream_close returns. */
typedef void (*httpd_stream_notify_fn)(void *ud);
void httpd_stream_notify(httpd_stream *s, size_t low_water, httpd_stream_notify_fn fn, void *ud);

/* Copies up to max of the n routes in src to dst; returns how many (route tables of modules). */
size_t httpd_routes_copy(httpd_route *dst, size_t max, const httpd_route *src, size_t n);

/* Ready-made handler for GET /metrics: ud is the metrics_registry. */
httpd_result httpd_metrics_handler(httpd_req *req, httpd_resp *resp, void *ud);

/* Path matching, exposed for tests: ML_OK if path matches pattern; fills up to
 * HTTPD_MAX_PARAMS (name, value) pairs; values are malloc'd, caller frees them. */
int httpd_match(const char *pattern, const char *path, const char **names, char **values,
                size_t *nparams);

#endif
