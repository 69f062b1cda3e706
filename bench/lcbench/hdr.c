/* The HDR histogram: geometry and index arithmetic follow HdrHistogram (Java and C) exactly, so
 * percentiles and the percentile-distribution output match what its tools expect. */
#include "bench/lcbench/hdr.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* floor(log2(v)) for v >= 1. */
static int floor_log2(uint64_t v) { return 63 - __builtin_clzll(v); }

/* ceil(log2(v)) for v >= 1. */
static int ceil_log2(uint64_t v) { return v <= 1 ? 0 : 64 - __builtin_clzll(v - 1); }

static int32_t buckets_needed(const lcb_hdr_t *h)
{
    int64_t smallest_untrackable = (int64_t)h->sub_bucket_count << h->unit_magnitude;
    int32_t needed = 1;
    while (smallest_untrackable <= h->highest) {
        if (smallest_untrackable > INT64_MAX / 2)
            return needed + 1;
        smallest_untrackable <<= 1;
        needed++;
    }
    return needed;
}

int lcb_hdr_init(lcb_hdr_t *h, int64_t lowest, int64_t highest, int sigfigs)
{
    memset(h, 0, sizeof(*h));
    if (lowest < 1 || sigfigs < 1 || sigfigs > 5 || highest < 2 * lowest)
        return -EINVAL;
    int64_t single_unit = 2;
    for (int i = 0; i < sigfigs; i++)
        single_unit *= 10;
    int sub_bucket_count_magnitude = ceil_log2((uint64_t)single_unit);
    h->lowest = lowest;
    h->highest = highest;
    h->sigfigs = sigfigs;
    h->sub_bucket_half_count_magnitude = sub_bucket_count_magnitude - 1;
    h->unit_magnitude = floor_log2((uint64_t)lowest);
    if (h->unit_magnitude + h->sub_bucket_half_count_magnitude > 61)
        return -EINVAL;
    h->sub_bucket_count = (int32_t)1 << (h->sub_bucket_half_count_magnitude + 1);
    h->sub_bucket_half_count = h->sub_bucket_count / 2;
    h->sub_bucket_mask = ((int64_t)h->sub_bucket_count - 1) << h->unit_magnitude;
    h->bucket_count = buckets_needed(h);
    h->counts_len = (h->bucket_count + 1) * h->sub_bucket_half_count;
    h->counts = calloc((size_t)h->counts_len, sizeof(int64_t));
    if (h->counts == NULL)
        return -ENOMEM;
    h->min = INT64_MAX;
    return 0;
}

void lcb_hdr_close(lcb_hdr_t *h)
{
    free(h->counts);
    h->counts = NULL;
}

void lcb_hdr_reset(lcb_hdr_t *h)
{
    memset(h->counts, 0, (size_t)h->counts_len * sizeof(int64_t));
    h->total_count = 0;
    h->min = INT64_MAX;
    h->max = 0;
    h->saturated = 0;
}

int lcb_hdr_add(lcb_hdr_t *dst, const lcb_hdr_t *src)
{
    if (dst->counts_len != src->counts_len || dst->unit_magnitude != src->unit_magnitude ||
        dst->sub_bucket_count != src->sub_bucket_count || dst->highest != src->highest)
        return -EINVAL;
    for (int32_t i = 0; i < src->counts_len; i++)
        dst->counts[i] += src->counts[i];
    dst->total_count += src->total_count;
    dst->saturated += src->saturated;
    if (src->total_count > 0) {
        if (src->min < dst->min)
            dst->min = src->min;
        if (src->max > dst->max)
            dst->max = src->max;
    }
    return 0;
}

/* ---- Index and value arithmetic -------------------------------------------------------------- */

static int32_t bucket_index(const lcb_hdr_t *h, int64_t v)
{
    int pow2ceiling = 64 - __builtin_clzll((uint64_t)(v | h->sub_bucket_mask));
    return pow2ceiling - h->unit_magnitude - (h->sub_bucket_half_count_magnitude + 1);
}

static int32_t sub_bucket_index(const lcb_hdr_t *h, int64_t v, int32_t bucket)
{
    return (int32_t)(v >> (bucket + h->unit_magnitude));
}

static int64_t value_from_index(const lcb_hdr_t *h, int32_t bucket, int32_t sub)
{
    return (int64_t)sub << (bucket + h->unit_magnitude);
}

/* The lowest value recorded at counts index i. */
static int64_t value_at_index(const lcb_hdr_t *h, int32_t i)
{
    int32_t bucket = (i >> h->sub_bucket_half_count_magnitude) - 1;
    int32_t sub = (i & (h->sub_bucket_half_count - 1)) + h->sub_bucket_half_count;
    if (bucket < 0) {
        sub -= h->sub_bucket_half_count;
        bucket = 0;
    }
    return value_from_index(h, bucket, sub);
}

int64_t lcb_hdr_equivalent_range(const lcb_hdr_t *h, int64_t v)
{
    int32_t bucket = bucket_index(h, v);
    int32_t sub = sub_bucket_index(h, v, bucket);
    int32_t adjusted = sub >= h->sub_bucket_count ? bucket + 1 : bucket;
    return (int64_t)1 << (h->unit_magnitude + adjusted);
}

int64_t lcb_hdr_lowest_equivalent(const lcb_hdr_t *h, int64_t v)
{
    int32_t bucket = bucket_index(h, v);
    return value_from_index(h, bucket, sub_bucket_index(h, v, bucket));
}

int64_t lcb_hdr_highest_equivalent(const lcb_hdr_t *h, int64_t v)
{
    return lcb_hdr_lowest_equivalent(h, v) + lcb_hdr_equivalent_range(h, v) - 1;
}

