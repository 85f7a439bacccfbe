/* awsops.h — what the AWS operations (awsfn.c, awsver.c, awscode.c) share: the request's
 * qualifier and paging, the native fields of a configuration, the account's limits, and
 * the code download URL. All run on the call's loop thread; a function that can fail ends
 * the call itself (gw_actl_fail) and says so by its result. */
#ifndef GW_AWSOPS_H
#define GW_AWSOPS_H

#include <cJSON.h>

#include "awsctl.h"
#include "awsshape.h"

gw_aws_where gw_awsops_where(const gw_actl *c);

/* The qualifier asked for (the Qualifier query or the FunctionName's; "" for none), or
 * NULL with the call ended (invalid, or the two disagree). */
const char *gw_awsops_qualifier(gw_actl *c);
/* ML_OK when the FunctionName has no qualifier; else ML_ERR with the call ended. */
int gw_awsops_unqualified(gw_actl *c);

/* MaxItems and Marker onto a native list path as limit and cursor; ML_ERR with the call
 * ended (and *path freed and NULL). */
int gw_awsops_page(gw_actl *c, char **path);
/* The native list's next_cursor as out's NextMarker. */
void gw_awsops_next_marker(const cJSON *native, cJSON *out);

/* GET /functions/{fn}[?qualifier=q] on the executor; next gets the answer. */
void gw_awsops_get_native(gw_actl *c, const char *q, gw_actl_fn next);
/* An answer with no body (DeleteFunction, DeleteAlias, the PATCHes of concurrency and
 * tags): a native 204 or 200 ends the call with 204, anything else as the upstream's. */
void gw_awsops_no_content(gw_actl *c, gw_xfer *x);

/* The AWS configuration fields of in (Runtime, Handler, MemorySize, Timeout,
 * Environment.Variables, Description; create: Tags) as native fields on out. Role,
 * Publish, RevisionId are ignored; Architectures must be x86_64 and PackageType Zip; any
 * other field is refused. ML_ERR with the call ended. */
int gw_awsops_config_fields(gw_actl *c, const cJSON *in, cJSON *out, bool create);

/* A native-shaped record of a function just submitted (asked: the native create body
 * without the code; made: the build-master's 202 answer), state pending. New; caller frees. */
cJSON *gw_awsops_pending_record(const cJSON *asked, const cJSON *made);

/* The namespace's max_functions as the header the build-master enforces, or NULL when
 * unlimited (the line lives in c->extra). */
const char *gw_awsops_quota_header(gw_actl *c);

/* The namespace's builds_per_minute (docs/tenants.md), shared with the native POST
 * /functions and PUT /functions/{fn}/code: next(c, NULL) when within it, else the call
 * ends with TooManyRequestsException and Retry-After. */
void gw_awsops_build_quota(gw_actl *c, gw_actl_fn next);

/* GetAccountSettings' answer with AccountUsage zeroed (counted page by page after). New;
 * NULL when out of memory. */
cJSON *gw_awsops_account_limits(gw_actl *c);

/* Ends the call with c->out (status st) once c->cfg's CodeSha256/CodeSize show the
 * uploaded package's hash and size, as AWS's do (the executor's record has the built
 * artifact's; the build-master maps one to the other). native: the record or version
 * document c->cfg was made from. Without an answer from the build-master the artifact's
 * stay. */
void gw_awsops_reply_with_package(gw_actl *c, const cJSON *native, int st);

/* Code.Location for the function record native: a gateway URL with an expiring token that
 * downloads the function's ZIP without credentials (awscode.c). Caller frees; NULL if none. */
char *gw_awscode_location(gw_actl *c, const cJSON *native);

#endif
