/* audit_encode.c — a record as one JSON object: the element the batch upsert reads and the
 * payload of a write-ahead log record. */
#include <stdlib.h>
#include <string.h>

#include "audit-int.h"
#include "crypto.h"

static const char *const status_names[] = { "queued", "running", "succeeded", "failed", "timed_out",
                                            "dead_lettered" };
static const char *const trigger_names[] = { "http_sync", "http_async", "cron", "dlq_replay" };

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid. */
size_t audit_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return len;
}

/* A JSON string of at most max_chars characters of s. Invalid UTF-8 and NUL (which Postgres
 * text cannot hold) become U+FFFD, so any function output can be stored. */
static int put_str(ml_buf *b, const char *str, size_t n, size_t max_chars)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, chars = 0;
    int rc = ml_buf_append(b, "\"", 1);

    while (rc == ML_OK && i < n && chars < max_chars) {
        unsigned char c = s[i];
        size_t run = i, len;
        char esc[8];

        while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\' &&
               chars < max_chars)
            run++, chars++;
        if (run > i) {
            rc = ml_buf_append(b, s + i, run - i);
            i = run;
            continue;
        }
        chars++;
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            rc = ml_buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20 && c != 0) {
            rc = ml_snprintf(esc, sizeof(esc), "\\u%04x", c);
            if (rc == ML_OK)
                rc = ml_buf_append(b, esc, 6);
            i++;
        } else if (c >= 0x80 && (len = audit_utf8_len(s + i, n - i)) > 0) {
            rc = ml_buf_append(b, s + i, len);
            i += len;
        } else {
            rc = ml_buf_append(b, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    return rc == ML_OK ? ml_buf_append(b, "\"", 1) : ML_ERR;
}

static int put_key(ml_buf *b, const char *key)
{
    return ml_buf_printf(b, "%s\"%s\":", b->len > 1 ? "," : "", key);
}

static int put_int(ml_buf *b, const char *key, int64_t v)
{
    return put_key(b, key) == ML_OK ? ml_buf_printf(b, "%lld", (long long)v) : ML_ERR;
}

static int put_text(ml_buf *b, const char *key, const char *v, size_t max_chars)
{
    return put_key(b, key) == ML_OK ? put_str(b, v, strlen(v), max_chars) : ML_ERR;
}

static int put_b64(ml_buf *b, const char *key, const void *data, size_t len)
{
    size_t size = CRYPTO_BASE64_ENC_SIZE(len);
    char *enc = malloc(size);
    int rc = ML_ERR;

    if (enc && crypto_base64_encode(data, len, enc, size) == ML_OK && put_key(b, key) == ML_OK &&
        ml_buf_append(b, "\"", 1) == ML_OK && ml_buf_append(b, enc, size - 1) == ML_OK)
        rc = ml_buf_append(b, "\"", 1);
    free(enc);
    return rc;
}

#define INVALID(...)                                                                           \
    do {                                                                                       \
        ml_snprintf(err, errlen, __VA_ARGS__);                                                 \
        return ML_ERR;                                                                         \
    } while (0)

static int record_check(const audit_record *r, char *err, size_t errlen)
{
    if (ml_uuid_valid(r->id) != ML_OK)
        INVALID("id must be a UUID");
    if (ml_uuid_valid(r->function_id) != ML_OK)
        INVALID("function_id must be a UUID");
    if ((unsigned)r->status >= ML_ARRAY_LEN(status_names) || (unsigned)r->trigger >= ML_ARRAY_LEN(trigger_names))
        INVALID("status or trigger out of range");
    if (r->version < 0 || r->attempts < 0 || r->attempts > 1000000 || r->cold_start < -1 || r->cold_start > 1)
        INVALID("version, attempts or cold_start out of range");
    if (r->payload_size < 0 || r->payload_size > AUDIT_BODY_MAX || r->response_size < -1 ||
        r->response_size > INT32_MAX)
        INVALID("payload_size must be 0..%d and response_size -1..2^31-1", AUDIT_BODY_MAX);
    if ((r->payload && r->payload_len > AUDIT_BODY_MAX) || (r->result && r->result_len > AUDIT_BODY_MAX))
        INVALID("payload and result are stored up to %d bytes", AUDIT_BODY_MAX);
    if (r->duration_ms < -1 || r->duration_ms > INT32_MAX || r->memory_used_mb < -1 ||
        r->memory_used_mb > INT32_MAX)
        INVALID("duration_ms or memory_used_mb out of range");
    if (r->created_ms < 0 || r->started_ms < 0 || r->finished_ms < 0)
        INVALID("times must be >= 0");
    if ((r->replay_of && ml_uuid_valid(r->replay_of) != ML_OK) ||
        (r->schedule_id && ml_uuid_valid(r->schedule_id) != ML_OK))
        INVALID("replay_of and schedule_id must be UUIDs");
    if ((r->executed_version && (!r->executed_version[0] || strlen(r->executed_version) > 10)) ||
        (r->alias && (!r->alias[0] || strlen(r->alias) > 128)))
        INVALID("executed_version is 1-10 and alias 1-128 characters");
    return ML_OK;
}

/* The record as one JSON object; members left out are NULL in the batch statement. Every
 * append's ML_OK (0) / ML_ERR (-1) is OR-ed: the result is ML_ERR if any failed. */
static int record_put(const audit_record *r, ml_buf *b)
{
    int64_t now = ml_wall_ms();
    int64_t started = r->started_ms ? r->started_ms : r->status == AUDIT_RUNNING ? now : 0;
    int64_t finished = r->finished_ms ? r->finished_ms : r->status >= AUDIT_SUCCEEDED ? now : 0;
    int rc = ml_buf_append(b, "{", 1) | put_text(b, "id", r->id, 36) |
             put_text(b, "function_id", r->function_id, 36) |
             put_text(b, "trigger", trigger_names[r->trigger], 16) |
             put_text(b, "status", status_names[r->status], 16) | put_int(b, "attempts", r->attempts) |
             put_int(b, "payload_size", r->payload_size) |
             put_int(b, "created_ms", r->created_ms ? r->created_ms : now);
    const char *tail = r->log_tail;
    size_t tail_len = r->log_tail_len;

    if (tail && tail_len > AUDIT_LOG_TAIL_MAX) {
        tail += tail_len - AUDIT_LOG_TAIL_MAX;
        tail_len = AUDIT_LOG_TAIL_MAX;
    }
    if (r->version > 0)
        rc |= put_int(b, "version", r->version);
    if (r->cold_start >= 0)
        rc |= put_key(b, "cold_start") | ml_buf_append_str(b, r->cold_start ? "true" : "false");
    if (r->request_id)
        rc |= put_text(b, "request_id", r->request_id, 128);
    if (r->response_size >= 0)
        rc |= put_int(b, "response_size", r->response_size);
    if (r->payload)
        rc |= put_b64(b, "payload", r->payload, r->payload_len);
    if (r->payload_sha256[0])
        rc |= put_text(b, "payload_sha256", r->payload_sha256, 64);
    if (r->result)
        rc |= put_b64(b, "result", r->result, r->result_len);
    if (r->error_type)
        rc |= put_text(b, "error_type", r->error_type, 128);
    if (r->error_message)
        rc |= put_text(b, "error_message", r->error_message, 65536);
    if (tail)
        rc |= put_b64(b, "log_tail", tail, tail_len);
    if (r->duration_ms >= 0)
        rc |= put_int(b, "duration_ms", r->duration_ms);
    if (r->memory_used_mb >= 0)
        rc |= put_int(b, "memory_used_mb", r->memory_used_mb);
    if (started)
        rc |= put_int(b, "started_ms", started);
    if (finished)
        rc |= put_int(b, "finished_ms", finished);
    if (r->replay_of)
        rc |= put_text(b, "replay_of", r->replay_of, 36);
    if (r->schedule_id)
        rc |= put_text(b, "schedule_id", r->schedule_id, 36);
    if (r->executed_version)
        rc |= put_text(b, "executed_version", r->executed_version, 10);
    if (r->alias)
        rc |= put_text(b, "alias", r->alias, 128);
    return rc | ml_buf_append(b, "}", 1);
}

int audit_encode(const audit_record *rec, ml_buf *out, char *err, size_t errlen)
{
    ml_buf b;

    if (record_check(rec, err, errlen) != ML_OK)
        return ML_ERR;
    ml_buf_init(&b, out->max);
    if (record_put(rec, &b) != ML_OK || ml_buf_append(out, b.data, b.len) != ML_OK) {
        ml_buf_free(&b);
        ml_snprintf_trunc(err, errlen, "out of memory encoding the record");
        return ML_ERR;
    }
    ml_buf_free(&b);
    return ML_OK;
}

bool audit_status_valid(const char *s)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(status_names); i++) {
        if (strcmp(s, status_names[i]) == 0)
            return true;
    }
    return false;
}
