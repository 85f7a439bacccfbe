/* app.c — the build-worker's per-thread clients, handed to the rooms that need them. */
#include "app.h"

#include "topology.h"

deps *bw_deps(bw_app *a)
{
    return deps_thread(&a->deps, BW_NEED, &topo_builds, "build-worker");
}
