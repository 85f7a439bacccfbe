/* deliveries_http.h — an invocation's destination deliveries and their redelivery
 * (docs/logs.md §4). */
#ifndef EX_DELIVERIES_HTTP_H
#define EX_DELIVERIES_HTTP_H

#include "app.h"
#include "httpd.h"

/* Fills routes (capacity max) with the deliveries routes bound to app; returns how many. */
size_t ex_deliveries_routes(ex_app *app, httpd_route *routes, size_t max);

#endif
