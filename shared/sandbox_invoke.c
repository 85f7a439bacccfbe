/* sandbox_invoke.c — one invocation: the event framed out, the result (or the death) shaped
 * into the contract's payload, the peak memory measured. */
#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandbox-int.h"

static int64_t status_kb(const char *path, const char *key)
{
    char buf[4096];
    const char *k;
    int64_t v = -1;

    if (sb_read_file(path, buf, sizeof(buf)) != ML_OK || !(k = strstr(buf, key)))
        return -1;
    k += strlen(key);
    while (*k == ' ' || *k == '\t')
        k++;
    char num[24];
    size_t n = strspn(k, "0123456789");
    if (n == 0 || n >= sizeof(num))
        return -1;
    memcpy(num, k, n);
    num[n] = '\0';
    return ml_parse_int64(num, 0, INT64_MAX, &v) == ML_OK ? v : -1;
}

/* Resets the peak-memory counter before an invocation. */
static void sb_peak_reset(sandbox_instance *in)
{
    char path[64];

    if (in->usage_fd >= 0) {
        (void)pwrite(in->usage_fd, "0", 1, 0);
    } else if (in->runtime_pid > 0 &&
               ml_snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)in->runtime_pid) == ML_OK) {
        (void)sb_write_file(path, "5");   /* "5" resets VmHWM */
    }
}

static int64_t sb_peak(sandbox_instance *in)
{
    char path[64];
    int64_t kb;

    if (in->usage_fd >= 0)
        return sb_read_int_at(in->usage_fd);
    if (in->runtime_pid <= 0 ||
        ml_snprintf(path, sizeof(path), "/proc/%d/status", (int)in->runtime_pid) != ML_OK)
        return -1;
    kb = status_kb(path, "VmHWM:");
    return kb < 0 ? -1 : kb * 1024;
}

/* {"errorType","errorMessage","stackTrace":[]} into out. */
static void error_json(ml_buf *out, const char *type, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;

    ml_buf_free(out);
    if (o && cJSON_AddStringToObject(o, "errorType", type) &&
        cJSON_AddStringToObject(o, "errorMessage", msg) && cJSON_AddArrayToObject(o, "stackTrace"))
        s = cJSON_PrintUnformatted(o);
    ml_buf_append_str(out, s ? s : "{\"errorType\":\"Runtime.ExitError\",\"errorMessage\":\"\",\"stackTrace\":[]}");
    free(s);
    cJSON_Delete(o);
}

/* A handler's error body, normalised to exactly the contract's shape. */
static void normalise_error(ml_buf *out, const char *body, size_t len)
{
    cJSON *in = cJSON_ParseWithLength(body, len);
    cJSON *o = cJSON_CreateObject(), *trace = cJSON_CreateArray();
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(in, "errorType");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(in, "errorMessage");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(in, "stackTrace");
    const cJSON *line;
    char *s = NULL;

    cJSON_ArrayForEach(line, st)
        if (cJSON_IsString(line))
            cJSON_AddItemToArray(trace, cJSON_CreateString(line->valuestring));
    if (o && trace) {
        cJSON_AddStringToObject(o, "errorType", cJSON_IsString(t) ? t->valuestring : "Error");
        cJSON_AddStringToObject(o, "errorMessage", cJSON_IsString(m) ? m->valuestring
                                : (in ? "" : "the runtime sent an error that is not JSON"));
        cJSON_AddItemToObject(o, "stackTrace", trace);
        trace = NULL;
        s = cJSON_PrintUnformatted(o);
    }
    ml_buf_free(out);
    if (s)
        ml_buf_append_str(out, s);
    else
        error_json(out, "Runtime.ExitError", "out of memory formatting an error");
    free(s);
    cJSON_Delete(trace);
    cJSON_Delete(o);
    cJSON_Delete(in);
}

