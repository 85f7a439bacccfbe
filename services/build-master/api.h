/* api.h — the build-master's HTTP routes. */
#ifndef BM_API_H
#define BM_API_H

#include "app.h"
#include "httpd.h"

/* Fills routes (capacity max) with the build-master's routes bound to app; returns how many. */
size_t api_routes(bm_app *app, httpd_route *routes, size_t max);

#endif
