/* test_stream.c — response streaming in the runtimes (runtimes/provided/README.md
 * "Streaming"), on real sandboxed instances: a python generator and a node
 * streamifyResponse handler send a stream message, chunks as they are produced (each one
 * reaches the sink before the next is made, not at the end), and a final result or error;
 * a crash or timeout mid-stream ends it with the usual status; without a sink the bytes are
 * collected; a non-streaming handler is unchanged.
 *
 * Needs root and full isolation like test_sandbox (fails, never skips, without them).
 * Runs from the repository root or with ML_ROOT set (tests/run.sh sets it). */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "artifacts.h"
#include "log.h"
#include "sandbox.h"

static char g_runtimes[1024];
static char g_report[4096];

typedef struct fixture {
    char dir[64];
    sandbox_instance *inst;
    sandbox_result res;
} fixture;

/* ------------------------------------------------------------------ helpers */

static void write_text(const char *path, const char *text)
{
    FILE *fh = fopen(path, "w");

    assert_non_null(fh);
    assert_int_equal(fputs(text, fh) >= 0, 1);
    assert_int_equal(fclose(fh), 0);
    assert_int_equal(chmod(path, 0644), 0);
}

/* Fills the fixture's code dir (world-readable) with name/content pairs, NULL-terminated; a
 * name may contain directories ("node_modules/a/index.js"), made 0755. */
static void code_dir(fixture *f, ...)
{
    const char *name;
    va_list ap;

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_stream_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(chmod(f->dir, 0755), 0);
    va_start(ap, f);
    while ((name = va_arg(ap, const char *))) {
        const char *content = va_arg(ap, const char *);
        char path[512];
        for (const char *slash = strchr(name, '/'); slash; slash = strchr(slash + 1, '/')) {
            snprintf(path, sizeof(path), "%s/%.*s", f->dir, (int)(slash - name), name);
            assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
            assert_int_equal(chmod(path, 0755), 0);
        }
        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        write_text(path, content);
    }
    va_end(ap);
}

