/* lcbench's HDR histogram: geometry, precision over 1 us .. 1 h, percentiles against known
 * values (HdrHistogram's own reference data set among them), mean and deviation, merging, and the
 * percentile-distribution text that HdrHistogram's plotting tools read. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bench/lcbench/hdr.h"
#include "bench/lcbench/lcbench.h"

static void init_ns(lcb_hdr_t *h)
{
    assert_int_equal(lcb_hdr_init(h, LCB_HDR_LOWEST, LCB_HDR_HIGHEST, LCB_HDR_SIGFIGS), 0);
}

/* |a - b| <= b * rel */
static void assert_close(double a, double b, double rel)
{
    if (fabs(a - b) > fabs(b) * rel)
        fail_msg("%.6f is not within %.4f%% of %.6f", a, rel * 100, b);
}

static void test_hdr_geometry_matches_hdrhistogram(void **state)
{
    (void)state;
    lcb_hdr_t h;
    /* HdrHistogram's reference geometry: 1 .. 3,600,000,000 (an hour in us), 3 digits. */
    assert_int_equal(lcb_hdr_init(&h, 1, 3600LL * 1000 * 1000, 3), 0);
    assert_int_equal(h.sub_bucket_count, 2048);
    assert_int_equal(h.bucket_count, 22);
    assert_int_equal(h.counts_len, 23552);
    lcb_hdr_close(&h);
    /* lcbench's: nanoseconds up to an hour. */
    init_ns(&h);
    assert_int_equal(h.sub_bucket_count, 2048);
    assert_int_equal(h.bucket_count, 32);
    assert_int_equal(h.counts_len, 33 * 1024);
    lcb_hdr_close(&h);
    assert_int_equal(lcb_hdr_init(&h, 0, 100, 3), -EINVAL);
    assert_int_equal(lcb_hdr_init(&h, 1, 100, 6), -EINVAL);
    assert_int_equal(lcb_hdr_init(&h, 10, 15, 3), -EINVAL);
}

static void test_hdr_three_digits_from_1us_to_1h(void **state)
{
    (void)state;
    lcb_hdr_t h;
    init_ns(&h);
    /* Every value from 1 us to an hour is kept to 1 part in 1000 (the sub-bucket width). */
    for (double v = 1000; v <= 3600e9; v *= 1.37) {
        int64_t x = (int64_t)v;
        int64_t lo = lcb_hdr_lowest_equivalent(&h, x), hi = lcb_hdr_highest_equivalent(&h, x);
        assert_true(lo <= x && x <= hi);
        assert_true((double)(hi - lo + 1) <= (double)x / 1000.0);
        assert_true(lcb_hdr_values_equivalent(&h, lo, hi));
        assert_false(lcb_hdr_values_equivalent(&h, lo, hi + 1));
    }
    /* Below 2048 every integer is its own sub-bucket. */
    for (int64_t x = 0; x < 2048; x++)
        assert_int_equal(lcb_hdr_equivalent_range(&h, x), 1);
    lcb_hdr_record(&h, 3600LL * 1000000000LL);
    assert_int_equal(h.saturated, 0);
    lcb_hdr_record(&h, 5000LL * 1000000000LL); /* above an hour: clamped and counted */
    assert_int_equal(h.saturated, 1);
    assert_int_equal(lcb_hdr_max(&h), LCB_HDR_HIGHEST);
    lcb_hdr_close(&h);
}

/* HdrHistogram's reference test: 10,000 values of 1000 and one of 100,000,000. */
static void test_hdr_percentiles_reference_data(void **state)
{
    (void)state;
    lcb_hdr_t h;
    assert_int_equal(lcb_hdr_init(&h, 1, 3600LL * 1000 * 1000, 3), 0);
    for (int i = 0; i < 10000; i++)
        lcb_hdr_record(&h, 1000);
    lcb_hdr_record(&h, 100000000);
    assert_int_equal(h.total_count, 10001);
    assert_int_equal(lcb_hdr_value_at_percentile(&h, 30.0), 1000);
    assert_int_equal(lcb_hdr_value_at_percentile(&h, 50.0), 1000);
    assert_int_equal(lcb_hdr_value_at_percentile(&h, 99.0), 1000);
    assert_int_equal(lcb_hdr_value_at_percentile(&h, 99.99), 1000);
    assert_true(lcb_hdr_values_equivalent(&h, lcb_hdr_value_at_percentile(&h, 99.999), 100000000));
    assert_int_equal(lcb_hdr_value_at_percentile(&h, 100.0), 100000000);
    assert_int_equal(lcb_hdr_min(&h), 1000);
    assert_int_equal(lcb_hdr_max(&h), 100000000);
    /* Exact mean and deviation of the data; the histogram's come from sub-bucket medians. */
    double mean = (10000.0 * 1000 + 1e8) / 10001.0;
    double var = (10000.0 * (1000 - mean) * (1000 - mean) + (1e8 - mean) * (1e8 - mean)) / 10001;
    assert_close(lcb_hdr_mean(&h), mean, 0.001);
    assert_close(lcb_hdr_stddev(&h), sqrt(var), 0.001);
    assert_close(lcb_hdr_fraction_within(&h, 0, 2000), 10000.0 / 10001.0, 1e-9);
    lcb_hdr_close(&h);
}

