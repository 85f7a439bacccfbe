/* app.c — the build-master's per-thread clients, handed to the rooms that need them. */
#include "app.h"

#include "topology.h"

deps *bm_deps(bm_app *a)
{
    return deps_thread_pooled(&a->deps, BM_NEED, &topo_builds, "build-master", &a->db_pool);
}

/* The build-master's capabilities (docs/health.md): what each needs of the checks deps_open
 * registered. */
static const health_cap bm_caps[] = {
    { "build", { "s3", "postgres", "rabbitmq" }, { NULL } }, /* POST /functions, PUT code */
    { "read", { "postgres" }, { NULL } },
    { "write", { "postgres" }, { NULL } },
};

int bm_health_caps(svc *s)
{
    return health_set_caps(&s->health, bm_caps, ML_ARRAY_LEN(bm_caps));
}
