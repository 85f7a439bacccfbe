/* invoke.c — synchronous invocation: look the function up, get a warm (or new) sandboxed
 * instance from its pool, run the event, map the outcome to the contract's status codes
 * and headers, and hand the audit row to the writer thread (never waiting on Postgres). */
#include "invoke.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "async.h"
#include "crypto.h"
#include "jsoncheck.h"
#include "log.h"

typedef struct call {
    ex_app *app;
    httpd_req *req;
    httpd_resp *resp;
    const char *event;           /* the request body, or "{}" for an empty one */
    size_t event_len;
    fn_info fn;
    char id[ML_UUID_LEN];
    bool cold;
    sandbox_result result;
    int64_t started_ms;
} call;

static const char *status_label(sandbox_status s)
{
    static const char *const labels[] = { "succeeded", "failed", "timed_out", "failed", "failed" };
    return labels[s];
}

/* Why the sandbox killed (or lost) the instance, or NULL if it survived. A refused fork
 * comes first: a fork bomb held at pids.max usually ends as a timeout or a crash. */
static const char *kill_reason(const sandbox_result *r)
{
    if (r->status == SB_OK || r->status == SB_HANDLER_ERROR)
        return NULL;
    if (r->status == SB_OOM)
        return "memory";
    if (r->pids_exhausted)
        return "pids";
    return r->status == SB_TIMEOUT ? "timeout" : "crash";
}

/* The same for an instance that died while loading (sandbox_start's "<errorType>: ..."). */
static const char *start_kill_reason(const char *err)
{
    if (strncmp(err, "Runtime.OutOfMemory:", 20) == 0)
        return "memory";
    if (strncmp(err, "Runtime.InitTimeout:", 20) == 0)
        return "timeout";
    if (strncmp(err, "Runtime.ExitError:", 18) == 0)
        return "crash";
    return NULL;
}

/* Error types of the platform's own outcomes, and the HTTP status of each. */
static void outcome_http(sandbox_status s, int *code, const char **fn_error)
{
    switch (s) {
    case SB_OK: *code = 200, *fn_error = NULL; break;
    case SB_HANDLER_ERROR: *code = 502, *fn_error = "Unhandled"; break;
    case SB_TIMEOUT: *code = 504, *fn_error = "TimeoutError"; break;
    case SB_OOM: *code = 502, *fn_error = "Runtime.OutOfMemory"; break;
    default: *code = 502, *fn_error = "Runtime.ExitError"; break;
    }
}

/* Unpacks fi.env ("A=1\0B=2\0") into a NULL-terminated pointer list. */
static void env_list(const fn_info *fi, const char **out, size_t max)
{
    size_t n = 0;

    for (const char *p = fi->env; p < fi->env + fi->env_len && n + 1 < max; p += strlen(p) + 1)
        out[n++] = p;
    out[n] = NULL;
}

static void audit_call(call *c, audit_status status, const char *error_type, const char *message)
{
    audit_record rec = { 0 };

    crypto_sha256_hex(c->event, c->event_len, rec.payload_sha256); /* for the event audit */
    ml_strlcpy(rec.id, c->id, sizeof(rec.id));
    ml_strlcpy(rec.function_id, c->fn.id, sizeof(rec.function_id));
    rec.version = c->fn.version;
    rec.trigger = AUDIT_HTTP_SYNC;
    rec.status = status;
    rec.attempts = 1;
    rec.cold_start = c->cold ? 1 : 0;
    rec.request_id = httpd_request_id(c->req);
    rec.payload_size = (int64_t)c->event_len;
    rec.response_size = (int64_t)c->result.payload.len;
    rec.error_type = error_type;
    rec.error_message = message;
    rec.log_tail = c->result.log_tail.data;
    rec.log_tail_len = c->result.log_tail.len;
    rec.duration_ms = c->result.duration_ms;
    rec.memory_used_mb = c->result.max_memory_bytes > 0 ? c->result.max_memory_bytes >> 20 : -1;
    rec.created_ms = c->started_ms;
    rec.started_ms = c->started_ms;
    if (audit_submit(c->app->audit, &rec) != ML_OK)
        ml_log_kv(ML_LOG_ERROR, "audit record dropped", "invocation_id", c->id, NULL);
}

/* The error message inside an {"errorType","errorMessage"} payload, for the audit row. */
static char *error_message(const ml_buf *payload)
{
    cJSON *o = cJSON_ParseWithLength(ml_buf_cstr(payload), payload->len);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "errorMessage");
    char *s = cJSON_IsString(m) ? strdup(m->valuestring) : NULL;

    cJSON_Delete(o);
    return s;
}

