/* Command-line values shared by the benchmark servers. */
#ifndef LOOPCORE_BENCH_SUPPORT_FLAGS_H
#define LOOPCORE_BENCH_SUPPORT_FLAGS_H

#include <stdbool.h>

/* A positive, finite number of seconds (fractions allowed), at most a day: *out and true, or
 * false (and *out unchanged) for anything else. */
bool lc_bench_parse_seconds(const char *s, double *out);

#endif
