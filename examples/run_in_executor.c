/* The spec's run_in_executor example ("Executing code in thread or process pools"), in C.
 *
 *   def blocking_io():                      # file operations can block the loop
 *       with open('/dev/urandom', 'rb') as f:
 *           return f.read(100)
 *   def cpu_bound():                        # CPU-bound work blocks the loop too
 *       return sum(i * i for i in range(10 ** 7))
 *   async def main():
 *       loop = asyncio.get_running_loop()
 *       result = await loop.run_in_executor(None, blocking_io)           # 1. the default pool
 *       print('default thread pool', result)
 *       with concurrent.futures.ThreadPoolExecutor() as pool:           # 2. a custom pool
 *           result = await loop.run_in_executor(pool, blocking_io)
 *           print('custom thread pool', result)
 *       with concurrent.futures.ProcessPoolExecutor() as pool:          # 3. a process pool
 *           result = await loop.run_in_executor(pool, cpu_bound)
 *           print('custom process pool', result)
 *
 * loopcore has thread pools only, so the third case runs the CPU-bound job in a custom thread pool
 * (C threads run in parallel; there is no interpreter lock to escape). "await" is
 * lc_loop_run_until_complete() here; the results are heap buffers that this program owns once the
 * future delivers them. Prints three lines:
 *   default thread pool <200 hex digits>
 *   custom thread pool <200 hex digits>
 *   custom thread pool (cpu-bound) 333333283333335000000 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "loopcore.h"

#define NBYTES 100

/* Runs on a worker thread: reads 100 bytes from /dev/urandom into a new buffer. */
static int blocking_io(void *arg, void **result)
{
    (void)arg;
    unsigned char *buf = malloc(NBYTES);
    if (buf == NULL)
        return LC_ENOMEM;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        free(buf);
        return -errno;
    }
    size_t n = 0;
    while (n < NBYTES) {
        ssize_t k = read(fd, buf + n, NBYTES - n);
        if (k <= 0) {
            int err = k < 0 ? -errno : LC_EAGAIN;
            close(fd);
            free(buf);
            return err;
        }
        n += (size_t)k;
    }
    close(fd);
    *result = buf;
    return 0;
}

/* Runs on a worker thread: sum(i * i for i in range(10 ** 7)), which needs 69 bits. */
static int cpu_bound(void *arg, void **result)
{
    (void)arg;
    unsigned __int128 *sum = malloc(sizeof(*sum));
    if (sum == NULL)
        return LC_ENOMEM;
    *sum = 0;
    for (unsigned long long i = 0; i < 10000000ull; i++)
        *sum += (unsigned __int128)i * i;
    *result = sum;
    return 0;
}

static void print_bytes(const char *label, const unsigned char *buf)
{
    printf("%s ", label);
    for (int i = 0; i < NBYTES; i++)
        printf("%02x", buf[i]);
    printf("\n");
}

static void print_u128(const char *label, unsigned __int128 v)
{
    char digits[48];
    int n = 0;
    do {
        digits[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v != 0);
    printf("%s ", label);
    while (n > 0)
        putchar(digits[--n]);
    printf("\n");
}

/* "await loop.run_in_executor(executor, fn)": runs the loop until the job's future is done. */
static int await_job(lc_loop_t *loop, lc_executor_t *executor, lc_job_fn fn, void **result)
{
    lc_future_t *fut;
    int r = lc_loop_run_in_executor_dtor(loop, executor, fn, NULL, free, &fut);
    if (r != 0)
        return r;
    r = lc_loop_run_until_complete(loop, fut, result);
    lc_future_unref(fut);
    return r;
}

static int fail(const char *what, int r)
{
    fprintf(stderr, "run_in_executor: %s: %s\n", what, lc_strerror(r));
    return 1;
}

int main(void)
{
    lc_loop_t *loop;
    int r = lc_new_event_loop(&loop);
    if (r != 0)
        return fail("lc_new_event_loop", r);
    void *result;

    /* 1. The loop's default executor (created on first use, owned by the loop). */
    r = await_job(loop, NULL, blocking_io, &result);
    if (r != 0)
        return fail("default thread pool", r);
    print_bytes("default thread pool", result);
    free(result);

    /* 2. A custom thread pool; freeing it (lc_executor_free: shutdown, waiting, then release) is
     * the end of Python's "with" block. */
    lc_executor_t *pool;
    r = lc_executor_create(&pool, NULL);
    if (r != 0)
        return fail("lc_executor_create", r);
    r = await_job(loop, pool, blocking_io, &result);
    if (r != 0)
        return fail("custom thread pool", r);
    print_bytes("custom thread pool", result);
    free(result);
    lc_executor_free(pool);

    /* 3. A CPU-bound job, in another custom pool. */
    r = lc_executor_create(&pool, &(lc_executor_opts_t){.thread_name_prefix = "cpu"});
    if (r != 0)
        return fail("lc_executor_create", r);
    r = await_job(loop, pool, cpu_bound, &result);
    if (r != 0)
        return fail("custom thread pool (cpu-bound)", r);
    print_u128("custom thread pool (cpu-bound)", *(unsigned __int128 *)result);
    free(result);
    lc_executor_free(pool);

    /* asyncio.run() closes the loop, which shuts its default executor down. */
    lc_loop_close(loop);
    lc_loop_free(loop);
    return 0;
}
