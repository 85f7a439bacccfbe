/* logs_http.h — GET /functions/{fn}/logs and ?follow=1 (docs/logs.md §1 "Read"). */
#ifndef EX_LOGS_HTTP_H
#define EX_LOGS_HTTP_H

#include "app.h"
#include "httpd.h"

/* The route (blocking); app must outlive the server. */
size_t logs_routes(ex_app *app, httpd_route *out, size_t max);

#endif
