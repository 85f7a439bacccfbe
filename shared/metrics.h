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

/* Appends the exposition text to out. */
int metrics_render(metrics_registry *reg, ml_buf *out);

#endif
