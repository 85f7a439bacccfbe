/* metrics.c — Prometheus registry and text exposition. */
#include "metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_LABELS 8
#define MAX_COLLECTORS 16
#define DEFAULT_MAX_SERIES 2000

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } metric_kind;

typedef struct series {
    struct series *next;
    char **values;      /* one per label */
    double value;       /* counter/gauge */
    double sum;         /* histogram */
    unsigned long long count;
    unsigned long long *buckets; /* per-bucket (non-cumulative) counts */
} series;

struct metric {
    struct metric *next;
    metric_kind kind;
    char *name, *help;
    char *labels[MAX_LABELS];
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    size_t nseries, max_series;
    series *head;
    pthread_mutex_t lock;
};

struct metrics_registry {
    pthread_mutex_t lock;
    metric *head, *tail;
    metrics_collect_fn collectors[MAX_COLLECTORS];
    void *collector_ud[MAX_COLLECTORS];
    size_t ncollectors;
};

const double metrics_latency_buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                           0.25,  0.5,    1,     2.5,  5,     10,   30, 60 };
const size_t metrics_latency_nbuckets = ML_ARRAY_LEN(metrics_latency_buckets);

static const char *const other_values[MAX_LABELS] = { "other", "other", "other", "other",
                                                      "other", "other", "other", "other" };

metrics_registry *metrics_new(void)
{
    metrics_registry *reg = calloc(1, sizeof(*reg));

    if (reg)
        pthread_mutex_init(&reg->lock, NULL);
    return reg;
}

static void series_free(series *s, size_t nlabels)
{
    for (size_t i = 0; i < nlabels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->buckets);
    free(s);
}

static void metric_free(metric *m)
{
    series *s = m->head;

    while (s) {
        series *next = s->next;
        series_free(s, m->nlabels);
        s = next;
    }
    for (size_t i = 0; i < m->nlabels; i++)
        free(m->labels[i]);
    free(m->name);
    free(m->help);
    free(m->bounds);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void metrics_free(metrics_registry *reg)
{
    metric *m;

    if (!reg)
        return;
    m = reg->head;
    while (m) {
        metric *next = m->next;
        metric_free(m);
        m = next;
    }
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

static int valid_name(const char *s)
{
    if (!s || !(isalpha((unsigned char)*s) || *s == '_' || *s == ':'))
        return 0;
    for (; *s; s++) {
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == ':'))
            return 0;
    }
    return 1;
}

static int parse_labels(metric *m, const char *labels)
{
    const char *p = labels;

    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (m->nlabels == MAX_LABELS)
            return ML_ERR;
        m->labels[m->nlabels] = strndup(p, n);
        if (!m->labels[m->nlabels] || !valid_name(m->labels[m->nlabels]) ||
            strcmp(m->labels[m->nlabels], "le") == 0) {
            m->nlabels++; /* so metric_free releases it */
            return ML_ERR;
        }
        m->nlabels++;
        p = comma ? comma + 1 : NULL;
    }
    return ML_OK;
}

static metric *family_new(metric_kind kind, const char *name,
                          const char *help, const char *labels)
{
    metric *m;
    size_t nlen = name ? strlen(name) : 0;

    if (!valid_name(name))
        return NULL;
    if (kind == M_COUNTER && (nlen < 6 || strcmp(name + nlen - 6, "_total") != 0))
        return NULL;
    m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->kind = kind;
    m->max_series = DEFAULT_MAX_SERIES;
    m->name = strdup(name);
    m->help = strdup(help ? help : "");
    if (!m->name || !m->help || parse_labels(m, labels) != ML_OK) {
        metric_free(m);
        return NULL;
    }
    return m;
}

/* Registers m, or returns the family already registered under its name (same kind), so
 * two components asking for one metric share it instead of rendering a duplicate. */
