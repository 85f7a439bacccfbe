/* httpd.c — HTTP server layer over libmicrohttpd (see httpd.h for the threading model). */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "jsoncheck.h"
#include "log.h"

#define DEFAULT_MAX_BODY (1024u * 1024u)
#define MAX_REQUEST_ID 128
/* An over-long body is read and thrown away before its 413 (so the client, still sending,
 * reads the answer instead of a reset) up to max(MIN_DISCARD, 2 x the route's cap); a longer
 * one is answered at once and the connection closed. */
#define MIN_DISCARD (16u * 1024u * 1024u)
/* A chunked body announces no size, so it cannot be answered before it is sent: an
 * over-long one is read and dropped up to this much (a 100 MB upload gets its 413 JSON;
 * reading and dropping costs bandwidth, never memory), beyond it the connection drops. */
#define CHUNKED_DISCARD (128u * 1024u * 1024u)

/* ST_RUNNING: handler owns the request, connection not suspended yet; ST_SUSPENDED: the
 * connection is suspended and whoever completes must resume it; see httpd_complete. */
typedef enum { ST_NEW = 0, ST_RUNNING, ST_SUSPENDED, ST_COMPLETED, ST_SENT } req_state;

struct httpd_req {
    struct httpd_req *next_job;  /* worker queue link */
    httpd *server;
    struct MHD_Connection *conn;
    unsigned loop;               /* external mode: index of the daemon serving conn */
    const httpd_route *route;
    const char *method;
    char *path;
    char *raw_query;             /* the query string as sent (uri_log); NULL: none */
    bool pre;                    /* allocated by uri_log, req_new not run yet */
    const char *param_names[HTTPD_MAX_PARAMS];
    char *param_values[HTTPD_MAX_PARAMS];
    size_t nparams;
    size_t max_body;
    int64_t declared;            /* Content-Length, or -1 */
    ml_buf body;
    size_t discarded;            /* body bytes thrown away after a rejection */
    int reject_status;           /* non-zero: answer this error instead of running a handler */
    bool close_now;              /* answer the rejection before the body, then close */
    const char *reject_code;
    char reject_msg[256];
    char request_id[MAX_REQUEST_ID + 1];
    char client_ip[INET6_ADDRSTRLEN];
    int64_t started_ms;
    int64_t started_us;          /* monotonic, for the done callback's duration */
    uint64_t bytes_out;
    void *note;                  /* httpd_req_set_note: the done callback's */
    _Atomic int state;
    httpd_resp resp;
};

#define MAX_LOOPS 64

/* A worker thread of the pool. Idle workers wait on their own condition variable in a
 * stack, and a new job wakes the one idle last: the pool's working set of threads (their
 * stacks, and the database connections each opens lazily) stays as small as the load's
 * concurrency instead of cycling through every thread. */
struct worker {
    pthread_t thread;
    pthread_cond_t wake;
    httpd *server;
    struct worker *up, *down;    /* neighbours in the idle stack */
    bool idle;
};

struct httpd {
    struct MHD_Daemon *daemon;   /* the first (or only) daemon */
    struct MHD_Daemon *loops[MAX_LOOPS]; /* external mode: one daemon per caller's loop */
    int wake[MAX_LOOPS];         /* eventfd per loop: MHD does not signal resumes itself there */
    /* listening sockets MHD_quiesce_daemon handed back: shut down at once (no new
     * connections), closed only after MHD_stop_daemon — MHD's threads may still use them */
    int quiesced_fd[MAX_LOOPS];
    bool again[MAX_LOOPS];       /* resumed on the loop's own thread: run it again; that thread only */
    unsigned nloops;
    bool quiesced;
    httpd_config cfg;
    const httpd_route *routes;
    size_t nroutes;
    uint16_t port;
    metric *m_requests, *m_duration, *m_inflight;
    /* worker pool for blocking routes */
    struct worker *workers;
    unsigned nworkers;
    struct worker *idle_top;     /* idle workers, most recently idle first */
    pthread_mutex_t lock;
    pthread_cond_t idle;
    httpd_req *queue_head, *queue_tail;
    bool stopping;
    bool draining;               /* after httpd_stop began: new requests get 503 */
    long inflight;               /* requests accepted and not yet completed */
    httpd_stream *streams;       /* streamed responses handed to MHD (lock) */
};

/* A streamed body (httpd.h). buf.data[off, len) waits to be sent. The connection is
 * suspended while nothing waits (MHD would otherwise poll the reader in a busy loop); the
 * writer that finds it suspended resumes it. */
struct httpd_stream {
    pthread_mutex_t lock;
    ml_buf buf;
    size_t off;
    int refs;                    /* the server's and the producer's */
    bool closed;                 /* the producer ended the body */
    bool gone;                   /* over for the client: it left, overflowed, or the server drains */
    bool failed;                 /* overflowed: cut the connection instead of a clean end */
    bool cut;                    /* httpd_stream_abort: what waits goes out, then the cut */
    bool suspended;              /* the connection waits for a write */
    httpd_req *req;              /* while the server holds its reference and MHD has it */
    httpd *server;               /* set with req: the list it is on */
    httpd_stream *prev, *next;   /* server->streams (server->lock) */
    httpd_stream_notify_fn notify;
    void *notify_ud;
    size_t low_water;
};

/* ---- path matching ---- */

int httpd_match(const char *pattern, const char *path, const char **names, char **values,
                size_t *nparams)
{
    const char *p = pattern, *s = path;
    size_t n = 0;

    *nparams = 0;
    while (*p && *s) {
        if (*p != '/' || *s != '/')
            goto fail;
        p++, s++;
        const char *pend = strchrnul(p, '/');
        const char *send = strchrnul(s, '/');
        if (*p == '{' && !*pend && pend - p > 3 && pend[-2] == '+' && pend[-1] == '}') {
            /* {name+}, last: the rest of the path, one or more non-empty segments */
            if (send == s || n == HTTPD_MAX_PARAMS || strstr(s, "//") || s[strlen(s) - 1] == '/')
                goto fail;
            names[n] = p;
            values[n] = strdup(s);
            if (!values[n])
                goto fail;
            n++;
            p = pend, s += strlen(s);
            break;
        }
        if (*p == '{' && pend[-1] == '}' && pend - p > 2) {
            if (send == s || n == HTTPD_MAX_PARAMS)
                goto fail;
            names[n] = p; /* caller compares with the braces stripped: see param_name_eq */
            values[n] = strndup(s, (size_t)(send - s));
            if (!values[n])
                goto fail;
            n++;
        } else if ((pend - p) != (send - s) || strncmp(p, s, (size_t)(pend - p)) != 0) {
            goto fail;
        }
        p = pend, s = send;
    }
    if (*p || *s)
        goto fail;
    *nparams = n;
    return ML_OK;
fail:
    for (size_t i = 0; i < n; i++)
        free(values[i]);
    return ML_ERR;
}

