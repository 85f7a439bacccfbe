/* proxy.h — the gateway's event loops: upstream transfers driven by libcurl's multi
 * interface, rate-limit decisions on an asynchronous Redis connection, and small tasks
 * handed over by other threads.
 *
 * Each loop thread owns one curl multi handle (and so its pool of keep-alive connections to
 * the upstreams), one Redis connection (gw_rl), an epoll set fed by both, and an eventfd
 * through which other threads hand it tasks. Given an external-mode HTTP server, loop i also
 * runs the server's daemon i: a client request then lives on one thread from its first byte
 * to its response, with no hand-over between threads. Thousands of transfers wait concurrently on a
 * loop without a thread each; a slow upstream call costs a socket and a gw_xfer, nothing else.
 * Threading: gw_proxy_run and gw_proxy_submit are callable from any thread; everything else
 * (tasks, gw_loop_* calls, completion callbacks) happens on a loop thread. */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "httpd.h"
#include "ratelimit.h"
#include "upstream.h"

typedef struct gw_proxy gw_proxy;
typedef struct gw_loop gw_loop;
typedef struct gw_xfer gw_xfer;
typedef struct gw_task gw_task;

/* Runs on a loop thread. cancelled: the proxy is stopping; the task must still end whatever
 * it stands for (e.g. answer its client), without starting new work. */
typedef void (*gw_task_fn)(gw_loop *l, gw_task *t, bool cancelled);

/* Embed in the caller's own struct; the proxy only links it. */
struct gw_task {
    gw_task_fn run;
    gw_task *next;
};

/* How a transfer ended, for the client's status and the proxy error metric. */
typedef enum {
    GW_XFER_OK = 0,        /* a response arrived (any status) */
    GW_XFER_CONNECT,       /* no instance could be connected to */
    GW_XFER_TIMEOUT,       /* the upstream did not answer in time */
    GW_XFER_TOO_LARGE,     /* the response body exceeded max_response */
    GW_XFER_TRANSPORT,     /* reset, protocol error, ... after the request was sent */
    GW_XFER_SHUTDOWN,      /* the gateway is stopping */
} gw_xfer_result;

/* Runs on the loop thread when the transfer is over; owns x from then on. */
typedef void (*gw_xfer_done_fn)(gw_xfer *x);

/* One upstream exchange. The submitter fills the request part; the proxy the response. */
struct gw_xfer {
    /* request */
    gw_pool *pool;
    gw_instance *inst;           /* picked by the submitter with gw_pool_pick */
    unsigned cap;                /* GW_CAP_* it was picked for (a retry needs the same) */
    gw_admit admit;
    const char *method;
    char *path;                  /* owned: "/functions/x/invoke?limit=1", already encoded */
    struct curl_slist *headers;  /* owned */
    const char *body;            /* borrowed: must live until done runs */
    size_t body_len;
    long timeout_ms, connect_timeout_ms;
    size_t max_response;
    gw_xfer_done_fn done;
    void *ud;
    /* Optional: a final response whose Content-Type is a stream (gw_xfer_stream_type) is
     * relayed as it comes. on_stream runs on the loop thread once its headers are in
     * (status, resp_headers) and returns the client's stream (httpd_resp_stream), or NULL
     * to buffer the body as usual. From then on every chunk goes to that stream, the
     * transfer pauses while the client is GW_STREAM_HIGH_WATER or more behind, timeout_ms
     * bounds the silence between bytes instead of the whole exchange, and a client that has
     * gone aborts it. The proxy closes the stream before done runs. */
    httpd_stream *(*on_stream)(gw_xfer *x);
    bool streamed;               /* the body went to on_stream's stream: done owes no answer */
    /* Optional: a final response whose Content-Type is INVSTREAM_CONTENT_TYPE (invstream.h)
     * goes to on_chunk as its bytes arrive (status and resp_headers are set before the first
     * call; len is never 0) instead of into resp_body; timeout_ms then bounds the silence
     * between bytes, as for on_stream. Return ML_OK to go on, ML_ERR to abort the transfer
     * (result GW_XFER_TRANSPORT, error "aborted by the consumer"). done runs at the end as
     * usual, with chunked set. Takes precedence over on_stream for that content type. */
    int (*on_chunk)(gw_xfer *x, const char *data, size_t len);
    bool chunked;                /* the body went to on_chunk */
    httpd_stream *pace;          /* on_chunk's client (gw_xfer_pace); NULL: none to keep pace with */
    gw_loop *loop;               /* set when it starts */
    /* response */
    gw_xfer_result result;
    long status;
    ml_buf resp_headers;         /* "name\0value\0" pairs of the final response */
    ml_buf resp_body;
    char error[CURL_ERROR_SIZE];
    int attempts;
    long new_connections;        /* connections opened for it (0: a kept-alive one reused) */
    int64_t started_ms;
    /* private */
    gw_task task;                /* gw_proxy_submit's hand-over */
    CURL *easy;
    gw_xfer *next;
    bool too_large;
    httpd_stream *stream;        /* while relaying */
    bool paused;                 /* CURL_WRITEFUNC_PAUSE'd until the client catches up */
    atomic_bool unpause;         /* the client caught up (or left): set from a server thread */
};