static metric *family_add(metrics_registry *reg, metric *m)
{
    if (!m)
        return NULL;
    pthread_mutex_lock(&reg->lock);
    for (metric *e = reg->head; e; e = e->next) {
        if (strcmp(e->name, m->name) == 0) {
            metric *found = (e->kind == m->kind && e->nlabels == m->nlabels) ? e : NULL;
            pthread_mutex_unlock(&reg->lock);
            metric_free(m);
            return found;
        }
    }
    if (reg->tail)
        reg->tail->next = m;
    else
        reg->head = m;
    reg->tail = m;
    pthread_mutex_unlock(&reg->lock);
    return m;
}

metric *metrics_counter(metrics_registry *reg, const char *name, const char *help,
                        const char *labels)
{
    return family_add(reg, family_new(M_COUNTER, name, help, labels));
}

metric *metrics_gauge(metrics_registry *reg, const char *name, const char *help,
                      const char *labels)
{
    return family_add(reg, family_new(M_GAUGE, name, help, labels));
}

metric *metrics_histogram(metrics_registry *reg, const char *name, const char *help,
                          const char *labels, const double *buckets, size_t nbuckets)
{
    metric *m = family_new(M_HISTOGRAM, name, help, labels);

    if (!m)
        return NULL;
    if (!buckets) {
        buckets = metrics_latency_buckets;
        nbuckets = metrics_latency_nbuckets;
    }
    for (size_t i = 1; i < nbuckets; i++) {
        if (!(buckets[i] > buckets[i - 1])) {
            metric_free(m);
            return NULL;
        }
    }
    m->bounds = malloc(nbuckets * sizeof(double));
    if (!m->bounds) {
        metric_free(m);
        return NULL;
    }
    memcpy(m->bounds, buckets, nbuckets * sizeof(double));
    m->nbounds = nbuckets;
    return family_add(reg, m);
}

static int values_match(const series *s, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s->values[i], values[i] ? values[i] : "") != 0)
            return 0;
    }
    return 1;
}

static series *series_new(metric *m, const char *const *values)
{
    series *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->values = calloc(m->nlabels ? m->nlabels : 1, sizeof(char *));
    if (m->kind == M_HISTOGRAM)
        s->buckets = calloc(m->nbounds ? m->nbounds : 1, sizeof(*s->buckets));
    if (!s->values || (m->kind == M_HISTOGRAM && !s->buckets)) {
        series_free(s, 0);
        return NULL;
    }
    for (size_t i = 0; i < m->nlabels; i++) {
        s->values[i] = strdup(values[i] ? values[i] : "");
        if (!s->values[i]) {
            series_free(s, i);
            return NULL;
        }
    }
    return s;
}

/* Finds or creates the series; called with m->lock held. NULL only on OOM. */
static series *series_get(metric *m, const char *const *values)
{
    series *s;

    if (m->nlabels == 0)
        values = other_values; /* unused, but never NULL */
    for (s = m->head; s; s = s->next) {
        if (values_match(s, values, m->nlabels))
            return s;
    }
    if (m->nseries >= m->max_series && values != other_values)
        return series_get(m, other_values);
    s = series_new(m, values);
    if (!s)
        return NULL;
    s->next = m->head;
    m->head = s;
    m->nseries++;
    return s;
}

void metric_add(metric *m, const char *const *values, double v)
{
    series *s;

    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    s = series_get(m, values);
    if (s && (m->kind == M_GAUGE || v >= 0))
        s->value += v;
    pthread_mutex_unlock(&m->lock);
}

void metric_inc(metric *m, const char *const *values)
{
    metric_add(m, values, 1);
}

void metric_set(metric *m, const char *const *values, double v)
{
    series *s;

    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    s = series_get(m, values);
    if (s)
        s->value = v;
    pthread_mutex_unlock(&m->lock);
}

