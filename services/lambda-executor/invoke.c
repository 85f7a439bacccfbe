/* invoke.c — POST /functions/{fn}/invoke: look the function up, then run the event now
 * (exec.h), queue it (async.h: Event) or stop (DryRun); map a sync outcome to the contract's
 * status codes and headers, and hand its audit row to the writer thread (never waiting on
 * Postgres). Nothing runs or is queued while the audit log cannot take its row (503
 * audit_unavailable). An Event's id is fixed before it is queued — the client's
 * X-Invocation-Id or a new one — and answered on the 202 and on a 503 alike, so a retry with
 * it runs the event at most once (docs/async.md). */
#include "invoke.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <pthread.h>

#include "async.h"
#include "crypto.h"
#include "exec.h"
#include "invstream.h"
#include "jsoncheck.h"
#include "log.h"

typedef struct call {
    ex_app *app;
    const invoke_input *in;      /* what to run (from the request, or a batch's item) */
    httpd_req *req;              /* NULL for a batch's item */
    httpd_resp *resp;
    const char *event;           /* the request body, or "{}" for an empty one */
    size_t event_len;
    fn_info fn;                  /* what runs: the qualifier's version (docs/versions.md) */
    char executed[VER_EXEC_MAX]; /* "$LATEST" or the published version that runs */
    char alias[VER_ALIAS_MAX];   /* the alias invoked through, "" when none */
    char id[ML_UUID_LEN];
    bool cold;
    sandbox_result result;
    int64_t started_ms;
    /* streaming (X-Minilambda-Stream: 1, invstream.h): once the function's stream starts the
     * request is completed and answered as it runs; req and resp are then the server's
     * again (never touched), the stream is what is left */
    bool want_stream;
    httpd_stream *stream;
    bool stream_gone;            /* the client left: the rest of the stream is dropped */
    pthread_mutex_t pace_mu;     /* with pace_cv and pace_gen: the client read some (stream_pace) */
    pthread_cond_t pace_cv;
    unsigned pace_gen;
    char request_id[64];         /* for the audit row, kept past the completion */
    char event_sha256[65];       /* likewise: the event's hash (the event lives in req) */
} call;

/* The HTTP status of an outcome. */
static int outcome_http(sandbox_status s)
{
    return s == SB_OK ? 200 : s == SB_TIMEOUT ? 504 : 502;
}

static void audit_call(call *c, audit_status status, const char *error_type, const char *message)
{
    audit_record rec = { 0 };

    if (c->event_sha256[0]) /* streamed: the event went with the request */
        ml_strlcpy(rec.payload_sha256, c->event_sha256, sizeof(rec.payload_sha256));
    else
        crypto_sha256_hex(c->event, c->event_len, rec.payload_sha256); /* for the event audit */
    ml_strlcpy(rec.id, c->id, sizeof(rec.id));
    ml_strlcpy(rec.function_id, c->fn.id, sizeof(rec.function_id));
    rec.version = c->fn.version;
    rec.trigger = AUDIT_HTTP_SYNC;
    rec.status = status;
    rec.attempts = 1;
    rec.cold_start = c->cold ? 1 : 0;
    rec.request_id = c->request_id[0] ? c->request_id : NULL;
    rec.payload_size = (int64_t)c->event_len;
    exec_audit_result(&rec, &c->result);
    rec.error_type = error_type;
    rec.error_message = message;
    rec.created_ms = c->started_ms;
    rec.started_ms = c->started_ms;
    rec.executed_version = c->executed;
    rec.alias = c->alias[0] ? c->alias : NULL;
    if (audit_submit(c->app->audit, &rec) != ML_OK)
        ml_log_kv(ML_LOG_ERROR, "audit record dropped", "invocation_id", c->id, NULL);
}

/* A content type as the static string httpd wants: the common ones are literals, others
 * are kept for the process's life (a bounded set; past it, application/octet-stream). */
