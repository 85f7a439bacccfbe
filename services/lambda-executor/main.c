/* lambda-executor — function registry, sandboxed warm pools, invocations, audit log
 * (see API.md). */
#include "deps.h"
#include "log.h"
#include "service.h"

#define NEED (DEPS_LAMBDA_DB | DEPS_REDIS | DEPS_AMQP | DEPS_S3)

int main(int argc, char **argv)
{
    static deps_config cfg;
    cfg_var vars[16];
    size_t n = deps_cfg_vars(&cfg, NEED, vars, ML_ARRAY_LEN(vars));
    svc s;
    deps d = { 0 };
    int rc = 1;

    if (httpc_global_init() != ML_OK ||
        svc_init(&s, "lambda-executor", "MINILAMBDA_EXECUTOR_PORT", "8081", vars, n, argc,
                 argv) != ML_OK)
        return 1;
    /* Redis is a cache here: warm functions keep serving without it. */
    if (deps_open(&d, &cfg, NEED, NULL, true, &s) != ML_OK || svc_serve(&s, NULL, 0) != ML_OK)
        goto out;
    rc = 0;
out:
    deps_close(&d);
    svc_free(&s);
    return rc;
}
