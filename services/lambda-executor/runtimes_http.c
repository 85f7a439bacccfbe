/* runtimes_http.c — the runtimes table's start-up and GET /runtimes (see runtimes_http.h). */
#include "runtimes_http.h"

#include "log.h"

int rth_start(ex_app *app)
{
    char err[256], names[512];

    runtimes_init(&app->runtimes);
    if (runtimes_configure(&app->runtimes, app->runtimes_cfg, err, sizeof(err)) != ML_OK) {
        ml_log_error("%s", err);
        return ML_ERR;
    }
    runtimes_discover(&app->runtimes, app->python_cfg, app->node_cfg, NULL, NULL);
    for (size_t i = 0; i < app->runtimes.n; i++) {
        const runtimes_entry *e = &app->runtimes.e[i];
        if (e->configured && !e->available)   /* the operator asked for it: say so loudly */
            ml_log_warn("runtime %s unavailable: %s", e->name, e->why);
    }
    runtimes_names(&app->runtimes, names, sizeof(names));
    ml_log_info("runtimes available: %s", names);
    return ML_OK;
}

/* Any caller the internal token admits: the table is the same for every namespace. */
static httpd_result h_runtimes(httpd_req *req, httpd_resp *resp, void *ud)
{
    const ex_app *app = ud;
    cJSON *doc = runtimes_to_json(&app->runtimes);

    ML_UNUSED(req);
    if (!doc)
        httpd_resp_error(resp, 500, "internal", "out of memory");
    else
        httpd_resp_json(resp, 200, doc);
    return HTTPD_DONE;
}

size_t rth_routes(ex_app *app, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "GET", "/runtimes", h_runtimes, app, 0, false },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}
