/* fnspec.c — the function contract: validators, the field table, build.status codec. */
#include "fnspec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ml.h"

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_alnum(char c)
{
    return is_alpha(c) || (c >= '0' && c <= '9');
}

int fnspec_is_ident(const char *s, size_t n)
{
    if (!s || n == 0 || !(is_alpha(s[0]) || s[0] == '_'))
        return ML_ERR;
    for (size_t i = 1; i < n; i++) {
        if (!(is_alnum(s[i]) || s[i] == '_'))
            return ML_ERR;
    }
    return ML_OK;
}

int fnspec_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n < 1 || n > FNSPEC_NAME_MAX || !is_alnum(name[0]))
        return ML_ERR;
    for (size_t i = 1; i < n; i++) {
        if (!(is_alnum(name[i]) || name[i] == '_' || name[i] == '-'))
            return ML_ERR;
    }
    return ml_uuid_valid(name) == ML_OK ? ML_ERR : ML_OK;
}

int fnspec_ns_valid(const char *ns)
{
    size_t n = ns ? strlen(ns) : 0;

    if (n < 1 || n > FNSPEC_NS_MAX)
        return ML_ERR;
    for (size_t i = 0; i < n; i++) {
        bool edge = i == 0 || i == n - 1;
        char c = ns[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && !edge)))
            return ML_ERR;
    }
    return ML_OK;
}

/* The accepted names: AWS's identifiers and the short aliases, each with its family. */
static const struct {
    const char *name, *family;
} runtime_names[] = {
    { "python3", "python3" },       { "python3.9", "python3" },   { "python3.10", "python3" },
    { "python3.11", "python3" },    { "python3.12", "python3" },  { "python3.13", "python3" },
    { "nodejs", "nodejs" },         { "nodejs18.x", "nodejs" },   { "nodejs20.x", "nodejs" },
    { "nodejs22.x", "nodejs" },     { "provided", "provided" },   { "provided.al2", "provided" },
    { "provided.al2023", "provided" },
};

const char *fnspec_runtime_family(const char *runtime)
{
    for (size_t i = 0; runtime && i < ML_ARRAY_LEN(runtime_names); i++)
        if (!strcmp(runtime, runtime_names[i].name))
            return runtime_names[i].family;
    return NULL;
}

const char *fnspec_runtime_name(size_t i)
{
    return i < ML_ARRAY_LEN(runtime_names) ? runtime_names[i].name : NULL;
}

int fnspec_runtime_valid(const char *runtime)
{
    return fnspec_runtime_family(runtime) ? ML_OK : ML_ERR;
}

const char *fnspec_default_handler(const char *runtime)
{
    const char *fam = fnspec_runtime_family(runtime);

    return fam && !strcmp(fam, "provided") ? "bootstrap" : NULL;
}

int fnspec_handler_valid(const char *runtime, const char *h)
{
    const char *dot, *fam = fnspec_runtime_family(runtime);
    size_t n;

    if (!h || !fam)
        return ML_ERR;
    n = strlen(h);
    if (n == 0 || n > FNSPEC_HANDLER_MAX)
        return ML_ERR;
    if (!strcmp(fam, "provided")) {
        for (size_t i = 0; i < n; i++) {
            if (!(is_alnum(h[i]) || h[i] == '_' || h[i] == '-' || h[i] == '.'))
                return ML_ERR;
        }
        return h[0] != '.' ? ML_OK : ML_ERR;
    }
    dot = strchr(h, '.');
    if (!dot || strchr(dot + 1, '.') || fnspec_is_ident(dot + 1, strlen(dot + 1)) != ML_OK)
        return ML_ERR;
    if (!strcmp(fam, "python3"))
        return fnspec_is_ident(h, (size_t)(dot - h));
    if (dot == h) /* nodejs: file names may contain '-' */
        return ML_ERR;
    for (const char *p = h; p < dot; p++) {
        if (!(is_alnum(*p) || *p == '_' || *p == '-'))
            return ML_ERR;
    }
    return ML_OK;
}

const char *fnspec_handler_form(const char *runtime)
{
    const char *fam = fnspec_runtime_family(runtime);

    if (fam && !strcmp(fam, "python3"))
        return "module.function (module.py at the ZIP root)";
    if (fam && !strcmp(fam, "nodejs"))
        return "file.export (file.js at the ZIP root)";
    return "bootstrap (an executable at the ZIP root)";
}

