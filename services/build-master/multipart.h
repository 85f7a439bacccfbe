/* multipart.h — zero-copy multipart/form-data parser (RFC 7578) over a request body
 * already in memory: parts point into the body, so a 50 MiB upload is never copied. */
#ifndef BM_MULTIPART_H
#define BM_MULTIPART_H

#include <stddef.h>

#define MULTIPART_MAX_PARTS 32
#define MULTIPART_MAX_NAME 64

typedef struct multipart_part {
    char name[MULTIPART_MAX_NAME];
    char filename[256];      /* "" when the part is not a file */
    const char *data;        /* points into the body */
    size_t len;
} multipart_part;

typedef struct multipart_form {
    multipart_part parts[MULTIPART_MAX_PARTS];
    size_t nparts;
} multipart_form;

/* Extracts the boundary from a Content-Type header value; ML_ERR if it is not
 * multipart/form-data with a valid boundary. */
int multipart_boundary(const char *content_type, char *out, size_t outlen);

/* Parses body into form; ML_ERR with a reason in err on malformed input. */
int multipart_parse(const char *body, size_t len, const char *boundary, multipart_form *form,
                    char *err, size_t errlen);

/* Part i as a form field (not a file): its name and value must be UTF-8 text without NUL
 * or other control bytes (a NUL would cut the value where it becomes a C string) and no
 * earlier part may carry the same name. ML_ERR with err naming the field otherwise. */
int multipart_field_text(const multipart_form *form, size_t i, char *err, size_t errlen);

/* The first part with this name, or NULL. */
const multipart_part *multipart_get(const multipart_form *form, const char *name);

#endif