static const char *static_content_type(const char *ct)
{
    static const char *const known[] = { "application/x-ndjson", "application/json",
                                         "application/octet-stream", "text/plain",
                                         "text/plain; charset=utf-8", "text/html",
                                         "text/html; charset=utf-8", "text/event-stream" };
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static char *kept[64];
    const char *found = "application/octet-stream";

    for (size_t i = 0; i < ML_ARRAY_LEN(known); i++)
        if (strcmp(ct, known[i]) == 0)
            return known[i];
    if (strlen(ct) > 200)
        return found;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < ML_ARRAY_LEN(kept); i++) {
        if (kept[i] && strcmp(kept[i], ct) == 0) {
            found = kept[i];
            break;
        }
        if (!kept[i]) {
            if ((kept[i] = strdup(ct)) != NULL)
                found = kept[i];
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return found;
}

/* The content type of a streamed result's meta ({"content_type",...}) as a static string. */
static const char *stream_content_type(const sandbox_result *r)
{
    cJSON *m = cJSON_ParseWithLength(ml_buf_cstr(&r->stream_meta), r->stream_meta.len);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(m, "content_type");
    const char *s = static_content_type(cJSON_IsString(ct) ? ct->valuestring : "application/octet-stream");

    cJSON_Delete(m);
    return s;
}

/* The headers every answer to a run carries (those known before the end). */
static void run_headers(call *c, httpd_resp *resp)
{
    char num[32];

    httpd_resp_header(resp, "X-Invocation-Id", c->id);
    /* numbers in headers are never cut: a header that cannot be formatted is left out */
    if (ml_snprintf(num, sizeof(num), "%d", c->fn.version) == ML_OK)
        httpd_resp_header(resp, "X-Function-Version", num);
    httpd_resp_header(resp, "X-Executed-Version", c->executed);
    httpd_resp_header(resp, "X-Cold-Start", c->cold ? "true" : "false");
}

/* How far the reader (the gateway) may fall behind before the function waits for it. */
#define STREAM_HIGH_WATER (256u * 1024u)

/* httpd_stream_notify_fn (a server thread, the stream's lock held): the reader caught up
 * to half the high water mark, or left. */
static void on_stream_drained(void *ud)
{
    call *c = ud;

    pthread_mutex_lock(&c->pace_mu);
    c->pace_gen++;
    pthread_cond_signal(&c->pace_cv);
    pthread_mutex_unlock(&c->pace_mu);
}

/* Waits while the reader is STREAM_HIGH_WATER or more behind, at most until the function's
 * timeout: the function's writes then block in its pipe, so a slow reader slows it down
 * instead of its output being cut at the stream's buffer bound. The stream's lock is never
 * taken under pace_mu (the callback takes them the other way round): a generation count
 * tells a wake-up that came between the look and the wait. */
static void stream_pace(call *c)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += c->fn.timeout_s + 1;
    for (;;) {
        unsigned gen;
        bool timed_out = false;

        pthread_mutex_lock(&c->pace_mu);
        gen = c->pace_gen;
        pthread_mutex_unlock(&c->pace_mu);
        if (httpd_stream_gone(c->stream) || httpd_stream_pending(c->stream) < STREAM_HIGH_WATER)
            return;
        pthread_mutex_lock(&c->pace_mu);
        while (c->pace_gen == gen && !timed_out)
            timed_out = pthread_cond_timedwait(&c->pace_cv, &c->pace_mu, &until) == ETIMEDOUT;
        pthread_mutex_unlock(&c->pace_mu);
        if (timed_out)
            return;
    }
}

/* Queues one frame for the client; a client that has gone drops the rest. */
static int stream_frame(call *c, char type, const char *data, size_t len)
{
    ml_buf f = { 0 };
    int rc = ML_ERR;

    if (c->stream_gone || invstream_frame(&f, type, data, len) != ML_OK)
        goto out;
    stream_pace(c);
    rc = httpd_stream_write(c->stream, f.data, f.len);
out:
    ml_buf_free(&f);
    if (rc != ML_OK)
        c->stream_gone = true;
    return rc;
}

