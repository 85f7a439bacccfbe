/* upstream.c — upstream pools: breaker, round-robin, active health checks. */
#include "upstream.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpc.h"
#include "log.h"

/* The health check's budget: well inside the services' own (each /health bounds its checks
 * to less), and never more than 1 s, so a frozen instance costs a round at most that. */
#define HEALTH_CONNECT_TIMEOUT_MS 300
#define HEALTH_TIMEOUT_MS 1000

/* ---- capabilities ---- */

static const struct {
    const char *name;
    unsigned bit;
} cap_names[] = {
    { "invoke", GW_CAP_INVOKE }, { "async", GW_CAP_ASYNC }, { "read", GW_CAP_READ },
    { "write", GW_CAP_WRITE },   { "build", GW_CAP_BUILD },
};

const char *gw_cap_name(unsigned cap)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(cap_names); i++) {
        if (cap_names[i].bit == cap)
            return cap_names[i].name;
    }
    return "";
}

unsigned gw_caps_parse(long status, const char *body, size_t len)
{
    cJSON *doc = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *caps = cJSON_IsObject(doc) ? cJSON_GetObjectItemCaseSensitive(doc, "capabilities")
                                            : NULL;
    unsigned bits = 0;

    if (!cJSON_IsObject(caps) || (status != 200 && status != 503)) {
        cJSON_Delete(doc);
        return status == 200 ? GW_CAP_ALL : 0; /* a service that predates capabilities */
    }
    for (size_t i = 0; i < ML_ARRAY_LEN(cap_names); i++) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(caps, cap_names[i].name)))
            bits |= cap_names[i].bit;
    }
    cJSON_Delete(doc);
    return bits;
}

/* ---- breaker ---- */

static gw_breaker_cfg cfg_defaults(const gw_breaker_cfg *c)
{
    gw_breaker_cfg d = c ? *c : (gw_breaker_cfg){ 0 };

    if (d.failures <= 0)
        d.failures = 5;
    if (d.open_ms <= 0)
        d.open_ms = 5000;
    if (d.probes <= 0)
        d.probes = 2;
    return d;
}

static void trip(gw_breaker *b, int64_t now_ms)
{
    b->state = GW_BREAKER_OPEN;
    b->opened_ms = now_ms;
    b->probes_inflight = 0;
    b->probe_successes = 0;
}

gw_admit gw_breaker_admit(gw_breaker *b, const gw_breaker_cfg *cfg, int64_t now_ms)
{
    gw_breaker_cfg c = cfg_defaults(cfg);

    if (b->state == GW_BREAKER_OPEN) {
        if (now_ms - b->opened_ms < c.open_ms)
            return GW_ADMIT_NO;
        b->state = GW_BREAKER_HALF_OPEN;
        b->probes_inflight = 0;
        b->probe_successes = 0;
    }
    if (b->state == GW_BREAKER_CLOSED)
        return GW_ADMIT_YES;
    if (b->probes_inflight + b->probe_successes >= c.probes)
        return GW_ADMIT_NO;
    b->probes_inflight++;
    return GW_ADMIT_PROBE;
}

void gw_breaker_record(gw_breaker *b, const gw_breaker_cfg *cfg, gw_admit how, bool success,
                       int64_t now_ms)
{
    gw_breaker_cfg c = cfg_defaults(cfg);

    if (how == GW_ADMIT_PROBE) {
        if (b->state != GW_BREAKER_HALF_OPEN)
            return; /* a sibling probe already reopened it */
        b->probes_inflight--;
        if (!success) {
            trip(b, now_ms);
        } else if (++b->probe_successes >= c.probes) {
            b->state = GW_BREAKER_CLOSED;
            b->failures = 0;
        }
        return;
    }
    if (how != GW_ADMIT_YES || b->state != GW_BREAKER_CLOSED)
        return;
    if (success) {
        b->failures = 0;
    } else if (++b->failures >= c.failures) {
        trip(b, now_ms);
    }
}

void gw_breaker_health_passed(gw_breaker *b)
{
    if (b->state != GW_BREAKER_OPEN)
        return;
    b->state = GW_BREAKER_HALF_OPEN;
    b->probes_inflight = 0;
    b->probe_successes = 0;
}

