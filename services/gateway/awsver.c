/* awsver.c — the AWS operations on versions, aliases, reserved concurrency and tags
 * (awsctl.h; docs/versions.md is the native side, docs/aws-compat.md the mapping). */
#include <string.h>

#include "awsctl.h"
#include "awsops.h"
#include "crypto.h"

/* ---- what the operations below share ---- */

/* The executor's 200 answer as *doc (NULL when not JSON, which the callers tolerate);
 * ML_ERR with the call ended when the answer is not a 200. */
static int answer_doc(gw_actl *c, gw_xfer *x, cJSON **doc)
{
    if (!gw_actl_ok(x, 200)) {
        gw_actl_upstream_fail(c, x);
        return ML_ERR;
    }
    *doc = gw_actl_json(x);
    gw_xfer_free(x);
    return ML_OK;
}

/* GET of one page of a native list under the function (sub: "/versions", "/aliases"). */
static void list_native(gw_actl *c, const char *sub, gw_actl_fn next)
{
    char *path = gw_actl_fn_path(c, sub);

    if (gw_awsops_unqualified(c) == ML_OK && gw_awsops_page(c, &path) == ML_OK)
        gw_actl_send(c, GW_SVC_EXECUTOR, "GET", path, NULL, NULL, next);
    else
        free(path);
}

/* Ends a list call with out, the native page doc's next cursor as its NextMarker. */
static void reply_page(gw_actl *c, cJSON *doc, cJSON *out)
{
    gw_awsops_next_marker(doc, out);
    cJSON_Delete(doc);
    gw_actl_reply(c, 200, out);
}

/* PATCH of the function's native record; the answer has no body. */
static void patch_native(gw_actl *c, cJSON *body)
{
    gw_actl_send(c, GW_SVC_EXECUTOR, "PATCH", gw_actl_fn_path(c, NULL), body, NULL,
                 gw_awsops_no_content);
}

/* ---- PublishVersion, ListVersionsByFunction ---- */

static void published(gw_actl *c, gw_xfer *x)
{
    cJSON *doc, *cfg;
    gw_aws_where w = gw_awsops_where(c);

    if (!gw_actl_ok(x, 201) && !gw_actl_ok(x, 200)) {
        gw_actl_upstream_fail(c, x);
        return;
    }
    doc = gw_actl_json(x);
    gw_xfer_free(x);
    cfg = doc ? gw_aws_shape_config(&w, doc, 1) : NULL;
    if (!cfg) {
        cJSON_Delete(doc);
        gw_actl_fail(c, 502, "ServiceException", "the lambda-executor's answer is not readable");
        return;
    }
    cJSON_Delete(c->acc);
    c->acc = doc;
    c->out = c->cfg = cfg;
    gw_awsops_reply_with_package(c, doc, 201);
}

/* The build-master's answer about the package hash the caller sent: its artifact's hash
 * is what the executor compares (a hash no build has goes on as it is: 412). */
static void publish_with(gw_actl *c, gw_xfer *x)
{
    cJSON *doc = gw_actl_ok(x, 200) ? gw_actl_json(x) : NULL, *body = c->out;
    const cJSON *art = cJSON_GetObjectItemCaseSensitive(doc, "artifact_sha256");

    gw_xfer_free(x);
    if (cJSON_IsString(art))
        cJSON_ReplaceItemInObjectCaseSensitive(body, "code_sha256", cJSON_CreateString(art->valuestring));
    cJSON_Delete(doc);
    c->out = NULL;
    gw_actl_send(c, GW_SVC_EXECUTOR, "POST", gw_actl_fn_path(c, "/versions"), body, NULL, published);
}

/* CodeSha256 (base64 of the bytes) as the native code_sha256 (hex); ML_ERR with the call
 * ended when it is not a SHA-256. */