/* pattern_name points at "{name}..." (or "{name+}") inside a route pattern. */
static bool param_name_eq(const char *pattern_name, const char *name)
{
    size_t len = strlen(name);

    return strncmp(pattern_name + 1, name, len) == 0 &&
           (pattern_name[len + 1] == '}' || (pattern_name[len + 1] == '+' && pattern_name[len + 2] == '}'));
}

/* ---- request accessors ---- */

const char *httpd_method(const httpd_req *req) { return req->method; }
const char *httpd_path(const httpd_req *req) { return req->path; }
const char *httpd_request_id(const httpd_req *req) { return req->request_id; }
const char *httpd_client_ip(const httpd_req *req) { return req->client_ip; }

const char *httpd_route_pattern(const httpd_req *req)
{
    return req->route ? req->route->pattern : "unmatched";
}

void httpd_req_set_note(httpd_req *req, void *note)
{
    req->note = note;
}

void *httpd_req_note(const httpd_req *req)
{
    return req ? req->note : NULL;
}

const char *httpd_param(const httpd_req *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++) {
        if (param_name_eq(req->param_names[i], name))
            return req->param_values[i];
    }
    return NULL;
}

const char *httpd_header(const httpd_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *httpd_query(const httpd_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *httpd_raw_query(const httpd_req *req)
{
    return req->raw_query ? req->raw_query : "";
}

typedef struct query_each_ctx {
    void (*fn)(void *ud, const char *key, const char *value);
    void *ud;
} query_each_ctx;

static enum MHD_Result query_each_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    query_each_ctx *q = cls;

    ML_UNUSED(kind);
    q->fn(q->ud, key, value);
    return MHD_YES;
}

void httpd_query_each(const httpd_req *req, void (*fn)(void *ud, const char *key, const char *value),
                      void *ud)
{
    query_each_ctx q = { fn, ud };

    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_each_one, &q);
}

void httpd_header_each(const httpd_req *req, void (*fn)(void *ud, const char *name, const char *value),
                       void *ud)
{
    query_each_ctx q = { fn, ud };

    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, query_each_one, &q);
}

const char *httpd_body(const httpd_req *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return ml_buf_cstr(&req->body);
}

cJSON *httpd_body_json(const httpd_req *req, httpd_resp *resp)
{
    jsoncheck_error e = { 0, NULL };
    cJSON *json;

    if (req->body.len == 0) {
        httpd_resp_error(resp, 400, "invalid_json", "request body must be a JSON document");
        return NULL;
    }
    /* strict: exactly one value, UTF-8, no NUL, no duplicate keys, depth bounded (API.md
     * "Input"); cJSON alone would cut strings at \u0000 and take trailing data */
    json = jsoncheck_parse(req->body.data, req->body.len, &e);
    if (!json)
        httpd_resp_error(resp, 400, "invalid_json", "request body is not valid JSON: %s (at byte %zu)",
                         e.why, e.offset);
    return json;
}

/* ---- responses ---- */

int httpd_resp_header(httpd_resp *resp, const char *name, const char *value)
{
    httpd_header_kv *h;

    if (resp->nheaders == HTTPD_MAX_RESP_HEADERS)
        return ML_ERR;
    h = &resp->headers[resp->nheaders];
    h->name = strdup(name);
    h->value = strdup(value);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return ML_ERR;
    }
    resp->nheaders++;
    return ML_OK;
}

int httpd_resp_content_type(httpd_resp *resp, const char *ct)
{
    char *copy = strdup(ct);

    if (!copy)
        return ML_ERR;
    free(resp->content_type_owned);
    resp->content_type_owned = copy;
    resp->content_type = copy;
    return ML_OK;
}

int httpd_resp_json(httpd_resp *resp, int status, cJSON *json)
{
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    int rc = ML_ERR;

    cJSON_Delete(json);
    ml_buf_reset(&resp->body);
    resp->content_type = "application/json";
    resp->status = status;
    if (text) {
        rc = ml_buf_append_str(&resp->body, text);
        free(text);
    }
    if (rc != ML_OK) {
        resp->status = 500;
        ml_buf_reset(&resp->body);
        ml_buf_append_str(&resp->body, "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
    }
    return rc;
}

int httpd_resp_error(httpd_resp *resp, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");

    va_start(ap, fmt);
    ml_vsnprintf_trunc(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cJSON_AddStringToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", msg);
    cJSON_AddStringToObject(err, "request_id", resp->request_id ? resp->request_id : "");
    return httpd_resp_json(resp, status, root);
}

int httpd_resp_text(httpd_resp *resp, int status, const char *content_type, const char *text)
{
    resp->status = status;
    resp->content_type = content_type;
    ml_buf_reset(&resp->body);
    return ml_buf_append_str(&resp->body, text);
}

static void stream_server_release(httpd_stream *s);

static void resp_clear(httpd_resp *resp)
{
    if (resp->stream) /* made a stream but never handed to MHD */
        stream_server_release(resp->stream);
    resp->stream = NULL;
    for (size_t i = 0; i < resp->nheaders; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    ml_buf_free(&resp->body);
    free(resp->content_type_owned);
}

/* ---- request lifecycle ---- */

static void req_free(httpd_req *r)
{
    for (size_t i = 0; i < r->nparams; i++)
        free(r->param_values[i]);
    free(r->path);
    free(r->raw_query);
    ml_buf_free(&r->body);
    resp_clear(&r->resp);
    free(r);
}

static bool request_id_ok(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++) {
        char c = s[n];
        if (n == MAX_REQUEST_ID ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    }
    return n > 0;
}

static void set_client_ip(httpd_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    r->client_ip[0] = '\0';
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->client_ip,
                  sizeof(r->client_ip));
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client_ip,
                  sizeof(r->client_ip));
}

static void reject(httpd_req *r, int status, const char *code, const char *msg)
{
    r->reject_status = status;
    r->reject_code = code;
    ml_strlcpy(r->reject_msg, msg, sizeof(r->reject_msg));
}

/* The index of the external-mode daemon serving conn (0 otherwise). */
static unsigned loop_of(const httpd *h, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci;

    if (h->nloops < 2 || !(ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON)))
        return 0;
    for (unsigned i = 0; i < h->nloops; i++) {
        if (h->loops[i] == ci->daemon)
            return i;
    }
    return 0;
}

