/* fnspec.h — the function contract (API.md) in one place: the rules for names, runtimes,
 * handlers, env, rate limits and destination URLs, the table of configurable fields with
 * their bounds and defaults, the size limits (fnspec-t.h), and the build.status event's
 * encoder and decoder. Every service checks a function definition through here.
 *
 * All checks return ML_OK (valid) or ML_ERR. None allocates unless said so. Thread-safe:
 * no state. */
#ifndef ML_FNSPEC_H
#define ML_FNSPEC_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "fnspec-t.h"

/* [A-Za-z_][A-Za-z0-9_]* over s[0..n) (env names, python modules, export names). */
int fnspec_is_ident(const char *s, size_t n);

/* ^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$ and not a UUID ({fn} in a path is an id or a name, so a
 * name must never parse as an id). NULL is invalid. */
int fnspec_name_valid(const char *name);
/* A namespace name: 1..FNSPEC_NS_MAX of [a-z0-9-], starting and ending with [a-z0-9]
 * (a DNS label: it appears in metrics labels, Redis keys and log fields unescaped). */
int fnspec_ns_valid(const char *ns);
#define FNSPEC_NAME_RULE "name must match ^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$ and not look like a UUID"

/* An accepted runtime name (docs/versions.md "Runtimes"): python3.9 ... python3.13,
 * nodejs18.x, nodejs20.x, nodejs22.x, provided.al2, provided.al2023 and the aliases python3,
 * nodejs, provided. Whether this platform can run it is the runtimes table's (runtimes.h).
 * NULL is invalid. */
int fnspec_runtime_valid(const char *runtime);
#define FNSPEC_RUNTIME_RULE "runtime must be one of python3.9, python3.10, python3.11, " \
    "python3.12, python3.13, nodejs18.x, nodejs20.x, nodejs22.x, provided.al2, "           \
    "provided.al2023 (or the aliases python3, nodejs, provided)"
/* The family of an accepted name: "python3", "nodejs" or "provided" (its handler rules,
 * bootstrap and interpreter kind); NULL when the name is not accepted. */
const char *fnspec_runtime_family(const char *runtime);
/* The i-th accepted name (aliases included), NULL past the end: for tables and tests. */
const char *fnspec_runtime_name(size_t i);

/* The handler used when none is given: "bootstrap" for provided, NULL for the others. */
const char *fnspec_default_handler(const char *runtime);

/* Handler for a valid runtime, at most FNSPEC_HANDLER_MAX bytes, by the runtime's family:
 *   python3  module.function — both identifiers, exactly one dot;
 *   nodejs   file.export     — file [A-Za-z0-9_-]+, export an identifier, exactly one dot;
 *   provided a file name [A-Za-z0-9_.-]+ not starting with '.' (default bootstrap).
 * ML_ERR for an unknown runtime or a NULL argument. */
int fnspec_handler_valid(const char *runtime, const char *handler);
/* What the handler must look like for runtime, for messages (never NULL). */
const char *fnspec_handler_form(const char *runtime);
/* The file a python/nodejs handler names ("app.handler" -> "app.py"), written to out;
 * ML_ERR for provided, an invalid handler or a too small out. */
int fnspec_handler_file(const char *runtime, const char *handler, char *out, size_t outlen);

/* env: an object mapping identifiers to strings, at most FNSPEC_ENV_BYTES_MAX bytes of
 * names and values. On ML_ERR a message goes to err (may be NULL). */
int fnspec_env_valid(const cJSON *env, char *err, size_t errlen);

/* description: a string of at most FNSPEC_DESCRIPTION_MAX characters (UTF-8 code points). */
int fnspec_description_valid(const cJSON *d);
/* tags: an object whose members are tags, key 1..FNSPEC_TAG_KEY_MAX and value a string of at
 * most FNSPEC_TAG_VALUE_MAX characters. merge (PATCH): a null value removes the tag, and the
 * result of merging into cur (the current tags, NULL: none) has at most FNSPEC_TAGS_MAX;
 * otherwise (create) tags itself has at most that many and no nulls. err says why. */
