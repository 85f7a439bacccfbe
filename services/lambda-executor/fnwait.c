/* fnwait.c — parked GET /functions/{fn}?wait=active requests and their polling thread
 * (see fnwait.h). */
#include "fnwait.h"

#include <cJSON.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.h"
#include "log.h"

#define DEFAULT_POLL_MS 200
#define DEFAULT_MAX_WAITERS 4096
#define KEY_MAX 65

typedef struct waiter {
    struct waiter *next;
    httpd_req *req;
    httpd_resp *resp;
    int64_t deadline_ms;
    char key[KEY_MAX];
} waiter;

struct fnwait {
    fnwait_config cfg;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    waiter *head;     /* parked, not being checked right now */
    size_t n;         /* all waiters, including those being checked */
    bool notified, quit;
};

/* ---- answering ---- */

static void finish(waiter *wt)
{
    httpd_complete(wt->req);
    free(wt);
}

static void answer_doc(waiter *wt, const char *doc)
{
    cJSON *o = cJSON_Parse(doc);

    if (!o)
        httpd_resp_error(wt->resp, 500, "internal", "malformed JSON from the database");
    else
        httpd_resp_json(wt->resp, 200, o);
    finish(wt);
}

static void answer_unavailable(waiter *wt, const char *why)
{
    httpd_resp_header(wt->resp, "Retry-After", "5");
    httpd_resp_error(wt->resp, 503, "service_unavailable", "%s", why);
    finish(wt);
}

/* True when the document's state ends the wait (active or failed). */
static bool settled(const char *doc)
{
    cJSON *o = cJSON_Parse(doc);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
    bool done = !o || !cJSON_IsString(st) || strcmp(st->valuestring, "pending") != 0;

    cJSON_Delete(o);
    return done;
}

/* Decides one waiter after a fetch; true when it was answered (and freed). */
static bool decide(waiter *wt, bool fetched, const char *doc, int64_t now, bool stopping)
{
    bool late = now >= wt->deadline_ms || stopping;

    if (fetched && !doc) {
        httpd_resp_error(wt->resp, 404, "not_found", "no function '%s'", wt->key);
        finish(wt);
        return true;
    }
    if (fetched && (late || settled(doc))) {
        answer_doc(wt, doc);
        return true;
    }
    if (!fetched && late) {
        answer_unavailable(wt, "cannot read the function's state from the function database");
        return true;
    }
    return false;
}

/* ---- the thread ---- */

/* Checks every waiter in list (detached from the shared list); returns those still waiting. */
static waiter *check_all(fnwait *w, waiter *list, size_t n, bool stopping)
{
    const char **keys = calloc(n, sizeof(*keys));
    char **docs = calloc(n, sizeof(*docs));
    waiter *keep = NULL, *next;
    size_t i = 0, answered = 0;
    bool fetched = false;
    int64_t now;

    if (keys && docs) {
        for (waiter *wt = list; wt; wt = wt->next)
            keys[i++] = wt->key;
        fetched = w->cfg.fetch(w->cfg.fetch_ud, keys, n, docs) == ML_OK;
    }
    now = ml_now_ms();
    for (i = 0; list; list = next, i++) {
        next = list->next;
        if (decide(list, fetched, docs ? docs[i] : NULL, now, stopping)) {
            answered++;
        } else {
            list->next = keep;
            keep = list;
        }
        if (docs)
            free(docs[i]);
    }
    free(keys);
    free(docs);
    pthread_mutex_lock(&w->lock);
    w->n -= answered;
    pthread_mutex_unlock(&w->lock);
    return keep;
}

/* Waits for a notification or the poll interval; returns the detached list (and its size). */
static waiter *next_batch(fnwait *w, size_t *n, bool *quit)
{
    struct timespec until;
    waiter *list;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)(w->cfg.poll_ms % 1000) * 1000000L;
    until.tv_sec += (time_t)(w->cfg.poll_ms / 1000) + until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&w->lock);
    while (!w->notified && !w->quit &&
           pthread_cond_timedwait(&w->wake, &w->lock, &until) == 0)
        ;
    w->notified = false;
    *quit = w->quit;
    list = w->head;
    w->head = NULL;
    *n = 0;
    for (waiter *wt = list; wt; wt = wt->next)
        (*n)++;
    pthread_mutex_unlock(&w->lock);
    return list;
}

static void requeue(fnwait *w, waiter *keep)
{
    waiter *last = keep;

    if (!keep)
        return;
    while (last->next)
        last = last->next;
    pthread_mutex_lock(&w->lock);
    last->next = w->head;
    w->head = keep;
    pthread_mutex_unlock(&w->lock);
}

static void *wait_main(void *arg)
{
    fnwait *w = arg;
    bool quit = false;

    while (!quit) {
        size_t n;
        waiter *list = next_batch(w, &n, &quit);
        bool stopping = quit || (w->cfg.should_stop && w->cfg.should_stop());

        if (list)
            requeue(w, check_all(w, list, n, stopping));
    }
    return NULL;
}

/* ---- public ---- */

fnwait *fnwait_new(const fnwait_config *cfg, char *err, size_t errlen)
{
    fnwait *w;

    if (!cfg || !cfg->fetch) {
        ml_snprintf_trunc(err, errlen, "fnwait: a fetch function is required");
        return NULL;
    }
    if (!(w = calloc(1, sizeof(*w)))) {
        ml_snprintf_trunc(err, errlen, "fnwait: out of memory");
        return NULL;
    }
    w->cfg = *cfg;
    w->cfg.poll_ms = cfg->poll_ms > 0 ? cfg->poll_ms : DEFAULT_POLL_MS;
    w->cfg.max_waiters = cfg->max_waiters ? cfg->max_waiters : DEFAULT_MAX_WAITERS;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, wait_main, w) != 0) {
        ml_snprintf_trunc(err, errlen, "fnwait: cannot start its thread");
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    return w;
}

void fnwait_free(fnwait *w)
{
    waiter *next;

    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->quit = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    for (waiter *wt = w->head; wt; wt = next) {
        next = wt->next;
        answer_unavailable(wt, "the server is shutting down");
    }
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

httpd_result fnwait_park(fnwait *w, httpd_req *req, httpd_resp *resp, const char *key,
                         int timeout_s)
{
    waiter *wt = calloc(1, sizeof(*wt));
    bool full;

    if (!wt || ml_strlcpy(wt->key, key, sizeof(wt->key)) != ML_OK) {
        free(wt);
        httpd_resp_error(resp, 500, "internal", "cannot wait for the function");
        return HTTPD_DONE;
    }
    wt->req = req;
    wt->resp = resp;
    wt->deadline_ms = ml_now_ms() + (int64_t)timeout_s * 1000;
    pthread_mutex_lock(&w->lock);
    full = w->n >= w->cfg.max_waiters;
    if (!full) {
        wt->next = w->head;
        w->head = wt;
        w->n++;
    }
    pthread_mutex_unlock(&w->lock);
    if (full) {
        free(wt);
        httpd_resp_header(resp, "Retry-After", "1");
        health_mark_overloaded(resp); /* the wait queue is full: this instance's overload */
        httpd_resp_error(resp, 503, "too_many_waiters", "too many requests are waiting for functions");
        return HTTPD_DONE;
    }
    return HTTPD_ASYNC;
}

void fnwait_notify(fnwait *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->notified = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}
