/* connect_read_pipe / connect_write_pipe: the stream transport in its pipe mode (see
 * engine/transport.c, "Pipe mode", and loopcore/subprocess.h). */
#include <sys/stat.h>
#include <unistd.h>

#include "engine/stream_internal.h"
#include "loopcore/subprocess.h"

static int connect_pipe(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg, int fd,
                        bool write, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (loop == NULL || factory == NULL || fut == NULL || fd < 0) {
        if (fd >= 0)
            close(fd);
        return LC_EINVAL;
    }
    if (lc_loop_is_closed(loop)) {
        close(fd);
        return LC_ECLOSED;
    }
    /* asyncio: "Pipe transport is for pipes/sockets/character devices only"; epoll refuses
     * regular files and directories anyway. */
    struct stat st;
    int r = fstat(fd, &st) == 0 ? 0 : -errno;
    if (r == 0 && !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode) && !S_ISCHR(st.st_mode))
        r = LC_EINVAL;
    if (r == 0)
        r = lc__set_nonblocking(fd);
    if (r == 0)
        r = lc_loop_create_future(loop, fut);
    if (r != 0) {
        *fut = NULL;
        close(fd);
        return r;
    }
    lc_transport_t *t = lc__transport_new_pipe(loop, fd, factory, factory_arg, write, &r);
    if (t == NULL)
        lc_future_set_error(*fut, r);
    else
        lc_future_set_result(*fut, t);
    return 0;
}

int lc_loop_connect_read_pipe(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                              int fd, lc_future_t **fut)
{
    return connect_pipe(loop, factory, factory_arg, fd, false, fut);
}

int lc_loop_connect_write_pipe(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                               int fd, lc_future_t **fut)
{
    return connect_pipe(loop, factory, factory_arg, fd, true, fut);
}
