/* registry_rules.c — the registry's domain rules: function names and lookup keys, the cache
 * document (the same JSON in Redis and from Postgres) as an fn_info, and the fields a PATCH
 * or a build event's config may carry. No I/O. */
#include "registry-int.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Function names as the build side allows them. */
bool reg_name_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    }
    return true;
}

/* {fn} → cache key: a UUID lower-cased (ids are compared as UUIDs), or a name as is.
 * ML_ERR when fn can be neither (so it names no function). */
int reg_fn_key(const char *fn, char key[FN_NAME_MAX], bool *by_id)
{
    if (!fn)
        return ML_ERR;
    *by_id = ml_uuid_valid(fn) == ML_OK;
    if (*by_id) {
        for (size_t i = 0; i < 36; i++)
            key[i] = (char)tolower((unsigned char)fn[i]);
        key[36] = '\0';
        return ML_OK;
    }
    if (!reg_name_valid(fn))
        return ML_ERR;
    return ml_strlcpy(key, fn, FN_NAME_MAX);
}

static int json_str(const cJSON *o, const char *k, char *dst, size_t size, bool nullable)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    if (nullable && (!v || cJSON_IsNull(v))) {
        dst[0] = '\0';
        return ML_OK;
    }
    return cJSON_IsString(v) ? ml_strlcpy(dst, v->valuestring, size) : ML_ERR;
}

/* Integer field; a missing/null nullable one is 0. */
int reg_json_int(const cJSON *o, const char *k, int64_t *out, bool nullable)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    if (nullable && (!v || cJSON_IsNull(v))) {
        *out = 0;
        return ML_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 9e15)
        return ML_ERR;
    *out = (int64_t)v->valuedouble;
    return ML_OK;
}

static int env_pack(const cJSON *env, fn_info *f)
{
    const cJSON *e;

    f->env_count = 0;
    f->env_len = 0;
    if (!cJSON_IsObject(env))
        return ML_ERR;
    cJSON_ArrayForEach(e, env)
    {
        size_t kn = strlen(e->string), vn;

        if (!cJSON_IsString(e))
            return ML_ERR;
        vn = strlen(e->valuestring);
        if (f->env_len + kn + vn + 2 > sizeof(f->env))
            return ML_ERR;
        memcpy(f->env + f->env_len, e->string, kn);
        f->env[f->env_len + kn] = '=';
        memcpy(f->env + f->env_len + kn + 1, e->valuestring, vn + 1);
        f->env_len += kn + vn + 2;
        f->env_count++;
    }
    return ML_OK;
}

static int fn_from_json(const cJSON *o, fn_info *f)
{
    char state[16];
    int64_t version, size, mem, tmo, conc, retries, age, gen, burst = 0;
    const cJSON *rl = cJSON_GetObjectItemCaseSensitive(o, "rate_limit");
    const cJSON *rps = cJSON_GetObjectItemCaseSensitive(rl, "rps");

    if (json_str(o, "id", f->id, sizeof(f->id), false) || json_str(o, "name", f->name, sizeof(f->name), false) ||
        json_str(o, "state", state, sizeof(state), false) ||
        json_str(o, "runtime", f->runtime, sizeof(f->runtime), false) ||
        json_str(o, "handler", f->handler, sizeof(f->handler), false) ||
        json_str(o, "artifact_prefix", f->artifact_prefix, sizeof(f->artifact_prefix), true) ||
        json_str(o, "artifact_sha256", f->artifact_sha256, sizeof(f->artifact_sha256), true) ||
        json_str(o, "build_id", f->build_id, sizeof(f->build_id), true) ||
        json_str(o, "on_success_url", f->on_success_url, sizeof(f->on_success_url), true) ||
        json_str(o, "on_failure_url", f->on_failure_url, sizeof(f->on_failure_url), true) ||
        reg_json_int(o, "version", &version, true) || reg_json_int(o, "artifact_size", &size, true) ||
        reg_json_int(o, "memory_mb", &mem, false) || reg_json_int(o, "timeout_s", &tmo, false) ||
        reg_json_int(o, "concurrency", &conc, true) || reg_json_int(o, "max_retries", &retries, false) ||
        reg_json_int(o, "max_event_age_s", &age, false) || reg_json_int(o, "generation", &gen, false) ||
        (rl && !cJSON_IsNull(rl) && (!cJSON_IsNumber(rps) || reg_json_int(rl, "burst", &burst, true))) ||
        env_pack(cJSON_GetObjectItemCaseSensitive(o, "env"), f) != ML_OK)
        return ML_ERR;
    f->state = strcmp(state, "active") == 0 ? FN_ACTIVE : strcmp(state, "failed") == 0 ? FN_FAILED : FN_PENDING;
    f->version = (int)version;
    f->artifact_size = size;
    f->memory_mb = (int)mem;
    f->timeout_s = (int)tmo;
    f->concurrency = (int)conc;
    f->rate_rps = cJSON_IsNumber(rps) ? rps->valuedouble : 0;
    f->rate_burst = (int)burst;
    f->max_retries = (int)retries;
    f->max_event_age_s = (int)age;
    f->generation = gen;
    return ML_OK;
}

/* Parses cache JSON text. ML_OK, REGISTRY_NOT_FOUND for a deletion tombstone,
 * REGISTRY_ABSENT for an absence marker, ML_ERR if malformed. */
