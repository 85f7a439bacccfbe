/* awsctl.c — the AWS control plane's operation table and its engine: parse on the HTTP
 * thread, run the steps on a proxy loop, answer in AWS's dialect (see awsctl.h). */
#include "awsctl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "headers.h"
#include "jsoncheck.h"
#include "log.h"
#include "sigv4.h"

#define ACTL_TIMEOUT_MS 30000
#define ACTL_MAX_RESPONSE (8u * 1024u * 1024u)

static const gw_aws_op ops[] = {
    { "CreateFunction", gw_awsop_create_function, false, true },
    { "GetFunction", gw_awsop_get_function, true, false },
    { "GetFunctionConfiguration", gw_awsop_get_configuration, true, false },
    { "ListFunctions", gw_awsop_list_functions, false, false },
    { "UpdateFunctionCode", gw_awsop_update_code, true, true },
    { "UpdateFunctionConfiguration", gw_awsop_update_configuration, true, true },
    { "DeleteFunction", gw_awsop_delete_function, true, false },
    { "GetAccountSettings", gw_awsop_account_settings, false, false },
    { "PublishVersion", gw_awsop_publish_version, true, true },
    { "ListVersionsByFunction", gw_awsop_list_versions, true, false },
    { "CreateAlias", gw_awsop_create_alias, true, true },
    { "GetAlias", gw_awsop_get_alias, true, false },
    { "UpdateAlias", gw_awsop_update_alias, true, true },
    { "DeleteAlias", gw_awsop_delete_alias, true, false },
    { "ListAliases", gw_awsop_list_aliases, true, false },
    { "PutFunctionConcurrency", gw_awsop_put_concurrency, true, true },
    { "GetFunctionConcurrency", gw_awsop_get_concurrency, true, false },
    { "DeleteFunctionConcurrency", gw_awsop_delete_concurrency, true, false },
    { "TagResource", gw_awsop_tag_resource, false, true },
    { "UntagResource", gw_awsop_untag_resource, false, false },
    { "ListTags", gw_awsop_list_tags, false, false },
};

const gw_aws_op *gw_awsctl_op(const char *name)
{
    for (size_t i = 0; name && i < ML_ARRAY_LEN(ops); i++)
        if (strcmp(ops[i].name, name) == 0)
            return &ops[i];
    return NULL;
}

const char *gw_actl_region(const gw_actl *c)
{
    return c->app->cfg.aws_region && c->app->cfg.aws_region[0] ? c->app->cfg.aws_region
                                                                 : "us-east-1";
}

/* ---- ending a call ---- */

static void actl_free(gw_actl *c)
{
    cJSON_Delete(c->in);
    cJSON_Delete(c->acc);
    cJSON_Delete(c->out);
    free(c->body);
    free(c);
}

static void actl_end(gw_actl *c)
{
    httpd_req *req = c->req;

    actl_free(c);
    httpd_complete(req);
}

void gw_actl_reply(gw_actl *c, int status, cJSON *doc)
{
    httpd_resp *resp = c->resp;

    if (resp->request_id)
        httpd_resp_header(resp, "x-amzn-RequestId", resp->request_id);
    if (doc) {
        httpd_resp_json(resp, status, doc); /* frees doc */
    } else {
        resp->status = status;
        ml_buf_reset(&resp->body);
    }
    actl_end(c);
}

void gw_actl_reply_body(gw_actl *c, gw_xfer *x, const char *ctype)
{
    httpd_resp *resp = c->resp;

    resp->status = 200;
    resp->content_type = ctype;
    ml_buf_free(&resp->body);
    resp->body = x->resp_body;
    memset(&x->resp_body, 0, sizeof(x->resp_body));
    gw_xfer_free(x);
    actl_end(c);
}

