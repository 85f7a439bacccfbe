/* Unit tests: shared/runtimes.c — MINILAMBDA_RUNTIMES parsing, discovery (with a fake probe
 * and with the real one on this host's python), lookup and the GET /runtimes document. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ml.h"
#include "runtimes.h"

/* A fake host: interpreter path -> version line. */
static const char *const fake_host[][2] = {
    { "/usr/bin/python3", "Python 3.11.2" },  { "/usr/bin/python3.11", "Python 3.11.2" },
    { "/opt/py312/bin/python3.12", "Python 3.12.1" }, { "/opt/node18/bin/node", "Node.js v18.19.0" },
    { "/usr/bin/node", "Node.js v20.11.1" },  { "/opt/wrong", "Python 3.10.0" },
};

static int fake_probe(const char *interp, const char *family, char *ver, size_t len, void *ud)
{
    int *calls = ud;

    (void)family;
    (*calls)++;
    for (size_t i = 0; i < ML_ARRAY_LEN(fake_host); i++)
        if (strcmp(interp, fake_host[i][0]) == 0)
            return ml_snprintf(ver, len, "%s", fake_host[i][1]);
    return ML_ERR;
}

static void test_configure(void **state)
{
    runtimes_table t;
    char err[256];

    (void)state;
    runtimes_init(&t);
    assert_true(t.n >= 13);
    assert_non_null(runtimes_find(&t, "python3.9"));
    assert_null(runtimes_find(&t, "java21"));
    assert_int_equal(runtimes_available(&t, "python3"), ML_ERR);
    assert_int_equal(runtimes_configure(&t, NULL, err, sizeof(err)), ML_OK);
    assert_int_equal(runtimes_configure(&t, "", err, sizeof(err)), ML_OK);
    assert_int_equal(runtimes_configure(&t, " python3.12=/opt/py312/bin/python3.12 , nodejs18.x=/opt/node18/bin/node,",
                                        err, sizeof(err)), ML_OK);
    assert_string_equal(runtimes_find(&t, "python3.12")->interpreter, "/opt/py312/bin/python3.12");
    assert_true(runtimes_find(&t, "nodejs18.x")->configured);
    /* each refused with a message naming the entry */
    static const char *const bad[] = { "java21=/usr/bin/java", "provided=/bin/sh", "python3.12",
                                       "python3.11=relative/python", "python3.11=", "=/usr/bin/python3",
                                       "python3.11=/a,python3.11=/b" };
    for (size_t i = 0; i < ML_ARRAY_LEN(bad); i++) {
        runtimes_init(&t);
        err[0] = '\0';
        assert_int_equal(runtimes_configure(&t, bad[i], err, sizeof(err)), ML_ERR);
        assert_non_null(strstr(err, "MINILAMBDA_RUNTIMES"));
    }
}

static void test_discover_fake_host(void **state)
{
    runtimes_table t;
    char err[256], names[512];
    int calls = 0;

    (void)state;
    runtimes_init(&t);
    assert_int_equal(runtimes_configure(&t, "python3.12=/opt/py312/bin/python3.12,nodejs18.x=/opt/node18/bin/node,"
                                        "python3.13=/opt/wrong", err, sizeof(err)), ML_OK);
    runtimes_discover(&t, "/usr/bin/python3", "/usr/bin/node", fake_probe, &calls);
    /* each interpreter once: /usr/bin/python3 (or python3.11 where the host has it),
     * /opt/py312, /opt/wrong, /opt/node18, /usr/bin/node */
    assert_true(calls >= 5 && calls <= 6);
    /* python3.11: the default python is 3.11 (this fake host has no /usr/bin/python3.11 on
     * disk, so the default is probed under that name) */
    assert_int_equal(runtimes_available(&t, "python3.11"), ML_OK);
    assert_string_equal(runtimes_find(&t, "python3.11")->version, "Python 3.11.2");
    assert_int_equal(runtimes_available(&t, "python3.12"), ML_OK);
    assert_string_equal(runtimes_find(&t, "python3.12")->interpreter, "/opt/py312/bin/python3.12");
    /* configured with the wrong version: never runs another interpreter */
    assert_int_equal(runtimes_available(&t, "python3.13"), ML_ERR);
    assert_non_null(strstr(runtimes_find(&t, "python3.13")->why, "Python 3.10.0"));
    assert_int_equal(runtimes_available(&t, "python3.9"), ML_ERR);
    assert_int_equal(runtimes_available(&t, "python3.13"), ML_ERR);
    assert_int_equal(runtimes_available(&t, "nodejs18.x"), ML_OK);
    assert_int_equal(runtimes_available(&t, "nodejs20.x"), ML_OK);
    assert_string_equal(runtimes_find(&t, "nodejs20.x")->interpreter, "/usr/bin/node");
    assert_int_equal(runtimes_available(&t, "nodejs22.x"), ML_ERR);
    assert_int_equal(runtimes_available(&t, "python3"), ML_OK);
    assert_int_equal(runtimes_available(&t, "nodejs"), ML_OK);
    assert_string_equal(runtimes_find(&t, "nodejs")->version, "Node.js v20.11.1");
    assert_int_equal(runtimes_available(&t, "provided"), ML_OK);
    assert_int_equal(runtimes_available(&t, "provided.al2"), ML_OK);
    assert_int_equal(runtimes_available(&t, "provided.al2023"), ML_OK);
    runtimes_names(&t, names, sizeof(names));
    assert_non_null(strstr(names, "python3.11"));
    assert_non_null(strstr(names, "nodejs18.x"));
    assert_null(strstr(names, "python3.9"));
    assert_null(strstr(names, "python3.10"));
}

