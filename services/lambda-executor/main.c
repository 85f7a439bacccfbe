/* lambda-executor — function registry, sandboxed warm pools, invocations, audit log
 * (see API.md). main reads the configuration, starts the app (app.h) and its background
 * threads (workers.h), and serves the routes until asked to stop. */
#include "accesskeys.h"
#include "async.h"
#include "batch_http.h"
#include "deliveries_http.h"
#include "dlq.h"
#include "fnurl.h"
#include "intauth.h"
#include "invoke.h"
#include "logs_http.h"
#include "runtimes_http.h"
#include "schedules.h"
#include "tenancy.h"
#include "versions.h"
#include "workers.h"

#define MAX_ROUTES 80

static size_t routes(ex_app *app, tenancy *ten, httpd_route *out, size_t max)
{
    size_t n = 0;

    n += invoke_routes(app, out + n, max - n);
    n += registry_routes(app->registry, out + n, max - n);
    n += audit_routes(app->audit, out + n, max - n);
    n += dlq_routes(app, out + n, max - n);
    n += schedules_routes(app, out + n, max - n);
    n += tenancy_routes(ten, out + n, max - n);
    n += akey_routes(ten, out + n, max - n);
    n += versions_routes(app->versions, out + n, max - n);
    versions_wrap_get(app->versions, out, n); /* GET /functions/{fn}?qualifier= */
    n += rth_routes(app, out + n, max - n);
    n += logs_routes(app, out + n, max - n);
    n += ex_deliveries_routes(app, out + n, max - n);
    n += fnurl_routes(app, out + n, max - n);
    n += batch_routes(app, out + n, max - n);
    return n;
}

int main(int argc, char **argv)
{
    static ex_app app;
    static ex_workers workers;
    static ml_intauth_cfg icfg;
    static tenancy ten;
    cfg_var vars[SVC_MAX_CONFIG];
    httpd_route table[MAX_ROUTES];
    svc s;
    size_t n = app_cfg_vars(&app, &s, vars, ML_ARRAY_LEN(vars));
    int rc = 1;

    n += ml_intauth_cfg_vars(&icfg, vars + n, ML_ARRAY_LEN(vars) - n);
    n += tenancy_cfg_vars(&ten, vars + n, ML_ARRAY_LEN(vars) - n);
    if (httpc_global_init() != ML_OK ||
        svc_init(&s, "lambda-executor", "MINILAMBDA_EXECUTOR_PORT", "8081", vars, n, argc,
                 argv) != ML_OK || ml_intauth_start(&icfg) != ML_OK)
        return 1;
    ml_intauth_protect(&s); /* every route but /health, /ready/{cap}, /metrics */
    if (tenancy_start(&ten, &app, &s) != ML_OK || app_start(&app, &s) != ML_OK ||
        workers_start(&workers, &app, &s) != ML_OK)
        goto out;
    rc = svc_serve(&s, table, routes(&app, &ten, table, MAX_ROUTES)) == ML_OK ? 0 : 1;
out:
    workers_stop(&workers);
    app_stop(&app);
    svc_free(&s);
    return rc;
}
