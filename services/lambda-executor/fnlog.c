/* fnlog.c — one invocation's function log (see fnlog.h and docs/logs.md §1 "Capture"). */
#include "fnlog-t.h"

#include <cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sandbox.h"

static atomic_uint_fast64_t limit_dropped_total;

uint64_t fnlog_limit_dropped_lines(void)
{
    return (uint64_t)atomic_load(&limit_dropped_total);
}

static int64_t wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------------------ levels */

static const struct {
    const char *token, *level;
} levels[] = {
    { "ERROR", "error" }, { "WARNING", "warn" }, { "WARN", "warn" }, { "INFO", "info" },
    { "DEBUG", "debug" }, { "TRACE", "trace" }, { "FATAL", "fatal" }, { "CRITICAL", "critical" },
};

/* The level named by s[0..len) exactly (case-insensitive when fold), or NULL. */
static const char *level_named(const char *s, size_t len, bool fold)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(levels); i++) {
        size_t n = strlen(levels[i].token);
        if (n == len && (fold ? strncasecmp(s, levels[i].token, n) : strncmp(s, levels[i].token, n)) == 0)
            return levels[i].level;
    }
    return NULL;
}

/* "ERROR ...", "ERROR: ...", "[ERROR] ...": the token must end the word. */
static const char *level_token(const char *msg, size_t len)
{
    bool bracket = len > 0 && msg[0] == '[';
    size_t start = bracket ? 1 : 0, end = start;

    while (end < len && end - start < 8 && msg[end] >= 'A' && msg[end] <= 'Z')
        end++;
    if (end == start)
        return NULL;
    if (bracket ? (end >= len || msg[end] != ']')
                : (end < len && msg[end] != ' ' && msg[end] != '\t' && msg[end] != ':'))
        return NULL;
    return level_named(msg + start, end - start, false);
}

/* A JSON object line's top-level "level" string (structured logging), or NULL. Bounded: a
 * huge line is not parsed. */
static const char *level_json(const char *msg, size_t len)
{
    const char *found = NULL;
    const cJSON *v;
    cJSON *o;

    if (len < 2 || len > 8192 || msg[0] != '{' || msg[len - 1] != '}')
        return NULL;
    o = cJSON_ParseWithLength(msg, len);
    v = cJSON_GetObjectItemCaseSensitive(o, "level");
    if (cJSON_IsString(v))
        found = level_named(v->valuestring, strlen(v->valuestring), true);
    cJSON_Delete(o);
    return found;
}

const char *fnlog_level(fnlog_stream stream, const char *msg, size_t len)
{
    const char *l = level_token(msg, len);

    if (!l)
        l = level_json(msg, len);
    if (l)
        return l;
    return stream == FNLOG_STDERR ? "error" : "info";
}

/* ------------------------------------------------------------------------------ the batch */

void fnlog_flush(fnlog_inv *inv)
{
    size_t taken;

    if (!inv || !inv->on || inv->nbatch == 0)
        return;
    taken = inv->meta.sink(inv->batch, inv->nbatch);
    if (taken > inv->nbatch)
        taken = inv->nbatch;
    inv->queue_dropped += (int64_t)(inv->nbatch - taken);
    inv->pushed = inv->pushed || taken > 0;
    inv->nbatch = 0;
    inv->arena_used = 0;
}

/* Queues one line (len <= FNLOG_LINE_MAX), flushing first when the batch is full. A line
 * too long for the arena is handed over at once, on its own (the sink copies it), so the
 * arena stays small. */
static void emit(fnlog_inv *inv, fnlog_stream stream, const char *level, const char *msg,
                 size_t len, int64_t ts)
{
    bool alone = len > FNLOG_ARENA / 2;
    logq_line *l;

    if (alone || inv->nbatch == FNLOG_BATCH || inv->arena_used + len > FNLOG_ARENA)
        fnlog_flush(inv);
    if (!alone)
        memcpy(inv->arena + inv->arena_used, msg, len);
    l = &inv->batch[inv->nbatch++];
    *l = (logq_line){ .ts_us = ts, .stream = stream,
                      .level = level ? level : fnlog_level(stream, msg, len),
                      .request_id = inv->meta.request_id, .ns = inv->meta.ns,
                      .function = inv->meta.function, .function_id = inv->meta.function_id,
                      .version = inv->meta.version,
                      .message = alone ? msg : inv->arena + inv->arena_used, .len = len };
    inv->lines++;
    if (alone)
        fnlog_flush(inv);
    else
        inv->arena_used += len;
}

static void platform(fnlog_inv *inv, const char *level, const char *fmt, ...) ML_PRINTF(3, 4);

/* A platform line (not counted against the limit). */
static void platform(fnlog_inv *inv, const char *level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    ml_vsnprintf_trunc(line, sizeof(line), fmt, ap);
    va_end(ap);
    emit(inv, FNLOG_PLATFORM, level, line, strlen(line), wall_us());
}