/* The function's stream started (sandbox_stream_sink.start, on this worker thread): the
 * answer goes out now — 200, the invstream type, the run's headers, the 'M' frame — and the
 * request is completed while the function goes on. */
static int on_stream_start(void *ud, const char *meta, size_t len)
{
    call *c = ud;

    crypto_sha256_hex(c->event, c->event_len, c->event_sha256); /* before req goes */
    c->resp->status = 200;
    run_headers(c, c->resp);
    if (!(c->stream = httpd_resp_stream(c->resp, INVSTREAM_CONTENT_TYPE)))
        return ML_ERR; /* a 500 in resp: finish answers that */
    pthread_mutex_init(&c->pace_mu, NULL);
    pthread_cond_init(&c->pace_cv, NULL);
    httpd_stream_notify(c->stream, STREAM_HIGH_WATER / 2, on_stream_drained, c);
    httpd_complete(c->req);
    c->req = NULL;
    c->resp = NULL;
    return stream_frame(c, INVSTREAM_META, meta, len);
}

/* The next bytes of the function's stream: 'D' frames (a piece larger than a frame is split). */
static int on_stream_chunk(void *ud, const char *data, size_t len)
{
    call *c = ud;

    while (len) {
        size_t n = len < INVSTREAM_FRAME_MAX ? len : INVSTREAM_FRAME_MAX;
        if (stream_frame(c, INVSTREAM_DATA, data, n) != ML_OK)
            return ML_ERR;
        data += n, len -= n;
    }
    return ML_OK;
}

/* The end of a streamed answer: 'E' ({} or the error JSON), then the stream is closed. */
static void stream_finish(call *c)
{
    const sandbox_result *r = &c->result;

    if (r->status == SB_OK)
        stream_frame(c, INVSTREAM_END, "{}", 2);
    else
        stream_frame(c, INVSTREAM_END, ml_buf_cstr(&r->payload), r->payload.len);
    httpd_stream_close(c->stream); /* no on_stream_drained after this */
    c->stream = NULL;
    pthread_cond_destroy(&c->pace_cv);
    pthread_mutex_destroy(&c->pace_mu);
}

static void reply(call *c)
{
    httpd_resp *resp = c->resp;
    const char *fn_error = exec_error_type(c->result.status);
    const char *tail = c->in->log_type;
    char num[32];

    resp->status = outcome_http(c->result.status);
    /* a streaming function called without X-Minilambda-Stream: its bytes, its type */
    resp->content_type = c->result.streamed && c->result.status == SB_OK
                             ? stream_content_type(&c->result) : "application/json";
    ml_buf_reset(&resp->body);
    ml_buf_append(&resp->body, c->result.payload.data ? c->result.payload.data : "null",
                  c->result.payload.data ? c->result.payload.len : 4);
    run_headers(c, resp);
    if (ml_snprintf(num, sizeof(num), "%lld", (long long)c->result.duration_ms) == ML_OK)
        httpd_resp_header(resp, "X-Duration-Ms", num);
    if (fn_error)
        httpd_resp_header(resp, "X-Function-Error", fn_error);
    if (tail && strcasecmp(tail, "Tail") == 0) {
        char b64[CRYPTO_BASE64_ENC_SIZE(4096)];
        const ml_buf *log = &c->result.log_tail;
        size_t off = log->len > 4096 ? log->len - 4096 : 0;
        if (crypto_base64_encode(ml_buf_cstr(log) + off, log->len - off, b64, sizeof(b64)) == ML_OK)
            httpd_resp_header(resp, "X-Log-Result", b64);
    }
}

