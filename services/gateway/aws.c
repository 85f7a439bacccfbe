/* aws.c — AWS Lambda Invoke API responses (see aws.h). */
#include "aws.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "headers.h"

const char *gw_aws_error_type(int status)
{
    switch (status) {
    case 400: return "InvalidRequestContentException";
    case 401: return "UnrecognizedClientException";
    case 403: return "AccessDeniedException";
    case 404: return "ResourceNotFoundException";
    case 409: return "ResourceConflictException";
    case 413: return "RequestTooLargeException";
    case 415: return "UnsupportedMediaTypeException";
    case 429: return "TooManyRequestsException";
    default: return status >= 500 ? "ServiceException" : "InvalidRequestContentException";
    }
}

/* The message of a {"error":{"message"}} body, or a generic one. */
static char *error_message(const ml_buf *body)
{
    cJSON *doc = body->len ? cJSON_ParseWithLength(body->data, body->len) : NULL;
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "error"), "message");
    char *out = strdup(cJSON_IsString(msg) ? msg->valuestring : "the request failed");

    cJSON_Delete(doc);
    return out;
}

void gw_aws_error(httpd_resp *resp)
{
    int status = resp->status ? resp->status : 500;
    char *msg = error_message(&resp->body);
    cJSON *doc = cJSON_CreateObject();

    cJSON_AddStringToObject(doc, "Type", status >= 500 ? "Service" : "User");
    cJSON_AddStringToObject(doc, "message", msg ? msg : "the request failed");
    free(msg);
    if (!gw_hdr_resp_has(resp, "x-amzn-ErrorType"))
        httpd_resp_header(resp, "x-amzn-ErrorType", gw_aws_error_type(status));
    if (!gw_hdr_resp_has(resp, "x-amzn-RequestId") && resp->request_id)
        httpd_resp_header(resp, "x-amzn-RequestId", resp->request_id);
    httpd_resp_json(resp, status, doc);
}

/* Whether path is under an AWS API's date prefix ("/2015-03-31/...", "/2016-08-19/..."). */
static bool aws_path(const char *path)
{
    static const char shape[] = "/dddd-dd-dd/";

    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd' ? (path[i] < '0' || path[i] > '9') : path[i] != shape[i])
            return false;
    }
    return true;
}

void gw_aws_shape_reject(const httpd_req *req, httpd_resp *resp, void *ud)
{
    ML_UNUSED(ud);
    if (!aws_path(httpd_path(req)))
        return;
    if (resp->status == 404 || resp->status == 405) {
        /* an operation minilambda does not implement: say so in a shape every SDK reads,
         * never the native "no such route" (docs/aws-compat.md lists what is supported) */
        httpd_resp_error(resp, 400, "unknown_operation",
                         "minilambda does not support the Lambda operation %s %s "
                         "(docs/aws-compat.md lists the supported ones)",
                         httpd_method(req), httpd_path(req));
        httpd_resp_header(resp, "x-amzn-ErrorType", "UnknownOperationException");
    }
    gw_aws_error(resp);
}

/* Copies header `from` of the executor's response to the client as `to`. */
static void rename_header(const ml_buf *pairs, httpd_resp *resp, const char *from, const char *to)
{
    const char *v = gw_hdr_pairs_get(pairs, from);

    if (v && !gw_hdr_resp_has(resp, to))
        httpd_resp_header(resp, to, v);
}

/* The invocation id of an Event response, from its header or its JSON body. */
static void event_invocation_id(const ml_buf *pairs, httpd_resp *resp)
{
    cJSON *doc;
    const cJSON *id;

    if (gw_hdr_pairs_get(pairs, "X-Invocation-Id")) {
        rename_header(pairs, resp, "X-Invocation-Id", "X-Invocation-Id");
        return;
    }
    doc = resp->body.len ? cJSON_ParseWithLength(resp->body.data, resp->body.len) : NULL;
    id = cJSON_GetObjectItemCaseSensitive(doc, "invocation_id");
    if (cJSON_IsString(id))
        httpd_resp_header(resp, "X-Invocation-Id", id->valuestring);
    cJSON_Delete(doc);
}

void gw_aws_invoke_response(const ml_buf *pairs, httpd_resp *resp)
{
    const char *ctype = gw_hdr_pairs_get(pairs, "Content-Type");

    httpd_resp_header(resp, "x-amzn-RequestId", resp->request_id ? resp->request_id : "");
    rename_header(pairs, resp, "Retry-After", "Retry-After");
    if (gw_hdr_pairs_get(pairs, "X-Function-Error")) {
        resp->status = 200;
        httpd_resp_header(resp, "X-Amz-Function-Error", "Unhandled");
    } else if (resp->status == 202 || resp->status == 204) {
        if (resp->status == 202)
            event_invocation_id(pairs, resp);
        ml_buf_reset(&resp->body);
        return;
    } else if (resp->status != 200) {
        gw_aws_error(resp);
        return;
    }
    /* the version that ran ($LATEST or a published number, docs/versions.md); an executor
     * from before versions only has the code revision */
    rename_header(pairs, resp, "X-Executed-Version", "X-Amz-Executed-Version");
    rename_header(pairs, resp, "X-Function-Version", "X-Amz-Executed-Version");
    rename_header(pairs, resp, "X-Log-Result", "X-Amz-Log-Result");
    rename_header(pairs, resp, "X-Invocation-Id", "X-Invocation-Id");
    resp->content_type = ctype ? gw_ctype_intern(ctype) : "application/json";
}