int fnspec_handler_file(const char *runtime, const char *handler, char *out, size_t outlen)
{
    const char *ext, *fam = fnspec_runtime_family(runtime);

    if (fnspec_handler_valid(runtime, handler) != ML_OK || !strcmp(fam, "provided"))
        return ML_ERR;
    ext = !strcmp(fam, "python3") ? ".py" : ".js";
    return ml_snprintf(out, outlen, "%.*s%s", (int)(strchr(handler, '.') - handler), handler, ext);
}

int fnspec_env_valid(const cJSON *env, char *err, size_t errlen)
{
    size_t total = 0;
    const cJSON *e;

    if (!cJSON_IsObject(env)) {
        if (err)
            ml_snprintf_trunc(err, errlen, "env must be a JSON object of strings");
        return ML_ERR;
    }
    cJSON_ArrayForEach(e, env)
    {
        if (fnspec_is_ident(e->string, strlen(e->string)) != ML_OK || !cJSON_IsString(e)) {
            if (err)
                ml_snprintf_trunc(err, errlen, "env must map variable names ([A-Za-z_][A-Za-z0-9_]*) to strings");
            return ML_ERR;
        }
        total += strlen(e->string) + strlen(e->valuestring);
    }
    if (total > FNSPEC_ENV_BYTES_MAX) {
        if (err)
            ml_snprintf_trunc(err, errlen, "env is %zu bytes; at most %d bytes of names and values are allowed",
                              total, FNSPEC_ENV_BYTES_MAX);
        return ML_ERR;
    }
    return ML_OK;
}

static int int_in(const cJSON *v, int64_t min, int64_t max)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
           v->valuedouble >= (double)min && v->valuedouble <= (double)max;
}

int fnspec_rate_limit_valid(const cJSON *v)
{
    const cJSON *rps = cJSON_GetObjectItemCaseSensitive(v, "rps");
    const cJSON *burst = cJSON_GetObjectItemCaseSensitive(v, "burst");
    const cJSON *e;

    if (!cJSON_IsObject(v) || !cJSON_IsNumber(rps) || !(rps->valuedouble > 0) ||
        rps->valuedouble > FNSPEC_RPS_MAX || (burst && !int_in(burst, FNSPEC_BURST_MIN, FNSPEC_BURST_MAX)))
        return ML_ERR;
    cJSON_ArrayForEach(e, v)
    {
        if (strcmp(e->string, "rps") != 0 && strcmp(e->string, "burst") != 0)
            return ML_ERR;
    }
    return ML_OK;
}

int fnspec_dest_url_valid(const char *s)
{
    const char *host;

    if (!s || strlen(s) > FNSPEC_URL_MAX ||
        (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0))
        return ML_ERR;
    host = strstr(s, "://") + 3;
    if (*host == '\0' || *host == '/' || *host == '?' || *host == '#')
        return ML_ERR;
    for (; *s; s++) {
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return ML_ERR;
    }
    return ML_OK;
}

int fnspec_build_status_valid(const char *s)
{
    return s && (!strcmp(s, "queued") || !strcmp(s, "building") || !strcmp(s, "completed") ||
                 !strcmp(s, "failed"))
               ? ML_OK
               : ML_ERR;
}

/* ---- the field table ---------------------------------------------------------------- */

#define URL_RULE "must be null or an http:// or https:// URL of at most 2048 characters"

