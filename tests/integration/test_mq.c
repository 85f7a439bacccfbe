/* Integration tests: shared/mq.c against the real RabbitMQ at MINILAMBDA_AMQP_URL (and its
 * management API at MINILAMBDA_RABBITMQ_MGMT_URL, used to force-close connections and to
 * delete the test exchanges). Every test declares its own exchanges and queues named
 * h4t.<run>.<test>.* and deletes them at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <cJSON.h>
#include <curl/curl.h>

#include "buf.h"
#include "mq.h"

static const char *g_url, *g_mgmt;
static char g_run[9];
static char g_user[128], g_pass[128], g_vhost[128];

/* ---- helpers ---- */

/* A per-test topology: exchange ex --key "k"--> q, q dead-letters to dlx --"dead"--> dlq. */
typedef struct topo {
    char ex[128], dlx[128], q[128], dlq[128], conn_name[128];
    mq_exchange_spec exs[2];
    mq_queue_spec qs[2];
    mq_binding_spec bs[2];
    mq_topology t;
} topo;

static void topo_init(topo *t, const char *tag, int quorum, int64_t delivery_limit,
                      int64_t ttl_ms)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->ex, sizeof(t->ex), "h4t.%s.%s.ex", g_run, tag);
    snprintf(t->dlx, sizeof(t->dlx), "h4t.%s.%s.dlx", g_run, tag);
    snprintf(t->q, sizeof(t->q), "h4t.%s.%s.q", g_run, tag);
    snprintf(t->dlq, sizeof(t->dlq), "h4t.%s.%s.dlq", g_run, tag);
    snprintf(t->conn_name, sizeof(t->conn_name), "h4t-%s-%s", g_run, tag);
    t->exs[0] = (mq_exchange_spec){ .name = t->ex, .type = "direct" };
    t->exs[1] = (mq_exchange_spec){ .name = t->dlx, .type = "direct" };
    t->qs[0] = (mq_queue_spec){ .name = t->q,
                                .dead_letter_exchange = t->dlx,
                                .dead_letter_routing_key = "dead",
                                .message_ttl_ms = ttl_ms,
                                .quorum = quorum,
                                .delivery_limit = delivery_limit };
    t->qs[1] = (mq_queue_spec){ .name = t->dlq };
    t->bs[0] = (mq_binding_spec){ .queue = t->q, .exchange = t->ex, .routing_key = "k" };
    t->bs[1] = (mq_binding_spec){ .queue = t->dlq, .exchange = t->dlx, .routing_key = "dead" };
    t->t = (mq_topology){ .exchanges = t->exs, .n_exchanges = 2, .queues = t->qs,
                          .n_queues = 2, .bindings = t->bs, .n_bindings = 2 };
}

static mq_conn *conn_opts(const topo *t, const mq_options *o)
{
    char err[256] = "";
    mq_conn *c = mq_new(g_url, o, t ? &t->t : NULL, err, sizeof(err));

    if (!c)
        fail_msg("mq_new: %s", err);
    if (mq_ensure(c) != ML_OK)
        fail_msg("mq_ensure: %s", mq_error(c));
    return c;
}

static mq_conn *conn(const topo *t)
{
    mq_options o = { .op_timeout_ms = 5000, .connection_name = t ? t->conn_name : NULL };

    return conn_opts(t, &o);
}

static mq_conn *consumer(const topo *t, const char *queue, int prefetch)
{
    mq_conn *c = conn(t);

    if (mq_consume(c, queue, prefetch) != ML_OK)
        fail_msg("mq_consume %s: %s", queue, mq_error(c));
    return c;
}

static int publish(mq_conn *c, const topo *t, const char *key, const char *body)
{
    mq_publish_msg m = { .exchange = t->ex, .routing_key = key, .body = body,
                         .body_len = strlen(body), .mandatory = 1 };

    return mq_publish(c, &m);
}

static void next_ok(mq_conn *c, mq_message *m)
{
    mq_status rc = mq_consume_next(c, 5000, m);

    if (rc != MQ_OK)
        fail_msg("mq_consume_next: rc %d: %s", (int)rc, rc == MQ_ERR ? mq_error(c) : "timeout");
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    return ml_buf_append(ud, p, sz * n) == ML_OK ? sz * n : 0;
}

/* One management API call with an optional JSON body; returns the HTTP status (0 on
 * transport failure). */
