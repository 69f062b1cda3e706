/* Command-line values shared by the benchmark servers (http_server, echo_server). */
#include "bench/support/flags.h"

#include <errno.h>
#include <stdlib.h>

bool lc_bench_parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !(v > 0) || v > 86400)
        return false;
    *out = v;
    return true;
}