/* Runs the request's event; ML_ERR: nothing ran (resp written). */
static int run(call *c, deps *d)
{
    char err[512];
    exec_request rq = { .fn = &c->fn, .executed_version = c->executed, .trigger = "http_sync",
                        .id = c->id, .event = c->event,
                        .len = c->event_len, .wait_ms = c->app->queue_wait_ms };
    sandbox_stream_sink sink = { .start = on_stream_start, .chunk = on_stream_chunk, .ctx = c };
    exec_outcome o;

    if (c->want_stream)
        rq.stream = &sink;
    o = exec_run(c->app, d, &rq, &c->cold, &c->result, err, sizeof(err));

    if (o == EXEC_NO_CODE) {
        httpd_resp_header(c->resp, "Retry-After", "1");
        httpd_resp_error(c->resp, 503, "code_unavailable", "%s", err);
        return ML_ERR;
    }
    if (o == EXEC_NO_SANDBOX) {
        httpd_resp_header(c->resp, "Retry-After", "1");
        httpd_resp_error(c->resp, 503, "no_executor_available", "%s", err);
        return ML_ERR;
    }
    if (o == EXEC_SATURATED) {
        httpd_resp_header(c->resp, "Retry-After", "1");
        httpd_resp_error(c->resp, 429, "too_many_requests", "%s", err);
        return ML_ERR;
    }
    return ML_OK;
}

static void finish(call *c)
{
    const char *fn_error = exec_error_type(c->result.status);
    char *message = fn_error ? exec_error_message(&c->result) : NULL;
    audit_status st = c->result.status == SB_OK        ? AUDIT_SUCCEEDED
                      : c->result.status == SB_TIMEOUT ? AUDIT_TIMED_OUT
                                                       : AUDIT_FAILED;

    if (c->stream)
        stream_finish(c);
    else if (c->resp)
        reply(c);
    audit_call(c, st, fn_error, message);
    free(message);
}

/* A 503 for an Event that names its id (header and body): the event may have been queued
 * although the broker's confirm was lost, and a retry with the id cannot run it twice. */
static void refuse_event(call *c, const char *code, const char *message)
{
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");

    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "request_id", c->in->request_id ? c->in->request_id : "");
    cJSON_AddStringToObject(o, "invocation_id", c->id);
    httpd_resp_header(c->resp, "X-Invocation-Id", c->id);
    httpd_resp_header(c->resp, "Retry-After", "1");
    httpd_resp_json(c->resp, 503, o);
}

/* Event: 202 only once the broker confirmed the event. The same id sent again gets 202
 * again (idempotent: the consumers run one id once). */
static void enqueue(call *c, deps *d)
{
    char id[ML_UUID_LEN], err[256];
    cJSON *o;
    async_event ev = { .fn = &c->fn, .payload = c->event, .len = c->event_len,
                       .trigger = AUDIT_HTTP_ASYNC, .request_id = c->in->request_id,
                       .id = c->id, .executed_version = c->executed,
                       .alias = c->alias[0] ? c->alias : NULL };

    if (c->event_len > ASYNC_MAX_EVENT) {
        httpd_resp_error(c->resp, 413, "payload_too_large", "an Event invocation's body is limited to %d KiB",
                         ASYNC_MAX_EVENT / 1024);
        return;
    }
    if (async_enqueue(c->app, d, &ev, id, err, sizeof(err)) != ML_OK) {
        refuse_event(c, "service_unavailable", err);
        return;
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "invocation_id", id);
    cJSON_AddStringToObject(o, "status", "queued");
    httpd_resp_header(c->resp, "X-Invocation-Id", id);
    httpd_resp_header(c->resp, "X-Executed-Version", c->executed);
    httpd_resp_json(c->resp, 202, o);
}

/* The invocation's id: an Event's may come from the client (X-Invocation-Id, a UUID: a
 * retry of the same event); everything else gets a new one. ML_ERR: 400 written. */
