/* health.c — dependency checks behind GET /health. */
#include "health.h"

#include <string.h>

int health_add(health *h, const char *name, health_check_fn fn, void *ud, bool required)
{
    health_check *c;

    if (h->n == HEALTH_MAX_CHECKS)
        return ML_ERR;
    c = &h->checks[h->n++];
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->fn = fn;
    c->ud = ud;
    c->required = required;
    c->checked_ms = -1;
    pthread_mutex_init(&c->lock, NULL);
    return ML_OK;
}

/* Runs one check unless its cached result is fresh; the lock serialises callers so the
 * check's connection is never used by two threads at once. */
static void run_check(health *h, health_check *c, cJSON *checks)
{
    int64_t now = ml_now_ms(), window = h->cache_ms ? h->cache_ms : 1000;
    cJSON *o = cJSON_AddObjectToObject(checks, c->name);

    pthread_mutex_lock(&c->lock);
    if (c->checked_ms < 0 || now - c->checked_ms >= window) {
        c->error[0] = '\0';
        c->last_rc = c->fn(c->ud, c->error, sizeof(c->error));
        c->checked_ms = ml_now_ms();
        c->latency_ms = c->checked_ms - now;
    }
    cJSON_AddStringToObject(o, "status", c->last_rc == ML_OK ? "ok" : "down");
    cJSON_AddBoolToObject(o, "required", c->required);
    cJSON_AddNumberToObject(o, "latency_ms", (double)c->latency_ms);
    if (c->last_rc != ML_OK)
        cJSON_AddStringToObject(o, "error", c->error[0] ? c->error : "check failed");
    pthread_mutex_unlock(&c->lock);
}

int health_evaluate(health *h, cJSON **json)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *checks = cJSON_CreateObject();
    bool required_down = false, optional_down = false;

    for (size_t i = 0; i < h->n; i++) {
        health_check *c = &h->checks[i];
        run_check(h, c, checks);
        if (c->last_rc != ML_OK) {
            if (c->required)
                required_down = true;
            else
                optional_down = true;
        }
    }
    cJSON_AddStringToObject(root, "status",
                            required_down ? "unavailable" : optional_down ? "degraded" : "ok");
    cJSON_AddItemToObject(root, "checks", checks);
    if (json)
        *json = root;
    else
        cJSON_Delete(root);
    return required_down ? ML_ERR : ML_OK;
}

httpd_result health_handler(httpd_req *req, httpd_resp *resp, void *ud)
{
    cJSON *json = NULL;
    int rc = health_evaluate(ud, &json);

    ML_UNUSED(req);
    if (rc != ML_OK)
        httpd_resp_header(resp, "Retry-After", "5");
    httpd_resp_json(resp, rc == ML_OK ? 200 : 503, json);
    return HTTPD_DONE;
}
