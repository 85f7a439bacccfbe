/* libFuzzer target: services/gateway/fnurl_resp.c — what a function URL answers for what a
 * function returned (docs/http.md "The response"). The input is the function's result, i.e.
 * hostile code's output. Oracles, besides ASan/UBSan:
 *   - the status is 100..599;
 *   - every header name is a non-empty token and no value holds CR, LF or NUL (no response
 *     splitting, whatever the function sends);
 *   - the same input answered twice gives the same status, headers and body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fnurl.h"
#include "ml.h"

static void check_headers(const httpd_resp *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *n = r->headers[i].name, *v = r->headers[i].value;
        if (!*n || strcspn(n, "()<>@,;:\\\"/[]?={} \t\r\n") != strlen(n) || strpbrk(v, "\r\n"))
            abort();
    }
}

static void answer(const uint8_t *data, size_t size, gw_fnout_kind kind, httpd_resp *r)
{
    gw_fnout out = { .kind = kind, .json = (const char *)data, .len = size,
                     .status = 503, .code = "upstream_unavailable", .message = "x" };

    memset(r, 0, sizeof(*r));
    gw_fnurl_answer(r, &out);
    if (r->status < 100 || r->status > 599)
        abort();
    check_headers(r);
}

static void resp_free(httpd_resp *r)
{
    ml_buf_free(&r->body);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    if (r->content_type_owned)
        free((char *)r->content_type);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    httpd_resp a, b;
    gw_fnout_kind kind = size && data[0] == '!' ? GW_FNOUT_FUNCTION_ERROR : GW_FNOUT_RESULT;

    answer(data, size, kind, &a);
    answer(data, size, kind, &b);
    if (a.status != b.status || a.nheaders != b.nheaders || a.body.len != b.body.len ||
        (a.body.len && memcmp(a.body.data, b.body.data, a.body.len) != 0))
        abort();
    resp_free(&a);
    resp_free(&b);
    return 0;
}
