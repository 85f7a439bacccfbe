/* awsfn.c — the AWS operations on functions: CreateFunction, GetFunction(Configuration),
 * ListFunctions, UpdateFunctionCode/Configuration, DeleteFunction, GetAccountSettings
 * (awsctl.h; docs/aws-compat.md for what each maps to). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "awsctl.h"
#include "awsops.h"
#include "awsshape.h"

#define LIST_DEFAULT 50
#define LIST_MAX 100 /* the native page's limit; NextMarker goes on from there */
#define ACCOUNT_PAGES_MAX 100

/* ---- shared steps ---- */

gw_aws_where gw_awsops_where(const gw_actl *c)
{
    return (gw_aws_where){ gw_actl_region(c), c->account };
}

const char *gw_awsops_qualifier(gw_actl *c)
{
    const char *q = httpd_query(c->req, "Qualifier");

    if (q && gw_awsarn_qualifier_valid(q) != ML_OK) {
        gw_actl_fail(c, 400, "InvalidParameterValueException", "Qualifier is not a version or alias name");
        return NULL;
    }
    if (q && c->fn.qualifier[0] && strcmp(q, c->fn.qualifier) != 0) {
        gw_actl_fail(c, 400, "InvalidParameterValueException",
                     "the Qualifier and the FunctionName's qualifier differ");
        return NULL;
    }
    return q ? q : c->fn.qualifier;
}

int gw_awsops_unqualified(gw_actl *c)
{
    if (!c->fn.qualifier[0])
        return ML_OK;
    gw_actl_fail(c, 400, "InvalidParameterValueException",
                 "this operation takes an unqualified function name or ARN");
    return ML_ERR;
}

/* MaxItems and Marker onto a native list path (limit, cursor); ML_ERR with the call ended. */
int gw_awsops_page(gw_actl *c, char **path)
{
    const char *max = httpd_query(c->req, "MaxItems"), *marker = httpd_query(c->req, "Marker");
    int64_t n = LIST_DEFAULT;
    char lim[24];

    if (max && ml_parse_int64(max, 1, 10000, &n) != ML_OK) {
        free(*path);
        *path = NULL;
        gw_actl_fail(c, 400, "InvalidParameterValueException", "MaxItems must be 1..10000");
        return ML_ERR;
    }
    if (ml_snprintf(lim, sizeof(lim), "%" PRId64, n > LIST_MAX ? LIST_MAX : n) != ML_OK ||
        gw_actl_query(path, "limit", lim) != ML_OK || gw_actl_query(path, "cursor", marker) != ML_OK) {
        gw_actl_fail(c, 500, "ServiceException", "cannot prepare the native request");
        return ML_ERR;
    }
    return ML_OK;
}

/* The native list's next_cursor as NextMarker on out. */
void gw_awsops_next_marker(const cJSON *native, cJSON *out)
{
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(native, "next_cursor");

    if (cJSON_IsString(next) && next->valuestring[0])
        cJSON_AddStringToObject(out, "NextMarker", next->valuestring);
}

/* GET /functions/{fn}[?qualifier=q] with next getting the answer. */
void gw_awsops_get_native(gw_actl *c, const char *q, gw_actl_fn next)
{
    char *path = gw_actl_fn_path(c, NULL);

    if (q && q[0] && gw_actl_query(&path, "qualifier", q) != ML_OK)
        path = NULL;
    gw_actl_send(c, GW_SVC_EXECUTOR, "GET", path, NULL, NULL, next);
}

/* The answer of a GET /functions/{fn} as a FunctionConfiguration; NULL with the call ended. */
static cJSON *config_of(gw_actl *c, gw_xfer *x, int qualified)
{
    cJSON *doc;
    gw_aws_where w = gw_awsops_where(c);
    cJSON *cfg;

    if (!gw_actl_ok(x, 200)) {
        gw_actl_upstream_fail(c, x);
        return NULL;
    }
    doc = gw_actl_json(x);
    gw_xfer_free(x);
    cfg = doc ? gw_aws_shape_config(&w, doc, qualified) : NULL;
    if (!cfg) {
        cJSON_Delete(doc);
        gw_actl_fail(c, 502, "ServiceException", "the lambda-executor's answer is not readable");
        return NULL;
    }
    cJSON_Delete(c->acc);
    c->acc = doc; /* the native record, for the fields beyond the configuration */
    return cfg;
}

/* ---- GetFunctionConfiguration, GetFunction ---- */

