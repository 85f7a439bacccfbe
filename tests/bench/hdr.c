/* hdr.c — see hdr.h. The layout is HdrHistogram's with a unit of 1 µs: bucket 0 holds
 * 0..2047 one by one; bucket b >= 1 holds [1024 << b, 2048 << b) in 1,024 steps of 2^b. */
#include "hdr.h"

#include <math.h>

int hdr_index(int64_t v)
{
    /* The bucket is how far v's top bit lies above the first bucket's 11 bits: OR-ing the
     * mask keeps small values in bucket 0. */
    int bucket = 63 - __builtin_clzll((unsigned long long)v | (HDR_SUB_COUNT - 1)) - (HDR_SUB_BITS - 1);
    int sub = (int)(v >> bucket);

    return ((bucket + 1) << (HDR_SUB_BITS - 1)) + (sub - HDR_SUB_HALF);
}

int64_t hdr_lowest_equivalent(int i)
{
    int bucket = (i >> (HDR_SUB_BITS - 1)) - 1;
    int64_t sub = (i & (HDR_SUB_HALF - 1)) + HDR_SUB_HALF;

    if (bucket < 0) { /* the first half of bucket 0: values 0..1023 */
        sub -= HDR_SUB_HALF;
        bucket = 0;
    }
    return sub << bucket;
}

int64_t hdr_highest_equivalent(int i)
{
    int bucket = (i >> (HDR_SUB_BITS - 1)) - 1;

    return hdr_lowest_equivalent(i) + ((int64_t)1 << (bucket < 0 ? 0 : bucket)) - 1;
}

void hdr_record(hdr_hist *h, int64_t v)
{
    if (v < 0 || v > HDR_MAX_VALUE) {
        v = v < 0 ? 0 : HDR_MAX_VALUE;
        h->clamped++;
    }
    h->counts[hdr_index(v)]++;
    if (h->total == 0 || v < h->min)
        h->min = v;
    if (h->total == 0 || v > h->max)
        h->max = v;
    h->total++;
    h->sum += (double)v;
}

void hdr_merge(hdr_hist *dst, const hdr_hist *src)
{
    if (src->total == 0)
        return;
    for (int i = 0; i < HDR_COUNTS; i++)
        dst->counts[i] += src->counts[i];
    if (dst->total == 0 || src->min < dst->min)
        dst->min = src->min;
    if (dst->total == 0 || src->max > dst->max)
        dst->max = src->max;
    dst->total += src->total;
    dst->clamped += src->clamped;
    dst->sum += src->sum;
}

int64_t hdr_percentile(const hdr_hist *h, double p)
{
    uint64_t want, seen = 0;
    int64_t v = 0;

    if (h->total == 0)
        return 0;
    if (p < 0)
        p = 0;
    if (p > 100)
        p = 100;
    /* ceil, with a hair of slack so 99.9 % of 1,000 is 999 and not 1,000 by rounding */
    want = (uint64_t)ceil(p / 100.0 * (double)h->total - 1e-9);
    if (want < 1)
        want = 1;
    for (int i = 0; i < HDR_COUNTS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            v = hdr_highest_equivalent(i);
            break;
        }
    }
    if (v > h->max)
        v = h->max;
    if (v < h->min)
        v = h->min;
    return v;
}

uint64_t hdr_count_le(const hdr_hist *h, int64_t v)
{
    uint64_t n = 0;
    int top;

    if (v < 0)
        return 0;
    top = hdr_index(v > HDR_MAX_VALUE ? HDR_MAX_VALUE : v);
    for (int i = 0; i <= top; i++)
        n += h->counts[i];
    return n;
}

double hdr_mean(const hdr_hist *h)
{
    return h->total ? h->sum / (double)h->total : 0.0;
}