int reg_fn_parse(const char *text, size_t len, fn_info *f)
{
    cJSON *o = cJSON_ParseWithLength(text, len);
    int rc = ML_ERR;

    if (cJSON_IsObject(o))
        rc = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "deleted"))  ? REGISTRY_NOT_FOUND
             : cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "absent")) ? REGISTRY_ABSENT
                                                                           : fn_from_json(o, f);
    cJSON_Delete(o);
    return rc;
}

typedef enum { FIELD_INT, FIELD_ENV, FIELD_RATE, FIELD_URL } field_kind;

typedef struct field_rule {
    const char *name;
    field_kind kind;
    int64_t min, max;
    bool nullable;
    const char *rule; /* the message's "must ..." */
} field_rule;

static const field_rule patch_rules[] = {
    { "memory_mb", FIELD_INT, 64, 4096, false, "must be an integer from 64 to 4096" },
    { "timeout_s", FIELD_INT, 1, 900, false, "must be an integer from 1 to 900" },
    { "env", FIELD_ENV, 0, 0, false,
      "must be an object mapping variable names ([A-Za-z_][A-Za-z0-9_]*) to strings, at most 4096 bytes of names and values" },
    { "rate_limit", FIELD_RATE, 0, 0, true,
      "must be null or {\"rps\": 0 < N <= 100000, \"burst\": integer 1..100000 (optional)}" },
    { "concurrency", FIELD_INT, 1, 1000, true, "must be null (no cap) or an integer from 1 to 1000" },
    { "max_retries", FIELD_INT, 0, 2, false, "must be an integer from 0 to 2" },
    { "max_event_age_s", FIELD_INT, 60, 21600, false, "must be an integer from 60 to 21600" },
    { "on_success_url", FIELD_URL, 0, 0, true, "must be null or an http:// or https:// URL of at most 2048 characters" },
    { "on_failure_url", FIELD_URL, 0, 0, true, "must be null or an http:// or https:// URL of at most 2048 characters" },
};

static bool is_ident(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_'))
        return false;
    for (s++; *s; s++) {
        if (!isalnum((unsigned char)*s) && *s != '_')
            return false;
    }
    return true;
}

static bool int_in(const cJSON *v, int64_t min, int64_t max)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= (double)min &&
           v->valuedouble <= (double)max;
}

static bool env_ok(const cJSON *v)
{
    size_t total = 0;
    const cJSON *e;

    if (!cJSON_IsObject(v))
        return false;
    cJSON_ArrayForEach(e, v)
    {
        if (!is_ident(e->string) || !cJSON_IsString(e))
            return false;
        total += strlen(e->string) + strlen(e->valuestring);
    }
    return total <= FN_ENV_BYTES_MAX;
}

static bool rate_ok(const cJSON *v)
{
    const cJSON *rps = cJSON_GetObjectItemCaseSensitive(v, "rps");
    const cJSON *burst = cJSON_GetObjectItemCaseSensitive(v, "burst");
    const cJSON *e;

    if (!cJSON_IsObject(v) || !cJSON_IsNumber(rps) || !(rps->valuedouble > 0) || rps->valuedouble > 100000 ||
        (burst && !int_in(burst, 1, 100000)))
        return false;
    cJSON_ArrayForEach(e, v)
    {
        if (strcmp(e->string, "rps") != 0 && strcmp(e->string, "burst") != 0)
            return false;
    }
    return true;
}

static bool url_ok(const cJSON *v)
{
    const char *s, *host;
    size_t n;

    if (!cJSON_IsString(v))
        return false;
    s = v->valuestring;
    n = strlen(s);
    if (n > URL_MAX || (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0))
        return false;
    host = strstr(s, "://") + 3;
    if (*host == '\0' || *host == '/' || *host == '?' || *host == '#')
        return false;
    for (; *s; s++) {
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return false;
    }
    return true;
}

static bool field_ok(const field_rule *f, const cJSON *v)
{
    if (cJSON_IsNull(v))
        return f->nullable;
    switch (f->kind) {
    case FIELD_INT: return int_in(v, f->min, f->max);
    case FIELD_ENV: return env_ok(v);
    case FIELD_RATE: return rate_ok(v);
    case FIELD_URL: return url_ok(v);
    }
    return false;
}

static const field_rule *rule_for(const char *name)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(patch_rules); i++) {
        if (strcmp(patch_rules[i].name, name) == 0)
            return &patch_rules[i];
    }
    return NULL;
}

/* Checks every member of obj against the rules; unknown members are an error when strict,
 * skipped otherwise. ML_ERR with a message naming the field. */
int reg_fields_check(const cJSON *obj, bool strict, char *err, size_t errlen)
{
    const cJSON *e;

    cJSON_ArrayForEach(e, obj)
    {
        const field_rule *f = rule_for(e->string);

        if (!f && strict) {
            ml_snprintf(err, errlen,
                        "unknown field '%s'; PATCH accepts memory_mb, timeout_s, env, rate_limit, "
                        "concurrency, max_retries, max_event_age_s, on_success_url, on_failure_url",
                        e->string);
            return ML_ERR;
        }
        if (f && !field_ok(f, e)) {
            ml_snprintf(err, errlen, "%s %s", f->name, f->rule);
            return ML_ERR;
        }
    }
    return ML_OK;
}
