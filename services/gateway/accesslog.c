/* accesslog.c — the gateway's access log (see accesslog.h). */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "fncache.h"
#include "log.h"
#include "tenant.h"

#define RING_BYTES (1u << 20)  /* per loop thread: ~3,000 lines, 60 ms at 50k lines/s */
#define FLUSH_MS 20
#define VALUE_MAX_IN 256       /* input bytes of one string value kept */
#define TAIL_RESERVE 128       /* room the numeric fields after the strings need */
#define KEYS_RESERVE 384       /* room every key, quote and the timestamp need */
#define PIPE_CHUNK 4096        /* PIPE_BUF: stdout writes this size stay whole lines */

/* What the request path learnt, attached to the request (httpd_req_set_note). */
typedef struct alog_note {
    gw_alog *log;
    char subject[GW_SUB_MAX];
    char ns[TENANT_MAX + 1];
    char fn[GW_FN_NAME_MAX];
    const char *auth, *auth_error, *upstream, *ratelimit;
    int64_t upstream_us;
} alog_note;

/* One loop thread's buffer: the thread appends under mu, the writer swaps it for spare. */
typedef struct ring {
    pthread_mutex_t mu;
    char *buf, *spare;
    size_t len;
    uint64_t lines, dropped;   /* since the writer's last swap */
    struct ring *next;
} ring;

struct gw_alog {
    bool on, to_stdout;
    double sample;
    char *path;
    int fd;
    uint64_t gen;              /* tells a thread's cached ring from an older logger's */
    pthread_mutex_t mu;        /* rings list, wake-ups */
    pthread_mutex_t drain_mu;  /* one drain at a time: the writer's or a flush */
    pthread_cond_t cond;
    ring *rings;
    bool stopping, kicked;
    pthread_t writer;
    bool writer_started;
    _Atomic uint64_t lines, dropped;
    metric *m_lines, *m_dropped;
};

static _Atomic uint64_t next_gen = 1;
static volatile sig_atomic_t reopen_requested;

/* This thread's ring and clock cache (a loop thread serves one logger at a time). */
static _Thread_local struct {
    uint64_t gen;
    ring *r;
    uint64_t rng;
    time_t sec;
    char stamp[24];            /* "2026-12-07T11:00:00" for sec */
} tl;

/* ---- formatting ---- */

/* Keys and punctuation always go in whole (their room is reserved); string contents stop at
 * lim, so a line is valid JSON however long its values. */
typedef struct out {
    char *p;
    size_t len, lim;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->len + n > GW_ALOG_LINE_MAX) /* the reserves make this unreachable */
        n = GW_ALOG_LINE_MAX - o->len;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_s(out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2, cp = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3, cp = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0; /* overlong, out of range, or a surrogate */
    return len;
}

/* Bytes from s that JSON takes as they are: printable ASCII but '"' and '\\' (the common case,
 * copied in one go). */
static size_t plain_run(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n && s[i] >= 0x20 && s[i] < 0x7F && s[i] != '"' && s[i] != '\\')
        i++;
    return i;
}

/* A JSON string of at most VALUE_MAX_IN bytes of s, or null; its contents never past o->lim
 * (cut at a character). */
static void put_str(out *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t n, i = 0;

    if (!s) {
        put(o, "null", 4);
        return;
    }
    n = strnlen(s, VALUE_MAX_IN);
    put(o, "\"", 1);
    while (i < n && o->len + 8 < o->lim) {
        size_t k = plain_run(u + i, n - i);
        char esc[8] = { '\\', 'u', '0', '0', hex[u[i] >> 4], hex[u[i] & 15], 0, 0 };

        if (k) {
            k = o->len + k > o->lim - 8 ? o->lim - 8 - o->len : k;
            put(o, s + i, k);
            i += k;
        } else if ((k = utf8_len(u + i, n - i)) == 0) {
            put(o, "\\ufffd", 6);
            i++;
        } else if (u[i] == '"' || u[i] == '\\') {
            esc[1] = (char)u[i];
            put(o, esc, 2);
            i++;
        } else if (u[i] < 0x20 || u[i] == 0x7F) {
            put(o, esc, 6);
            i++;
        } else {
            put(o, s + i, k);
            i += k;
        }
    }
    put(o, "\"", 1);
}

