/* jsoncheck.c — strict JSON + UTF-8 validation in one pass (see jsoncheck.h). */
#include "jsoncheck.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ml.h"

typedef struct scan {
    const unsigned char *p, *end, *start;
    const char *why;
    unsigned depth;
    unsigned flags;
    bool object[JSONCHECK_MAX_DEPTH]; /* kind of each open container: object or array */
} scan;

typedef enum { AFTER_FAIL, AFTER_VALUE, AFTER_DONE } after_result;

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static bool fail(scan *s, const char *why)
{
    s->why = why;
    return false;
}

static void skip_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* Non-zero when some byte of w is 0. */
static uint64_t has_zero(uint64_t w)
{
    return (w - ONES) & ~w & HIGHS;
}

/* True when all eight bytes at p are printable ASCII other than '"' and '\\'. */
static bool plain8(const unsigned char *p)
{
    uint64_t w;

    memcpy(&w, p, sizeof(w));
    return ((w | (w - ONES * 0x20)) & HIGHS) == 0 && !has_zero(w ^ (ONES * '"')) &&
           !has_zero(w ^ (ONES * '\\'));
}

static bool in_range(const unsigned char *p, const unsigned char *end, size_t i, unsigned lo,
                     unsigned hi)
{
    return (size_t)(end - p) > i && p[i] >= lo && p[i] <= hi;
}

/* One multi-byte UTF-8 sequence at s->p (whose lead byte is >= 0x80). */
static bool utf8_seq(scan *s)
{
    const unsigned char *p = s->p, *e = s->end;
    unsigned c = p[0];
    size_t n;
    bool ok;

    if (c >= 0xC2 && c <= 0xDF)
        n = 2, ok = in_range(p, e, 1, 0x80, 0xBF);
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, ok = in_range(p, e, 1, c == 0xE0 ? 0xA0 : 0x80, c == 0xED ? 0x9F : 0xBF) &&
                    in_range(p, e, 2, 0x80, 0xBF);
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, ok = in_range(p, e, 1, c == 0xF0 ? 0x90 : 0x80, c == 0xF4 ? 0x8F : 0xBF) &&
                    in_range(p, e, 2, 0x80, 0xBF) && in_range(p, e, 3, 0x80, 0xBF);
    else
        return fail(s, "invalid UTF-8");
    if (!ok)
        return fail(s, "invalid UTF-8");
    s->p += n;
    return true;
}

/* Four hex digits at p (bounds checked by the caller); -1 if they are not. */
static long hex4(const unsigned char *p)
{
    long v = 0;

    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        unsigned d = c >= '0' && c <= '9' ? c - '0'
                     : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                             : 16;
        if (d == 16)
            return -1;
        v = v * 16 + (long)d;
    }
    return v;
}

/* A \uXXXX escape (s->p at the 'u'), with the low half of a surrogate pair if it needs one. */
static bool unicode_escape(scan *s)
{
    long hi, lo;

    if (s->end - s->p < 5 || (hi = hex4(s->p + 1)) < 0)
        return fail(s, "invalid \\u escape");
    s->p += 5;
    if (hi == 0 && (s->flags & JSONCHECK_NO_NUL)) {
        s->p -= 6; /* point at the backslash */
        return fail(s, "\\u0000 (NUL) is not allowed in a string");
    }
    if (hi >= 0xDC00 && hi <= 0xDFFF)
        return fail(s, "unpaired surrogate in \\u escape");
    if (hi < 0xD800 || hi > 0xDBFF)
        return true;
    if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' || (lo = hex4(s->p + 2)) < 0 ||
        lo < 0xDC00 || lo > 0xDFFF)
        return fail(s, "unpaired surrogate in \\u escape");
    s->p += 6;
    return true;
}

/* s->p just after a backslash. */
static bool escape(scan *s)
{
    if (s->p == s->end)
        return fail(s, "unterminated string");
    switch (*s->p) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        s->p++;
        return true;
    case 'u':
        return unicode_escape(s);
    default:
        return fail(s, "invalid escape in string");
    }
}