static char *invoke_header(const sandbox_instance *in, const char *id, int64_t deadline_ms)
{
    cJSON *h = cJSON_CreateObject();
    char *s = NULL;
    double wall_deadline = (double)(ml_wall_ms() + (deadline_ms - ml_now_ms()));

    if (h && cJSON_AddStringToObject(h, "type", "invoke") &&
        cJSON_AddStringToObject(h, "invocation_id", id) &&
        cJSON_AddNumberToObject(h, "deadline_ms", wall_deadline) &&
        cJSON_AddStringToObject(h, "function_name", in->function_name) &&
        cJSON_AddStringToObject(h, "function_version", in->function_version) &&
        cJSON_AddNumberToObject(h, "memory_limit_in_mb", (double)in->memory_mb))
        s = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    return s;
}

/* A result body must be one JSON value (empty means null). */
static void take_result(sandbox_instance *in, size_t max_result, sandbox_result *out)
{
    proto_reader *r = &in->rd;
    char type[32], msg[160];
    cJSON *v;

    sb_header_type(r, type, sizeof(type));
    if (r->body_too_large) {
        out->status = SB_HANDLER_ERROR;
        ml_snprintf_trunc(msg, sizeof(msg), "Response payload size (%u bytes) exceeded maximum allowed "
                          "payload size (%zu bytes).", r->body_len, max_result);
        error_json(&out->payload, "Function.ResponseSizeTooLarge", msg);
    } else if (strcmp(type, "error") == 0) {
        out->status = SB_HANDLER_ERROR;
        normalise_error(&out->payload, ml_buf_cstr(&r->body), r->body.len);
    } else if (strcmp(type, "result") != 0) {
        out->status = SB_HANDLER_ERROR;
        error_json(&out->payload, "Runtime.InvalidResponse", "the runtime sent an unknown message type");
    } else if (r->body.len == 0) {
        out->status = SB_OK;
        ml_buf_append_str(&out->payload, "null");
    } else if (!(v = cJSON_ParseWithLengthOpts(r->body.data, r->body.len + 1, NULL, 1))) {
        out->status = SB_HANDLER_ERROR;
        error_json(&out->payload, "Runtime.MarshalError", "the function's result is not valid JSON");
    } else {
        cJSON_Delete(v);
        out->status = SB_OK;
        out->payload = r->body;   /* hand over the buffer */
        ml_buf_init(&r->body, 0);
    }
}

/* SB_TIMEOUT / SB_CRASH / SB_OOM after the instance is gone. */
static void take_death(sandbox_instance *in, sb_outcome o, const char *id, int64_t started,
                       int64_t deadline_ms, const char *why, sandbox_result *out)
{
    char msg[512], how[64];

    if (o == EX_TIMEOUT) {
        out->status = SB_TIMEOUT;
        ml_snprintf_trunc(msg, sizeof(msg), "Task timed out after %.2f seconds",
                          (double)(deadline_ms - started) / 1000.0);
        error_json(&out->payload, "TimeoutError", msg);
        return;
    }
    sb_exit_text(in, how, sizeof(how));
    if (sb_oom_kills(in) > 0) {
        out->status = SB_OOM;
        ml_snprintf_trunc(msg, sizeof(msg), "RequestId: %s Error: Runtime exited with error: %s "
                          "(memory limit of %" PRId64 " MB exceeded)", id, how, in->memory_mb);
        error_json(&out->payload, "Runtime.OutOfMemory", msg);
    } else {
        out->status = SB_CRASH;
        ml_snprintf_trunc(msg, sizeof(msg), "RequestId: %s Error: Runtime exited with error: %s%s%s", id,
                          how, why && *why ? "; " : "", why ? why : "");
        error_json(&out->payload, "Runtime.ExitError", msg);
    }
}

/* A streamed response in progress (sandbox_invoke_stream). */
typedef struct stream_state {
    const sandbox_stream_sink *sink;
    bool forwarding;        /* the sink still takes pieces */
    bool too_large;         /* a piece, or (collected) the whole, exceeded max_result */
    size_t max_result;
} stream_state;