const char *gw_breaker_state_name(gw_breaker_state s)
{
    switch (s) {
    case GW_BREAKER_CLOSED: return "closed";
    case GW_BREAKER_HALF_OPEN: return "half_open";
    case GW_BREAKER_OPEN: return "open";
    }
    return "closed";
}

/* ---- pool ---- */

/* Exports the instance's health and breaker state; called with the pool lock held. */
static void export_state(gw_instance *in, gw_breaker_state before)
{
    gw_pool *p = in->pool;
    const char *labels[] = { p->service, in->base_url };

    metric_set(p->m_healthy, labels, in->healthy ? 1 : 0);
    metric_set(p->m_breaker, labels, (double)in->breaker.state);
    for (size_t i = 0; i < ML_ARRAY_LEN(cap_names); i++) {
        const char *cl[] = { p->service, in->base_url, cap_names[i].name };
        metric_set(p->m_caps, cl, (in->caps & cap_names[i].bit) ? 1 : 0);
    }
    if (before != in->breaker.state) {
        const char *tl[] = { p->service, in->base_url, gw_breaker_state_name(in->breaker.state) };
        metric_inc(p->m_transitions, tl);
        ml_log_kv(in->breaker.state == GW_BREAKER_OPEN ? ML_LOG_WARN : ML_LOG_INFO,
                  "upstream circuit breaker changed state", "upstream", p->service, "instance",
                  in->base_url, "from", gw_breaker_state_name(before), "to",
                  gw_breaker_state_name(in->breaker.state), NULL);
    }
}

static int add_instance(gw_pool *p, const char *url, size_t len, char *err, size_t errlen)
{
    gw_instance *in;

    while (len > 0 && url[len - 1] == '/')
        len--;
    if (p->n == GW_MAX_INSTANCES) {
        ml_snprintf_trunc(err, errlen, "%s: more than %d instances", p->service, GW_MAX_INSTANCES);
        return ML_ERR;
    }
    if (len >= GW_URL_MAX || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        memchr(url, ' ', len)) {
        ml_snprintf_trunc(err, errlen, "%s: '%.*s' is not an http(s) base URL", p->service, (int)len, url);
        return ML_ERR;
    }
    in = &p->inst[p->n++];
    memcpy(in->base_url, url, len);
    in->base_url[len] = '\0';
    in->healthy = true;
    in->caps = GW_CAP_ALL;
    in->pool = p;
    return ML_OK;
}

static void register_metrics(gw_pool *p, metrics_registry *reg)
{
    if (!reg)
        return;
    p->m_healthy = metrics_gauge(reg, "minilambda_gateway_upstream_healthy",
                                 "1 if the instance's last active health check passed.",
                                 "service,instance");
    p->m_breaker = metrics_gauge(reg, "minilambda_gateway_upstream_breaker_state",
                                 "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
                                 "service,instance");
    p->m_caps = metrics_gauge(reg, "minilambda_gateway_upstream_capability",
                              "1 if the instance's last health check granted the capability "
                              "(invoke, async, read, write, build).",
                              "service,instance,capability");
    p->m_transitions = metrics_counter(reg, "minilambda_gateway_breaker_transitions_total",
                                       "Circuit breaker state changes, by the state entered.",
                                       "service,instance,to");
}

int gw_pool_init(gw_pool *p, const char *service, const char *urls, const gw_breaker_cfg *bcfg,
                 int64_t health_interval_ms, metrics_registry *reg, char *err, size_t errlen)
{
    const char *s = urls ? urls : "";

    memset(p, 0, sizeof(*p));
    p->service = service;
    p->bcfg = cfg_defaults(bcfg);
    p->health_interval_ms = health_interval_ms > 0 ? health_interval_ms : 2000;
    pthread_mutex_init(&p->lock, NULL);
    while (*s) {
        size_t len;

        s += strspn(s, " ,");
        len = strcspn(s, ",");
        while (len > 0 && s[len - 1] == ' ')
            len--;
        if (len && add_instance(p, s, len, err, errlen) != ML_OK)
            return ML_ERR;
        s += strcspn(s, ",");
    }
    if (p->n == 0) {
        ml_snprintf_trunc(err, errlen, "%s: no upstream URL configured", service);
        return ML_ERR;
    }
    register_metrics(p, reg);
    for (size_t i = 0; i < p->n; i++)
        export_state(&p->inst[i], GW_BREAKER_CLOSED);
    return ML_OK;
}

