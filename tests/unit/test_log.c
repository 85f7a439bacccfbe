/* Unit tests: shared/log.c — every line is one JSON object with the required fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int pipefd[2];

/* Reads what was logged so far (non-blocking end of pipe). Caller frees. */
static char *drain(void)
{
    static char buf[1 << 16];
    ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    return strdup(buf);
}

static int setup(void **state)
{
    (void)state;
    if (pipe(pipefd) != 0)
        return -1;
    ml_log_set_fd(pipefd[1]);
    ml_log_init("test-svc", ML_LOG_INFO);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ml_log_set_fd(-1);
    close(pipefd[0]);
    close(pipefd[1]);
    return 0;
}

static void test_fields(void **state)
{
    char *out;
    cJSON *o;
    (void)state;
    ml_log_set_request_id("req-1");
    ml_log_kv(ML_LOG_WARN, "build \"queued\"\n", "build_id", "b1", "n", "2", NULL);
    ml_log_set_request_id(NULL);
    out = drain();
    assert_non_null(strchr(out, '\n'));
    assert_int_equal(strchr(out, '\n')[1], '\0'); /* exactly one line */
    o = cJSON_Parse(out);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "level")->valuestring, "warn");
    assert_string_equal(cJSON_GetObjectItem(o, "service")->valuestring, "test-svc");
    assert_string_equal(cJSON_GetObjectItem(o, "msg")->valuestring, "build \"queued\"\n");
    assert_string_equal(cJSON_GetObjectItem(o, "request_id")->valuestring, "req-1");
    assert_string_equal(cJSON_GetObjectItem(o, "build_id")->valuestring, "b1");
    assert_non_null(strstr(cJSON_GetObjectItem(o, "ts")->valuestring, "Z"));
    cJSON_Delete(o);
    free(out);
}

static void test_level_filter_and_format(void **state)
{
    char *out;
    cJSON *o;
    ml_log_level lvl;
    (void)state;
    ml_log_debug("hidden %d", 1);
    ml_log_info("shown %d%%", 7);
    out = drain();
    o = cJSON_Parse(out);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "msg")->valuestring, "shown 7%");
    assert_null(cJSON_GetObjectItem(o, "request_id"));
    cJSON_Delete(o);
    free(out);
    assert_int_equal(ml_log_parse_level("error", &lvl), ML_OK);
    assert_int_equal(lvl, ML_LOG_ERROR);
    assert_int_equal(ml_log_parse_level("loud", &lvl), ML_ERR);
}

static void *log_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++)
        ml_log_info("line from thread %d with padding %0100d", i, 0);
    return NULL;
}

/* Concurrent writers never interleave inside a line. */
static void test_threads_do_not_interleave(void **state)
{
    pthread_t t[4];
    FILE *f;
    char line[4096];
    int lines = 0;
    (void)state;
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, log_many, NULL);
    /* the pipe holds 64 KiB; read concurrently so writers never block forever */
    f = fdopen(dup(pipefd[0]), "r");
    while (lines < 800 && fgets(line, sizeof(line), f)) {
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        cJSON_Delete(o);
        lines++;
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    fclose(f);
    assert_int_equal(lines, 800);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_level_filter_and_format),
        cmocka_unit_test(test_threads_do_not_interleave),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
