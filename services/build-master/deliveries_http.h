/* deliveries_http.h — a build's webhook deliveries and their redelivery (docs/logs.md §4). */
#ifndef BM_DELIVERIES_HTTP_H
#define BM_DELIVERIES_HTTP_H

#include "app.h"
#include "httpd.h"

/* Fills routes (capacity max) with the deliveries routes bound to app; returns how many. */
size_t bm_deliveries_routes(bm_app *app, httpd_route *routes, size_t max);

#endif
