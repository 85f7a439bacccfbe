/* build-master — accepts function packages, stores them in S3, records builds in Postgres
 * and publishes build jobs to RabbitMQ (see API.md). */
#include "deps.h"
#include "log.h"
#include "service.h"
#include "topology.h"

#define NEED (DEPS_BUILD_DB | DEPS_AMQP | DEPS_S3)

int main(int argc, char **argv)
{
    static deps_config cfg;
    cfg_var vars[16];
    size_t n = deps_cfg_vars(&cfg, NEED, vars, ML_ARRAY_LEN(vars));
    svc s;
    deps d = { 0 };
    int rc = 1;

    if (httpc_global_init() != ML_OK ||
        svc_init(&s, "build-master", "MINILAMBDA_BUILD_MASTER_PORT", "8082", vars, n, argc,
                 argv) != ML_OK)
        return 1;
    if (deps_open(&d, &cfg, NEED, &topo_builds, false, &s) != ML_OK ||
        svc_serve(&s, NULL, 0) != ML_OK)
        goto out;
    rc = 0;
out:
    deps_close(&d);
    svc_free(&s);
    return rc;
}
