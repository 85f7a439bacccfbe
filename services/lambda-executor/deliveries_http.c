/* deliveries_http.c — GET /invocations/{id}/deliveries and POST
 * /invocations/{id}/deliveries/{delivery_id}/redeliver: an invocation's on_success /
 * on_failure destination deliveries (delivery.h). */
#include "deliveries_http.h"

#include "delivery.h"

static deps *thread_deps(void *ud)
{
    return app_thread_deps(ud);
}

size_t ex_deliveries_routes(ex_app *app, httpd_route *routes, size_t max)
{
    static delivery_api api = { .kind = OUTBOX_DESTINATIONS, .thread_deps = thread_deps };
    const httpd_route all[] = {
        { "GET", "/invocations/{id}/deliveries", delivery_h_list, &api, 0, true },
        { "POST", "/invocations/{id}/deliveries/{delivery_id}/redeliver", delivery_h_redeliver, &api, 0, true },
    };

    api.ud = app;
    return httpd_routes_copy(routes, max, all, ML_ARRAY_LEN(all));
}