static long mgmt_body(const char *method, const char *path, const char *json, ml_buf *out)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = NULL;
    char url[1024];
    long status = 0;

    assert_non_null(h);
    if (json) {
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
    }
    snprintf(url, sizeof(url), "%s/api%s", g_mgmt, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_USERNAME, g_user);
    curl_easy_setopt(h, CURLOPT_PASSWORD, g_pass);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdr);
    return status;
}

static long mgmt(const char *method, const char *path, ml_buf *out)
{
    return mgmt_body(method, path, NULL, out);
}

static void mgmt_delete_exchange(const char *name)
{
    ml_buf b = { 0 };
    char path[512];
    char *v = curl_easy_escape(NULL, g_vhost, 0), *n = curl_easy_escape(NULL, name, 0);

    snprintf(path, sizeof(path), "/exchanges/%s/%s", v, n);
    assert_int_equal(mgmt("DELETE", path, &b), 204);
    curl_free(v);
    curl_free(n);
    ml_buf_free(&b);
}

static void topo_cleanup(const topo *t)
{
    mq_conn *c = conn(NULL);

    assert_int_equal(mq_queue_delete(c, t->q), ML_OK);
    assert_int_equal(mq_queue_delete(c, t->dlq), ML_OK);
    mq_close(c);
    mgmt_delete_exchange(t->ex);
    mgmt_delete_exchange(t->dlx);
}

/* The broker's name of the connection whose client set connection_name, or 0 chars. */
static void find_conn(const char *conn_name, char *out, size_t size)
{
    ml_buf b = { 0 };
    cJSON *arr, *it;

    out[0] = '\0';
    if (mgmt("GET", "/connections", &b) != 200)
        goto out;
    arr = cJSON_Parse(ml_buf_cstr(&b));
    cJSON_ArrayForEach(it, arr) {
        cJSON *cp = cJSON_GetObjectItemCaseSensitive(it, "client_properties");
        cJSON *cn = cJSON_GetObjectItemCaseSensitive(cp, "connection_name");
        cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");

        if (cJSON_IsString(cn) && cJSON_IsString(nm) && strcmp(cn->valuestring, conn_name) == 0)
            ml_strlcpy(out, nm->valuestring, size);
    }
    cJSON_Delete(arr);
out:
    ml_buf_free(&b);
}

/* Force-closes the named connection through the management API (which lists a connection
 * only after its next statistics emission, so poll). */
static void force_close(const char *conn_name)
{
    char name[256], path[512];
    ml_buf b = { 0 };
    int64_t deadline = ml_now_ms() + 30000;
    char *enc;

    do {
        find_conn(conn_name, name, sizeof(name));
        if (!name[0])
            ml_sleep_ms(250);
    } while (!name[0] && ml_now_ms() < deadline);
    if (!name[0])
        fail_msg("connection %s never showed up in the management API", conn_name);
    enc = curl_easy_escape(NULL, name, 0);
    snprintf(path, sizeof(path), "/connections/%s", enc);
    curl_free(enc);
    assert_int_equal(mgmt("DELETE", path, &b), 204);
    ml_buf_free(&b);
}

static uint32_t ready(mq_conn *c, const char *queue)
{
    uint32_t n = 0;

    if (mq_queue_stats(c, queue, &n, NULL) != ML_OK)
        fail_msg("mq_queue_stats %s: %s", queue, mq_error(c));
    return n;
}

/* Polls until the queue holds want ready messages (dead-lettering is asynchronous). */
static void wait_ready(mq_conn *c, const char *queue, uint32_t want)
{
    int64_t deadline = ml_now_ms() + 5000;

    while (ready(c, queue) != want && ml_now_ms() < deadline)
        ml_sleep_ms(50);
    assert_int_equal(ready(c, queue), want);
}

/* ---- tests ---- */