/* Decimal digits of v (unsigned) into o. */
static void put_u64(out *o, uint64_t v)
{
    char d[20];
    size_t n = 0;

    do {
        d[sizeof(d) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, d + sizeof(d) - n, n);
}

/* A duration in µs as milliseconds with three decimals ("12.345"). */
static void put_ms(out *o, int64_t us)
{
    char frac[4];

    us = us < 0 ? 0 : us;
    put_u64(o, (uint64_t)us / 1000);
    frac[0] = '.';
    frac[1] = (char)('0' + us / 100 % 10);
    frac[2] = (char)('0' + us / 10 % 10);
    frac[3] = (char)('0' + us % 10);
    put(o, frac, 4);
}

static void put_field(out *o, const char *key, const char *value)
{
    put_s(o, key);
    put_str(o, value);
}

/* "2026-12-07T11:00:00.123Z", the second's part cached per thread. */
static void put_ts(out *o, int64_t ms)
{
    time_t sec = (time_t)(ms / 1000);
    int m = (int)(ms % 1000);
    char frac[7] = { '.', (char)('0' + m / 100), (char)('0' + m / 10 % 10), (char)('0' + m % 10),
                     'Z', '"', 0 };
    struct tm tm;

    if (sec != tl.sec || !tl.stamp[0]) {
        gmtime_r(&sec, &tm);
        if (strftime(tl.stamp, sizeof(tl.stamp), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
            tl.stamp[0] = '\0';
        tl.sec = sec;
    }
    put(o, "\"", 1);
    put_s(o, tl.stamp);
    put(o, frac, 6);
}

size_t gw_alog_format(const gw_alog_line *l, char buf[GW_ALOG_LINE_MAX])
{
    out o = { buf, 0, GW_ALOG_LINE_MAX - TAIL_RESERVE - KEYS_RESERVE };

    put_s(&o, "{\"ts\":");
    put_ts(&o, l->ts_ms);
    /* the daemons' log-line keys too: the stdout stream stays one JSON shape (log.h) */
    put_s(&o, l->status >= 500 ? ",\"level\":\"error\"" :
              l->auth && strcmp(l->auth, "refused") == 0 ? ",\"level\":\"warn\"" : ",\"level\":\"info\"");
    put_s(&o, ",\"service\":\"gateway\",\"msg\":\"access\",\"type\":\"access\"");
    put_field(&o, ",\"request_id\":", l->request_id);
    put_field(&o, ",\"client\":", l->client);
    put_field(&o, ",\"subject\":", l->subject);
    put_field(&o, ",\"namespace\":", l->ns);
    put_field(&o, ",\"auth\":", l->auth ? l->auth : "none");
    if (l->auth_error)
        put_field(&o, ",\"auth_error\":", l->auth_error);
    put_field(&o, ",\"method\":", l->method);
    put_field(&o, ",\"route\":", l->route);
    put_field(&o, ",\"function\":", l->function);
    put_field(&o, ",\"upstream\":", l->upstream);
    put_field(&o, ",\"ratelimit\":", l->ratelimit ? l->ratelimit : "off");
    put_s(&o, ",\"status\":");
    put_u64(&o, (uint64_t)(l->status < 0 ? 0 : l->status));
    put_s(&o, ",\"bytes_in\":");
    put_u64(&o, l->bytes_in);
    put_s(&o, ",\"bytes_out\":");
    put_u64(&o, l->bytes_out);
    put_s(&o, ",\"duration_ms\":");
    put_ms(&o, l->duration_us);
    if (l->upstream_us >= 0) {
        put_s(&o, ",\"upstream_ms\":");
        put_ms(&o, l->upstream_us);
    }
    put(&o, "}\n", 2);
    return o.len;
}

bool gw_alog_sampled(double sample, int status, uint64_t *rng)
{
    uint64_t x = *rng;

    if (status >= 400 || sample >= 1.0)
        return true;
    if (sample <= 0.0)
        return false;
    x ^= x << 13; /* xorshift64: cheap, per thread, good enough to pick a share */
    x ^= x >> 7;
    x ^= x << 17;
    *rng = x;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0) < sample;
}

/* ---- the writer ---- */

static void on_sighup(int sig)
{
    (void)sig;
    reopen_requested = 1;
}

static int open_path(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* Writes all of buf; to stdout in pieces that end at a line end and fit PIPE_BUF, so a
 * service log line written meanwhile never lands inside one of ours. false on an error. */
static bool write_all(gw_alog *l, const char *buf, size_t n)
{
    while (n) {
        size_t chunk = n;
        ssize_t w;

        if (l->to_stdout && chunk > PIPE_CHUNK) {
            const char *nl = memrchr(buf, '\n', PIPE_CHUNK);
            chunk = nl ? (size_t)(nl - buf) + 1 : PIPE_CHUNK;
        }
        w = write(l->fd, buf, chunk);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        buf += w;
        n -= (size_t)w;
    }
    return true;
}

static void reopen(gw_alog *l)
{
    int fd;

    reopen_requested = 0;
    if (l->to_stdout || (fd = open_path(l->path)) < 0)
        return; /* keep writing to the old file rather than nowhere */
    close(l->fd);
    l->fd = fd;
}

/* Swaps every ring's buffer out and writes it; counts what was written and dropped. */
static void drain_rings(gw_alog *l)
{
    ring *r;

    pthread_mutex_lock(&l->drain_mu);
    pthread_mutex_lock(&l->mu);
    r = l->rings;
    pthread_mutex_unlock(&l->mu);
    if (reopen_requested)
        reopen(l);
    for (; r; r = r->next) {
        char *full;
        size_t n;
        uint64_t lines, dropped;

        pthread_mutex_lock(&r->mu);
        full = r->buf;
        r->buf = r->spare;
        r->spare = full;
        n = r->len;
        lines = r->lines;
        dropped = r->dropped;
        r->len = 0;
        r->lines = r->dropped = 0;
        pthread_mutex_unlock(&r->mu);
        if (n && !write_all(l, full, n)) {
            dropped += lines;
            lines = 0;
        }
        atomic_fetch_add(&l->lines, lines);
        atomic_fetch_add(&l->dropped, dropped);
        if (lines)
            metric_add(l->m_lines, NULL, (double)lines);
        if (dropped)
            metric_add(l->m_dropped, NULL, (double)dropped);
    }
    pthread_mutex_unlock(&l->drain_mu);
}

static void *writer_main(void *arg)
{
    gw_alog *l = arg;
    bool stopping = false;

    while (!stopping) {
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += FLUSH_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&l->mu);
        if (!l->stopping && !l->kicked)
            pthread_cond_timedwait(&l->cond, &l->mu, &until);
        l->kicked = false;
        stopping = l->stopping;
        pthread_mutex_unlock(&l->mu);
        drain_rings(l);
    }
    return NULL;
}

/* ---- the loop threads' side ---- */

/* This thread's ring in l, created on first use; NULL on OOM. */
static ring *thread_ring(gw_alog *l)
{
    ring *r;

    if (tl.gen == l->gen)
        return tl.r;
    r = calloc(1, sizeof(*r));
    if (!r || !(r->buf = malloc(RING_BYTES)) || !(r->spare = malloc(RING_BYTES))) {
        if (r)
            free(r->buf);
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_lock(&l->mu);
    r->next = l->rings;
    l->rings = r;
    pthread_mutex_unlock(&l->mu);
    tl.gen = l->gen;
    tl.r = r;
    tl.rng = (uint64_t)(uintptr_t)r ^ (uint64_t)ml_now_ms() ^ 0x9E3779B97F4A7C15ull;
    return r;
}

/* Copies a line into this thread's ring, or counts it dropped. */
static void enqueue(gw_alog *l, ring *r, const char *line, size_t n)
{
    bool kick;

    pthread_mutex_lock(&r->mu);
    if (r->len + n <= RING_BYTES) {
        memcpy(r->buf + r->len, line, n);
        r->len += n;
        r->lines++;
    } else {
        r->dropped++;
    }
    kick = r->len > RING_BYTES / 2;
    pthread_mutex_unlock(&r->mu);
    if (kick) /* half full: write now rather than at the next tick (no lock: a hint) */
        pthread_cond_signal(&l->cond);
}

void gw_alog_log(gw_alog *l, const gw_alog_line *line)
{
    char buf[GW_ALOG_LINE_MAX];
    ring *r;

    if (!l || !l->on || !(r = thread_ring(l)) || !gw_alog_sampled(l->sample, line->status, &tl.rng))
        return;
    enqueue(l, r, buf, gw_alog_format(line, buf));
}

void gw_alog_done(const httpd_req *req, const httpd_done_info *info, void *ud)
{
    gw_alog *l = ud;
    alog_note *note = httpd_req_note(req);
    gw_alog_line line;

    if (!l || !l->on)
        goto out;
    line = (gw_alog_line){ .ts_ms = ml_wall_ms(), .request_id = httpd_request_id(req),
                           .client = httpd_client_ip(req), .method = httpd_method(req),
                           .route = httpd_route_pattern(req), .function = httpd_param(req, "fn"),
                           .status = info->status, .bytes_in = info->bytes_in,
                           .bytes_out = info->bytes_out, .duration_us = info->duration_us,
                           .upstream_us = -1 };
    if (note) {
        line.subject = note->subject[0] ? note->subject : NULL;
        line.ns = note->ns[0] ? note->ns : NULL;
        line.function = note->fn[0] ? note->fn : line.function;
        line.auth = note->auth;
        line.auth_error = note->auth_error;
        line.upstream = note->upstream;
        line.upstream_us = note->upstream ? note->upstream_us : -1;
        line.ratelimit = note->ratelimit;
    }
    gw_alog_log(l, &line);
out:
    free(note);
}

void gw_alog_begin(gw_alog *l, httpd_req *req)
{
    alog_note *n;

    if (!l || !l->on || httpd_req_note(req) || !(n = calloc(1, sizeof(*n))))
        return; /* out of memory: the line still goes out, without the facts */
    n->log = l;
    httpd_req_set_note(req, n);
}

void gw_alog_auth(httpd_req *req, const char *subject, const char *refused_because)
{
    alog_note *n = httpd_req_note(req);

    if (!n)
        return;
    if (subject)
        ml_strlcpy(n->subject, subject, sizeof(n->subject)); /* bounded like its source */
    n->auth = refused_because ? "refused" : "allowed";
    n->auth_error = refused_because;
}

const char *gw_alog_auth_error(int r)
{
    switch ((gw_auth_result)r) {
    case GW_AUTH_OK: return NULL;
    case GW_AUTH_MISSING: return "missing_token";
    case GW_AUTH_MALFORMED: return "malformed_token";
    case GW_AUTH_ALG: return "bad_algorithm";
    case GW_AUTH_INVALID: return "bad_signature";
    case GW_AUTH_EXPIRED: return "expired";
    case GW_AUTH_NOT_YET_VALID: return "not_yet_valid";
    case GW_AUTH_CLAIMS: return "bad_claims";
    case GW_AUTH_SCOPE: return "insufficient_scope";
    case GW_AUTH_SIGNATURE_V4: return "bad_sigv4";
    case GW_AUTH_NAMESPACE: return "bad_namespace_claim";
    }
    return "invalid";
}

void gw_alog_namespace(httpd_req *req, const char *ns)
{
    alog_note *n = httpd_req_note(req);

    if (n)
        ml_strlcpy(n->ns, ns, sizeof(n->ns));
}

void gw_alog_function(httpd_req *req, const char *fn)
{
    alog_note *n = httpd_req_note(req);

    if (n)
        ml_strlcpy(n->fn, fn, sizeof(n->fn)); /* a longer one is cut: a log line, not a key */
}

void gw_alog_upstream(httpd_req *req, const char *service, int64_t us)
{
    alog_note *n = httpd_req_note(req);

    if (!n)
        return;
    n->upstream = service;
    n->upstream_us = us;
}

void gw_alog_ratelimit(httpd_req *req, const char *decision)
{
    alog_note *n = httpd_req_note(req);

    if (n)
        n->ratelimit = decision;
}

/* ---- life cycle ---- */

int gw_alog_parse_sample(const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= 0.0 && v <= 1.0)) /* NaN fails too */
        return ML_ERR;
    *out = v;
    return ML_OK;
}

static int open_dest(gw_alog *l, const char *dest, char *err, size_t errlen)
{
    struct sigaction sa;

    if (strcmp(dest, "-") == 0) {
        l->to_stdout = true;
        l->fd = STDOUT_FILENO;
        return ML_OK;
    }
    l->path = strdup(dest);
    if (!l->path || (l->fd = open_path(dest)) < 0) {
        ml_snprintf_trunc(err, errlen, "cannot open the access log %s: %s", dest, strerror(errno));
        return ML_ERR;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sighup; /* logrotate's signal: reopen, never die */
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    return ML_OK;
}

gw_alog *gw_alog_start(const char *dest, double sample, metrics_registry *reg, char *err,
                       size_t errlen)
{
    gw_alog *l = calloc(1, sizeof(*l));

    if (!l) {
        ml_snprintf_trunc(err, errlen, "out of memory");
        return NULL;
    }
    l->fd = -1;
    l->sample = sample;
    l->gen = atomic_fetch_add(&next_gen, 1);
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->drain_mu, NULL);
    pthread_cond_init(&l->cond, NULL);
    if (strcmp(dest, "off") == 0)
        return l;
    if (open_dest(l, dest, err, errlen) != ML_OK)
        goto fail;
    if (reg) {
        l->m_lines = metrics_counter(reg, "minilambda_access_log_lines_total",
                                     "Access-log lines written.", NULL);
        l->m_dropped = metrics_counter(reg, "minilambda_access_log_dropped_total",
                                       "Access-log lines dropped: buffer full or write failed.",
                                       NULL);
        metric_add(l->m_lines, NULL, 0); /* both series exist from the start */
        metric_add(l->m_dropped, NULL, 0);
    }
    if (pthread_create(&l->writer, NULL, writer_main, l) != 0) {
        ml_snprintf_trunc(err, errlen, "cannot start the access log writer");
        goto fail;
    }
    l->writer_started = true;
    l->on = true;
    return l;
fail:
    gw_alog_stop(l);
    return NULL;
}

void gw_alog_flush(gw_alog *l)
{
    if (l && l->on)
        drain_rings(l);
}

uint64_t gw_alog_lines(gw_alog *l)
{
    return atomic_load(&l->lines);
}

uint64_t gw_alog_dropped(gw_alog *l)
{
    return atomic_load(&l->dropped);
}

void gw_alog_stop(gw_alog *l)
{
    if (!l)
        return;
    if (l->writer_started) {
        pthread_mutex_lock(&l->mu);
        l->stopping = true;
        pthread_cond_signal(&l->cond);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->writer, NULL); /* its last round writes what is left */
    }
    while (l->rings) {
        ring *r = l->rings;
        l->rings = r->next;
        pthread_mutex_destroy(&r->mu);
        free(r->buf);
        free(r->spare);
        free(r);
    }
    if (l->fd >= 0 && !l->to_stdout)
        close(l->fd);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->drain_mu);
    free(l->path);
    free(l);
}
