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

#include <cJSON.h>
#include <stddef.h>

#define JSONCHECK_MAX_DEPTH 512

/* Flags of jsoncheck_validate_flags. */
/* Refuse \u0000 in strings and keys: text that becomes a C string (cJSON cuts it there:
 * "a\u0000b" would silently be "a") or a Postgres value (which refuses NUL). */
#define JSONCHECK_NO_NUL 1u

/* Where and why a text was refused. why is a static string. */
typedef struct jsoncheck_error {
    size_t offset; /* byte offset of the first byte that does not fit */
    const char *why;
} jsoncheck_error;

/* ML_OK if buf[0..len) is a valid JSON text as described above; ML_ERR otherwise, with err
 * (may be NULL) filled. buf need not be NUL-terminated. */
int jsoncheck_validate(const char *buf, size_t len, jsoncheck_error *err);
/* The same with flags (JSONCHECK_NO_NUL). */
int jsoncheck_validate_flags(const char *buf, size_t len, unsigned flags, jsoncheck_error *err);

/* ML_OK if s[0..n) is well-formed UTF-8 (as inside a JSON string) with no NUL and no other
 * C0 control byte except tab, CR and LF; ML_ERR with err (may be NULL) filled otherwise.
 * For text that arrives outside JSON: form fields, path segments. */
int jsoncheck_text(const char *s, size_t n, jsoncheck_error *err);

/* ML_OK if no object in v (at any depth) has two members of the same name; ML_ERR with
 * err->why naming the problem otherwise (err->offset is 0: the tree has no offsets). v must
 * come from a checked text (its depth is bounded by JSONCHECK_MAX_DEPTH). Allocates only
 * temporarily, for objects of many members. */
int jsoncheck_unique_keys(const cJSON *v, jsoncheck_error *err);

/* The strict parse every request body of the platform goes through: jsoncheck_validate_flags
 * with JSONCHECK_NO_NUL, cJSON, then jsoncheck_unique_keys. Returns a new tree the caller
 * frees with cJSON_Delete, or NULL with err (may be NULL) filled. */
cJSON *jsoncheck_parse(const char *buf, size_t len, jsoncheck_error *err);

#endif
