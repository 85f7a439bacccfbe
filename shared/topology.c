/* topology.c — the broker objects the services share. */
#include "topology.h"

static const mq_exchange_spec build_exchanges[] = {
    { TOPO_BUILD_EXCHANGE, "direct" },
    { TOPO_BUILD_DLX, "direct" },
};

/* A quorum queue counts deliveries, so a job that crashes its worker every time is
 * dead-lettered after 5 tries instead of looping forever. */
static const mq_queue_spec build_queues[] = {
    { TOPO_BUILD_QUEUE, TOPO_BUILD_DLX, TOPO_BUILD_ROUTING_KEY, 0, 1, 5 },
    { TOPO_BUILD_DEAD_QUEUE, NULL, NULL, 0, 1, 0 },
};

static const mq_binding_spec build_bindings[] = {
    { TOPO_BUILD_QUEUE, TOPO_BUILD_EXCHANGE, TOPO_BUILD_ROUTING_KEY },
    { TOPO_BUILD_DEAD_QUEUE, TOPO_BUILD_DLX, TOPO_BUILD_ROUTING_KEY },
};

const mq_topology topo_builds = {
    build_exchanges, ML_ARRAY_LEN(build_exchanges), build_queues, ML_ARRAY_LEN(build_queues),
    build_bindings,  ML_ARRAY_LEN(build_bindings),
};