static void test_round_trip_with_properties(void **state)
{
    static const char body[] = "{\"a\":\"%s\"}\0tail";
    topo t;
    mq_conn *c;
    mq_header hs[3] = { { .key = "x-request-id", .str = "req-123" },
                        { .key = "x-attempt", .num = 2 },
                        { .key = "x-neg", .num = -7 } };
    mq_publish_msg m = { 0 };
    mq_message got = { 0 };
    const mq_header *h;
    uint32_t msgs = 99, cons = 99;
    int64_t now_s = ml_wall_ms() / 1000;
    (void)state;
    topo_init(&t, "rt", 0, 0, 0);
    c = consumer(&t, t.q, 1);
    m = (mq_publish_msg){ .exchange = t.ex, .routing_key = "k", .body = body,
                          .body_len = sizeof(body), .content_type = "application/x-test",
                          .message_id = "msg-1", .headers = hs, .n_headers = 3,
                          .mandatory = 1 };
    assert_int_equal(mq_publish(c, &m), ML_OK);
    next_ok(c, &got);
    assert_int_equal(got.body_len, sizeof(body));
    assert_memory_equal(got.body, body, sizeof(body));
    assert_string_equal(got.content_type, "application/x-test");
    assert_string_equal(got.message_id, "msg-1");
    assert_string_equal(got.exchange, t.ex);
    assert_string_equal(got.routing_key, "k");
    assert_int_equal(got.redelivered, 0);
    assert_true(got.timestamp >= (uint64_t)now_s - 1 && got.timestamp <= (uint64_t)now_s + 2);
    h = mq_message_header(&got, "x-request-id");
    assert_non_null(h);
    assert_string_equal(h->str, "req-123");
    h = mq_message_header(&got, "x-attempt");
    assert_non_null(h);
    assert_null(h->str);
    assert_int_equal(h->num, 2);
    assert_int_equal(mq_message_header(&got, "x-neg")->num, -7);
    assert_null(mq_message_header(&got, "x-missing"));
    /* unacked: not ready, one consumer */
    assert_int_equal(mq_queue_stats(c, t.q, &msgs, &cons), ML_OK);
    assert_int_equal(msgs, 0);
    assert_int_equal(cons, 1);
    assert_int_equal(mq_ack(c, &got), ML_OK);
    mq_message_destroy(&got);
    assert_int_equal(mq_consume_next(c, 300, &got), MQ_TIMEOUT);

    /* defaults: application/json, no message id; the default exchange routes by queue name */
    m = (mq_publish_msg){ .routing_key = t.q, .body = "{}", .body_len = 2, .mandatory = 1 };
    assert_int_equal(mq_publish(c, &m), ML_OK);
    next_ok(c, &got);
    assert_string_equal(got.content_type, "application/json");
    assert_string_equal(got.message_id, "");
    assert_string_equal(got.exchange, "");
    assert_int_equal(got.n_headers, 0);
    assert_int_equal(mq_ack(c, &got), ML_OK);
    mq_message_destroy(&got);
    mq_close(c);
    topo_cleanup(&t);
}

static void test_nack_reject_requeue(void **state)
{
    topo t;
    mq_conn *c, *d;
    mq_message a = { 0 }, b = { 0 }, x = { 0 }, dl = { 0 };
    const mq_header *h;
    (void)state;
    topo_init(&t, "nack", 0, 0, 0);
    c = consumer(&t, t.q, 5);
    assert_int_equal(publish(c, &t, "k", "one"), ML_OK);
    assert_int_equal(publish(c, &t, "k", "two"), ML_OK);
    assert_int_equal(publish(c, &t, "k", "three"), ML_OK);
    next_ok(c, &a);
    next_ok(c, &b);
    next_ok(c, &x);
    assert_string_equal(a.body, "one");
    assert_int_equal(mq_nack(c, &a, 0), ML_OK); /* dead-lettered */
    assert_int_equal(mq_reject(c, &b), ML_OK);  /* dead-lettered */
    assert_int_equal(mq_nack(c, &x, 1), ML_OK); /* requeued: comes back, flagged */
    mq_message_destroy(&x);
    next_ok(c, &x);
    assert_string_equal(x.body, "three");
    assert_int_equal(x.redelivered, 1);
    assert_int_equal(mq_ack(c, &x), ML_OK);

    d = consumer(&t, t.dlq, 5);
    mq_message_destroy(&dl);
    next_ok(d, &dl);
    assert_string_equal(dl.body, "one");
    h = mq_message_header(&dl, "x-first-death-reason");
    assert_non_null(h);
    assert_string_equal(h->str, "rejected");
    assert_string_equal(dl.routing_key, "dead");
    assert_int_equal(mq_ack(d, &dl), ML_OK);
    mq_message_destroy(&dl);
    next_ok(d, &dl);
    assert_string_equal(dl.body, "two");
    assert_int_equal(mq_ack(d, &dl), ML_OK);
    assert_int_equal(ready(c, t.q), 0);
    mq_message_destroy(&dl);
    mq_message_destroy(&a);
    mq_message_destroy(&b);
    mq_message_destroy(&x);
    mq_close(d);
    mq_close(c);
    topo_cleanup(&t);
}