static void test_hdr_percentiles_uniform_values(void **state)
{
    (void)state;
    lcb_hdr_t h;
    init_ns(&h);
    /* 1 us .. 1 s in steps of 1 us (nanosecond values): percentile p is p% of a second. */
    for (int64_t v = 1000; v <= 1000000000; v += 1000)
        lcb_hdr_record(&h, v);
    static const double ps[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 99.99};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
        assert_close((double)lcb_hdr_value_at_percentile(&h, ps[i]), ps[i] * 1e7, 0.001);
    assert_int_equal(lcb_hdr_value_at_percentile(&h, 100), 1000000000);
    assert_int_equal(lcb_hdr_value_at_percentile(&h, 0), 1000);
    assert_close(lcb_hdr_mean(&h), 500000500.0, 0.001);
    assert_close(lcb_hdr_stddev(&h), 1e9 / sqrt(12.0), 0.001);
    lcb_hdr_close(&h);
}

static void test_hdr_add_merges_loops(void **state)
{
    (void)state;
    lcb_hdr_t a, b, all;
    init_ns(&a);
    init_ns(&b);
    init_ns(&all);
    for (int64_t v = 1; v <= 200000; v++) {
        int64_t x = v * 997 % 5000000 + 20000;
        lcb_hdr_record(v % 3 == 0 ? &a : &b, x);
        lcb_hdr_record(&all, x);
    }
    assert_int_equal(lcb_hdr_add(&a, &b), 0);
    assert_int_equal(a.total_count, all.total_count);
    assert_int_equal(lcb_hdr_min(&a), lcb_hdr_min(&all));
    assert_int_equal(lcb_hdr_max(&a), lcb_hdr_max(&all));
    for (double p = 0; p <= 100; p += 0.5)
        assert_int_equal(lcb_hdr_value_at_percentile(&a, p), lcb_hdr_value_at_percentile(&all, p));
    lcb_hdr_t other;
    assert_int_equal(lcb_hdr_init(&other, 1, 1000000, 2), 0);
    assert_int_equal(lcb_hdr_add(&a, &other), -EINVAL);
    lcb_hdr_close(&other);
    lcb_hdr_reset(&a);
    assert_int_equal(a.total_count, 0);
    assert_int_equal(lcb_hdr_value_at_percentile(&a, 50), 0);
    lcb_hdr_close(&a);
    lcb_hdr_close(&b);
    lcb_hdr_close(&all);
}

static void test_hdr_percentile_distribution_text(void **state)
{
    (void)state;
    lcb_hdr_t h;
    assert_int_equal(lcb_hdr_init(&h, 1, 3600LL * 1000 * 1000, 3), 0);
    for (int i = 0; i < 10000; i++)
        lcb_hdr_record(&h, 1000);
    lcb_hdr_record(&h, 100000000);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(lcb_hdr_percentiles_print(&h, f, 5, 1000.0, 3), 0);
    fclose(f);
    /* The header, exactly as HdrHistogram writes it. */
    const char *header = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n";
    assert_memory_equal(text, header, strlen(header));
    /* First line: the lowest value at percentile 0. */
    const char *first = "       1.000 0.000000000000      10000           1.00\n";
    assert_memory_equal(text + strlen(header), first, strlen(first));
    /* The 100% line has no 1/(1-p) column; the footer follows. */
    assert_non_null(strstr(text, "  100007.935 1.000000000000      10001\n#[Mean"));
    assert_non_null(strstr(text, "#[Max     =   100007.935, Total count    =        10001]\n"));
    assert_non_null(strstr(text, "#[Buckets =           22, SubBuckets     =         2048]\n"));
    /* Levels: 0, 10, ..., 50, 55, ... up to 99.99% reach the 1000s. */
    assert_non_null(strstr(text, "       1.000 0.500000000000      10000           2.00\n"));
    assert_non_null(strstr(text, "       1.000 0.550000000000      10000           2.22\n"));
    int lines = 0;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    assert_true(lines > 40);
    free(text);
    lcb_hdr_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hdr_geometry_matches_hdrhistogram),
        cmocka_unit_test(test_hdr_three_digits_from_1us_to_1h),
        cmocka_unit_test(test_hdr_percentiles_reference_data),
        cmocka_unit_test(test_hdr_percentiles_uniform_values),
        cmocka_unit_test(test_hdr_add_merges_loops),
        cmocka_unit_test(test_hdr_percentile_distribution_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
