/* bodycheck.h — the gateway's cheap look at an invoke body before it is proxied: JSON
 * nesting bounded (JSONCHECK_MAX_DEPTH, 512), so a 100,000-deep event is a 400 here and
 * never reaches an executor or a runtime's recursive parser. A single pass over the bytes
 * that tracks only strings and brackets: no parse, no allocation. Full validation (UTF-8,
 * grammar) stays with the executor (jsoncheck), which owns the event's contract. */
#ifndef GW_BODYCHECK_H
#define GW_BODYCHECK_H

#include <stddef.h>

#include "httpd.h"

/* The deepest nesting of arrays/objects in buf[0..len) (brackets inside strings do not
 * count), scanning no further than one level past max; *at is the offset of the first
 * bracket beyond max (when the result exceeds max). */
unsigned gw_bodycheck_depth(const char *buf, size_t len, unsigned max, size_t *at);

/* ML_OK when req's body nests at most JSONCHECK_MAX_DEPTH deep; ML_ERR with a 400
 * invalid_request_content written to resp otherwise. */
int gw_bodycheck_invoke(const httpd_req *req, httpd_resp *resp);

#endif
