/* awsstream.c — AWS event-stream messages and the streamed-invocation relay (awsstream.h). */
#include "awsstream.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "ml.h"

#define EVS_PRELUDE 12
#define EVS_MAX_MESSAGE (16u << 20) /* the codec's limit on a whole message */

uint32_t gw_evs_crc32(uint32_t crc, const void *data, size_t len)
{
    static uint32_t table[256];
    static _Atomic int ready;
    const unsigned char *p = data;

    if (!ready) { /* idempotent: racing threads write the same values */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* One string header (type 7) into h. */
static int header(ml_buf *h, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    unsigned char t[3];

    if (nl > 255 || vl > 0xffff)
        return ML_ERR;
    t[0] = (unsigned char)nl;
    if (ml_buf_append(h, t, 1) != ML_OK || ml_buf_append(h, name, nl) != ML_OK)
        return ML_ERR;
    t[0] = 7;
    t[1] = (unsigned char)(vl >> 8);
    t[2] = (unsigned char)vl;
    if (ml_buf_append(h, t, 3) != ML_OK)
        return ML_ERR;
    return ml_buf_append(h, value, vl);
}

int gw_evs_message(ml_buf *out, const char *event_type, const char *content_type,
                   const void *payload, size_t len)
{
    ml_buf h = { 0 };
    unsigned char pre[EVS_PRELUDE], crc[4];
    size_t total, start = out->len;
    int rc = ML_ERR;

    if (header(&h, ":event-type", event_type) != ML_OK ||
        header(&h, ":content-type", content_type) != ML_OK ||
        header(&h, ":message-type", "event") != ML_OK)
        goto out;
    total = EVS_PRELUDE + h.len + len + 4;
    if (total > EVS_MAX_MESSAGE)
        goto out;
    be32(pre, (uint32_t)total);
    be32(pre + 4, (uint32_t)h.len);
    be32(pre + 8, gw_evs_crc32(0, pre, 8));
    if (ml_buf_append(out, pre, sizeof(pre)) != ML_OK || ml_buf_append(out, h.data, h.len) != ML_OK ||
        (len && ml_buf_append(out, payload, len) != ML_OK))
        goto out;
    be32(crc, gw_evs_crc32(0, out->data + start, out->len - start));
    rc = ml_buf_append(out, crc, 4);
out:
    if (rc != ML_OK)
        out->len = start < out->len ? start : out->len; /* no half message */
    ml_buf_free(&h);
    return rc;
}

int gw_evs_payload_chunk(ml_buf *out, const void *data, size_t len)
{
    return gw_evs_message(out, "PayloadChunk", "application/octet-stream", data, len);
}

int gw_evs_invoke_complete(ml_buf *out, const char *error_code, const char *error_details,
                           const char *log_result)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    int rc = ML_ERR;

    if (!o || (error_code && *error_code && !cJSON_AddStringToObject(o, "ErrorCode", error_code)) ||
        (error_details && *error_details &&
         !cJSON_AddStringToObject(o, "ErrorDetails", error_details)) ||
        (log_result && *log_result && !cJSON_AddStringToObject(o, "LogResult", log_result)) ||
        !(s = cJSON_PrintUnformatted(o)))
        goto out;
    rc = gw_evs_message(out, "InvokeComplete", "application/json", s, strlen(s));
out:
    free(s);
    cJSON_Delete(o);
    return rc;
}

void gw_evs_error_of(const char *error_json, size_t len, char *code, size_t codelen,
                     char *details, size_t detailslen)
{
    cJSON *o = cJSON_ParseWithLength(error_json ? error_json : "", len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "errorType");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "errorMessage");
    const char *type = cJSON_IsString(t) ? t->valuestring : "";

    if (!cJSON_IsObject(o) || !cJSON_GetArraySize(o)) {
        ml_strlcpy(code, "", codelen);
        ml_strlcpy(details, "", detailslen);
        cJSON_Delete(o);
        return;
    }
    if (strcmp(type, "TimeoutError") == 0)
        ml_strlcpy(code, "Sandbox.Timedout", codelen);
    else if (strncmp(type, "Runtime.", 8) == 0 || strncmp(type, "Function.", 9) == 0)
        ml_strlcpy(code, type, codelen); /* truncation is harmless: a label */
    else
        ml_strlcpy(code, "Unhandled", codelen);
    ml_strlcpy(details, cJSON_IsString(m) ? m->valuestring : type, detailslen);
    cJSON_Delete(o);
}

/* ---- the relay ---- */

/* Queues bytes for the client; ML_ERR once it has gone. */
static int put(gw_srelay *r, const ml_buf *b)
{
    return httpd_stream_write(r->stream, b->data, b->len);
}

static int on_frame(void *ud, char type, const char *data, size_t len)
{
    gw_srelay *r = ud;
    ml_buf b = { 0 };
    int rc = ML_ERR;

    if (type == INVSTREAM_META) {
        cJSON *m = cJSON_ParseWithLength(data, len);
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(m, "content_type");
        if (!r->stream)
            r->stream = r->start(r->ud, cJSON_IsString(ct) ? ct->valuestring : "application/octet-stream");
        cJSON_Delete(m);
        return r->stream ? ML_OK : ML_ERR;
    }
    if (!r->stream) /* the executor always starts with 'M' */
        return ML_ERR;
    if (type == INVSTREAM_DATA) {
        if (r->mode == GW_SRELAY_RAW) {
            ml_buf raw = { .data = (char *)data, .len = len };
            return put(r, &raw);
        }
        if (gw_evs_payload_chunk(&b, data, len) == ML_OK)
            rc = put(r, &b);
        ml_buf_free(&b);
        return rc;
    }
    /* INVSTREAM_END: {} or the error */
    gw_evs_error_of(data, len, r->error_code, sizeof(r->error_code), r->error_details,
                    sizeof(r->error_details));
    r->failed = r->error_code[0] != '\0';
    return ML_OK;
}

int gw_srelay_feed(gw_srelay *r, const char *data, size_t len)
{
    return invstream_feed(&r->dec, data, len, on_frame, r);
}

bool gw_srelay_end(gw_srelay *r)
{
    bool started = r->stream != NULL, clean = r->dec.ended && !r->dec.failed;
    ml_buf b = { 0 };

    if (!r->stream)
        goto out;
    if (r->mode == GW_SRELAY_EVENTS) {
        /* the error says what went wrong: the body itself is whole either way */
        if (!clean)
            gw_evs_invoke_complete(&b, "Unhandled", "the invocation's stream broke off", NULL);
        else
            gw_evs_invoke_complete(&b, r->error_code, r->error_details, NULL);
        if (b.len && put(r, &b) == ML_OK) {
            httpd_stream_close(r->stream);
            goto done;
        }
        httpd_stream_abort(r->stream);
    } else if (clean && !r->failed) {
        httpd_stream_close(r->stream);
    } else {
        httpd_stream_abort(r->stream); /* the client must not take a cut body for a whole one */
    }
done:
    r->stream = NULL;
out:
    ml_buf_free(&b);
    invstream_dec_free(&r->dec);
    return started;
}