/* Writes an AWS error into resp (no call needed: the HTTP thread's refusals use it too). */
static void aws_error_v(httpd_resp *resp, int status, const char *type, const char *fmt,
                        va_list ap)
{
    ml_buf msg = { 0 };

    if (ml_buf_vprintf(&msg, fmt, ap) != ML_OK)
        ml_buf_reset(&msg);
    httpd_resp_error(resp, status, "aws", "%s", msg.len ? ml_buf_cstr(&msg) : "the request failed");
    ml_buf_free(&msg);
    httpd_resp_header(resp, "x-amzn-ErrorType", type);
    gw_aws_error(resp);
}

static void aws_error(httpd_resp *resp, int status, const char *type, const char *fmt, ...)
    ML_PRINTF(4, 5);
static void aws_error(httpd_resp *resp, int status, const char *type, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    aws_error_v(resp, status, type, fmt, ap);
    va_end(ap);
}

void gw_actl_fail(gw_actl *c, int status, const char *type, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    aws_error_v(c->resp, status, type, fmt, ap);
    va_end(ap);
    actl_end(c);
}

/* The exception for a native error answer: by status, with the native code refining it. */
static const char *native_type(long status, const char *code)
{
    switch (status) {
    case 400: return "InvalidParameterValueException";
    case 403: return "AccessDeniedException";
    case 404: return "ResourceNotFoundException";
    case 409: return "ResourceConflictException";
    case 412: return "PreconditionFailedException";
    case 413: return "RequestTooLargeException";
    case 429: return "TooManyRequestsException";
    default:
        (void)code;
        return status >= 500 ? "ServiceException" : "InvalidParameterValueException";
    }
}

void gw_actl_upstream_fail(gw_actl *c, gw_xfer *x)
{
    cJSON *doc = x ? gw_actl_json(x) : NULL;
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
    long st = x && x->result == GW_XFER_OK ? x->status : 503;

    if (st < 400) /* an unexpected success shape: the platform's fault, not the caller's */
        st = 502;
    if (!x || x->result != GW_XFER_OK)
        aws_error(c->resp, 503, "ServiceException", "%s is not available right now",
                  x && x->pool ? x->pool->service : "the platform");
    else
        aws_error(c->resp, (int)st, native_type(st, cJSON_IsString(code) ? code->valuestring : ""),
                  "%s", cJSON_IsString(msg) ? msg->valuestring : "the request failed");
    if (st == 429 || st == 503)
        httpd_resp_header(c->resp, "Retry-After", "1");
    cJSON_Delete(doc);
    gw_xfer_free(x);
    actl_end(c);
}

cJSON *gw_actl_json(const gw_xfer *x)
{
    if (!x || x->result != GW_XFER_OK || !x->resp_body.len)
        return NULL;
    return cJSON_ParseWithLength(x->resp_body.data, x->resp_body.len);
}

bool gw_actl_ok(const gw_xfer *x, long want)
{
    return x && x->result == GW_XFER_OK && x->status == want;
}

/* ---- native requests ---- */

char *gw_actl_fn_path_seg(const gw_actl *c, const char *suffix, const char *seg)
{
    ml_buf b = { 0 };

    if (ml_buf_append_str(&b, "/functions/") != ML_OK ||
        gw_sigv4_uri_encode(c->fn.name, strlen(c->fn.name), &b) != ML_OK ||
        (suffix && ml_buf_append_str(&b, suffix) != ML_OK) ||
        (seg && gw_sigv4_uri_encode(seg, strlen(seg), &b) != ML_OK)) {
        ml_buf_free(&b);
        return NULL;
    }
    return ml_buf_steal(&b, NULL);
}

char *gw_actl_fn_path(const gw_actl *c, const char *suffix)
{
    return gw_actl_fn_path_seg(c, suffix, NULL);
}

