/* topology.h — RabbitMQ exchanges and queues, defined once so every service that declares
 * them declares the same arguments (the broker refuses a redeclaration that differs). */
#ifndef ML_TOPOLOGY_H
#define ML_TOPOLOGY_H

#include "mq.h"

#define TOPO_BUILD_EXCHANGE "minilambda.builds"
#define TOPO_BUILD_QUEUE "minilambda.build_jobs"
#define TOPO_BUILD_ROUTING_KEY "build"
#define TOPO_BUILD_DLX "minilambda.builds.dlx"
#define TOPO_BUILD_DEAD_QUEUE "minilambda.build_jobs.dead"

/* Build jobs: a durable quorum queue, dead-lettered after repeated failed deliveries. */
extern const mq_topology topo_builds;

#endif