/* {"content_type","http"} of a "stream" header (NULL: a chunk came first) into out->stream_meta,
 * then the sink's start. */
static void stream_begin(stream_state *st, const char *hdr, size_t len, sandbox_result *out)
{
    cJSON *h = hdr ? cJSON_ParseWithLength(hdr, len) : NULL, *m = cJSON_CreateObject();
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(h, "content_type");
    cJSON *http = cJSON_DetachItemFromObjectCaseSensitive(h, "http");
    char *text = NULL;

    out->streamed = true;
    if (m && cJSON_AddStringToObject(m, "content_type", cJSON_IsString(ct) && *ct->valuestring
                                                          ? ct->valuestring
                                                          : "application/octet-stream")) {
        if (cJSON_IsObject(http)) {
            cJSON_AddItemToObject(m, "http", http);
            http = NULL;
        }
        text = cJSON_PrintUnformatted(m);
    }
    ml_buf_reset(&out->stream_meta);
    ml_buf_append_str(&out->stream_meta, text ? text : "{\"content_type\":\"application/octet-stream\"}");
    if (st->sink && st->sink->start &&
        st->sink->start(st->sink->ctx, out->stream_meta.data, out->stream_meta.len) != ML_OK)
        st->forwarding = false;
    free(text);
    cJSON_Delete(http);
    cJSON_Delete(m);
    cJSON_Delete(h);
}

/* One "chunk" message's body: to the sink, or collected into payload. */
static void stream_chunk(stream_state *st, proto_reader *r, sandbox_result *out)
{
    if (r->body_too_large) {
        st->too_large = true;
        return;
    }
    out->streamed_bytes += r->body.len;
    if (r->body.len == 0)
        return;
    if (!st->sink) {
        if (out->payload.len + r->body.len > st->max_result)
            st->too_large = true;
        else if (ml_buf_append(&out->payload, r->body.data, r->body.len) != ML_OK)
            st->too_large = true;
        return;
    }
    if (st->forwarding && st->sink->chunk &&
        st->sink->chunk(st->sink->ctx, r->body.data, r->body.len) != ML_OK)
        st->forwarding = false;
}

/* The final message of a streamed response: result (success) or error. */
static void stream_end(stream_state *st, sandbox_instance *in, sandbox_result *out)
{
    proto_reader *r = &in->rd;
    char type[32], msg[160];

    sb_header_type(r, type, sizeof(type));
    if (strcmp(type, "error") == 0) {
        out->status = SB_HANDLER_ERROR;
        normalise_error(&out->payload, ml_buf_cstr(&r->body), r->body.len);
    } else if (strcmp(type, "result") != 0) {
        out->status = SB_HANDLER_ERROR;
        error_json(&out->payload, "Runtime.InvalidResponse", "the runtime sent an unknown message type");
    } else if (st->too_large) {
        out->status = SB_HANDLER_ERROR;
        ml_snprintf_trunc(msg, sizeof(msg), "Response payload size exceeded maximum allowed payload "
                          "size (%zu bytes).", st->max_result);
        error_json(&out->payload, "Function.ResponseSizeTooLarge", msg);
    } else {
        out->status = SB_OK;   /* payload: what was collected (nothing with a sink) */
    }
}

/* The message just read is "stream" or "chunk": handled, true; anything else: false. */
static bool stream_step(stream_state *st, sandbox_instance *in, sandbox_result *out)
{
    proto_reader *r = &in->rd;
    char type[32];

    sb_header_type(r, type, sizeof(type));
    if (strcmp(type, "stream") == 0) {
        if (!out->streamed)   /* a second one changes nothing: the response has started */
            stream_begin(st, r->header.data, r->header.len, out);
        return true;
    }
    if (strcmp(type, "chunk") != 0)
        return false;
    if (!out->streamed)   /* a chunk without its stream message: the defaults */
        stream_begin(st, NULL, 0, out);
    stream_chunk(st, r, out);
    return true;
}

