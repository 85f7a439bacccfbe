/* app.c — the build-master's per-thread clients, handed to the rooms that need them. */
#include "app.h"

#include "topology.h"

deps *bm_deps(bm_app *a)
{
    return deps_thread_pooled(&a->deps, BM_NEED, &topo_builds, "build-master", &a->db_pool);
}