static void test_unroutable_and_channel_errors(void **state)
{
    topo t;
    mq_conn *c;
    mq_publish_msg m = { .routing_key = "k", .body = "x", .body_len = 1, .mandatory = 1 };
    (void)state;
    topo_init(&t, "unr", 0, 0, 0);
    c = conn(&t);
    m.exchange = t.ex;
    m.routing_key = "no-such-key";
    assert_int_equal(mq_publish(c, &m), ML_ERR);
    assert_non_null(strstr(mq_error(c), "312 NO_ROUTE"));
    /* the connection stays usable: a routable publish right after is confirmed */
    assert_int_equal(publish(c, &t, "k", "ok"), ML_OK);
    assert_int_equal(ready(c, t.q), 1);
    /* without mandatory an unroutable message is acked by the broker and dropped */
    m.mandatory = 0;
    assert_int_equal(mq_publish(c, &m), ML_OK);
    /* a missing exchange is a channel error: reported, then the next publish reconnects */
    m.exchange = "h4t-no-such-exchange";
    m.mandatory = 1;
    assert_int_equal(mq_publish(c, &m), ML_ERR);
    assert_non_null(strstr(mq_error(c), "404 NOT_FOUND"));
    assert_int_equal(publish(c, &t, "k", "again"), ML_OK);
    assert_int_equal(ready(c, t.q), 2);
    mq_close(c);
    topo_cleanup(&t);
}

static void test_prefetch_bound(void **state)
{
    topo t;
    mq_conn *c, *p;
    mq_message m[5] = { { 0 } }, extra = { 0 };
    char body[16];
    int i;
    (void)state;
    topo_init(&t, "pf", 0, 0, 0);
    p = conn(&t);
    for (i = 0; i < 5; i++) {
        snprintf(body, sizeof(body), "m%d", i);
        assert_int_equal(publish(p, &t, "k", body), ML_OK);
    }
    c = consumer(&t, t.q, 2);
    next_ok(c, &m[0]);
    next_ok(c, &m[1]);
    assert_int_equal(mq_consume_next(c, 500, &extra), MQ_TIMEOUT);
    assert_int_equal(ready(p, t.q), 3);
    assert_int_equal(mq_ack(c, &m[0]), ML_OK);
    next_ok(c, &m[2]);
    assert_int_equal(mq_consume_next(c, 300, &extra), MQ_TIMEOUT);
    for (i = 1; i <= 2; i++)
        assert_int_equal(mq_ack(c, &m[i]), ML_OK);
    next_ok(c, &m[3]);
    next_ok(c, &m[4]);
    for (i = 0; i < 5; i++) {
        snprintf(body, sizeof(body), "m%d", i);
        assert_string_equal(m[i].body, body); /* in order */
        if (i >= 3)
            assert_int_equal(mq_ack(c, &m[i]), ML_OK);
        mq_message_destroy(&m[i]);
    }
    wait_ready(p, t.q, 0);
    mq_close(c);
    mq_close(p);
    topo_cleanup(&t);
}

static void test_redelivery_after_consumer_close(void **state)
{
    topo t;
    mq_conn *a, *b;
    mq_message m = { 0 };
    (void)state;
    topo_init(&t, "redel", 0, 0, 0);
    a = consumer(&t, t.q, 1);
    assert_int_equal(publish(a, &t, "k", "job"), ML_OK);
    next_ok(a, &m);
    assert_int_equal(m.redelivered, 0);
    mq_close(a); /* no ack */
    b = consumer(&t, t.dlq, 1);
    assert_int_equal(mq_ack(b, &m), ML_ERR); /* a tag of another connection */
    assert_non_null(strstr(mq_error(b), "connection is gone"));
    mq_close(b);
    mq_message_destroy(&m);
    b = consumer(&t, t.q, 1);
    next_ok(b, &m);
    assert_string_equal(m.body, "job");
    assert_int_equal(m.redelivered, 1);
    assert_int_equal(mq_ack(b, &m), ML_OK);
    mq_message_destroy(&m);
    mq_close(b);
    topo_cleanup(&t);
}

