/* app.h — the build-worker's shared state. */
#ifndef BW_APP_H
#define BW_APP_H

#include "deps.h"
#include "extract.h"
#include "install.h"
#include "metrics.h"
#include "runtimes-t.h"

#define BW_NEED (DEPS_BUILD_DB | DEPS_AMQP | DEPS_S3)

typedef struct bw_app {
    deps_config deps;
    const char *scratch_dir;   /* configured root, shared by the workers of a host */
    char scratch[512];         /* this process's own: <scratch_dir>/w<pid> */
    const char *executor_url;  /* lambda-executor base URL for build-status webhooks */
    char worker_id[128];       /* host:pid, recorded on the builds it claims */
    int64_t concurrency;       /* builds at once */
    int64_t stale_after_s;     /* a 'building' build older than this may be taken over */
    extract_limits limits;
    /* webhook delivery */
    const char *internal_secret;  /* signs deliveries to the lambda-executor */
    const char *retry_schedule;   /* "" or comma-separated milliseconds */
    bool allow_loopback, allow_private;
    int64_t dispatchers;
    metric *m_builds, *m_duration, *m_rejections, *m_extract_rejections, *m_log_failures;
    /* dependency installation (install.h); the runtimes table is the executor's
     * (MINILAMBDA_RUNTIMES + discovery): the interpreter a function runs on installs for it */
    install_config install;
    runtimes_table runtimes;
    const char *runtimes_cfg, *python_cfg, *node_cfg;
} bw_app;

/* This thread's clients (see deps_thread), from app.c. */
deps *bw_deps(bw_app *app);

/* Declares the capabilities on s's health set, after deps_open (app.c). */
int bw_health_caps(svc *s);

#endif
