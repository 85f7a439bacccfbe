/* awsarn.h — the AWS Lambda API's ways of naming a function, and the account a namespace
 * is (docs/aws-compat.md "Names and accounts").
 *
 * A FunctionName is untrusted input from a path or a body; AWS accepts four forms:
 *   name                                            my-fn
 *   name:qualifier                                  my-fn:live, my-fn:3, my-fn:$LATEST
 *   partial ARN                                     123456789012:function:my-fn[:qualifier]
 *   full ARN     arn:aws:lambda:us-east-1:123456789012:function:my-fn[:qualifier]
 * Names are 1-64 of [A-Za-z0-9_-] (a function id, a UUID, fits); qualifiers are $LATEST or
 * 1-128 of [A-Za-z0-9_-]. Pure functions; thread-safe. */
#ifndef GW_AWSARN_H
#define GW_AWSARN_H

#include <stddef.h>

#define GW_AWS_ACCOUNT_LEN 12
#define GW_AWS_NAME_MAX 64
#define GW_AWS_QUALIFIER_MAX 128
#define GW_AWS_REGION_MAX 32

typedef struct gw_aws_fname {
    char name[GW_AWS_NAME_MAX + 1];
    char qualifier[GW_AWS_QUALIFIER_MAX + 1]; /* "" when none was given */
    char account[GW_AWS_ACCOUNT_LEN + 1];     /* "" for the name forms */
    char region[GW_AWS_REGION_MAX + 1];       /* "" unless a full ARN */
} gw_aws_fname;

/* Parses a FunctionName in any of the four forms into out. ML_ERR when it is none of them
 * (the caller answers InvalidParameterValueException or, in a path, ResourceNotFound). */
int gw_awsarn_parse(const char *in, gw_aws_fname *out);

/* Whether q is a valid qualifier ($LATEST, a version number or an alias name). */
int gw_awsarn_qualifier_valid(const char *q);

/* The 12-digit account id of namespace ns into out: "000000000000" for default, otherwise
 * the first 40 bits of SHA-256(ns) as a number, modulo 10^12 (40 bits can reach 13 digits),
 * zero-padded. Always ML_OK for a name that fits. */
int gw_awsarn_account(const char *ns, char out[GW_AWS_ACCOUNT_LEN + 1]);

/* "arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]" into out; qualifier
 * NULL or "" for the unqualified ARN. ML_ERR when it does not fit. */
int gw_awsarn_format(char *out, size_t outlen, const char *region, const char *account,
                     const char *name, const char *qualifier);

#endif