/* The item named name in the document, or NULL. */
static const cJSON *doc_item(const cJSON *doc, const char *name)
{
    const cJSON *it;

    cJSON_ArrayForEach(it, cJSON_GetObjectItem(doc, "runtimes"))
        if (strcmp(cJSON_GetObjectItem(it, "name")->valuestring, name) == 0)
            return it;
    return NULL;
}

static bool has_alias(const cJSON *item, const char *alias)
{
    const cJSON *a;

    cJSON_ArrayForEach(a, cJSON_GetObjectItem(item, "aliases"))
        if (strcmp(a->valuestring, alias) == 0)
            return true;
    return false;
}

static void test_json_round_trip(void **state)
{
    runtimes_table t, back;
    char err[256];
    int calls = 0;
    cJSON *doc;
    const cJSON *py;

    (void)state;
    runtimes_init(&t);
    assert_int_equal(runtimes_configure(&t, "nodejs18.x=/opt/node18/bin/node", err, sizeof(err)), ML_OK);
    runtimes_discover(&t, NULL, "/usr/bin/node", fake_probe, &calls);
    doc = runtimes_to_json(&t);
    assert_non_null(doc);
    py = doc_item(doc, "python3.11");
    assert_non_null(py);
    assert_string_equal(cJSON_GetObjectItem(py, "family")->valuestring, "python");
    assert_string_equal(cJSON_GetObjectItem(py, "version")->valuestring, "Python 3.11.2");
    assert_true(has_alias(py, "python3"));
    assert_null(doc_item(doc, "python3"));          /* an alias is listed under its name */
    assert_true(has_alias(doc_item(doc, "nodejs20.x"), "nodejs"));
    assert_false(has_alias(doc_item(doc, "nodejs18.x"), "nodejs"));
    assert_true(has_alias(doc_item(doc, "provided.al2023"), "provided"));
    assert_true(has_alias(doc_item(doc, "provided.al2023"), "provided.al2"));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc_item(doc, "provided.al2023"), "interpreter")));
    assert_null(doc_item(doc, "python3.9"));
    assert_int_equal(runtimes_from_json(&back, doc), ML_OK);
    for (size_t i = 0; i < t.n; i++)
        assert_int_equal(back.e[i].available, t.e[i].available);
    assert_string_equal(runtimes_find(&back, "nodejs")->version, "Node.js v20.11.1");
    cJSON_Delete(doc);
    doc = cJSON_Parse("{\"runtimes\":[{\"family\":\"python3\"}]}");
    assert_int_equal(runtimes_from_json(&back, doc), ML_ERR);
    assert_int_equal(runtimes_available(&back, "provided"), ML_ERR);
    cJSON_Delete(doc);
    doc = cJSON_Parse("{\"other\":1}");
    assert_int_equal(runtimes_from_json(&back, doc), ML_ERR);
    cJSON_Delete(doc);
}

/* An alias whose interpreter no versioned name runs is an item of its own. */
static void test_json_lone_alias(void **state)
{
    runtimes_table t;
    int calls = 0;
    cJSON *doc;

    (void)state;
    runtimes_init(&t);
    runtimes_discover(&t, "/opt/wrong", "/nonexistent/node", fake_probe, &calls);
    assert_int_equal(runtimes_available(&t, "python3.10"), ML_OK);   /* the default is 3.10 */
    assert_int_equal(runtimes_available(&t, "nodejs"), ML_ERR);
    doc = runtimes_to_json(&t);
    assert_true(has_alias(doc_item(doc, "python3.10"), "python3"));
    assert_null(doc_item(doc, "nodejs"));
    cJSON_Delete(doc);
}

/* The real probe on this host's interpreters (what the executor runs at start). */
static void test_probe_exec(void **state)
{
    char ver[64];

    (void)state;
    assert_int_equal(runtimes_probe_exec("/nonexistent/python3", "python3", ver, sizeof(ver), NULL), ML_ERR);
    assert_int_equal(runtimes_probe_exec("relative", "python3", ver, sizeof(ver), NULL), ML_ERR);
    assert_int_equal(runtimes_probe_exec("/bin/true", "python3", ver, sizeof(ver), NULL), ML_ERR);
    if (access("/usr/bin/python3", X_OK) == 0) {
        assert_int_equal(runtimes_probe_exec("/usr/bin/python3", "python3", ver, sizeof(ver), NULL), ML_OK);
        assert_memory_equal(ver, "Python 3.", 9);
        /* a python is no node */
        assert_int_equal(runtimes_probe_exec("/usr/bin/python3", "nodejs", ver, sizeof(ver), NULL), ML_ERR);
    }
    if (access("/usr/bin/node", X_OK) == 0) {
        assert_int_equal(runtimes_probe_exec("/usr/bin/node", "nodejs", ver, sizeof(ver), NULL), ML_OK);
        assert_memory_equal(ver, "Node.js v", 9);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configure),
        cmocka_unit_test(test_discover_fake_host),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_json_lone_alias),
        cmocka_unit_test(test_probe_exec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
