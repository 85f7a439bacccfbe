/* buf.c — growable byte buffer with a hard maximum. */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ml_buf_init(ml_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

static size_t buf_max(const ml_buf *b)
{
    return b->max ? b->max : ML_BUF_DEFAULT_MAX;
}

static int buf_reserve(ml_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > buf_max(b) - b->len)
        return ML_ERR;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return ML_OK;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->data, cap);
    if (!p)
        return ML_ERR;
    b->data = p;
    b->cap = cap;
    return ML_OK;
}

int ml_buf_append(ml_buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len) != ML_OK)
        return ML_ERR;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return ML_OK;
}

int ml_buf_append_str(ml_buf *b, const char *s)
{
    return ml_buf_append(b, s, strlen(s));
}

int ml_buf_vprintf(ml_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    int n;

    va_copy(cp, ap);
    n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0 || buf_reserve(b, (size_t)n) != ML_OK)
        return ML_ERR;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return ML_OK;
}

int ml_buf_printf(ml_buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = ml_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void ml_buf_reset(ml_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void ml_buf_free(ml_buf *b)
{
    size_t max = b->max;

    free(b->data);
    memset(b, 0, sizeof(*b));
    b->max = max;
}

char *ml_buf_steal(ml_buf *b, size_t *len)
{
    char *p = b->data;

    if (len)
        *len = b->len;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

const char *ml_buf_cstr(const ml_buf *b)
{
    return b->data ? b->data : "";
}