/* ---- strict request text ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* MHD_OPTION_UNESCAPE_CALLBACK for the path and query arguments. MHD's own decoder turns
 * %00 into a NUL that silently cuts the string ("/functions/hello%00x" would route as
 * "/functions/hello"); this one decodes %00 to 0xFF, a byte never valid in UTF-8, so the
 * text check in req_new refuses the request instead. Never lengthens s. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    char *w = s;
    int hi, lo;

    ML_UNUSED(cls);
    ML_UNUSED(conn);
    for (const char *r = s; *r; w++) {
        if (r[0] == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0) {
            *w = (char)(hi * 16 + lo ? hi * 16 + lo : 0xFF);
            r += 3;
        } else {
            *w = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* MHD_KeyValueIterator: stops (MHD_NO) at the first query key or value that is not text. */
static enum MHD_Result arg_is_text(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    bool *bad = cls;

    ML_UNUSED(kind);
    if (jsoncheck_text(key, strlen(key), NULL) != ML_OK ||
        (value && jsoncheck_text(value, strlen(value), NULL) != ML_OK)) {
        *bad = true;
        return MHD_NO;
    }
    return MHD_YES;
}

/* Path and query decoded must be UTF-8 without control bytes (API.md "Input"): a 400 that
 * names the problem instead of a lookup of a cut or mangled name. */
static void check_request_text(httpd_req *r)
{
    jsoncheck_error e = { 0, NULL };
    bool bad = false;

    if (jsoncheck_text(r->path, strlen(r->path), &e) != ML_OK || strpbrk(r->path, "\t\r\n")) {
        reject(r, 400, "invalid_path", "the request path must be UTF-8 text without NUL or control characters");
        return;
    }
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, arg_is_text, &bad);
    if (bad)
        reject(r, 400, "invalid_query", "query arguments must be UTF-8 text without NUL or control characters");
}

/* MHD_KeyValueIterator: counts Content-Length headers and whether their values differ. */
typedef struct clen_seen {
    unsigned n;
    const char *first;
    bool differ;
} clen_seen;

static enum MHD_Result count_clen(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    clen_seen *c = cls;

    ML_UNUSED(kind);
    if (strcasecmp(key, "Content-Length") != 0)
        return MHD_YES;
    if (c->n++ == 0)
        c->first = value;
    else if (!value || !c->first || strcmp(value, c->first) != 0)
        c->differ = true;
    return MHD_YES;
}

/* Framing MHD lets through but the contract refuses (RFC 9112 6.3: conflicting lengths are
 * a smuggling vector; a coding other than chunked MHD cannot decode and would wait on
 * forever). Answered at once and the connection closed (r->close_now). */
static void check_framing(httpd_req *r)
{
    const char *te = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Transfer-Encoding");
    clen_seen c = { 0, NULL, false };

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_clen, &c);
    if (c.differ)
        reject(r, 400, "invalid_framing", "conflicting Content-Length headers");
    else if (te && strcasecmp(te, "chunked") != 0)
        reject(r, 501, "not_implemented", "Transfer-Encoding other than chunked is not supported");
    else if (te && c.n)
        reject(r, 400, "invalid_framing", "both Transfer-Encoding and Content-Length");
    else
        return;
    r->close_now = true;
}

/* Finds the route; on a miss decides between 404 and 405 (with Allow). */
static void route_request(httpd *h, httpd_req *r)
{
    char allow[128] = "";
    size_t alen = 0;

    /* two passes: a route naming the method, then one taking any ("*") */
    for (size_t i = 0; i < 2 * h->nroutes; i++) {
        const httpd_route *rt = &h->routes[i % h->nroutes];
        bool any = strcmp(rt->method, "*") == 0;
        const char *names[HTTPD_MAX_PARAMS];
        char *values[HTTPD_MAX_PARAMS];
        size_t n = 0;

        if (any != (i >= h->nroutes) || httpd_match(rt->pattern, r->path, names, values, &n) != ML_OK)
            continue;
        if (any || strcmp(rt->method, r->method) == 0) {
            r->route = rt;
            memcpy(r->param_names, names, n * sizeof(names[0]));
            memcpy(r->param_values, values, n * sizeof(char *));
            r->nparams = n;
            r->max_body = rt->max_body ? rt->max_body : h->cfg.max_body;
            return;
        }
        for (size_t k = 0; k < n; k++)
            free(values[k]);
        if (!strstr(allow, rt->method) &&
            ml_snprintf(allow + alen, sizeof(allow) - alen, "%s%s", alen ? ", " : "", rt->method) != ML_OK)
            allow[alen] = '\0'; /* a method that does not fit is left out whole, never cut */
        alen = strlen(allow);
    }
    if (alen) {
        reject(r, 405, "method_not_allowed", "method not allowed on this path");
        httpd_resp_header(&r->resp, "Allow", allow);
    } else {
        reject(r, 404, "not_found", "no such route");
    }
}