void metric_observe(metric *m, const char *const *values, double v)
{
    series *s;

    if (!m || m->kind != M_HISTOGRAM)
        return;
    pthread_mutex_lock(&m->lock);
    s = series_get(m, values);
    if (s) {
        size_t i = 0;
        while (i < m->nbounds && v > m->bounds[i])
            i++;
        if (i < m->nbounds)
            s->buckets[i]++;
        s->count++;
        s->sum += v;
    }
    pthread_mutex_unlock(&m->lock);
}

int metric_gauge_replace(metric *m, const metric_sample *samples, size_t n)
{
    series *old, *s;
    size_t old_n;
    int rc = ML_OK;

    if (!m || m->kind != M_GAUGE)
        return ML_ERR;
    pthread_mutex_lock(&m->lock);
    old = m->head, old_n = m->nseries;
    m->head = NULL, m->nseries = 0;
    for (size_t i = 0; i < n && rc == ML_OK; i++) {
        if ((s = series_get(m, samples[i].values)) != NULL)
            s->value += samples[i].value;
        else
            rc = ML_ERR;
    }
    if (rc != ML_OK) { /* put the old set back */
        s = m->head;
        m->head = old, m->nseries = old_n;
        old = s;
    }
    pthread_mutex_unlock(&m->lock);
    while (old) {
        s = old->next;
        series_free(old, m->nlabels);
        old = s;
    }
    return rc;
}

