/* registry.h — the function registry of the lambda-executor.
 *
 * Functions and their versions live in lambda_service_db and are fed only by signed
 * build-status webhooks (POST /webhooks/build-status/{build_id}); users read and change them
 * through GET/PATCH/DELETE /functions[/{fn}]. registry_get() is the lookup the invoke path
 * makes on every invocation: a process cache (short TTL) in front of Redis (cache-aside,
 * longer TTL, written through on every change) in front of Postgres. Redis being down never
 * fails a lookup; Postgres being down still serves functions this process has seen (stale).
 * See docs/executor-registry.md. */
#ifndef LE_REGISTRY_H
#define LE_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "deps.h"
#include "fnspec-t.h"
#include "httpd.h"
#include "ml.h"
#include "pg.h"
#include "service.h"
#include "ssrf.h"

/* Results of the lookups. */
typedef enum {
    REGISTRY_OK = ML_OK,
    REGISTRY_ERR = ML_ERR,
    REGISTRY_NOT_FOUND = 1, /* no such function (equals RDS_NIL: see redis_fetch) */
    REGISTRY_MISS = 2,      /* registry_get_cached: not in the process cache (or too old) */
    REGISTRY_ABSENT = 3,    /* internal: Redis holds the short-lived "absent" marker */
} registry_rc;

/* A lookup never waits longer than this on Redis (connect and each command). */
#define REGISTRY_REDIS_TIMEOUT_MS 250

#define FN_NAME_MAX (FNSPEC_NAME_MAX + 1) /* buffer sizes: the contract's limits + NUL */
#define FN_NS_MAX (FNSPEC_NS_MAX + 1)
/* a cache key: a lower-case id, or "namespace/name" ('/' is in neither alphabet) */
#define FN_KEY_MAX (FNSPEC_NS_MAX + 1 + FNSPEC_NAME_MAX + 1)
#define FN_RUNTIME_MAX (FNSPEC_RUNTIME_MAX + 1)
#define FN_HANDLER_MAX (FNSPEC_HANDLER_MAX + 1)
#define FN_PREFIX_MAX 256
#define FN_SHA256_MAX 65
#define FN_URL_MAX (FNSPEC_URL_MAX + 1)
/* env: names + values <= FNSPEC_ENV_BYTES_MAX, plus '=' and NUL per variable. */
#define FN_ENV_BYTES_MAX FNSPEC_ENV_BYTES_MAX
#define FN_ENV_MAX (FN_ENV_BYTES_MAX * 3)

typedef enum { FN_PENDING = 0, FN_ACTIVE, FN_FAILED } fn_state;

/* A snapshot of one function as the invoke path needs it; plain data (no pointers), so a
 * copy is independent of the registry. */
typedef struct fn_info {
    char id[ML_UUID_LEN];
    char ns[FN_NS_MAX];                   /* its namespace (docs/tenants.md) */
    char name[FN_NAME_MAX];               /* unique within ns */
    fn_state state;
    int version;                          /* active version; 0 while none */
    /* the function's runtime and handler ($LATEST: a PATCH takes effect at once) */
    char runtime[FN_RUNTIME_MAX];
    char handler[FN_HANDLER_MAX];
    /* S3 location of the active version: {prefix}code.tar.gz, sha256 of that archive;
     * "" while no version is active */
    char artifact_prefix[FN_PREFIX_MAX];
    char artifact_sha256[FN_SHA256_MAX];
    /* the newest build (what a pending or failed function waits on or failed with); "" if none */
    char build_id[ML_UUID_LEN];
    int64_t artifact_size;
    int memory_mb;
    int timeout_s;
    int concurrency;                      /* 0: no per-function cap */
    double rate_rps;                      /* 0: not rate limited */
    int rate_burst;                       /* 0: not given (the limiter's default) */
    int max_retries;
    int max_event_age_s;
    bool network;                         /* its own network namespace (netns.h) */
    char on_success_url[FN_URL_MAX];      /* "" when not set */
    char on_failure_url[FN_URL_MAX];
    /* environment as a packed block "NAME=value\0NAME=value\0" of env_len bytes holding
     * env_count variables, sorted by name */
    size_t env_count;
    size_t env_len;
    char env[FN_ENV_MAX];
    /* increases with every change of the function's row (config, state, version): compare
     * two snapshots' generations to notice a change */
    int64_t generation;
} fn_info;

typedef struct registry registry;

