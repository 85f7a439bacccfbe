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

#define TOPO_INVOKE_EXCHANGE "minilambda.invoke"
#define TOPO_INVOKE_QUEUE "minilambda.invocations"
#define TOPO_INVOKE_ROUTING_KEY "invoke"
#define TOPO_INVOKE_RETRY1 "minilambda.invocations.retry.1"
#define TOPO_INVOKE_RETRY2 "minilambda.invocations.retry.2"
#define TOPO_INVOKE_DLX "minilambda.invoke.dlx"
#define TOPO_INVOKE_DEAD_QUEUE "minilambda.invocations.dead"
#define TOPO_INVOKE_DEAD_KEY "dead"

/* Async invocations: a quorum queue; two delay queues (messages carry their own expiration,
 * then dead-letter back to the invoke exchange) for retries; a dead-letter queue for events
 * that exhausted their attempts (and for poison messages past the delivery limit). */
extern const mq_topology topo_invoke;

#endif
