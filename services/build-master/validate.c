/* validate.c — function definition validation (limits from API.md). */
#include "validate.h"

#include <stdlib.h>
#include <string.h>

#include "fnspec.h"
#include "jsoncheck.h"
#include "ml.h"

int validate_webhook_url(const char *url, char *err, size_t errlen)
{
    size_t n = url ? strlen(url) : 0;
    const char *host;

    if (n == 0)
        return ML_OK;
    if (n > 2048 || !(strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)) {
        ml_snprintf_trunc(err, errlen, "webhook_url must be an http:// or https:// URL of at most 2048 characters");
        return ML_ERR;
    }
    host = strstr(url, "://") + 3;
    if (!*host || *host == '/' || strpbrk(url, " \t\r\n\"<>\\^`{|}")) {
        ml_snprintf_trunc(err, errlen, "webhook_url is not a valid URL");
        return ML_ERR;
    }
    return ML_OK;
}

/* A field that is a string (from a form) or already of the wanted JSON type. */
static const char *field_str(const cJSON *fields, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(fields, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The table's integer field f: in bounds, or its default when absent (or null when the
 * field is not nullable); *is_null set when null is the value (a nullable field). */
static int field_int(const cJSON *fields, const fnspec_field *f, int64_t *out, int *is_null)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(fields, f->name);

    *is_null = 0;
    if (v && cJSON_IsNull(v) && f->nullable) {
        *is_null = 1;
        return ML_OK;
    }
    if (!v || cJSON_IsNull(v)) {
        *out = f->def;
        return ML_OK;
    }
    if (cJSON_IsNumber(v)) {
        if (fnspec_field_check(f, v) != ML_OK)
            return ML_ERR;
        *out = (int64_t)v->valuedouble;
        return ML_OK;
    }
    return cJSON_IsString(v) ? ml_parse_int64(v->valuestring, f->min, f->max, out) : ML_ERR;
}

/* Object field, given as an object or as a JSON string (form). NULL when absent;
 * *bad set when present but not an object. Caller deletes the result. */
static cJSON *field_object(const cJSON *fields, const char *key, int *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(fields, key);
    cJSON *o = NULL;

    *bad = 0;
    if (!v || cJSON_IsNull(v))
        return NULL;
    if (cJSON_IsObject(v))
        o = cJSON_Duplicate(v, 1);
    else if (cJSON_IsString(v)) /* a form field: as strict as a JSON body */
        o = jsoncheck_parse(v->valuestring, strlen(v->valuestring), NULL);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        *bad = 1;
        return NULL;
    }
    return o;
}

#define FAIL(field, ...)                                                                       \
    do {                                                                                       \
        *err_field = (field);                                                                  \
        ml_snprintf(err, errlen, __VA_ARGS__);                                                 \
        goto fail;                                                                             \
    } while (0)

/* description and tags (a form gives tags as JSON text), checked as fnspec does; *out: an
 * object holding those given (NULL: none), the caller's to delete. */
static int record_fields(const cJSON *fields, cJSON **out, const char **err_field, char *err,
                         size_t errlen)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(fields, "description");
    cJSON *tags;
    int bad;

    *out = NULL;
    if (d && fnspec_description_valid(d) != ML_OK) {
        *err_field = "description";
        ml_snprintf_trunc(err, errlen, "description must be a string of at most %d characters",
                          FNSPEC_DESCRIPTION_MAX);
        return ML_ERR;
    }
    tags = field_object(fields, "tags", &bad);
    if (bad || (tags && fnspec_tags_check(tags, NULL, false, err, errlen) != ML_OK)) {
        if (bad)
            ml_snprintf_trunc(err, errlen, "tags must be an object of strings");
        *err_field = "tags";
        cJSON_Delete(tags);
        return ML_ERR;
    }
    if ((d || tags) && !(*out = cJSON_CreateObject())) {
        cJSON_Delete(tags);
        *err_field = "tags";
        ml_snprintf_trunc(err, errlen, "out of memory");
        return ML_ERR;
    }
    if (d)
        cJSON_AddStringToObject(*out, "description", d->valuestring);
    if (tags)
        cJSON_AddItemToObject(*out, "tags", tags);
    return ML_OK;
}

