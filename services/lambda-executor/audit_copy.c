/* audit_copy.c — a log record (one JSON object, audit_encode) as one row of COPY's text
 * format for the writer's staging table: the columns of AUDIT_COPY_COLUMNS, tab-separated,
 * \N for a member left out, text escaped as COPY wants it. Parsing on the writer's side spares
 * Postgres a JSON parse per row inside the statement that holds the row locks. */
#include <cJSON.h>
#include <string.h>

#include "audit-int.h"

static const char *const columns[] = { AUDIT_COPY_COLUMNS_LIST };

static int column_of(const char *name)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(columns); i++) {
        if (strcmp(columns[i], name) == 0)
            return (int)i;
    }
    return -1;
}

/* COPY text format: backslash, tab, newline and carriage return are escaped. */
static int put_text(ml_buf *out, const char *s)
{
    const char *run = s;
    int rc = ML_OK;

    for (; *s && rc == ML_OK; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '\t' ? "\\t" : *s == '\n' ? "\\n" : *s == '\r' ? "\\r" : NULL;
        if (!esc)
            continue;
        rc = ml_buf_append(out, run, (size_t)(s - run)) | ml_buf_append(out, esc, 2);
        run = s + 1;
    }
    return rc == ML_OK ? ml_buf_append(out, run, (size_t)(s - run)) : ML_ERR;
}

static int put_value(ml_buf *out, const cJSON *v)
{
    if (!v || cJSON_IsNull(v))
        return ml_buf_append(out, "\\N", 2);
    if (cJSON_IsString(v))
        return put_text(out, v->valuestring);
    if (cJSON_IsBool(v))
        return ml_buf_append(out, cJSON_IsTrue(v) ? "t" : "f", 1);
    if (cJSON_IsNumber(v)) /* the encoder writes whole numbers only, all below 2^53 */
        return ml_buf_printf(out, "%lld", (long long)v->valuedouble);
    return ML_ERR;
}

int audit_copy_row(const char *line, size_t len, size_t ord, ml_buf *out, bool *bad)
{
    const cJSON *slot[ML_ARRAY_LEN(columns)] = { 0 };
    cJSON *o = cJSON_ParseWithLength(line, len);
    size_t mark = out->len;
    int rc;

    *bad = !cJSON_IsObject(o);
    if (*bad) {
        cJSON_Delete(o);
        return ML_ERR;
    }
    for (const cJSON *c = o->child; c; c = c->next) {
        int i = c->string ? column_of(c->string) : -1;
        if (i >= 0)
            slot[i] = c;
    }
    rc = ml_buf_printf(out, "%zu", ord);
    for (size_t i = 0; i < ML_ARRAY_LEN(columns) && rc == ML_OK; i++) {
        rc = ml_buf_append(out, "\t", 1);
        if (rc == ML_OK && (rc = put_value(out, slot[i])) != ML_OK && out->len >= mark)
            *bad = slot[i] && !cJSON_IsString(slot[i]) && !cJSON_IsNumber(slot[i]) && !cJSON_IsBool(slot[i]);
    }
    if (rc == ML_OK)
        rc = ml_buf_append(out, "\n", 1);
    if (rc != ML_OK)
        out->len = mark; /* whole rows only */
    cJSON_Delete(o);
    return rc;
}