/* The server's guard (httpd_guard_fn): true when it refused r, with the refusal in r. */
static bool guard_refuses(httpd *h, httpd_req *r)
{
    const char *code = "unauthorized", *msg = "refused";
    int status;

    if (!h->cfg.guard || (status = h->cfg.guard(r, h->cfg.guard_ud, &code, &msg)) == 0)
        return false;
    reject(r, status, code, msg);
    r->close_now = true; /* the body is never read */
    return true;
}

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* r: the request uri_log allocated, or NULL. */
static httpd_req *req_new(httpd *h, struct MHD_Connection *conn, const char *url,
                          const char *method, httpd_req *r)
{
    const char *rid, *clen;

    if (!r && !(r = calloc(1, sizeof(*r))))
        return NULL;
    r->pre = false;
    r->declared = -1;
    r->server = h;
    r->conn = conn;
    r->loop = loop_of(h, conn);
    r->method = method;
    r->started_ms = ml_now_ms();
    r->started_us = mono_us();
    r->path = strdup(url);
    if (!r->path) {
        free(r->raw_query);
        free(r);
        return NULL;
    }
    rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && request_id_ok(rid))
        ml_strlcpy(r->request_id, rid, sizeof(r->request_id));
    else
        ml_uuid(r->request_id);
    r->resp.request_id = r->request_id;
    set_client_ip(r);
    if (guard_refuses(h, r))
        return r;
    route_request(h, r);
    if (r->route) {
        ml_buf_init(&r->body, r->max_body);
        clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (clen && ml_parse_int64(clen, 0, INT64_MAX, &r->declared) == ML_OK &&
            (uint64_t)r->declared > r->max_body)
            reject(r, 413, "payload_too_large", "request body exceeds the limit for this route");
    }
    check_request_text(r);
    check_framing(r);
    return r;
}

/* MHD refuses an empty value; a blank one is the same empty field on the wire (RFC 9110
 * 5.5: clients strip the whitespace around a field value). */
static void add_header(struct MHD_Response *mr, const char *name, const char *value)
{
    if (MHD_add_response_header(mr, name, *value ? value : " ") != MHD_YES)
        ml_log_warn("cannot add response header %s", name);
}

static struct MHD_Response *stream_response(httpd_req *r);

static enum MHD_Result send_response(httpd_req *r)
{
    httpd_resp *resp = &r->resp;
    struct MHD_Response *mr;
    enum MHD_Result ret;
    size_t len = resp->body.len;
    void *body = ml_buf_steal(&resp->body, NULL);

    if (resp->status == 0)
        resp->status = 200;
    r->bytes_out = len;
    if (resp->stream) {
        free(body);
        mr = stream_response(r);
    } else if (!(mr = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE))) {
        free(body);
    }
    if (!mr)
        return MHD_NO;
    if (len || resp->status != 204)
        add_header(mr, "Content-Type", resp->content_type ? resp->content_type : "application/json");
    add_header(mr, "X-Request-Id", r->request_id);
    for (size_t i = 0; i < resp->nheaders; i++)
        add_header(mr, resp->headers[i].name, resp->headers[i].value);
    ret = MHD_queue_response(r->conn, (unsigned)resp->status, mr);
    MHD_destroy_response(mr);
    atomic_store(&r->state, ST_SENT);
    return ret;
}

static enum MHD_Result send_reject(httpd_req *r)
{
    const httpd_config *c = &r->server->cfg;

    httpd_resp_error(&r->resp, r->reject_status, r->reject_code, "%s", r->reject_msg);
    if (c->shape_reject)
        c->shape_reject(r, &r->resp, c->shape_reject_ud);
    return send_response(r);
}

static size_t discard_limit(const httpd_req *r)
{
    if (r->declared < 0) /* chunked: its size is only known at its end */
        return CHUNKED_DISCARD > 2 * r->max_body ? CHUNKED_DISCARD : 2 * r->max_body;
    return r->max_body > MIN_DISCARD / 2 ? 2 * r->max_body : MIN_DISCARD;
}

/* A 413 decided from Content-Length: read and drop the body first (see MIN_DISCARD),
 * unless the client waits for 100 Continue (it then sends nothing and reads the 413 at
 * once) or announced more than we would read. */
static bool answer_413_now(const httpd_req *r)
{
    const char *expect = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Expect");

    return (expect && strcasecmp(expect, "100-continue") == 0) ||
           (uint64_t)r->declared > discard_limit(r);
}

/* Runs the handler with the request id in the log context. */
static httpd_result run_handler(httpd_req *r)
{
    httpd_result res;

    ml_log_set_request_id(r->request_id);
    res = r->route->fn(r, &r->resp, r->route->ud);
    ml_log_set_request_id(NULL);
    return res;
}

/* The external-mode loop this thread runs, if any (set by httpd_loop_run). */
static _Thread_local const httpd *tl_server;
static _Thread_local unsigned tl_loop;

/* Without internal threads MHD leaves it to the loop to run again after a resume: a note
 * when the loop's own thread resumed, an eventfd write from any other thread. */
static void resume(httpd_req *r)
{
    httpd *h = r->server;
    uint64_t one = 1;

    /* Read before resuming: once resumed the request may complete and httpd_stop free h
     * (in external mode the caller's loops, which must outlive h's use, still run). */
    bool external = h->cfg.external;
    unsigned loop = r->loop;

    MHD_resume_connection(r->conn);
    if (!external)
        return;
    if (tl_server == h && tl_loop == loop)
        h->again[loop] = true;
    else if (write(h->wake[loop], &one, sizeof(one)) < 0)
        ml_log_warn("http server: cannot wake loop %u: %s", loop, strerror(errno));
}

void httpd_complete(httpd_req *req)
{
    /* Resume only a connection that is already suspended; if the handler's thread has not
     * suspended it yet, suspend_running() sees ST_COMPLETED and resumes it itself. */
    if (atomic_exchange(&req->state, ST_COMPLETED) == ST_SUSPENDED)
        resume(req);
}

/* Suspends a running request's connection; safe against a concurrent httpd_complete. */
static void suspend_running(httpd_req *r)
{
    int expected = ST_RUNNING;

    MHD_suspend_connection(r->conn);
    if (!atomic_compare_exchange_strong(&r->state, &expected, ST_SUSPENDED))
        resume(r); /* completed meanwhile: come back and send */
}

/* ---- streamed responses ---- */

