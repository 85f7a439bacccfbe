/* mq.c — rabbitmq-c 0.11 wrapper: topology, publisher confirms, consumption, reconnect.
 *
 * rabbitmq-c 0.11 has no confirm-wait helper, so every frame the broker sends is read by
 * one loop (pump) that settles the awaited publish (basic.ack/nack, basic.return) and
 * buffers deliveries that arrive meanwhile, so none is lost whichever call reads it. */
#include "mq.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include "log.h"

#define CH_PUB 1
#define CH_CONSUME 2
#define CH_AUX 3

#define MQ_DEFAULT_CONNECT_MS 5000
#define MQ_DEFAULT_OP_MS 10000
#define MQ_DEFAULT_HEARTBEAT_S 30
#define MQ_FRAME_MAX 131072
#define MQ_ERR_MAX 512

/* Connection stamps are unique process-wide, so a delivery can be acked only on the very
 * connection (and mq_conn) it came from. */
static atomic_uint_fast64_t g_generation;

struct pending {
    mq_message msg;
    struct pending *next;
};

/* The publish being waited for. */
typedef struct confirm {
    uint64_t tag;
    int settled;  /* 0 waiting, 1 acked, -1 nacked */
    int returned; /* basic.return seen: unroutable */
    char why[MQ_SHORTSTR_MAX + 16];
} confirm;

struct mq_conn {
    char *url_buf; /* amqp_parse_url points info's strings into it */
    struct amqp_connection_info info;
    int connect_timeout_ms;
    int op_timeout_ms;
    int heartbeat_s;
    char name[MQ_SHORTSTR_MAX];
    const mq_topology *topo;
    char queue[MQ_SHORTSTR_MAX]; /* consumed queue, if consuming */
    int prefetch;
    int consuming;
    amqp_connection_state_t st; /* NULL = not connected */
    int up;                     /* st completed its connect */
    int ever_up;                /* connected before: log reconnects */
    int aux_open;
    uint64_t pub_seq;    /* last publish sequence number on channel 1 */
    uint64_t generation; /* stamp of the current connection; stamps its deliveries */
    struct pending *head, *tail;
    int failures; /* consecutive failed connects (drives backoff) */
    int64_t last_fail_ms;
    char err[MQ_ERR_MAX];
    char cause[MQ_ERR_MAX];
};