/* ------------------------------------------------------------------------------ capture */

static void sink_feed(void *ctx, int fd, const char *data, size_t n)
{
    fnlog_feed(ctx, fd == 1 ? FNLOG_STDOUT : FNLOG_STDERR, data, n);
}

static void sink_flush(void *ctx)
{
    fnlog_flush(ctx);
}

const sandbox_sink *fnlog_as_sink(fnlog_inv *inv)
{
    if (!inv)
        return NULL;
    inv->sink = (sandbox_sink){ .feed = sink_feed, .flush = sink_flush, .ctx = inv };
    return &inv->sink;
}

/* Empties inv; the sink handed to a sandbox (fnlog_as_sink) stays valid across it. */
static void inv_reset(fnlog_inv *inv)
{
    memset(inv, 0, sizeof(*inv));
    (void)fnlog_as_sink(inv);
}

void fnlog_begin(fnlog_inv *inv, const fnlog_meta *meta)
{
    const size_t parts = 2 * (size_t)FNLOG_LINE_MAX;
    char *block;

    inv_reset(inv);
    if (!meta->sink && !logq_enabled())
        return;
    block = malloc(parts + FNLOG_ARENA + FNLOG_BATCH * sizeof(logq_line));
    if (!block)
        return;   /* logs are best effort: never fail an invocation for them */
    inv->block = block;
    inv->part[0].buf = block;
    inv->part[1].buf = block + FNLOG_LINE_MAX;
    inv->arena = block + parts;
    inv->batch = (logq_line *)(void *)(block + parts + FNLOG_ARENA);
    inv->meta = *meta;
    if (!inv->meta.sink)
        inv->meta.sink = logq_push;
    if (inv->meta.max_bytes < 0)
        inv->meta.max_bytes = 0;
    inv->on = true;
    platform(inv, "info", "START RequestId: %s Version: %s", meta->request_id,
             meta->version ? meta->version : "$LATEST");
}

/* Bytes past the limit: counted, never kept. A line counts once, when it ends. */
static void drop(fnlog_inv *inv, fnlog_part *p, size_t n, bool ends_line)
{
    inv->dropped_bytes += (int64_t)n + (ends_line ? 1 : 0);
    if (ends_line) {
        inv->dropped_lines++;
        p->dropping = false;
    } else if (n > 0) {
        p->dropping = true;
    }
}

/* n bytes of one line on stream s (ends_line: a newline followed them). */
static void line_bytes(fnlog_inv *inv, fnlog_stream s, const char *data, size_t n, bool ends_line,
                       int64_t ts)
{
    fnlog_part *p = &inv->part[s];

    if (!inv->limited && inv->kept_bytes + (int64_t)(n + (ends_line ? 1 : 0)) > inv->meta.max_bytes)
        inv->limited = true;
    if (inv->limited) {
        /* a line the limit cuts is dropped whole, with what was carried of it */
        if (p->len > 0) {
            inv->kept_bytes -= (int64_t)p->len;
            inv->dropped_bytes += (int64_t)p->len;
            p->len = 0;
            p->dropping = true;
        }
        drop(inv, p, n, ends_line);
        return;
    }
    inv->kept_bytes += (int64_t)(n + (ends_line ? 1 : 0));
    while (n > 0) {
        size_t c;
        if (p->len == FNLOG_LINE_MAX) {   /* a long line: cut, the rest continues */
            emit(inv, s, NULL, p->buf, p->len, ts);
            p->len = 0;
        }
        c = FNLOG_LINE_MAX - p->len < n ? FNLOG_LINE_MAX - p->len : n;
        memcpy(p->buf + p->len, data, c);
        p->len += c;
        data += c;
        n -= c;
    }
    if (ends_line) {
        emit(inv, s, NULL, p->buf, p->len, ts);
        p->len = 0;
    }
}

void fnlog_feed(fnlog_inv *inv, fnlog_stream stream, const char *data, size_t n)
{
    int64_t ts;

    if (!inv || !inv->on || (stream != FNLOG_STDOUT && stream != FNLOG_STDERR))
        return;
    ts = wall_us();
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t len = nl ? (size_t)(nl - data) : n;
        line_bytes(inv, stream, data, len, nl != NULL, ts);
        len += nl ? 1 : 0;
        data += len;
        n -= len;
    }
}

/* ------------------------------------------------------------------------------ the end */

static void free_inv(fnlog_inv *inv)
{
    free(inv->block);
    inv_reset(inv);
}

