/* test_runtime_errors.c — what a function's load failure says, on real sandboxed instances
 * (issue 19 item 4): a missing dependency is named, never the handler file that required it.
 *
 *   - node, CommonJS: `require('ms')` in index.js without node_modules/ms is
 *     Runtime.ImportModuleError "Cannot find module 'ms' required by index.js" (Node's own
 *     message lists the handler file in its "Require stack", which once made the bootstrap
 *     report 'index'); a nested miss names the whole chain; a missing handler file names it;
 *   - node, ES modules (package.json "type": "module"): "Cannot find package 'ms' imported from
 *     index.js"; a module with top-level await loads through import();
 *   - python: "Unable to import module 'app': No module named 'pydantic'".
 *
 * Needs root and full isolation like test_sandbox (fails, never skips, without them).
 * Runs from the repository root or with ML_ROOT set (tests/run.sh sets it). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "rt_fixture.h"

/* ------------------------------------------------------------------ helpers */

/* The start must fail with exactly `want` (the "Type: message" sandbox_start reports). */
static void expect_init_error(fixture *f, const char *runtime, const char *handler, const char *want)
{
    sandbox_spec s = spec_for(f, runtime, handler);
    char err[1024] = "";
    sandbox_instance *in = NULL;

    if (sandbox_start(&s, &in, err, sizeof(err)) == ML_OK) {
        f->inst = in;
        fail_msg("%s %s started; expected: %s", runtime, handler, want);
    }
    assert_null(in);
    if (strcmp(err, want) != 0)
        fail_msg("%s %s\n  expected: %s\n  got:      %s", runtime, handler, want, err);
}

/* The start must succeed and an invoke of "{}" answer `want`. */
static void expect_result(fixture *f, const char *runtime, const char *handler, const char *want)
{
    start(f, runtime, handler, 10);
    assert_int_equal(sandbox_invoke(f->inst, "inv-err", "{}", 2, ml_now_ms() + 10000, 1u << 20,
                                    &f->res), ML_OK);
    if (f->res.status != SB_OK || strcmp(ml_buf_cstr(&f->res.payload), want) != 0)
        fail_msg("status %d payload %s (expected %s) log %s", f->res.status,
                 ml_buf_cstr(&f->res.payload), want, ml_buf_cstr(&f->res.log_tail));
}

/* ------------------------------------------------------------------ node, CommonJS */

static void test_node_missing_dependency(void **state)
{
    fixture *f = *state;

    code_dir(f, "index.js", "const ms = require('ms');\nexports.handler = async () => ms('1s');\n",
             "package.json", "{\"name\":\"fn\",\"dependencies\":{\"ms\":\"^2.1.3\"}}\n", NULL);
    expect_init_error(f, "nodejs", "index.handler",
                      "Runtime.ImportModuleError: Error: Cannot find module 'ms' required by index.js");
}

static void test_node_missing_nested_and_relative(void **state)
{
    fixture *f = *state;

    code_dir(f, "index.js", "require('a');\nexports.handler = async () => 1;\n",
             "rel.js", "require('./lib/util');\nexports.handler = async () => 1;\n",
             "node_modules/a/package.json", "{\"name\":\"a\",\"main\":\"main.js\"}\n",
             "node_modules/a/main.js", "module.exports = require('b');\n", NULL);
    expect_init_error(f, "nodejs", "index.handler",
                      "Runtime.ImportModuleError: Error: Cannot find module 'b' required by "
                      "node_modules/a/main.js <- index.js");
    expect_init_error(f, "nodejs", "rel.handler",
                      "Runtime.ImportModuleError: Error: Cannot find module './lib/util' required by rel.js");
}

static void test_node_missing_handler_file(void **state)
{
    fixture *f = *state;

    code_dir(f, "index.js", "exports.handler = async () => 1;\n", NULL);
    expect_init_error(f, "nodejs", "main.handler",
                      "Runtime.ImportModuleError: Error: Cannot find module 'main': the handler file "
                      "main.js is not in the function's code");
}

