/* config.c — validated configuration from the environment. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "1", "true", "yes", "on" };
    static const char *const no[] = { "0", "false", "no", "off" };

    for (size_t i = 0; i < ML_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return ML_OK;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return ML_OK;
        }
    }
    return ML_ERR;
}

/* ML_OK if url starts with one of the '|'-separated schemes followed by "://" and a host. */
static int check_url(const char *url, const char *schemes)
{
    const char *p = schemes;

    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (strncmp(url, p, n) == 0 && strncmp(url + n, "://", 3) == 0 && url[n + 3] != '\0')
            return ML_OK;
        p = bar ? bar + 1 : NULL;
    }
    return ML_ERR;
}

static int load_one(const cfg_var *v, ml_buf *err)
{
    const char *raw = getenv(v->name);

    if (raw && !*raw)
        raw = NULL; /* an empty variable means "unset", as in most 12-factor tools */
    if (!raw)
        raw = v->def;
    if (!raw) {
        ml_buf_printf(err, "%s is required: %s\n", v->name, v->help);
        return ML_ERR;
    }
    switch (v->type) {
    case CFG_STR:
        *(const char **)v->dest = raw;
        return ML_OK;
    case CFG_URL:
        if (check_url(raw, v->schemes) != ML_OK) {
            ml_buf_printf(err, "%s=%s is not a URL with scheme %s\n", v->name,
                          v->secret ? "***" : raw, v->schemes);
            return ML_ERR;
        }
        *(const char **)v->dest = raw;
        return ML_OK;
    case CFG_INT:
        if (ml_parse_int64(raw, v->min, v->max, (int64_t *)v->dest) != ML_OK) {
            ml_buf_printf(err, "%s=%s must be an integer from %lld to %lld\n", v->name, raw,
                          (long long)v->min, (long long)v->max);
            return ML_ERR;
        }
        return ML_OK;
    case CFG_BOOL:
        if (parse_bool(raw, (bool *)v->dest) != ML_OK) {
            ml_buf_printf(err, "%s=%s must be true or false\n", v->name, raw);
            return ML_ERR;
        }
        return ML_OK;
    }
    return ML_ERR;
}

int cfg_load(const cfg_var *vars, size_t n, ml_buf *err)
{
    int rc = ML_OK;

    for (size_t i = 0; i < n; i++) {
        if (load_one(&vars[i], err) != ML_OK)
            rc = ML_ERR;
    }
    return rc;
}

int cfg_markdown(const cfg_var *vars, size_t n, ml_buf *out)
{
    int rc = ml_buf_append_str(out, "| variable | default | meaning |\n|---|---|---|\n");

    for (size_t i = 0; i < n && rc == ML_OK; i++) {
        const cfg_var *v = &vars[i];
        rc = ml_buf_printf(out, "| `%s` | %s%s%s | %s |\n", v->name, v->def ? "`" : "",
                           v->def ? v->def : "required", v->def ? "`" : "", v->help);
    }
    return rc;
}

void cfg_log(const cfg_var *vars, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const cfg_var *v = &vars[i];
        const char *raw = getenv(v->name);
        const char *shown = (raw && *raw) ? raw : (v->def ? v->def : "");

        ml_log_kv(ML_LOG_DEBUG, "config", "name", v->name, "value", v->secret ? "***" : shown,
                  NULL);
    }
}

size_t cfg_copy(cfg_var *dst, size_t max, const cfg_var *src, size_t n)
{
    n = n < max ? n : max;
    memcpy(dst, src, n * sizeof(*dst));
    return n;
}
