/* routes.c — the public route table (API.md). */
#include "routes.h"

#include <stdlib.h>
#include <string.h>

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

const gw_route_def gw_routes[] = {
    /* builds and code uploads: build-master */
    { "POST", "/functions", BM, W, C_BLD, GW_KIND_BUILD_SUBMIT, GW_MAX_UPLOAD_BODY },
    { "PUT", "/functions/{fn}/code", BM, W, C_BLD, GW_KIND_BUILD_SUBMIT, GW_MAX_UPLOAD_BODY },
    { "GET", "/builds/{build_id}", BM, R, C_RD, GW_KIND_PLAIN, 0 },
    { "GET", "/functions/{fn}/builds", BM, R, C_RD, GW_KIND_PLAIN, 0 },
    /* the build-master deletes on the lambda-executor, then frees the name on its side */
    { "DELETE", "/functions/{fn}", BM, W, C_WR, GW_KIND_PLAIN, 0 },
    /* everything else: lambda-executor */
    { "GET", "/functions", EX, R, C_RD, GW_KIND_PLAIN, 0 },
    { "GET", "/functions/{fn}", EX, R, C_RD, GW_KIND_PLAIN, 0 },
    { "PATCH", "/functions/{fn}", EX, W, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY },
    { "POST", "/functions/{fn}/invoke", EX, I, C_INV, GW_KIND_INVOKE, GW_MAX_INVOKE_BODY },
    { "GET", "/invocations/{id}", EX, R, C_RD, GW_KIND_PLAIN, 0 },
    { "GET", "/functions/{fn}/invocations", EX, R, C_RD, GW_KIND_PLAIN, 0 },
    { "POST", "/functions/{fn}/schedules", EX, W, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY },
    { "GET", "/functions/{fn}/schedules", EX, R, C_RD, GW_KIND_PLAIN, 0 },
    { "DELETE", "/functions/{fn}/schedules/{id}", EX, W, C_WR, GW_KIND_PLAIN, 0 },
    { "GET", "/functions/{fn}/dlq", EX, R, C_RD, GW_KIND_PLAIN, 0 },
    { "POST", "/dlq/{id}/replay", EX, W, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY },
    { "DELETE", "/dlq/{id}", EX, W, C_WR, GW_KIND_PLAIN, 0 },
    { "POST", "/2015-03-31/functions/{fn}/invocations", EX, I, C_INV, GW_KIND_AWS_INVOKE,
      GW_MAX_INVOKE_BODY },
    /* tenants (docs/tenants.md): the executor keeps namespaces and access keys */
    { "POST", "/admin/namespaces", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY },
    { "GET", "/admin/namespaces", EX, A, C_RD, GW_KIND_PLAIN, 0 },
    { "GET", "/admin/namespaces/{ns}", EX, A, C_RD, GW_KIND_PLAIN, 0 },
    { "PATCH", "/admin/namespaces/{ns}", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY },
    { "POST", "/admin/keys", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY },
    { "GET", "/admin/keys", EX, A, C_RD, GW_KIND_PLAIN, 0 },
    { "GET", "/admin/keys/{id}", EX, A, C_RD, GW_KIND_PLAIN, 0 },
    { "DELETE", "/admin/keys/{id}", EX, A, C_WR, GW_KIND_PLAIN, 0 },
    { "POST", "/admin/keys/{id}/disable", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY },
    { "POST", "/admin/keys/{id}/enable", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY },
    { "POST", "/admin/keys/{id}/rotate", EX, A, C_WR, GW_KIND_PLAIN, GW_MAX_JSON_BODY },
    /* minted here with the gateway's own secret: no upstream */
    { "POST", "/admin/tokens", EX, A, C_WR, GW_KIND_MINT, GW_MAX_JSON_BODY },
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
        if (strcmp(gw_routes[i].method, method) == 0) {
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
