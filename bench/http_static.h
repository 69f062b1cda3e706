/* http_static: http_server's --static DIR mode: GET / HEAD /file/NAME serves the regular file
 * DIR/NAME with lc_loop_sendfile (or, with --static-copy, by pread + lc_transport_write, the
 * copying path to compare with). See http_static.c. */
#ifndef LOOPCORE_BENCH_HTTP_STATIC_H
#define LOOPCORE_BENCH_HTTP_STATIC_H

#include <stdbool.h>

#include "loopcore.h"

/* Once, before the loops start: opens dir (kept open for the process). Returns 0 or -errno. */
int http_static_init(const char *dir, bool copy, double idle_timeout, double send_timeout);

/* The protocol factory of a static-file connection. */
int http_static_factory(void *arg, const lc_protocol_t **proto, void **user);

/* On each loop's thread: when it starts (the idle sweep), and at shutdown (aborts its
 * connections). */
void http_static_loop_start(lc_loop_t *loop);
void http_static_loop_shutdown(void);

#endif