/* A string; s->p at its opening quote. */
static bool string(scan *s)
{
    s->p++;
    for (;;) {
        while (s->end - s->p >= 8 && plain8(s->p))
            s->p += 8;
        if (s->p == s->end)
            return fail(s, "unterminated string");
        unsigned c = *s->p;
        if (c == '"') {
            s->p++;
            return true;
        }
        if (c == '\\') {
            s->p++;
            if (!escape(s))
                return false;
        } else if (c < 0x20) {
            return fail(s, "control character in string");
        } else if (c >= 0x80) {
            if (!utf8_seq(s))
                return false;
        } else {
            s->p++;
        }
    }
}

static bool digits(scan *s)
{
    const unsigned char *from = s->p;

    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > from || fail(s, "invalid number");
}

static bool number(scan *s)
{
    if (*s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (!(s->p < s->end && *s->p >= '1' && *s->p <= '9') || !digits(s))
        return fail(s, "invalid number");
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!digits(s))
            return false;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!digits(s))
            return false;
    }
    return true;
}

static bool literal(scan *s, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, "invalid literal");
    s->p += n;
    return true;
}

/* An object member's key and colon; s->p at the key's quote (after whitespace). */
static bool key(scan *s)
{
    if (s->p == s->end || *s->p != '"')
        return fail(s, "expected a string key");
    if (!string(s))
        return false;
    skip_ws(s);
    if (s->p == s->end || *s->p != ':')
        return fail(s, "expected ':'");
    s->p++;
    return true;
}

/* Opens an array or object (s->p at the bracket). *opened: it has members to come; false
 * when it closed right away (an empty one is a complete value). */
static bool open_container(scan *s, bool object, bool *opened)
{
    if (s->depth == JSONCHECK_MAX_DEPTH)
        return fail(s, "nesting too deep");
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == (object ? '}' : ']')) {
        s->p++;
        *opened = false;
        return true;
    }
    s->object[s->depth++] = object;
    *opened = true;
    return !object || key(s);
}

/* One value at s->p (after whitespace): a scalar whole, or the start of a container. */
static bool value(scan *s, bool *opened)
{
    *opened = false;
    if (s->p == s->end)
        return fail(s, s->p == s->start ? "empty document" : "unexpected end of document");
    switch (*s->p) {
    case '{': return open_container(s, true, opened);
    case '[': return open_container(s, false, opened);
    case '"': return string(s);
    case 't': return literal(s, "true");
    case 'f': return literal(s, "false");
    case 'n': return literal(s, "null");
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return number(s);
        return fail(s, *s->p >= 0x80 ? "invalid character (not JSON)" : "unexpected character");
    }
}