/* The client may fall this far behind a relayed stream before the upstream is paused; it
 * resumes once the client is down to half of it. */
#define GW_STREAM_HIGH_WATER (256u * 1024u)

typedef struct gw_proxy_config {
    unsigned threads;        /* loop threads; 0: 1 */
    long max_connections;    /* keep-alive cache per loop (CURLMOPT_MAXCONNECTS); 0: 1024 */
    gw_limiter *limiter;     /* for gw_loop_limit; NULL: every decision allows */
    httpd *http;             /* external-mode server whose daemons the loops run, or NULL */
} gw_proxy_config;

/* Starts the loop threads. NULL with a reason in err on failure. */
gw_proxy *gw_proxy_start(const gw_proxy_config *cfg, char *err, size_t errlen);
/* Stops the loops: queued tasks run cancelled, transfers still running end with
 * GW_XFER_SHUTDOWN, pending rate-limit decisions are made in memory. Frees p. */
void gw_proxy_stop(gw_proxy *p);

/* Hands a task to a loop: the calling loop itself when called on one (run after the current
 * batch of events), otherwise round-robin. Never blocks. */
void gw_proxy_run(gw_proxy *p, gw_task *t);
/* Hands x to a loop to start (round-robin). x->inst must be set. Never blocks. */
void gw_proxy_submit(gw_proxy *p, gw_xfer *x);

/* On a loop thread: starts x on this loop now (ends it with GW_XFER_SHUTDOWN if stopping). */
void gw_loop_start(gw_loop *l, gw_xfer *x);
/* On a loop thread: one rate-limit decision (see ratelimit.h); done runs on this thread,
 * possibly before this returns. */
void gw_loop_limit(gw_loop *l, const char *key, gcra_limit lim, gw_limit_fn done, void *ud);

/* A timer on a loop (batch windows, per-request deadlines). Embed in the caller's struct;
 * set fn, then arm it with gw_loop_timer_set. fn runs on the loop thread at or after at_ms
 * (cancelled: the proxy is stopping; end what the timer stands for without new work). */
typedef struct gw_timer gw_timer;
typedef void (*gw_timer_fn)(gw_loop *l, gw_timer *t, bool cancelled);
struct gw_timer {
    gw_timer_fn fn;
    /* private */
    int64_t at_ms;
    bool armed;
    gw_timer *next;
};
/* On a loop thread: arms t for at_ms (ml_now_ms clock); re-arming an armed timer moves it. */
void gw_loop_timer_set(gw_loop *l, gw_timer *t, int64_t at_ms);
/* On a loop thread: disarms t (no-op when not armed); fn will not run for it. */
void gw_loop_timer_cancel(gw_loop *l, gw_timer *t);
/* One pointer per loop for a module's per-loop state (the batcher's): get/set on the loop
 * thread only. The proxy never frees it; the owner does, from a cancelled task or timer
 * or after gw_proxy_stop. */
void *gw_loop_user(gw_loop *l);
void gw_loop_set_user(gw_loop *l, void *p);

/* On the loop thread, from on_chunk: s is the client stream the consumer writes the body to,
 * so the transfer pauses while that client is GW_STREAM_HIGH_WATER or more behind (as a
 * relayed stream does) instead of the consumer cutting it at HTTPD_STREAM_MAX_BUFFERED.
 * Call with NULL before closing s. */
void gw_xfer_pace(gw_xfer *x, httpd_stream *s);

/* New zeroed transfer (calloc); free with gw_xfer_free. */
gw_xfer *gw_xfer_new(void);
void gw_xfer_free(gw_xfer *x);

/* Whether the instance's breaker should count the exchange as a success: any response
 * (whatever its status: a service's own 4xx/5xx is about the request) unless it carries
 * the explicit overload signal; a failed connect, a timeout or a broken connection is a
 * failure. */
bool gw_xfer_upstream_ok(gw_xfer_result r, bool overloaded);
/* Whether a Content-Type is relayed as a stream: text/event-stream or application/x-ndjson
 * (parameters and case aside). */
bool gw_xfer_stream_type(const char *content_type);
/* Whether the response headers ("name\0value\0" pairs) carry X-Minilambda-Overloaded: 1. */
bool gw_xfer_overloaded(const ml_buf *resp_headers);

#endif
