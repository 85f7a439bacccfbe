/* log.c — JSON-lines logger. One write(2) per line so concurrent lines never interleave. */
#include "log.h"

#include <cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char log_service[64] = "minilambda";
static ml_log_level log_min = ML_LOG_INFO;
static int log_fd = STDOUT_FILENO;
static _Thread_local char log_rid[128];

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void ml_log_init(const char *service, ml_log_level min_level)
{
    ml_strlcpy(log_service, service, sizeof(log_service));
    log_min = min_level;
}

int ml_log_parse_level(const char *s, ml_log_level *out)
{
    for (size_t i = 0; s && i < ML_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (ml_log_level)i;
            return ML_OK;
        }
    }
    return ML_ERR;
}

void ml_log_set_request_id(const char *request_id)
{
    if (request_id)
        ml_strlcpy(log_rid, request_id, sizeof(log_rid));
    else
        log_rid[0] = '\0';
}

const char *ml_log_request_id(void)
{
    return log_rid[0] ? log_rid : NULL;
}

void ml_log_set_fd(int fd)
{
    log_fd = fd >= 0 ? fd : STDOUT_FILENO;
}

static void format_ts(char *out, size_t size)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    /* a log line's time stamp (24 chars; the caller's 40 bytes hold it) */
    ml_snprintf_trunc(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      ts.tv_nsec / 1000000);
}

/* Builds and writes one line; takes ownership of nothing. */
static void emit(ml_log_level level, const char *msg, va_list *kv)
{
    char ts[40];
    cJSON *o = cJSON_CreateObject();
    char *line = NULL;

    if (!o)
        return;
    format_ts(ts, sizeof(ts));
    cJSON_AddStringToObject(o, "ts", ts);
    cJSON_AddStringToObject(o, "level", level_names[level]);
    cJSON_AddStringToObject(o, "service", log_service);
    cJSON_AddStringToObject(o, "msg", msg);
    if (log_rid[0])
        cJSON_AddStringToObject(o, "request_id", log_rid);
    if (kv) {
        const char *k, *v;
        while ((k = va_arg(*kv, const char *)) != NULL) {
            v = va_arg(*kv, const char *);
            if (!cJSON_GetObjectItemCaseSensitive(o, k))
                cJSON_AddStringToObject(o, k, v ? v : "");
        }
    }
    line = cJSON_PrintUnformatted(o);
    if (line) {
        size_t n = strlen(line);
        line[n] = '\n'; /* replace NUL: we write exactly n + 1 bytes, not a C string */
        ssize_t w = write(log_fd, line, n + 1);
        (void)w;
    }
    free(line);
    cJSON_Delete(o);
}

void ml_log(ml_log_level level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    if (level < log_min)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap); /* truncation of an over-long message is fine */
    va_end(ap);
    emit(level, msg, NULL);
}

void ml_log_kv(ml_log_level level, const char *msg, ...)
{
    va_list ap;

    if (level < log_min)
        return;
    va_start(ap, msg);
    emit(level, msg, &ap);
    va_end(ap);
}