int64_t lcb_hdr_median_equivalent(const lcb_hdr_t *h, int64_t v)
{
    return lcb_hdr_lowest_equivalent(h, v) + (lcb_hdr_equivalent_range(h, v) >> 1);
}

bool lcb_hdr_values_equivalent(const lcb_hdr_t *h, int64_t a, int64_t b)
{
    return lcb_hdr_lowest_equivalent(h, a) == lcb_hdr_lowest_equivalent(h, b);
}

/* ---- Statistics ------------------------------------------------------------------------------ */

int64_t lcb_hdr_min(const lcb_hdr_t *h) { return h->total_count > 0 ? h->min : 0; }

int64_t lcb_hdr_max(const lcb_hdr_t *h) { return h->total_count > 0 ? h->max : 0; }

int64_t lcb_hdr_value_at_percentile(const lcb_hdr_t *h, double p)
{
    if (h->total_count == 0)
        return 0;
    if (p > 100.0)
        p = 100.0;
    if (p < 0.0)
        p = 0.0;
    int64_t rank = (int64_t)(p / 100.0 * (double)h->total_count + 0.5);
    if (rank < 1)
        rank = 1;
    int64_t cum = 0, v = h->max;
    for (int32_t i = 0; i < h->counts_len; i++) {
        cum += h->counts[i];
        if (cum >= rank) {
            v = value_at_index(h, i);
            break;
        }
    }
    v = p == 0.0 ? lcb_hdr_lowest_equivalent(h, v) : lcb_hdr_highest_equivalent(h, v);
    if (v > h->max)
        v = h->max;
    if (v < h->min)
        v = h->min;
    return v;
}

double lcb_hdr_mean(const lcb_hdr_t *h)
{
    if (h->total_count == 0)
        return 0.0;
    double sum = 0.0;
    for (int32_t i = 0; i < h->counts_len; i++) {
        if (h->counts[i] != 0)
            sum +=
                (double)h->counts[i] * (double)lcb_hdr_median_equivalent(h, value_at_index(h, i));
    }
    return sum / (double)h->total_count;
}

double lcb_hdr_stddev(const lcb_hdr_t *h)
{
    if (h->total_count == 0)
        return 0.0;
    double mean = lcb_hdr_mean(h), sum = 0.0;
    for (int32_t i = 0; i < h->counts_len; i++) {
        if (h->counts[i] != 0) {
            double d = (double)lcb_hdr_median_equivalent(h, value_at_index(h, i)) - mean;
            sum += (double)h->counts[i] * d * d;
        }
    }
    return sqrt(sum / (double)h->total_count);
}

double lcb_hdr_fraction_within(const lcb_hdr_t *h, double lo, double hi)
{
    if (h->total_count == 0)
        return 0.0;
    int64_t n = 0;
    for (int32_t i = 0; i < h->counts_len; i++) {
        if (h->counts[i] == 0)
            continue;
        double m = (double)lcb_hdr_median_equivalent(h, value_at_index(h, i));
        if (m >= lo && m <= hi)
            n += h->counts[i];
    }
    return (double)n / (double)h->total_count;
}

/* ---- Percentile distribution ----------------------------------------------------------------- */

int lcb_hdr_percentiles_print(const lcb_hdr_t *h, FILE *out, int ticks_per_half_distance,
                              double value_scale, int decimals)
{
    if (ticks_per_half_distance < 1)
        ticks_per_half_distance = 1;
    int bad = fprintf(out, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
                      "1/(1-Percentile)") < 0;
    int64_t total = h->total_count, cum = 0;
    double level = 0.0;
    int64_t last_value = 0;
    /* As HdrHistogram's PercentileIterator: walk the non-empty sub-buckets; at each, report every
     * level the cumulative percentile has reached, then move the level on by
     * 100 / (ticks * 2^(floor(log2(100 / (100 - level))) + 1)), i.e. `ticks` steps per halving of
     * the distance to 100%. At the sub-bucket that holds the last value only one level is
     * reported; a final line at exactly 100% (without the 1/(1-p) column) closes the table. */
    for (int32_t i = 0; i < h->counts_len && total > 0; i++) {
        if (h->counts[i] == 0)
            continue;
        cum += h->counts[i];
        int64_t v = lcb_hdr_highest_equivalent(h, value_at_index(h, i));
        last_value = v;
        while (100.0 * (double)cum / (double)total >= level) {
            double p = level / 100.0;
            bad |= fprintf(out, "%12.*f %2.12f %10lld %14.2f\n", decimals, (double)v / value_scale,
                           p, (long long)cum, 1.0 / (1.0 - p)) < 0;
            long long half = (long long)(log(100.0 / (100.0 - level)) / log(2.0)) + 1;
            level += 100.0 / ((double)ticks_per_half_distance * pow(2.0, (double)half));
            if (cum >= total)
                break;
        }
        if (cum >= total)
            break;
    }
    if (total > 0)
        bad |= fprintf(out, "%12.*f %2.12f %10lld\n", decimals, (double)last_value / value_scale,
                       1.0, (long long)cum) < 0;
    double max = total > 0 ? (double)lcb_hdr_highest_equivalent(h, h->max) : 0.0;
    bad |= fprintf(out,
                   "#[Mean    = %12.*f, StdDeviation   = %12.*f]\n"
                   "#[Max     = %12.*f, Total count    = %12lld]\n"
                   "#[Buckets = %12d, SubBuckets     = %12d]\n",
                   decimals, lcb_hdr_mean(h) / value_scale, decimals,
                   lcb_hdr_stddev(h) / value_scale, decimals, max / value_scale, (long long)total,
                   (int)h->bucket_count, (int)h->sub_bucket_count) < 0;
    return bad ? -EIO : 0;
}