static sandbox_spec spec_for(fixture *f, const char *runtime, const char *handler)
{
    sandbox_spec s = { .runtime = runtime, .handler = handler, .code_dir = f->dir,
                       .runtimes_dir = g_runtimes, .function_name = "streamfn",
                       .function_version = "1", .memory_mb = 256, .timeout_s = 10,
                       .pids_max = 64 };
    return s;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (!f || geteuid() != 0 || sandbox_features() != SANDBOX_F_ALL) {
        fprintf(stderr, "test_stream needs root and full isolation: %s\n", g_report);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char rm[128];

    sandbox_destroy(f->inst);
    if (f->dir[0]) {
        snprintf(rm, sizeof(rm), "rm -rf '%s'", f->dir);
        if (system(rm) != 0)
            fprintf(stderr, "could not remove %s\n", f->dir);
    }
    sandbox_result_free(&f->res);
    free(f);
    return 0;
}


/* ------------------------------------------------------------------ the sink */

typedef struct got {
    int starts;
    char meta[512];
    int nchunks;
    char data[4096];
    size_t len;
    int64_t at_ms[16];          /* when each chunk arrived (wall clock) */
} got;

static int on_start(void *ctx, const char *meta, size_t len)
{
    got *g = ctx;

    g->starts++;
    snprintf(g->meta, sizeof(g->meta), "%.*s", (int)len, meta);
    return ML_OK;
}

static int on_chunk(void *ctx, const char *data, size_t len)
{
    got *g = ctx;

    if (g->nchunks < 16)
        g->at_ms[g->nchunks] = ml_wall_ms();
    g->nchunks++;
    if (g->len + len < sizeof(g->data)) {
        memcpy(g->data + g->len, data, len);
        g->len += len;
        g->data[g->len] = '\0';
    }
    return ML_OK;
}

static void start(fixture *f, const char *runtime, const char *handler, int64_t timeout_s)
{
    sandbox_spec s = spec_for(f, runtime, handler);
    char err[1024] = "";

    s.timeout_s = timeout_s;
    if (sandbox_start(&s, &f->inst, err, sizeof(err)) != ML_OK)
        fail_msg("sandbox_start(%s %s): %s", runtime, handler, err);
}

static void run(fixture *f, got *g)
{
    sandbox_stream_sink sink = { .start = on_start, .chunk = on_chunk, .ctx = g };

    sandbox_result_free(&f->res);
    assert_int_equal(sandbox_invoke_stream(f->inst, NULL, g ? &sink : NULL, "inv-stream", "{}", 2,
                                           ml_now_ms() + 10000, 1u << 20, &f->res), ML_OK);
}

/* Chunk i carries the wall-clock ms it was made at ({"i":i,"t":ms} lines): each must have
 * reached the sink within 50 ms of being made, i.e. not held back until the end. */
static void assert_live(const got *g, int n)
{
    const char *p = g->data;

    assert_int_equal(g->nchunks, n);
    for (int i = 0; i < n; i++) {
        const char *t = strstr(p, "\"t\":");
        long long made;
        assert_non_null(t);
        made = strtoll(t + 4, NULL, 10);
        if (g->at_ms[i] - made > 50 || g->at_ms[i] < made - 5)
            fail_msg("chunk %d made at %lld arrived at %lld", i, made, (long long)g->at_ms[i]);
        p = strchr(t, '\n');
        assert_non_null(p);
    }
}

/* ------------------------------------------------------------------ python */

static const char PY[] =
    "import time\n"
    "def gen(event, context):\n"
    "    context.set_stream_metadata(status_code=201, headers={'x-a': 'b'}, cookies=['c=1'])\n"
    "    for i in range(3):\n"
    "        time.sleep(0.15)\n"
    "        yield {'i': i, 't': int(time.time() * 1000)}\n"
    "def text(event, context):\n"
    "    context.set_stream_metadata(content_type='text/plain')\n"
    "    yield 'h\\u00e9'\n"
    "    yield b'-raw'\n"
    "def boom(event, context):\n"
    "    yield {'i': 0}\n"
    "    raise ValueError('mid-stream')\n"
    "def early(event, context):\n"
    "    raise KeyError('before any item')\n"
    "    yield 1\n"
    "def slow(event, context):\n"
    "    yield 'one'\n"
    "    time.sleep(30)\n"
    "    yield 'two'\n"
    "def empty(event, context):\n"
    "    return\n"
    "    yield\n"
    "def plain(event, context):\n"
    "    return {'plain': True}\n";

static void test_python_generator_streams_live(void **state)
{
    fixture *f = *state;
    got g = { 0 };

    code_dir(f, "app.py", PY, NULL);
    start(f, "python3", "app.gen", 10);
    run(f, &g);
    assert_int_equal(f->res.status, SB_OK);
    assert_true(f->res.streamed);
    assert_int_equal(g.starts, 1);
    assert_string_equal(g.meta, "{\"content_type\":\"application/x-ndjson\",\"http\":{\"statusCode\":201,"
                                "\"headers\":{\"x-a\":\"b\"},\"cookies\":[\"c=1\"]}}");
    assert_live(&g, 3);
    assert_int_equal(f->res.payload.len, 0);
    assert_int_equal(f->res.streamed_bytes, (int64_t)g.len);
}

static void test_python_items_and_collect(void **state)
{
    fixture *f = *state;
    got g = { 0 };

    code_dir(f, "app.py", PY, NULL);
    start(f, "python3", "app.text", 10);
    run(f, &g);
    assert_int_equal(f->res.status, SB_OK);
    assert_string_equal(g.meta, "{\"content_type\":\"text/plain\"}");
    assert_string_equal(g.data, "h\xc3\xa9-raw");
    run(f, NULL); /* no sink: collected into the payload, the type kept */
    assert_int_equal(f->res.status, SB_OK);
    assert_true(f->res.streamed);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "h\xc3\xa9-raw");
    assert_string_equal(ml_buf_cstr(&f->res.stream_meta), "{\"content_type\":\"text/plain\"}");
}

static void test_python_error_mid_stream(void **state)
{
    fixture *f = *state;
    got g = { 0 };

    code_dir(f, "app.py", PY, NULL);
    start(f, "python3", "app.boom", 10);
    run(f, &g);
    assert_int_equal(f->res.status, SB_HANDLER_ERROR);
    assert_true(f->res.streamed);
    assert_int_equal(g.nchunks, 1);
    assert_non_null(strstr(ml_buf_cstr(&f->res.payload), "\"errorType\":\"ValueError\""));
    assert_non_null(strstr(ml_buf_cstr(&f->res.payload), "mid-stream"));
    assert_true(sandbox_alive(f->inst)); /* a handler error: the instance is reused */
    sandbox_destroy(f->inst);
    f->inst = NULL;
    memset(&g, 0, sizeof(g));
    start(f, "python3", "app.early", 10); /* before the first item: an ordinary error */
    run(f, &g);
    assert_int_equal(f->res.status, SB_HANDLER_ERROR);
    assert_false(f->res.streamed);
    assert_int_equal(g.starts, 0);
    assert_non_null(strstr(ml_buf_cstr(&f->res.payload), "before any item"));
}

static void test_python_timeout_mid_stream(void **state)
{
    fixture *f = *state;
    got g = { 0 };

    code_dir(f, "app.py", PY, NULL);
    start(f, "python3", "app.slow", 1);
    run(f, &g);
    assert_int_equal(f->res.status, SB_TIMEOUT);
    assert_true(f->res.streamed);
    assert_int_equal(g.nchunks, 1);
    assert_string_equal(g.data, "one");
    assert_non_null(strstr(ml_buf_cstr(&f->res.payload), "TimeoutError"));
}