static const fnspec_field fields[FNSPEC_FIELD_COUNT] = {
    [FNSPEC_MEMORY_MB] = { "memory_mb", FNSPEC_KIND_INT, 64, 4096, 128, true, false,
                           "must be an integer from 64 to 4096" },
    [FNSPEC_TIMEOUT_S] = { "timeout_s", FNSPEC_KIND_INT, 1, 900, 30, true, false,
                           "must be an integer from 1 to 900" },
    [FNSPEC_ENV] = { "env", FNSPEC_KIND_ENV, 0, 0, 0, false, false,
                     "must be an object mapping variable names ([A-Za-z_][A-Za-z0-9_]*) to strings, at most 4096 bytes of names and values" },
    [FNSPEC_RATE_LIMIT] = { "rate_limit", FNSPEC_KIND_RATE, 0, 0, 0, false, true,
                            "must be null or {\"rps\": 0 < N <= 100000, \"burst\": integer 1..100000 (optional)}" },
    [FNSPEC_CONCURRENCY] = { "concurrency", FNSPEC_KIND_INT, 1, 1000, 10, true, true,
                             "must be null (no cap) or an integer from 1 to 1000" },
    [FNSPEC_MAX_RETRIES] = { "max_retries", FNSPEC_KIND_INT, 0, 2, 2, true, false,
                             "must be an integer from 0 to 2" },
    [FNSPEC_MAX_EVENT_AGE_S] = { "max_event_age_s", FNSPEC_KIND_INT, 60, 21600, 21600, true, false,
                                 "must be an integer from 60 to 21600" },
    [FNSPEC_ON_SUCCESS_URL] = { "on_success_url", FNSPEC_KIND_URL, 0, 0, 0, false, true, URL_RULE },
    [FNSPEC_ON_FAILURE_URL] = { "on_failure_url", FNSPEC_KIND_URL, 0, 0, 0, false, true, URL_RULE },
    [FNSPEC_NETWORK] = { "network", FNSPEC_KIND_BOOL, 0, 0, 0, true, false, "must be true or false" },
};

const fnspec_field *fnspec_field_get(fnspec_field_id id)
{
    return (unsigned)id < FNSPEC_FIELD_COUNT ? &fields[id] : NULL;
}

const fnspec_field *fnspec_field_find(const char *name)
{
    for (size_t i = 0; name && i < ML_ARRAY_LEN(fields); i++) {
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    }
    return NULL;
}

int fnspec_field_check(const fnspec_field *f, const cJSON *v)
{
    if (!f || !v)
        return ML_ERR;
    if (cJSON_IsNull(v))
        return f->nullable ? ML_OK : ML_ERR;
    switch (f->kind) {
    case FNSPEC_KIND_INT: return int_in(v, f->min, f->max) ? ML_OK : ML_ERR;
    case FNSPEC_KIND_ENV: return fnspec_env_valid(v, NULL, 0);
    case FNSPEC_KIND_RATE: return fnspec_rate_limit_valid(v);
    case FNSPEC_KIND_URL: return cJSON_IsString(v) ? fnspec_dest_url_valid(v->valuestring) : ML_ERR;
    case FNSPEC_KIND_BOOL: return cJSON_IsBool(v) ? ML_OK : ML_ERR;
    }
    return ML_ERR;
}

int fnspec_config_check(const cJSON *obj, bool strict, char *err, size_t errlen)
{
    const cJSON *e;

    if (!cJSON_IsObject(obj)) {
        ml_snprintf_trunc(err, errlen, "the configuration must be a JSON object");
        return ML_ERR;
    }
    cJSON_ArrayForEach(e, obj)
    {
        const fnspec_field *f = fnspec_field_find(e->string);

        if (!f && strict) {
            ml_snprintf_trunc(err, errlen,
                              "unknown field '%s'; PATCH accepts memory_mb, timeout_s, env, rate_limit, "
                              "concurrency, max_retries, max_event_age_s, on_success_url, on_failure_url, network, "
                              "runtime, handler, description, tags",
                              e->string);
            return ML_ERR;
        }
        if (f && fnspec_field_check(f, e) != ML_OK) {
            ml_snprintf_trunc(err, errlen, "%s %s", f->name, f->rule);
            return ML_ERR;
        }
    }
    return ML_OK;
}

