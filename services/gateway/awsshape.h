/* awsshape.h — native JSON documents (docs/versions.md, API.md) as the AWS Lambda API's
 * shapes: FunctionConfiguration, AliasConfiguration, and AWS's timestamp and hash formats.
 * Pure functions over cJSON; thread-safe. */
#ifndef GW_AWSSHAPE_H
#define GW_AWSSHAPE_H

#include <cJSON.h>
#include <stddef.h>

/* Where the ARNs of a shape point. */
typedef struct gw_aws_where {
    const char *region;
    const char *account;
} gw_aws_where;

/* A FunctionConfiguration from a native function record (GET /functions/{fn}) or version
 * document (GET /functions/{fn}/versions/{v}). qualified: the FunctionArn carries the
 * version (an AWS caller asked for one). New object, caller frees; NULL when out of memory. */
cJSON *gw_aws_shape_config(const gw_aws_where *w, const cJSON *native, int qualified);

/* An AliasConfiguration from a native alias document; fn is the function's name. */
cJSON *gw_aws_shape_alias(const gw_aws_where *w, const char *fn, const cJSON *alias);

/* "2026-12-07T04:13:57.123Z" (the native format) -> "2026-12-07T04:13:57.123+0000" into
 * out; anything else is copied as it is. */
void gw_aws_shape_time(const char *native, char *out, size_t outlen);

/* A sha256 in hex -> base64 of its 32 bytes (AWS's CodeSha256) into out (>= 45 bytes);
 * "" when hex is not 64 hex digits. */
void gw_aws_shape_sha256(const char *hex, char *out, size_t outlen);

/* The native "state" as AWS's State: pending -> Pending, active -> Active, failed -> Failed. */
const char *gw_aws_shape_state(const char *native);

#endif
