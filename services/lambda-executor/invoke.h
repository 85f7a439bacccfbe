/* invoke.h — POST /functions/{fn}/invoke (RequestResponse and DryRun). */
#ifndef EX_INVOKE_H
#define EX_INVOKE_H

#include "app.h"
#include "httpd.h"

/* Writes the invoke route(s) to out; returns how many. */
size_t invoke_routes(ex_app *app, httpd_route *out, size_t max);

#endif