static void set_err(mq_conn *c, const char *fmt, ...) ML_PRINTF(2, 3);
static void set_err(mq_conn *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ml_vsnprintf_trunc(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
}

static struct timeval ms_tv(int64_t ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

    return tv;
}

static void bytes_to_str(amqp_bytes_t b, char *dst, size_t size)
{
    size_t n = b.len < size - 1 ? b.len : size - 1;

    if (n)
        memcpy(dst, b.bytes, n);
    dst[n] = '\0';
}

static void drop_pending(mq_conn *c)
{
    while (c->head) {
        struct pending *p = c->head;

        c->head = p->next;
        mq_message_destroy(&p->msg);
        free(p);
    }
    c->tail = NULL;
}

static void teardown(mq_conn *c)
{
    if (c->st)
        amqp_destroy_connection(c->st);
    c->st = NULL;
    c->up = 0;
    c->aux_open = 0;
    drop_pending(c); /* their delivery tags died with the connection */
}

/* The connection is unusable (c->err says why): drop it; the next call reconnects. */
static void broken(mq_conn *c)
{
    if (c->up) /* connect failures are logged once, by mq_ensure */
        ml_log_warn("%s", c->err);
    teardown(c);
}

static int lib_fail(mq_conn *c, const char *what, int status)
{
    set_err(c, "amqp %s:%d: %s: %s", c->info.host, c->info.port, what,
            amqp_error_string2(status));
    broken(c);
    return ML_ERR;
}

/* A connection.close or channel.close from the broker: acknowledged and reported with its
 * reply code and text. Channel 3 is simply reopened on next use; anything else breaks the
 * connection. Always ML_ERR. */
static int server_closed(mq_conn *c, const char *what, amqp_channel_t ch, const amqp_method_t *m)
{
    const char *scope = "connection";
    uint16_t code = 0;
    amqp_bytes_t text = amqp_empty_bytes;

    if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *x = m->decoded;
        amqp_connection_close_ok_t ok = { 0 };

        code = x->reply_code;
        text = x->reply_text;
        amqp_send_method(c->st, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    } else if (m->id == AMQP_CHANNEL_CLOSE_METHOD) {
        const amqp_channel_close_t *x = m->decoded;
        amqp_channel_close_ok_t ok = { 0 };

        scope = "channel";
        code = x->reply_code;
        text = x->reply_text;
        amqp_send_method(c->st, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    }
    set_err(c, "amqp %s:%d: %s%s%s closed by broker: %u %.*s", c->info.host, c->info.port,
            what ? what : "", what ? ": " : "", scope, code, (int)text.len,
            (const char *)text.bytes);
    if (m->id == AMQP_CHANNEL_CLOSE_METHOD && ch == CH_AUX)
        c->aux_open = 0;
    else
        broken(c);
    return ML_ERR;
}

static int reply_check(mq_conn *c, amqp_rpc_reply_t r, amqp_channel_t ch, const char *what)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return ML_OK;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return lib_fail(c, what, r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        return server_closed(c, what, ch, &r.reply);
    default:
        set_err(c, "amqp %s:%d: %s: no reply", c->info.host, c->info.port, what);
        broken(c);
        return ML_ERR;
    }
}

static int rpc_check(mq_conn *c, amqp_channel_t ch, const char *what)
{
    return reply_check(c, amqp_get_rpc_reply(c->st), ch, what);
}

/* ---- received messages ---- */

/* 0 = skipped kind, 1 = integer, 2 = string. */
static int field_kind(const amqp_field_value_t *v, int64_t *num)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        return 2;
    case AMQP_FIELD_KIND_BOOLEAN: *num = v->value.boolean ? 1 : 0; return 1;
    case AMQP_FIELD_KIND_I8: *num = v->value.i8; return 1;
    case AMQP_FIELD_KIND_U8: *num = v->value.u8; return 1;
    case AMQP_FIELD_KIND_I16: *num = v->value.i16; return 1;
    case AMQP_FIELD_KIND_U16: *num = v->value.u16; return 1;
    case AMQP_FIELD_KIND_I32: *num = v->value.i32; return 1;
    case AMQP_FIELD_KIND_U32: *num = v->value.u32; return 1;
    case AMQP_FIELD_KIND_I64: *num = v->value.i64; return 1;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP: *num = (int64_t)v->value.u64; return 1;
    default:
        return 0;
    }
}

static char *put_str(char *pos, amqp_bytes_t b)
{
    if (b.len)
        memcpy(pos, b.bytes, b.len);
    pos[b.len] = '\0';
    return pos + b.len + 1;
}

/* Copies the scalar headers into m: one array plus one block for all their strings. */
static int copy_headers(mq_message *m, const amqp_table_t *t)
{
    size_t need = 0, n = 0;
    int64_t num;
    char *pos;
    int i;

    for (i = 0; i < t->num_entries; i++) {
        int k = field_kind(&t->entries[i].value, &num);

        if (k == 0)
            continue;
        n++;
        need += t->entries[i].key.len + 1 + (k == 2 ? t->entries[i].value.value.bytes.len + 1 : 0);
    }
    if (n == 0)
        return ML_OK;
    m->headers = calloc(n, sizeof(*m->headers));
    m->strings_ = malloc(need);
    if (!m->headers || !m->strings_)
        return ML_ERR;
    pos = m->strings_;
    for (i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *e = &t->entries[i];
        mq_header *h = &m->headers[m->n_headers];
        int k = field_kind(&e->value, &num);

        if (k == 0)
            continue;
        h->key = pos;
        pos = put_str(pos, e->key);
        if (k == 2) {
            h->str = pos;
            pos = put_str(pos, e->value.value.bytes);
        } else {
            h->num = num;
        }
        m->n_headers++;
    }
    return ML_OK;
}

static int copy_message(mq_message *m, const amqp_message_t *am)
{
    const amqp_basic_properties_t *p = &am->properties;

    m->body = malloc(am->body.len + 1);
    if (!m->body)
        return ML_ERR;
    if (am->body.len)
        memcpy(m->body, am->body.bytes, am->body.len);
    m->body[am->body.len] = '\0';
    m->body_len = am->body.len;
    if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
        bytes_to_str(p->content_type, m->content_type, sizeof(m->content_type));
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        bytes_to_str(p->message_id, m->message_id, sizeof(m->message_id));
    if (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG)
        m->timestamp = p->timestamp;
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
        return copy_headers(m, &p->headers);
    return ML_OK;
}

