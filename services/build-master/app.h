/* app.h — the build-master's shared state: configuration and metrics. */
#ifndef BM_APP_H
#define BM_APP_H

#include "deps.h"
#include "fnspec-t.h"
#include "metrics.h"
#include "runtimes_check.h"
#include "ssrf.h"

#define BM_NEED (DEPS_BUILD_DB | DEPS_AMQP | DEPS_S3)
/* The contract's size limits (fnspec-t.h): the ZIP, and a request body (its base64 plus
 * the other JSON fields). */
#define BM_MAX_ZIP FNSPEC_MAX_ZIP_BYTES
#define BM_MAX_BODY FNSPEC_MAX_UPLOAD_BODY

typedef struct bm_app {
    deps_config deps;
    const char *executor_url;   /* lambda-executor base URL for build-status webhooks */
    const char *internal_secret; /* whsec_ signing the inline queued event; NULL: outbox only */
    int64_t sweep_after_s;      /* republish queued builds unconfirmed for this long */
    ssrf_policy ssrf;           /* users' webhook URLs at create/update (docs/secrets.md) */
    const char *secrets_key;    /* MINILAMBDA_SECRETS_KEY (listed; secretbox reads it, or _FILE) */
    metric *m_accepted;         /* builds accepted/refused by result */
    bmr_cache runtimes;         /* the executor's GET /runtimes, cached (runtimes_check.h) */
    pgpool db_pool;             /* the threads' shared Postgres connections (zeroed: none,
                                 * each thread has its own); closed after the threads stop */
} bm_app;

/* This thread's clients (see deps_thread_pooled); NULL when they cannot be created. Their
 * d->db is usable only between deps_db_acquire(d) and deps_db_release(d). */
deps *bm_deps(bm_app *app);

/* MINILAMBDA_SECRETS_KEY and the SSRF settings checked at create/update
 * (MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK/_PRIVATE, as the build-workers that deliver): appends
 * to vars, returns how many. */
size_t bm_secrets_cfg_vars(bm_app *app, cfg_var *vars, size_t max);

/* At startup, after the pool: loads MINILAMBDA_SECRETS_KEY (ML_ERR, logged, without a
 * valid one: the build-master refuses to start), then seals env values still in clear or
 * under the old key and redacts env values in settled webhook payloads (docs/secrets.md;
 * a failure there is logged and left to the next start). */
int bm_secrets_start(bm_app *app);

/* Declares the capabilities on s's health set, after deps_open (app.c). */
int bm_health_caps(svc *s);

#endif