static int fix_id(call *c, bool event)
{
    const char *given = c->in->given_id;

    if (!event || !given) {
        ml_uuid(c->id);
        return ML_OK;
    }
    if (ml_uuid_valid(given) != ML_OK) {
        httpd_resp_error(c->resp, 400, "invalid_invocation_id",
                         "X-Invocation-Id must be a UUID (8-4-4-4-12 hex digits)");
        return ML_ERR;
    }
    for (size_t i = 0; i + 1 < ML_UUID_LEN && given[i]; i++) /* one spelling per id */
        c->id[i] = (char)(given[i] >= 'A' && given[i] <= 'F' ? given[i] - 'A' + 'a' : given[i]);
    c->id[ML_UUID_LEN - 1] = '\0';
    return ML_OK;
}

/* 409 for a function without an active version: build_in_progress (Retry-After: 1) while
 * its first build runs, build_failed once it failed; both name the build. */
static void not_active(call *c)
{
    bool pending = c->fn.state == FN_PENDING;
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    char msg[160];

    ml_snprintf_trunc(msg, sizeof(msg), pending ? "function '%s' is being built: retry shortly"
                                                : "function '%s' has no working build: its build failed",
                      c->fn.name);
    cJSON_AddStringToObject(e, "code", pending ? "build_in_progress" : "build_failed");
    cJSON_AddStringToObject(e, "message", msg);
    if (c->fn.build_id[0])
        cJSON_AddStringToObject(e, "build_id", c->fn.build_id);
    else
        cJSON_AddNullToObject(e, "build_id");
    if (pending)
        httpd_resp_header(c->resp, "Retry-After", "1");
    httpd_resp_json(c->resp, 409, o);
}

/* The event is the body, which must be one JSON value in UTF-8 (a 400, the caller's fault,
 * rather than the runtime's UnmarshalError); an empty body is the event {} as in AWS. */
static int read_event(call *c)
{
    jsoncheck_error e;

    c->event = c->in->event;
    c->event_len = c->in->event_len;
    if (c->event_len == 0) {
        c->event = "{}";
        c->event_len = 2;
        return ML_OK;
    }
    if (jsoncheck_validate(c->event, c->event_len, &e) == ML_OK)
        return ML_OK;
    httpd_resp_error(c->resp, 400, "invalid_request_content",
                     "the request body is not a JSON document in UTF-8: %s at byte %zu", e.why,
                     e.offset);
    return ML_ERR;
}

/* ?qualifier=: the version (or the alias's pick) that runs replaces $LATEST in c->fn. An
 * unknown qualifier is 404, never a fallback to $LATEST. ML_ERR with 404/503 written. */
static int qualify(call *c)
{
    const char *q = c->in->qualifier;
    qual_rc rc = qualifier_resolve(c->app->versions, &c->fn, q, c->executed, c->alias);

    if (rc == QR_OK)
        return ML_OK;
    if (rc == QR_ERR) {
        httpd_resp_header(c->resp, "Retry-After", "1");
        httpd_resp_error(c->resp, 503, "service_unavailable", "cannot resolve the qualifier now");
    } else {
        httpd_resp_error(c->resp, 404, "qualifier_not_found", "function '%s' has no version or alias '%s'",
                         c->fn.name, q ? q : "");
    }
    return ML_ERR;
}

/* 404 / 409 / 503 for a function that cannot be invoked; ML_OK when it can. */
static int lookup(call *c)
{
    char err[256] = "";
    const char *fn = c->in->fn;
    /* another namespace's function (by name or id) is not found, as a missing one */
    int rc = registry_get(c->app->registry, c->in->ns, fn, &c->fn, err, sizeof(err));

    if (rc == REGISTRY_NOT_FOUND) {
        httpd_resp_error(c->resp, 404, "not_found", "no function '%s'", fn);
        return ML_ERR;
    }
    if (rc != ML_OK) {
        httpd_resp_header(c->resp, "Retry-After", "1");
        httpd_resp_error(c->resp, 503, "service_unavailable", "function registry: %s", err);
        return ML_ERR;
    }
    if (c->fn.state != FN_ACTIVE) {
        not_active(c);
        return ML_ERR;
    }
    return qualify(c);
}