int gw_actl_query(char **path, const char *k, const char *v)
{
    ml_buf b = { 0 };

    if (!*path)
        return ML_ERR;
    if (!v)
        return ML_OK;
    if (ml_buf_printf(&b, "%s%c%s=", *path, strchr(*path, '?') ? '&' : '?', k) != ML_OK ||
        gw_sigv4_uri_encode(v, strlen(v), &b) != ML_OK) {
        ml_buf_free(&b);
        free(*path);
        *path = NULL;
        return ML_ERR;
    }
    free(*path);
    *path = ml_buf_steal(&b, NULL);
    return ML_OK;
}

static int add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);

    if (!n)
        return ML_ERR;
    *list = n;
    return ML_OK;
}

/* The headers every native request carries: the request id, the namespace, JSON. */
static int base_headers(gw_actl *c, gw_xfer *x, const char *extra)
{
    char rid[200], ns[sizeof(TENANT_HEADER) + TENANT_MAX + 2];

    if (ml_snprintf(rid, sizeof(rid), "X-Request-Id: %s", c->rid) != ML_OK ||
        ml_snprintf(ns, sizeof(ns), TENANT_HEADER ": %s", c->ns) != ML_OK ||
        add_header(&x->headers, rid) != ML_OK || add_header(&x->headers, ns) != ML_OK ||
        add_header(&x->headers, "Content-Type: application/json") != ML_OK ||
        gw_hdr_reveal_secrets(&x->headers, c->scopes) != ML_OK ||
        (extra && add_header(&x->headers, extra) != ML_OK))
        return ML_ERR;
    return ML_OK;
}

/* The step a transfer's answer goes to, kept with the transfer. */
typedef struct actl_hop {
    gw_actl *c;
    gw_actl_fn next;
} actl_hop;

static void on_native_done(gw_xfer *x)
{
    actl_hop *h = x->ud;
    gw_actl *c = h->c;
    gw_actl_fn next = h->next;

    free(h);
    x->ud = NULL;
    free(c->body);
    c->body = NULL;
    ml_log_set_request_id(c->rid);
    next(c, x);
    ml_log_set_request_id(NULL);
}

static void actl_send(gw_actl *c, gw_service svc, const char *method, char *path, cJSON *body,
                      const char *extra, size_t max, gw_actl_fn next);

void gw_actl_send(gw_actl *c, gw_service svc, const char *method, char *path, cJSON *body,
                  const char *extra, gw_actl_fn next)
{
    actl_send(c, svc, method, path, body, extra, ACTL_MAX_RESPONSE, next);
}

void gw_actl_send_max(gw_actl *c, gw_service svc, char *path, size_t max, gw_actl_fn next)
{
    actl_send(c, svc, "GET", path, NULL, NULL, max, next);
}

static void actl_send(gw_actl *c, gw_service svc, const char *method, char *path, cJSON *body,
                      const char *extra, size_t max, gw_actl_fn next)
{
    gw_pool *pool = &c->app->pools[svc];
    gw_xfer *x = gw_xfer_new();
    actl_hop *h = malloc(sizeof(*h));
    unsigned cap = strcmp(method, "GET") == 0 ? GW_CAP_READ : GW_CAP_WRITE;

    free(c->body);
    c->body = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (!x || !h || !path || (body && !c->body) || base_headers(c, x, extra) != ML_OK) {
        free(path);
        free(h);
        gw_xfer_free(x);
        gw_actl_fail(c, 500, "ServiceException", "cannot prepare the native request");
        return;
    }
    if (svc == GW_SVC_BUILD_MASTER && strcmp(method, "DELETE") != 0)
        cap = GW_CAP_BUILD;
    *h = (actl_hop){ c, next };
    x->path = path;
    x->method = method;
    x->body = c->body;
    x->body_len = c->body ? strlen(c->body) : 0;
    x->timeout_ms = ACTL_TIMEOUT_MS;
    x->connect_timeout_ms = (long)c->app->cfg.connect_timeout_ms;
    x->max_response = max;
    x->done = on_native_done;
    x->ud = h;
    x->pool = pool;
    x->cap = cap;
    x->inst = gw_pool_pick(pool, cap, NULL, ml_now_ms(), &x->admit);
    if (!x->inst) {
        gw_xfer_free(x);
        free(h);
        httpd_resp_header(c->resp, "Retry-After", "1");
        gw_actl_fail(c, 503, "ServiceException", "no %s instance is available right now",
                     pool->service);
        return;
    }
    gw_loop_start(c->loop, x);
}

