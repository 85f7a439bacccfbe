/* logs_loki.c — the optional second sink of function logs (docs/logs.md §1 "Store"): a batch
 * as one Loki push (JSON API), one stream per (function, namespace, level). request_id stays in
 * the line, never a label (unbounded cardinality). Best effort: the caller counts failures. */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "httpc.h"
#include "logs-int.h"

#define LOKI_TIMEOUT_MS 2000 /* the writer waits this long at most; Postgres is the source of truth */

static const char *const stream_names[] = { "stdout", "stderr", "platform" };

/* A cJSON string of s with invalid UTF-8 repaired (cJSON copies bytes as they are). */
static cJSON *text(const char *s, size_t n)
{
    ml_buf b;
    cJSON *v;

    ml_buf_init(&b, 0);
    v = logs_text_append(&b, s, n, false) == ML_OK ? cJSON_CreateString(ml_buf_cstr(&b)) : NULL;
    ml_buf_free(&b);
    return v;
}

static bool label_is(const cJSON *labels, const char *name, const char *want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(labels, name);

    return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

/* The values array of e's stream in streams, made when new. */
static cJSON *stream_of(cJSON *streams, const logq_entry *e)
{
    cJSON *s, *labels;

    cJSON_ArrayForEach(s, streams) {
        labels = cJSON_GetObjectItemCaseSensitive(s, "stream");
        if (label_is(labels, "function", e->function) && label_is(labels, "namespace", e->ns) &&
            label_is(labels, "level", e->level))
            return cJSON_GetObjectItemCaseSensitive(s, "values");
    }
    s = cJSON_CreateObject();
    cJSON_AddItemToArray(streams, s);
    labels = cJSON_AddObjectToObject(s, "stream");
    cJSON_AddStringToObject(labels, "service", "function");
    cJSON_AddItemToObject(labels, "function", text(e->function, strlen(e->function)));
    cJSON_AddItemToObject(labels, "namespace", text(e->ns, strlen(e->ns)));
    cJSON_AddItemToObject(labels, "level", text(e->level, strlen(e->level)));
    return cJSON_AddArrayToObject(s, "values");
}

/* [ "<ts ns>", "{ts, stream, request_id, version, message}" ]. */
static cJSON *value_of(const logq_entry *e)
{
    cJSON *v = cJSON_CreateArray(), *line = cJSON_CreateObject();
    char ns[32], ts[32];
    char *printed;

    ml_snprintf_trunc(ns, sizeof(ns), "%lld000", (long long)e->ts_us);
    ml_snprintf_trunc(ts, sizeof(ts), "%lld", (long long)e->ts_us);
    cJSON_AddItemToArray(v, cJSON_CreateString(ns));
    cJSON_AddRawToObject(line, "ts", ts);
    cJSON_AddStringToObject(line, "stream", stream_names[e->stream]);
    cJSON_AddStringToObject(line, "request_id", e->request_id);
    cJSON_AddItemToObject(line, "version", text(e->version, strlen(e->version)));
    cJSON_AddItemToObject(line, "message", text(e->message, e->len));
    printed = cJSON_PrintUnformatted(line);
    cJSON_AddItemToArray(v, cJSON_CreateString(printed ? printed : "{}"));
    free(printed);
    cJSON_Delete(line);
    return v;
}

int logs_loki_push(struct httpc *h, const char *base_url, logq_entry *const *lines, size_t n,
                   char *err, size_t errlen)
{
    static const char *const headers[] = { "Content-Type: application/json", NULL };
    cJSON *doc = cJSON_CreateObject(), *streams = cJSON_AddArrayToObject(doc, "streams");
    char url[1024], *body;
    httpc_response resp = { 0 };
    int rc = ML_ERR;

    for (size_t i = 0; i < n && streams; i++)
        cJSON_AddItemToArray(stream_of(streams, lines[i]), value_of(lines[i]));
    body = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (!body || ml_snprintf(url, sizeof(url), "%s/loki/api/v1/push", base_url) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "cannot encode the push");
        goto out;
    }
    httpc_request req = { .method = "POST", .url = url, .headers = headers, .body = body,
                          .body_len = strlen(body), .timeout_ms = LOKI_TIMEOUT_MS,
                          .connect_timeout_ms = LOKI_TIMEOUT_MS };
    if (httpc_do(h, &req, &resp) != ML_OK)
        ml_snprintf_trunc(err, errlen, "%s", httpc_error(h));
    else if (resp.status < 200 || resp.status > 299)
        ml_snprintf_trunc(err, errlen, "Loki answered %ld", resp.status);
    else
        rc = ML_OK;
out:
    httpc_response_free(&resp);
    free(body);
    return rc;
}
