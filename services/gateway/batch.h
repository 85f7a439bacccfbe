/* batch.h — per-route micro-batching of function URL requests (docs/http.md "Batching").
 *
 * Requests to a function URL with batching enabled are collected per key — the function,
 * its qualifier and the configured extra dimensions (header:NAME, query:NAME, method, path)
 * — on the loop that received them. A batch goes when it holds max_batch_size requests or
 * when its window ends: max_wait_ms after its first request, or with dynamic wait a window
 * that grows with the key's request rate along a sigmoid (short when traffic is light, so a
 * lone request does not wait; max_wait_ms at high rates). One invoke carries
 * {"v":1,"batch":[<v2 event + "id">...]}; the answer {"v":1,"responses":[{"id",...}]} — or,
 * streamed, one NDJSON response record per line, each dispatched as soon as it arrives — is
 * routed item by item: every caller gets its own response, a missing or failed item fails
 * only its caller, and each request keeps its own deadline.
 * Threads: everything here runs on the calling loop's thread (proxy.h). */
#ifndef GW_BATCH_H
#define GW_BATCH_H

#include <stdint.h>

#include "fnurl-t.h"
#include "metrics.h"
#include "proxy.h"
#include "upstream.h"

/* Hands one request's result over; runs on the loop thread exactly once per gw_batch_add
 * that returned ML_OK (out is borrowed for the call). For a GW_FNOUT_RESULT, out->json is
 * the item's response object ({"id","statusCode","headers","body",...}). */
typedef void (*gw_batch_done_fn)(void *ud, const gw_fnout *out);

/* Where and how a key's batches are invoked. Strings are copied. */
typedef struct gw_batch_target {
    gw_pool *pool;               /* the executors */
    const char *ns;              /* the function's namespace (X-Minilambda-Namespace) */
    const char *fn;              /* the function's name */
    const char *qualifier;       /* "" : $LATEST */
    const gw_fnurl_batching *cfg;
    int64_t function_timeout_s;  /* bounds the batch's invoke (plus margin_s) */
    int64_t margin_s;
    long connect_timeout_ms;
    size_t max_response;
} gw_batch_target;

/* Adds one request to its key's open batch on loop l (opening one, arming its window).
 * key: the batch key as built by gw_batch_key. event: the request's v2 event (a JSON object
 * as text, without "id"); id: the item id (unique per request; the request id).
 * done never runs before this returns: always from a later timer or transfer callback.
 * deadline_ms (ml_now_ms clock): the request fails with GW_FNOUT_TIMEOUT if no answer came
 * by then. ML_ERR (nothing added, done never runs) when out of memory or when event is not
 * a JSON object. */
int gw_batch_add(gw_loop *l, const gw_batch_target *t, const char *key, const char *event,
                 size_t event_len, const char *id, int64_t deadline_ms, gw_batch_done_fn done,
                 void *ud);

/* The batch key of a request: "ns/fn:qualifier" plus the value of each configured dimension,
 * each length-prefixed so that no two different requests share a key by accident.
 * header/query/method/path values come from the accessors' ud. Caller frees *out. */
typedef const char *(*gw_batch_lookup_fn)(void *ud, const char *kind, const char *name);
int gw_batch_key(const gw_batch_target *t, gw_batch_lookup_fn lookup, void *ud, char **out);

/* Registers the batcher's metrics in reg once, before any loop runs (the gateway's start):
 * minilambda_gateway_batch_size, minilambda_gateway_batch_wait_seconds (histograms) and
 * minilambda_gateway_batches_total{result}. Without it the batcher works, unmeasured.
 * ML_ERR when a family cannot be created. */
int gw_batch_metrics_init(metrics_registry *reg);

/* The sigmoid window of dynamic wait for a key seeing rate requests/s (exposed for tests):
 * max_wait_ms / (1 + exp(-(rate - rate_mid) / rate_width)), in ms. */
double gw_batch_dynamic_wait_ms(const gw_fnurl_batching *cfg, double rate);

#endif
