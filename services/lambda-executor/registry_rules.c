/* registry_rules.c — the registry's domain rules: function names and lookup keys, the cache
 * document (the same JSON in Redis and from Postgres) as an fn_info. The contract's rules
 * (names, fields) are fnspec's. No I/O. */
#include "registry-int.h"

#include "fnspec.h"
#include "log.h"
#include "runtimes.h"
#include "secretbox.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* {fn} → cache key: a UUID lower-cased (ids are compared as UUIDs, and are global), or
 * "ns/name" (names are unique per namespace). ML_ERR when fn can be neither (so it names
 * no function). */
int reg_fn_key(const char *ns, const char *fn, char key[FN_KEY_MAX], bool *by_id)
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
    return reg_name_key(ns ? ns : FNSPEC_NS_DEFAULT, fn, key);
}

int reg_name_key(const char *ns, const char *name, char key[FN_KEY_MAX])
{
    if (!ns || !name || fnspec_ns_valid(ns) != ML_OK || fnspec_name_valid(name) != ML_OK)
        return ML_ERR;
    return ml_snprintf(key, FN_KEY_MAX, "%s/%s", ns, name);
}

int reg_name_key_split(const char *key, char ns[FN_NS_MAX], char name[FN_NAME_MAX])
{
    const char *slash = key ? strchr(key, '/') : NULL;
    size_t n = slash ? (size_t)(slash - key) : 0;

    if (!slash || n == 0 || n >= FN_NS_MAX)
        return ML_ERR;
    memcpy(ns, key, n);
    ns[n] = '\0';
    if (ml_strlcpy(name, slash + 1, FN_NAME_MAX) != ML_OK || fnspec_ns_valid(ns) != ML_OK ||
        fnspec_name_valid(name) != ML_OK)
        return ML_ERR;
    return ML_OK;
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

/* Appends NAME=value to f's packed env. */
static int env_put(fn_info *f, const char *name, const char *value)
{
    size_t kn = strlen(name), vn = strlen(value);

    if (f->env_len + kn + vn + 2 > sizeof(f->env))
        return ML_ERR;
    memcpy(f->env + f->env_len, name, kn);
    f->env[f->env_len + kn] = '=';
    memcpy(f->env + f->env_len + kn + 1, value, vn + 1);
    f->env_len += kn + vn + 2;
    f->env_count++;
    return ML_OK;
}

/* The sandbox gets the plaintext: sealed values (docs/secrets.md) are opened here, the only
 * place they are; a value from before sealing is taken as it is. */
static int env_pack(const cJSON *env, fn_info *f)
{
    const cJSON *e;
    char err[256];

    f->env_count = 0;
    f->env_len = 0;
    if (!cJSON_IsObject(env))
        return ML_ERR;
    cJSON_ArrayForEach(e, env)
    {
        char *pt = NULL;
        int rc;

        if (!cJSON_IsString(e))
            return ML_ERR;
        if (secretbox_is_sealed(e->valuestring) &&
            secretbox_open(secretbox_global(), e->string, e->valuestring, &pt, err, sizeof(err)) != ML_OK) {
            ml_log_warn("registry: env %s of function %s: %s", e->string, f->id, err);
            return ML_ERR;
        }
        rc = env_put(f, e->string, pt ? pt : e->valuestring);
        if (pt) {
            explicit_bzero(pt, strlen(pt));
            free(pt);
        }
        if (rc != ML_OK)
            return ML_ERR;
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
        json_str(o, "namespace", f->ns, sizeof(f->ns), true) ||
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
    if (!f->ns[0]) /* an entry cached before namespaces: every such function is in default */
        ml_strlcpy(f->ns, FNSPEC_NS_DEFAULT, sizeof(f->ns));
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
    f->network = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "network"));   /* absent: off */
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

/* See registry-int.h; sealed values are opened only when revealing. */
int reg_env_render(cJSON *doc, bool reveal, char *err, size_t errlen)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "functions");
    cJSON *f;

    if (!cJSON_IsArray(list))
        return secretbox_env_render(secretbox_global(), cJSON_GetObjectItemCaseSensitive(doc, "env"),
                                    reveal, err, errlen);
    cJSON_ArrayForEach(f, list)
        if (secretbox_env_render(secretbox_global(), cJSON_GetObjectItemCaseSensitive(f, "env"), reveal,
                                 err, errlen) != ML_OK)
            return ML_ERR;
    return ML_OK;
}