/* basic.deliver: read the content that follows and queue the message for consume_next. */
static int take_delivery(mq_conn *c, amqp_channel_t ch, const amqp_basic_deliver_t *d)
{
    struct pending *p = calloc(1, sizeof(*p));
    amqp_message_t am;
    int rc;

    if (!p) {
        set_err(c, "amqp: out of memory reading a delivery");
        broken(c); /* its content frames cannot be skipped safely */
        return ML_ERR;
    }
    p->msg.delivery_tag = d->delivery_tag;
    p->msg.redelivered = d->redelivered;
    p->msg.generation_ = c->generation;
    bytes_to_str(d->exchange, p->msg.exchange, sizeof(p->msg.exchange));
    bytes_to_str(d->routing_key, p->msg.routing_key, sizeof(p->msg.routing_key));
    if (reply_check(c, amqp_read_message(c->st, ch, &am, 0), ch, "reading a delivery") != ML_OK) {
        free(p);
        return ML_ERR;
    }
    rc = copy_message(&p->msg, &am);
    amqp_destroy_message(&am);
    if (rc != ML_OK) {
        mq_message_destroy(&p->msg);
        free(p);
        set_err(c, "amqp: out of memory copying a delivery");
        broken(c);
        return ML_ERR;
    }
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    return ML_OK;
}

/* basic.return: the mandatory publish being confirmed was unroutable. Its content follows
 * and is discarded. */
static int take_return(mq_conn *c, amqp_channel_t ch, const amqp_basic_return_t *r, confirm *w)
{
    amqp_message_t am;

    if (w) {
        w->returned = 1;
        ml_snprintf_trunc(w->why, sizeof(w->why), "%u %.*s", r->reply_code, (int)r->reply_text.len,
                 (const char *)r->reply_text.bytes);
    }
    if (reply_check(c, amqp_read_message(c->st, ch, &am, 0), ch, "reading a returned message") !=
        ML_OK)
        return ML_ERR;
    amqp_destroy_message(&am);
    return ML_OK;
}

static void settle(confirm *w, uint64_t tag, int multiple, int outcome)
{
    if (w && (tag == w->tag || (multiple && (tag == 0 || tag >= w->tag))))
        w->settled = outcome;
}

static int on_method(mq_conn *c, const amqp_frame_t *f, confirm *w)
{
    const amqp_method_t *m = &f->payload.method;

    switch (m->id) {
    case AMQP_BASIC_DELIVER_METHOD:
        return take_delivery(c, f->channel, m->decoded);
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *a = m->decoded;

        settle(w, a->delivery_tag, a->multiple, 1);
        return ML_OK;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *n = m->decoded;

        settle(w, n->delivery_tag, n->multiple, -1);
        return ML_OK;
    }
    case AMQP_BASIC_RETURN_METHOD:
        return take_return(c, f->channel, m->decoded, w);
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        server_closed(c, NULL, f->channel, m);
        return c->st ? ML_OK : ML_ERR;
    case AMQP_BASIC_CANCEL_METHOD:
        set_err(c, "amqp %s:%d: consumer of queue '%s' cancelled by the broker (queue deleted?)",
                c->info.host, c->info.port, c->queue);
        broken(c);
        return ML_ERR;
    default: /* e.g. connection.blocked: nothing to do but keep reading */
        return ML_OK;
    }
}

/* Reads one frame, waiting until deadline (monotonic ms) at most. */
static mq_status wait_frame(mq_conn *c, int64_t deadline, amqp_frame_t *f)
{
    int64_t left = deadline - ml_now_ms();
    struct timeval tv = ms_tv(left > 0 ? left : 0);
    int rc = amqp_simple_wait_frame_noblock(c->st, f, &tv);

    if (rc == AMQP_STATUS_OK)
        return MQ_OK;
    if (rc == AMQP_STATUS_TIMEOUT)
        return MQ_TIMEOUT;
    lib_fail(c, "connection lost", rc);
    return MQ_ERR;
}