/* The integer fields of POST /functions, in the order they are checked. */
static const fnspec_field_id int_fields[] = { FNSPEC_MEMORY_MB, FNSPEC_TIMEOUT_S, FNSPEC_CONCURRENCY };

int validate_function(const cJSON *fields, bool form, fn_spec *spec, const char **err_field,
                      char *err, size_t errlen)
{
    const char *name = field_str(fields, "name"), *runtime = field_str(fields, "runtime");
    const char *handler = field_str(fields, "handler"), *url = field_str(fields, "webhook_url");
    int64_t ints[ML_ARRAY_LEN(int_fields)];
    int nulls[ML_ARRAY_LEN(int_fields)];
    cJSON *env = NULL, *rl = NULL, *rec = NULL;
    int bad;

    memset(spec, 0, sizeof(*spec));
    if (!form && fnspec_create_check(fields, err_field, err, errlen) != ML_OK)
        return ML_ERR;
    if (fnspec_name_valid(name) != ML_OK)
        FAIL("name", FNSPEC_NAME_RULE);
    if (fnspec_runtime_valid(runtime) != ML_OK)
        FAIL("runtime", FNSPEC_RUNTIME_RULE);
    if (!handler)
        handler = fnspec_default_handler(runtime);
    if (fnspec_handler_valid(runtime, handler) != ML_OK)
        FAIL("handler", "handler for %s must look like %s", runtime, fnspec_handler_form(runtime));
    for (size_t i = 0; i < ML_ARRAY_LEN(int_fields); i++) {
        const fnspec_field *f = fnspec_field_get(int_fields[i]);
        if (field_int(fields, f, &ints[i], &nulls[i]) != ML_OK)
            FAIL(f->name, "%s %s", f->name, f->rule);
    }
    env = field_object(fields, "env", &bad);
    if (bad)
        FAIL("env", "env must be a JSON object of strings");
    if (env && fnspec_env_valid(env, err, errlen) != ML_OK) {
        *err_field = "env";
        goto fail;
    }
    rl = field_object(fields, "rate_limit", &bad);
    if (bad || (rl && fnspec_rate_limit_valid(rl) != ML_OK)) {
        const fnspec_field *f = fnspec_field_get(FNSPEC_RATE_LIMIT);
        FAIL(f->name, "%s %s", f->name, f->rule);
    }
    if (validate_webhook_url(url, err, errlen) != ML_OK) {
        *err_field = "webhook_url";
        goto fail;
    }
    if (record_fields(fields, &rec, err_field, err, errlen) != ML_OK)
        goto fail;
    ml_strlcpy(spec->name, name, sizeof(spec->name));
    ml_strlcpy(spec->runtime, runtime, sizeof(spec->runtime));
    ml_strlcpy(spec->handler, handler, sizeof(spec->handler));
    ml_strlcpy(spec->webhook_url, url ? url : "", sizeof(spec->webhook_url));
    spec->config = cJSON_CreateObject();
    for (size_t i = 0; i < ML_ARRAY_LEN(int_fields); i++) {
        const char *k = fnspec_field_get(int_fields[i])->name;
        if (nulls[i])
            cJSON_AddNullToObject(spec->config, k);
        else
            cJSON_AddNumberToObject(spec->config, k, (double)ints[i]);
    }
    cJSON_AddItemToObject(spec->config, "env", env ? env : cJSON_CreateObject());
    if (rl)
        cJSON_AddItemToObject(spec->config, "rate_limit", rl);
    for (cJSON *m = rec ? rec->child : NULL; m; m = rec->child) /* description, tags */
        cJSON_AddItemToObject(spec->config, m->string, cJSON_DetachItemViaPointer(rec, m));
    cJSON_Delete(rec);
    return ML_OK;
fail:
    cJSON_Delete(env);
    cJSON_Delete(rl);
    cJSON_Delete(rec);
    return ML_ERR;
}

void validate_free(fn_spec *spec)
{
    cJSON_Delete(spec->config);
    spec->config = NULL;
}

int validate_quota_functions(const char *value, int64_t *limit)
{
    if (!value) {
        *limit = -1;
        return ML_OK;
    }
    /* ml_parse_int64 takes a leading '-'; the range refuses it */
    return ml_parse_int64(value, 0, VALIDATE_QUOTA_MAX, limit);
}
