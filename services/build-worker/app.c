/* app.c — the build-worker's per-thread clients, handed to the rooms that need them. */
#include "app.h"

#include "topology.h"

deps *bw_deps(bw_app *a)
{
    return deps_thread(&a->deps, BW_NEED, &topo_builds, "build-worker");
}

/* The build-worker's capabilities (docs/health.md): what each needs of the checks deps_open
 * registered. */
static const health_cap bw_caps[] = {
    { "build", { "s3", "postgres", "rabbitmq" }, { NULL } }, /* take, build and report a job */
};

int bw_health_caps(svc *s)
{
    return health_set_caps(&s->health, bw_caps, ML_ARRAY_LEN(bw_caps));
}
