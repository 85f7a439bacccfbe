/* routes.c — the public route table (API.md). */
#include "routes.h"

#include <stdlib.h>
#include <string.h>

#include "fnurl.h"
#include "httpd.h"

#define BM GW_SVC_BUILD_MASTER
#define EX GW_SVC_EXECUTOR
#define R GW_SCOPE_READ
#define W GW_SCOPE_WRITE
#define I GW_SCOPE_INVOKE
#define A GW_SCOPE_ADMIN

/* Capability per route: what the serving instance must be able to do right now. */
#define C_INV GW_CAP_INVOKE
#define C_RD GW_CAP_READ
#define C_WR GW_CAP_WRITE
#define C_BLD GW_CAP_BUILD
/* an AWS control-plane route: the gateway runs the operation (awsctl.h) against both
 * services, so the capability is checked per native request, not here */
#define AWS(m, p, scope, body, op) \
    { m, p, EX, scope, (scope) == R ? C_RD : C_WR, GW_KIND_AWS_CTL, body, op }

const gw_route_def gw_routes[] = {
    /* builds and code uploads: build-master */
    { "POST", "/functions", BM, W, C_BLD, GW_KIND_BUILD_SUBMIT, GW_MAX_UPLOAD_BODY, NULL },
    { "PUT", "/functions/{fn}/code", BM, W, C_BLD, GW_KIND_BUILD_SUBMIT, GW_MAX_UPLOAD_BODY, NULL },
    { "GET", "/builds/{build_id}", BM, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "GET", "/functions/{fn}/builds", BM, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    /* build logs and webhook deliveries (docs/logs.md) */
    { "GET", "/builds/{build_id}/log", BM, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "GET", "/builds/{build_id}/deliveries", BM, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "POST", "/builds/{build_id}/deliveries/{delivery_id}/redeliver", BM, W, C_WR, GW_KIND_PLAIN,
      GW_MAX_SMALL_BODY, NULL },
    /* the build-master deletes on the lambda-executor, then frees the name on its side */
    { "DELETE", "/functions/{fn}", BM, W, C_WR, GW_KIND_PLAIN, 0, NULL },
    /* everything else: lambda-executor */
    { "GET", "/functions", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "GET", "/functions/{fn}", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "PATCH", "/functions/{fn}", EX, W, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    { "POST", "/functions/{fn}/invoke", EX, I, C_INV, GW_KIND_INVOKE, GW_MAX_INVOKE_BODY, NULL },
    { "POST", "/batch-invoke", EX, I, C_INV, GW_KIND_BATCH_INVOKE, GW_MAX_BATCH_BODY, NULL },
    { "PUT", "/functions/{fn}/url", EX, W, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    { "GET", "/functions/{fn}/url", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "DELETE", "/functions/{fn}/url", EX, W, C_WR, GW_KIND_PLAIN, 0, NULL },
    { "GET", "/invocations/{id}", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "GET", "/functions/{fn}/invocations", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    /* function logs (?follow=1: SSE) and destination deliveries (docs/logs.md) */
    { "GET", "/functions/{fn}/logs", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "GET", "/invocations/{id}/deliveries", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "POST", "/invocations/{id}/deliveries/{delivery_id}/redeliver", EX, W, C_WR, GW_KIND_PLAIN,
      GW_MAX_SMALL_BODY, NULL },
    { "POST", "/functions/{fn}/schedules", EX, W, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    { "GET", "/functions/{fn}/schedules", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "DELETE", "/functions/{fn}/schedules/{id}", EX, W, C_WR, GW_KIND_PLAIN, 0, NULL },
    { "GET", "/functions/{fn}/dlq", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "POST", "/dlq/{id}/replay", EX, W, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    { "DELETE", "/dlq/{id}", EX, W, C_WR, GW_KIND_PLAIN, 0, NULL },
    { "POST", "/2015-03-31/functions/{fn}/invocations", EX, I, C_INV, GW_KIND_AWS_INVOKE,
      GW_MAX_INVOKE_BODY, NULL },
    /* InvokeWithResponseStream: the invoke answered as an AWS event stream (awsstream.h) */
    { "POST", "/2021-11-15/functions/{fn}/response-streaming-invocations", EX, I, C_INV,
      GW_KIND_AWS_INVOKE, GW_MAX_INVOKE_BODY, "InvokeWithResponseStream" },
    /* versions, aliases, runtimes (docs/versions.md) */
    { "POST", "/functions/{fn}/versions", EX, W, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    { "GET", "/functions/{fn}/versions", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "GET", "/functions/{fn}/versions/{v}", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "DELETE", "/functions/{fn}/versions/{v}", EX, W, C_WR, GW_KIND_PLAIN, 0, NULL },
    { "PUT", "/functions/{fn}/aliases/{alias}", EX, W, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    { "GET", "/functions/{fn}/aliases/{alias}", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "GET", "/functions/{fn}/aliases", EX, R, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "DELETE", "/functions/{fn}/aliases/{alias}", EX, W, C_WR, GW_KIND_PLAIN, 0, NULL },
    /* any valid token: what the platform can run is no secret of a namespace */
    { "GET", "/runtimes", EX, GW_SCOPES_FUNCTIONS, C_RD, GW_KIND_PLAIN, 0, NULL },
    /* the AWS Lambda control plane (awsctl.h, docs/aws-compat.md) */
    AWS("POST", "/2015-03-31/functions", W, GW_MAX_UPLOAD_BODY, "CreateFunction"),
    AWS("GET", "/2015-03-31/functions", R, 0, "ListFunctions"),
    AWS("GET", "/2015-03-31/functions/", R, 0, "ListFunctions"),
    AWS("GET", "/2015-03-31/functions/{fn}", R, 0, "GetFunction"),
    AWS("DELETE", "/2015-03-31/functions/{fn}", W, 0, "DeleteFunction"),
    AWS("GET", "/2015-03-31/functions/{fn}/configuration", R, 0, "GetFunctionConfiguration"),
    AWS("PUT", "/2015-03-31/functions/{fn}/configuration", W, GW_MAX_JSON_BODY,
        "UpdateFunctionConfiguration"),
    AWS("PUT", "/2015-03-31/functions/{fn}/code", W, GW_MAX_UPLOAD_BODY, "UpdateFunctionCode"),
    AWS("POST", "/2015-03-31/functions/{fn}/versions", W, GW_MAX_JSON_BODY, "PublishVersion"),
    AWS("GET", "/2015-03-31/functions/{fn}/versions", R, 0, "ListVersionsByFunction"),
    AWS("POST", "/2015-03-31/functions/{fn}/aliases", W, GW_MAX_JSON_BODY, "CreateAlias"),
    AWS("GET", "/2015-03-31/functions/{fn}/aliases", R, 0, "ListAliases"),
    AWS("GET", "/2015-03-31/functions/{fn}/aliases/{alias}", R, 0, "GetAlias"),
    AWS("PUT", "/2015-03-31/functions/{fn}/aliases/{alias}", W, GW_MAX_JSON_BODY, "UpdateAlias"),
    AWS("DELETE", "/2015-03-31/functions/{fn}/aliases/{alias}", W, 0, "DeleteAlias"),
    AWS("PUT", "/2017-10-31/functions/{fn}/concurrency", W, GW_MAX_JSON_BODY,
        "PutFunctionConcurrency"),
    AWS("DELETE", "/2017-10-31/functions/{fn}/concurrency", W, 0, "DeleteFunctionConcurrency"),
    AWS("GET", "/2019-09-30/functions/{fn}/concurrency", R, 0, "GetFunctionConcurrency"),
    AWS("GET", "/2016-08-19/account-settings", R, 0, "GetAccountSettings"),
    AWS("GET", "/2016-08-19/account-settings/", R, 0, "GetAccountSettings"),
    AWS("POST", "/2017-03-31/tags/{arn}", W, GW_MAX_JSON_BODY, "TagResource"),
    AWS("DELETE", "/2017-03-31/tags/{arn}", W, 0, "UntagResource"),
    AWS("GET", "/2017-03-31/tags/{arn}", R, 0, "ListTags"),
    /* Code.Location of GetFunction: the URL's signature is the credential (awscode.c) */
    { "GET", "/aws-code/{ns}/{id}", BM, R, C_RD, GW_KIND_AWS_CODE, 0, NULL },
    /* tenants (docs/tenants.md): the executor keeps namespaces and access keys */
    { "POST", "/admin/namespaces", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    { "GET", "/admin/namespaces", EX, A, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "GET", "/admin/namespaces/{ns}", EX, A, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "PATCH", "/admin/namespaces/{ns}", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    { "POST", "/admin/keys", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    { "GET", "/admin/keys", EX, A, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "GET", "/admin/keys/{id}", EX, A, C_RD, GW_KIND_PLAIN, 0, NULL },
    { "DELETE", "/admin/keys/{id}", EX, A, C_WR, GW_KIND_PLAIN, 0, NULL },
    { "POST", "/admin/keys/{id}/disable", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    { "POST", "/admin/keys/{id}/enable", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    { "POST", "/admin/keys/{id}/rotate", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY, NULL },
    /* function URLs (docs/http.md): any method; auth as the function's url_config says */
    { "*", "/fn/{fn}", EX, I, C_INV, GW_KIND_FNURL, GW_FNURL_MAX_BODY, NULL },
    { "*", "/fn/{fn}/{proxy+}", EX, I, C_INV, GW_KIND_FNURL, GW_FNURL_MAX_BODY, NULL },
    { "*", "/ns/{ns}/fn/{fn}", EX, I, C_INV, GW_KIND_FNURL, GW_FNURL_MAX_BODY, NULL },
    { "*", "/ns/{ns}/fn/{fn}/{proxy+}", EX, I, C_INV, GW_KIND_FNURL, GW_FNURL_MAX_BODY, NULL },
    /* minted here with the gateway's own secret: no upstream */
    { "POST", "/admin/tokens", EX, A, C_WR, GW_KIND_MINT, GW_MAX_JSON_BODY, NULL },
};
const size_t gw_nroutes = sizeof(gw_routes) / sizeof(gw_routes[0]);

const gw_route_def *gw_route_find(const char *method, const char *path, bool *wrong_method)
{
    if (wrong_method)
        *wrong_method = false;
    for (size_t i = 0; i < gw_nroutes; i++) {
        const char *names[HTTPD_MAX_PARAMS];
        char *values[HTTPD_MAX_PARAMS];
        size_t n = 0;

        if (httpd_match(gw_routes[i].pattern, path, names, values, &n) != ML_OK)
            continue;
        for (size_t k = 0; k < n; k++)
            free(values[k]);
        if (strcmp(gw_routes[i].method, method) == 0 || strcmp(gw_routes[i].method, "*") == 0) {
            if (wrong_method)
                *wrong_method = false;
            return &gw_routes[i];
        }
        if (wrong_method)
            *wrong_method = true;
    }
    return NULL;
}

static const struct {
    const char *name;
    unsigned bit;
} scope_names[] = {
    { "functions:read", GW_SCOPE_READ },
    { "functions:write", GW_SCOPE_WRITE },
    { "functions:invoke", GW_SCOPE_INVOKE },
    { "functions:secrets", GW_SCOPE_SECRETS },
    { "admin", GW_SCOPE_ADMIN | GW_SCOPES_FUNCTIONS },
};

/* Bits of the claim's names; *unknown counts the names it does not know. */
static unsigned scopes_parse(const char *claim, size_t *unknown, size_t *names)
{
    unsigned bits = 0;
    const char *p = claim;

    *unknown = *names = 0;
    while (p && *p) {
        size_t len;
        bool known = false;

        p += strspn(p, " ");
        len = strcspn(p, " ");
        if (len == 0)
            break;
        (*names)++;
        for (size_t i = 0; i < ML_ARRAY_LEN(scope_names); i++) {
            if (len == strlen(scope_names[i].name) && strncmp(p, scope_names[i].name, len) == 0) {
                bits |= scope_names[i].bit;
                known = true;
            }
        }
        *unknown += !known;
        p += len;
    }
    return bits;
}

unsigned gw_scopes_parse(const char *claim)
{
    size_t unknown, names;

    return scopes_parse(claim, &unknown, &names);
}

int gw_scopes_parse_strict(const char *claim, unsigned *bits)
{
    size_t unknown, names;

    *bits = scopes_parse(claim, &unknown, &names);
    return unknown == 0 && names > 0 ? ML_OK : ML_ERR;
}

const char *gw_scope_name(unsigned scope)
{
    if (scope == GW_SCOPE_ADMIN)
        return "admin";
    for (size_t i = 0; i < ML_ARRAY_LEN(scope_names); i++) {
        if (scope_names[i].bit == scope)
            return scope_names[i].name;
    }
    return "";
}

const char *gw_service_name(gw_service s)
{
    return s == GW_SVC_BUILD_MASTER ? "build-master" : "lambda-executor";
}
