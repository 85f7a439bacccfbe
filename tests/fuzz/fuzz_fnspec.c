/* libFuzzer target: shared/fnspec.c — the build.status decoder (what the lambda-executor
 * reads from a webhook) and the contract's validators. Oracles, besides ASan/UBSan (the
 * input sits in an exactly-sized buffer):
 *   - a decoded event satisfies the rules it was checked against (name, runtime, handler,
 *     status, artifact present exactly when completed), and a refusal has a message;
 *   - decode → encode → decode gives the same event, and encoding again the same bytes;
 *   - the validators agree with each other on the input as a string (a valid handler has a
 *     file for python3/nodejs, a valid name is never a UUID, ...) and as JSON (env,
 *     rate_limit, every field of the table, the config check). */
#include <cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fnspec.h"
#include "ml.h"

/* Same JSON as cJSON prints it (a number it cannot print, like 1e999, prints as null). */
static int same_json(const cJSON *a, const cJSON *b)
{
    char *pa = cJSON_PrintUnformatted(a), *pb = cJSON_PrintUnformatted(b);
    int same = pa && pb && strcmp(pa, pb) == 0;

    free(pa);
    free(pb);
    return same;
}

static void same_event(const fnspec_build_event *a, const fnspec_build_event *b)
{
    if (strcmp(a->build_id, b->build_id) || strcmp(a->function_id, b->function_id) ||
        strcmp(a->status, b->status) || strcmp(a->timestamp, b->timestamp) || strcmp(a->name, b->name) ||
        strcmp(a->runtime, b->runtime) || strcmp(a->handler, b->handler) || !a->error != !b->error ||
        (a->error && strcmp(a->error, b->error)) || !a->config != !b->config ||
        (a->config && !same_json(a->config, b->config)) || a->has_artifact != b->has_artifact)
        abort();
    if (a->has_artifact &&
        (strcmp(a->artifact_prefix, b->artifact_prefix) || strcmp(a->artifact_sha256, b->artifact_sha256) ||
         a->artifact_size != b->artifact_size || a->artifact_files != b->artifact_files))
        abort();
}

static void check_decoder(const char *data, size_t size)
{
    fnspec_build_event ev, back;
    char err[512], *out = NULL, *again = NULL;

    err[0] = '\0';
    if (fnspec_build_event_decode(data, size, &ev, err, sizeof(err)) != ML_OK) {
        if (!err[0] || ev.config || ev.error || ev.artifact_prefix)
            abort();
        return;
    }
    if (fnspec_name_valid(ev.name) != ML_OK || fnspec_runtime_valid(ev.runtime) != ML_OK ||
        fnspec_handler_valid(ev.runtime, ev.handler) != ML_OK || fnspec_build_status_valid(ev.status) != ML_OK ||
        ml_uuid_valid(ev.build_id) != ML_OK || ml_uuid_valid(ev.function_id) != ML_OK ||
        ev.has_artifact != (strcmp(ev.status, "completed") == 0) || (ev.has_artifact && !ev.artifact_prefix) ||
        (ev.config && fnspec_config_check(ev.config, false, err, sizeof(err)) != ML_OK))
        abort();
    if (fnspec_build_event_encode(&ev, &out) != ML_OK)
        abort();
    if (fnspec_build_event_decode(out, strlen(out), &back, err, sizeof(err)) != ML_OK)
        abort();
    same_event(&ev, &back);
    if (fnspec_build_event_encode(&back, &again) != ML_OK || strcmp(out, again) != 0)
        abort();
    free(out);
    free(again);
    fnspec_build_event_free(&back);
    fnspec_build_event_free(&ev);
}

static void check_strings(const char *s)
{
    static const char *const runtimes[] = { "python3", "nodejs", "provided" };
    size_t n = strlen(s);
    char file[FNSPEC_HANDLER_MAX + 8];

    if (fnspec_name_valid(s) == ML_OK && (n < 1 || n > FNSPEC_NAME_MAX || ml_uuid_valid(s) == ML_OK))
        abort();
    if (fnspec_is_ident(s, n) == ML_OK && fnspec_handler_valid("python3", s) == ML_OK)
        abort(); /* an identifier has no dot, a python3 handler has one */
    for (size_t i = 0; i < ML_ARRAY_LEN(runtimes); i++) {
        int valid = fnspec_handler_valid(runtimes[i], s) == ML_OK;
        int has_file = fnspec_handler_file(runtimes[i], s, file, sizeof(file)) == ML_OK;
        if (valid && (n == 0 || n > FNSPEC_HANDLER_MAX))
            abort();
        if (strcmp(runtimes[i], "provided") == 0 ? has_file : valid != has_file)
            abort();
    }
    if (fnspec_runtime_valid(s) == ML_OK && fnspec_handler_form(s) == NULL)
        abort();
    if (fnspec_dest_url_valid(s) == ML_OK && (n > FNSPEC_URL_MAX || strchr(s, ' ')))
        abort();
}

static void check_json(const char *data, size_t size)
{
    cJSON *doc = cJSON_ParseWithLength(data, size);
    char err[512];

    if (!doc)
        return;
    if (fnspec_env_valid(doc, err, sizeof(err)) == ML_OK && !cJSON_IsObject(doc))
        abort();
    if (fnspec_rate_limit_valid(doc) == ML_OK && !cJSON_IsObject(doc))
        abort();
    for (int id = 0; id < FNSPEC_FIELD_COUNT; id++)
        (void)fnspec_field_check(fnspec_field_get((fnspec_field_id)id), doc);
    if (cJSON_IsObject(doc)) {
        int strict = fnspec_config_check(doc, true, err, sizeof(err));
        int lax = fnspec_config_check(doc, false, err, sizeof(err));
        if (strict == ML_OK && lax != ML_OK) /* strict accepts less */
            abort();
    }
    cJSON_Delete(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    check_decoder((const char *)data, size);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_strings(s);
    free(s);
    check_json((const char *)data, size);
    return 0;
}
