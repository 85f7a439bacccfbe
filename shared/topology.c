/* topology.c — the broker objects the services share. */
#include "topology.h"

static const mq_exchange_spec build_exchanges[] = {
    { .name = TOPO_BUILD_EXCHANGE, .type = "direct" },
    { .name = TOPO_BUILD_DLX, .type = "direct" },
};

/* A quorum queue counts deliveries, so a job that crashes its worker every time is
 * dead-lettered after 5 tries instead of looping forever. */
static const mq_queue_spec build_queues[] = {
    { .name = TOPO_BUILD_QUEUE, .dead_letter_exchange = TOPO_BUILD_DLX,
      .dead_letter_routing_key = TOPO_BUILD_ROUTING_KEY, .quorum = 1, .delivery_limit = 5 },
    { .name = TOPO_BUILD_DEAD_QUEUE, .quorum = 1 },
};

static const mq_binding_spec build_bindings[] = {
    { .queue = TOPO_BUILD_QUEUE, .exchange = TOPO_BUILD_EXCHANGE, .routing_key = TOPO_BUILD_ROUTING_KEY },
    { .queue = TOPO_BUILD_DEAD_QUEUE, .exchange = TOPO_BUILD_DLX, .routing_key = TOPO_BUILD_ROUTING_KEY },
};

const mq_topology topo_builds = {
    .exchanges = build_exchanges, .n_exchanges = ML_ARRAY_LEN(build_exchanges),
    .queues = build_queues,       .n_queues = ML_ARRAY_LEN(build_queues),
    .bindings = build_bindings,   .n_bindings = ML_ARRAY_LEN(build_bindings),
};

static const mq_exchange_spec invoke_exchanges[] = {
    { .name = TOPO_INVOKE_EXCHANGE, .type = "direct" },
    { .name = TOPO_INVOKE_DLX, .type = "direct" },
};

static const mq_queue_spec invoke_queues[] = {
    { .name = TOPO_INVOKE_QUEUE, .dead_letter_exchange = TOPO_INVOKE_DLX,
      .dead_letter_routing_key = TOPO_INVOKE_DEAD_KEY, .quorum = 1, .delivery_limit = 20 },
    { .name = TOPO_INVOKE_RETRY1, .dead_letter_exchange = TOPO_INVOKE_EXCHANGE,
      .dead_letter_routing_key = TOPO_INVOKE_ROUTING_KEY },
    { .name = TOPO_INVOKE_RETRY2, .dead_letter_exchange = TOPO_INVOKE_EXCHANGE,
      .dead_letter_routing_key = TOPO_INVOKE_ROUTING_KEY },
    { .name = TOPO_INVOKE_DEAD_QUEUE, .quorum = 1 },
};

static const mq_binding_spec invoke_bindings[] = {
    { .queue = TOPO_INVOKE_QUEUE, .exchange = TOPO_INVOKE_EXCHANGE, .routing_key = TOPO_INVOKE_ROUTING_KEY },
    { .queue = TOPO_INVOKE_DEAD_QUEUE, .exchange = TOPO_INVOKE_DLX, .routing_key = TOPO_INVOKE_DEAD_KEY },
};

const mq_topology topo_invoke = {
    .exchanges = invoke_exchanges, .n_exchanges = ML_ARRAY_LEN(invoke_exchanges),
    .queues = invoke_queues,       .n_queues = ML_ARRAY_LEN(invoke_queues),
    .bindings = invoke_bindings,   .n_bindings = ML_ARRAY_LEN(invoke_bindings),
};