/* ---- from the HTTP thread to a loop ---- */

static void actl_run(gw_loop *l, gw_task *t, bool cancelled)
{
    gw_actl *c = (gw_actl *)((char *)t - offsetof(gw_actl, task));

    c->loop = l;
    ml_log_set_request_id(c->rid);
    if (cancelled)
        gw_actl_fail(c, 503, "ServiceException", "the gateway is shutting down");
    else
        c->op->start(c, NULL);
    ml_log_set_request_id(NULL);
}

/* The path's FunctionName: parsed, and an ARN naming another account than the
 * namespace's is a function that does not exist (docs/aws-compat.md). */
static int parse_fn(gw_actl *c, httpd_resp *resp)
{
    const char *fn = httpd_param(c->req, "fn");

    if (gw_awsarn_parse(fn, &c->fn) != ML_OK) {
        aws_error(resp, 400, "InvalidParameterValueException",
                  "FunctionName must be a name, name:qualifier, or a function ARN");
        return ML_ERR;
    }
    if (c->fn.account[0] && strcmp(c->fn.account, c->account) != 0) {
        aws_error(resp, 404, "ResourceNotFoundException", "Function not found: %s", fn);
        return ML_ERR;
    }
    return ML_OK;
}

/* The JSON body, strictly parsed (an empty body is an empty object). */
static int parse_body(gw_actl *c, httpd_resp *resp)
{
    size_t len = 0;
    const char *body = httpd_body(c->req, &len);
    jsoncheck_error e = { 0, NULL };

    c->in = len ? jsoncheck_parse(body, len, &e) : cJSON_CreateObject();
    if (!cJSON_IsObject(c->in)) {
        aws_error(resp, 400, "InvalidRequestContentException",
                  "the request body must be a JSON object%s%s", e.why ? ": " : "",
                  e.why ? e.why : "");
        return ML_ERR;
    }
    return ML_OK;
}

httpd_result gw_awsctl_start(gw_app *a, const gw_aws_op *op, httpd_req *req, httpd_resp *resp,
                             const char *ns, unsigned scopes, const char *fn)
{
    gw_actl *c = calloc(1, sizeof(*c));

    if (!c) {
        aws_error(resp, 500, "ServiceException", "cannot prepare the operation");
        return HTTPD_DONE;
    }
    c->app = a;
    c->op = op;
    c->req = req;
    c->resp = resp;
    c->scopes = scopes;
    c->task.run = actl_run;
    ml_strlcpy(c->rid, httpd_request_id(req), sizeof(c->rid));
    ml_strlcpy(c->ns, ns, sizeof(c->ns)); /* a valid name: fits */
    gw_awsarn_account(ns, c->account);
    if (fn)
        ml_strlcpy(c->fn.name, fn, sizeof(c->fn.name)); /* checked to fit by the caller */
    if ((op->needs_fn && parse_fn(c, resp) != ML_OK) ||
        (op->json_body && parse_body(c, resp) != ML_OK)) {
        actl_free(c);
        return HTTPD_DONE;
    }
    gw_proxy_run(a->proxy, &c->task);
    return HTTPD_ASYNC;
}

httpd_result gw_awsctl_handle(gw_app *a, const gw_route_def *d, httpd_req *req, httpd_resp *resp,
                              const gw_principal *who, const char *ns)
{
    const gw_aws_op *op = gw_awsctl_op(d->aws_op);

    if (!op) {
        aws_error(resp, 500, "ServiceException", "cannot prepare the operation");
        return HTTPD_DONE;
    }
    return gw_awsctl_start(a, op, req, resp, ns, who->scopes, NULL);
}