/* Handles incoming frames until: w is settled (w != NULL), a delivery is buffered
 * (stop_on_delivery), or the deadline passes (MQ_TIMEOUT; with deadline = now this drains
 * what is readable without blocking). MQ_ERR when the connection broke. */
static mq_status pump(mq_conn *c, int64_t deadline, confirm *w, int stop_on_delivery)
{
    amqp_frame_t f;
    mq_status rc;

    for (;;) {
        if ((w && w->settled) || (stop_on_delivery && c->head))
            return MQ_OK;
        rc = wait_frame(c, deadline, &f);
        if (rc != MQ_OK)
            return rc;
        if (f.frame_type == AMQP_FRAME_METHOD && on_method(c, &f, w) != ML_OK)
            return MQ_ERR;
    }
}

/* ---- connecting ---- */

static int open_channel(mq_conn *c, amqp_channel_t ch)
{
    amqp_channel_open(c->st, ch);
    return rpc_check(c, ch, "channel.open");
}

static amqp_table_entry_t str_arg(const char *key, const char *val)
{
    amqp_table_entry_t e;

    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_UTF8; /* the broker rejects BYTES for x-dead-letter-* */
    e.value.value.bytes = amqp_cstring_bytes(val);
    return e;
}

static amqp_table_entry_t int_arg(const char *key, int64_t val)
{
    amqp_table_entry_t e;

    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = val;
    return e;
}

static int login(mq_conn *c)
{
    struct timeval ctv = ms_tv(c->connect_timeout_ms), otv = ms_tv(c->op_timeout_ms);
    amqp_table_entry_t cap, prop[2];
    amqp_table_t props = { 2, prop };
    amqp_socket_t *sock;
    int rc;

    c->st = amqp_new_connection();
    sock = c->st ? amqp_tcp_socket_new(c->st) : NULL;
    if (!sock) {
        set_err(c, "amqp: out of memory creating a connection");
        return ML_ERR;
    }
    rc = amqp_socket_open_noblock(sock, c->info.host, c->info.port, &ctv);
    if (rc == AMQP_STATUS_SOCKET_ERROR) /* the library keeps no errno detail here */
        return lib_fail(c, "connect (refused or unreachable)", rc);
    if (rc != AMQP_STATUS_OK)
        return lib_fail(c, "connect", rc);
    amqp_set_handshake_timeout(c->st, &ctv);
    amqp_set_rpc_timeout(c->st, &otv);
    prop[0] = str_arg("connection_name", c->name);
    /* Without this capability a consumer whose queue is deleted is dropped silently and
     * would wait forever; with it the broker sends basic.cancel (rabbitmq-c merges it with
     * its default capabilities). */
    cap.key = amqp_cstring_bytes("consumer_cancel_notify");
    cap.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    cap.value.value.boolean = 1;
    prop[1].key = amqp_cstring_bytes("capabilities");
    prop[1].value.kind = AMQP_FIELD_KIND_TABLE;
    prop[1].value.value.table = (amqp_table_t){ 1, &cap };
    return reply_check(c,
                       amqp_login_with_properties(c->st, c->info.vhost, 0, MQ_FRAME_MAX,
                                                  c->heartbeat_s, &props, AMQP_SASL_METHOD_PLAIN,
                                                  c->info.user, c->info.password),
                       0, "login");
}

static int declare_queue(mq_conn *c, const mq_queue_spec *q)
{
    amqp_table_entry_t args[5];
    amqp_table_t t = { 0, args };
    char what[MQ_SHORTSTR_MAX + 32];

    if (q->dead_letter_exchange)
        args[t.num_entries++] = str_arg("x-dead-letter-exchange", q->dead_letter_exchange);
    if (q->dead_letter_routing_key)
        args[t.num_entries++] = str_arg("x-dead-letter-routing-key", q->dead_letter_routing_key);
    if (q->message_ttl_ms > 0)
        args[t.num_entries++] = int_arg("x-message-ttl", q->message_ttl_ms);
    if (q->quorum)
        args[t.num_entries++] = str_arg("x-queue-type", "quorum");
    if (q->delivery_limit > 0)
        args[t.num_entries++] = int_arg("x-delivery-limit", q->delivery_limit);
    ml_snprintf_trunc(what, sizeof(what), "queue.declare '%s'", q->name);
    amqp_queue_declare(c->st, CH_PUB, amqp_cstring_bytes(q->name), 0, 1, 0, 0, t);
    return rpc_check(c, CH_PUB, what);
}