/* The broker force-closes the connection: the loss is reported clearly, a delivery from the
 * dead connection cannot be acked, and the next call reconnects, re-declares the topology
 * (the queue was deleted meanwhile) and re-issues the consumer. */
static void test_reconnect_after_forced_close(void **state)
{
    topo t;
    mq_conn *c, *admin;
    mq_message held = { 0 }, m = { 0 };
    (void)state;
    topo_init(&t, "force", 0, 0, 0);
    c = consumer(&t, t.q, 1);
    assert_int_equal(publish(c, &t, "k", "before"), ML_OK);
    next_ok(c, &held);
    force_close(t.conn_name);
    admin = conn(NULL);
    assert_int_equal(mq_queue_delete(admin, t.q), ML_OK);
    assert_int_equal(mq_ping(c), ML_ERR);
    assert_non_null(strstr(mq_error(c), "CONNECTION_FORCED"));
    assert_int_equal(mq_ack(c, &held), ML_ERR);
    assert_non_null(strstr(mq_error(c), "connection is gone"));
    assert_int_equal(publish(c, &t, "k", "after"), ML_OK); /* mandatory: queue is back */
    next_ok(c, &m);
    assert_string_equal(m.body, "after");
    assert_int_equal(mq_ack(c, &m), ML_OK);
    assert_int_equal(mq_ping(c), ML_OK);
    mq_message_destroy(&m);
    mq_message_destroy(&held);
    mq_close(admin);
    mq_close(c);
    topo_cleanup(&t);
}

/* The consumed queue is deleted under a consumer: the broker cancels the consumer, the
 * consumer's next call reports it (after sleeping out its timeout, so a loop cannot spin),
 * and the call after that reconnects, re-declares the queue and consumes again. */
static void test_consumer_cancelled_by_queue_delete(void **state)
{
    topo t;
    mq_conn *c, *admin;
    mq_message m = { 0 };
    int64_t t0;
    (void)state;
    topo_init(&t, "cancel", 0, 0, 0);
    c = consumer(&t, t.q, 2);
    assert_int_equal(publish(c, &t, "k", "held"), ML_OK);
    assert_int_equal(publish(c, &t, "k", "buffered"), ML_OK);
    next_ok(c, &m);
    admin = conn(NULL);
    assert_int_equal(mq_queue_delete(admin, t.q), ML_OK);
    mq_message_destroy(&m);
    next_ok(c, &m); /* delivered before the delete: still handed out */
    assert_string_equal(m.body, "buffered");
    mq_message_destroy(&m);
    t0 = ml_now_ms();
    assert_int_equal(mq_consume_next(c, 400, &m), MQ_ERR);
    assert_non_null(strstr(mq_error(c), "cancelled by the broker"));
    assert_true(ml_now_ms() - t0 >= 390);
    assert_int_equal(mq_consume_next(c, 300, &m), MQ_TIMEOUT); /* reconnected, queue is new */
    assert_int_equal(publish(admin, &t, "k", "fresh"), ML_OK);
    next_ok(c, &m);
    assert_string_equal(m.body, "fresh");
    assert_int_equal(mq_ack(c, &m), ML_OK);
    mq_message_destroy(&m);

    /* consuming a queue that does not exist fails clearly and leaves no consumer set up */
    mq_close(c);
    c = conn(&t);
    assert_int_equal(mq_consume(c, "h4t-no-such-queue", 1), ML_ERR);
    assert_non_null(strstr(mq_error(c), "404 NOT_FOUND"));
    assert_int_equal(mq_consume(c, t.q, 0), ML_ERR); /* bad prefetch */
    assert_int_equal(mq_consume(c, t.q, 1), ML_OK);
    assert_int_equal(mq_consume(c, t.q, 1), ML_ERR); /* one consumer per connection */
    mq_close(admin);
    mq_close(c);
    topo_cleanup(&t);
}

/* A passive declare of a missing queue fails on the side channel only: the consumer's
 * connection (and its unacked delivery) survives. */
