/* buf.h — growable byte buffer with a hard maximum (curl's dynbuf idea).
 * A zeroed ml_buf is a valid empty buffer with no limit set (limit 0 = ML_BUF_DEFAULT_MAX). */
#ifndef ML_BUF_H
#define ML_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "ml.h"

#define ML_BUF_DEFAULT_MAX (64u * 1024u * 1024u)

typedef struct ml_buf {
    char *data;    /* always NUL-terminated when len > 0 or after any append */
    size_t len;
    size_t cap;
    size_t max;    /* hard cap on len; 0 means ML_BUF_DEFAULT_MAX */
} ml_buf;

void ml_buf_init(ml_buf *b, size_t max);
/* Appends; ML_ERR (buffer unchanged) if it would exceed max or allocation fails. */
int ml_buf_append(ml_buf *b, const void *data, size_t len);
int ml_buf_append_str(ml_buf *b, const char *s);
int ml_buf_printf(ml_buf *b, const char *fmt, ...) ML_PRINTF(2, 3);
int ml_buf_vprintf(ml_buf *b, const char *fmt, va_list ap);
/* Empties but keeps the allocation. */
void ml_buf_reset(ml_buf *b);
/* Frees the storage; the buffer is zeroed (valid and empty). */
void ml_buf_free(ml_buf *b);
/* Hands the storage to the caller (free() it); the buffer becomes empty. */
char *ml_buf_steal(ml_buf *b, size_t *len);
/* Never NULL: "" for an empty buffer. */
const char *ml_buf_cstr(const ml_buf *b);

#endif
