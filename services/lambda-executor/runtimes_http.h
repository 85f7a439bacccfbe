/* runtimes_http.h — the executor's runtimes table (shared/runtimes.h): made at start from
 * MINILAMBDA_RUNTIMES / MINILAMBDA_PYTHON / MINILAMBDA_NODE and discovery, served at
 * GET /runtimes (docs/versions.md "Runtimes"), and looked up when an instance starts. */
#ifndef EX_RUNTIMES_HTTP_H
#define EX_RUNTIMES_HTTP_H

#include "app.h"
#include "httpd.h"

/* Fills app->runtimes (configuration, then discovery) and logs what is available and why
 * the rest is not. ML_ERR (logged) on a malformed MINILAMBDA_RUNTIMES: the executor must not
 * start with a table the operator did not mean. Runs once, before any thread reads it. */
int rth_start(ex_app *app);

/* GET /runtimes. */
size_t rth_routes(ex_app *app, httpd_route *out, size_t max);

#endif