/* The members of a PATCH body that are the record's own, not the fnspec field table's. */
static const char *const record_members[] = { "runtime", "handler", "description", "tags" };

bool reg_record_needs_current(const cJSON *body)
{
    return cJSON_HasObjectItem(body, "runtime") || cJSON_HasObjectItem(body, "handler") ||
           cJSON_HasObjectItem(body, "tags");
}

#define RECORD_FAIL(c, ...)                                                                    \
    do {                                                                                       \
        *code = (c);                                                                           \
        ml_snprintf_trunc(err, errlen, __VA_ARGS__);                                           \
        return ML_ERR;                                                                         \
    } while (0)

/* runtime and handler as the function will have them. */
static int runtime_check(const struct runtimes_table *rt, const cJSON *body, const cJSON *cur,
                         const char **code, char *err, size_t errlen)
{
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(body, "runtime");
    const cJSON *hv = cJSON_GetObjectItemCaseSensitive(body, "handler");
    const cJSON *crt = cJSON_GetObjectItemCaseSensitive(cur, "runtime");
    const cJSON *chd = cJSON_GetObjectItemCaseSensitive(cur, "handler");
    const char *runtime = rv ? cJSON_GetStringValue(rv) : cJSON_GetStringValue(crt);
    const char *handler = hv ? cJSON_GetStringValue(hv) : cJSON_GetStringValue(chd);
    char names[256];

    if (rv && (!runtime || fnspec_runtime_valid(runtime) != ML_OK))
        RECORD_FAIL("invalid_runtime", FNSPEC_RUNTIME_RULE);
    if (rv && rt && runtimes_available(rt, runtime) != ML_OK) {
        runtimes_names(rt, names, sizeof(names));
        RECORD_FAIL("invalid_runtime", "runtime %s is not available on this platform (available: %s)",
                    runtime, names);
    }
    if ((rv || hv) && (!handler || fnspec_handler_valid(runtime, handler) != ML_OK))
        RECORD_FAIL("invalid_field", "handler for %s must look like %s", runtime ? runtime : "?",
                    fnspec_handler_form(runtime));
    return ML_OK;
}

int reg_record_check(const struct runtimes_table *rt, const cJSON *body, const cJSON *cur,
                     const char **code, char *err, size_t errlen)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "description");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(body, "tags");

    if (d && fnspec_description_valid(d) != ML_OK)
        RECORD_FAIL("invalid_field", "description must be a string of at most %d characters", FNSPEC_DESCRIPTION_MAX);
    if (tags && fnspec_tags_check(tags, cJSON_GetObjectItemCaseSensitive(cur, "tags"), true, err, errlen) != ML_OK) {
        *code = "invalid_field";
        return ML_ERR;
    }
    return runtime_check(rt, body, cur, code, err, errlen);
}

cJSON *reg_config_part(const cJSON *body)
{
    cJSON *copy = cJSON_Duplicate(body, 1);

    for (size_t i = 0; copy && i < ML_ARRAY_LEN(record_members); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(copy, record_members[i]);
    return copy;
}

static void decorate_one(const struct runtimes_table *rt, cJSON *fn)
{
    const runtimes_entry *e = rt ? runtimes_find(rt, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(fn, "runtime"))) : NULL;

    cJSON_DeleteItemFromObjectCaseSensitive(fn, "runtime_version");
    if (e && e->available)
        cJSON_AddStringToObject(fn, "runtime_version", e->version);
    else
        cJSON_AddNullToObject(fn, "runtime_version");
}

void reg_doc_decorate(const struct runtimes_table *rt, cJSON *doc)
{
    static const char *const lists[] = { "functions", "versions" };
    cJSON *f;

    for (size_t i = 0; i < ML_ARRAY_LEN(lists); i++) {
        cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, lists[i]);

        if (cJSON_IsArray(list)) {
            cJSON_ArrayForEach(f, list)
                decorate_one(rt, f);
            return;
        }
    }
    if (cJSON_IsObject(doc))
        decorate_one(rt, doc);
}