#define STREAM_BLOCK (16u * 1024u) /* the most MHD asks the reader for at once */

httpd_stream *httpd_resp_stream(httpd_resp *resp, const char *content_type)
{
    httpd_stream *s = calloc(1, sizeof(*s));

    if (!s) {
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    /* room for what waits plus what was sent before the next compaction */
    ml_buf_init(&s->buf, 2 * HTTPD_STREAM_MAX_BUFFERED);
    s->refs = 2;
    ml_buf_free(&resp->body);
    if (!content_type)
        resp->content_type = NULL;
    else if (content_type != resp->content_type && httpd_resp_content_type(resp, content_type) != ML_OK) {
        pthread_mutex_destroy(&s->lock);
        ml_buf_free(&s->buf);
        free(s);
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return NULL;
    }
    if (!resp->status)
        resp->status = 200;
    resp->stream = s;
    return s;
}

static void stream_unref(httpd_stream *s)
{
    bool last;

    pthread_mutex_lock(&s->lock);
    last = --s->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (!last)
        return;
    ml_buf_free(&s->buf);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static size_t stream_pending(const httpd_stream *s)
{
    return s->buf.len - s->off;
}

/* s->lock held: marks the stream over for the client (once: the producer is told). */
static void stream_end_locked(httpd_stream *s)
{
    if (s->gone)
        return;
    s->gone = true;
    if (s->notify)
        s->notify(s->notify_ud);
}

/* s->lock held: the request to resume when the connection is suspended (the caller
 * resumes it after unlocking), else NULL. Suspended, the connection cannot end, so the
 * request stays valid until then. */
static httpd_req *stream_take_suspended(httpd_stream *s)
{
    if (!s->suspended)
        return NULL;
    s->suspended = false;
    return s->req;
}

/* MHD_ContentReaderCallback: what waits, the end, or nothing yet (then the connection is
 * suspended until a write: MHD would call again at once otherwise). */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    httpd_stream *s = cls;
    size_t before, n;
    ssize_t ret;

    ML_UNUSED(pos);
    pthread_mutex_lock(&s->lock);
    before = stream_pending(s);
    if (s->failed) {
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (before) {
        n = before < max ? before : max;
        memcpy(out, s->buf.data + s->off, n);
        s->off += n;
        s->req->bytes_out += n; /* what the access log reports */
        if (s->off == s->buf.len)
            s->off = s->buf.len = 0;
        if (s->notify && before > s->low_water && stream_pending(s) <= s->low_water)
            s->notify(s->notify_ud);
        ret = (ssize_t)n;
    } else if (s->closed || s->gone) {
        ret = s->cut ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        s->suspended = true;
        MHD_suspend_connection(s->req->conn);
        ret = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* The server lets go (the client is done or gone, or the stream never went out). */
static void stream_server_release(httpd_stream *s)
{
    httpd *h;

    pthread_mutex_lock(&s->lock);
    stream_end_locked(s);
    h = s->server;
    s->req = NULL;
    s->server = NULL;
    pthread_mutex_unlock(&s->lock);
    if (h) {
        pthread_mutex_lock(&h->lock);
        if (s->prev)
            s->prev->next = s->next;
        else
            h->streams = s->next;
        if (s->next)
            s->next->prev = s->prev;
        pthread_mutex_unlock(&h->lock);
    }
    stream_unref(s);
}

/* MHD_ContentReaderFreeCallback: MHD is done with the response. */
static void stream_free(void *cls)
{
    stream_server_release(cls);
}

/* The MHD response of a stream; from here on MHD's response holds the server's
 * reference (released by stream_free). NULL when out of memory (resp_clear releases it). */
static struct MHD_Response *stream_response(httpd_req *r)
{
    httpd_stream *s = r->resp.stream;
    httpd *h = r->server;
    struct MHD_Response *mr =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, s, stream_free);

    if (!mr)
        return NULL;
    r->resp.stream = NULL;
    pthread_mutex_lock(&h->lock);
    pthread_mutex_lock(&s->lock);
    s->req = r;
    s->server = h;
    if (h->draining) /* a stream that begins while the server drains ends after what waits */
        stream_end_locked(s);
    pthread_mutex_unlock(&s->lock);
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    pthread_mutex_unlock(&h->lock);
    return mr;
}

int httpd_stream_write(httpd_stream *s, const void *data, size_t len)
{
    httpd_req *wake = NULL;
    int rc = ML_ERR;

    pthread_mutex_lock(&s->lock);
    if (s->gone || s->closed)
        goto out;
    if (stream_pending(s) + len > HTTPD_STREAM_MAX_BUFFERED) {
        s->failed = true; /* a client this far behind gets a cut body, not a gap */
        stream_end_locked(s);
        goto resume;
    }
    if (s->off && (s->off >= stream_pending(s) || s->buf.len + len > s->buf.max)) {
        memmove(s->buf.data, s->buf.data + s->off, stream_pending(s));
        s->buf.len -= s->off;
        s->off = 0;
    }
    if (ml_buf_append(&s->buf, data, len) != ML_OK) {
        s->failed = true;
        stream_end_locked(s);
        goto resume;
    }
    rc = ML_OK;
resume:
    wake = stream_take_suspended(s);
out:
    pthread_mutex_unlock(&s->lock);
    if (wake)
        resume(wake);
    return rc;
}

size_t httpd_stream_pending(const httpd_stream *cs)
{
    httpd_stream *s = (httpd_stream *)cs; /* the lock is not part of the value */
    size_t n;

    pthread_mutex_lock(&s->lock);
    n = stream_pending(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}

bool httpd_stream_gone(const httpd_stream *cs)
{
    httpd_stream *s = (httpd_stream *)cs;
    bool gone;

    pthread_mutex_lock(&s->lock);
    gone = s->gone;
    pthread_mutex_unlock(&s->lock);
    return gone;
}

void httpd_stream_notify(httpd_stream *s, size_t low_water, httpd_stream_notify_fn fn, void *ud)
{
    pthread_mutex_lock(&s->lock);
    s->low_water = low_water;
    s->notify = fn;
    s->notify_ud = ud;
    pthread_mutex_unlock(&s->lock);
}

void httpd_stream_close(httpd_stream *s)
{
    httpd_req *wake;

    pthread_mutex_lock(&s->lock);
    s->closed = true;
    s->notify = NULL;
    wake = stream_take_suspended(s);
    pthread_mutex_unlock(&s->lock);
    if (wake)
        resume(wake);
    stream_unref(s);
}

void httpd_stream_abort(httpd_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->cut = true;
    pthread_mutex_unlock(&s->lock);
    httpd_stream_close(s);
}

#define DRAIN_BATCH 64

/* httpd_drain: every stream ends for its client after what waits (a follow stream would
 * otherwise hold the drain until its timeout). Resumes outside the server's lock, in
 * batches. */
static void end_streams(httpd *h)
{
    httpd_req *wake[DRAIN_BATCH];
    size_t n;

    do {
        n = 0;
        pthread_mutex_lock(&h->lock);
        for (httpd_stream *s = h->streams; s && n < DRAIN_BATCH; s = s->next) {
            pthread_mutex_lock(&s->lock);
            stream_end_locked(s);
            if ((wake[n] = stream_take_suspended(s)))
                n++;
            pthread_mutex_unlock(&s->lock);
        }
        pthread_mutex_unlock(&h->lock);
        for (size_t i = 0; i < n; i++)
            resume(wake[i]);
    } while (n == DRAIN_BATCH);
}

/* Idle stack operations; h->lock held. */
static void idle_push(httpd *h, struct worker *w)
{
    w->up = NULL;
    w->down = h->idle_top;
    if (h->idle_top)
        h->idle_top->up = w;
    h->idle_top = w;
    w->idle = true;
}

static void idle_remove(httpd *h, struct worker *w)
{
    if (w->up)
        w->up->down = w->down;
    else
        h->idle_top = w->down;
    if (w->down)
        w->down->up = w->up;
    w->up = w->down = NULL;
    w->idle = false;
}

static void enqueue_job(httpd *h, httpd_req *r)
{
    pthread_mutex_lock(&h->lock);
    r->next_job = NULL;
    if (h->queue_tail)
        h->queue_tail->next_job = r;
    else
        h->queue_head = r;
    h->queue_tail = r;
    if (h->idle_top) {
        struct worker *w = h->idle_top;
        idle_remove(h, w);
        pthread_cond_signal(&w->wake);
    }
    pthread_mutex_unlock(&h->lock);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    httpd *h = w->server;

    (void)pthread_setname_np(pthread_self(), "httpd-worker"); /* tells them apart in perf/top */
    for (;;) {
        httpd_req *r;

        pthread_mutex_lock(&h->lock);
        while (!h->queue_head && !h->stopping) {
            if (!w->idle)
                idle_push(h, w);
            pthread_cond_wait(&w->wake, &h->lock);
        }
        if (w->idle) /* woken spuriously or by stopping, not popped */
            idle_remove(h, w);
        r = h->queue_head;
        if (!r) {
            pthread_mutex_unlock(&h->lock);
            return NULL;
        }
        h->queue_head = r->next_job;
        if (!h->queue_head)
            h->queue_tail = NULL;
        pthread_mutex_unlock(&h->lock);
        if (run_handler(r) == HTTPD_DONE)
            httpd_complete(r);
    }
}

/* Called when the whole request body is in. */
static enum MHD_Result dispatch(httpd *h, httpd_req *r)
{
    if (r->reject_status)
        return send_reject(r);
    atomic_store(&r->state, ST_RUNNING);
    if (r->route->blocking) {
        suspend_running(r);
        enqueue_job(h, r);
        return MHD_YES;
    }
    if (run_handler(r) == HTTPD_ASYNC) {
        suspend_running(r);
        return MHD_YES;
    }
    return send_response(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    httpd *h = cls;
    httpd_req *r = *con_cls;
    bool draining;

    ML_UNUSED(version);
    if (!r || r->pre) {
        r = req_new(h, conn, url, method, r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        pthread_mutex_lock(&h->lock);
        h->inflight++;
        draining = h->draining;
        pthread_mutex_unlock(&h->lock);
        metric_add(h->m_inflight, (const char *[]){ h->cfg.service }, 1);
        /* Keep-alive clients still send requests after MHD_quiesce_daemon; none of them may
         * be suspended, or MHD_stop_daemon aborts. */
        if (draining) {
            reject(r, 503, "shutting_down", "the server is shutting down; retry on another instance");
            httpd_resp_header(&r->resp, "Retry-After", "1");
        }
        if (draining || r->close_now || (r->reject_status == 413 && answer_413_now(r))) {
            httpd_resp_header(&r->resp, "Connection", "close");
            return send_reject(r); /* answer now; MHD closes without reading the body */
        }
        return MHD_YES;
    }
    if (*upload_size) {
        /* MHD only lets us answer before or after the body, so an over-long body is
         * discarded and answered 413 at its end — up to a bound, then the connection drops. */
        if (!r->reject_status && ml_buf_append(&r->body, upload_data, *upload_size) != ML_OK) {
            reject(r, 413, "payload_too_large", "request body exceeds the limit for this route");
            ml_buf_free(&r->body);
        }
        if (r->reject_status) {
            r->discarded += *upload_size;
            if (r->discarded > discard_limit(r))
                return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    switch (atomic_load(&r->state)) {
    case ST_NEW:
        return dispatch(h, r);
    case ST_COMPLETED:
        return send_response(r);
    default:
        return MHD_YES; /* spurious call while running or after sending */
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    httpd *h = cls;
    httpd_req *r = *con_cls;
    char code[8];
    const char *route;
    double secs;

    ML_UNUSED(conn);
    ML_UNUSED(toe);
    if (!r)
        return;
    if (r->pre) { /* never got as far as its handler call */
        free(r->raw_query);
        free(r);
        *con_cls = NULL;
        return;
    }
    route = httpd_route_pattern(r);
    secs = (double)(ml_now_ms() - r->started_ms) / 1000.0;
    if (ml_snprintf(code, sizeof(code), "%d", r->resp.status ? r->resp.status : 500) != ML_OK)
        ml_strlcpy(code, "500", sizeof(code)); /* a status is 3 digits: cannot happen */
    metric_inc(h->m_requests, (const char *[]){ h->cfg.service, route, r->method, code });
    metric_observe(h->m_duration, (const char *[]){ h->cfg.service, route, r->method }, secs);
    metric_add(h->m_inflight, (const char *[]){ h->cfg.service }, -1);
    if (h->cfg.done)
        h->cfg.done(r, &(httpd_done_info){ r->resp.status ? r->resp.status : 500,
                                           r->body.len + r->discarded, r->bytes_out,
                                           mono_us() - r->started_us,
                                           toe != MHD_REQUEST_TERMINATED_COMPLETED_OK },
                    h->cfg.done_ud);
    req_free(r);
    *con_cls = NULL;
    pthread_mutex_lock(&h->lock);
    h->inflight--;
    pthread_cond_broadcast(&h->idle);
    pthread_mutex_unlock(&h->lock);
}

static void register_metrics(httpd *h)
{
    metrics_registry *reg = h->cfg.metrics;

    if (!reg)
        return;
    h->m_requests = metrics_counter(reg, "minilambda_http_requests_total",
                                    "HTTP requests served, by route template and status code.",
                                    "service,route,method,code");
    h->m_duration = metrics_histogram(reg, "minilambda_http_request_duration_seconds",
                                      "HTTP request latency from first byte to response queued.",
                                      "service,route,method", NULL, 0);
    h->m_inflight = metrics_gauge(reg, "minilambda_http_requests_in_flight",
                                  "HTTP requests being processed.", "service");
}

static int start_workers(httpd *h)
{
    h->workers = calloc(h->cfg.workers, sizeof(*h->workers));
    if (!h->workers)
        return ML_ERR;
    for (; h->nworkers < h->cfg.workers; h->nworkers++) {
        struct worker *w = &h->workers[h->nworkers];
        w->server = h;
        pthread_cond_init(&w->wake, NULL);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pthread_cond_destroy(&w->wake);
            return ML_ERR;
        }
    }
    return ML_OK;
}

static void stop_workers(httpd *h)
{
    pthread_mutex_lock(&h->lock);
    h->stopping = true;
    for (unsigned i = 0; i < h->nworkers; i++)
        pthread_cond_signal(&h->workers[i].wake);
    pthread_mutex_unlock(&h->lock);
    for (unsigned i = 0; i < h->nworkers; i++) {
        pthread_join(h->workers[i].thread, NULL);
        pthread_cond_destroy(&h->workers[i].wake);
    }
    free(h->workers);
    h->workers = NULL;
    h->nworkers = 0;
    h->idle_top = NULL;
}

/* MINILAMBDA_HTTP_IDLE_TIMEOUT_S (1..3600, default 60): a connection that sends nothing for
 * this long — a half-sent header or body, or an idle keep-alive — is closed by MHD. A
 * suspended connection (a request being served) is never timed out. */
static unsigned idle_timeout_from_env(void)
{
    const char *v = getenv("MINILAMBDA_HTTP_IDLE_TIMEOUT_S");
    int64_t n;

    if (!v || !*v)
        return 60;
    if (ml_parse_int64(v, 1, 3600, &n) != ML_OK) {
        ml_log_warn("MINILAMBDA_HTTP_IDLE_TIMEOUT_S='%s' is not 1..3600; using 60", v);
        return 60;
    }
    return (unsigned)n;
}

static void apply_defaults(httpd_config *c)
{
    if (!c->service)
        c->service = "minilambda";
    if (!c->threads)
        c->threads = 2;
    if (!c->workers)
        c->workers = 16;
    if (!c->max_body)
        c->max_body = DEFAULT_MAX_BODY;
    if (!c->conn_timeout_s)
        c->conn_timeout_s = idle_timeout_from_env();
    if (!c->drain_timeout_s)
        c->drain_timeout_s = 30;
}

/* MHD_OPTION_URI_LOG_CALLBACK: the only place MHD shows the URI as sent; keeps its query
 * string (httpd_raw_query) in a request allocated here, which on_request then fills. NULL
 * (no raw query; on_request allocates) when out of memory. */
static void *uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    const char *q = strchr(uri, '?');
    httpd_req *r;

    ML_UNUSED(cls);
    ML_UNUSED(conn);
    if (!q || !q[1] || !(r = calloc(1, sizeof(*r))))
        return NULL;
    r->pre = true;
    if (!(r->raw_query = strdup(q + 1))) {
        free(r);
        return NULL;
    }
    return r;
}

/* MHD_OPTION_EXTERNAL_LOGGER: libmicrohttpd's own messages (a refused request line, an
 * oversized header, a socket error) as warn lines of the JSON log instead of plain text on
 * stderr. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    ML_UNUSED(cls);
    ml_vsnprintf_trunc(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    ml_log_kv(ML_LOG_WARN, "libmicrohttpd", "detail", msg, NULL);
}

static struct MHD_Daemon *start_daemon(httpd *h, struct sockaddr_in *sa, bool external)
{
    struct MHD_OptionItem opts[] = {
        { MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL }, /* first: MHD's advice */
        { MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape, NULL },
        { MHD_OPTION_SOCK_ADDR, 0, sa },
        { MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)h->cfg.conn_timeout_s, NULL },
        { MHD_OPTION_CONNECTION_LIMIT, 10000, NULL },
        { MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h },
        { MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)uri_log, h },
        { MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL },
        /* a pool of one is no pool: MHD wants the option absent then */
        { !external && h->cfg.threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
          (intptr_t)h->cfg.threads, NULL },
        { MHD_OPTION_END, 0, NULL },
    };
    unsigned flags = MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                     (external ? MHD_USE_EPOLL | MHD_USE_TURBO : MHD_USE_EPOLL_INTERNAL_THREAD);

    return MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_ARRAY, opts,
                            MHD_OPTION_END);
}

/* External mode: one daemon per loop, all listening on the same port (SO_REUSEPORT), so the
 * kernel spreads connections over the caller's loops. */
static int start_daemons(httpd *h, struct sockaddr_in *sa)
{
    const union MHD_DaemonInfo *info;

    if (!h->cfg.external) {
        h->daemon = start_daemon(h, sa, false);
        return h->daemon ? ML_OK : ML_ERR;
    }
    for (; h->nloops < h->cfg.threads && h->nloops < MAX_LOOPS; h->nloops++) {
        h->wake[h->nloops] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        h->loops[h->nloops] = start_daemon(h, sa, true);
        if (h->wake[h->nloops] < 0 || !h->loops[h->nloops]) {
            h->nloops++; /* stop_daemons frees what this one got */
            return ML_ERR;
        }
        if (h->nloops == 0 && (info = MHD_get_daemon_info(h->loops[0], MHD_DAEMON_INFO_BIND_PORT)))
            sa->sin_port = htons(info->port); /* port 0: the others join the one picked */
    }
    h->daemon = h->loops[0];
    return ML_OK;
}

static void stop_daemons(httpd *h)
{
    if (!h->cfg.external && h->daemon)
        MHD_stop_daemon(h->daemon);
    for (unsigned i = 0; i < h->nloops; i++) {
        if (h->loops[i])
            MHD_stop_daemon(h->loops[i]);
        if (h->wake[i] >= 0)
            close(h->wake[i]);
    }
    for (unsigned i = 0; h->quiesced && i < (h->cfg.external ? h->nloops : 1); i++)
        if (h->quiesced_fd[i] != MHD_INVALID_SOCKET)
            close(h->quiesced_fd[i]);
    h->daemon = NULL;
    h->nloops = 0;
}

unsigned httpd_loops(const httpd *h)
{
    return h->nloops;
}

int httpd_loop_fd(const httpd *h, unsigned i, int *wake_fd)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->loops[i], MHD_DAEMON_INFO_EPOLL_FD);

    *wake_fd = h->wake[i];
    return info ? info->epoll_fd : -1;
}