static int code_sha256(gw_actl *c, const cJSON *v, cJSON *body)
{
    unsigned char raw[64];
    size_t n = 0;
    char hex[CRYPTO_SHA256_HEX_LEN];

    if (!cJSON_IsString(v) ||
        crypto_base64_decode(v->valuestring, strlen(v->valuestring), raw, sizeof(raw), &n) != ML_OK ||
        n != 32) {
        gw_actl_fail(c, 400, "InvalidParameterValueException", "CodeSha256 must be the base64 of a SHA-256");
        return ML_ERR;
    }
    crypto_hex_encode(raw, 32, hex);
    cJSON_AddStringToObject(body, "code_sha256", hex);
    return ML_OK;
}

void gw_awsop_publish_version(gw_actl *c, gw_xfer *x)
{
    cJSON *body = cJSON_CreateObject();
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(c->in, "Description");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(c->in, "CodeSha256");
    char *path;

    (void)x;
    if (gw_awsops_unqualified(c) != ML_OK || (sha && code_sha256(c, sha, body) != ML_OK)) {
        cJSON_Delete(body);
        return;
    }
    if (cJSON_IsString(d))
        cJSON_AddStringToObject(body, "description", d->valuestring);
    if (!sha) {
        gw_actl_send(c, GW_SVC_EXECUTOR, "POST", gw_actl_fn_path(c, "/versions"), body, NULL, published);
        return;
    }
    /* CodeSha256 is the uploaded package's (AWS): ask which artifact that is */
    c->out = body;
    path = gw_actl_fn_path(c, "/package");
    if (gw_actl_query(&path, "package", cJSON_GetObjectItemCaseSensitive(body, "code_sha256")->valuestring) != ML_OK)
        path = NULL;
    gw_actl_send(c, GW_SVC_BUILD_MASTER, "GET", path, NULL, NULL, publish_with);
}

static void listed_versions(gw_actl *c, gw_xfer *x)
{
    cJSON *doc, *out, *arr;
    const cJSON *v;
    gw_aws_where w = gw_awsops_where(c);

    if (answer_doc(c, x, &doc) != ML_OK)
        return;
    out = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(out, "Versions");
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(doc, "versions"))
        cJSON_AddItemToArray(arr, gw_aws_shape_config(&w, v, 1));
    reply_page(c, doc, out);
}

void gw_awsop_list_versions(gw_actl *c, gw_xfer *x)
{
    (void)x;
    list_native(c, "/versions", listed_versions);
}

/* ---- aliases ---- */

static void alias_answer(gw_actl *c, gw_xfer *x)
{
    cJSON *doc, *out;
    gw_aws_where w = gw_awsops_where(c);
    int st = x && x->result == GW_XFER_OK ? (int)x->status : 0;

    if (st != 200 && st != 201) {
        gw_actl_upstream_fail(c, x);
        return;
    }
    doc = gw_actl_json(x);
    gw_xfer_free(x);
    out = doc ? gw_aws_shape_alias(&w, c->fn.name, doc) : NULL;
    cJSON_Delete(doc);
    if (!out) {
        gw_actl_fail(c, 502, "ServiceException", "the lambda-executor's answer is not readable");
        return;
    }
    gw_actl_reply(c, c->n ? c->n : st, out);
}

/* RoutingConfig.AdditionalVersionWeights as the native routing ({} clears it). */
static int routing_field(gw_actl *c, const cJSON *rc, cJSON *body)
{
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(rc, "AdditionalVersionWeights");

    if (!cJSON_IsObject(rc) || (w && !cJSON_IsObject(w))) {
        gw_actl_fail(c, 400, "InvalidParameterValueException",
                     "RoutingConfig must be {\"AdditionalVersionWeights\":{\"<version>\":<weight>}}");
        return ML_ERR;
    }
    cJSON_AddItemToObject(body, "routing", w ? cJSON_Duplicate(w, 1) : cJSON_CreateObject());
    return ML_OK;
}

