/* metrics.h — a Prometheus registry: counters, gauges and histograms with labels, rendered in
 * the text exposition format (accepted by `promtool check metrics`). Thread-safe.
 * Label values are passed as an array with one entry per declared label name. */
#ifndef ML_METRICS_H
#define ML_METRICS_H

#include <stddef.h>

#include "buf.h"

typedef struct metrics_registry metrics_registry;
typedef struct metric metric;

/* Caller frees with metrics_free (which frees every family and series). NULL on OOM. */
metrics_registry *metrics_new(void);
void metrics_free(metrics_registry *reg);

/* Family constructors. labels: comma-separated label names ("route,method,code") or NULL.
 * The registry owns the family. Counter names must end in _total. Series beyond max_series
 * per family (default 2000) are folded into one series whose label values are all "other",
 * so a buggy caller cannot blow up memory or the scrape. NULL on a bad name or OOM. */
metric *metrics_counter(metrics_registry *reg, const char *name, const char *help,
                        const char *labels);
metric *metrics_gauge(metrics_registry *reg, const char *name, const char *help,
                      const char *labels);
/* buckets: strictly increasing upper bounds (copied); NULL uses metrics_latency_buckets. */
metric *metrics_histogram(metrics_registry *reg, const char *name, const char *help,
                          const char *labels, const double *buckets, size_t nbuckets);

extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_nbuckets;

void metric_inc(metric *m, const char *const *values);
void metric_add(metric *m, const char *const *values, double v);
void metric_set(metric *m, const char *const *values, double v);
void metric_observe(metric *m, const char *const *values, double v);
/* One series of a gauge snapshot: label values (one per label; NULL if none) and value. */
typedef struct metric_sample {
    const char *const *values;
    double value;
} metric_sample;

/* Replaces every series of gauge m by the n samples at once (a scrape sees the old set or the
 * new one). Samples with equal label values are summed. For gauges mirroring live state whose
 * vanished entries (a drained pool, an unreachable broker) must disappear, not go stale.
 * n = 0 removes every series. Copies what it needs. ML_ERR (m unchanged) on OOM or if m is
 * not a gauge. */
int metric_gauge_replace(metric *m, const metric_sample *samples, size_t n);

/* Current value of a counter/gauge series, or a histogram's count (0 if absent). For tests. */
double metric_value(metric *m, const char *const *values);

/* A collector runs before each render (e.g. to refresh gauges from live state), under the
 * registry lock: it may set metrics but must not create families. */
typedef void (*metrics_collect_fn)(metrics_registry *reg, void *ud);
int metrics_add_collector(metrics_registry *reg, metrics_collect_fn fn, void *ud);

/* Unregisters a collector (before freeing what ud points to). */
void metrics_remove_collector(metrics_registry *reg, metrics_collect_fn fn, void *ud);

/* Registers the standard process_* metrics (CPU, RSS, fds, threads, start time). */
int metrics_register_process(metrics_registry *reg);

/* Bounded "function" label values, shared by every metric of the process that has one: the
 * first max distinct names are used as they are, every later one becomes "_other" (function
 * names start with a letter or digit, so it never clashes). Resets the names seen so far;
 * call it at start-up before any thread labels. max 0: METRICS_DEFAULT_MAX_FUNCTIONS. */
#define METRICS_DEFAULT_MAX_FUNCTIONS 200
#define METRICS_OTHER_FUNCTION "_other"
void metrics_set_max_functions(size_t max);

/* The label value for function fn: fn itself (the caller's pointer) while within the cap,
 * else the static METRICS_OTHER_FUNCTION. NULL and "" are returned as "". Thread-safe. */
const char *metrics_function_label(const char *fn);

/* Appends the exposition text to out. */
int metrics_render(metrics_registry *reg, ml_buf *out);

#endif