static int declare_topology(mq_conn *c)
{
    const mq_topology *t = c->topo;
    char what[2 * MQ_SHORTSTR_MAX + 32];
    size_t i;

    for (i = 0; t && i < t->n_exchanges; i++) {
        ml_snprintf_trunc(what, sizeof(what), "exchange.declare '%s'", t->exchanges[i].name);
        amqp_exchange_declare(c->st, CH_PUB, amqp_cstring_bytes(t->exchanges[i].name),
                              amqp_cstring_bytes(t->exchanges[i].type), 0, 1, 0, 0,
                              amqp_empty_table);
        if (rpc_check(c, CH_PUB, what) != ML_OK)
            return ML_ERR;
    }
    for (i = 0; t && i < t->n_queues; i++)
        if (declare_queue(c, &t->queues[i]) != ML_OK)
            return ML_ERR;
    for (i = 0; t && i < t->n_bindings; i++) {
        const mq_binding_spec *b = &t->bindings[i];

        ml_snprintf_trunc(what, sizeof(what), "queue.bind '%s' to '%s'", b->queue, b->exchange);
        amqp_queue_bind(c->st, CH_PUB, amqp_cstring_bytes(b->queue),
                        amqp_cstring_bytes(b->exchange), amqp_cstring_bytes(b->routing_key),
                        amqp_empty_table);
        if (rpc_check(c, CH_PUB, what) != ML_OK)
            return ML_ERR;
    }
    return ML_OK;
}

static int start_consumer(mq_conn *c)
{
    char what[MQ_SHORTSTR_MAX + 32];

    if (open_channel(c, CH_CONSUME) != ML_OK)
        return ML_ERR;
    amqp_basic_qos(c->st, CH_CONSUME, 0, (uint16_t)c->prefetch, 0);
    if (rpc_check(c, CH_CONSUME, "basic.qos") != ML_OK)
        return ML_ERR;
    ml_snprintf_trunc(what, sizeof(what), "basic.consume '%s'", c->queue);
    amqp_basic_consume(c->st, CH_CONSUME, amqp_cstring_bytes(c->queue), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    return rpc_check(c, CH_CONSUME, what);
}

static int connect_all(mq_conn *c)
{
    if (login(c) != ML_OK || open_channel(c, CH_PUB) != ML_OK)
        return ML_ERR;
    amqp_confirm_select(c->st, CH_PUB);
    if (rpc_check(c, CH_PUB, "confirm.select") != ML_OK || declare_topology(c) != ML_OK)
        return ML_ERR;
    c->pub_seq = 0;
    c->generation = atomic_fetch_add(&g_generation, 1) + 1;
    if (c->consuming && start_consumer(c) != ML_OK)
        return ML_ERR;
    return ML_OK;
}

static int64_t backoff_left(const mq_conn *c)
{
    int64_t ms = MQ_BACKOFF_MIN_MS;
    int i;

    if (c->failures == 0)
        return 0;
    for (i = 1; i < c->failures && ms < MQ_BACKOFF_MAX_MS; i++)
        ms *= 2;
    if (ms > MQ_BACKOFF_MAX_MS)
        ms = MQ_BACKOFF_MAX_MS;
    return c->last_fail_ms + ms - ml_now_ms();
}

int mq_ensure(mq_conn *c)
{
    int64_t wait;

    if (c->st)
        return ML_OK;
    wait = backoff_left(c);
    if (wait > 0) {
        set_err(c, "amqp %s:%d unavailable, next connect attempt in %lld ms (last error: %s)",
                c->info.host, c->info.port, (long long)wait, c->cause);
        return ML_ERR;
    }
    if (connect_all(c) != ML_OK) {
        teardown(c);
        c->failures++;
        c->last_fail_ms = ml_now_ms();
        ml_strlcpy(c->cause, c->err, sizeof(c->cause));
        ml_log_warn("%s", c->err);
        return ML_ERR;
    }
    if (c->failures > 0 || c->ever_up)
        ml_log_info("amqp %s:%d: connected", c->info.host, c->info.port);
    c->ever_up = 1;
    c->failures = 0;
    c->up = 1;
    return ML_OK;
}

/* ---- public API ---- */

static int check_topology(const mq_topology *t, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; t && i < t->n_exchanges; i++)
        if (!t->exchanges[i].name || !t->exchanges[i].type)
            goto bad;
    for (i = 0; t && i < t->n_queues; i++) {
        if (!t->queues[i].name)
            goto bad;
        if (t->queues[i].delivery_limit > 0 && !t->queues[i].quorum) {
            ml_snprintf_trunc(err, errlen, "queue '%s': delivery_limit needs a quorum queue",
                     t->queues[i].name);
            return ML_ERR;
        }
    }
    for (i = 0; t && i < t->n_bindings; i++)
        if (!t->bindings[i].queue || !t->bindings[i].exchange || !t->bindings[i].routing_key)
            goto bad;
    return ML_OK;
bad:
    ml_snprintf_trunc(err, errlen, "topology entry with a missing name, type or key");
    return ML_ERR;
}

