#include "bench/support/runfiles.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
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

bool lc_bench_run_peer(const char *who, const char *cmd, const char *prefix, char *line, size_t cap)
{
    fflush(stdout);
    fflush(stderr);
    if (cap > 0)
        line[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        fprintf(stderr, "%s: popen(%s): %s\n", who, cmd, strerror(errno));
        return false;
    }
    size_t plen = strlen(prefix);
    bool got = false;
    char buf[512];
    while (fgets(buf, sizeof(buf), p) != NULL) {
        if (strncmp(buf, prefix, plen) == 0 && cap > 0) {
            snprintf(line, cap, "%s", buf);
            got = true;
        }
    }
    int status = pclose(p);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s peer unavailable (exit status %d): NA\n", who,
                status == -1        ? -1
                : WIFEXITED(status) ? WEXITSTATUS(status)
                                    : 128);
        return false;
    }
    if (!got) {
        fprintf(stderr, "%s peer printed no figures: NA\n", who);
        return false;
    }
    return true;
}