double metric_value(metric *m, const char *const *values)
{
    double v = 0;

    if (!m)
        return 0;
    pthread_mutex_lock(&m->lock);
    for (series *s = m->head; s; s = s->next) {
        if (values_match(s, m->nlabels ? values : other_values, m->nlabels)) {
            v = m->kind == M_HISTOGRAM ? (double)s->count : s->value;
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return v;
}

int metrics_add_collector(metrics_registry *reg, metrics_collect_fn fn, void *ud)
{
    int rc = ML_ERR;

    pthread_mutex_lock(&reg->lock);
    if (reg->ncollectors < MAX_COLLECTORS) {
        reg->collectors[reg->ncollectors] = fn;
        reg->collector_ud[reg->ncollectors++] = ud;
        rc = ML_OK;
    }
    pthread_mutex_unlock(&reg->lock);
    return rc;
}

void metrics_remove_collector(metrics_registry *reg, metrics_collect_fn fn, void *ud)
{
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->ncollectors; i++) {
        if (reg->collectors[i] == fn && reg->collector_ud[i] == ud) {
            reg->ncollectors--;
            reg->collectors[i] = reg->collectors[reg->ncollectors];
            reg->collector_ud[i] = reg->collector_ud[reg->ncollectors];
            break;
        }
    }
    pthread_mutex_unlock(&reg->lock);
}

/* ---- bounded function labels ---- */

/* An open-addressing set of the names let through; at most half full. */
static struct {
    pthread_mutex_t lock;
    size_t max, n, cap;
    char **slots;
} fn_labels = { PTHREAD_MUTEX_INITIALIZER, METRICS_DEFAULT_MAX_FUNCTIONS, 0, 0, NULL };

static void fn_labels_clear(void)
{
    for (size_t i = 0; i < fn_labels.cap; i++)
        free(fn_labels.slots[i]);
    free(fn_labels.slots);
    fn_labels.slots = NULL;
    fn_labels.n = fn_labels.cap = 0;
}

void metrics_set_max_functions(size_t max)
{
    pthread_mutex_lock(&fn_labels.lock);
    fn_labels_clear();
    fn_labels.max = max ? max : METRICS_DEFAULT_MAX_FUNCTIONS;
    pthread_mutex_unlock(&fn_labels.lock);
}

static size_t fn_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

/* Called with the lock held: fn's slot (empty if absent), or NULL if the table is missing. */
static char **fn_slot(const char *fn)
{
    size_t i;

    if (!fn_labels.slots) {
        size_t cap = 16;
        while (cap < fn_labels.max * 2 + 1)
            cap *= 2;
        if (!(fn_labels.slots = calloc(cap, sizeof(char *))))
            return NULL;
        fn_labels.cap = cap;
    }
    for (i = fn_hash(fn) & (fn_labels.cap - 1); fn_labels.slots[i];
         i = (i + 1) & (fn_labels.cap - 1)) {
        if (strcmp(fn_labels.slots[i], fn) == 0)
            break;
    }
    return &fn_labels.slots[i];
}

const char *metrics_function_label(const char *fn)
{
    const char *label = METRICS_OTHER_FUNCTION;
    char **slot;

    if (!fn || !*fn)
        return "";
    pthread_mutex_lock(&fn_labels.lock);
    if ((slot = fn_slot(fn)) != NULL && !*slot && fn_labels.n < fn_labels.max &&
        (*slot = strdup(fn)) != NULL)
        fn_labels.n++;
    if (slot && *slot)
        label = fn;
    pthread_mutex_unlock(&fn_labels.lock);
    return label;
}

/* ---- exposition ---- */

static int put_escaped(ml_buf *out, const char *s, int help)
{
    int rc = ML_OK;

    for (; *s && rc == ML_OK; s++) {
        if (*s == '\\')
            rc = ml_buf_append_str(out, "\\\\");
        else if (*s == '\n')
            rc = ml_buf_append_str(out, "\\n");
        else if (*s == '"' && !help)
            rc = ml_buf_append_str(out, "\\\"");
        else
            rc = ml_buf_append(out, s, 1);
    }
    return rc;
}

static int put_double(ml_buf *out, double v)
{
    if (isnan(v))
        return ml_buf_append_str(out, "NaN");
    if (isinf(v))
        return ml_buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
    return ml_buf_printf(out, "%.17g", v);
}

/* name{l1="v1",...[,le="x"]} — le may be NULL. */
static int put_series_name(ml_buf *out, const metric *m, const series *s, const char *suffix,
                           const char *le)
{
    int rc = ml_buf_printf(out, "%s%s", m->name, suffix);

    if (m->nlabels == 0 && !le)
        return rc;
    rc |= ml_buf_append_str(out, "{");
    for (size_t i = 0; i < m->nlabels; i++) {
        rc |= ml_buf_printf(out, "%s%s=\"", i ? "," : "", m->labels[i]);
        rc |= put_escaped(out, s->values[i], 0);
        rc |= ml_buf_append_str(out, "\"");
    }
    if (le)
        rc |= ml_buf_printf(out, "%sle=\"%s\"", m->nlabels ? "," : "", le);
    rc |= ml_buf_append_str(out, "}");
    return rc ? ML_ERR : ML_OK;
}

static int render_histogram_series(ml_buf *out, const metric *m, const series *s)
{
    unsigned long long cum = 0;
    char le[64];
    int rc = ML_OK;

    for (size_t i = 0; i < m->nbounds; i++) {
        cum += s->buckets[i];
        rc |= ml_snprintf(le, sizeof(le), "%g", m->bounds[i]);
        rc |= put_series_name(out, m, s, "_bucket", le);
        rc |= ml_buf_printf(out, " %llu\n", cum);
    }
    rc |= put_series_name(out, m, s, "_bucket", "+Inf");
    rc |= ml_buf_printf(out, " %llu\n", s->count);
    rc |= put_series_name(out, m, s, "_sum", NULL);
    rc |= ml_buf_append_str(out, " ");
    rc |= put_double(out, s->sum);
    rc |= ml_buf_append_str(out, "\n");
    rc |= put_series_name(out, m, s, "_count", NULL);
    rc |= ml_buf_printf(out, " %llu\n", s->count);
    return rc ? ML_ERR : ML_OK;
}

static int render_family(ml_buf *out, metric *m)
{
    static const char *const kinds[] = { "counter", "gauge", "histogram" };
    int rc;

    pthread_mutex_lock(&m->lock);
    rc = ml_buf_printf(out, "# HELP %s ", m->name);
    rc |= put_escaped(out, m->help, 1);
    rc |= ml_buf_printf(out, "\n# TYPE %s %s\n", m->name, kinds[m->kind]);
    for (series *s = m->head; s && rc == ML_OK; s = s->next) {
        if (m->kind == M_HISTOGRAM) {
            rc |= render_histogram_series(out, m, s);
            continue;
        }
        rc |= put_series_name(out, m, s, "", NULL);
        rc |= ml_buf_append_str(out, " ");
        rc |= put_double(out, s->value);
        rc |= ml_buf_append_str(out, "\n");
    }
    pthread_mutex_unlock(&m->lock);
    return rc ? ML_ERR : ML_OK;
}

int metrics_render(metrics_registry *reg, ml_buf *out)
{
    metric *m;
    size_t n;
    int rc = ML_OK;

    /* collectors run under the registry lock, so one being removed is never half-called;
     * they may update metrics (family locks) but must not register new families */
    pthread_mutex_lock(&reg->lock);
    n = reg->ncollectors;
    for (size_t i = 0; i < n; i++)
        reg->collectors[i](reg, reg->collector_ud[i]);
    m = reg->head;
    pthread_mutex_unlock(&reg->lock);
    /* Families are only ever appended, so walking the list without the registry lock is safe. */
    for (; m && rc == ML_OK; m = m->next)
        rc = render_family(out, m);
    return rc;
}

/* ---- process metrics ---- */

typedef struct process_metrics {
    metric *cpu, *rss, *vsz, *fds, *max_fds, *threads, *start;
} process_metrics;

static process_metrics proc_metrics;

static double count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    double n = 0;

    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1; /* the fd opendir itself holds */
}

