/* app.c — the build-master's per-thread clients, handed to the rooms that need them. */
#include "app.h"

#include "buildstate.h"
#include "log.h"
#include "secretbox.h"
#include "topology.h"

deps *bm_deps(bm_app *a)
{
    return deps_thread_pooled(&a->deps, BM_NEED, &topo_builds, "build-master", &a->db_pool);
}

/* The build-master's capabilities (docs/health.md): what each needs of the checks deps_open
 * registered. */
static const health_cap bm_caps[] = {
    { "build", { "s3", "postgres", "rabbitmq" }, { NULL } }, /* POST /functions, PUT code */
    { "read", { "postgres" }, { NULL } },
    { "write", { "postgres" }, { NULL } },
};

int bm_health_caps(svc *s)
{
    return health_set_caps(&s->health, bm_caps, ML_ARRAY_LEN(bm_caps));
}

size_t bm_secrets_cfg_vars(bm_app *app, cfg_var *vars, size_t max)
{
    const cfg_var all[] = {
        { "MINILAMBDA_SECRETS_KEY", CFG_STR, "", 0, 0, NULL,
          SECRETBOX_KEY_HELP,
          &app->secrets_key, true },
        { "MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK", CFG_BOOL, "false", 0, 0, NULL,
          "let users' webhook URLs reach loopback addresses (local stack only)",
          &app->ssrf.allow_loopback, false },
        { "MINILAMBDA_WEBHOOK_ALLOW_PRIVATE", CFG_BOOL, "false", 0, 0, NULL,
          "let users' webhook URLs reach private networks (10/8, 172.16/12, 192.168/16 ...)",
          &app->ssrf.allow_private, false },
    };
    return cfg_copy(vars, max, all, ML_ARRAY_LEN(all));
}

int bm_secrets_start(bm_app *app)
{
    char err[512], ns[24], nr[24];
    int64_t sealed = 0, redacted = 0;
    deps *d;
    int rc;

    if (secretbox_global_init(err, sizeof(err)) != ML_OK) {
        ml_log_error("%s", err);
        return ML_ERR;
    }
    /* the rest is catching up on old rows: without a database now, the next start does it */
    if (!(d = bm_deps(app)) || deps_db_acquire(d) != PGPOOL_OK) {
        ml_log_warn("secrets: no database connection now to seal older env values at rest");
        return ML_OK;
    }
    rc = buildstate_seal_at_rest(d->db, secretbox_global(), &sealed, &redacted, err, sizeof(err));
    deps_db_release(d);
    if (rc != ML_OK) {
        ml_log_warn("secrets: %s", err);
        return ML_OK;
    }
    ml_snprintf_trunc(ns, sizeof(ns), "%lld", (long long)sealed);
    ml_snprintf_trunc(nr, sizeof(nr), "%lld", (long long)redacted);
    ml_log_kv(ML_LOG_INFO, "secrets at rest checked", "key_id", secretbox_global()->cur.kid,
              "functions_sealed", ns, "payloads_redacted", nr, NULL);
    return ML_OK;
}
