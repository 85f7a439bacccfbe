/* runtimes.h — the runtimes table (docs/versions.md "Runtimes"): which of the accepted runtime
 * names (fnspec_runtime_valid) this platform can run, with which interpreter and at which
 * exact version. The operator configures it (MINILAMBDA_RUNTIMES, MINILAMBDA_PYTHON,
 * MINILAMBDA_NODE); names not configured are discovered at start by probing
 * `<interpreter> --version`. The lambda-executor owns the table and serves it at
 * GET /runtimes; the build-master reads that document back (runtimes_from_json) to refuse
 * a runtime that no executor has.
 *
 * A table is plain data (runtimes-t.h): no allocation, no locks. Fill it on one thread
 * (runtimes_init, runtimes_configure, runtimes_discover), then share it read-only. */
#ifndef ML_RUNTIMES_H
#define ML_RUNTIMES_H

#include <cJSON.h>
#include <stddef.h>

#include "runtimes-t.h"

/* Every accepted name, none available yet, no interpreter. */
void runtimes_init(runtimes_table *t);

/* MINILAMBDA_RUNTIMES: "name=/abs/path/to/interpreter,..." (NULL or "" is nothing). Each
 * name must be an accepted python or nodejs name (provided has no interpreter); a name given
 * twice is an error. On ML_ERR err says which entry and t is unchanged in meaning (entries
 * before the bad one may be set: the caller refuses to start). */
int runtimes_configure(runtimes_table *t, const char *spec, char *err, size_t errlen);

/* Fills in what is not configured and probes every interpreter (each path once):
 *   python3.N  configured, else /usr/bin/python3.N, else the default python when it is 3.N;
 *   nodejsN.x  configured, else the default node when its major is N;
 *   python3 / nodejs  configured, else python (MINILAMBDA_PYTHON or /usr/bin/python3) /
 *              node (MINILAMBDA_NODE or node on the usual paths and PATH);
 *   provided*  always available (the function brings its own bootstrap).
 * A probed version that is not the name's (python3.12=/usr/bin/python3.11) leaves the name
 * unavailable: a function never runs on another interpreter than its runtime's. python and
 * node may be NULL (the defaults). probe: NULL is runtimes_probe_exec (tests pass a fake). */
void runtimes_discover(runtimes_table *t, const char *python, const char *node,
                       runtimes_probe_fn probe, void *ud);

/* Runs `interpreter --version` (5 s at most) and writes "Python 3.11.2" / "Node.js v18.19.0"
 * (by family) to ver. ML_ERR when it is not executable, fails or prints nothing usable. */
int runtimes_probe_exec(const char *interpreter, const char *family, char *ver, size_t len,
                        void *ud);

/* The entry of an accepted name (available or not), NULL for any other name. */
const runtimes_entry *runtimes_find(const runtimes_table *t, const char *name);
/* ML_OK when name is accepted and available. */
int runtimes_available(const runtimes_table *t, const char *name);
/* "python3.11, nodejs20.x, ..." — the available names (aliases included) for messages;
 * "none" when nothing is. Truncated silently to len. */
void runtimes_names(const runtimes_table *t, char *out, size_t len);

/* The GET /runtimes document: {"runtimes":[{"name","family","interpreter","version",
 * "aliases":[...]}]} (family: "python" | "nodejs" | "provided"; interpreter null for
 * provided) — one item per available versioned name (python3.N, nodejsN.x,
 * provided.al2023), the aliases that run the same interpreter version listed under it; an
 * alias with no such versioned name is an item of its own. Caller deletes (NULL: no memory). */
cJSON *runtimes_to_json(const runtimes_table *t);
/* The reverse, for a client of GET /runtimes: marks available every accepted name that the
 * document lists as a name or an alias (with its version and interpreter). ML_ERR when doc
 * is not such a document (t is then left with nothing available). */
int runtimes_from_json(runtimes_table *t, const cJSON *doc);

#endif
