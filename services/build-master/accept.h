/* accept.h — accepting a build: package to S3, rows to Postgres, job to RabbitMQ with a
 * publisher confirm; only then 202. */
#ifndef BM_ACCEPT_H
#define BM_ACCEPT_H

#include "app.h"
#include "httpd.h"
#include "validate.h"

typedef struct accept_req {
    const char *ns;             /* the caller's namespace (tenant.h); the function's, for a PUT */
    int64_t max_functions;      /* POST: the namespace's max_functions quota; -1 = none */
    const fn_spec *spec;        /* POST /functions: the new function; NULL for a new build */
    const char *function_id;    /* PUT .../code: the existing function */
    const char *webhook_url;    /* PUT .../code: replaces the function's webhook_url if set */
    const void *zip;
    size_t zip_len;
} accept_req;

/* Writes the 202 (or the error) to resp. */
void accept_build(bm_app *app, deps *d, const accept_req *a, httpd_resp *resp);

/* Publishes the job of a build whose publish was never confirmed and releases its held
 * deliveries (the sweeper's step). */
int accept_republish(deps *d, const char *build_id, const char *function_id);

#endif