/* The native alias body of a CreateAlias/UpdateAlias request; NULL with the call ended. */
static cJSON *alias_body(gw_actl *c)
{
    cJSON *body = cJSON_CreateObject();
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->in, "FunctionVersion");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(c->in, "Description");
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(c->in, "RoutingConfig");

    if ((v && !cJSON_IsString(v)) || (d && !cJSON_IsString(d))) {
        cJSON_Delete(body);
        gw_actl_fail(c, 400, "InvalidParameterValueException",
                     "FunctionVersion and Description must be strings");
        return NULL;
    }
    if (v)
        cJSON_AddStringToObject(body, "version", v->valuestring);
    if (d)
        cJSON_AddStringToObject(body, "description", d->valuestring);
    if (rc && routing_field(c, rc, body) != ML_OK) {
        cJSON_Delete(body);
        return NULL;
    }
    return body;
}

/* The alias name of the path (or of CreateAlias's body); NULL with the call ended. */
static const char *alias_name(gw_actl *c, bool from_body)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(c->in, "Name");
    const char *name = from_body ? (cJSON_IsString(n) ? n->valuestring : NULL)
                                 : httpd_param(c->req, "alias");

    if (gw_awsops_unqualified(c) != ML_OK)
        return NULL;
    if (!name || gw_awsarn_qualifier_valid(name) != ML_OK || strcmp(name, "$LATEST") == 0) {
        gw_actl_fail(c, 400, "InvalidParameterValueException",
                     "an alias Name is 1-128 of A-Za-z0-9_- (not all digits, not $LATEST)");
        return NULL;
    }
    return name;
}

/* PUT of the alias: create (If-None-Match, 201) or update (If-Match, 200). */
static void put_alias(gw_actl *c, bool create)
{
    const char *name = alias_name(c, create);
    cJSON *body;

    if (!name || !(body = alias_body(c)))
        return;
    c->n = create ? 201 : 200;
    gw_actl_send(c, GW_SVC_EXECUTOR, "PUT", gw_actl_fn_path_seg(c, "/aliases/", name), body,
                 create ? "If-None-Match: *" : "If-Match: *", alias_answer);
}

void gw_awsop_create_alias(gw_actl *c, gw_xfer *x)
{
    (void)x;
    put_alias(c, true);
}

void gw_awsop_update_alias(gw_actl *c, gw_xfer *x)
{
    (void)x;
    put_alias(c, false);
}

void gw_awsop_get_alias(gw_actl *c, gw_xfer *x)
{
    const char *name = alias_name(c, false);

    (void)x;
    if (name)
        gw_actl_send(c, GW_SVC_EXECUTOR, "GET", gw_actl_fn_path_seg(c, "/aliases/", name), NULL,
                     NULL, alias_answer);
}

void gw_awsop_delete_alias(gw_actl *c, gw_xfer *x)
{
    const char *name = alias_name(c, false);

    (void)x;
    if (name)
        gw_actl_send(c, GW_SVC_EXECUTOR, "DELETE", gw_actl_fn_path_seg(c, "/aliases/", name), NULL,
                     NULL, gw_awsops_no_content);
}

static void listed_aliases(gw_actl *c, gw_xfer *x)
{
    cJSON *doc, *out, *arr;
    const cJSON *a;
    const char *only = httpd_query(c->req, "FunctionVersion");
    gw_aws_where w = gw_awsops_where(c);

    if (answer_doc(c, x, &doc) != ML_OK)
        return;
    out = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(out, "Aliases");
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(doc, "aliases")) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(a, "version");
        if (!only || (cJSON_IsString(v) && strcmp(v->valuestring, only) == 0))
            cJSON_AddItemToArray(arr, gw_aws_shape_alias(&w, c->fn.name, a));
    }
    reply_page(c, doc, out);
}

void gw_awsop_list_aliases(gw_actl *c, gw_xfer *x)
{
    (void)x;
    list_native(c, "/aliases", listed_aliases);
}

/* ---- reserved concurrency: the native concurrency field ---- */

static void concurrency_set(gw_actl *c, gw_xfer *x)
{
    cJSON *doc, *out;
    const cJSON *n;

    if (answer_doc(c, x, &doc) != ML_OK)
        return;
    out = cJSON_CreateObject();
    n = cJSON_GetObjectItemCaseSensitive(doc, "concurrency");
    if (cJSON_IsNumber(n))
        cJSON_AddNumberToObject(out, "ReservedConcurrentExecutions", n->valuedouble);
    cJSON_Delete(doc);
    gw_actl_reply(c, 200, out);
}