/* Characters (UTF-8 code points) of s: the limits are in characters, as AWS's and as
 * Postgres' length() counts them. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int fnspec_description_valid(const cJSON *d)
{
    return cJSON_IsString(d) && utf8_chars(d->valuestring) <= FNSPEC_DESCRIPTION_MAX ? ML_OK : ML_ERR;
}

int fnspec_tags_check(const cJSON *tags, const cJSON *cur, bool merge, char *err, size_t errlen)
{
    const cJSON *t, *c;
    size_t total = 0;

    if (!cJSON_IsObject(tags)) {
        ml_snprintf_trunc(err, errlen, "tags must be an object of strings%s", merge ? " (null removes a tag)" : "");
        return ML_ERR;
    }
    cJSON_ArrayForEach(t, tags) {
        size_t kn = utf8_chars(t->string);
        if (kn < 1 || kn > FNSPEC_TAG_KEY_MAX || !(cJSON_IsString(t) || (merge && cJSON_IsNull(t))) ||
            (cJSON_IsString(t) && utf8_chars(t->valuestring) > FNSPEC_TAG_VALUE_MAX)) {
            ml_snprintf_trunc(err, errlen, "tags: key 1..%d and value a string of at most %d characters"
                              " (\"%.64s\")", FNSPEC_TAG_KEY_MAX, FNSPEC_TAG_VALUE_MAX, t->string);
            return ML_ERR;
        }
        total += cJSON_IsString(t) && !cJSON_HasObjectItem(cur, t->string);
    }
    cJSON_ArrayForEach(c, cur) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(tags, c->string);
        total += !(n && cJSON_IsNull(n));
    }
    if (total > FNSPEC_TAGS_MAX) {
        ml_snprintf_trunc(err, errlen, "tags: at most %d per function (this would make %zu)", FNSPEC_TAGS_MAX, total);
        return ML_ERR;
    }
    return ML_OK;
}

static const char *const create_strings[] = { "name", "runtime", "handler", "webhook_url" };
static const fnspec_field_id create_rows[] = { FNSPEC_MEMORY_MB, FNSPEC_TIMEOUT_S, FNSPEC_ENV,
                                               FNSPEC_RATE_LIMIT, FNSPEC_CONCURRENCY };

/* One member of a create body; ML_ERR with err written. */
static int create_member(const cJSON *e, char *err, size_t errlen)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(create_strings); i++) {
        if (strcmp(e->string, create_strings[i]) != 0)
            continue;
        if (cJSON_IsString(e))
            return ML_OK;
        ml_snprintf_trunc(err, errlen, "%s must be a string", e->string);
        return ML_ERR;
    }
    for (size_t i = 0; i < ML_ARRAY_LEN(create_rows); i++) {
        const fnspec_field *f = fnspec_field_get(create_rows[i]);
        if (strcmp(e->string, f->name) != 0)
            continue;
        if (fnspec_field_check(f, e) == ML_OK)
            return ML_OK;
        ml_snprintf_trunc(err, errlen, "%s %s", f->name, f->rule);
        return ML_ERR;
    }
    if (strcmp(e->string, "description") == 0) {
        if (fnspec_description_valid(e) == ML_OK)
            return ML_OK;
        ml_snprintf_trunc(err, errlen, "description must be a string of at most %d characters", FNSPEC_DESCRIPTION_MAX);
        return ML_ERR;
    }
    if (strcmp(e->string, "tags") == 0)
        return fnspec_tags_check(e, NULL, false, err, errlen);
    ml_snprintf_trunc(err, errlen, "unknown field '%s'; POST /functions accepts " FNSPEC_CREATE_FIELDS
                      " (set the rest with PATCH)", e->string);
    return ML_ERR;
}

int fnspec_create_check(const cJSON *obj, const char **field, char *err, size_t errlen)
{
    const cJSON *e;

    *field = NULL;
    if (!cJSON_IsObject(obj)) {
        ml_snprintf_trunc(err, errlen, "the request body must be a JSON object");
        return ML_ERR;
    }
    cJSON_ArrayForEach(e, obj)
    {
        if (strcmp(e->string, "code_base64") == 0)
            continue; /* the package: its own checks */
        if (create_member(e, err, errlen) != ML_OK) {
            *field = e->string;
            return ML_ERR;
        }
    }
    return ML_OK;
}

/* ---- build.status ------------------------------------------------------------------- */

/* Exact integers a double holds: what a JSON number can carry without loss. */
#define JSON_INT_MAX 9007199254740992.0

/* An integer member written in full: cJSON's own number printing keeps only about 15
 * significant digits (it rounds integers above 2^49 or so). */
static int add_int(cJSON *o, const char *k, int64_t v)
{
    char num[24];

    if (ml_snprintf(num, sizeof(num), "%lld", (long long)v) != ML_OK)
        return ML_ERR;
    return cJSON_AddRawToObject(o, k, num) ? ML_OK : ML_ERR;
}

