/* mq.h — RabbitMQ client over rabbitmq-c 0.11: declared topology, confirmed publishes,
 * manual-ack consumption, reconnect with backoff.
 *
 * Threads: one mq_conn per thread. An mq_conn owns one AMQP connection (rabbitmq-c state
 * is not thread-safe) and every call on it must come from the thread that uses it.
 *
 * Channels: 1 declares the topology and publishes in confirm mode; 2 consumes; 3 runs
 * passive declares and deletes, whose errors (e.g. 404 no queue) close only that channel.
 *
 * Failure model: any connection loss, error on channel 1 or 2, or publish-confirm timeout
 * marks the connection broken; it is torn down at once and the next call reconnects
 * (mq_ensure). The first reconnect after a loss is immediate; failed connect attempts back
 * off exponentially (MQ_BACKOFF_MIN_MS..MQ_BACKOFF_MAX_MS) and calls made during the backoff
 * fail at once. Every connect re-declares the whole topology and re-issues the consumer.
 *
 * Delivery guarantee: at-least-once. Deliveries not acked when a connection dies are
 * redelivered by the broker (redelivered flag set), possibly to another consumer; acks of
 * deliveries from a dead connection are refused (ML_ERR) — they cannot reach the broker.
 * Consumers must therefore be idempotent (e.g. keyed on message_id).
 *
 * Heartbeats: rabbitmq-c 0.11 services heartbeats only inside its publish and frame-wait
 * calls. A consumer must call mq_consume_next regularly; while it works on one message for
 * longer than the heartbeat interval it must call mq_service periodically, or the broker
 * closes the connection (and redelivers the message). Idle publishers need nothing: a
 * connection the broker dropped while idle is detected and replaced before publishing. */
#ifndef ML_MQ_H
#define ML_MQ_H

#include <stddef.h>
#include <stdint.h>

#include "ml.h"

/* Result of mq_consume_next: a message, an error, or nothing arrived in time. MQ_OK and
 * MQ_ERR equal ML_OK and ML_ERR, so `rc != ML_OK` still means "no message". Compare with
 * the names, never with a number. */
typedef enum mq_status {
    MQ_ERR = ML_ERR,
    MQ_OK = ML_OK,
    MQ_TIMEOUT = 1,
} mq_status;

#define MQ_BACKOFF_MIN_MS 100
#define MQ_BACKOFF_MAX_MS 5000
#define MQ_MAX_HEADERS 16
#define MQ_SHORTSTR_MAX 256 /* AMQP short strings are at most 255 bytes */

/* Durable exchange. */
typedef struct mq_exchange_spec {
    const char *name;
    const char *type; /* "direct", "topic", "fanout" or "headers" */
} mq_exchange_spec;

/* Durable queue with optional dead-lettering. Zero/NULL fields are left unset. */
typedef struct mq_queue_spec {
    const char *name;
    const char *dead_letter_exchange;    /* x-dead-letter-exchange ("" = default exchange) */
    const char *dead_letter_routing_key; /* x-dead-letter-routing-key */
    int64_t message_ttl_ms;              /* x-message-ttl */
    int quorum;                          /* x-queue-type=quorum */
    int64_t delivery_limit;              /* x-delivery-limit (quorum queues only) */
} mq_queue_spec;

typedef struct mq_binding_spec {
    const char *queue;
    const char *exchange;
    const char *routing_key;
} mq_binding_spec;

/* A service's whole topology, declared (idempotently) on every connect, in the order
 * exchanges, queues, bindings. Not copied: it must outlive every mq_conn using it
 * (static const tables are the intended use). Redeclaring a queue with different
 * arguments fails the connect with the broker's 406 PRECONDITION_FAILED text. */
typedef struct mq_topology {
    const mq_exchange_spec *exchanges;
    size_t n_exchanges;
    const mq_queue_spec *queues;
    size_t n_queues;
    const mq_binding_spec *bindings;
    size_t n_bindings;
} mq_topology;

typedef struct mq_options {
    int connect_timeout_ms;      /* 0 = 5000; bounds the TCP connect and the AMQP handshake */
    int op_timeout_ms;           /* 0 = 10000; bounds each RPC and each publish's confirm */
    int heartbeat_s;             /* 0 = 30; negative disables heartbeats */
    const char *connection_name; /* shown by the management UI; NULL = "minilambda"; copied */
} mq_options;

/* A message header: a string (str != NULL) or an integer (str == NULL, num). */
typedef struct mq_header {
    const char *key;
    const char *str;
    int64_t num;
} mq_header;

typedef struct mq_publish_msg {
    const char *exchange;      /* NULL or "" = default exchange (routing_key = queue name) */
    const char *routing_key;
    const void *body;
    size_t body_len;
    const char *content_type;  /* NULL = "application/json" */
    const char *message_id;    /* NULL = none */
    const mq_header *headers;  /* at most MQ_MAX_HEADERS, e.g. x-request-id, x-attempt */
    size_t n_headers;
    int64_t expiration_ms;     /* per-message TTL; 0 = none */
    int mandatory;             /* 1: an unroutable message is an error, not silently dropped */
} mq_publish_msg;