static void test_python_empty_and_plain(void **state)
{
    fixture *f = *state;
    got g = { 0 };

    code_dir(f, "app.py", PY, NULL);
    start(f, "python3", "app.empty", 10);
    run(f, &g);
    assert_int_equal(f->res.status, SB_OK);
    assert_int_equal(g.starts, 1); /* the stream message at the end when nothing was yielded */
    assert_int_equal(g.nchunks, 0);
    sandbox_destroy(f->inst);
    f->inst = NULL;
    memset(&g, 0, sizeof(g));
    start(f, "python3", "app.plain", 10);
    run(f, &g);
    assert_int_equal(f->res.status, SB_OK);
    assert_false(f->res.streamed);
    assert_int_equal(g.starts, 0);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "{\"plain\":true}");
}

/* ------------------------------------------------------------------ node */

static const char JS[] =
    "const sleep = (ms) => new Promise((r) => setTimeout(r, ms));\n"
    "exports.live = awslambda.streamifyResponse(async (event, rs, context) => {\n"
    "  rs = awslambda.HttpResponseStream.from(rs, { statusCode: 202, headers: { 'x-b': 'c' } });\n"
    "  rs.setContentType('application/x-ndjson');\n"
    "  for (let i = 0; i < 3; i++) {\n"
    "    await sleep(150);\n"
    "    rs.write(JSON.stringify({ i, t: Date.now() }) + '\\n');\n"
    "  }\n"
    "  rs.end();\n"
    "});\n"
    "exports.boom = awslambda.streamifyResponse(async (event, rs) => {\n"
    "  rs.write('part');\n"
    "  throw new TypeError('node mid-stream');\n"
    "});\n"
    "exports.noend = awslambda.streamifyResponse(async (event, rs) => { rs.write(Buffer.from('x')); });\n"
    "exports.plain = async () => ({ plain: 1 });\n";

static void test_node_streamify_live(void **state)
{
    fixture *f = *state;
    got g = { 0 };

    code_dir(f, "index.js", JS, NULL);
    start(f, "nodejs", "index.live", 10);
    run(f, &g);
    assert_int_equal(f->res.status, SB_OK);
    assert_true(f->res.streamed);
    assert_string_equal(g.meta, "{\"content_type\":\"application/x-ndjson\",\"http\":{\"statusCode\":202,"
                                "\"headers\":{\"x-b\":\"c\"}}}");
    assert_live(&g, 3);
}

static void test_node_error_and_forms(void **state)
{
    fixture *f = *state;
    got g = { 0 };

    code_dir(f, "index.js", JS, NULL);
    start(f, "nodejs", "index.boom", 10);
    run(f, &g);
    assert_int_equal(f->res.status, SB_HANDLER_ERROR);
    assert_string_equal(g.data, "part");
    assert_non_null(strstr(ml_buf_cstr(&f->res.payload), "node mid-stream"));
    sandbox_destroy(f->inst);
    f->inst = NULL;
    memset(&g, 0, sizeof(g));
    start(f, "nodejs", "index.noend", 10); /* returned without end(): complete anyway */
    run(f, &g);
    assert_int_equal(f->res.status, SB_OK);
    assert_string_equal(g.meta, "{\"content_type\":\"application/octet-stream\"}");
    assert_string_equal(g.data, "x");
    sandbox_destroy(f->inst);
    f->inst = NULL;
    memset(&g, 0, sizeof(g));
    start(f, "nodejs", "index.plain", 10);
    run(f, &g);
    assert_int_equal(f->res.status, SB_OK);
    assert_false(f->res.streamed);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "{\"plain\":1}");
}

int main(void)
{
    const char *root = getenv("ML_ROOT");
    char cwd[512], repo_rt[1024], cache[] = "/tmp/ml-stream-runtimes-XXXXXX", err[512] = "", rm[128];
    artifacts a = { 0 };
    int rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_python_generator_streams_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_items_and_collect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_error_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_timeout_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_empty_and_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_streamify_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_error_and_forms, setup, teardown),
    };

    ml_log_init("test_stream", ML_LOG_WARN);
    if (!root)
        root = getcwd(cwd, sizeof(cwd));
    /* the executor's own start-up: the bootstraps staged in the artifact cache */
    snprintf(repo_rt, sizeof(repo_rt), "%s/services/lambda-executor/runtimes", root ? root : ".");
    if (!mkdtemp(cache) || artifacts_init(&a, cache) != ML_OK ||
        artifacts_stage_runtimes(&a, repo_rt, g_runtimes, sizeof(g_runtimes), err, sizeof(err)) != ML_OK) {
        fprintf(stderr, "cannot stage the runtimes: %s\n", err);
        return 1;
    }
    if (geteuid() == 0 && sandbox_init("minilambda-stream-test", g_report, sizeof(g_report)) != ML_OK)
        fprintf(stderr, "sandbox_init failed: %s\n", g_report);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(rm, sizeof(rm), "rm -rf '%s'", cache);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", cache);
    return rc;
}
