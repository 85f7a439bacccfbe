/* bodycheck.c — nesting depth of an invoke body, one pass (see bodycheck.h). */
#include "bodycheck.h"

#include <stdbool.h>

#include "jsoncheck.h"
#include "ml.h"

unsigned gw_bodycheck_depth(const char *buf, size_t len, unsigned max, size_t *at)
{
    unsigned depth = 0, deepest = 0;
    bool in_string = false, escaped = false;

    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];

        if (in_string) { /* only the quote that ends it matters, and escapes hide quotes */
            if (escaped)
                escaped = false;
            else if (ch == '\\')
                escaped = true;
            else if (ch == '"')
                in_string = false;
        } else if (ch == '"') {
            in_string = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > deepest)
                deepest = depth;
            if (depth > max) {
                *at = i;
                return depth;
            }
        } else if ((ch == ']' || ch == '}') && depth > 0) {
            depth--; /* unbalanced text is the executor's 400, not a depth problem */
        }
    }
    return deepest;
}

int gw_bodycheck_invoke(const httpd_req *req, httpd_resp *resp)
{
    size_t len, at = 0;
    const char *body = httpd_body(req, &len);

    if (gw_bodycheck_depth(body, len, JSONCHECK_MAX_DEPTH, &at) <= JSONCHECK_MAX_DEPTH)
        return ML_OK;
    httpd_resp_error(resp, 400, "invalid_request_content",
                     "the event nests deeper than %d arrays/objects (at byte %zu)", JSONCHECK_MAX_DEPTH, at);
    return ML_ERR;
}
