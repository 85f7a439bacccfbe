/* Unit tests: services/build-master/multipart.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "buf.h"
#include "multipart.h"

static const char body[] =
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"name\"\r\n\r\n"
    "hello\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"code\"; filename=\"fn.zip\"\r\n"
    "Content-Type: application/zip\r\n\r\n"
    "PK\x03\x04\x00\r\n--X\r\nnot a delimiter\r\n"
    "--XyZ--\r\n";

static void test_parse(void **state)
{
    multipart_form f;
    char err[128];
    const multipart_part *code;
    (void)state;
    assert_int_equal(multipart_parse(body, sizeof(body) - 1, "XyZ", &f, err, sizeof(err)), ML_OK);
    assert_int_equal(f.nparts, 2);
    assert_string_equal(f.parts[0].name, "name");
    assert_int_equal(f.parts[0].len, 5);
    assert_memory_equal(f.parts[0].data, "hello", 5);
    code = multipart_get(&f, "code");
    assert_non_null(code);
    assert_string_equal(code->filename, "fn.zip");
    /* binary content with CRLF and a near-delimiter survives byte for byte */
    assert_int_equal(code->len, 5 + 2 + 3 + 2 + 15);
    assert_memory_equal(code->data, "PK\x03\x04\x00\r\n--X\r\nnot a delimiter", code->len);
    assert_true(code->data > body && code->data < body + sizeof(body)); /* zero-copy */
    assert_null(multipart_get(&f, "nope"));
}

static void test_boundary(void **state)
{
    char b[80];
    (void)state;
    assert_int_equal(multipart_boundary("multipart/form-data; boundary=abc", b, sizeof(b)), ML_OK);
    assert_string_equal(b, "abc");
    assert_int_equal(multipart_boundary("multipart/form-data; charset=x; boundary=\"a b\"", b, sizeof(b)), ML_OK);
    assert_string_equal(b, "a b");
    assert_int_equal(multipart_boundary("application/json", b, sizeof(b)), ML_ERR);
    assert_int_equal(multipart_boundary("multipart/form-data", b, sizeof(b)), ML_ERR);
    assert_int_equal(multipart_boundary("multipart/form-data; boundary=", b, sizeof(b)), ML_ERR);
}

static void test_malformed(void **state)
{
    static const char *bad[] = {
        "",
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
        "--XyZ\r\nno-blank-line",
        "--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--",       /* no name */
        "garbage before --XyZnothing",
    };
    multipart_form f;
    char err[128];
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(multipart_parse(bad[i], strlen(bad[i]), "XyZ", &f, err, sizeof(err)), ML_ERR);
}

static void test_too_many_parts(void **state)
{
    ml_buf buf = { 0 };
    multipart_form f;
    char err[128];
    (void)state;
    for (int i = 0; i < MULTIPART_MAX_PARTS + 1; i++)
        ml_buf_append_str(&buf, "--B\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n");
    ml_buf_append_str(&buf, "--B--");
    assert_int_equal(multipart_parse(buf.data, buf.len, "B", &f, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "too many"));
    ml_buf_free(&buf);
}


/* Form fields are text: NUL or invalid UTF-8 in a value, or a field given twice, is refused. */
static void test_field_text(void **state)
{
    static const char form[] =
        "--B\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nhel\0lo\r\n"
        "--B\r\nContent-Disposition: form-data; name=\"handler\"\r\n\r\napp.h\xff\r\n"
        "--B\r\nContent-Disposition: form-data; name=\"runtime\"\r\n\r\npython3\r\n"
        "--B\r\nContent-Disposition: form-data; name=\"env\"\r\n\r\n{\"A\":\"\xC3\xA9\\n\"}\r\n"
        "--B\r\nContent-Disposition: form-data; name=\"runtime\"\r\n\r\nnodejs\r\n"
        "--B--\r\n";
    multipart_form f;
    char err[128];
    (void)state;
    assert_int_equal(multipart_parse(form, sizeof(form) - 1, "B", &f, err, sizeof(err)), ML_OK);
    assert_int_equal(f.nparts, 5);
    assert_int_equal(multipart_field_text(&f, 0, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "'name'"));
    assert_int_equal(multipart_field_text(&f, 1, err, sizeof(err)), ML_ERR);
    assert_int_equal(multipart_field_text(&f, 2, err, sizeof(err)), ML_OK);
    assert_int_equal(multipart_field_text(&f, 3, err, sizeof(err)), ML_OK);
    assert_int_equal(multipart_field_text(&f, 4, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "twice"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_field_text), cmocka_unit_test(test_boundary),
        cmocka_unit_test(test_malformed), cmocka_unit_test(test_too_many_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
