/* fnlog.h — one invocation's function log (docs/logs.md §1 "Capture"): raw stdout/stderr
 * bytes split into bounded, timestamped lines, platform lines (START/END/REPORT), the
 * per-invocation limit with its truncation marker; complete lines go to the writer's queue
 * (logq.h). Also keeps the 4 KiB merged tail for X-Log-Result.
 *
 * A zeroed fnlog_inv is valid and discards everything (logging off or no invocation). Used by
 * one thread at a time: the one running the invocation. */
#ifndef EX_FNLOG_H
#define EX_FNLOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { FNLOG_STDOUT = 0, FNLOG_STDERR = 1, FNLOG_PLATFORM = 2 } fnlog_stream;

#define FNLOG_LINE_MAX (64 * 1024)   /* longer lines are cut into pieces of this size */

typedef struct fnlog_inv fnlog_inv;  /* defined in fnlog.c's owner's header (fnlog-t.h) */

#endif
