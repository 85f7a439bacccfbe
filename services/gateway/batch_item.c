/* batch_item.c — the batcher's leaf: its metrics, answering an item exactly once, failing a
 * batch's unanswered items, freeing a batch. batch.c (collecting) and batch_send.c (invoking,
 * routing) both use it; it uses neither. */
#include <stdlib.h>

#include "batch-int.h"
#include "ml.h"

metric *gw_batch_m_size, *gw_batch_m_wait, *gw_batch_m_batches;

int gw_batch_metrics_init(metrics_registry *reg)
{
    static const double sizes[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000 };
    static const double waits[] = { 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1 };

    if (!reg)
        return ML_ERR;
    gw_batch_m_size = metrics_histogram(reg, "minilambda_gateway_batch_size",
                                        "Requests per micro-batch invoke (function URLs)", NULL,
                                        sizes, ML_ARRAY_LEN(sizes));
    gw_batch_m_wait = metrics_histogram(reg, "minilambda_gateway_batch_wait_seconds",
                                        "Time from a batch's first request to its invoke", NULL,
                                        waits, ML_ARRAY_LEN(waits));
    gw_batch_m_batches = metrics_counter(reg, "minilambda_gateway_batches_total",
                                         "Micro-batches by outcome: ok, partial, function_error, "
                                         "timeout, upstream_error, no_upstream, error, expired",
                                         "result");
    return gw_batch_m_size && gw_batch_m_wait && gw_batch_m_batches ? ML_OK : ML_ERR;
}

void gw_bitem_answer(gw_bitem *it, const gw_fnout *out)
{
    if (it->answered)
        return;
    it->answered = true;
    it->batch->live--;
    gw_loop_timer_cancel(it->batch->loop, &it->deadline);
    it->done(it->ud, out);
}

void gw_bbatch_fail(gw_bbatch *b, const gw_fnout *out)
{
    for (size_t i = 0; i < b->n; i++) /* b->n re-read: nothing is added to a sealed batch */
        gw_bitem_answer(b->items[i], out);
}

void gw_bbatch_fail_gw(gw_bbatch *b, int status, const char *code, const char *message)
{
    gw_fnout out = { .kind = GW_FNOUT_GATEWAY, .status = status, .code = code, .message = message };

    gw_bbatch_fail(b, &out);
}

void gw_bbatch_free(gw_bbatch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        gw_bitem *it = b->items[i];
        gw_loop_timer_cancel(b->loop, &it->deadline);
        free(it->id);
        free(it->event);
        free(it);
    }
    gw_loop_timer_cancel(b->loop, &b->window);
    free(b->items);
    free(b->ns);
    free(b->fn);
    free(b->qualifier);
    free(b->index);
    ml_buf_free(&b->body);
    ml_buf_free(&b->line);
    ml_buf_free(&b->end);
    invstream_dec_free(&b->dec);
    free(b);
}