/* The lines an invocation that stopped badly gets before END (Lambda's wording). */
static void death_line(fnlog_inv *inv, const fnlog_end *e)
{
    const char *id = inv->meta.request_id;
    const char *msg = e->error_message ? e->error_message : "";

    if (e->init_failed) {
        platform(inv, "warn", "INIT_REPORT Init Duration: %.2f ms\tPhase: init\tStatus: error\t"
                 "Error Type: %s", (double)(e->init_us > 0 ? e->init_us : 0) / 1000.0,
                 e->error_type ? e->error_type : "Runtime.Unknown");
    } else if (e->status == SB_TIMEOUT) {
        int64_t ms = wall_us() / 1000;
        time_t sec = (time_t)(ms / 1000);
        struct tm tm;
        char when[32] = "";
        gmtime_r(&sec, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        platform(inv, "warn", "%s.%03dZ %s %s", when, (int)(ms % 1000), id, msg);
    } else if (e->status == SB_CRASH || e->status == SB_OOM) {
        platform(inv, "warn", "%s", msg);
    }
}

static void markers(fnlog_inv *inv)
{
    if (inv->dropped_lines > 0) {
        atomic_fetch_add(&limit_dropped_total, (uint_fast64_t)inv->dropped_lines);
        platform(inv, "warn", "[minilambda] log output truncated: %lld bytes in %lld lines dropped "
                 "(limit %lld bytes per invocation)", (long long)inv->dropped_bytes,
                 (long long)inv->dropped_lines, (long long)inv->meta.max_bytes);
    }
    if (inv->queue_dropped > 0)
        platform(inv, "warn", "[minilambda] log output truncated: %lld lines dropped (the log "
                 "queue was full)", (long long)inv->queue_dropped);
}

static void report(fnlog_inv *inv, const fnlog_end *e)
{
    int64_t us = e->duration_us > 0 ? e->duration_us : 0;
    int64_t billed = (us + 999) / 1000;
    int64_t used = e->max_memory_bytes > 0 ? e->max_memory_bytes >> 20 : 0;
    char init[64] = "";

    if (e->init_us > 0)
        ml_snprintf_trunc(init, sizeof(init), "\tInit Duration: %.2f ms", (double)e->init_us / 1000.0);
    platform(inv, "info", "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %lld ms\t"
             "Memory Size: %lld MB\tMax Memory Used: %lld MB%s", inv->meta.request_id,
             (double)us / 1000.0, (long long)(billed > 0 ? billed : 1), (long long)e->memory_mb,
             (long long)used, init);
}

/* The partial lines, the death line (end NULL: none), markers, END and REPORT (end NULL:
 * none); then flushes and frees. */
static void close_log(fnlog_inv *inv, const fnlog_end *end)
{
    int64_t ts = wall_us();

    for (int s = FNLOG_STDOUT; s <= FNLOG_STDERR; s++) {   /* output without a final newline */
        fnlog_part *p = &inv->part[s];
        if (p->dropping) {   /* a dropped line that never ended: it counts now */
            inv->dropped_lines++;
            p->dropping = false;
        }
        else if (p->len > 0)
            emit(inv, (fnlog_stream)s, NULL, p->buf, p->len, ts);
        p->len = 0;
    }
    if (end)
        death_line(inv, end);
    markers(inv);
    platform(inv, "info", "END RequestId: %s", inv->meta.request_id);
    if (end)
        report(inv, end);
    fnlog_flush(inv);
    free_inv(inv);
}

void fnlog_finish(fnlog_inv *inv, const fnlog_end *end)
{
    if (inv && inv->on)
        close_log(inv, end);
}

void fnlog_finish_result(fnlog_inv *inv, const sandbox_result *res, int64_t memory_mb,
                         int64_t init_us, bool init_failed)
{
    cJSON *o;
    const cJSON *t, *m;

    if (!inv || !inv->on)
        return;
    o = cJSON_ParseWithLength(ml_buf_cstr(&res->payload), res->payload.len);
    t = cJSON_GetObjectItemCaseSensitive(o, "errorType");
    m = cJSON_GetObjectItemCaseSensitive(o, "errorMessage");
    fnlog_finish(inv, &(fnlog_end){ .status = (int)res->status, .init_failed = init_failed,
                                    .error_type = cJSON_IsString(t) ? t->valuestring : NULL,
                                    .error_message = cJSON_IsString(m) ? m->valuestring : NULL,
                                    .duration_us = res->duration_us, .memory_mb = memory_mb,
                                    .max_memory_bytes = res->max_memory_bytes, .init_us = init_us });
    cJSON_Delete(o);
}

void fnlog_abandon(fnlog_inv *inv)
{
    if (!inv || !inv->on)
        return;
    if (inv->pushed)   /* init output already went out: close it with END */
        close_log(inv, NULL);
    else
        free_inv(inv);
}

void fnlog_get_counts(const fnlog_inv *inv, fnlog_counts *out)
{
    memset(out, 0, sizeof(*out));
    if (!inv)
        return;
    *out = (fnlog_counts){ .kept_bytes = inv->kept_bytes, .dropped_bytes = inv->dropped_bytes,
                           .dropped_lines = inv->dropped_lines, .queue_dropped = inv->queue_dropped,
                           .lines = inv->lines };
}
