/* test_crypto.c — SHA-256, HMAC-SHA256 and base64 against published / independently derived
 * vectors (RFC 4648 §10 for base64, FIPS 180-2 "abc" for SHA-256, the Wikipedia HMAC example;
 * cross-checked with /usr/bin/python3 hashlib/hmac/base64). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto.h"

static void test_sha256_vectors(void **state)
{
    char hex[CRYPTO_SHA256_HEX_LEN];

    (void)state;
    crypto_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    crypto_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_sha256_file(void **state)
{
    char path[] = "/tmp/test_crypto_XXXXXX";
    char hex[CRYPTO_SHA256_HEX_LEN], want[CRYPTO_SHA256_HEX_LEN], err[256];
    size_t len = 200 * 1024 + 7, i;
    unsigned char *data = malloc(len);
    int64_t size = -1;
    int fd = mkstemp(path);

    (void)state;
    assert_non_null(data);
    assert_true(fd >= 0);
    for (i = 0; i < len; i++)
        data[i] = (unsigned char)(i * 31 + 7);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    /* Larger than the 64 KiB read chunk, so several updates must chain correctly. */
    crypto_sha256_hex(data, len, want);
    assert_int_equal(crypto_sha256_file_hex(path, hex, &size, err, sizeof(err)), ML_OK);
    assert_string_equal(hex, want);
    assert_int_equal(size, (int64_t)len);
    unlink(path);
    assert_int_equal(crypto_sha256_file_hex(path, hex, &size, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "No such file"));
    free(data);
}

static void test_hmac_vector(void **state)
{
    static const char msg[] = "The quick brown fox jumps over the lazy dog";
    static const unsigned char want[CRYPTO_SHA256_LEN] = {
        0xf7, 0xbc, 0x83, 0xf4, 0x30, 0x53, 0x84, 0x24, 0xb1, 0x32, 0x98, 0xe6, 0xaa, 0x6f, 0xb1, 0x43,
        0xef, 0x4d, 0x59, 0xa1, 0x49, 0x46, 0x17, 0x59, 0x97, 0x47, 0x9d, 0xbc, 0x2d, 0x1a, 0x3c, 0xd8,
    };
    unsigned char mac[CRYPTO_SHA256_LEN];
    crypto_span parts[] = { { "The quick ", 10 }, { "", 0 }, { msg + 10, strlen(msg) - 10 } };

    (void)state;
    assert_int_equal(crypto_hmac_sha256("key", 3, msg, strlen(msg), mac), ML_OK);
    assert_memory_equal(mac, want, sizeof(want));
    memset(mac, 0, sizeof(mac));
    assert_int_equal(crypto_hmac_sha256_parts("key", 3, parts, 3, mac), ML_OK);
    assert_memory_equal(mac, want, sizeof(want));
}

static void test_base64_rfc4648(void **state)
{
    static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
    char out[16];
    unsigned char dec[16];
    size_t i, n;

    (void)state;
    for (i = 0; i < ML_ARRAY_LEN(plain); i++) {
        assert_int_equal(crypto_base64_encode(plain[i], strlen(plain[i]), out, sizeof(out)), ML_OK);
        assert_string_equal(out, enc[i]);
        assert_int_equal(crypto_base64_decode(enc[i], strlen(enc[i]), dec, sizeof(dec), &n), ML_OK);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(dec, plain[i], n);
    }
}

static void test_base64_binary_and_bounds(void **state)
{
    static const unsigned char bin[] = { 0x00, 0xff, 0xfe, 0x01 };
    char out[CRYPTO_BASE64_ENC_SIZE(4)];
    unsigned char dec[4];
    size_t n;

    (void)state;
    assert_int_equal(sizeof(out), 9);
    assert_int_equal(crypto_base64_encode(bin, 4, out, sizeof(out)), ML_OK);
    assert_string_equal(out, "AP/+AQ==");
    assert_int_equal(crypto_base64_encode(bin, 4, out, sizeof(out) - 1), ML_ERR);
    assert_int_equal(crypto_base64_decode(out, 8, dec, 4, &n), ML_OK);
    assert_memory_equal(dec, bin, 4);
    /* Exact output size is enough; one byte less is refused without writing past it. */
    assert_int_equal(crypto_base64_decode(out, 8, dec, 3, &n), ML_ERR);
}

static void test_base64_rejects_malformed(void **state)
{
    static const char *const bad[] = {
        "Zg=",      /* not a multiple of 4 */
        "Zg",       /* unpadded */
        "Z===",     /* three pad chars */
        "Zg=a",     /* pad in the middle */
        "Zm 9v",    /* whitespace */
        " Zm9v",    /* leading whitespace (EVP_DecodeBlock alone would accept it) */
        "Zm9v\n",   /* trailing newline */
        "Zm-_",     /* base64url alphabet */
        "Zm9v====", /* a whole pad quad */
    };
    unsigned char dec[16];
    size_t i, n;

    (void)state;
    for (i = 0; i < ML_ARRAY_LEN(bad); i++)
        assert_int_equal(crypto_base64_decode(bad[i], strlen(bad[i]), dec, sizeof(dec), &n), ML_ERR);
}

static void test_random(void **state)
{
    unsigned char a[32] = { 0 }, b[32] = { 0 }, zero[32] = { 0 };

    (void)state;
    assert_int_equal(crypto_random(a, sizeof(a)), ML_OK);
    assert_int_equal(crypto_random(b, sizeof(b)), ML_OK);
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_memory_not_equal(a, b, sizeof(a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_sha256_file),
        cmocka_unit_test(test_hmac_vector),
        cmocka_unit_test(test_base64_rfc4648),
        cmocka_unit_test(test_base64_binary_and_bounds),
        cmocka_unit_test(test_base64_rejects_malformed),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