/* A received message. All memory is owned by the struct: release with mq_message_destroy.
 * A zeroed mq_message is valid and empty. */
typedef struct mq_message {
    char *body;          /* NUL-terminated copy (the body may itself contain NULs) */
    size_t body_len;
    uint64_t delivery_tag;
    int redelivered;     /* 1: delivered before and not acked (at-least-once) */
    uint64_t timestamp;  /* publisher's unix time in seconds; 0 = unset */
    char exchange[MQ_SHORTSTR_MAX];
    char routing_key[MQ_SHORTSTR_MAX];
    char message_id[MQ_SHORTSTR_MAX];
    char content_type[MQ_SHORTSTR_MAX];
    mq_header *headers;  /* string and integer headers; others (arrays, tables) are skipped */
    size_t n_headers;
    /* private */
    uint64_t generation_;  /* connection the delivery tag belongs to */
    char *strings_;        /* storage of the header keys and strings */
} mq_message;

typedef struct mq_conn mq_conn;

/* New handle for an amqp://user:pass@host:port/vhost URL (parsed, not connected: the first
 * call connects, or call mq_ensure). topo may be NULL; opts may be NULL for defaults.
 * NULL on a bad URL or out of memory, reason in err. Free with mq_close. */
mq_conn *mq_new(const char *url, const mq_options *opts, const mq_topology *topo, char *err,
                size_t errlen);

/* Closes the connection cleanly (the broker requeues unacked deliveries; an unresponsive
 * broker is waited for op_timeout_ms at most) and frees the handle; NULL is a no-op. */
void mq_close(mq_conn *c);

/* The last error of this handle ("" if none); broker errors include the reply code and
 * text, e.g. "404 NOT_FOUND - no queue 'x' in vhost '/'". Valid until the next call. */
const char *mq_error(const mq_conn *c);

/* Connects if not connected (respecting the backoff): login, channels, confirm mode,
 * topology, consumer. ML_OK when connected. */
int mq_ensure(mq_conn *c);

/* Publishes one persistent message and waits for the broker's confirm. ML_OK only when the
 * broker acked it (it is durably queued); ML_ERR on nack, return (unroutable with
 * mandatory), confirm timeout or connection loss — then the message must be treated as NOT
 * queued (it may still have been, if the loss came after the broker received it). Never
 * retries internally. */
int mq_publish(mq_conn *c, const mq_publish_msg *m);

/* Starts consuming queue with manual acks and at most prefetch unacked deliveries
 * (1..65535); re-issued after every reconnect. One consumer per mq_conn. */
int mq_consume(mq_conn *c, const char *queue, int prefetch);

/* Waits up to timeout_ms for the next delivery into *out (overwritten: destroy it first if
 * it held a message). MQ_OK with a message the caller must ack/nack/reject and then free
 * with mq_message_destroy; MQ_TIMEOUT; or MQ_ERR (connection lost or down — the call then
 * sleeps out the rest of timeout_ms so a consumer loop does not spin). */
mq_status mq_consume_next(mq_conn *c, int timeout_ms, mq_message *out);

/* Services heartbeats and buffers any arrived deliveries without blocking. Call it every
 * few seconds while holding a delivery longer than the heartbeat interval. ML_ERR if the
 * connection was lost (held deliveries will be redelivered). */
int mq_service(mq_conn *c);

/* Acknowledges m: the broker deletes it. */
int mq_ack(mq_conn *c, const mq_message *m);
/* Negative ack: requeue = 1 puts it back in the queue (redelivered), 0 dead-letters it
 * (or drops it if the queue has no dead-letter exchange). */
int mq_nack(mq_conn *c, const mq_message *m, int requeue);
/* Rejects a poison message: dead-lettered (or dropped), never requeued. */
int mq_reject(mq_conn *c, const mq_message *m);

/* Header key of m, or NULL. The entry is owned by m. */
const mq_header *mq_message_header(const mq_message *m, const char *key);

/* Frees what m owns and zeroes it; NULL and zeroed messages are fine. */
void mq_message_destroy(mq_message *m);

/* Ready (not yet delivered) message count and consumer count of an existing queue, via a
 * passive declare. ML_ERR with "404 NOT_FOUND ..." if the queue does not exist.
 * Either out-pointer may be NULL. */
int mq_queue_stats(mq_conn *c, const char *queue, uint32_t *messages, uint32_t *consumers);

/* Deletes a queue and its messages (a missing queue is not an error). */
int mq_queue_delete(mq_conn *c, const char *queue);

/* Broker round trip for /health (reconnecting if needed). */
int mq_ping(mq_conn *c);

#endif
