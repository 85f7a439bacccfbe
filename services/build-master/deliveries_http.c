/* deliveries_http.c — GET /builds/{id}/deliveries and POST
 * /builds/{id}/deliveries/{delivery_id}/redeliver: a build's user webhooks (delivery.h). */
#include "deliveries_http.h"

#include "delivery.h"

static deps *thread_deps(void *ud)
{
    return bm_deps(ud);
}

size_t bm_deliveries_routes(bm_app *app, httpd_route *routes, size_t max)
{
    static delivery_api api = { .kind = OUTBOX_BUILD_WEBHOOKS, .thread_deps = thread_deps };
    const httpd_route all[] = {
        { "GET", "/builds/{id}/deliveries", delivery_h_list, &api, 0, true },
        { "POST", "/builds/{id}/deliveries/{delivery_id}/redeliver", delivery_h_redeliver, &api, 0, true },
    };

    api.ud = app;
    return httpd_routes_copy(routes, max, all, ML_ARRAY_LEN(all));
}
