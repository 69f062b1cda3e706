#include "bench/support/runfiles.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WORKSPACE "loopcore"

static bool readable(const char *path) { return path != NULL && access(path, R_OK) == 0; }

char *lc_bench_find_runfile(const char *argv0, const char *rel)
{
    char buf[PATH_MAX + 64];
    if (readable(rel))
        return realpath(rel, NULL);
    const char *rf = getenv("RUNFILES_DIR");
    if (rf != NULL && rf[0] != '\0') {
        snprintf(buf, sizeof(buf), "%s/" WORKSPACE "/%s", rf, rel);
        if (readable(buf))
            return realpath(buf, NULL);
    }
    if (argv0 != NULL && strchr(argv0, '/') != NULL) {
        snprintf(buf, sizeof(buf), "%s.runfiles/" WORKSPACE "/%s", argv0, rel);
        if (readable(buf))
            return realpath(buf, NULL);
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len > 0) {
        exe[len] = '\0';
        snprintf(buf, sizeof(buf), "%s.runfiles/" WORKSPACE "/%s", exe, rel);
        if (readable(buf))
            return realpath(buf, NULL);
    }
    return NULL;
}

void lc_bench_append_quoted(char *cmd, size_t cap, const char *s)
{
    size_t len = strlen(cmd);
    if (len + 1 < cap)
        cmd[len++] = '\'';
    for (; *s != '\0' && len + 5 < cap; s++) {
        if (*s == '\'') {
            memcpy(cmd + len, "'\\''", 4);
            len += 4;
        } else {
            cmd[len++] = *s;
        }
    }
    if (len + 1 < cap)
        cmd[len++] = '\'';
    cmd[len] = '\0';
}

double lc_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
