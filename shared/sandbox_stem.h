/* sandbox_stem.h — stem cells: sandboxes started ahead, specialised into a function at a
 * cold start (docs/sandbox.md "Stem cells").
 *
 * A stem is a function instance with every layer (namespaces + pivot_root, memory/pids/cpu
 * cgroups, its own uid, no capabilities, no_new_privs, seccomp, rlimits) whose runtime has
 * started and loaded its bootstrap, with an empty /var/task and the platform's generic
 * environment. A cold start takes one: its cgroup limits become the function's, the
 * function's code is mounted read-only at /var/task, and a "specialise" message hands the
 * runtime the handler and the function's exact environment; it then loads the handler and
 * answers ready like sandbox_start. Each stem becomes one function's instance (never a
 * second's), destroyed like any other.
 *
 * Stems are kept per key (runtime name, interpreter, runtimes dir; node also its memory
 * size, which fixes its heap limit), created lazily once a key is used, up to per_runtime
 * each, by one background thread (SCHED_BATCH, nice 10, one start at a time; the stems run
 * at the lowest cpu weight until specialised) and recycled after max_age_ms.
 *
 * Thread-safety: after sandbox_init; every call may run on any thread. */
#ifndef ML_SANDBOX_STEM_H
#define ML_SANDBOX_STEM_H

#include <stdint.h>

#include "metrics.h"
#include "sandbox.h"

/* sandbox_start_from_stem: no stem fits (or none is ready): start the usual way. */
#define SANDBOX_STEM_NONE 1

typedef struct sandbox_stem_pool sandbox_stem_pool;

typedef struct sandbox_stem_config {
    int64_t per_runtime;    /* stems kept ready per key (MINILAMBDA_STEM_CELLS); 0: none */
    int64_t max_age_ms;     /* an idle stem older than this is replaced (0: 600000) */
    int64_t pids_max;       /* the stems' pids limit until specialised (0: 64) */
    metrics_registry *metrics; /* may be NULL: minilambda_stem_cells{runtime,state} */
} sandbox_stem_config;

/* Creates the pool and its refill thread (none started while per_runtime is 0, or when the
 * host lacks namespaces or the memory/pids cgroups: every start is then SANDBOX_STEM_NONE).
 * NULL on OOM. Free with sandbox_stem_pool_free, which destroys every stem. */
sandbox_stem_pool *sandbox_stem_pool_new(const sandbox_stem_config *cfg);
void sandbox_stem_pool_free(sandbox_stem_pool *sp);

/* Whether spec may start from a stem: python or node family, no network, no variable that
 * changes how the interpreter starts (LANG, LC_*, TZ, NODE_*, UV_*, PYTHON*, LD_*, ...). */
bool sandbox_stem_eligible(const sandbox_spec *spec);

/* Marks spec's key as used (the refill thread keeps per_runtime stems of it from now on)
 * without taking one. sandbox_start_from_stem does this too. */
void sandbox_stem_want(sandbox_stem_pool *sp, const sandbox_spec *spec);

/* Cold start from a stem: as sandbox_start (same result, same errors), or
 * SANDBOX_STEM_NONE when spec is not eligible, no stem of its key is ready, or the stem
 * could not take the function's limits (its memory use already above them) — then nothing
 * happened and the caller starts the usual way. *out owned by the caller: sandbox_destroy. */
int sandbox_start_from_stem(sandbox_stem_pool *sp, const sandbox_spec *spec,
                            sandbox_instance **out, char *err, size_t errlen);

/* Stems ready (idle) and being started, all keys (tests, metrics). */
void sandbox_stem_counts(sandbox_stem_pool *sp, int64_t *idle, int64_t *starting);
/* Waits until spec's key has at least n idle stems; ML_ERR at timeout_ms (tests). */
int sandbox_stem_wait_ready(sandbox_stem_pool *sp, const sandbox_spec *spec, int64_t n,
                            int64_t timeout_ms);

#endif
