/* config.h — configuration from MINILAMBDA_* environment variables.
 * Each daemon declares one table of cfg_var; cfg_load validates all of it at start-up and
 * reports every problem at once, so an operator fixes a bad deployment in one go. */
#ifndef ML_CONFIG_H
#define ML_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum { CFG_STR = 0, CFG_INT, CFG_BOOL, CFG_URL } cfg_type;

typedef struct cfg_var {
    const char *name;    /* full variable name, e.g. "MINILAMBDA_HTTP_PORT" */
    cfg_type type;
    const char *def;     /* default as text; NULL means required */
    int64_t min, max;    /* CFG_INT bounds (inclusive) */
    const char *schemes; /* CFG_URL: accepted schemes, '|'-separated, e.g. "http|https" */
    const char *help;    /* one line for the README table */
    void *dest;          /* CFG_STR/CFG_URL: const char **; CFG_INT: int64_t *; CFG_BOOL: bool * */
    bool secret;         /* never printed in logs */
} cfg_var;

/* Reads and validates every variable. String results point into the environment or the
 * table's defaults (both live for the process), so nothing is allocated.
 * On failure, err lists every problem, one per line. */
int cfg_load(const cfg_var *vars, size_t n, ml_buf *err);

/* Copies up to max of the n variables in src to dst; returns how many. */
size_t cfg_copy(cfg_var *dst, size_t max, const cfg_var *src, size_t n);

/* Appends a Markdown table (variable, default, meaning) of the table to out. */
int cfg_markdown(const cfg_var *vars, size_t n, ml_buf *out);

/* Logs the effective configuration at info level, secrets masked. */
void cfg_log(const cfg_var *vars, size_t n);

#endif
