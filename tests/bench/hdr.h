/* hdr.h — an HdrHistogram-style latency histogram for the load generator (tests/bench/loadgen.c).
 *
 * Values are integers in microseconds, tracked from 1 µs to HDR_MAX_VALUE (100 s) with 3
 * significant digits: log-linear buckets, each power-of-two range split into 1,024 linear
 * sub-buckets, so every value below 2,048 is exact and any other is known to within 1/1,024
 * (< 0.1 %) of itself. Recording is O(1) (one count-leading-zeros and a shift); the
 * percentile query walks the 18,432 counters once.
 *
 * A zeroed hdr_hist is a valid empty histogram (no allocation: the counters are inside the
 * struct, 147 KB, so put it on the heap or in static storage). A histogram belongs to one
 * thread at a time; the load generator keeps one per thread and merges them at the end. */
#ifndef HDR_H
#define HDR_H

#include <stdint.h>

#define HDR_MAX_VALUE INT64_C(100000000) /* 100 s in µs: larger values clamp to it */
#define HDR_SUB_BITS 11                  /* 2,048 sub-buckets in the first bucket: 3 digits */
#define HDR_SUB_COUNT (1 << HDR_SUB_BITS)
#define HDR_SUB_HALF (HDR_SUB_COUNT / 2)
#define HDR_BUCKETS 17 /* smallest n with 2,048 << (n - 1) > HDR_MAX_VALUE */
#define HDR_COUNTS ((HDR_BUCKETS + 1) * HDR_SUB_HALF)

typedef struct hdr_hist {
    uint64_t counts[HDR_COUNTS];
    uint64_t total;   /* values recorded */
    uint64_t clamped; /* of those, how many were above HDR_MAX_VALUE (or negative) */
    int64_t min, max; /* exact (after clamping); meaningful when total > 0 */
    double sum;       /* of the exact values, for the mean */
} hdr_hist;

/* Counter index of value v (0 <= v <= HDR_MAX_VALUE). Exposed for the unit test. */
int hdr_index(int64_t v);
/* The lowest and highest values that share index i's counter. */
int64_t hdr_lowest_equivalent(int i);
int64_t hdr_highest_equivalent(int i);

/* Records one value; below 0 counts as 0 and above HDR_MAX_VALUE as HDR_MAX_VALUE. */
void hdr_record(hdr_hist *h, int64_t v);
/* Adds src's counts into dst (the threads' histograms into one). */
void hdr_merge(hdr_hist *dst, const hdr_hist *src);
/* The value at percentile p (0..100): the smallest recorded value v such that at least
 * ceil(p/100 × total) values are <= v (at least the first), reported as the highest value
 * of its counter (never under the true value, over it by < 0.1 %) and kept within
 * [min, max] — so p = 100 is the exact max. 0 for an empty histogram. */
int64_t hdr_percentile(const hdr_hist *h, double p);
/* How many recorded values are <= v, to the counter's precision (values sharing v's
 * counter count as <= v). */
uint64_t hdr_count_le(const hdr_hist *h, int64_t v);
/* Mean of the recorded values; 0 when empty. */
double hdr_mean(const hdr_hist *h);

#endif
