/* accesslog.h — the gateway's access log (AAA, docs/logs.md §2): one JSON line per request,
 * refused ones included, written after its response.
 *
 * The request path records what it learns (who, which namespace, why refused, which
 * upstream, the rate-limit decision) in a note attached to the request (gw_alog_*); the HTTP
 * server's done callback (gw_alog_done) formats the line on the request's loop thread into
 * that thread's buffer, and one writer thread writes the buffers out. A loop never waits: a
 * full buffer drops the line and counts it. */
#ifndef GW_ACCESSLOG_H
#define GW_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "httpd.h"
#include "metrics.h"

typedef struct gw_alog gw_alog;

/* A line's fields. Strings may be NULL (written as null, or left out where optional). */
typedef struct gw_alog_line {
    int64_t ts_ms;          /* wall clock, ms since the epoch */
    const char *request_id, *client, *subject, *ns;
    const char *auth;       /* "allowed" | "refused" | "none" */
    const char *auth_error; /* left out when NULL */
    const char *method, *route, *function;
    int status;
    uint64_t bytes_in, bytes_out;
    int64_t duration_us;
    const char *upstream;   /* null when no exchange happened */
    int64_t upstream_us;    /* left out when < 0 */
    const char *ratelimit;  /* "allowed" | "limited" | "error" | "off" */
} gw_alog_line;

/* Formats l as one JSON line ending in '\n' into out; every string is escaped (control
 * characters, quotes, invalid UTF-8 as U+FFFD) and cut at a bound so a line always fits in
 * GW_ALOG_LINE_MAX. Returns the length. */
#define GW_ALOG_LINE_MAX 4096
size_t gw_alog_format(const gw_alog_line *l, char out[GW_ALOG_LINE_MAX]);

/* Whether a request with this status is logged at sample rate (0..1): always when
 * status >= 400; else with probability sample, drawn from *rng (any non-zero seed). */
bool gw_alog_sampled(double sample, int status, uint64_t *rng);

/* MINILAMBDA_ACCESS_LOG_SAMPLE's value: a number in [0, 1]. ML_ERR otherwise. */
int gw_alog_parse_sample(const char *s, double *out);

/* dest: "-" (stdout), "off", or a file path (appended; reopened on SIGHUP). reg may be NULL.
 * NULL with a reason in err when the file cannot be opened or on OOM; "off" gives a logger
 * that logs nothing. Caller frees with gw_alog_stop. Installs a SIGHUP handler for a file. */
gw_alog *gw_alog_start(const char *dest, double sample, metrics_registry *reg, char *err,
                       size_t errlen);
/* Writes what is buffered, stops the writer, frees l. The HTTP loops must have stopped. */
void gw_alog_stop(gw_alog *l);
/* Writes what is buffered now (tests, benchmarks). */
void gw_alog_flush(gw_alog *l);
/* Lines written and dropped so far. */
uint64_t gw_alog_lines(gw_alog *l);
uint64_t gw_alog_dropped(gw_alog *l);

/* Queues l's line (if sampled) on this thread's buffer, or counts it dropped; never waits. */
void gw_alog_log(gw_alog *l, const gw_alog_line *line);

/* httpd_done_fn (ud: the gw_alog): formats and queues the request's line, frees its note. */
void gw_alog_done(const httpd_req *req, const httpd_done_info *info, void *ud);

/* ---- the request path's facts (each a no-op when the log is off) ---- */
/* Starts the request's note; call first in the route handler. */
void gw_alog_begin(gw_alog *l, httpd_req *req);
/* Authentication's outcome: subject (NULL if unknown) and, when refused, why. */
void gw_alog_auth(httpd_req *req, const char *subject, const char *refused_because);
void gw_alog_namespace(httpd_req *req, const char *ns);
void gw_alog_function(httpd_req *req, const char *fn);
/* The upstream exchange: its service and how long it took. */
void gw_alog_upstream(httpd_req *req, const char *service, int64_t us);
/* The auth_error naming a refusal by gw_auth_bearer or the scope check (static). */
const char *gw_alog_auth_error(int gw_auth_result);
/* "allowed" | "limited" | "error" (a static string). */
void gw_alog_ratelimit(httpd_req *req, const char *decision);

#endif
