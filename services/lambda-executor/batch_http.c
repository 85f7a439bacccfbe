/* batch_http.c — POST /batch-invoke (batch_http.h): parse and check every item first (one
 * bad item refuses the whole request, nothing runs), then run the items on a small set of
 * threads, each through invoke_one, and answer their outcomes in order. */
#include "batch_http.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "invoke.h"
#include "log.h"
#include "registry.h"

/* At most limit of one function's sync items run at once (its concurrency setting). */
typedef struct gate {
    char id[ML_UUID_LEN];
    int limit;
    int running;
} gate;

typedef struct item {
    invoke_input in;
    char *payload;           /* the event as text (owned) */
    const char *corr;        /* the client's "id" (borrowed from the request's JSON), or NULL */
    int gate;                /* index in batch.gates; -1: none */
    bool started;
    httpd_resp resp;         /* its outcome, as invoke_one wrote it */
} item;

typedef struct batch {
    ex_app *app;
    char ns[FN_NS_MAX];
    item items[BATCH_MAX_ITEMS];
    size_t n;
    gate gates[BATCH_MAX_ITEMS];
    size_t ngates;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} batch;

static void resp_clear(httpd_resp *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    ml_buf_free(&r->body);
    memset(r, 0, sizeof(*r));
}

static const char *resp_header(const httpd_resp *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* 400 invalid_field for invocations[i].field (i < 0: the field itself). */
static int refuse(httpd_resp *resp, long i, const char *field, const char *why)
{
    if (i < 0)
        httpd_resp_error(resp, 400, "invalid_field", "%s: %s", field, why);
    else
        httpd_resp_error(resp, 400, "invalid_field", "invocations[%ld].%s: %s", i, field, why);
    return ML_ERR;
}

static bool known_member(const char *name)
{
    static const char *const k[] = { "function", "payload", "qualifier", "invocation_type", "id", NULL };

    for (size_t i = 0; k[i]; i++)
        if (strcmp(k[i], name) == 0)
            return true;
    return false;
}

/* One item of the body into it; ML_ERR with the 400 written. */
static int parse_item(const cJSON *o, long i, item *it, httpd_resp *resp)
{
    const cJSON *m, *fn = cJSON_GetObjectItemCaseSensitive(o, "function");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "payload");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "qualifier");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "invocation_type");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");

    if (!cJSON_IsObject(o))
        return refuse(resp, i, "", "must be an object");
    cJSON_ArrayForEach(m, o)
        if (!known_member(m->string))
            return refuse(resp, i, m->string, "unknown field");
    if (!cJSON_IsString(fn) || !fn->valuestring[0] || strlen(fn->valuestring) > 256)
        return refuse(resp, i, "function", "is required: a function's name or id");
    if (q && !cJSON_IsNull(q) && (!cJSON_IsString(q) || !q->valuestring[0] || strlen(q->valuestring) > 128))
        return refuse(resp, i, "qualifier", "must be a version number or an alias name");
    if (t && (!cJSON_IsString(t) || (strcmp(t->valuestring, "RequestResponse") != 0 &&
                                     strcmp(t->valuestring, "Event") != 0 && strcmp(t->valuestring, "DryRun") != 0)))
        return refuse(resp, i, "invocation_type", "must be RequestResponse, Event or DryRun");
    if (id && (!cJSON_IsString(id) || strlen(id->valuestring) > BATCH_ID_MAX))
        return refuse(resp, i, "id", "must be a string of at most 128 bytes");
    it->in.fn = fn->valuestring;
    it->in.qualifier = cJSON_IsString(q) ? q->valuestring : NULL;
    it->in.type = t ? t->valuestring : NULL;
    it->corr = id ? id->valuestring : NULL;
    it->payload = p ? cJSON_PrintUnformatted(p) : NULL;
    if (p && !it->payload) {
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return ML_ERR;
    }
    it->in.event = it->payload ? it->payload : "{}";
    it->in.event_len = strlen(it->in.event);
    it->gate = -1;
    return ML_OK;
}

/* The body into b; ML_ERR with the refusal written. */
static int parse(batch *b, const cJSON *body, httpd_req *req, httpd_resp *resp)
{
    const cJSON *m, *list = cJSON_GetObjectItemCaseSensitive(body, "invocations"), *o;
    long i = 0;

    if (!cJSON_IsObject(body))
        return refuse(resp, -1, "body", "must be a JSON object");
    cJSON_ArrayForEach(m, body)
        if (strcmp(m->string, "invocations") != 0)
            return refuse(resp, -1, m->string, "unknown field");
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) < 1 || cJSON_GetArraySize(list) > BATCH_MAX_ITEMS)
        return refuse(resp, -1, "invocations", "must be an array of 1..100 invocations");
    cJSON_ArrayForEach(o, list) {
        item *it = &b->items[b->n++];
        it->in.ns = b->ns;
        it->in.request_id = httpd_request_id(req);
        if (parse_item(o, i++, it, resp) != ML_OK)
            return ML_ERR;
    }
    return ML_OK;
}

/* Sync items of a function with a concurrency setting share a gate of that size (looked
 * up now: the registry caches it, and invoke_one's own lookup then hits the cache). An
 * item whose lookup fails gets no gate: invoke_one answers it as a single invoke would. */
