/* multipart.c — multipart/form-data parsing without copying part bodies. */
#include "multipart.h"

#include <string.h>
#include <strings.h>

#include "jsoncheck.h"
#include "ml.h"

#define MAX_BOUNDARY 70 /* RFC 2046 */

/* Value of parameter `param` (e.g. "boundary") in a header value, quoted or not. */
static int header_param(const char *value, size_t vlen, const char *param, char *out,
                        size_t outlen)
{
    size_t plen = strlen(param);
    const char *p = value, *end = value + vlen;

    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        if (!semi)
            return ML_ERR;
        p = semi + 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t)(end - p) > plen && strncasecmp(p, param, plen) == 0 && p[plen] == '=') {
            const char *v = p + plen + 1, *vend;
            if (v < end && *v == '"') {
                v++;
                vend = memchr(v, '"', (size_t)(end - v));
                if (!vend)
                    return ML_ERR;
            } else {
                vend = v;
                while (vend < end && *vend != ';' && *vend != ' ' && *vend != '\t')
                    vend++;
            }
            if ((size_t)(vend - v) >= outlen)
                return ML_ERR;
            memcpy(out, v, (size_t)(vend - v));
            out[vend - v] = '\0';
            return ML_OK;
        }
    }
    return ML_ERR;
}

int multipart_boundary(const char *content_type, char *out, size_t outlen)
{
    static const char kind[] = "multipart/form-data";

    if (!content_type || strncasecmp(content_type, kind, sizeof(kind) - 1) != 0)
        return ML_ERR;
    if (header_param(content_type, strlen(content_type), "boundary", out,
                     outlen < MAX_BOUNDARY + 1 ? outlen : MAX_BOUNDARY + 1) != ML_OK ||
        !*out)
        return ML_ERR;
    return ML_OK;
}

static const char *find(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    return memmem(hay, hlen, needle, nlen);
}

/* Parses the header block of one part (from p to hend, exclusive). */
static int parse_part_headers(const char *p, const char *hend, multipart_part *part, char *err,
                              size_t errlen)
{
    static const char cd[] = "Content-Disposition:";
    int have_name = 0;

    while (p < hend) {
        const char *eol = find(p, (size_t)(hend - p), "\r\n", 2);
        size_t n = eol ? (size_t)(eol - p) : (size_t)(hend - p);
        if (n > sizeof(cd) - 1 && strncasecmp(p, cd, sizeof(cd) - 1) == 0) {
            if (header_param(p, n, "name", part->name, sizeof(part->name)) != ML_OK) {
                ml_snprintf_trunc(err, errlen, "a form part has no usable name");
                return ML_ERR;
            }
            have_name = 1;
            if (header_param(p, n, "filename", part->filename, sizeof(part->filename)) != ML_OK)
                part->filename[0] = '\0';
        }
        p += n + (eol ? 2 : 0);
    }
    if (!have_name) {
        ml_snprintf_trunc(err, errlen, "a form part lacks Content-Disposition: form-data; name=...");
        return ML_ERR;
    }
    return ML_OK;
}

int multipart_parse(const char *body, size_t len, const char *boundary, multipart_form *form,
                    char *err, size_t errlen)
{
    char delim[MAX_BOUNDARY + 5];
    size_t dlen;
    const char *p, *end = body + len;

    memset(form, 0, sizeof(*form));
    if (ml_snprintf(delim, sizeof(delim), "\r\n--%s", boundary) != ML_OK)
        goto bad;
    dlen = strlen(delim);
    /* the first delimiter may start the body without the leading CRLF */
    if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0)
        p = body + dlen - 2;
    else if ((p = find(body, len, delim, dlen)) != NULL)
        p += dlen;
    else
        goto bad;
    for (;;) {
        const char *hend, *next;
        multipart_part *part;

        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return ML_OK; /* closing delimiter */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            goto bad;
        p += 2;
        hend = find(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend)
            goto bad;
        if (form->nparts == MULTIPART_MAX_PARTS) {
            ml_snprintf_trunc(err, errlen, "too many form parts (at most %d)", MULTIPART_MAX_PARTS);
            return ML_ERR;
        }
        part = &form->parts[form->nparts];
        if (parse_part_headers(p, hend + 2, part, err, errlen) != ML_OK)
            return ML_ERR;
        p = hend + 4;
        next = find(p, (size_t)(end - p), delim, dlen);
        if (!next)
            goto bad;
        part->data = p;
        part->len = (size_t)(next - p);
        form->nparts++;
        p = next + dlen;
    }
bad:
    ml_snprintf_trunc(err, errlen, "malformed multipart/form-data body");
    return ML_ERR;
}

const multipart_part *multipart_get(const multipart_form *form, const char *name)
{
    for (size_t i = 0; i < form->nparts; i++) {
        if (strcmp(form->parts[i].name, name) == 0)
            return &form->parts[i];
    }
    return NULL;
}

int multipart_field_text(const multipart_form *form, size_t i, char *err, size_t errlen)
{
    const multipart_part *p = &form->parts[i];

    if (jsoncheck_text(p->name, strlen(p->name), NULL) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "a form field's name must be UTF-8 text");
        return ML_ERR;
    }
    if (jsoncheck_text(p->data, p->len, NULL) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "form field '%s' must be UTF-8 text without NUL or control characters",
                          p->name);
        return ML_ERR;
    }
    for (size_t k = 0; k < i; k++) {
        if (strcmp(form->parts[k].name, p->name) == 0) {
            ml_snprintf_trunc(err, errlen, "form field '%s' is given twice", p->name);
            return ML_ERR;
        }
    }
    return ML_OK;
}
