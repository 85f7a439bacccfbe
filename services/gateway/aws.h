/* aws.h — the AWS Lambda Invoke API dialect (POST /2015-03-31/functions/{name}/invocations)
 * on top of the executor's /functions/{fn}/invoke.
 *
 * Responses: RequestResponse 200 with the result; a function error (the executor's 502/504
 * with X-Function-Error) is 200 with X-Amz-Function-Error: Unhandled and the error document
 * as payload; Event 202 with an empty payload; DryRun 204. X-Function-Version becomes
 * X-Amz-Executed-Version, X-Log-Result X-Amz-Log-Result. Errors are
 * {"Type":"User"|"Service","message":"..."} with x-amzn-ErrorType naming the AWS exception
 * (ResourceNotFoundException, TooManyRequestsException, ...), which is what the SDKs
 * parse. Every response carries x-amzn-RequestId. */
#ifndef GW_AWS_H
#define GW_AWS_H

#include "buf.h"
#include "httpd.h"

/* The AWS exception name for an error status. */
const char *gw_aws_error_type(int status);

/* Rewrites an error response already in the contract's shape ({"error":{...}}) into the
 * AWS shape, keeping its status and headers. */
void gw_aws_error(httpd_resp *resp);

/* httpd_reject_fn: the refusals the HTTP server writes itself (413 of an over-long body,
 * 404, 405, 503 while draining) in the AWS shape on the AWS routes (/2015-03-31/...). */
void gw_aws_shape_reject(const httpd_req *req, httpd_resp *resp, void *ud);

/* Turns the executor's invoke response (status and body already in resp, its headers in
 * pairs) into the Invoke API's. */
void gw_aws_invoke_response(const ml_buf *pairs, httpd_resp *resp);

#endif