void gw_pool_free(gw_pool *p)
{
    if (!p->service)
        return; /* never initialised */
    pthread_mutex_destroy(&p->lock);
    p->service = NULL;
}

gw_instance *gw_pool_pick(gw_pool *p, unsigned cap, const gw_instance *exclude, int64_t now_ms,
                          gw_admit *how)
{
    gw_instance *found = NULL;

    *how = GW_ADMIT_NO;
    pthread_mutex_lock(&p->lock);
    for (size_t k = 0; k < p->n && !found; k++) {
        size_t i = (p->rr + k) % p->n;
        gw_instance *in = &p->inst[i];
        gw_breaker_state before = in->breaker.state;

        if (in == exclude || !in->healthy || !(in->caps & cap))
            continue;
        *how = gw_breaker_admit(&in->breaker, &p->bcfg, now_ms);
        if (before != in->breaker.state)
            export_state(in, before);
        if (*how != GW_ADMIT_NO) {
            found = in;
            p->rr = (unsigned)(i + 1);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return found;
}

void gw_pool_report(gw_instance *in, gw_admit how, bool success, int64_t now_ms)
{
    gw_pool *p = in->pool;
    gw_breaker_state before;

    pthread_mutex_lock(&p->lock);
    before = in->breaker.state;
    gw_breaker_record(&in->breaker, &p->bcfg, how, success, now_ms);
    if (before != in->breaker.state)
        export_state(in, before);
    pthread_mutex_unlock(&p->lock);
}

/* Logs a change of an instance's capabilities; called with the pool lock held. */
static void log_caps(const gw_instance *in, unsigned caps, const char *error)
{
    char lost[64] = "", gained[64] = "";

    for (size_t i = 0; i < ML_ARRAY_LEN(cap_names); i++) {
        unsigned bit = cap_names[i].bit;
        char *into = (in->caps & bit) && !(caps & bit)   ? lost
                     : !(in->caps & bit) && (caps & bit) ? gained
                                                        : NULL;

        if (into)
            ml_snprintf_trunc(into + strlen(into), sizeof(lost) - strlen(into), "%s%s",
                              into[0] ? "," : "", cap_names[i].name);
    }
    ml_log_kv(caps ? ML_LOG_INFO : ML_LOG_WARN,
              caps == 0 ? "upstream instance unavailable" : "upstream instance capabilities changed",
              "upstream", in->pool->service, "instance", in->base_url, "lost", lost, "gained",
              gained, "error", error ? error : "", NULL);
}

void gw_pool_set_health(gw_instance *in, unsigned caps, const char *error)
{
    gw_pool *p = in->pool;
    gw_breaker_state before;

    pthread_mutex_lock(&p->lock);
    before = in->breaker.state;
    if (in->caps != caps || in->healthy != (caps != 0))
        log_caps(in, caps, error);
    in->healthy = caps != 0;
    in->caps = caps;
    ml_strlcpy(in->health_error, error ? error : "", sizeof(in->health_error));
    /* it answers: let probes find out at once whether it serves again */
    if (in->healthy)
        gw_breaker_health_passed(&in->breaker);
    export_state(in, before);
    pthread_mutex_unlock(&p->lock);
}

int64_t gw_pool_retry_after_s(gw_pool *p, int64_t now_ms)
{
    int64_t best = p->health_interval_ms;

    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->n; i++) {
        const gw_instance *in = &p->inst[i];
        int64_t wait = p->health_interval_ms;

        if (in->healthy && in->breaker.state == GW_BREAKER_OPEN)
            wait = in->breaker.opened_ms + p->bcfg.open_ms - now_ms;
        if (wait < best)
            best = wait;
    }
    pthread_mutex_unlock(&p->lock);
    best = (best + 999) / 1000;
    return best < 1 ? 1 : best;
}

size_t gw_pool_available(gw_pool *p, char *detail, size_t detail_len)
{
    size_t ok = 0, off = 0;

    if (detail_len)
        detail[0] = '\0';
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->n; i++) {
        const gw_instance *in = &p->inst[i];
        bool up = in->healthy && in->breaker.state != GW_BREAKER_OPEN;

        ok += up;
        if (!up && off < detail_len) {
            ml_snprintf_trunc(detail + off, detail_len - off, "%s%s: %s", off ? "; " : "",
                              in->base_url, in->healthy ? "circuit open" : in->health_error);
            off += strlen(detail + off);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return ok;
}

/* ---- active health checks ---- */

struct gw_health_checker {
    gw_pool **pools;
    size_t npools;
    int64_t interval_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping;
};

static void check_one(httpc *h, gw_instance *in)
{
    char url[GW_URL_MAX + 16], err[160] = "";
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    unsigned caps = 0;

    req.url = url;
    req.connect_timeout_ms = HEALTH_CONNECT_TIMEOUT_MS;
    req.timeout_ms = HEALTH_TIMEOUT_MS;
    req.max_body = 64 * 1024;
    if (ml_snprintf(url, sizeof(url), "%s/health", in->base_url) != ML_OK)
        ml_snprintf_trunc(err, sizeof(err), "the health check URL is too long");
    else if (httpc_do(h, &req, &resp) != ML_OK)
        ml_snprintf_trunc(err, sizeof(err), "%s", httpc_error(h));
    else if (!(caps = gw_caps_parse(resp.status, resp.body.data, resp.body.len)))
        ml_snprintf_trunc(err, sizeof(err), "GET /health answered %ld with no capability",
                          resp.status);
    httpc_response_free(&resp);
    gw_pool_set_health(in, caps, err);
}

static void round_with(httpc *h, gw_pool **pools, size_t npools)
{
    for (size_t i = 0; i < npools; i++) {
        for (size_t k = 0; k < pools[i]->n; k++)
            check_one(h, &pools[i]->inst[k]);
    }
}

void gw_health_round(gw_pool **pools, size_t npools)
{
    httpc *h = httpc_new();

    if (!h)
        return;
    round_with(h, pools, npools);
    httpc_free(h);
}

static void *health_main(void *arg)
{
    gw_health_checker *hc = arg;
    httpc *h = httpc_new();

    pthread_mutex_lock(&hc->lock);
    while (h && !hc->stopping) {
        struct timespec until;

        pthread_mutex_unlock(&hc->lock);
        round_with(h, hc->pools, hc->npools);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += hc->interval_ms / 1000;
        until.tv_nsec += (hc->interval_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&hc->lock);
        while (!hc->stopping && pthread_cond_timedwait(&hc->cond, &hc->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&hc->lock);
    httpc_free(h);
    return NULL;
}

gw_health_checker *gw_health_start(gw_pool **pools, size_t npools)
{
    gw_health_checker *hc = calloc(1, sizeof(*hc));

    if (!hc)
        return NULL;
    hc->pools = pools;
    hc->npools = npools;
    hc->interval_ms = 2000;
    for (size_t i = 0; i < npools; i++) {
        if (i == 0 || pools[i]->health_interval_ms < hc->interval_ms)
            hc->interval_ms = pools[i]->health_interval_ms;
    }
    pthread_mutex_init(&hc->lock, NULL);
    pthread_cond_init(&hc->cond, NULL);
    if (pthread_create(&hc->thread, NULL, health_main, hc) != 0) {
        pthread_mutex_destroy(&hc->lock);
        pthread_cond_destroy(&hc->cond);
        free(hc);
        return NULL;
    }
    return hc;
}

void gw_health_stop(gw_health_checker *hc)
{
    if (!hc)
        return;
    pthread_mutex_lock(&hc->lock);
    hc->stopping = true;
    pthread_cond_signal(&hc->cond);
    pthread_mutex_unlock(&hc->lock);
    pthread_join(hc->thread, NULL);
    pthread_mutex_destroy(&hc->lock);
    pthread_cond_destroy(&hc->cond);
    free(hc);
}
