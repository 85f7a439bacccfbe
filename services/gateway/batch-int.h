/* batch-int.h — what batch.c (collecting requests into batches), batch_send.c (invoking
 * a batch and routing its answer) and batch_item.c (answering, freeing) share. Nothing
 * outside the batcher includes it.
 * Threads: everything here runs on the loop thread that owns the batch. */
#ifndef GW_BATCH_INT_H
#define GW_BATCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "buf.h"
#include "invstream.h"
#include "metrics.h"

typedef struct gw_bbatch gw_bbatch;
typedef struct gw_bkey gw_bkey;

/* One request waiting for its answer. */
typedef struct gw_bitem {
    gw_timer deadline;       /* its own deadline: GW_FNOUT_TIMEOUT when it passes */
    gw_bbatch *batch;
    char *id;                /* owned */
    char *event;             /* owned: the v2 event, without "id" */
    size_t event_len;
    gw_batch_done_fn done;
    void *ud;
    bool answered;           /* done ran: anything later for it is dropped */
} gw_bitem;

/* One batch: open (collecting, key set) until its window ends or it is full, then sent
 * (x set) until the answer has been routed. Freed by gw_bbatch_free. */
struct gw_bbatch {
    gw_timer window;         /* its window's end, or "now" once full */
    gw_loop *loop;
    gw_bkey *key;            /* while open: the key whose open batch it is */
    /* the target, copied when it opened */
    gw_pool *pool;
    char *ns, *fn, *qualifier;
    gw_fnurl_batching cfg;
    int64_t function_timeout_s, margin_s;
    long connect_timeout_ms;
    size_t max_response;
    /* the items, in arrival order (pointers: a done that adds to another batch never moves them) */
    gw_bitem **items;
    size_t n, cap;
    size_t live;             /* items not answered yet */
    int64_t opened_ms;
    /* once sent */
    gw_xfer *x;
    ml_buf body;             /* the invoke's body (x->body borrows it) */
    int32_t *index;          /* id -> item: open addressing over index_cap slots, -1 empty */
    size_t index_cap;
    size_t from_fn;          /* items the function answered */
    invstream_dec dec;       /* a streamed answer */
    ml_buf line;             /* its NDJSON line in progress */
    ml_buf end;              /* its 'E' frame */
    bool ended;
};

/* The batcher's metrics (NULL until gw_batch_metrics_init: metric_* ignore NULL). */
extern metric *gw_batch_m_size, *gw_batch_m_wait, *gw_batch_m_batches;

/* Hands it its result (once: a second answer is dropped) and disarms its deadline. */
void gw_bitem_answer(gw_bitem *it, const gw_fnout *out);
/* Every unanswered item of b gets out. */
void gw_bbatch_fail(gw_bbatch *b, const gw_fnout *out);
/* Every unanswered item of b gets GW_FNOUT_GATEWAY status/code/message. */
void gw_bbatch_fail_gw(gw_bbatch *b, int status, const char *code, const char *message);
/* Frees b and its items (disarming every timer); b must be neither open nor in flight. */
void gw_bbatch_free(gw_bbatch *b);
/* Sends b (its window ended or it is full): one invoke, whose answer is routed to the items;
 * b is freed once that is done (possibly before this returns). */
void gw_bbatch_send(gw_loop *l, gw_bbatch *b);

#endif
