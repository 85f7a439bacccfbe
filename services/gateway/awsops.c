/* awsops.c — what the AWS operations share (see awsops.h). */
#include "awsops.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "gcra.h"
#include "tenant.h"

/* the native routes' key (gateway.c): one budget for both dialects */
#define NS_BUILD_KEY "ml:gw:rl:nsbuild:%s"

/* AWS's documented limits for the fields minilambda has no quota of its own for. */
#define AWS_TOTAL_CODE_SIZE 80530636800.0
#define AWS_ZIPPED_MAX 52428800.0
#define AWS_UNZIPPED_MAX 262144000.0
#define AWS_DEFAULT_CONCURRENCY 1000.0

/* One AWS field -> native field mapping of the configuration operations. */
static const struct {
    const char *aws, *native;
    int type;             /* cJSON_Number or cJSON_String */
    bool create_only;
} fields[] = {
    { "Runtime", "runtime", cJSON_String, false },
    { "Handler", "handler", cJSON_String, false },
    { "MemorySize", "memory_mb", cJSON_Number, false },
    { "Timeout", "timeout_s", cJSON_Number, false },
    { "Description", "description", cJSON_String, false },
};

/* Accepted and without effect: what an AWS client sends that minilambda has no use for. */
static const char *const ignored[] = { "Role", "Publish", "RevisionId", "FunctionName", "Code" };

static bool is_ignored(const char *k)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(ignored); i++)
        if (strcmp(ignored[i], k) == 0)
            return true;
    return false;
}

/* Environment -> env: Variables replaces the whole environment (AWS semantics). */
static int env_field(gw_actl *c, const cJSON *v, cJSON *out)
{
    const cJSON *vars = cJSON_GetObjectItemCaseSensitive(v, "Variables");

    if (!cJSON_IsObject(v) || (vars && !cJSON_IsObject(vars))) {
        gw_actl_fail(c, 400, "InvalidParameterValueException",
                     "Environment must be {\"Variables\":{...}}");
        return ML_ERR;
    }
    cJSON_AddItemToObject(out, "env", vars ? cJSON_Duplicate(vars, 1) : cJSON_CreateObject());
    return ML_OK;
}

/* The fields with fixed values minilambda offers: x86_64, Zip. */
static int fixed_field(gw_actl *c, const char *k, const cJSON *v)
{
    const cJSON *a = cJSON_IsArray(v) ? v->child : NULL;

    if (strcmp(k, "Architectures") == 0 &&
        (!a || a->next || !cJSON_IsString(a) || strcmp(a->valuestring, "x86_64") != 0)) {
        gw_actl_fail(c, 400, "InvalidParameterValueException", "minilambda runs x86_64 only");
        return ML_ERR;
    }
    if (strcmp(k, "PackageType") == 0 && (!cJSON_IsString(v) || strcmp(v->valuestring, "Zip") != 0)) {
        gw_actl_fail(c, 400, "InvalidParameterValueException", "minilambda runs Zip packages only");
        return ML_ERR;
    }
    return ML_OK;
}

/* One member of the request: mapped onto out, ignored, or refused. */
static int one_field(gw_actl *c, const cJSON *v, cJSON *out, bool create)
{
    const char *k = v->string;

    for (size_t i = 0; i < ML_ARRAY_LEN(fields); i++) {
        if (strcmp(fields[i].aws, k) != 0 || (fields[i].create_only && !create))
            continue;
        if (!(v->type & fields[i].type)) {
            gw_actl_fail(c, 400, "InvalidParameterValueException", "%s has the wrong type", k);
            return ML_ERR;
        }
        cJSON_AddItemToObject(out, fields[i].native, cJSON_Duplicate(v, 1));
        return ML_OK;
    }
    if (strcmp(k, "Environment") == 0)
        return env_field(c, v, out);
    if (create && strcmp(k, "Tags") == 0 && cJSON_IsObject(v)) {
        cJSON_AddItemToObject(out, "tags", cJSON_Duplicate(v, 1));
        return ML_OK;
    }
    if (strcmp(k, "Architectures") == 0 || strcmp(k, "PackageType") == 0)
        return fixed_field(c, k, v);
    if (is_ignored(k))
        return ML_OK;
    gw_actl_fail(c, 400, "InvalidParameterValueException",
                 "%s is not supported by minilambda (docs/aws-compat.md)", k);
    return ML_ERR;
}

int gw_awsops_config_fields(gw_actl *c, const cJSON *in, cJSON *out, bool create)
{
    const cJSON *v;

    cJSON_ArrayForEach(v, in) {
        if (one_field(c, v, out, create) != ML_OK)
            return ML_ERR;
    }
    return ML_OK;
}

