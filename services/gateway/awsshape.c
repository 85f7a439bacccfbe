/* awsshape.c — native documents as AWS Lambda shapes (see awsshape.h). */
#include "awsshape.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "awsarn.h"
#include "crypto.h"
#include "ml.h"

#define ARN_MAX 256

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num_of(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

void gw_aws_shape_time(const char *native, char *out, size_t outlen)
{
    size_t n = native ? strlen(native) : 0;

    if (n > 1 && n < outlen - 4 && native[n - 1] == 'Z') {
        memcpy(out, native, n - 1);
        memcpy(out + n - 1, "+0000", 6);
        return;
    }
    ml_strlcpy(out, native ? native : "", outlen); /* as it is: cutting is fine for a time */
}

void gw_aws_shape_sha256(const char *hex, char *out, size_t outlen)
{
    unsigned char bytes[32];

    out[0] = '\0';
    if (!hex || strlen(hex) != 64)
        return;
    for (size_t i = 0; i < 32; i++) {
        int hi = crypto_hex_digit(hex[2 * i]), lo = crypto_hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return;
        bytes[i] = (unsigned char)(hi << 4 | lo);
    }
    if (crypto_base64_encode(bytes, sizeof(bytes), out, outlen) != ML_OK)
        out[0] = '\0';
}

const char *gw_aws_shape_state(const char *native)
{
    if (!native)
        return "Pending";
    if (strcmp(native, "active") == 0)
        return "Active";
    if (strcmp(native, "failed") == 0)
        return "Failed";
    return "Pending";
}

/* The version a native document stands for: "$LATEST" or a published number. */
static const char *doc_version(const cJSON *native)
{
    const char *q = str_of(native, "qualifier_version"), *v = str_of(native, "version");

    return q ? q : v ? v : "$LATEST";
}

/* A RevisionId that changes whenever what the document shows changes: a UUID-shaped hash of
 * its identity and timestamps. */
static void revision_id(const cJSON *native, char out[37])
{
    char *text = cJSON_PrintUnformatted(native);
    char hex[CRYPTO_SHA256_HEX_LEN];

    crypto_sha256_hex(text ? text : "", text ? strlen(text) : 0, hex);
    cJSON_free(text);
    ml_snprintf_trunc(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
                      hex + 20);
}

/* LastUpdateStatus and its reason: the executor's own field when it has one, else the
 * newest build's status (a build after the first in flight: InProgress; failed: Failed). */
static void update_status(cJSON *cfg, const cJSON *native, bool published)
{
    const char *st = str_of(native, "last_update_status"), *why = str_of(native, "last_update_reason");
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(native, "last_build");
    const char *bst = str_of(lb, "status"), *state = str_of(native, "state");

    if (published) {
        st = "Successful";
    } else if (!st) {
        st = "Successful";
        if (state && strcmp(state, "failed") == 0) {
            st = "Failed", why = str_of(native, "error");
        } else if (bst && (strcmp(bst, "queued") == 0 || strcmp(bst, "building") == 0)) {
            st = "InProgress";
        } else if (bst && strcmp(bst, "failed") == 0) {
            st = "Failed", why = str_of(lb, "error");
        }
    }
    cJSON_AddStringToObject(cfg, "LastUpdateStatus", st);
    if (strcmp(st, "Successful") != 0) {
        cJSON_AddStringToObject(cfg, "LastUpdateStatusReason",
                                why ? why : strcmp(st, "InProgress") == 0 ? "The function is being updated." : "The update failed.");
        cJSON_AddStringToObject(cfg, "LastUpdateStatusReasonCode",
                                strcmp(st, "InProgress") == 0 ? "Creating" : "InternalError");
    }
}

static void state_fields(cJSON *cfg, const cJSON *native, bool published)
{
    const char *state = published ? "Active" : gw_aws_shape_state(str_of(native, "state"));

    cJSON_AddStringToObject(cfg, "State", state);
    if (strcmp(state, "Pending") == 0) {
        cJSON_AddStringToObject(cfg, "StateReason", "The function is being created.");
        cJSON_AddStringToObject(cfg, "StateReasonCode", "Creating");
    } else if (strcmp(state, "Failed") == 0) {
        const char *why = str_of(native, "error");
        cJSON_AddStringToObject(cfg, "StateReason", why ? why : "The function's build failed.");
        cJSON_AddStringToObject(cfg, "StateReasonCode", "InternalError");
    }
    update_status(cfg, native, published);
}

static void code_fields(cJSON *cfg, const cJSON *native)
{
    const cJSON *art = cJSON_GetObjectItemCaseSensitive(native, "artifact");
    char sha[64];

    gw_aws_shape_sha256(str_of(art, "sha256"), sha, sizeof(sha));
    cJSON_AddNumberToObject(cfg, "CodeSize", num_of(art, "size_bytes", 0));
    cJSON_AddStringToObject(cfg, "CodeSha256", sha);
}

static void env_fields(cJSON *cfg, const cJSON *native)
{
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(native, "env");
    cJSON *e;

    if (!cJSON_IsObject(env) || !env->child)
        return;
    e = cJSON_AddObjectToObject(cfg, "Environment");
    cJSON_AddItemToObject(e, "Variables", cJSON_Duplicate(env, 1));
}

/* The FunctionName/FunctionArn/Role identity fields. */
static void identity(cJSON *cfg, const gw_aws_where *w, const char *name, const char *version,
                     int qualified)
{
    char arn[ARN_MAX], role[96];

    if (gw_awsarn_format(arn, sizeof(arn), w->region, w->account, name,
                         qualified ? version : NULL) != ML_OK)
        arn[0] = '\0'; /* names are short: never */
    ml_snprintf_trunc(role, sizeof(role), "arn:aws:iam::%s:role/minilambda-function", w->account);
    cJSON_AddStringToObject(cfg, "FunctionName", name);
    cJSON_AddStringToObject(cfg, "FunctionArn", arn);
    cJSON_AddStringToObject(cfg, "Role", role);
}

cJSON *gw_aws_shape_config(const gw_aws_where *w, const cJSON *native, int qualified)
{
    cJSON *cfg = cJSON_CreateObject(), *arch;
    const char *name = str_of(native, "name"), *version = doc_version(native);
    const char *desc = str_of(native, "description"), *rt = str_of(native, "runtime");
    const char *mod = str_of(native, "updated_at");
    bool published = strcmp(version, "$LATEST") != 0;
    char when[48], rev[37];

    if (!cfg)
        return NULL;
    gw_aws_shape_time(mod ? mod : str_of(native, "created_at"), when, sizeof(when));
    revision_id(native, rev);
    identity(cfg, w, name ? name : "", version, qualified);
    cJSON_AddStringToObject(cfg, "Runtime", rt ? rt : "");
    cJSON_AddStringToObject(cfg, "Handler", str_of(native, "handler") ? str_of(native, "handler") : "");
    code_fields(cfg, native);
    cJSON_AddStringToObject(cfg, "Description", desc ? desc : "");
    cJSON_AddNumberToObject(cfg, "Timeout", num_of(native, "timeout_s", 30));
    cJSON_AddNumberToObject(cfg, "MemorySize", num_of(native, "memory_mb", 128));
    cJSON_AddStringToObject(cfg, "LastModified", when);
    cJSON_AddStringToObject(cfg, "Version", version);
    env_fields(cfg, native);
    state_fields(cfg, native, published);
    cJSON_AddStringToObject(cfg, "PackageType", "Zip");
    arch = cJSON_AddArrayToObject(cfg, "Architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("x86_64"));
    cJSON_AddStringToObject(cfg, "RevisionId", rev);
    return cfg;
}

cJSON *gw_aws_shape_alias(const gw_aws_where *w, const char *fn, const cJSON *alias)
{
    cJSON *out = cJSON_CreateObject(), *rc, *weights;
    const cJSON *routing = cJSON_GetObjectItemCaseSensitive(alias, "routing"), *r;
    const char *name = str_of(alias, "name"), *desc = str_of(alias, "description");
    char arn[ARN_MAX], rev[37];

    if (!out)
        return NULL;
    if (gw_awsarn_format(arn, sizeof(arn), w->region, w->account, fn, name ? name : "") != ML_OK)
        arn[0] = '\0'; /* short names: never */
    revision_id(alias, rev);
    cJSON_AddStringToObject(out, "AliasArn", arn);
    cJSON_AddStringToObject(out, "Name", name ? name : "");
    cJSON_AddStringToObject(out, "FunctionVersion", str_of(alias, "version") ? str_of(alias, "version") : "");
    cJSON_AddStringToObject(out, "Description", desc ? desc : "");
    if (cJSON_IsObject(routing) && routing->child) {
        rc = cJSON_AddObjectToObject(out, "RoutingConfig");
        weights = cJSON_AddObjectToObject(rc, "AdditionalVersionWeights");
        cJSON_ArrayForEach(r, routing)
            if (cJSON_IsNumber(r))
                cJSON_AddNumberToObject(weights, r->string, r->valuedouble);
    }
    cJSON_AddStringToObject(out, "RevisionId", rev);
    return out;
}