/* A copy of v as o's member k; nothing when v is NULL. */
static int add_dup(cJSON *o, const char *k, const cJSON *v)
{
    cJSON *c;

    if (!v)
        return ML_OK;
    if (!(c = cJSON_Duplicate(v, 1)) || !cJSON_AddItemToObject(o, k, c)) {
        cJSON_Delete(c);
        return ML_ERR;
    }
    return ML_OK;
}

int fnspec_build_event_encode(const fnspec_build_event *ev, char **out)
{
    cJSON *o = cJSON_CreateObject(), *fn = NULL, *art = NULL;
    int ok = 1;

    *out = NULL;
    if (!o)
        return ML_ERR;
    ok &= cJSON_AddStringToObject(o, "type", "build.status") != NULL;
    ok &= cJSON_AddStringToObject(o, "build_id", ev->build_id) != NULL;
    ok &= cJSON_AddStringToObject(o, "function_id", ev->function_id) != NULL;
    ok &= cJSON_AddStringToObject(o, "status", ev->status) != NULL;
    ok &= (ev->error ? cJSON_AddStringToObject(o, "error", ev->error) : cJSON_AddNullToObject(o, "error")) != NULL;
    ok &= cJSON_AddStringToObject(o, "timestamp", ev->timestamp) != NULL;
    ok &= (fn = cJSON_AddObjectToObject(o, "function")) != NULL;
    if (ok) {
        ok &= cJSON_AddStringToObject(fn, "namespace", ev->ns[0] ? ev->ns : FNSPEC_NS_DEFAULT) != NULL;
        ok &= cJSON_AddStringToObject(fn, "name", ev->name) != NULL;
        ok &= cJSON_AddStringToObject(fn, "runtime", ev->runtime) != NULL;
        ok &= cJSON_AddStringToObject(fn, "handler", ev->handler) != NULL;
        ok &= add_dup(fn, "config", ev->config) == ML_OK;
        ok &= add_dup(fn, "sealed", ev->sealed) == ML_OK;
    }
    if (!ev->has_artifact) {
        ok &= cJSON_AddNullToObject(o, "artifact") != NULL;
    } else if (ok && (art = cJSON_AddObjectToObject(o, "artifact")) != NULL) {
        ok &= cJSON_AddStringToObject(art, "prefix", ev->artifact_prefix ? ev->artifact_prefix : "") != NULL;
        ok &= cJSON_AddStringToObject(art, "sha256", ev->artifact_sha256) != NULL;
        ok &= add_int(art, "size_bytes", ev->artifact_size) == ML_OK;
        ok &= add_int(art, "files", ev->artifact_files) == ML_OK;
    } else {
        ok = 0;
    }
    if (ok)
        *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? ML_OK : ML_ERR;
}

static const char *obj_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int obj_int(const cJSON *o, const char *k, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > JSON_INT_MAX)
        return ML_ERR;
    *out = (int64_t)v->valuedouble;
    return ML_OK;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);

    if (d)
        memcpy(d, s, n);
    return d;
}

#define BAD(...)                                                                               \
    do {                                                                                       \
        ml_snprintf(err, errlen, __VA_ARGS__);                                                 \
        goto fail;                                                                             \
    } while (0)

/* function.sealed: env an object of "enc:v1:" strings, webhook_secret one (both optional). */
static bool sealed_valid(const cJSON *sealed)
{
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(sealed, "env"), *ws, *e;

    ws = cJSON_GetObjectItemCaseSensitive(sealed, "webhook_secret");
    if (ws && !(cJSON_IsString(ws) && strncmp(ws->valuestring, "enc:v1:", 7) == 0))
        return false;
    if (env && !cJSON_IsObject(env))
        return false;
    cJSON_ArrayForEach(e, env)
        if (!cJSON_IsString(e) || strncmp(e->valuestring, "enc:v1:", 7) != 0 ||
            fnspec_is_ident(e->string, strlen(e->string)) != ML_OK)
            return false;
    return true;
}

