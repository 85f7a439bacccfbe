/* labelcap.h — bounded metric label values: the first `max` distinct values are used as
 * they are, every later one becomes "other", so per-function metrics cannot grow without
 * bound however many functions exist. Thread-safe. */
#ifndef GW_LABELCAP_H
#define GW_LABELCAP_H

#include <pthread.h>
#include <stddef.h>

#include "ml.h"

typedef struct gw_labelcap {
    pthread_mutex_t lock;
    char **values;
    size_t n, max;
} gw_labelcap;

/* max 0: 100. Free with gw_labelcap_free. ML_ERR out of memory. */
int gw_labelcap_init(gw_labelcap *c, size_t max);
void gw_labelcap_free(gw_labelcap *c);
/* value itself (as a copy owned by c, valid until gw_labelcap_free) or "other". */
const char *gw_labelcap_get(gw_labelcap *c, const char *value);

#endif
