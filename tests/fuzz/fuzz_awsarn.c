/* libFuzzer target: services/gateway/awsarn.c — the FunctionName/ARN parser (a path segment
 * or body field of every AWS control-plane call, untrusted). Oracles, besides ASan/UBSan
 * (the input sits in an exactly-sized NUL-terminated buffer):
 *   - an accepted name is 1-64 of [A-Za-z0-9_-], a qualifier empty or valid, an account
 *     empty or 12 digits;
 *   - formatting the parse as a full ARN and parsing that gives the same name, qualifier and
 *     account (a round trip never changes what a caller meant);
 *   - a refusal leaves nothing behind in the output. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "awsarn.h"
#include "ml.h"

static void check_fields(const gw_aws_fname *f)
{
    size_t n = strlen(f->name), a = strlen(f->account);

    if (n == 0 || n > GW_AWS_NAME_MAX || strspn(f->name, "abcdefghijklmnopqrstuvwxyz"
                                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != n)
        abort();
    if (f->qualifier[0] && gw_awsarn_qualifier_valid(f->qualifier) != ML_OK)
        abort();
    if (a != 0 && (a != GW_AWS_ACCOUNT_LEN || strspn(f->account, "0123456789") != a))
        abort();
}

static void round_trip(const gw_aws_fname *f)
{
    char arn[256];
    gw_aws_fname g;

    if (gw_awsarn_format(arn, sizeof(arn), f->region[0] ? f->region : "us-east-1",
                         f->account[0] ? f->account : "000000000000", f->name,
                         f->qualifier) != ML_OK ||
        gw_awsarn_parse(arn, &g) != ML_OK || strcmp(f->name, g.name) != 0 ||
        strcmp(f->qualifier, g.qualifier) != 0 ||
        (f->account[0] && strcmp(f->account, g.account) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    gw_aws_fname f;

    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (gw_awsarn_parse(s, &f) == ML_OK) {
        check_fields(&f);
        round_trip(&f);
    } else if (f.name[0] || f.qualifier[0] || f.account[0] || f.region[0]) {
        abort();
    }
    free(s);
    return 0;
}