void gw_awsop_put_concurrency(gw_actl *c, gw_xfer *x)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(c->in, "ReservedConcurrentExecutions");
    cJSON *body;

    (void)x;
    if (gw_awsops_unqualified(c) != ML_OK)
        return;
    if (!cJSON_IsNumber(n)) {
        gw_actl_fail(c, 400, "InvalidParameterValueException", "ReservedConcurrentExecutions is required");
        return;
    }
    body = cJSON_CreateObject();
    cJSON_AddNumberToObject(body, "concurrency", n->valuedouble);
    gw_actl_send(c, GW_SVC_EXECUTOR, "PATCH", gw_actl_fn_path(c, NULL), body, NULL, concurrency_set);
}

void gw_awsop_get_concurrency(gw_actl *c, gw_xfer *x)
{
    (void)x;
    if (gw_awsops_unqualified(c) == ML_OK)
        gw_awsops_get_native(c, NULL, concurrency_set);
}

void gw_awsop_delete_concurrency(gw_actl *c, gw_xfer *x)
{
    cJSON *body = cJSON_CreateObject();

    (void)x;
    if (gw_awsops_unqualified(c) != ML_OK) {
        cJSON_Delete(body);
        return;
    }
    cJSON_AddNullToObject(body, "concurrency");
    patch_native(c, body);
}

/* ---- tags: the native tags field, on a function ARN ---- */

/* The {arn} of the path as the call's function; ML_ERR with the call ended. */
static int tag_target(gw_actl *c)
{
    const char *arn = httpd_param(c->req, "arn");

    if (gw_awsarn_parse(arn, &c->fn) != ML_OK || c->fn.qualifier[0]) {
        gw_actl_fail(c, 400, "InvalidParameterValueException", "Resource must be a function ARN");
        return ML_ERR;
    }
    if (c->fn.account[0] && strcmp(c->fn.account, c->account) != 0) {
        gw_actl_fail(c, 404, "ResourceNotFoundException", "Function not found: %s", arn);
        return ML_ERR;
    }
    return ML_OK;
}

void gw_awsop_tag_resource(gw_actl *c, gw_xfer *x)
{
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(c->in, "Tags");
    cJSON *body;

    (void)x;
    if (tag_target(c) != ML_OK)
        return;
    if (!cJSON_IsObject(tags)) {
        gw_actl_fail(c, 400, "InvalidParameterValueException", "Tags must be an object");
        return;
    }
    body = cJSON_CreateObject();
    cJSON_AddItemToObject(body, "tags", cJSON_Duplicate(tags, 1));
    patch_native(c, body);
}

/* httpd_query_each: every tagKeys value becomes "key": null (PATCH removes it). */
static void untag_key(void *ud, const char *key, const char *value)
{
    if (strcmp(key, "tagKeys") == 0 && value)
        cJSON_AddNullToObject(ud, value);
}

void gw_awsop_untag_resource(gw_actl *c, gw_xfer *x)
{
    cJSON *body, *tags;

    (void)x;
    if (tag_target(c) != ML_OK)
        return;
    body = cJSON_CreateObject();
    tags = cJSON_AddObjectToObject(body, "tags");
    httpd_query_each(c->req, untag_key, tags);
    patch_native(c, body);
}

static void listed_tags(gw_actl *c, gw_xfer *x)
{
    cJSON *doc, *out;
    const cJSON *tags;

    if (answer_doc(c, x, &doc) != ML_OK)
        return;
    out = cJSON_CreateObject();
    tags = cJSON_GetObjectItemCaseSensitive(doc, "tags");
    cJSON_AddItemToObject(out, "Tags", cJSON_IsObject(tags) ? cJSON_Duplicate(tags, 1) : cJSON_CreateObject());
    cJSON_Delete(doc);
    gw_actl_reply(c, 200, out);
}

void gw_awsop_list_tags(gw_actl *c, gw_xfer *x)
{
    (void)x;
    if (tag_target(c) == ML_OK)
        gw_awsops_get_native(c, NULL, listed_tags);
}