/* The hidden-dependency trap: a package the host has (Debian's /usr/share/nodejs/bootstrap, or
 * npm's own) is not the function's, and the message says which one is missing. */
static void test_node_host_package_is_missing(void **state)
{
    fixture *f = *state;
    const char *host = access("/usr/share/nodejs/bootstrap", F_OK) == 0 ? "bootstrap" : "npm";
    char src[256], want[256];

    assert_true(access("/usr/share/nodejs/bootstrap", F_OK) == 0 ||
                access("/usr/lib/node_modules/npm", F_OK) == 0 || access("/usr/share/nodejs/npm", F_OK) == 0);
    snprintf(src, sizeof(src), "require('%s');\nexports.handler = async () => 1;\n", host);
    code_dir(f, "app.js", src, NULL);
    snprintf(want, sizeof(want), "Runtime.ImportModuleError: Error: Cannot find module '%s' required by app.js",
             host);
    expect_init_error(f, "nodejs", "app.handler", want);
}

static void test_node_present_dependency_loads(void **state)
{
    fixture *f = *state;

    code_dir(f, "index.js", "const ms = require('ms');\nexports.handler = async () => ms('2s');\n",
             "node_modules/ms/package.json", "{\"name\":\"ms\",\"version\":\"2.1.3\"}\n",
             "node_modules/ms/index.js", "module.exports = (s) => parseInt(s, 10) * 1000;\n", NULL);
    expect_result(f, "nodejs", "index.handler", "2000");
}

/* ------------------------------------------------------------------ node, ES modules */

static void test_node_esm_missing_package(void **state)
{
    fixture *f = *state;

    code_dir(f, "package.json", "{\"name\":\"fn\",\"type\":\"module\"}\n",
             "index.js", "import ms from 'ms';\nexport const handler = async () => ms('1s');\n",
             "other.js", "import { x } from './gone.js';\nexport const handler = async () => x;\n", NULL);
    expect_init_error(f, "nodejs", "index.handler",
                      "Runtime.ImportModuleError: Error: Cannot find package 'ms' imported from index.js");
    expect_init_error(f, "nodejs", "other.handler",
                      "Runtime.ImportModuleError: Error: Cannot find module 'gone.js' imported from other.js");
}

/* An ES module with a present dependency and top-level await (require() cannot load that one:
 * the bootstrap falls back to import()). */
static void test_node_esm_loads(void **state)
{
    fixture *f = *state;

    code_dir(f, "package.json", "{\"name\":\"fn\",\"type\":\"module\"}\n",
             "index.js", "import ms from 'ms';\nconst base = await Promise.resolve(40);\n"
                         "export const handler = async () => base + ms('2');\n",
             "node_modules/ms/package.json", "{\"name\":\"ms\",\"version\":\"2.1.3\"}\n",
             "node_modules/ms/index.js", "module.exports = (s) => parseInt(s, 10);\n", NULL);
    expect_result(f, "nodejs", "index.handler", "42");
}

/* ------------------------------------------------------------------ python */

static void test_python_missing_dependency(void **state)
{
    fixture *f = *state;

    code_dir(f, "app.py", "import helper\ndef handler(event, context):\n    return 1\n",
             "helper.py", "import pydantic\n",
             "requirements.txt", "pydantic==2.5.3\n", NULL);
    expect_init_error(f, "python3", "app.handler",
                      "Runtime.ImportModuleError: Unable to import module 'app': No module named 'pydantic'");
    expect_init_error(f, "python3", "main.handler",
                      "Runtime.ImportModuleError: Unable to import module 'main': No module named 'main'");
}

int main(void)
{
    int rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_node_missing_dependency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_missing_nested_and_relative, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_missing_handler_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_host_package_is_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_present_dependency_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_esm_missing_package, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_esm_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_missing_dependency, setup, teardown),
    };

    if (rt_begin("test_runtime_errors", "rterr", "errfn") != 0)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    rt_end();
    return rc;
}