int sandbox_invoke(sandbox_instance *inst, const char *invocation_id, const char *event,
                   size_t event_len, int64_t deadline_ms, size_t max_result, sandbox_result *out)
{
    return sandbox_invoke_logged(inst, NULL, invocation_id, event, event_len, deadline_ms,
                                 max_result, out);
}

int sandbox_invoke_logged(sandbox_instance *inst, const sandbox_sink *log, const char *invocation_id,
                          const char *event, size_t event_len, int64_t deadline_ms,
                          size_t max_result, sandbox_result *out)
{
    return sandbox_invoke_stream(inst, log, NULL, invocation_id, event, event_len, deadline_ms,
                                 max_result, out);
}

int sandbox_invoke_stream(sandbox_instance *inst, const sandbox_sink *log,
                          const sandbox_stream_sink *stream, const char *invocation_id,
                          const char *event, size_t event_len, int64_t deadline_ms,
                          size_t max_result, sandbox_result *out)
{
    stream_state st = { .sink = stream, .forwarding = true, .max_result = max_result };
    int64_t started = ml_now_ms(), started_us = sb_now_us();
    char *hdr = NULL;
    char why[160] = "";
    proto_writer w;
    sb_outcome o;

    memset(out, 0, sizeof(*out));
    out->max_memory_bytes = -1;
    if (inst && inst->timeout_ms && deadline_ms > started + inst->timeout_ms)
        deadline_ms = started + inst->timeout_ms;
    if (!inst || inst->dead || !invocation_id) {
        out->status = SB_CRASH;
        error_json(&out->payload, "Runtime.ExitError", "the instance is not alive");
        return ML_ERR;
    }
    hdr = invoke_header(inst, invocation_id, deadline_ms);
    if (!hdr || proto_writer_init(&w, hdr, strlen(hdr), event, event_len) != ML_OK) {
        free(hdr);
        sb_kill(inst);
        out->status = SB_CRASH;
        error_json(&out->payload, "Runtime.ExitError", "could not frame the event");
        return ML_ERR;
    }
    sb_peak_reset(inst);
    proto_reader_reset(&inst->rd, max_result);
    inst->flog = log;
    o = sb_exchange(inst, &w, deadline_ms, why, sizeof(why));
    /* a streaming handler's messages until its final result or error */
    while (o == EX_MSG && stream_step(&st, inst, out)) {
        proto_reader_reset(&inst->rd, max_result);
        o = sb_exchange(inst, NULL, deadline_ms, why, sizeof(why));
    }
    if (o == EX_MSG) {
        if (out->streamed)
            stream_end(&st, inst, out);
        else
            take_result(inst, max_result, out);
        out->max_memory_bytes = sb_peak(inst);
    } else {
        out->max_memory_bytes = sb_peak(inst);
        if (o == EX_BROKEN)
            sb_settle(inst);
        else
            sb_kill(inst);
        sb_log_drain(inst);   /* what is left in the pipes of the dead tree */
        ml_buf_reset(&out->payload);   /* collected stream bytes: the error replaces them */
        take_death(inst, o, invocation_id, started, deadline_ms, o == EX_BROKEN ? why : NULL, out);
        out->pids_exhausted = sb_pids_refusals(inst) > 0;
    }
    inst->flog = NULL;
    out->duration_us = sb_now_us() - started_us;
    out->duration_ms = out->duration_us / 1000;
    sb_ring_take(&inst->log, &out->log_tail);
    proto_reader_reset(&inst->rd, PROTO_HEADER_MAX);
    free(hdr);
    return ML_OK;
}

void sandbox_result_free(sandbox_result *r)
{
    if (!r)
        return;
    ml_buf_free(&r->payload);
    ml_buf_free(&r->log_tail);
    ml_buf_free(&r->stream_meta);
    memset(r, 0, sizeof(*r));
}