cJSON *gw_awsops_pending_record(const cJSON *asked, const cJSON *made)
{
    cJSON *rec = cJSON_Duplicate(asked, 1), *lb;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(made, "function_id");
    const cJSON *bid = cJSON_GetObjectItemCaseSensitive(made, "build_id");
    char now[32];
    time_t t = time(NULL);
    struct tm tm;

    if (!rec)
        return NULL;
    gmtime_r(&t, &tm);
    if (strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%S.000Z", &tm) == 0)
        now[0] = '\0';
    cJSON_AddStringToObject(rec, "id", cJSON_IsString(id) ? id->valuestring : "");
    cJSON_AddStringToObject(rec, "state", "pending");
    cJSON_AddStringToObject(rec, "updated_at", now);
    lb = cJSON_AddObjectToObject(rec, "last_build");
    cJSON_AddStringToObject(lb, "status", "queued");
    cJSON_AddStringToObject(lb, "build_id", cJSON_IsString(bid) ? bid->valuestring : "");
    return rec;
}

const char *gw_awsops_quota_header(gw_actl *c)
{
    gw_tn_quotas q;

    gw_tn_quotas_get(&c->app->tenants, c->ns, &q);
    if (q.max_functions < 0 ||
        ml_snprintf(c->extra, sizeof(c->extra), TENANT_QUOTA_FUNCTIONS_HEADER ": %" PRId64,
                    q.max_functions) != ML_OK)
        return NULL;
    return c->extra;
}

cJSON *gw_awsops_account_limits(gw_actl *c)
{
    gw_tn_quotas q;
    cJSON *out = cJSON_CreateObject(), *lim, *use;
    double conc;

    if (!out)
        return NULL;
    gw_tn_quotas_get(&c->app->tenants, c->ns, &q);
    conc = q.max_concurrency >= 0 ? (double)q.max_concurrency : AWS_DEFAULT_CONCURRENCY;
    lim = cJSON_AddObjectToObject(out, "AccountLimit");
    cJSON_AddNumberToObject(lim, "TotalCodeSize", AWS_TOTAL_CODE_SIZE);
    cJSON_AddNumberToObject(lim, "CodeSizeUnzipped", AWS_UNZIPPED_MAX);
    cJSON_AddNumberToObject(lim, "CodeSizeZipped", AWS_ZIPPED_MAX);
    cJSON_AddNumberToObject(lim, "ConcurrentExecutions", conc);
    cJSON_AddNumberToObject(lim, "UnreservedConcurrentExecutions", conc);
    use = cJSON_AddObjectToObject(out, "AccountUsage");
    cJSON_AddNumberToObject(use, "TotalCodeSize", 0);
    cJSON_AddNumberToObject(use, "FunctionCount", 0);
    return out;
}

static void quota_refused(gw_actl *c, int64_t limit, int64_t retry_s)
{
    char ra[24];

    if (ml_snprintf(ra, sizeof(ra), "%" PRId64, retry_s < 1 ? 1 : retry_s) == ML_OK)
        httpd_resp_header(c->resp, "Retry-After", ra);
    gw_actl_fail(c, 429, "TooManyRequestsException",
                 "namespace '%s' is at its builds_per_minute quota (%" PRId64 ")", c->ns, limit);
}

static void on_build_quota(void *ud, const gcra_result *r)
{
    gw_actl *c = ud;

    if (!r->allowed) {
        quota_refused(c, r->limit, (r->retry_after_us + 999999) / 1000000);
        return;
    }
    c->after_quota(c, NULL);
}

void gw_awsops_build_quota(gw_actl *c, gw_actl_fn next)
{
    gw_tn_quotas q;
    char key[sizeof(NS_BUILD_KEY) + TENANT_MAX];

    gw_tn_quotas_get(&c->app->tenants, c->ns, &q);
    if (q.builds_per_minute < 0) {
        next(c, NULL);
        return;
    }
    if (q.builds_per_minute == 0 || ml_snprintf(key, sizeof(key), NS_BUILD_KEY, c->ns) != ML_OK) {
        quota_refused(c, q.builds_per_minute, 60);
        return;
    }
    c->after_quota = next;
    gw_loop_limit(c->loop, key, gcra_limit_per_minute(q.builds_per_minute, q.builds_per_minute),
                  on_build_quota, c);
}

/* The build-master's package info: CodeSha256/CodeSize of c->cfg from the package. */
static void package_known(gw_actl *c, gw_xfer *x)
{
    cJSON *doc = gw_actl_ok(x, 200) ? gw_actl_json(x) : NULL, *out = c->out;
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(doc, "package_sha256");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(doc, "package_size");
    char b64[64];

    gw_xfer_free(x);
    gw_aws_shape_sha256(cJSON_IsString(sha) ? sha->valuestring : NULL, b64, sizeof(b64));
    if (b64[0] && cJSON_IsNumber(size)) {
        cJSON_ReplaceItemInObjectCaseSensitive(c->cfg, "CodeSha256", cJSON_CreateString(b64));
        cJSON_ReplaceItemInObjectCaseSensitive(c->cfg, "CodeSize", cJSON_CreateNumber(size->valuedouble));
    }
    cJSON_Delete(doc);
    c->out = NULL;
    gw_actl_reply(c, c->n, out);
}

void gw_awsops_reply_with_package(gw_actl *c, const cJSON *native, int st)
{
    const cJSON *art = cJSON_GetObjectItemCaseSensitive(native, "artifact");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(art, "sha256");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(native, "name");
    char *path;

    c->n = st;
    if (!cJSON_IsString(sha) || !cJSON_IsString(name) ||
        ml_strlcpy(c->fn.name, name->valuestring, sizeof(c->fn.name)) != ML_OK) {
        cJSON *out = c->out;
        c->out = NULL;
        gw_actl_reply(c, st, out);
        return;
    }
    path = gw_actl_fn_path(c, "/package");
    if (gw_actl_query(&path, "artifact", sha->valuestring) != ML_OK)
        path = NULL;
    gw_actl_send(c, GW_SVC_BUILD_MASTER, "GET", path, NULL, NULL, package_known);
}
