/* fnurl_batch_stub.c — TEMPORARY, delete when the batching branch (batch.c) is merged: it
 * only lets the fnurl branch link before then. A function URL with batching configured is
 * answered 500 "cannot queue the request for its batch" while this stub is in. */
#include "batch.h"

#include "ml.h"

int gw_batch_add(gw_loop *l, const gw_batch_target *t, const char *key, const char *event,
                 size_t event_len, const char *id, int64_t deadline_ms, gw_batch_done_fn done,
                 void *ud)
{
    ML_UNUSED(l);
    ML_UNUSED(t);
    ML_UNUSED(key);
    ML_UNUSED(event);
    ML_UNUSED(event_len);
    ML_UNUSED(id);
    ML_UNUSED(deadline_ms);
    ML_UNUSED(done);
    ML_UNUSED(ud);
    return ML_ERR;
}

int gw_batch_key(const gw_batch_target *t, gw_batch_lookup_fn lookup, void *ud, char **out)
{
    ML_UNUSED(t);
    ML_UNUSED(lookup);
    ML_UNUSED(ud);
    *out = NULL;
    return ML_ERR;
}