mq_conn *mq_new(const char *url, const mq_options *opts, const mq_topology *topo, char *err,
                size_t errlen)
{
    mq_conn *c = NULL;
    const char *name = opts && opts->connection_name ? opts->connection_name : "minilambda";

    if (check_topology(topo, err, errlen) != ML_OK)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c || !url || !(c->url_buf = strdup(url))) {
        ml_snprintf_trunc(err, errlen, url ? "out of memory" : "no AMQP URL");
        goto fail;
    }
    if (amqp_parse_url(c->url_buf, &c->info) != AMQP_STATUS_OK || c->info.ssl) {
        ml_snprintf_trunc(err, errlen, "bad AMQP URL (want amqp://user:pass@host:port/vhost)");
        goto fail;
    }
    c->connect_timeout_ms = opts && opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
                                                                 : MQ_DEFAULT_CONNECT_MS;
    c->op_timeout_ms = opts && opts->op_timeout_ms > 0 ? opts->op_timeout_ms : MQ_DEFAULT_OP_MS;
    c->heartbeat_s = !opts || opts->heartbeat_s == 0 ? MQ_DEFAULT_HEARTBEAT_S
                     : opts->heartbeat_s < 0         ? 0
                                                     : opts->heartbeat_s;
    ml_strlcpy(c->name, name, sizeof(c->name));
    c->topo = topo;
    return c;
fail:
    if (c)
        free(c->url_buf);
    free(c);
    return NULL;
}

void mq_close(mq_conn *c)
{
    if (!c)
        return;
    if (c->st)
        amqp_connection_close(c->st, AMQP_REPLY_SUCCESS);
    teardown(c);
    free(c->url_buf);
    free(c);
}

const char *mq_error(const mq_conn *c)
{
    return c->err;
}

static void build_props(const mq_publish_msg *m, amqp_basic_properties_t *p,
                        amqp_table_entry_t *h, char *exp, size_t explen)
{
    size_t i;

    memset(p, 0, sizeof(*p));
    p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                AMQP_BASIC_TIMESTAMP_FLAG;
    p->content_type = amqp_cstring_bytes(m->content_type ? m->content_type : "application/json");
    p->delivery_mode = AMQP_DELIVERY_PERSISTENT;
    p->timestamp = (uint64_t)(ml_wall_ms() / 1000);
    if (m->message_id) {
        p->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        p->message_id = amqp_cstring_bytes(m->message_id);
    }
    if (m->expiration_ms > 0) {
        if (ml_snprintf(exp, explen, "%lld", (long long)m->expiration_ms) == ML_OK) {
            p->_flags |= AMQP_BASIC_EXPIRATION_FLAG; /* exp holds 24 bytes: any int64 fits */
            p->expiration = amqp_cstring_bytes(exp);
        }
    }
    for (i = 0; i < m->n_headers; i++)
        h[i] = m->headers[i].str ? str_arg(m->headers[i].key, m->headers[i].str)
                                 : int_arg(m->headers[i].key, m->headers[i].num);
    if (m->n_headers) {
        p->_flags |= AMQP_BASIC_HEADERS_FLAG;
        p->headers.num_entries = (int)m->n_headers;
        p->headers.entries = h;
    }
}