void httpd_loop_run(httpd *h, unsigned i)
{
    tl_server = h;
    tl_loop = i;
    h->again[i] = false;
    MHD_run(h->loops[i]);
}

bool httpd_loop_again(const httpd *h, unsigned i)
{
    return h->again[i];
}

int64_t httpd_loop_timeout_ms(httpd *h, unsigned i)
{
    MHD_UNSIGNED_LONG_LONG t;

    if (h->again[i])
        return 0;
    if (MHD_get_timeout(h->loops[i], &t) != MHD_YES)
        return -1;
    return t > INT64_MAX ? INT64_MAX : (int64_t)t;
}

static int bind_address(const httpd_config *c, struct sockaddr_in *sa, char *err, size_t errlen)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons(c->port);
    if (!c->bind_addr || !*c->bind_addr) {
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
        return ML_OK;
    }
    if (inet_pton(AF_INET, c->bind_addr, &sa->sin_addr) != 1) {
        ml_snprintf_trunc(err, errlen, "bind address '%s' is not an IPv4 address", c->bind_addr);
        return ML_ERR;
    }
    return ML_OK;
}

httpd *httpd_start(const httpd_config *cfg, const httpd_route *routes, size_t nroutes,
                   char *err, size_t errlen)
{
    httpd *h = calloc(1, sizeof(*h));
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;

    if (!h) {
        ml_snprintf_trunc(err, errlen, "out of memory");
        return NULL;
    }
    h->cfg = *cfg;
    apply_defaults(&h->cfg);
    h->routes = routes;
    h->nroutes = nroutes;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->idle, NULL);
    if (bind_address(&h->cfg, &sa, err, errlen) != ML_OK)
        goto fail;
    register_metrics(h);
    if (start_workers(h) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot start worker threads");
        goto fail;
    }
    if (start_daemons(h, &sa) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot listen on %s:%u (port in use?)",
                    h->cfg.bind_addr ? h->cfg.bind_addr : "0.0.0.0", h->cfg.port);
        goto fail;
    }
    info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : h->cfg.port;
    return h;
