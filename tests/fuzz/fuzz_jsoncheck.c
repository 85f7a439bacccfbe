/* libFuzzer target: shared/jsoncheck.c, the strict validator of invoke bodies (untrusted).
 * Oracles, besides ASan/UBSan (the input sits in an exactly-sized buffer):
 *   - an accepted text is also accepted by cJSON (a lax parser: it takes every valid text);
 *   - an accepted text is valid UTF-8 throughout (checked here independently, with mbrtowc
 *     in a UTF-8 locale, which refuses overlongs, surrogates and code points > U+10FFFF);
 *   - a refusal names a reason and an offset inside the input;
 *   - the verdict is the same with trailing whitespace added (a JSON text may end in it). */
#include <cJSON.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "jsoncheck.h"
#include "ml.h"

static int utf8_ok(const char *s, size_t n)
{
    mbstate_t st;
    size_t i = 0;

    memset(&st, 0, sizeof(st));
    while (i < n) {
        wchar_t wc;
        size_t k = mbrtowc(&wc, s + i, n - i, &st);
        if (k == (size_t)-1 || k == (size_t)-2)
            return 0;
        if (wc >= 0xD800 && wc <= 0xDFFF)
            return 0;
        i += k ? k : 1; /* k == 0: a NUL byte */
    }
    return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ML_UNUSED(argc);
    ML_UNUSED(argv);
    if (!setlocale(LC_CTYPE, "C.UTF-8"))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    jsoncheck_error err = { 0, NULL };
    int rc = jsoncheck_validate(text, size, &err);
    char *padded = malloc(size + 2);
    cJSON *doc;

    if (!padded)
        return 0;
    memcpy(padded, data, size);
    memcpy(padded + size, " \n", 2);
    if ((jsoncheck_validate(padded, size + 2, NULL) == ML_OK) != (rc == ML_OK))
        abort();
    free(padded);
    if (rc != ML_OK) {
        if (!err.why || err.offset > size)
            abort();
        return 0;
    }
    if (!utf8_ok(text, size))
        abort();
    doc = cJSON_ParseWithLength(text, size);
    if (!doc)
        abort();
    cJSON_Delete(doc);
    return 0;
}
