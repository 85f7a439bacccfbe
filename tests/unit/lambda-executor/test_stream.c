/* test_stream.c — response streaming in the runtimes (runtimes/provided/README.md
 * "Streaming"), on real sandboxed instances: a python generator and a node
 * streamifyResponse handler send a stream message, chunks as they are produced (each one
 * reaches the sink before the next is made, not at the end), and a final result or error;
 * a crash or timeout mid-stream ends it with the usual status; without a sink the bytes are
 * collected; a non-streaming handler is unchanged.
 *
 * Needs root and full isolation like test_sandbox (fails, never skips, without them).
 * Runs from the repository root or with ML_ROOT set (tests/run.sh sets it). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "rt_fixture.h"

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

static void run(fixture *f, got *g)
{
    sandbox_stream_sink sink = { .start = on_start, .chunk = on_chunk, .ctx = g };

    sandbox_result_free(&f->res);
    assert_int_equal(sandbox_invoke_stream(f->inst, NULL, g ? &sink : NULL, "inv-stream", "{}", 2,
                                           ml_now_ms() + 10000, 1u << 20, &f->res), ML_OK);
}

/* A fresh instance of runtime/handler (the previous one destroyed), invoked once into g
 * (cleared first). */
static void go(fixture *f, got *g, const char *runtime, const char *handler, int64_t timeout_s)
{
    sandbox_destroy(f->inst);
    f->inst = NULL;
    memset(g, 0, sizeof(*g));
    start(f, runtime, handler, timeout_s);
    run(f, g);
}

/* The last invoke's status and whether it streamed. */
static void expect(const fixture *f, sandbox_status status, bool streamed)
{
    assert_int_equal(f->res.status, status);
    assert_int_equal(f->res.streamed, streamed);
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
    go(f, &g, "python3", "app.gen", 10);
    expect(f, SB_OK, true);
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
    go(f, &g, "python3", "app.text", 10);
    assert_int_equal(f->res.status, SB_OK);
    assert_string_equal(g.meta, "{\"content_type\":\"text/plain\"}");
    assert_string_equal(g.data, "h\xc3\xa9-raw");
    run(f, NULL); /* no sink: collected into the payload, the type kept */
    expect(f, SB_OK, true);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "h\xc3\xa9-raw");
    assert_string_equal(ml_buf_cstr(&f->res.stream_meta), "{\"content_type\":\"text/plain\"}");
}

static void test_python_error_mid_stream(void **state)
{
    fixture *f = *state;
    got g = { 0 };

    code_dir(f, "app.py", PY, NULL);
    go(f, &g, "python3", "app.boom", 10);
    expect(f, SB_HANDLER_ERROR, true);
    assert_int_equal(g.nchunks, 1);
    assert_non_null(strstr(ml_buf_cstr(&f->res.payload), "\"errorType\":\"ValueError\""));
    assert_non_null(strstr(ml_buf_cstr(&f->res.payload), "mid-stream"));
    assert_true(sandbox_alive(f->inst)); /* a handler error: the instance is reused */
    go(f, &g, "python3", "app.early", 10); /* before the first item: an ordinary error */
    expect(f, SB_HANDLER_ERROR, false);
    assert_int_equal(g.starts, 0);
    assert_non_null(strstr(ml_buf_cstr(&f->res.payload), "before any item"));
}

static void test_python_timeout_mid_stream(void **state)
{
    fixture *f = *state;
    got g = { 0 };

    code_dir(f, "app.py", PY, NULL);
    go(f, &g, "python3", "app.slow", 1);
    expect(f, SB_TIMEOUT, true);
    assert_int_equal(g.nchunks, 1);
    assert_string_equal(g.data, "one");
    assert_non_null(strstr(ml_buf_cstr(&f->res.payload), "TimeoutError"));
}

static void test_python_empty_and_plain(void **state)
{
    fixture *f = *state;
    got g = { 0 };

    code_dir(f, "app.py", PY, NULL);
    go(f, &g, "python3", "app.empty", 10);
    assert_int_equal(f->res.status, SB_OK);
    assert_int_equal(g.starts, 1); /* the stream message at the end when nothing was yielded */
    assert_int_equal(g.nchunks, 0);
    go(f, &g, "python3", "app.plain", 10);
    expect(f, SB_OK, false);
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
    go(f, &g, "nodejs", "index.live", 10);
    expect(f, SB_OK, true);
    assert_string_equal(g.meta, "{\"content_type\":\"application/x-ndjson\",\"http\":{\"statusCode\":202,"
                                "\"headers\":{\"x-b\":\"c\"}}}");
    assert_live(&g, 3);
}

static void test_node_error_and_forms(void **state)
{
    fixture *f = *state;
    got g = { 0 };

    code_dir(f, "index.js", JS, NULL);
    go(f, &g, "nodejs", "index.boom", 10);
    assert_int_equal(f->res.status, SB_HANDLER_ERROR);
    assert_string_equal(g.data, "part");
    assert_non_null(strstr(ml_buf_cstr(&f->res.payload), "node mid-stream"));
    go(f, &g, "nodejs", "index.noend", 10); /* returned without end(): complete anyway */
    assert_int_equal(f->res.status, SB_OK);
    assert_string_equal(g.meta, "{\"content_type\":\"application/octet-stream\"}");
    assert_string_equal(g.data, "x");
    go(f, &g, "nodejs", "index.plain", 10);
    expect(f, SB_OK, false);
    assert_string_equal(ml_buf_cstr(&f->res.payload), "{\"plain\":1}");
}

int main(void)
{
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

    if (rt_begin("test_stream", "stream", "streamfn") != 0)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    rt_end();
    return rc;
}
