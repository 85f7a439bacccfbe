/* awsctl.h — the AWS Lambda control plane (docs/aws-compat.md): each operation of the
 * 2015-03-31 API that minilambda supports, translated into one or more native requests to
 * the build-master and the lambda-executor, and their answers into AWS's JSON shapes and
 * x-amzn-ErrorType errors.
 *
 * The gateway authenticates the request (SigV4 or Bearer) and decides its namespace as for
 * any route; gw_awsctl_handle then parses the body (HTTP thread, CPU only) and hands the
 * call to a proxy loop, where the operation runs as a chain of upstream exchanges: each step
 * sends one request (gw_actl_send) and names the step that gets its answer. Nothing blocks;
 * the call ends exactly once, in gw_actl_reply or gw_actl_fail. */
#ifndef GW_AWSCTL_H
#define GW_AWSCTL_H

#include <cJSON.h>

#include "auth.h"
#include "awsarn.h"
#include "gateway.h"
#include "ml.h"
#include "tenant.h"

typedef struct gw_actl gw_actl;

/* One step: x is the previous exchange's outcome (NULL for the first step); the step owns
 * it (gw_xfer_free, or hand it to gw_actl_upstream_fail). */
typedef void (*gw_actl_fn)(gw_actl *c, gw_xfer *x);

typedef struct gw_aws_op {
    const char *name;        /* "GetFunction", for logs */
    gw_actl_fn start;
    bool needs_fn;           /* the path's {fn} is a FunctionName to parse */
    bool json_body;          /* the body is a JSON document (parsed into c->in) */
} gw_aws_op;

struct gw_actl {
    gw_task task;
    gw_app *app;
    const gw_aws_op *op;
    httpd_req *req;
    httpd_resp *resp;
    gw_loop *loop;
    char rid[160];
    char ns[TENANT_MAX + 1];
    char account[GW_AWS_ACCOUNT_LEN + 1]; /* the namespace's (awsarn.h) */
    unsigned scopes;
    gw_aws_fname fn;         /* the path's FunctionName (needs_fn) */
    cJSON *in;               /* the request's JSON body, or NULL */
    cJSON *acc;              /* an operation's answer in the making, between steps */
    char *body;              /* the body of the exchange in flight (owned) */
    cJSON *out;              /* an answer waiting for a last lookup (owned) */
    cJSON *cfg;              /* the FunctionConfiguration inside out (borrowed) */
    int n;                   /* an operation's counter between steps */
    gw_actl_fn after_quota;  /* the step gw_awsops_build_quota continues with */
    char extra[128];         /* a header line for a native request, when one is needed */
};

/* The operation a GW_KIND_AWS_CTL route names (gw_route_def.aws_op); NULL when unknown. */
const gw_aws_op *gw_awsctl_op(const char *name);

/* HTTP thread, after authentication: parses and hands the call to a loop. HTTPD_DONE with
 * an AWS error in resp, or HTTPD_ASYNC. */
httpd_result gw_awsctl_handle(gw_app *a, const gw_route_def *d, httpd_req *req, httpd_resp *resp,
                              const gw_principal *who, const char *ns);

/* The same for an operation of the gateway's own (the code download): ns is the
 * namespace, scopes the caller's, fn the function name or id it is about (NULL: none). */
httpd_result gw_awsctl_start(gw_app *a, const gw_aws_op *op, httpd_req *req, httpd_resp *resp,
                             const char *ns, unsigned scopes, const char *fn);

/* GET /aws-code/{ns}/{id}: GetFunction's Code.Location, answered without credentials when
 * its signature holds (awscode.c). */
httpd_result gw_awscode_handle(gw_app *a, httpd_req *req, httpd_resp *resp);

/* Sends one native request: svc, method, path (encoded; consumed, freed here), body (a
 * JSON document, consumed; NULL for none), extra (one "Name: value" header or NULL); next
 * gets the answer. On a local failure the call ends with a ServiceException. */
void gw_actl_send(gw_actl *c, gw_service svc, const char *method, char *path, cJSON *body,
                  const char *extra, gw_actl_fn next);

/* "/functions/<name>" + suffix (suffix NULL = none), the name encoded; caller frees; NULL
 * when out of memory. */
char *gw_actl_fn_path(const gw_actl *c, const char *suffix);
/* The same with seg appended encoded: "/functions/<name><suffix><seg>". */
char *gw_actl_fn_path_seg(const gw_actl *c, const char *suffix, const char *seg);
/* Appends "?k=v" / "&k=v" (v encoded) to *path when v is not NULL; ML_ERR when out of
 * memory (then *path is freed and NULL). */
int gw_actl_query(char **path, const char *k, const char *v);

/* A GET of path on svc whose answer may be up to max bytes (the code download). */
void gw_actl_send_max(gw_actl *c, gw_service svc, char *path, size_t max, gw_actl_fn next);

/* Ends the call with x's body as it is (200, content type ctype); frees x. */
void gw_actl_reply_body(gw_actl *c, gw_xfer *x, const char *ctype);

/* Ends the call: status with doc as the JSON body (consumed; NULL = empty body). */
void gw_actl_reply(gw_actl *c, int status, cJSON *doc);
/* Ends the call with an AWS error of the given status and type. */
void gw_actl_fail(gw_actl *c, int status, const char *type, const char *fmt, ...) ML_PRINTF(4, 5);
/* Ends the call with the AWS error for a native answer that is not a success, or for an
 * exchange that failed; frees x. */
void gw_actl_upstream_fail(gw_actl *c, gw_xfer *x);
/* The JSON body of a native answer (NULL when it is not JSON); caller frees. */
cJSON *gw_actl_json(const gw_xfer *x);
/* Whether x is a native answer with status want. */
bool gw_actl_ok(const gw_xfer *x, long want);

/* The region ARNs name (MINILAMBDA_AWS_REGION). */
const char *gw_actl_region(const gw_actl *c);

/* ---- operations (awsfn.c, awsver.c) ---- */
void gw_awsop_create_function(gw_actl *c, gw_xfer *x);
void gw_awsop_get_function(gw_actl *c, gw_xfer *x);
void gw_awsop_get_configuration(gw_actl *c, gw_xfer *x);
void gw_awsop_list_functions(gw_actl *c, gw_xfer *x);
void gw_awsop_update_code(gw_actl *c, gw_xfer *x);
void gw_awsop_update_configuration(gw_actl *c, gw_xfer *x);
void gw_awsop_delete_function(gw_actl *c, gw_xfer *x);
void gw_awsop_account_settings(gw_actl *c, gw_xfer *x);
void gw_awsop_publish_version(gw_actl *c, gw_xfer *x);
void gw_awsop_list_versions(gw_actl *c, gw_xfer *x);
void gw_awsop_create_alias(gw_actl *c, gw_xfer *x);
void gw_awsop_get_alias(gw_actl *c, gw_xfer *x);
void gw_awsop_update_alias(gw_actl *c, gw_xfer *x);
void gw_awsop_delete_alias(gw_actl *c, gw_xfer *x);
void gw_awsop_list_aliases(gw_actl *c, gw_xfer *x);
void gw_awsop_put_concurrency(gw_actl *c, gw_xfer *x);
void gw_awsop_get_concurrency(gw_actl *c, gw_xfer *x);
void gw_awsop_delete_concurrency(gw_actl *c, gw_xfer *x);
void gw_awsop_tag_resource(gw_actl *c, gw_xfer *x);
void gw_awsop_untag_resource(gw_actl *c, gw_xfer *x);
void gw_awsop_list_tags(gw_actl *c, gw_xfer *x);

#endif