static void test_stats_missing_queue_isolated(void **state)
{
    topo t;
    mq_conn *c;
    mq_message m = { 0 };
    uint32_t n = 7, k = 7;
    char missing[160];
    (void)state;
    topo_init(&t, "stats", 0, 0, 0);
    snprintf(missing, sizeof(missing), "h4t.%s.no-such-queue", g_run);
    c = consumer(&t, t.q, 1);
    assert_int_equal(publish(c, &t, "k", "a"), ML_OK);
    assert_int_equal(publish(c, &t, "k", "b"), ML_OK);
    next_ok(c, &m);
    assert_int_equal(mq_queue_stats(c, missing, &n, &k), ML_ERR);
    assert_non_null(strstr(mq_error(c), "404 NOT_FOUND"));
    assert_int_equal(n, 7); /* untouched on error */
    assert_int_equal(mq_queue_stats(c, t.q, &n, &k), ML_OK);
    assert_int_equal(n, 1);
    assert_int_equal(k, 1);
    assert_int_equal(mq_ack(c, &m), ML_OK); /* same connection: still ackable */
    mq_message_destroy(&m);
    next_ok(c, &m);
    assert_string_equal(m.body, "b");
    assert_int_equal(mq_ack(c, &m), ML_OK);
    mq_message_destroy(&m);
    assert_int_equal(mq_ping(c), ML_OK);
    mq_close(c);
    topo_cleanup(&t);
}

static void test_ttl_dead_letters(void **state)
{
    topo t;
    mq_conn *c, *d;
    mq_publish_msg pm = { .routing_key = "k", .body = "short", .body_len = 5,
                          .expiration_ms = 50, .mandatory = 1 };
    mq_message m = { 0 };
    (void)state;
    topo_init(&t, "ttl", 0, 0, 1000); /* queue TTL 1 s, message TTL 50 ms */
    c = conn(&t);
    pm.exchange = t.ex;
    assert_int_equal(mq_publish(c, &pm), ML_OK);
    wait_ready(c, t.dlq, 1);
    assert_int_equal(publish(c, &t, "k", "long"), ML_OK);
    ml_sleep_ms(100);
    assert_int_equal(ready(c, t.q), 1); /* queue TTL not reached yet */
    wait_ready(c, t.dlq, 2);
    d = consumer(&t, t.dlq, 2);
    next_ok(d, &m);
    assert_string_equal(m.body, "short");
    assert_string_equal(mq_message_header(&m, "x-first-death-reason")->str, "expired");
    assert_int_equal(mq_ack(d, &m), ML_OK);
    mq_message_destroy(&m);
    next_ok(d, &m);
    assert_string_equal(m.body, "long");
    assert_string_equal(mq_message_header(&m, "x-first-death-reason")->str, "expired");
    assert_int_equal(mq_ack(d, &m), ML_OK);
    mq_message_destroy(&m);
    wait_ready(c, t.dlq, 0);
    mq_close(d);
    mq_close(c);
    topo_cleanup(&t);
}

/* Quorum queue with x-delivery-limit: a message requeued too often is dead-lettered. */
static void test_quorum_delivery_limit(void **state)
{
    topo t;
    mq_conn *c;
    mq_message m = { 0 };
    int deliveries = 0;
    mq_status rc;
    (void)state;
    topo_init(&t, "quorum", 1, 2, 0);
    c = consumer(&t, t.q, 1);
    assert_int_equal(publish(c, &t, "k", "poison"), ML_OK);
    while ((rc = mq_consume_next(c, 1000, &m)) == MQ_OK) {
        deliveries++;
        assert_string_equal(m.body, "poison");
        assert_int_equal(m.redelivered, deliveries > 1);
        assert_int_equal(mq_nack(c, &m, 1), ML_OK);
        mq_message_destroy(&m);
        assert_true(deliveries < 10);
    }
    assert_int_equal(rc, MQ_TIMEOUT);
    assert_int_equal(deliveries, 3); /* the first delivery plus delivery_limit redeliveries */
    wait_ready(c, t.dlq, 1);
    mq_close(c);
    topo_cleanup(&t);
}

/* A full queue with overflow=reject-publish (set by a policy) nacks the publish: the caller
 * learns the message was not queued. */
