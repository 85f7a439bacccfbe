/* exec.c — runs one invocation (see exec.h): code, pool lease, sandbox, metrics. */
#include "exec.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "fnlog-t.h"

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

/* Unpacks fi.env ("A=1\0B=2\0") into a NULL-terminated pointer list. */
static void env_list(const fn_info *fi, const char **out, size_t max)
{
    size_t n = 0;

    for (const char *p = fi->env; p < fi->env + fi->env_len && n + 1 < max; p += strlen(p) + 1)
        out[n++] = p;
    out[n] = NULL;
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

/* fn's runtime on this executor: ML_OK with its interpreter (NULL for provided), or ML_ERR
 * with res holding Runtime.Unavailable naming it and what is available. Never another
 * interpreter: a python3.12 function does not run on 3.11 (docs/versions.md "Runtimes"). */
static int runtime_for(const ex_app *app, const fn_info *fn, const char **interp, sandbox_result *res)
{
    const runtimes_entry *e = runtimes_find(&app->runtimes, fn->runtime);
    char names[256], msg[512];

    if (e && e->available) {
        *interp = e->interpreter[0] ? e->interpreter : NULL;
        return ML_OK;
    }
    runtimes_names(&app->runtimes, names, sizeof(names));
    ml_snprintf_trunc(msg, sizeof(msg), "Runtime.Unavailable: runtime %s is not installed on this "
                      "executor (available: %s)", fn->runtime, names);
    init_error(res, msg);
    return ML_ERR;
}

/* What identifies fn's pool and how its instances start; bufs: version, generation, env. */
typedef struct want_bufs {
    char version[24], generation[24];
    const char *env[FN_ENV_BYTES_MAX / 2 + 1];
} want_bufs;

/* ML_ERR when the version or generation cannot be formatted whole (they key instances). */
static int make_want(const ex_app *app, const fn_info *fn, const char *executed, const char *dir,
                     const char *interp, want_bufs *b, pool_want *w)
{
    env_list(fn, b->env, ML_ARRAY_LEN(b->env));
    /* the version the function sees (context.function_version, AWS_LAMBDA_FUNCTION_VERSION)
     * is the executed one, as in AWS: "$LATEST" or the published number */
    if (ml_snprintf(b->version, sizeof(b->version), "%s", executed && *executed ? executed : "$LATEST") != ML_OK ||
        ml_snprintf(b->generation, sizeof(b->generation), "%lld", (long long)fn->generation) != ML_OK)
        return ML_ERR;
    *w = (pool_want){ .function_id = fn->id, .function_name = fn->name, .version = fn->version,
                      .executed_version = executed,
                      .generation = b->generation,
                      .concurrency = fn->concurrency > 0 ? fn->concurrency : 1000 };
    w->spec = (sandbox_spec){ .runtime = fn->runtime, .interpreter = interp,
                              .handler = fn->handler, .code_dir = dir,
                              .runtimes_dir = app->runtimes_dir, .function_name = fn->name,
                              .function_version = b->version, .memory_mb = fn->memory_mb,
                              .timeout_s = fn->timeout_s, .env = b->env,
                              .network = app->network && (app->network_host || fn->network),
                              .pids_max = app->pids_max };
    return ML_OK;
}

/* pool_acquire failed (rc != POOL_OK): classify, and record a load failure in res. */
static exec_outcome acquire_failed(ex_app *app, pool_rc rc, const char *label, const char *ns,
                                   const char *err, sandbox_result *res)
{
    const char *killed;

    if (rc == POOL_SATURATED)
        return EXEC_SATURATED;
    if (strncmp(err, "Sandbox.", 8) == 0)
        return EXEC_NO_SANDBOX; /* the platform's fault, not the function's */
    if ((killed = start_kill_reason(err)) != NULL) /* the handler could not even load */
        metric_inc(app->m_kills, (const char *[]){ label, killed, ns });
    init_error(res, err);
    return EXEC_RAN;
}

/* Starts rq's log (discarding when logs are off); START is queued now so that it comes
 * before whatever a cold start prints. */
static void log_begin(const ex_app *app, const exec_request *rq, const char *version, fnlog_inv *log)
{
    const fn_info *fn = rq->fn;
    fnlog_meta m = { .request_id = rq->id, .ns = fn->ns, .function = fn->name,
                     .function_id = fn->id, .version = version,
                     .max_bytes = app->log_max_bytes > 0 ? app->log_max_bytes : 0 };

    fnlog_begin(log, &m);
}

/* The part of exec_run from the pool on: rq runs with log capturing its output. */
static exec_outcome run_logged(ex_app *app, const exec_request *rq, pool_want *w, fnlog_inv *log,
                               bool *cold, sandbox_result *res, char *err, size_t errlen)
{
    const fn_info *fn = rq->fn;
    /* a name is unique per namespace only: the series carry both (docs/tenants.md) */
    const char *label = metrics_function_label(fn->name), *ns = fn->ns, *killed;
    pool_lease lease;
    exec_outcome out;
    pool_rc rc;

    w->spec.log = fnlog_as_sink(log);
    rc = pool_acquire(app->pool, w, rq->wait_ms, &lease, err, errlen);
    *cold = lease.cold;
    if (rc != POOL_OK) {
        out = acquire_failed(app, rc, label, ns, err, res);
        if (out == EXEC_RAN)   /* the handler failed to load: that is this invocation's log */
            fnlog_finish_result(log, res, fn->memory_mb, lease.start_ms * 1000, true);
        else
            fnlog_abandon(log);
        return out;
    }
    metric_inc(app->m_starts, (const char *[]){ label, lease.cold ? "cold" : "warm", ns });
    fnlog_flush(log);   /* it runs: START reaches followers now, not with its first output */
    sandbox_invoke_stream(lease.inst, fnlog_as_sink(log), rq->stream, rq->id, rq->event, rq->len,
                          ml_now_ms() + (int64_t)fn->timeout_s * 1000, EX_MAX_SYNC_BODY, res);
    fnlog_finish_result(log, res, fn->memory_mb, lease.cold ? sandbox_init_us(lease.inst) : 0, false);
    killed = kill_reason(res);
    pool_release(app->pool, &lease, !killed);
    if (killed)
        metric_inc(app->m_kills, (const char *[]){ label, killed, ns });
    metric_inc(app->m_invocations, (const char *[]){ label, rq->trigger, status_label(res->status), ns });
    metric_observe(app->m_duration, (const char *[]){ label, ns }, (double)res->duration_ms / 1000.0);
    return EXEC_RAN;
}

exec_outcome exec_run(ex_app *app, deps *d, const exec_request *rq, bool *cold,
                      sandbox_result *res, char *err, size_t errlen)
{
    const fn_info *fn = rq->fn;
    char dir[512];
    const char *interp = NULL;
    want_bufs b;
    pool_want w;
    fnlog_inv log;

    *cold = false;
    if (runtime_for(app, fn, &interp, res) != ML_OK) {
        /* the function's configuration, not the platform: its error, in its log too */
        log_begin(app, rq, rq->executed_version && *rq->executed_version ? rq->executed_version
                                                                         : "$LATEST", &log);
        fnlog_finish_result(&log, res, fn->memory_mb, 0, true);
        return EXEC_RAN;
    }
    if (artifacts_get(&app->artifacts, d->s3, fn->artifact_prefix, fn->artifact_sha256, dir,
                      sizeof(dir), err, errlen) != ML_OK)
        return EXEC_NO_CODE;
    if (make_want(app, fn, rq->executed_version, dir, interp, &b, &w) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "Sandbox.Error: cannot format the instance key");
        return EXEC_NO_SANDBOX;
    }
    log_begin(app, rq, b.version, &log);
    return run_logged(app, rq, &w, &log, cold, res, err, errlen);
}

const char *exec_error_type(sandbox_status s)
{
    switch (s) {
    case SB_OK: return NULL;
    case SB_HANDLER_ERROR: return "Unhandled";
    case SB_TIMEOUT: return "TimeoutError";
    case SB_OOM: return "Runtime.OutOfMemory";
    default: return "Runtime.ExitError";
    }
}

char *exec_error_message(const sandbox_result *res)
{
    cJSON *o = cJSON_ParseWithLength(ml_buf_cstr(&res->payload), res->payload.len);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "errorMessage");
    char *s = cJSON_IsString(m) ? strdup(m->valuestring) : NULL;

    cJSON_Delete(o);
    return s;
}

void exec_audit_result(audit_record *rec, const sandbox_result *res)
{
    rec->response_size = res->streamed && res->status == SB_OK ? res->streamed_bytes
                                                               : (int64_t)res->payload.len;
    rec->log_tail = res->log_tail.data;
    rec->log_tail_len = res->log_tail.len;
    rec->duration_ms = res->duration_ms;
    rec->memory_used_mb = res->max_memory_bytes > 0 ? res->max_memory_bytes >> 20 : -1;
}
