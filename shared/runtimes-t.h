/* runtimes-t.h — the runtimes table's types (functions in runtimes.h). */
#ifndef ML_RUNTIMES_T_H
#define ML_RUNTIMES_T_H

#include <stdbool.h>
#include <stddef.h>

#include "fnspec-t.h"

#define RUNTIMES_MAX 16            /* accepted names (fnspec_runtime_name), with room */
#define RUNTIMES_PATH_MAX 512
#define RUNTIMES_VERSION_MAX 64

typedef struct runtimes_entry {
    char name[FNSPEC_RUNTIME_MAX + 1];
    const char *family;                    /* static: "python3" | "nodejs" | "provided" */
    char interpreter[RUNTIMES_PATH_MAX];   /* absolute path; "" for provided or unknown */
    char version[RUNTIMES_VERSION_MAX];    /* "Python 3.11.2" | "Node.js v18.19.0" | "provided" */
    char why[128];                         /* why not available, for the start-up log */
    bool configured;                       /* interpreter from MINILAMBDA_RUNTIMES */
    bool available;
} runtimes_entry;

typedef struct runtimes_table {
    runtimes_entry e[RUNTIMES_MAX];
    size_t n;
} runtimes_table;

/* Writes the interpreter's version line ("Python 3.11.2", "Node.js v18.19.0") to ver. */
typedef int (*runtimes_probe_fn)(const char *interpreter, const char *family, char *ver,
                                 size_t len, void *ud);

#endif