/* Reads "Key:   value" from /proc/self/status; returns the number or 0. */
static double proc_status_value(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t klen = strlen(key);
    double v = 0;

    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtod(line + klen + 1, NULL);
            break;
        }
    }
    fclose(f);
    return v;
}

static void process_collect(metrics_registry *reg, void *ud)
{
    process_metrics *pm = ud;
    struct rusage ru;
    struct rlimit rl;

    ML_UNUSED(reg);
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        metric_set(pm->cpu, NULL, cpu);
    }
    metric_set(pm->rss, NULL, proc_status_value("VmRSS") * 1024);
    metric_set(pm->vsz, NULL, proc_status_value("VmSize") * 1024);
    metric_set(pm->threads, NULL, proc_status_value("Threads"));
    metric_set(pm->fds, NULL, count_fds());
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        metric_set(pm->max_fds, NULL, (double)rl.rlim_cur);
}

int metrics_register_process(metrics_registry *reg)
{
    process_metrics *pm = &proc_metrics;
    struct timespec ts;

    /* process_cpu_seconds_total is a counter by convention, but we set it from getrusage. */
    pm->cpu = metrics_counter(reg, "process_cpu_seconds_total",
                              "Total user and system CPU time spent in seconds.", NULL);
    pm->rss = metrics_gauge(reg, "process_resident_memory_bytes", "Resident memory size in bytes.",
                            NULL);
    pm->vsz = metrics_gauge(reg, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
                            NULL);
    pm->fds = metrics_gauge(reg, "process_open_fds", "Number of open file descriptors.", NULL);
    pm->max_fds = metrics_gauge(reg, "process_max_fds", "Maximum number of open file descriptors.",
                                NULL);
    pm->threads = metrics_gauge(reg, "process_threads", "Number of OS threads in the process.",
                                NULL);
    pm->start = metrics_gauge(reg, "process_start_time_seconds",
                              "Start time of the process since unix epoch in seconds.", NULL);
    if (!pm->cpu || !pm->rss || !pm->vsz || !pm->fds || !pm->max_fds || !pm->threads || !pm->start)
        return ML_ERR;
    clock_gettime(CLOCK_REALTIME, &ts);
    metric_set(pm->start, NULL, (double)ts.tv_sec);
    return metrics_add_collector(reg, process_collect, pm);
}