static void assign_gates(batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        item *it = &b->items[i];
        fn_info *f = malloc(sizeof(*f));
        size_t g = 0;
        if (!f)
            return;
        if ((it->in.type && strcmp(it->in.type, "RequestResponse") != 0) ||
            registry_get(b->app->registry, b->ns, it->in.fn, f, NULL, 0) != ML_OK || f->concurrency <= 0) {
            free(f);
            continue;
        }
        while (g < b->ngates && strcmp(b->gates[g].id, f->id) != 0)
            g++;
        if (g == b->ngates) {
            ml_strlcpy(b->gates[g].id, f->id, sizeof(b->gates[g].id));
            b->gates[g].limit = f->concurrency;
            b->ngates++;
        }
        it->gate = (int)g;
        free(f);
    }
}

/* With b->mu held: the first item not started whose gate has room, or NULL; *left says
 * whether any item is still waiting to start. */
static item *next_item(batch *b, bool *left)
{
    *left = false;
    for (size_t i = 0; i < b->n; i++) {
        item *it = &b->items[i];
        if (it->started)
            continue;
        *left = true;
        if (it->gate < 0 || b->gates[it->gate].running < b->gates[it->gate].limit)
            return it;
    }
    return NULL;
}

static void *worker(void *ud)
{
    batch *b = ud;
    bool left = true;

    pthread_mutex_lock(&b->mu);
    while (left) {
        item *it = next_item(b, &left);
        if (!it) {
            if (left)
                pthread_cond_wait(&b->cv, &b->mu);
            continue;
        }
        it->started = true;
        if (it->gate >= 0)
            b->gates[it->gate].running++;
        pthread_mutex_unlock(&b->mu);
        invoke_one(b->app, &it->in, &it->resp);
        pthread_mutex_lock(&b->mu);
        if (it->gate >= 0)
            b->gates[it->gate].running--;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* Runs every item: this thread and up to BATCH_MAX_THREADS - 1 more. */
static void run_all(batch *b)
{
    pthread_t th[BATCH_MAX_THREADS];
    size_t want = b->n < BATCH_MAX_THREADS ? b->n : BATCH_MAX_THREADS, started = 0;

    for (size_t i = 1; i < want; i++) {
        if (pthread_create(&th[started], NULL, worker, b) != 0)
            break; /* fewer threads: slower, still complete */
        started++;
    }
    worker(b);
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
}

/* One result object from an item's outcome. */
static cJSON *result_of(const item *it, size_t index)
{
    const httpd_resp *r = &it->resp;
    cJSON *o = cJSON_CreateObject(), *body = r->body.len ? cJSON_ParseWithLength(r->body.data, r->body.len) : NULL;
    const char *inv = resp_header(r, "X-Invocation-Id"), *ver = resp_header(r, "X-Executed-Version");
    const char *fe = resp_header(r, "X-Function-Error");
    cJSON *err = cJSON_DetachItemFromObjectCaseSensitive(body, "error");
    int status = r->status ? r->status : 200;

    cJSON_AddNumberToObject(o, "index", (double)index);
    if (it->corr)
        cJSON_AddStringToObject(o, "id", it->corr);
    else
        cJSON_AddNullToObject(o, "id");
    cJSON_AddStringToObject(o, "function", it->in.fn);
    cJSON_AddNumberToObject(o, "status", status);
    if (inv)
        cJSON_AddStringToObject(o, "invocation_id", inv);
    if (ver)
        cJSON_AddStringToObject(o, "executed_version", ver);
    if (status < 300 && status != 202 && status != 204) {
        cJSON_AddItemToObject(o, "payload", body ? body : cJSON_CreateNull());
        body = NULL;
    } else if (fe) { /* the function's own failure: its error document is the payload */
        cJSON_AddItemToObject(o, "payload", body ? body : cJSON_CreateNull());
        cJSON_AddStringToObject(o, "function_error", fe);
        body = NULL;
    }
    if (!fe && status >= 400 && cJSON_IsObject(err)) {
        cJSON_DeleteItemFromObjectCaseSensitive(err, "request_id");
        cJSON_AddItemToObject(o, "error", err);
        err = NULL;
    }
    cJSON_Delete(err);
    cJSON_Delete(body);
    return o;
}

static httpd_result h_batch(httpd_req *req, httpd_resp *resp, void *ud)
{
    batch *b = calloc(1, sizeof(*b));
    cJSON *body = NULL, *out = NULL, *results;

    if (!b) {
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return HTTPD_DONE;
    }
    b->app = ud;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (registry_req_ns(req, resp, b->ns) != ML_OK || !(body = httpd_body_json(req, resp)) ||
        parse(b, body, req, resp) != ML_OK)
        goto out;
    assign_gates(b);
    run_all(b);
    out = cJSON_CreateObject();
    results = cJSON_AddArrayToObject(out, "results");
    for (size_t i = 0; i < b->n && results; i++)
        cJSON_AddItemToArray(results, result_of(&b->items[i], i));
    httpd_resp_json(resp, 200, out);
out:
    for (size_t i = 0; i < b->n; i++) {
        resp_clear(&b->items[i].resp);
        cJSON_free(b->items[i].payload);
    }
    cJSON_Delete(body);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
    return HTTPD_DONE;
}

size_t batch_routes(ex_app *app, httpd_route *out, size_t max)
{
    if (max < 1)
        return 0;
    out[0] = (httpd_route){ "POST", "/batch-invoke", h_batch, app, BATCH_MAX_BODY, true };
    return 1;
}
