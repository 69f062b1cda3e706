/* Helpers for the server tests: run a server binary as a child process on a free port, talk to
 * it over 127.0.0.1, and read its resident memory. */
#ifndef LOOPCORE_TESTS_HTTP_SERVER_PROC_H
#define LOOPCORE_TESTS_HTTP_SERVER_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Seconds on the monotonic clock. */
double sp_now(void);

/* A port that was free a moment ago (bound to 127.0.0.1:0, then closed). */
int sp_free_port(void);

/* A blocking TCP connection to 127.0.0.1:port, or -1. With bufsize > 0, SO_SNDBUF and SO_RCVBUF
 * are set to it before connecting (small buffers make a peer that stops reading felt sooner). */
int sp_connect(int port, int bufsize);

/* Starts argv[0] with argv (NULL-terminated) and waits until 127.0.0.1:port accepts a
 * connection (up to 20 s). Returns the child's pid, or -1 (the child killed) if it never does. */
pid_t sp_start(char *const argv[], int port);

/* Runs argv[0] with argv (NULL-terminated), its stderr to /dev/null, and returns its wait
 * status; killed (and reported as such) if it runs for more than 10 s. */
int sp_run(char *const argv[]);

/* A throwaway self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, made now by
 * `openssl req` in a new temporary directory: dir (cap >= 32) gets its path, and dir/cert.pem,
 * dir/key.pem are the files. Returns 0 or -1. Remove it with sp_remove_dir. */
int sp_make_cert(char *dir, size_t cap);
void sp_remove_dir(const char *dir);

/* SIGTERM, then waits for the child; returns its wait status. */
int sp_stop(pid_t pid);

/* The child's resident set size (VmRSS in /proc/PID/status) in KiB, or -1. */
long sp_rss_kb(pid_t pid);

/* Reads until the peer closes or timeout seconds pass; returns the bytes read (buf is
 * NUL-terminated, so cap must be at least 1) and sets *closed when the peer closed. */
size_t sp_read_all(int fd, char *buf, size_t cap, double timeout, bool *closed);

/* Sends pattern[0..plen) over and over, as fast as fd takes it and never reading, for `seconds`
 * or until `cap` bytes went; samples the RSS of `pid` every 20 ms meanwhile. Returns the bytes
 * sent (a stream position in the repeated pattern) and the peak RSS seen in *peak_kb. */
size_t sp_push(int fd, const char *pattern, size_t plen, double seconds, size_t cap, pid_t pid,
               long *peak_kb);

#endif