/* cfg as the whole answer, once its code fields show the package (awsops.h). */
static void reply_config(gw_actl *c, cJSON *cfg, int st)
{
    c->out = c->cfg = cfg;
    gw_awsops_reply_with_package(c, c->acc, st);
}

static void got_configuration(gw_actl *c, gw_xfer *x)
{
    cJSON *cfg = config_of(c, x, c->n);

    if (cfg)
        reply_config(c, cfg, 200);
}

/* GET of the qualified record; c->n says whether a qualifier was asked for. */
static void get_qualified(gw_actl *c, gw_actl_fn next)
{
    const char *q = gw_awsops_qualifier(c);

    if (!q)
        return;
    c->n = q[0] != '\0';
    gw_awsops_get_native(c, q, next);
}

void gw_awsop_get_configuration(gw_actl *c, gw_xfer *x)
{
    (void)x;
    get_qualified(c, got_configuration);
}

static void got_function(gw_actl *c, gw_xfer *x)
{
    cJSON *cfg = config_of(c, x, c->n), *out, *code;
    const cJSON *tags, *conc;
    char *loc;

    if (!cfg)
        return;
    out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "Configuration", cfg);
    code = cJSON_AddObjectToObject(out, "Code");
    cJSON_AddStringToObject(code, "RepositoryType", "S3");
    loc = gw_awscode_location(c, c->acc);
    cJSON_AddStringToObject(code, "Location", loc ? loc : "");
    free(loc);
    tags = cJSON_GetObjectItemCaseSensitive(c->acc, "tags");
    if (cJSON_IsObject(tags) && tags->child)
        cJSON_AddItemToObject(out, "Tags", cJSON_Duplicate(tags, 1));
    conc = cJSON_GetObjectItemCaseSensitive(c->acc, "concurrency");
    if (cJSON_IsNumber(conc))
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(out, "Concurrency"),
                                "ReservedConcurrentExecutions", conc->valuedouble);
    c->out = out;
    c->cfg = cfg;
    gw_awsops_reply_with_package(c, c->acc, 200);
}

void gw_awsop_get_function(gw_actl *c, gw_xfer *x)
{
    (void)x;
    get_qualified(c, got_function);
}

/* ---- ListFunctions ---- */

static void listed_functions(gw_actl *c, gw_xfer *x)
{
    cJSON *doc, *out, *arr;
    const cJSON *fns, *f;
    gw_aws_where w = gw_awsops_where(c);

    if (!gw_actl_ok(x, 200)) {
        gw_actl_upstream_fail(c, x);
        return;
    }
    doc = gw_actl_json(x);
    gw_xfer_free(x);
    out = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(out, "Functions");
    fns = cJSON_GetObjectItemCaseSensitive(doc, "functions");
    cJSON_ArrayForEach(f, fns)
        cJSON_AddItemToArray(arr, gw_aws_shape_config(&w, f, 0));
    gw_awsops_next_marker(doc, out);
    cJSON_Delete(doc);
    gw_actl_reply(c, 200, out);
}

void gw_awsop_list_functions(gw_actl *c, gw_xfer *x)
{
    char *path = strdup("/functions");

    (void)x;
    if (gw_awsops_page(c, &path) == ML_OK)
        gw_actl_send(c, GW_SVC_EXECUTOR, "GET", path, NULL, NULL, listed_functions);
}

/* ---- CreateFunction, UpdateFunctionCode ---- */

/* Code.ZipFile (CreateFunction) or ZipFile (UpdateFunctionCode) moved into out as
 * code_base64; ML_ERR with the call ended (S3 and images are refused, docs/aws-compat.md). */
static int take_zip(gw_actl *c, cJSON *from, cJSON *out)
{
    cJSON *zip = cJSON_DetachItemFromObjectCaseSensitive(from, "ZipFile");

    if (cJSON_GetObjectItemCaseSensitive(from, "S3Bucket") || cJSON_GetObjectItemCaseSensitive(from, "S3Key")) {
        cJSON_Delete(zip);
        gw_actl_fail(c, 400, "InvalidParameterValueException",
                     "S3Bucket/S3Key are not supported by minilambda: send the ZIP as ZipFile");
        return ML_ERR;
    }
    if (cJSON_GetObjectItemCaseSensitive(from, "ImageUri")) {
        cJSON_Delete(zip);
        gw_actl_fail(c, 400, "InvalidParameterValueException",
                     "container images are not supported by minilambda: send a ZIP as ZipFile");
        return ML_ERR;
    }
    if (!cJSON_IsString(zip)) {
        cJSON_Delete(zip);
        gw_actl_fail(c, 400, "InvalidParameterValueException", "ZipFile is required (a base64 ZIP)");
        return ML_ERR;
    }
    cJSON_AddItemToObject(out, "code_base64", zip);
    return ML_OK;
}

