/* build-worker — consumes build jobs, extracts packages safely, uploads artifacts and
 * delivers build-status webhooks (see API.md). Its HTTP port serves /health and /metrics. */
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
        svc_init(&s, "build-worker", "MINILAMBDA_BUILD_WORKER_PORT", "9092", vars, n, argc,
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