/* Waits for the confirm of w->tag; on any failure the message is reported as not queued. */
static int await_confirm(mq_conn *c, confirm *w, const char *rk)
{
    mq_status rc = pump(c, ml_now_ms() + c->op_timeout_ms, w, 0);
    char cause[MQ_ERR_MAX];

    if (rc == MQ_TIMEOUT) {
        /* Its fate is unknown and a late confirm would be ambiguous: start afresh. */
        set_err(c, "amqp %s:%d: no publisher confirm within %d ms", c->info.host, c->info.port,
                c->op_timeout_ms);
        broken(c);
        rc = MQ_ERR;
    }
    if (rc == MQ_ERR) {
        ml_strlcpy(cause, c->err, sizeof(cause));
        set_err(c, "publish '%s' not confirmed: %s", rk, cause);
        return ML_ERR;
    }
    if (w->returned) {
        set_err(c, "publish '%s' unroutable, returned by broker: %s", rk, w->why);
        return ML_ERR;
    }
    if (w->settled < 0) {
        set_err(c, "publish '%s' nacked by broker: not queued", rk);
        return ML_ERR;
    }
    return ML_OK;
}

int mq_publish(mq_conn *c, const mq_publish_msg *m)
{
    amqp_basic_properties_t props;
    amqp_table_entry_t h[MQ_MAX_HEADERS];
    char exp[24];
    const char *rk = m->routing_key ? m->routing_key : "";
    confirm w = { 0 };
    int rc;

    if (m->n_headers > MQ_MAX_HEADERS) {
        set_err(c, "publish '%s': more than %d headers", rk, MQ_MAX_HEADERS);
        return ML_ERR;
    }
    if (mq_ensure(c) != ML_OK)
        return ML_ERR;
    /* A connection the broker dropped while we were idle shows up here, not mid-publish. */
    amqp_maybe_release_buffers(c->st);
    if (pump(c, ml_now_ms(), NULL, 0) == MQ_ERR && mq_ensure(c) != ML_OK)
        return ML_ERR;
    build_props(m, &props, h, exp, sizeof(exp));
    rc = amqp_basic_publish(c->st, CH_PUB, amqp_cstring_bytes(m->exchange ? m->exchange : ""),
                            amqp_cstring_bytes(rk), m->mandatory ? 1 : 0, 0, &props,
                            (amqp_bytes_t){ .len = m->body_len, .bytes = (void *)m->body });
    if (rc != AMQP_STATUS_OK)
        return lib_fail(c, "basic.publish", rc);
    w.tag = ++c->pub_seq;
    return await_confirm(c, &w, rk);
}

int mq_consume(mq_conn *c, const char *queue, int prefetch)
{
    if (c->consuming || prefetch < 1 || prefetch > 65535 ||
        ml_strlcpy(c->queue, queue, sizeof(c->queue)) != ML_OK) {
        set_err(c, "mq_consume: already consuming, or bad queue name or prefetch");
        return ML_ERR;
    }
    c->prefetch = prefetch;
    c->consuming = 1;
    if ((c->st ? start_consumer(c) : mq_ensure(c)) != ML_OK) {
        c->consuming = 0;
        return ML_ERR;
    }
    return ML_OK;
}

static void sleep_until(int64_t deadline)
{
    int64_t left = deadline - ml_now_ms();

    if (left > 0)
        ml_sleep_ms(left);
}

mq_status mq_consume_next(mq_conn *c, int timeout_ms, mq_message *out)
{
    int64_t deadline = ml_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    struct pending *p;
    mq_status rc;

    memset(out, 0, sizeof(*out));
    if (!c->consuming) {
        set_err(c, "mq_consume_next: mq_consume was not called");
        return MQ_ERR;
    }
    if (mq_ensure(c) != ML_OK) {
        sleep_until(deadline);
        return MQ_ERR;
    }
    if (!c->head)
        amqp_maybe_release_buffers(c->st);
    rc = pump(c, deadline, NULL, 1);
    if (rc == MQ_ERR)
        sleep_until(deadline);
    if (rc != MQ_OK)
        return rc;
    p = c->head;
    c->head = p->next;
    if (!c->head)
        c->tail = NULL;
    *out = p->msg;
    free(p);
    return MQ_OK;
}