static void reply(call *c)
{
    httpd_resp *resp = c->resp;
    const char *fn_error, *tail = httpd_header(c->req, "X-Log-Type");
    char num[32];
    int code;

    outcome_http(c->result.status, &code, &fn_error);
    resp->status = code;
    resp->content_type = "application/json";
    ml_buf_reset(&resp->body);
    ml_buf_append(&resp->body, c->result.payload.data ? c->result.payload.data : "null",
                  c->result.payload.data ? c->result.payload.len : 4);
    httpd_resp_header(resp, "X-Invocation-Id", c->id);
    ml_snprintf(num, sizeof(num), "%d", c->fn.version);
    httpd_resp_header(resp, "X-Function-Version", num);
    httpd_resp_header(resp, "X-Cold-Start", c->cold ? "true" : "false");
    ml_snprintf(num, sizeof(num), "%lld", (long long)c->result.duration_ms);
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

/* Fills r with a start failure in the handler-error shape. err is "<errorType>: <message>"
 * (sandbox_start's convention). */
static void init_error(sandbox_result *r, const char *err)
{
    const char *sep = strstr(err, ": ");
    cJSON *o = cJSON_CreateObject();
    char type[64] = "Runtime.InitError", *text;

    if (sep && (size_t)(sep - err) < sizeof(type) && strncmp(err, "Runtime.", 8) == 0) {
        memcpy(type, err, (size_t)(sep - err));
        type[sep - err] = '\0';
        err = sep + 2;
    }
    cJSON_AddStringToObject(o, "errorType", type);
    cJSON_AddStringToObject(o, "errorMessage", err);
    cJSON_AddItemToObject(o, "stackTrace", cJSON_CreateArray());
    text = cJSON_PrintUnformatted(o);
    r->status = SB_HANDLER_ERROR;
    ml_buf_reset(&r->payload);
    ml_buf_append_str(&r->payload, text ? text : "{}");
    free(text);
    cJSON_Delete(o);
}

exec_outcome invoke_exec(ex_app *app, deps *d, const fn_info *fn, const char *trigger,
                         const char *id, const char *event,
                         size_t len, int64_t wait_ms, bool *cold, sandbox_result *res, char *err,
                         size_t errlen)
{
    char dir[512], version[16], generation[24];
    const char *env[FN_ENV_BYTES_MAX / 2 + 1];
    const char *label = metrics_function_label(fn->name), *killed;
    pool_want w = { 0 };
    pool_lease lease;
    int rc;

    *cold = false;
    if (artifacts_get(&app->artifacts, d->s3, fn->artifact_prefix, fn->artifact_sha256, dir,
                      sizeof(dir), err, errlen) != ML_OK)
        return EXEC_NO_CODE;
    env_list(fn, env, ML_ARRAY_LEN(env));
    ml_snprintf(version, sizeof(version), "%d", fn->version);
    ml_snprintf(generation, sizeof(generation), "%lld", (long long)fn->generation);
    w.function_id = fn->id;
    w.function_name = fn->name;
    w.version = fn->version;
    w.generation = generation;
    w.concurrency = fn->concurrency > 0 ? fn->concurrency : 1000;
    w.spec = (sandbox_spec){ .runtime = fn->runtime, .handler = fn->handler, .code_dir = dir,
                             .runtimes_dir = app->runtimes_dir, .function_name = fn->name,
                             .function_version = version, .memory_mb = fn->memory_mb,
                             .timeout_s = fn->timeout_s, .env = env, .network = app->network,
                             .pids_max = app->pids_max };
    rc = pool_acquire(app->pool, &w, wait_ms, &lease, err, errlen);
    *cold = lease.cold;
    if (rc == POOL_SATURATED)
        return EXEC_SATURATED;
    if (rc != ML_OK && strncmp(err, "Sandbox.", 8) == 0)
        return EXEC_NO_SANDBOX; /* the platform's fault, not the function's */
    if (rc != ML_OK) {           /* the handler could not even load */
        if ((killed = start_kill_reason(err)) != NULL)
            metric_inc(app->m_kills, (const char *[]){ label, killed });
        init_error(res, err);
        return EXEC_RAN;
    }
    metric_inc(app->m_starts, (const char *[]){ label, lease.cold ? "cold" : "warm" });
    sandbox_invoke(lease.inst, id, event, len, ml_now_ms() + (int64_t)fn->timeout_s * 1000,
                   EX_MAX_SYNC_BODY, res);
    killed = kill_reason(res);
    pool_release(app->pool, &lease, !killed);
    if (killed)
        metric_inc(app->m_kills, (const char *[]){ label, killed });
    metric_inc(app->m_invocations, (const char *[]){ label, trigger, status_label(res->status) });
    metric_observe(app->m_duration, (const char *[]){ label }, (double)res->duration_ms / 1000.0);
    return EXEC_RAN;
}

/* Runs the request's event; ML_ERR: nothing ran (resp written). */
static int run(call *c, deps *d)
{
    char err[512];
    exec_outcome o = invoke_exec(c->app, d, &c->fn, "http_sync", c->id, c->event, c->event_len,
                                 c->app->queue_wait_ms, &c->cold, &c->result, err, sizeof(err));

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
    const char *fn_error;
    char *message = NULL;
    int code;
    audit_status st = c->result.status == SB_OK        ? AUDIT_SUCCEEDED
                      : c->result.status == SB_TIMEOUT ? AUDIT_TIMED_OUT
                                                       : AUDIT_FAILED;

    outcome_http(c->result.status, &code, &fn_error);
    if (fn_error)
        message = error_message(&c->result.payload);
    reply(c);
    audit_call(c, st, fn_error, message);
    free(message);
}

/* Event: 202 only once the broker confirmed the event. */
static void enqueue(call *c, deps *d)
{
    char id[ML_UUID_LEN], err[256];
    cJSON *o;
    async_event ev = { .fn = &c->fn, .payload = c->event, .len = c->event_len,
                       .trigger = AUDIT_HTTP_ASYNC, .request_id = httpd_request_id(c->req) };

    if (c->event_len > ASYNC_MAX_EVENT) {
        httpd_resp_error(c->resp, 413, "payload_too_large", "an Event invocation's body is limited to %d KiB",
                         ASYNC_MAX_EVENT / 1024);
        return;
    }
    if (async_enqueue(c->app, d, &ev, id, err, sizeof(err)) != ML_OK) {
        httpd_resp_header(c->resp, "Retry-After", "1");
        httpd_resp_error(c->resp, 503, "service_unavailable", "%s", err);
        return;
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "invocation_id", id);
    cJSON_AddStringToObject(o, "status", "queued");
    httpd_resp_header(c->resp, "X-Invocation-Id", id);
    httpd_resp_json(c->resp, 202, o);
}

/* 409 for a function without an active version: build_in_progress (Retry-After: 1) while
 * its first build runs, build_failed once it failed; both name the build. */
static void not_active(call *c)
{
    bool pending = c->fn.state == FN_PENDING;
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    char msg[160];

    ml_snprintf(msg, sizeof(msg), pending ? "function '%s' is being built: retry shortly"
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

    c->event = httpd_body(c->req, &c->event_len);
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

/* 404 / 409 / 503 for a function that cannot be invoked; ML_OK when it can. */
static int lookup(call *c)
{
    char err[256] = "";
    const char *fn = httpd_param(c->req, "fn");
    int rc = registry_get(c->app->registry, fn, &c->fn, err, sizeof(err));

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
    return ML_OK;
}

static httpd_result h_invoke(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *type = httpd_header(req, "X-Invocation-Type");
    call *c = calloc(1, sizeof(*c));
    deps *d;

    if (!c) {
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return HTTPD_DONE;
    }
    c->app = ud, c->req = req, c->resp = resp, c->started_ms = ml_wall_ms();
    ml_uuid(c->id);
    if (type && strcmp(type, "RequestResponse") && strcmp(type, "DryRun") && strcmp(type, "Event")) {
        httpd_resp_error(resp, 400, "invalid_invocation_type",
                         "X-Invocation-Type must be RequestResponse, Event or DryRun");
        goto out;
    }
    if (read_event(c) != ML_OK || lookup(c) != ML_OK)
        goto out;
    if (type && strcmp(type, "DryRun") == 0) {
        resp->status = 204;
        goto out;
    }
    if (!(d = ex_deps(c->app))) {
        httpd_resp_header(resp, "Retry-After", "1");
        httpd_resp_error(resp, 503, "service_unavailable", "cannot reach storage");
        goto out;
    }
    if (type && strcmp(type, "Event") == 0)
        enqueue(c, d);
    else if (run(c, d) == ML_OK)
        finish(c);
out:
    sandbox_result_free(&c->result);
    free(c);
    return HTTPD_DONE;
}

size_t invoke_routes(ex_app *app, httpd_route *out, size_t max)
{
    if (max < 1)
        return 0;
    out[0] = (httpd_route){ "POST", "/functions/{fn}/invoke", h_invoke, app, EX_MAX_SYNC_BODY, true };
    return 1;
}