fail:
    stop_daemons(h);
    stop_workers(h);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->idle);
    free(h);
    return NULL;
}

uint16_t httpd_port(const httpd *h)
{
    return h->port;
}

/* Waits until no request is in flight or the drain timeout passes; true when drained. */
static bool drain(httpd *h)
{
    struct timespec deadline;
    bool drained;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += h->cfg.drain_timeout_s;
    pthread_mutex_lock(&h->lock);
    while (h->inflight > 0) {
        if (pthread_cond_timedwait(&h->idle, &h->lock, &deadline) != 0)
            break;
    }
    drained = h->inflight == 0;
    pthread_mutex_unlock(&h->lock);
    return drained;
}

bool httpd_drain(httpd *h)
{
    MHD_socket fd;

    pthread_mutex_lock(&h->lock);
    h->draining = true;
    pthread_mutex_unlock(&h->lock);
    for (unsigned i = 0; !h->quiesced && i < (h->cfg.external ? h->nloops : 1); i++) {
        fd = MHD_quiesce_daemon(h->cfg.external ? h->loops[i] : h->daemon);
        h->quiesced_fd[i] = fd;
        if (fd != MHD_INVALID_SOCKET)
            shutdown(fd, SHUT_RDWR); /* stops listening: new connections are refused */
    }
    h->quiesced = true;
    end_streams(h);
    return drain(h);
}

void httpd_stop(httpd *h)
{
    if (!h)
        return;
    if (!httpd_drain(h)) {
        /* Handlers still hold requests; freeing now would be a use-after-free. Leave the
         * server to the process exit rather than corrupt memory. */
        ml_log_warn("http server stopped with %ld requests still in flight", h->inflight);
        return;
    }
    stop_daemons(h);
    stop_workers(h);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->idle);
    free(h);
}

httpd_result httpd_metrics_handler(httpd_req *req, httpd_resp *resp, void *ud)
{
    ML_UNUSED(req);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (metrics_render(ud, &resp->body) != ML_OK)
        httpd_resp_error(resp, 500, "internal", "cannot render metrics");
    return HTTPD_DONE;
}

size_t httpd_routes_copy(httpd_route *dst, size_t max, const httpd_route *src, size_t n)
{
    n = n < max ? n : max;
    memcpy(dst, src, n * sizeof(*dst));
    return n;
}