int fnspec_build_event_decode(const char *json, size_t len, fnspec_build_event *ev, char *err,
                              size_t errlen)
{
    cJSON *body = json ? cJSON_ParseWithLength(json, len) : NULL;
    const cJSON *fn, *art, *e, *config, *sealed;
    const char *s;

    memset(ev, 0, sizeof(*ev));
    if (!cJSON_IsObject(body))
        BAD("the body must be a JSON object");
    fn = cJSON_GetObjectItemCaseSensitive(body, "function");
    art = cJSON_GetObjectItemCaseSensitive(body, "artifact");
    e = cJSON_GetObjectItemCaseSensitive(body, "error");
    s = obj_str(body, "type");
    if (!s || strcmp(s, "build.status") != 0)
        BAD("type must be \"build.status\"");
    s = obj_str(body, "build_id");
    if (!s || ml_uuid_valid(s) != ML_OK)
        BAD("build_id must be a UUID");
    ml_strlcpy(ev->build_id, s, sizeof(ev->build_id));
    s = obj_str(body, "function_id");
    if (!s || ml_uuid_valid(s) != ML_OK)
        BAD("function_id must be a UUID");
    ml_strlcpy(ev->function_id, s, sizeof(ev->function_id));
    s = obj_str(body, "status");
    if (fnspec_build_status_valid(s) != ML_OK)
        BAD("status must be queued, building, completed or failed");
    ml_strlcpy(ev->status, s, sizeof(ev->status));
    s = obj_str(body, "timestamp");
    if (!s || ml_strlcpy(ev->timestamp, s, sizeof(ev->timestamp)) != ML_OK)
        BAD("timestamp is required (at most %zu characters)", sizeof(ev->timestamp) - 1);
    if (fnspec_name_valid(obj_str(fn, "name")) != ML_OK || !obj_str(fn, "runtime") || !obj_str(fn, "handler"))
        BAD("function must carry name, runtime and handler");
    if (fnspec_runtime_valid(obj_str(fn, "runtime")) != ML_OK ||
        fnspec_handler_valid(obj_str(fn, "runtime"), obj_str(fn, "handler")) != ML_OK)
        BAD("function runtime and handler must follow the contract");
    s = obj_str(fn, "namespace");
    if (s && fnspec_ns_valid(s) != ML_OK)
        BAD("function namespace must be a namespace name (docs/tenants.md)");
    ml_strlcpy(ev->ns, s ? s : FNSPEC_NS_DEFAULT, sizeof(ev->ns));
    ml_strlcpy(ev->name, obj_str(fn, "name"), sizeof(ev->name));
    ml_strlcpy(ev->runtime, obj_str(fn, "runtime"), sizeof(ev->runtime));
    ml_strlcpy(ev->handler, obj_str(fn, "handler"), sizeof(ev->handler));
    config = cJSON_GetObjectItemCaseSensitive(fn, "config");
    if (config && fnspec_config_check(config, false, err, errlen) != ML_OK)
        goto fail;
    if (config && !(ev->config = cJSON_Duplicate(config, 1)))
        BAD("out of memory");
    sealed = cJSON_GetObjectItemCaseSensitive(fn, "sealed");
    if (sealed && (!cJSON_IsObject(sealed) || !sealed_valid(sealed)))
        BAD("function.sealed must be an object of sealed values (env, webhook_secret)");
    if (sealed && !(ev->sealed = cJSON_Duplicate(sealed, 1)))
        BAD("out of memory");
    if (cJSON_IsString(e) && !(ev->error = dup_str(e->valuestring)))
        BAD("out of memory");
    if (strcmp(ev->status, "completed") == 0) {
        const char *prefix = obj_str(art, "prefix"), *sha = obj_str(art, "sha256");
        if (!prefix || !sha || ml_strlcpy(ev->artifact_sha256, sha, sizeof(ev->artifact_sha256)) != ML_OK ||
            obj_int(art, "size_bytes", &ev->artifact_size) != ML_OK ||
            obj_int(art, "files", &ev->artifact_files) != ML_OK)
            BAD("a completed build must carry artifact prefix, sha256, size_bytes and files");
        if (!(ev->artifact_prefix = dup_str(prefix)))
            BAD("out of memory");
        ev->has_artifact = true;
    }
    cJSON_Delete(body);
    return ML_OK;
fail:
    cJSON_Delete(body);
    fnspec_build_event_free(ev);
    return ML_ERR;
}

void fnspec_build_event_free(fnspec_build_event *ev)
{
    if (!ev)
        return;
    free(ev->error);
    free(ev->artifact_prefix);
    cJSON_Delete(ev->config);
    cJSON_Delete(ev->sealed);
    ev->sealed = NULL;
    ev->error = NULL;
    ev->artifact_prefix = NULL;
    ev->config = NULL;
}
