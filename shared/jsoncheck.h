/* jsoncheck.h — strict validation of an untrusted JSON text, without building it.
 *
 * Accepts exactly one JSON value (RFC 8259) surrounded by optional whitespace, encoded in
 * UTF-8, and nothing else: no byte order mark, no trailing data, no NaN/Infinity, no
 * comments, no leading zeros, no raw control characters in strings. UTF-8 must be
 * well-formed (no overlong forms, no encoded surrogates, nothing above U+10FFFF), and so
 * must \u escapes: a high surrogate must be followed by a low one (RFC 7493, I-JSON), since
 * the runtimes could not hand a lone surrogate on as text. Nesting is limited to
 * JSONCHECK_MAX_DEPTH arrays/objects, below what the runtimes' own parsers survive.
 *
 * Runs in one pass over the bytes with a fixed-size state on the stack: no allocation,
 * no recursion; ASCII runs inside strings are scanned eight bytes at a time. */
#ifndef ML_JSONCHECK_H
#define ML_JSONCHECK_H

#include <stddef.h>

#define JSONCHECK_MAX_DEPTH 512

/* Where and why a text was refused. why is a static string. */
typedef struct jsoncheck_error {
    size_t offset; /* byte offset of the first byte that does not fit */
    const char *why;
} jsoncheck_error;

/* ML_OK if buf[0..len) is a valid JSON text as described above; ML_ERR otherwise, with err
 * (may be NULL) filled. buf need not be NUL-terminated. */
int jsoncheck_validate(const char *buf, size_t len, jsoncheck_error *err);

#endif
