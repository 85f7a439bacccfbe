/* labelcap.c — first-come bounded label values (see labelcap.h). */
#include "labelcap.h"

#include <stdlib.h>
#include <string.h>

#include "ml.h"

int gw_labelcap_init(gw_labelcap *c, size_t max)
{
    memset(c, 0, sizeof(*c));
    c->max = max ? max : 100;
    c->values = calloc(c->max, sizeof(char *));
    if (!c->values)
        return ML_ERR;
    pthread_mutex_init(&c->lock, NULL);
    return ML_OK;
}

void gw_labelcap_free(gw_labelcap *c)
{
    if (!c->values)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->values[i]);
    free(c->values);
    c->values = NULL;
    c->n = 0;
    pthread_mutex_destroy(&c->lock);
}

const char *gw_labelcap_get(gw_labelcap *c, const char *value)
{
    const char *found = "other";

    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->values[i], value) == 0) {
            found = c->values[i];
            goto out;
        }
    }
    if (c->n < c->max && (c->values[c->n] = strdup(value)))
        found = c->values[c->n++];
out:
    pthread_mutex_unlock(&c->lock);
    return found;
}