typedef struct registry_config {
    /* from the environment (registry_cfg_vars) */
    const char *webhook_secret; /* MINILAMBDA_INTERNAL_WEBHOOK_SECRET, whsec_... */
    int64_t local_ttl_ms;       /* MINILAMBDA_REGISTRY_LOCAL_TTL_MS: process cache freshness */
    int64_t redis_ttl_s;        /* MINILAMBDA_REGISTRY_REDIS_TTL_S: Redis entry lifetime */
    int64_t cache_max;          /* MINILAMBDA_REGISTRY_CACHE_MAX: process cache entries */
    const char *secrets_key;    /* MINILAMBDA_SECRETS_KEY (listed; secretbox reads it, or _FILE) */
    /* set by the app: users' destination URLs at PATCH (MINILAMBDA_WEBHOOK_ALLOW_*) */
    ssrf_policy ssrf;
    bool network_allowed;       /* set by the app: MINILAMBDA_FUNCTION_NETWORK (else 400) */
    /* set by the app: what a PATCH may choose and the records' runtime_version (read-only) */
    const struct runtimes_table *runtimes;
    /* set by the app: the calling thread's clients (app_thread_deps), NULL when they cannot
     * be had; called on HTTP worker threads and on the invoke path. The registry uses their
     * lambda_service_db connection (->db, borrowed with deps_db_acquire around each group of
     * statements and given back before any Redis or HTTP work; lookups answered from a cache
     * borrow nothing) and Redis client (->redis, which may be NULL), whose commands must be
     * bounded to REGISTRY_REDIS_TIMEOUT_MS. */
    deps *(*thread_deps)(void *ud);
    void *thread_deps_ud;
} registry_config;

/* Appends the registry's configuration variables (destinations in c) to vars; returns how
 * many (at most max). Call before svc_init. */
size_t registry_cfg_vars(registry_config *c, cfg_var *vars, size_t max);

/* Creates the registry (copies cfg; registers its metrics on s) and starts the thread that
 * answers GET /functions/{fn}?wait=active. No I/O. NULL with a reason
 * in err on a bad configuration (e.g. a malformed webhook secret). Free with registry_free. */
registry *registry_new(const registry_config *cfg, svc *s, char *err, size_t errlen);
/* Frees the registry; NULL is fine. Call after the HTTP server has stopped. */
void registry_free(registry *r);

/* Writes the registry's routes (webhook receiver and functions endpoints, all blocking) to
 * out; returns how many (at most max; 5 are needed). GET /functions/{fn}?wait=active parks
 * its request (fnwait.h) instead of holding a worker. */
size_t registry_routes(registry *r, httpd_route *out, size_t max);

/* The namespace a request acts in (its TENANT_HEADER; absent: default) into ns. ML_ERR with
 * 400 invalid_namespace written when the header is not a namespace name. */
int registry_req_ns(httpd_req *req, httpd_resp *resp, char ns[FN_NS_MAX]);

/* Looks up fn (a function's UUID or name) within namespace ns into *out: a function of
 * another namespace is REGISTRY_NOT_FOUND like a missing one. ns NULL: unscoped, for
 * internal callers holding an id (async consumer, cron); a name then means one in default.
 * ML_OK, REGISTRY_NOT_FOUND, or ML_ERR
 * when Postgres is needed but unavailable (err gets why; err may be NULL). May block on a
 * cache miss: Redis is bounded to 250 ms and skipped for a while after it fails; Postgres
 * by its statement timeout. Thread-safe (per-thread connections). */
registry_rc registry_get(registry *r, const char *ns, const char *fn, fn_info *out, char *err,
                         size_t errlen);

/* Process cache only, never any I/O (safe on the HTTP server's polling threads): ML_OK,
 * REGISTRY_NOT_FOUND (known absent), or REGISTRY_MISS (not cached or older than the TTL). */
registry_rc registry_get_cached(registry *r, const char *ns, const char *fn, fn_info *out);

/* Drops the function (id, and name within ns when name is not NULL) from the process cache.
 * The registry does this itself on every change it makes; exposed for callers that learn of
 * a change another way. */
void registry_forget(registry *r, const char *id, const char *ns, const char *name);

/* Sets runtime_version (this executor's interpreter for the document's runtime, null when it
 * lacks it) on a function or version document, or on each element of its page. */
void registry_decorate(registry *r, struct cJSON *doc);

/* At startup: env values still in clear (rows from before docs/secrets.md) or sealed under
 * MINILAMBDA_SECRETS_KEY_OLD are sealed under the current key. ML_ERR (logged) when the
 * database cannot be read or a row cannot be sealed; the next start tries again. Copies in
 * Redis expire within MINILAMBDA_REGISTRY_REDIS_TTL_S. */
int registry_seal_at_rest(registry *r);

#endif
