/* sweeper.c — the outbox side of build acceptance. */
#include "sweeper.h"

#include "accept.h"
#include "log.h"
#include "service.h"

int sweeper_run_once(bm_app *app, deps *d)
{
    char age[24];
    const char *params[] = { age };
    PGresult *r;
    int published = 0;

    if (ml_snprintf(age, sizeof(age), "%lld", (long long)app->sweep_after_s) != ML_OK)
        return -1; /* cannot happen: 24 bytes hold any int64 */
    r = pg_query(d->db, "bm_sweep",
                 "SELECT id, function_id FROM builds WHERE status = 'queued' AND published_at IS NULL"
                 " AND created_at < now() - make_interval(secs => $1::int) ORDER BY created_at LIMIT 100",
                 1, params);
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *bid = pg_get_text(r, i, 0);
        if (accept_republish(d, bid, pg_get_text(r, i, 1)) != ML_OK) {
            ml_log_kv(ML_LOG_WARN, "sweeper cannot publish build job", "build_id", bid, "error",
                      mq_error(d->mq), NULL);
            break;
        }
        ml_log_kv(ML_LOG_INFO, "sweeper published build job", "build_id", bid, NULL);
        published++;
    }
    PQclear(r);
    return published;
}

void *sweeper_main(void *arg)
{
    bm_app *app = arg;
    deps *d = bm_deps(app);

    while (d && !svc_stopping()) {
        if (deps_db_acquire(d) == PGPOOL_OK) { /* one sweep's queries (nested ones count) */
            sweeper_run_once(app, d);
            deps_db_release(d);
        }
        for (int i = 0; i < 20 && !svc_stopping(); i++)
            ml_sleep_ms(250);
    }
    return NULL;
}
