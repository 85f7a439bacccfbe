/* awsarn.c — FunctionName/ARN parsing and the namespace's account id (see awsarn.h). */
#include "awsarn.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <openssl/sha.h>

#include "ml.h"

#define ARN_MAX_PARTS 8

/* 1..max of [A-Za-z0-9_-]. */
static bool word_ok(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

static bool qualifier_ok(const char *s, size_t len)
{
    return (len == 7 && strncmp(s, "$LATEST", 7) == 0) || word_ok(s, len, GW_AWS_QUALIFIER_MAX);
}

int gw_awsarn_qualifier_valid(const char *q)
{
    return q && qualifier_ok(q, strlen(q)) ? ML_OK : ML_ERR;
}

/* Splits s at ':' into at most ARN_MAX_PARTS (start, length) pairs; the count, or -1 when
 * there are more. */
static int split(const char *s, const char **start, size_t *len)
{
    int n = 0;

    for (;;) {
        size_t l = strcspn(s, ":");
        if (n == ARN_MAX_PARTS)
            return -1;
        start[n] = s;
        len[n++] = l;
        if (!s[l])
            return n;
        s += l + 1;
    }
}

static bool part_is(const char *s, size_t len, const char *want)
{
    return len == strlen(want) && strncmp(s, want, len) == 0;
}

static bool digits12(const char *s, size_t len)
{
    if (len != GW_AWS_ACCOUNT_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* The name and optional qualifier at parts[i..n): the shared tail of every form. */
static int name_tail(const char **p, const size_t *l, int i, int n, gw_aws_fname *out)
{
    if (n - i < 1 || n - i > 2 || !word_ok(p[i], l[i], GW_AWS_NAME_MAX))
        return ML_ERR;
    memcpy(out->name, p[i], l[i]);
    if (n - i == 2) {
        if (!qualifier_ok(p[i + 1], l[i + 1]))
            return ML_ERR;
        memcpy(out->qualifier, p[i + 1], l[i + 1]);
    }
    return ML_OK;
}

/* arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>] */
static int full_arn(const char **p, const size_t *l, int n, gw_aws_fname *out)
{
    if (n < 7 || !part_is(p[0], l[0], "arn") || l[1] < 3 || strncmp(p[1], "aws", 3) != 0 ||
        !part_is(p[2], l[2], "lambda") || !word_ok(p[3], l[3], GW_AWS_REGION_MAX) ||
        !digits12(p[4], l[4]) || !part_is(p[5], l[5], "function"))
        return ML_ERR;
    memcpy(out->region, p[3], l[3]);
    memcpy(out->account, p[4], l[4]);
    return name_tail(p, l, 6, n, out);
}

int gw_awsarn_parse(const char *in, gw_aws_fname *out)
{
    const char *p[ARN_MAX_PARTS];
    size_t l[ARN_MAX_PARTS];
    int n;

    memset(out, 0, sizeof(*out));
    if (!in || (n = split(in, p, l)) < 0)
        return ML_ERR;
    if (n >= 7 || part_is(p[0], l[0], "arn"))
        return full_arn(p, l, n, out) == ML_OK ? ML_OK : (memset(out, 0, sizeof(*out)), ML_ERR);
    if (n >= 3) { /* account:function:name[:qualifier] */
        if (!digits12(p[0], l[0]) || !part_is(p[1], l[1], "function") ||
            name_tail(p, l, 2, n, out) != ML_OK) {
            memset(out, 0, sizeof(*out));
            return ML_ERR;
        }
        memcpy(out->account, p[0], l[0]);
        return ML_OK;
    }
    if (name_tail(p, l, 0, n, out) != ML_OK) {
        memset(out, 0, sizeof(*out));
        return ML_ERR;
    }
    return ML_OK;
}

int gw_awsarn_account(const char *ns, char out[GW_AWS_ACCOUNT_LEN + 1])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    uint64_t v = 0;

    if (strcmp(ns, "default") == 0)
        return ml_strlcpy(out, "000000000000", GW_AWS_ACCOUNT_LEN + 1);
    SHA256((const unsigned char *)ns, strlen(ns), d);
    for (int i = 0; i < 5; i++) /* the first 40 bits, big-endian */
        v = (v << 8) | d[i];
    return ml_snprintf(out, GW_AWS_ACCOUNT_LEN + 1, "%012" PRIu64, v % UINT64_C(1000000000000));
}

int gw_awsarn_format(char *out, size_t outlen, const char *region, const char *account,
                     const char *name, const char *qualifier)
{
    if (qualifier && qualifier[0])
        return ml_snprintf(out, outlen, "arn:aws:lambda:%s:%s:function:%s:%s", region, account,
                           name, qualifier);
    return ml_snprintf(out, outlen, "arn:aws:lambda:%s:%s:function:%s", region, account, name);
}
