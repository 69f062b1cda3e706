/* A high-dynamic-range histogram in HdrHistogram's layout (Gil Tene's log-linear buckets).
 *
 * Values are int64 (lcbench records nanoseconds). With S significant digits, every bucket holds
 * sub_bucket_count = 2^ceil(log2(2 * 10^S)) linear sub-buckets; bucket b covers values up to
 * sub_bucket_count << (b + unit_magnitude), each sub-bucket 2^(b + unit_magnitude) wide, so a
 * value v is kept to within v / 10^S (2048 sub-buckets for 3 digits: better than 1/1024). The
 * counts array is laid out exactly as HdrHistogram's (the lower half of every bucket but the
 * first overlaps the previous one and is skipped), so the same index arithmetic and the same
 * percentile iteration give the same figures as the reference implementations.
 *
 * Recording is a few shifts and one increment, no allocation; a histogram belongs to one thread
 * (one per loop in lcbench) and is merged into another of the same geometry with lcb_hdr_add().
 * Values above `highest` are clamped to it and counted in `saturated`; negative ones count as 0. */
#ifndef LCBENCH_HDR_H
#define LCBENCH_HDR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct lcb_hdr_s {
    int64_t lowest;  /* lowest discernible value (>= 1) */
    int64_t highest; /* highest trackable value */
    int sigfigs;     /* significant decimal digits, 1..5 */
    int unit_magnitude;
    int sub_bucket_half_count_magnitude;
    int32_t sub_bucket_count;
    int32_t sub_bucket_half_count;
    int64_t sub_bucket_mask;
    int32_t bucket_count;
    int32_t counts_len;
    int64_t total_count;
    int64_t min; /* exact; INT64_MAX while empty */
    int64_t max; /* exact; 0 while empty */
    uint64_t saturated;
    int64_t *counts;
} lcb_hdr_t;

/** Initialises h for values in [0, highest] told apart down to lowest, with sigfigs digits.
 *  Returns 0, -EINVAL (lowest < 1, highest < 2 * lowest, sigfigs outside 1..5) or -ENOMEM. */
int lcb_hdr_init(lcb_hdr_t *h, int64_t lowest, int64_t highest, int sigfigs);

/** Frees the counts; h may be initialised again. */
void lcb_hdr_close(lcb_hdr_t *h);

/** Forgets every value recorded. */
void lcb_hdr_reset(lcb_hdr_t *h);

/** The index in counts of value v (0 <= v <= highest). */
static inline int32_t lcb_hdr_index(const lcb_hdr_t *h, int64_t v)
{
    int pow2ceiling = 64 - __builtin_clzll((uint64_t)(v | h->sub_bucket_mask));
    int32_t bucket = pow2ceiling - h->unit_magnitude - (h->sub_bucket_half_count_magnitude + 1);
    int32_t sub = (int32_t)(v >> (bucket + h->unit_magnitude));
    return ((bucket + 1) << h->sub_bucket_half_count_magnitude) + (sub - h->sub_bucket_half_count);
}

/** Records n occurrences of v. */
static inline void lcb_hdr_record_n(lcb_hdr_t *h, int64_t v, int64_t n)
{
    if (v < 0)
        v = 0;
    if (v > h->highest) {
        v = h->highest;
        h->saturated += (uint64_t)n;
    }
    h->counts[lcb_hdr_index(h, v)] += n;
    h->total_count += n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

/** Records one occurrence of v. */
static inline void lcb_hdr_record(lcb_hdr_t *h, int64_t v) { lcb_hdr_record_n(h, v, 1); }

/** Adds every count of src to dst; both must have been initialised with the same arguments.
 *  Returns 0 or -EINVAL. */
int lcb_hdr_add(lcb_hdr_t *dst, const lcb_hdr_t *src);

/* ---- Equivalent values: every value of one sub-bucket is recorded as the same one ---------- */

/** The smallest value that shares v's sub-bucket. */
int64_t lcb_hdr_lowest_equivalent(const lcb_hdr_t *h, int64_t v);
/** The largest value that shares v's sub-bucket. */
int64_t lcb_hdr_highest_equivalent(const lcb_hdr_t *h, int64_t v);
/** The width of v's sub-bucket. */
int64_t lcb_hdr_equivalent_range(const lcb_hdr_t *h, int64_t v);
/** The middle of v's sub-bucket (what the mean and deviation use, as HdrHistogram does). */
int64_t lcb_hdr_median_equivalent(const lcb_hdr_t *h, int64_t v);
/** True if a and b share a sub-bucket. */
bool lcb_hdr_values_equivalent(const lcb_hdr_t *h, int64_t a, int64_t b);

/* ---- Statistics ------------------------------------------------------------------------------ */

/** The value at percentile p (0..100): the highest value equivalent to the one the rank
 *  ceil-ish(p / 100 * total) falls on (HdrHistogram's definition), clamped to the exact [min, max]
 *  recorded. 0 when empty. */
int64_t lcb_hdr_value_at_percentile(const lcb_hdr_t *h, double p);

/** The exact smallest and largest values recorded (0 when empty). */
int64_t lcb_hdr_min(const lcb_hdr_t *h);
int64_t lcb_hdr_max(const lcb_hdr_t *h);

/** The mean and standard deviation, from the sub-buckets' median values. 0 when empty. */
double lcb_hdr_mean(const lcb_hdr_t *h);
double lcb_hdr_stddev(const lcb_hdr_t *h);

/** The fraction (0..1) of the values whose sub-bucket lies within [lo, hi]. */
double lcb_hdr_fraction_within(const lcb_hdr_t *h, double lo, double hi);

/** Writes HdrHistogram's percentile distribution ("Value Percentile TotalCount
 *  1/(1-Percentile)", then the #[Mean ...] footer) as outputPercentileDistribution does, with
 *  ticks_per_half_distance steps per halving of the remaining percentile (5 is the usual), values
 *  divided by value_scale and printed with `decimals` decimals. Returns 0 or -EIO. */
int lcb_hdr_percentiles_print(const lcb_hdr_t *h, FILE *out, int ticks_per_half_distance,
                              double value_scale, int decimals);

#endif
