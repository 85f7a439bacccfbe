/* libFuzzer target: shared/jsoncheck.c, the strict validator of invoke bodies (untrusted).
 * Oracles, besides ASan/UBSan (the input sits in an exactly-sized buffer):
 *   - an accepted text is also accepted by cJSON (a lax parser: it takes every valid text);
 *   - an accepted text is valid UTF-8 throughout (checked here independently, with mbrtowc
 *     in a UTF-8 locale, which refuses overlongs, surrogates and code points > U+10FFFF);
 *   - a refusal names a reason and an offset inside the input;
 *   - the verdict is the same with trailing whitespace added (a JSON text may end in it);
 *   - JSONCHECK_NO_NUL refuses only texts that hold the bytes \u0000, and
 *     jsoncheck_parse accepts a text only when the flagged check does and then gives a tree
 *     whose objects have unique keys;
 *   - jsoncheck_text agrees with the independent UTF-8 check on NUL-free input. */
#include <cJSON.h>
#include <locale.h>
#include <stdbool.h>
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

/* UTF-8 and no C0 control byte but tab, CR, LF: what jsoncheck_text accepts. */
static int utf8_ok_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\t' && c != '\r' && c != '\n')
            return 0;
    }
    return utf8_ok(s, n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ML_UNUSED(argc);
    ML_UNUSED(argv);
    if (!setlocale(LC_CTYPE, "C.UTF-8"))
        abort();
    return 0;
}

/* The strict layer on top of an accepted text. */
static void strict_paths(const char *text, size_t size)
{
    int nul = jsoncheck_validate_flags(text, size, JSONCHECK_NO_NUL, NULL);
    bool has_escape = memmem(text, size, "\\u0000", 6) != NULL;
    cJSON *doc;

    if (nul != ML_OK && !has_escape)
        abort(); /* the flag refuses nothing but \u0000 ("\\u0000", an escaped backslash, may pass) */
    doc = jsoncheck_parse(text, size, NULL);
    if (doc && (nul != ML_OK || jsoncheck_unique_keys(doc, NULL) != ML_OK))
        abort();
    cJSON_Delete(doc);
    if (memchr(text, 0, size) == NULL && (jsoncheck_text(text, size, NULL) == ML_OK) != utf8_ok_ctl(text, size))
        abort();
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
    strict_paths(text, size);
    return 0;
}