int mq_service(mq_conn *c)
{
    if (!c->st) {
        set_err(c, "amqp %s:%d: not connected", c->info.host, c->info.port);
        return ML_ERR;
    }
    return pump(c, ml_now_ms(), NULL, 0) == MQ_ERR ? ML_ERR : ML_OK;
}

static int owns(mq_conn *c, const mq_message *m, const char *what)
{
    if (c->st && m->generation_ != 0 && m->generation_ == c->generation)
        return ML_OK;
    set_err(c, "amqp: cannot %s delivery %llu: its connection is gone; the broker redelivers it",
            what, (unsigned long long)m->delivery_tag);
    return ML_ERR;
}

int mq_ack(mq_conn *c, const mq_message *m)
{
    int rc;

    if (owns(c, m, "ack") != ML_OK)
        return ML_ERR;
    rc = amqp_basic_ack(c->st, CH_CONSUME, m->delivery_tag, 0);
    return rc == AMQP_STATUS_OK ? ML_OK : lib_fail(c, "basic.ack", rc);
}

int mq_nack(mq_conn *c, const mq_message *m, int requeue)
{
    int rc;

    if (owns(c, m, "nack") != ML_OK)
        return ML_ERR;
    rc = amqp_basic_nack(c->st, CH_CONSUME, m->delivery_tag, 0, requeue ? 1 : 0);
    return rc == AMQP_STATUS_OK ? ML_OK : lib_fail(c, "basic.nack", rc);
}

int mq_reject(mq_conn *c, const mq_message *m)
{
    int rc;

    if (owns(c, m, "reject") != ML_OK)
        return ML_ERR;
    rc = amqp_basic_reject(c->st, CH_CONSUME, m->delivery_tag, 0);
    return rc == AMQP_STATUS_OK ? ML_OK : lib_fail(c, "basic.reject", rc);
}

const mq_header *mq_message_header(const mq_message *m, const char *key)
{
    size_t i;

    for (i = 0; i < m->n_headers; i++)
        if (strcmp(m->headers[i].key, key) == 0)
            return &m->headers[i];
    return NULL;
}

void mq_message_destroy(mq_message *m)
{
    if (!m)
        return;
    free(m->body);
    free(m->headers);
    free(m->strings_);
    memset(m, 0, sizeof(*m));
}

static int aux_ready(mq_conn *c)
{
    if (mq_ensure(c) != ML_OK)
        return ML_ERR;
    if (c->aux_open)
        return ML_OK;
    if (open_channel(c, CH_AUX) != ML_OK)
        return ML_ERR;
    c->aux_open = 1;
    return ML_OK;
}

int mq_queue_stats(mq_conn *c, const char *queue, uint32_t *messages, uint32_t *consumers)
{
    amqp_queue_declare_ok_t *ok;
    char what[MQ_SHORTSTR_MAX + 40];

    if (aux_ready(c) != ML_OK)
        return ML_ERR;
    ml_snprintf_trunc(what, sizeof(what), "queue.declare passive '%s'", queue);
    ok = amqp_queue_declare(c->st, CH_AUX, amqp_cstring_bytes(queue), 1, 0, 0, 0,
                            amqp_empty_table);
    if (rpc_check(c, CH_AUX, what) != ML_OK || !ok)
        return ML_ERR;
    if (messages)
        *messages = ok->message_count;
    if (consumers)
        *consumers = ok->consumer_count;
    return ML_OK;
}

int mq_queue_delete(mq_conn *c, const char *queue)
{
    char what[MQ_SHORTSTR_MAX + 32];

    if (aux_ready(c) != ML_OK)
        return ML_ERR;
    ml_snprintf_trunc(what, sizeof(what), "queue.delete '%s'", queue);
    amqp_queue_delete(c->st, CH_AUX, amqp_cstring_bytes(queue), 0, 0);
    return rpc_check(c, CH_AUX, what);
}

int mq_ping(mq_conn *c)
{
    if (aux_ready(c) != ML_OK)
        return ML_ERR;
    amqp_exchange_declare(c->st, CH_AUX, amqp_cstring_bytes("amq.direct"),
                          amqp_cstring_bytes("direct"), 1, 0, 0, 0, amqp_empty_table);
    return rpc_check(c, CH_AUX, "ping (exchange.declare passive)");
}
