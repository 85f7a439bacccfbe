/* validate.c — function definition validation (limits from API.md). */
#include "validate.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ml.h"

static int is_ident(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    }
    return 1;
}

int validate_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n < 1 || n > 64 || !isalnum((unsigned char)name[0]))
        return ML_ERR;
    for (size_t i = 1; i < n; i++) {
        if (!(isalnum((unsigned char)name[i]) || name[i] == '_' || name[i] == '-'))
            return ML_ERR;
    }
    /* {fn} in a path is an id or a name, so a name must never parse as an id */
    return ml_uuid_valid(name) == ML_OK ? ML_ERR : ML_OK;
}

/* python3 module.function, nodejs file.export, provided: a file name (default bootstrap). */
static int valid_handler(const char *runtime, const char *h)
{
    const char *dot = strrchr(h, '.');
    size_t n = strlen(h);

    if (n == 0 || n > 128)
        return 0;
    if (strcmp(runtime, "provided") == 0) {
        for (size_t i = 0; i < n; i++) {
            if (!(isalnum((unsigned char)h[i]) || h[i] == '_' || h[i] == '-' || h[i] == '.'))
                return 0;
        }
        return h[0] != '.';
    }
    if (!dot || dot != strchr(h, '.') || !is_ident(dot + 1, strlen(dot + 1)))
        return 0;
    if (strcmp(runtime, "python3") == 0)
        return is_ident(h, (size_t)(dot - h));
    for (const char *p = h; p < dot; p++) { /* nodejs file names may contain '-' */
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-'))
            return 0;
    }
    return dot > h;
}

int validate_webhook_url(const char *url, char *err, size_t errlen)
{
    size_t n = url ? strlen(url) : 0;
    const char *host;

    if (n == 0)
        return ML_OK;
    if (n > 2048 || !(strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)) {
        ml_snprintf(err, errlen, "webhook_url must be an http:// or https:// URL of at most 2048 characters");
        return ML_ERR;
    }
    host = strstr(url, "://") + 3;
    if (!*host || *host == '/' || strpbrk(url, " \t\r\n\"<>\\^`{|}")) {
        ml_snprintf(err, errlen, "webhook_url is not a valid URL");
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

/* Integer field in [min,max], or def when absent. */
static int field_int(const cJSON *fields, const char *key, int64_t min, int64_t max, int64_t def,
                     int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(fields, key);

    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return ML_OK;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d != floor(d) || d < (double)min || d > (double)max)
            return ML_ERR;
        *out = (int64_t)d;
        return ML_OK;
    }
    return cJSON_IsString(v) ? ml_parse_int64(v->valuestring, min, max, out) : ML_ERR;
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
    else if (cJSON_IsString(v))
        o = cJSON_Parse(v->valuestring);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        *bad = 1;
        return NULL;
    }
    return o;
}

static int check_env(const cJSON *env, char *err, size_t errlen)
{
    size_t total = 0;
    const cJSON *e;

    cJSON_ArrayForEach(e, env)
    {
        if (!is_ident(e->string, strlen(e->string)) || !cJSON_IsString(e)) {
            ml_snprintf(err, errlen, "env must map variable names ([A-Za-z_][A-Za-z0-9_]*) to strings");
            return ML_ERR;
        }
        total += strlen(e->string) + strlen(e->valuestring);
    }
    if (total > VALIDATE_MAX_ENV_BYTES) {
        ml_snprintf(err, errlen, "env is %zu bytes; at most %d bytes of names and values are allowed",
                    total, VALIDATE_MAX_ENV_BYTES);
        return ML_ERR;
    }
    return ML_OK;
}

static int check_rate_limit(const cJSON *rl, char *err, size_t errlen)
{
    const cJSON *rps = cJSON_GetObjectItemCaseSensitive(rl, "rps");
    const cJSON *burst = cJSON_GetObjectItemCaseSensitive(rl, "burst");

    if (!cJSON_IsNumber(rps) || rps->valuedouble <= 0 || rps->valuedouble > 100000 ||
        (burst && (!cJSON_IsNumber(burst) || burst->valuedouble < 1 || burst->valuedouble > 100000 ||
                   burst->valuedouble != floor(burst->valuedouble)))) {
        ml_snprintf(err, errlen, "rate_limit must be {\"rps\": 0 < N <= 100000, \"burst\": integer 1..100000 (optional)}");
        return ML_ERR;
    }
    return ML_OK;
}