int fnspec_tags_check(const cJSON *tags, const cJSON *cur, bool merge, char *err, size_t errlen);

/* rate_limit: an object with only "rps" (0 < N <= FNSPEC_RPS_MAX) and optionally "burst"
 * (an integer FNSPEC_BURST_MIN..FNSPEC_BURST_MAX). null is not accepted here. */
int fnspec_rate_limit_valid(const cJSON *rl);

/* on_success_url / on_failure_url: http:// or https:// (any case), a host, at most
 * FNSPEC_URL_MAX bytes, no spaces or control bytes. */
int fnspec_dest_url_valid(const char *url);

/* queued, building, completed or failed. */
int fnspec_build_status_valid(const char *status);

/* ---- the configurable fields ------------------------------------------------------- */

/* The table's row for id (never NULL for a valid id). Rows (bounds, default, nullable):
 *   memory_mb       64..4096, default 128
 *   timeout_s       1..900, default 30
 *   env             object, default {}
 *   rate_limit      object or null (unlimited), default null
 *   concurrency     1..1000 or null (no cap), default 10
 *   max_retries     0..2, default 2
 *   max_event_age_s 60..21600, default 21600
 *   on_success_url, on_failure_url  URL or null */
const fnspec_field *fnspec_field_get(fnspec_field_id id);
/* The row named name, or NULL. */
const fnspec_field *fnspec_field_find(const char *name);
/* v against the row: a JSON value of the right kind in bounds, or null when nullable. */
int fnspec_field_check(const fnspec_field *f, const cJSON *v);
/* Every member of obj (an object) against its row; an unknown member is an error when
 * strict, skipped otherwise. On ML_ERR, err holds "<field> must ..." or the unknown field. */
int fnspec_config_check(const cJSON *obj, bool strict, char *err, size_t errlen);

/* The members of a POST /functions JSON body, checked by kind with the same table PATCH
 * uses: name, runtime, handler and webhook_url must be strings; description and tags pass
 * fnspec_description_valid / fnspec_tags_check (not merge); memory_mb, timeout_s, env,
 * rate_limit and concurrency pass fnspec_field_check (the string "30" is no number, null
 * only where the row is nullable); any other member is an error (the rest of the
 * configuration is PATCH's). Value rules beyond the kind (a name's syntax, ...) are the
 * caller's. On ML_ERR *field names the member (points into obj or is static) and err says
 * why. */
int fnspec_create_check(const cJSON *obj, const char **field, char *err, size_t errlen);
#define FNSPEC_CREATE_FIELDS "name, runtime, handler, webhook_url, code_base64, memory_mb, timeout_s, env, rate_limit, concurrency, description, tags"

/* ---- build.status ------------------------------------------------------------------ */

/* The wire form, key order as the build side has always sent it:
 *   {"type":"build.status","build_id","function_id","status","error","timestamp",
 *    "function":{"namespace","name","runtime","handler","config","sealed"},
 *    "artifact":{"prefix","sha256","size_bytes","files"} | null}
 * build_id and function_id are UUID strings; size_bytes and files JSON numbers printed
 * in full (decode takes them up to 2^53, what a double holds exactly);
 * "config" / "sealed" are left out when NULL; "artifact" is null unless has_artifact.
 * On ML_OK *out is a new NUL-terminated string the caller releases with free(). */
int fnspec_build_event_encode(const fnspec_build_event *ev, char **out);

/* Parses and checks a build.status body of len bytes (need not be NUL-terminated):
 * type, UUIDs, status, a timestamp, function name/runtime/handler by the rules above,
 * config (when present) by fnspec_config_check (not strict), and for completed the
 * artifact's prefix, sha256, size_bytes and files. On ML_OK ev is filled and owns its
 * allocations (fnspec_build_event_free); on ML_ERR ev owns nothing and err says why. */
int fnspec_build_event_decode(const char *json, size_t len, fnspec_build_event *ev, char *err,
                              size_t errlen);

/* Releases what ev owns (error, config, artifact_prefix) and zeroes those members. */
void fnspec_build_event_free(fnspec_build_event *ev);

#endif
