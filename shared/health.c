/* health.c — dependency checks, run in the background, and the capabilities they enable. */
#include "health.h"

#include <string.h>

#include "log.h"

/* One check's result as the handlers see it. */
typedef struct check_view {
    bool up, pending;
    int64_t latency_ms, age_ms;
    char error[256];
} check_view;

int health_add(health *h, const char *name, health_check_fn fn, void *ud, bool required)
{
    health_check *c;

    if (h->n == HEALTH_MAX_CHECKS)
        return ML_ERR;
    c = &h->checks[h->n];
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->fn = fn;
    c->ud = ud;
    c->required = required;
    c->checked_ms = -1;
    pthread_mutex_init(&c->lock, NULL);
    h->n++;
    return ML_OK;
}

static int find_check(const health *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++) {
        if (strcmp(h->checks[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

/* ML_OK when every name in names (up to HEALTH_CAP_DEPS, NULL-ended) is a check of h. */
static int names_known(const health *h, const char *const *names)
{
    for (size_t i = 0; i < HEALTH_CAP_DEPS && names[i]; i++) {
        if (find_check(h, names[i]) < 0) {
            ml_log_kv(ML_LOG_ERROR, "capability names an unknown health check", "check", names[i], NULL);
            return ML_ERR;
        }
    }
    return ML_OK;
}

int health_set_caps(health *h, const health_cap *caps, size_t n)
{
    if (n > HEALTH_MAX_CAPS)
        return ML_ERR;
    for (size_t i = 0; i < n; i++) {
        if (!caps[i].name || names_known(h, caps[i].all) != ML_OK ||
            names_known(h, caps[i].any) != ML_OK)
            return ML_ERR;
    }
    memcpy(h->caps, caps, n * sizeof(*caps));
    h->ncaps = n;
    return ML_OK;
}

/* Stores a run's result; the caller holds c->lock. */
static void record(health_check *c, int rc, int64_t started_ms, const char *err)
{
    c->checked_ms = ml_now_ms();
    c->latency_ms = c->checked_ms - started_ms;
    c->last_rc = rc;
    if (rc == ML_OK) {
        c->fails = 0;
        c->ever_ok = true;
        c->error[0] = '\0';
    } else {
        c->fails++;
        ml_strlcpy(c->error, err[0] ? err : "check failed", sizeof(c->error));
    }
}

/* Background: runs the check outside the lock (readers never wait on it), then records.
 * Only this thread runs checks, so the check's connection stays single-threaded. */
static void run_background(health_check *c)
{
    char err[256] = "";
    int64_t t0 = ml_now_ms();
    int rc = c->fn(c->ud, err, sizeof(err));

    if (ml_now_ms() - t0 > HEALTH_CHECK_BUDGET_MS * 2)
        ml_log_kv(ML_LOG_WARN, "health check overran its budget", "check", c->name, NULL);
    pthread_mutex_lock(&c->lock);
    record(c, rc, t0, err);
    pthread_mutex_unlock(&c->lock);
}

static void *health_main(void *arg)
{
    health *h = arg;
    int64_t interval = h->interval_ms > 0 ? h->interval_ms : HEALTH_INTERVAL_MS;

    while (!atomic_load(&h->stop)) {
        int64_t next = ml_now_ms() + interval;

        for (size_t i = 0; i < h->n && !atomic_load(&h->stop); i++)
            run_background(&h->checks[i]);
        atomic_fetch_add(&h->rounds, 1);
        while (!atomic_load(&h->stop) && ml_now_ms() < next)
            ml_sleep_ms(next - ml_now_ms() < 20 ? next - ml_now_ms() : 20);
    }
    return NULL;
}

int health_start(health *h)
{
    if (atomic_load(&h->running))
        return ML_OK;
    atomic_store(&h->stop, false);
    if (pthread_create(&h->thread, NULL, health_main, h) != 0)
        return ML_ERR;
    atomic_store(&h->running, true);
    return ML_OK;
}

void health_stop(health *h)
{
    if (!atomic_load(&h->running))
        return;
    atomic_store(&h->stop, true);
    pthread_join(h->thread, NULL);
    atomic_store(&h->running, false);
}

/* Foreground (no background thread): runs the check unless its result is fresh; the lock
 * serialises callers so the check's connection is never used by two threads at once. */
static void refresh_foreground(health *h, health_check *c)
{
    int64_t now = ml_now_ms(), window = h->cache_ms ? h->cache_ms : 1000;
    char err[256] = "";

    pthread_mutex_lock(&c->lock);
    if (c->checked_ms < 0 || now - c->checked_ms >= window)
        record(c, c->fn(c->ud, err, sizeof(err)), now, err);
    pthread_mutex_unlock(&c->lock);
}

/* Copies the results of every check into view (h->n entries). */
static void snapshot(health *h, check_view *view)
{
    bool bg = atomic_load(&h->running);
    int64_t now = ml_now_ms();

    for (size_t i = 0; i < h->n; i++) {
        health_check *c = &h->checks[i];
        check_view *v = &view[i];
        if (!bg)
            refresh_foreground(h, c);
        pthread_mutex_lock(&c->lock);
        v->pending = c->checked_ms < 0;
        /* debounced only in the background, where rounds are HEALTH_INTERVAL_MS apart; a
         * foreground caller asked for this very run */
        v->up = !v->pending && (c->last_rc == ML_OK ||
                                (bg && c->ever_ok && c->fails < HEALTH_FAILS_TO_DOWN));
        v->latency_ms = c->latency_ms;
        v->age_ms = v->pending ? -1 : now - c->checked_ms;
        ml_strlcpy(v->error, v->pending ? "not checked yet" : c->error, sizeof(v->error));
        pthread_mutex_unlock(&c->lock);
    }
}

/* True when the capability's checks allow it; else the first missing check in why. */
static bool cap_up(const health *h, const health_cap *cap, const check_view *view, char *why,
                   size_t whylen)
{
    bool any_named = false, any_up = false;

    for (size_t i = 0; i < HEALTH_CAP_DEPS && cap->all[i]; i++) {
        if (!view[find_check(h, cap->all[i])].up) {
            ml_snprintf_trunc(why, whylen, "%s is down", cap->all[i]);
            return false;
        }
    }
    for (size_t i = 0; i < HEALTH_CAP_DEPS && cap->any[i]; i++) {
        any_named = true;
        any_up = any_up || view[find_check(h, cap->any[i])].up;
    }
    if (any_named && !any_up)
        ml_snprintf_trunc(why, whylen, "none of %s%s%s is up", cap->any[0],
                          cap->any[1] ? ", " : "", cap->any[1] ? cap->any[1] : "");
    return !any_named || any_up;
}

static void add_check_json(cJSON *checks, const health_check *c, const check_view *v)
{
    cJSON *o = cJSON_AddObjectToObject(checks, c->name);

    cJSON_AddStringToObject(o, "status", v->up ? "ok" : "down");
    cJSON_AddBoolToObject(o, "required", c->required);
    cJSON_AddNumberToObject(o, "latency_ms", (double)v->latency_ms);
    cJSON_AddNumberToObject(o, "age_ms", (double)v->age_ms);
    if (v->error[0])
        cJSON_AddStringToObject(o, "error", v->error);
}

/* Adds "capabilities"; returns how many are available. */
static size_t add_caps_json(cJSON *root, const health *h, const check_view *view)
{
    cJSON *caps = cJSON_AddObjectToObject(root, "capabilities");
    char why[128];
    size_t up = 0;

    for (size_t i = 0; i < h->ncaps; i++) {
        bool ok = cap_up(h, &h->caps[i], view, why, sizeof(why));
        cJSON_AddBoolToObject(caps, h->caps[i].name, ok);
        up += ok;
    }
    return up;
}

int health_evaluate(health *h, cJSON **json)
{
    check_view view[HEALTH_MAX_CHECKS];
    cJSON *root = cJSON_CreateObject(), *checks = cJSON_CreateObject();
    cJSON *degraded = cJSON_CreateArray();
    bool required_down = false, any_down = false, serving;

    snapshot(h, view);
    for (size_t i = 0; i < h->n; i++) {
        add_check_json(checks, &h->checks[i], &view[i]);
        if (!view[i].up) {
            cJSON_AddItemToArray(degraded, cJSON_CreateString(h->checks[i].name));
            any_down = true;
            required_down = required_down || h->checks[i].required;
        }
    }
    /* with capabilities, serving while one is available; without, the older rule */
    serving = h->ncaps ? add_caps_json(root, h, view) > 0 : !required_down;
    cJSON_AddStringToObject(root, "status", !serving ? "unavailable" : any_down ? "degraded" : "ok");
    cJSON_AddItemToObject(root, "checks", checks);
    cJSON_AddItemToObject(root, "degraded", degraded);
    if (json)
        *json = root;
    else
        cJSON_Delete(root);
    return serving ? ML_OK : ML_ERR;
}

int health_cap_ready(health *h, const char *cap, char *err, size_t errlen)
{
    check_view view[HEALTH_MAX_CHECKS];

    for (size_t i = 0; i < h->ncaps; i++) {
        if (strcmp(h->caps[i].name, cap) == 0) {
            snapshot(h, view);
            return cap_up(h, &h->caps[i], view, err, errlen) ? 1 : 0;
        }
    }
    return -1;
}

bool health_all_ready(health *h)
{
    check_view view[HEALTH_MAX_CHECKS];
    char why[128];

    snapshot(h, view);
    for (size_t i = 0; i < h->n; i++) {
        if (h->checks[i].required && !view[i].up)
            return false;
    }
    for (size_t i = 0; i < h->ncaps; i++) {
        if (!cap_up(h, &h->caps[i], view, why, sizeof(why)))
            return false;
    }
    return true;
}

httpd_result health_handler(httpd_req *req, httpd_resp *resp, void *ud)
{
    cJSON *json = NULL;
    int rc = health_evaluate(ud, &json);

    ML_UNUSED(req);
    if (rc != ML_OK)
        httpd_resp_header(resp, "Retry-After", "1");
    httpd_resp_json(resp, rc == ML_OK ? 200 : 503, json);
    return HTTPD_DONE;
}

httpd_result health_ready_handler(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *cap = httpd_param(req, "cap");
    char why[128] = "";
    int ready = cap ? health_cap_ready(ud, cap, why, sizeof(why)) : -1;
    cJSON *o;

    if (ready < 0) {
        httpd_resp_error(resp, 404, "not_found", "no capability named '%s' here", cap ? cap : "");
        return HTTPD_DONE;
    }
    if (ready == 0) {
        httpd_resp_header(resp, "Retry-After", "1");
        httpd_resp_error(resp, 503, "not_ready", "%s is not available: %s", cap, why);
        return HTTPD_DONE;
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "capability", cap);
    cJSON_AddBoolToObject(o, "ready", true);
    httpd_resp_json(resp, 200, o);
    return HTTPD_DONE;
}

void health_mark_overloaded(httpd_resp *resp)
{
    httpd_resp_header(resp, HEALTH_OVERLOAD_HEADER, "1");
}