static void test_full_queue_nacks(void **state)
{
    topo t;
    mq_conn *c;
    ml_buf b = { 0 };
    char path[512], def[512];
    char *v = curl_easy_escape(NULL, g_vhost, 0);
    int rc = ML_OK, i;
    (void)state;
    topo_init(&t, "full", 0, 0, 0);
    c = conn(&t);
    snprintf(path, sizeof(path), "/policies/%s/%s", v, t.q);
    snprintf(def, sizeof(def),
             "{\"pattern\":\"^%s$\",\"apply-to\":\"queues\",\"priority\":100,"
             "\"definition\":{\"max-length\":1,\"overflow\":\"reject-publish\"}}",
             t.q);
    assert_int_equal(mgmt_body("PUT", path, def, &b), 201);
    assert_int_equal(publish(c, &t, "k", "1"), ML_OK);
    /* the policy is applied asynchronously: publish until the queue refuses */
    for (i = 0; i < 50 && (rc = publish(c, &t, "k", "more")) == ML_OK; i++)
        ml_sleep_ms(100);
    assert_int_equal(rc, ML_ERR);
    assert_non_null(strstr(mq_error(c), "nacked"));
    assert_int_equal(publish(c, &t, "k", "still full"), ML_ERR);
    assert_int_equal(mgmt("DELETE", path, &b), 204);
    curl_free(v);
    ml_buf_free(&b);
    mq_close(c);
    topo_cleanup(&t);
}

/* Redeclaring a queue with other arguments fails the connect with the broker's reason. */
static void test_topology_conflict(void **state)
{
    topo t, t2;
    mq_conn *c, *bad;
    char err[256] = "";
    (void)state;
    topo_init(&t, "conflict", 0, 0, 0);
    c = conn(&t);
    topo_init(&t2, "conflict", 0, 0, 1000); /* same names, now with a TTL */
    bad = mq_new(g_url, NULL, &t2.t, err, sizeof(err));
    assert_non_null(bad);
    assert_int_equal(mq_ensure(bad), ML_ERR);
    assert_non_null(strstr(mq_error(bad), "406 PRECONDITION_FAILED"));
    assert_non_null(strstr(mq_error(bad), "x-message-ttl"));
    /* now inside the backoff window: refused without a network round trip */
    assert_int_equal(mq_ensure(bad), ML_ERR);
    assert_non_null(strstr(mq_error(bad), "next connect attempt in"));
    mq_close(bad);
    mq_close(c);
    topo_cleanup(&t);
}