/* After a complete value: closes containers until one needs another member. */
static after_result after(scan *s)
{
    for (;;) {
        skip_ws(s);
        if (s->depth == 0)
            return AFTER_DONE;
        bool object = s->object[s->depth - 1];
        if (s->p == s->end) {
            fail(s, "unexpected end of document");
            return AFTER_FAIL;
        }
        if (*s->p == ',') {
            s->p++;
            skip_ws(s);
            return !object || key(s) ? AFTER_VALUE : AFTER_FAIL;
        }
        if (*s->p != (object ? '}' : ']')) {
            fail(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
            return AFTER_FAIL;
        }
        s->p++;
        s->depth--;
    }
}

static bool document(scan *s)
{
    after_result next = AFTER_VALUE;
    bool opened;

    while (next == AFTER_VALUE) {
        skip_ws(s);
        if (!value(s, &opened))
            return false;
        next = opened ? AFTER_VALUE : after(s);
    }
    if (next == AFTER_FAIL)
        return false;
    return s->p == s->end || fail(s, "data after the JSON value");
}

int jsoncheck_validate(const char *buf, size_t len, jsoncheck_error *err)
{
    return jsoncheck_validate_flags(buf, len, 0, err);
}

int jsoncheck_validate_flags(const char *buf, size_t len, unsigned flags, jsoncheck_error *err)
{
    scan s;

    s.start = s.p = (const unsigned char *)buf;
    s.end = s.p + len;
    s.why = NULL;
    s.depth = 0;
    s.flags = flags;
    if (document(&s))
        return ML_OK;
    if (err) {
        err->offset = (size_t)(s.p - s.start);
        err->why = s.why ? s.why : "invalid JSON";
    }
    return ML_ERR;
}

int jsoncheck_text(const char *buf, size_t len, jsoncheck_error *err)
{
    scan s;

    s.start = s.p = (const unsigned char *)buf;
    s.end = s.p + len;
    s.why = NULL;
    while (s.p < s.end) {
        unsigned c = *s.p;
        if (c >= 0x80) {
            if (!utf8_seq(&s))
                break;
        } else if (c < 0x20 && c != '\t' && c != '\r' && c != '\n') {
            fail(&s, c == 0 ? "NUL byte in text" : "control character in text");
            break;
        } else {
            s.p++;
        }
    }
    if (!s.why)
        return ML_OK;
    if (err) {
        err->offset = (size_t)(s.p - s.start);
        err->why = s.why;
    }
    return ML_ERR;
}

/* ---- duplicate keys -------------------------------------------------------------------- */

/* Objects up to this many members are compared pairwise; larger ones are sorted. */
#define DUP_PAIRWISE_MAX 16

static int key_cmp(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* One object's own members; ML_ERR (why set) on a duplicate or when out of memory. */
static int object_unique(const cJSON *o, const char **why)
{
    const cJSON *a, *b, **v;
    size_t n = 0, i = 0;
    int rc = ML_OK;

    for (a = o->child; a; a = a->next)
        n++;
    if (n <= DUP_PAIRWISE_MAX) {
        for (a = o->child; a; a = a->next)
            for (b = a->next; b; b = b->next)
                if (strcmp(a->string, b->string) == 0)
                    goto dup;
        return ML_OK;
    }
    if (!(v = malloc(n * sizeof(*v)))) {
        *why = "out of memory";
        return ML_ERR;
    }
    for (a = o->child; a; a = a->next)
        v[i++] = a;
    qsort(v, n, sizeof(*v), key_cmp);
    for (i = 1; i < n && rc == ML_OK; i++)
        if (strcmp(v[i - 1]->string, v[i]->string) == 0)
            rc = ML_ERR;
    free(v);
    if (rc == ML_OK)
        return ML_OK;
dup:
    *why = "duplicate key in an object";
    return ML_ERR;
}

/* Recursion is bounded: the tree came from a text of depth <= JSONCHECK_MAX_DEPTH. */
static int unique_keys(const cJSON *v, const char **why)
{
    const cJSON *c;

    if (cJSON_IsObject(v) && object_unique(v, why) != ML_OK)
        return ML_ERR;
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        for (c = v->child; c; c = c->next)
            if (unique_keys(c, why) != ML_OK)
                return ML_ERR;
    }
    return ML_OK;
}

int jsoncheck_unique_keys(const cJSON *v, jsoncheck_error *err)
{
    const char *why = NULL;

    if (unique_keys(v, &why) == ML_OK)
        return ML_OK;
    if (err) {
        err->offset = 0;
        err->why = why;
    }
    return ML_ERR;
}

cJSON *jsoncheck_parse(const char *buf, size_t len, jsoncheck_error *err)
{
    cJSON *doc;

    if (jsoncheck_validate_flags(buf, len, JSONCHECK_NO_NUL, err) != ML_OK)
        return NULL;
    if (!(doc = cJSON_ParseWithLength(buf, len))) {
        if (err) {
            err->offset = 0;
            err->why = "cannot parse (out of memory?)";
        }
        return NULL;
    }
    if (jsoncheck_unique_keys(doc, err) != ML_OK) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}