/* The answer from what was asked and the build-master's 202: Pending, as AWS's is (the
 * executor learns of the function from the build's events, a moment later). */
static void reply_pending(gw_actl *c, const cJSON *made)
{
    gw_aws_where w = gw_awsops_where(c);
    cJSON *native = gw_awsops_pending_record(c->acc, made);
    cJSON *cfg = native ? gw_aws_shape_config(&w, native, 0) : NULL;

    cJSON_Delete(native);
    if (!cfg) {
        gw_actl_fail(c, 500, "ServiceException", "cannot shape the new function");
        return;
    }
    gw_actl_reply(c, 201, cfg);
}

static void created_function(gw_actl *c, gw_xfer *x)
{
    cJSON *made;

    if (!gw_actl_ok(x, 202)) {
        gw_actl_upstream_fail(c, x);
        return;
    }
    made = gw_actl_json(x);
    gw_xfer_free(x);
    reply_pending(c, made);
    cJSON_Delete(made);
}

static void create_function(gw_actl *c, gw_xfer *x)
{
    cJSON *body = cJSON_CreateObject(), *code = cJSON_GetObjectItemCaseSensitive(c->in, "Code");
    gw_aws_fname f;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(c->in, "FunctionName");

    (void)x;
    if (!cJSON_IsString(name) || gw_awsarn_parse(name->valuestring, &f) != ML_OK || f.qualifier[0] ||
        (f.account[0] && strcmp(f.account, c->account) != 0)) {
        cJSON_Delete(body);
        gw_actl_fail(c, 400, "InvalidParameterValueException",
                     "FunctionName must be a function name (1-64 of A-Za-z0-9_-) or its ARN");
        return;
    }
    if (!cJSON_IsObject(code)) {
        cJSON_Delete(body);
        gw_actl_fail(c, 400, "InvalidParameterValueException", "Code is required");
        return;
    }
    if (take_zip(c, code, body) != ML_OK) {
        cJSON_Delete(body);
        return;
    }
    cJSON_AddStringToObject(body, "name", f.name);
    ml_strlcpy(c->fn.name, f.name, sizeof(c->fn.name)); /* fits: same buffer size */
    if (gw_awsops_config_fields(c, c->in, body, true) != ML_OK) {
        cJSON_Delete(body);
        return;
    }
    c->acc = cJSON_Duplicate(body, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(c->acc, "code_base64");
    /* description and tags travel with the create (the build's create event), no PATCH */
    gw_actl_send(c, GW_SVC_BUILD_MASTER, "POST", strdup("/functions"), body,
                 gw_awsops_quota_header(c), created_function);
}

static void code_updated_get(gw_actl *c, gw_xfer *x)
{
    cJSON *cfg = config_of(c, x, 0), *st;

    if (!cfg)
        return;
    /* the new code builds now: the waiter function_updated_v2 must see InProgress first */
    st = cJSON_GetObjectItemCaseSensitive(cfg, "LastUpdateStatus");
    if (cJSON_IsString(st) && strcmp(st->valuestring, "Successful") == 0) {
        cJSON_ReplaceItemInObjectCaseSensitive(cfg, "LastUpdateStatus", cJSON_CreateString("InProgress"));
        cJSON_AddStringToObject(cfg, "LastUpdateStatusReason", "The function is being updated.");
        cJSON_AddStringToObject(cfg, "LastUpdateStatusReasonCode", "Creating");
    }
    gw_actl_reply(c, 200, cfg);
}

static void code_updated(gw_actl *c, gw_xfer *x)
{
    if (!gw_actl_ok(x, 202)) {
        gw_actl_upstream_fail(c, x);
        return;
    }
    gw_xfer_free(x);
    gw_awsops_get_native(c, NULL, code_updated_get);
}

static void update_code(gw_actl *c, gw_xfer *x)
{
    cJSON *body = cJSON_CreateObject();

    (void)x;
    if (gw_awsops_unqualified(c) != ML_OK || take_zip(c, c->in, body) != ML_OK) {
        cJSON_Delete(body);
        return;
    }
    gw_actl_send(c, GW_SVC_BUILD_MASTER, "PUT", gw_actl_fn_path(c, "/code"), body, NULL, code_updated);
}

void gw_awsop_create_function(gw_actl *c, gw_xfer *x)
{
    (void)x;
    gw_awsops_build_quota(c, create_function);
}

void gw_awsop_update_code(gw_actl *c, gw_xfer *x)
{
    (void)x;
    gw_awsops_build_quota(c, update_code);
}

/* ---- UpdateFunctionConfiguration ---- */

static void configuration_updated(gw_actl *c, gw_xfer *x)
{
    cJSON *cfg = config_of(c, x, 0);

    if (cfg)
        reply_config(c, cfg, 200);
}

void gw_awsop_update_configuration(gw_actl *c, gw_xfer *x)
{
    cJSON *body = cJSON_CreateObject();

    (void)x;
    if (gw_awsops_unqualified(c) != ML_OK || gw_awsops_config_fields(c, c->in, body, false) != ML_OK) {
        cJSON_Delete(body);
        return;
    }
    gw_actl_send(c, GW_SVC_EXECUTOR, "PATCH", gw_actl_fn_path(c, NULL), body, NULL,
                 configuration_updated);
}

/* ---- DeleteFunction ---- */

void gw_awsops_no_content(gw_actl *c, gw_xfer *x)
{
    if (!gw_actl_ok(x, 204) && !gw_actl_ok(x, 200)) {
        gw_actl_upstream_fail(c, x);
        return;
    }
    gw_xfer_free(x);
    gw_actl_reply(c, 204, NULL);
}

void gw_awsop_delete_function(gw_actl *c, gw_xfer *x)
{
    const char *q = gw_awsops_qualifier(c);
    char *path;

    (void)x;
    if (!q)
        return;
    if (!q[0]) {
        gw_actl_send(c, GW_SVC_BUILD_MASTER, "DELETE", gw_actl_fn_path(c, NULL), NULL, NULL,
                     gw_awsops_no_content);
        return;
    }
    if (strspn(q, "0123456789") != strlen(q)) {
        gw_actl_fail(c, 400, "InvalidParameterValueException",
                     "DeleteFunction's Qualifier must be a published version number");
        return;
    }
    path = gw_actl_fn_path_seg(c, "/versions/", q);
    gw_actl_send(c, GW_SVC_EXECUTOR, "DELETE", path, NULL, NULL, gw_awsops_no_content);
}

/* ---- GetAccountSettings ---- */

static void counted(gw_actl *c, gw_xfer *x);

static void count_page(gw_actl *c, const char *cursor)
{
    char *path = strdup("/functions?limit=100");

    if (cursor && gw_actl_query(&path, "cursor", cursor) != ML_OK)
        path = NULL;
    gw_actl_send(c, GW_SVC_EXECUTOR, "GET", path, NULL, NULL, counted);
}

/* Adds a page of functions to the usage; the next page or the answer. */
static void counted(gw_actl *c, gw_xfer *x)
{
    cJSON *doc;
    const cJSON *f, *next;
    cJSON *usage = cJSON_GetObjectItemCaseSensitive(c->acc, "AccountUsage");
    double size = 0, count = 0;

    if (!gw_actl_ok(x, 200)) {
        gw_actl_upstream_fail(c, x);
        return;
    }
    doc = gw_actl_json(x);
    gw_xfer_free(x);
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(doc, "functions")) {
        const cJSON *sz = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(f, "artifact"), "size_bytes");
        count++;
        size += cJSON_IsNumber(sz) ? sz->valuedouble : 0;
    }
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(usage, "FunctionCount"),
                         cJSON_GetObjectItemCaseSensitive(usage, "FunctionCount")->valuedouble + count);
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(usage, "TotalCodeSize"),
                         cJSON_GetObjectItemCaseSensitive(usage, "TotalCodeSize")->valuedouble + size);
    next = cJSON_GetObjectItemCaseSensitive(doc, "next_cursor");
    if (cJSON_IsString(next) && next->valuestring[0] && ++c->n < ACCOUNT_PAGES_MAX) {
        count_page(c, next->valuestring);
        cJSON_Delete(doc);
        return;
    }
    cJSON_Delete(doc);
    doc = c->acc;
    c->acc = NULL;
    gw_actl_reply(c, 200, doc);
}

void gw_awsop_account_settings(gw_actl *c, gw_xfer *x)
{
    (void)x;
    c->acc = gw_awsops_account_limits(c);
    if (!c->acc) {
        gw_actl_fail(c, 500, "ServiceException", "cannot read the namespace's quotas");
        return;
    }
    count_page(c, NULL);
}
