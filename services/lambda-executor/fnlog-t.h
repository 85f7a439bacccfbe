/* fnlog-t.h — the fnlog_inv type, so a caller can hold one on its stack (zeroed: discards).
 * Only fnlog.c touches the fields. */
#ifndef EX_FNLOG_T_H
#define EX_FNLOG_T_H

#include "fnlog.h"
#include "sandbox.h"

#define FNLOG_BATCH 128                  /* lines queued before a flush */
#define FNLOG_ARENA (16 * 1024)           /* their bytes; a longer line goes out on its own */

/* A stream's line in progress, carried across reads. */
typedef struct fnlog_part {
    char *buf;         /* FNLOG_LINE_MAX bytes (in the inv's block) */
    size_t len;
    bool dropping;     /* over the limit inside this line: its rest is dropped too */
} fnlog_part;

struct fnlog_inv {
    bool on;
    bool pushed;               /* some line reached the sink */
    fnlog_meta meta;
    int64_t kept_bytes, dropped_bytes, dropped_lines, queue_dropped, lines;
    bool limited;              /* the limit was reached: all later output is dropped */
    fnlog_part part[2];        /* stdout, stderr */
    logq_line *batch;
    size_t nbatch;
    char *arena;
    size_t arena_used;
    void *block;               /* the one allocation holding parts, batch and arena */
    sandbox_sink sink;         /* fnlog_as_sink: feeds this inv */
};

#endif