#define FAIL(field, ...)                                                                       \
    do {                                                                                       \
        *err_field = (field);                                                                  \
        ml_snprintf(err, errlen, __VA_ARGS__);                                                 \
        goto fail;                                                                             \
    } while (0)

int validate_function(const cJSON *fields, fn_spec *spec, const char **err_field, char *err,
                      size_t errlen)
{
    const char *name = field_str(fields, "name"), *runtime = field_str(fields, "runtime");
    const char *handler = field_str(fields, "handler"), *url = field_str(fields, "webhook_url");
    int64_t memory, timeout, concurrency;
    cJSON *env = NULL, *rl = NULL;
    int bad;

    memset(spec, 0, sizeof(*spec));
    if (!name || validate_name(name) != ML_OK)
        FAIL("name", "name must match ^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$ and not look like a UUID");
    if (!runtime || (strcmp(runtime, "python3") && strcmp(runtime, "nodejs") && strcmp(runtime, "provided")))
        FAIL("runtime", "runtime must be one of python3, nodejs, provided");
    if (!handler && strcmp(runtime, "provided") == 0)
        handler = "bootstrap";
    if (!handler || !valid_handler(runtime, handler))
        FAIL("handler", "handler for %s must look like %s", runtime,
             strcmp(runtime, "python3") == 0  ? "module.function (module.py at the ZIP root)"
             : strcmp(runtime, "nodejs") == 0 ? "file.export (file.js at the ZIP root)"
                                              : "bootstrap (an executable at the ZIP root)");
    if (field_int(fields, "memory_mb", 64, 4096, 128, &memory) != ML_OK)
        FAIL("memory_mb", "memory_mb must be an integer from 64 to 4096");
    if (field_int(fields, "timeout_s", 1, 900, 30, &timeout) != ML_OK)
        FAIL("timeout_s", "timeout_s must be an integer from 1 to 900");
    if (field_int(fields, "concurrency", 1, 1000, 10, &concurrency) != ML_OK)
        FAIL("concurrency", "concurrency must be an integer from 1 to 1000");
    env = field_object(fields, "env", &bad);
    if (bad)
        FAIL("env", "env must be a JSON object of strings");
    if (env && check_env(env, err, errlen) != ML_OK) {
        *err_field = "env";
        goto fail;
    }
    rl = field_object(fields, "rate_limit", &bad);
    if (bad || (rl && check_rate_limit(rl, err, errlen) != ML_OK)) {
        if (bad)
            ml_snprintf(err, errlen, "rate_limit must be a JSON object {\"rps\":N,\"burst\":N}");
        *err_field = "rate_limit";
        goto fail;
    }
    if (validate_webhook_url(url, err, errlen) != ML_OK) {
        *err_field = "webhook_url";
        goto fail;
    }
    ml_strlcpy(spec->name, name, sizeof(spec->name));
    ml_strlcpy(spec->runtime, runtime, sizeof(spec->runtime));
    ml_strlcpy(spec->handler, handler, sizeof(spec->handler));
    ml_strlcpy(spec->webhook_url, url ? url : "", sizeof(spec->webhook_url));
    spec->config = cJSON_CreateObject();
    cJSON_AddNumberToObject(spec->config, "memory_mb", (double)memory);
    cJSON_AddNumberToObject(spec->config, "timeout_s", (double)timeout);
    cJSON_AddNumberToObject(spec->config, "concurrency", (double)concurrency);
    cJSON_AddItemToObject(spec->config, "env", env ? env : cJSON_CreateObject());
    if (rl)
        cJSON_AddItemToObject(spec->config, "rate_limit", rl);
    return ML_OK;
fail:
    cJSON_Delete(env);
    cJSON_Delete(rl);
    return ML_ERR;
}

void validate_free(fn_spec *spec)
{
    cJSON_Delete(spec->config);
    spec->config = NULL;
}