static void test_bad_credentials(void **state)
{
    char url[512], err[256] = "";
    struct amqp_connection_info info;
    char *copy = strdup(g_url);
    mq_conn *c;
    (void)state;
    assert_int_equal(amqp_parse_url(copy, &info), AMQP_STATUS_OK);
    snprintf(url, sizeof(url), "amqp://%s:wrong-password@%s:%d/", info.user, info.host,
             info.port);
    free(copy);
    c = mq_new(url, NULL, NULL, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(mq_ensure(c), ML_ERR);
    assert_non_null(strstr(mq_error(c), "ACCESS_REFUSED"));
    mq_close(c);
}

/* Heartbeats of 1 s: a consumer holding a delivery for 4 s keeps its connection with
 * mq_service; without it the broker drops the connection and redelivers. An idle publisher
 * whose connection was dropped reconnects transparently before publishing. */
static void test_heartbeats_and_service(void **state)
{
    topo t;
    mq_options o = { .heartbeat_s = 1, .op_timeout_ms = 5000 };
    mq_conn *c;
    mq_message m = { 0 }, again = { 0 };
    int64_t until;
    (void)state;
    topo_init(&t, "hb", 0, 0, 0);
    o.connection_name = t.conn_name;
    c = conn_opts(&t, &o);
    assert_int_equal(mq_consume(c, t.q, 1), ML_OK);
    assert_int_equal(publish(c, &t, "k", "slow job"), ML_OK);
    next_ok(c, &m);
    for (until = ml_now_ms() + 4000; ml_now_ms() < until; ml_sleep_ms(300))
        assert_int_equal(mq_service(c), ML_OK);
    assert_int_equal(mq_ack(c, &m), ML_OK);
    mq_message_destroy(&m);
    assert_int_equal(mq_consume_next(c, 500, &m), MQ_TIMEOUT); /* acked for good */

    assert_int_equal(publish(c, &t, "k", "neglected"), ML_OK);
    next_ok(c, &m);
    ml_sleep_ms(4000); /* no heartbeats sent: the broker gives up on us */
    assert_int_equal(publish(c, &t, "k", "second"), ML_OK);
    assert_int_equal(mq_ack(c, &m), ML_ERR); /* the publish had to reconnect */
    next_ok(c, &again);
    assert_string_equal(again.body, "neglected");
    assert_int_equal(again.redelivered, 1);
    assert_int_equal(mq_ack(c, &again), ML_OK);
    mq_message_destroy(&again);
    next_ok(c, &again);
    assert_string_equal(again.body, "second");
    assert_int_equal(mq_ack(c, &again), ML_OK);
    mq_message_destroy(&again);
    mq_message_destroy(&m);
    mq_close(c);
    topo_cleanup(&t);
}

/* Deliveries arriving while a publish waits for its confirm are kept, not lost. */
static void test_deliveries_during_publish(void **state)
{
    topo t;
    mq_conn *c;
    mq_message m = { 0 };
    char body[16];
    int i;
    (void)state;
    topo_init(&t, "mix", 0, 0, 0);
    c = consumer(&t, t.q, 50);
    for (i = 0; i < 20; i++) {
        snprintf(body, sizeof(body), "n%d", i);
        assert_int_equal(publish(c, &t, "k", body), ML_OK);
    }
    for (i = 0; i < 20; i++) {
        snprintf(body, sizeof(body), "n%d", i);
        next_ok(c, &m);
        assert_string_equal(m.body, body);
        assert_int_equal(mq_ack(c, &m), ML_OK);
        mq_message_destroy(&m);
    }
    assert_int_equal(mq_consume_next(c, 200, &m), MQ_TIMEOUT);
    mq_close(c);
    topo_cleanup(&t);
}

static void test_publish_throughput(void **state)
{
    enum { N = 1000 };
    topo t;
    mq_conn *c;
    char body[64];
    int64_t t0, ms;
    int i;
    (void)state;
    topo_init(&t, "tput", 0, 0, 0);
    c = conn(&t);
    t0 = ml_now_ms();
    for (i = 0; i < N; i++) {
        snprintf(body, sizeof(body), "{\"n\":%d}", i);
        assert_int_equal(publish(c, &t, "k", body), ML_OK);
    }
    ms = ml_now_ms() - t0;
    printf("mq_publish with confirms: %d messages in %lld ms = %.0f msgs/s\n", N, (long long)ms,
           ms > 0 ? N * 1000.0 / (double)ms : 0.0);
    assert_int_equal(ready(c, t.q), N);
    mq_close(c);
    topo_cleanup(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_with_properties),
        cmocka_unit_test(test_nack_reject_requeue),
        cmocka_unit_test(test_unroutable_and_channel_errors),
        cmocka_unit_test(test_prefetch_bound),
        cmocka_unit_test(test_redelivery_after_consumer_close),
        cmocka_unit_test(test_reconnect_after_forced_close),
        cmocka_unit_test(test_consumer_cancelled_by_queue_delete),
        cmocka_unit_test(test_stats_missing_queue_isolated),
        cmocka_unit_test(test_ttl_dead_letters),
        cmocka_unit_test(test_quorum_delivery_limit),
        cmocka_unit_test(test_full_queue_nacks),
        cmocka_unit_test(test_topology_conflict),
        cmocka_unit_test(test_bad_credentials),
        cmocka_unit_test(test_heartbeats_and_service),
        cmocka_unit_test(test_deliveries_during_publish),
        cmocka_unit_test(test_publish_throughput),
    };
    struct amqp_connection_info info;
    char uuid[ML_UUID_LEN], *copy;
    int rc;

    g_url = getenv("MINILAMBDA_AMQP_URL");
    g_mgmt = getenv("MINILAMBDA_RABBITMQ_MGMT_URL");
    if (!g_url || !*g_url || !g_mgmt || !*g_mgmt) {
        fprintf(stderr, "MINILAMBDA_AMQP_URL and MINILAMBDA_RABBITMQ_MGMT_URL must be set\n");
        return 1;
    }
    copy = strdup(g_url);
    if (!copy || amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
        fprintf(stderr, "MINILAMBDA_AMQP_URL is not a valid AMQP URL\n");
        return 1;
    }
    ml_strlcpy(g_user, info.user, sizeof(g_user));
    ml_strlcpy(g_pass, info.password, sizeof(g_pass));
    ml_strlcpy(g_vhost, info.vhost, sizeof(g_vhost));
    free(copy);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ml_uuid(uuid);
    memcpy(g_run, uuid, 8);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
