/* Shared by the benchmark binaries: finding the Python peer scripts in Bazel runfiles, and quoting
 * arguments for the shell commands that run them. */
#ifndef LOOPCORE_BENCH_RUNFILES_H
#define LOOPCORE_BENCH_RUNFILES_H

#include <stdbool.h>
#include <stddef.h>

/* Finds rel (a path inside the workspace, e.g. "bench/loop_bench.py") among the runfiles of the
 * running binary: relative to the working directory (bazel run), under $RUNFILES_DIR/loopcore/,
 * next to argv0 (<argv0>.runfiles/loopcore/), then next to /proc/self/exe. Returns a malloc'd
 * absolute path, or NULL. */
char *lc_bench_find_runfile(const char *argv0, const char *rel);

/* CLOCK_MONOTONIC in seconds (the clock every benchmark times with). */
double lc_bench_now(void);

/* Appends s to the shell command in cmd (capacity cap), single-quoted. */
void lc_bench_append_quoted(char *cmd, size_t cap, const char *s);

/* Runs the shell command cmd (a Python peer) and reads its standard output: copies the last line
 * that starts with prefix into line (capacity cap). Returns true if the command exited with 0 and
 * printed such a line; otherwise says why on stderr ("<who> peer unavailable" / "printed no
 * figures", then NA) and returns false. Flushes stdout and stderr first, so that the peer's own
 * stderr lands in order. */
bool lc_bench_run_peer(const char *who, const char *cmd, const char *prefix, char *line,
                       size_t cap);

#endif