/* Before anything runs or is queued: every invocation leaves an audit row (docs/audit.md). */
static int audit_ready(call *c, bool event)
{
    if (audit_available(c->app->audit))
        return ML_OK;
    if (event) {
        refuse_event(c, "audit_unavailable", "the audit log cannot take more rows now: retry shortly");
        return ML_ERR;
    }
    httpd_resp_header(c->resp, "Retry-After", "1");
    httpd_resp_error(c->resp, 503, "audit_unavailable", "the audit log cannot take more rows now: retry shortly");
    return ML_ERR;
}

/* The steps of one invocation (invoke.h); req: the HTTP request it came as, or NULL. */
static httpd_result invoke_run(ex_app *app, const invoke_input *in, httpd_req *req, httpd_resp *resp)
{
    const char *type = in->type;
    bool event = type && strcmp(type, "Event") == 0;
    call *c = calloc(1, sizeof(*c));
    const char *stream_hdr;
    httpd_result done = HTTPD_DONE;
    deps *d;

    if (!c) {
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return HTTPD_DONE;
    }
    c->app = app, c->in = in, c->req = req, c->resp = resp, c->started_ms = ml_wall_ms();
    /* only an HTTP request can be answered as a stream (a batch's item is collected) */
    stream_hdr = req ? httpd_header(req, INVSTREAM_ACCEPT_HEADER) : NULL;
    c->want_stream = !event && stream_hdr && strcmp(stream_hdr, "1") == 0;
    if (in->request_id) /* kept: in's strings live in req, which a stream hands back early */
        ml_strlcpy(c->request_id, in->request_id, sizeof(c->request_id));
    if (type && strcmp(type, "RequestResponse") && strcmp(type, "DryRun") && !event) {
        httpd_resp_error(resp, 400, "invalid_invocation_type",
                         "X-Invocation-Type must be RequestResponse, Event or DryRun");
        goto out;
    }
    if (fix_id(c, event) != ML_OK || read_event(c) != ML_OK || lookup(c) != ML_OK)
        goto out;
    if (type && strcmp(type, "DryRun") == 0) {
        resp->status = 204;
        goto out;
    }
    if (audit_ready(c, event) != ML_OK)
        goto out;
    if (!(d = app_thread_deps(c->app))) {
        if (event)
            refuse_event(c, "service_unavailable", "cannot reach storage");
        else {
            httpd_resp_header(resp, "Retry-After", "1");
            httpd_resp_error(resp, 503, "service_unavailable", "cannot reach storage");
        }
        goto out;
    }
    if (event)
        enqueue(c, d);
    else if (run(c, d) == ML_OK)
        finish(c);
    if (!c->req) /* streamed: completed when the stream started */
        done = HTTPD_ASYNC;
out:
    sandbox_result_free(&c->result);
    free(c);
    return done;
}

void invoke_one(ex_app *app, const invoke_input *in, httpd_resp *resp)
{
    invoke_run(app, in, NULL, resp);
}

static httpd_result h_invoke(httpd_req *req, httpd_resp *resp, void *ud)
{
    char ns[FN_NS_MAX];
    invoke_input in = { .ns = ns, .fn = httpd_param(req, "fn"), .qualifier = httpd_query(req, "qualifier"),
                        .type = httpd_header(req, "X-Invocation-Type"),
                        .given_id = httpd_header(req, "X-Invocation-Id"),
                        .log_type = httpd_header(req, "X-Log-Type"), .request_id = httpd_request_id(req) };

    in.event = httpd_body(req, &in.event_len);
    if (registry_req_ns(req, resp, ns) != ML_OK)
        return HTTPD_DONE;
    return invoke_run(ud, &in, req, resp);
}

size_t invoke_routes(ex_app *app, httpd_route *out, size_t max)
{
    if (max < 1)
        return 0;
    out[0] = (httpd_route){ "POST", "/functions/{fn}/invoke", h_invoke, app, EX_MAX_SYNC_BODY, true };
    return 1;
}
