/* libFuzzer target: the build-master's multipart/form-data parser (untrusted request bodies).
 * Oracles: every part lies inside the input, names are NUL-terminated within bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ml.h"
#include "multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    multipart_form form;
    char err[128];
    const char *body = (const char *)data;

    if (multipart_parse(body, size, "XyZ", &form, err, sizeof(err)) != ML_OK)
        return 0;
    if (form.nparts > MULTIPART_MAX_PARTS)
        abort();
    for (size_t i = 0; i < form.nparts; i++) {
        const multipart_part *p = &form.parts[i];
        if (p->data < body || p->data + p->len > body + size ||
            strnlen(p->name, sizeof(p->name)) == sizeof(p->name) ||
            strnlen(p->filename, sizeof(p->filename)) == sizeof(p->filename))
            abort();
    }
    return 0;
}
