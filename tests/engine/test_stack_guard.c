/* Task stacks and their guard page (issue 11): the guard is a PROT_NONE page at the growth end of
 * each stack, and a frame or an alloca larger than the guard cannot jump over it. The second holds
 * because the code is built with -fstack-clash-protection (.bazelrc), which probes every page of a
 * large frame or alloca in order, so the first probe past the stack lands on the guard. Without
 * it, a 64 KiB frame that starts near the end of the stack writes its first byte 60 KiB below the
 * guard, into whatever memory is mapped there.
 *
 * The overflow tests run in a forked child. Just below the task's guard page the child maps a
 * "victim": pages of a memfd that the parent also maps, so the parent sees any byte written
 * there. The child must die of SIGSEGV (or of a sanitizer's report on it), and the victim must
 * stay zero. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

/* A frame of 16 x 4 KiB pages, and an alloca of the stack's rest plus as much: both larger than
 * the guard (one page), whatever the page size of x86-64 or aarch64 (4 KiB or 64 KiB). */
#define BIG (64 * 1024)
/* The victim: every byte that a jump over the guard could reach (a frame or alloca of up to BIG
 * beyond the stack's end), with room to spare. */
#define VICTIM_SIZE (4 * BIG)

/* ---- /proc/self/maps ------------------------------------------------------------------------ */

typedef struct {
    uintptr_t lo, hi;
    char perms[5];
} mapping_t;

/* Finds the mapping that contains addr (by_end false) or that ends at addr (by_end true). */
static bool find_mapping(uintptr_t addr, bool by_end, mapping_t *out)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        uintptr_t lo, hi;
        char perms[5];
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s", &lo, &hi, perms) != 3)
            continue;
        found = by_end ? hi == addr : (lo <= addr && addr < hi);
        if (found) {
            out->lo = lo;
            out->hi = hi;
            memcpy(out->perms, perms, sizeof(perms));
        }
    }
    fclose(f);
    return found;
}

/* What a task saw of its own stack. */
typedef struct {
    size_t stack_size; /* the loop's task stack size */
    uintptr_t frame;   /* an address in the task's frame */
    bool found_stack, found_guard;
    mapping_t stack, guard; /* the mapping holding frame; the one just below it */
} stack_view_t;

static void look_at_own_stack(stack_view_t *v)
{
    v->frame = (uintptr_t)__builtin_frame_address(0);
    v->found_stack = find_mapping(v->frame, false, &v->stack);
    if (v->found_stack)
        v->found_guard = find_mapping(v->stack.lo, true, &v->guard);
}

static int coro_look(void *arg, void **result)
{
    (void)result;
    look_at_own_stack(arg);
    return 0;
}

/* ---- The guard's place ----------------------------------------------------------------------- */

static void test_stack_guard_page_below_each_task_stack(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    stack_view_t v = {.stack_size = lc_loop_get_task_stack_size(loop)};
    lc_future_t *task;
    assert_int_equal(lc_loop_create_task(loop, coro_look, &v, &task), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), 0);
    lc_future_unref(task);

    /* The task ran on a writable mapping of its own, not on the thread's stack... */
    assert_true(v.found_stack);
    assert_string_equal(v.stack.perms, "rw-p");
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    assert_false(v.stack.lo <= here && here < v.stack.hi);
    /* ...whose lowest byte is at most one stack size below the frame (the stack's low end, where
     * it grows to; the mapping may extend higher if the kernel merged it with a neighbour)... */
    assert_true(v.frame - v.stack.lo < v.stack_size);
    /* ...and directly below which lies at least a page of PROT_NONE: the guard. */
    assert_true(v.found_guard);
    assert_string_equal(v.guard.perms, "---p");
    assert_int_equal(v.guard.hi, v.stack.lo);
    assert_true(v.guard.hi - v.guard.lo >= page);
}

/* ---- Overflows past the guard ---------------------------------------------------------------- */

/* Shared with the forked child (MAP_SHARED, made before the fork). */
typedef struct {
    int step; /* how far the child got: STEP_* */
    int place_errno;
} child_state_t;

enum { STEP_START = 1, STEP_VICTIM_MAPPED, STEP_OVERFLOW_RETURNED };

typedef struct {
    child_state_t *st;
    int victim_fd;
    bool use_alloca; /* an alloca past the end, else a large frame */
} overflow_arg_t;

/* Large frame: called with less than two pages of stack left; its first store is at its lowest
 * byte, BIG below the caller's stack pointer, which is under the guard unless the prologue
 * probed its way down (and faulted on the guard). */
__attribute__((noinline)) static int big_frame(void)
{
    volatile char buf[BIG];
    buf[0] = 1;
    buf[BIG - 1] = 2;
    return buf[0] + buf[BIG - 1];
}

/* Recurses in small steps, touching each frame, until less than two pages are left above lo. */
__attribute__((noinline)) static int descend(uintptr_t lo, size_t page)
{
    volatile char pad[256];
    pad[0] = 1;
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    int r = sp - lo > 2 * page ? descend(lo, page) : big_frame();
    return r + pad[0]; /* used after the call: no tail call */
}

/* alloca of the rest of the stack plus BIG: its lowest byte is BIG below the stack's end. */
__attribute__((noinline)) static int alloca_past_end(uintptr_t lo)
{
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    volatile char *p = __builtin_alloca(sp - lo + BIG);
    p[0] = 1;
    return p[0];
}

static int coro_overflow(void *varg, void **result)
{
    (void)result;
    overflow_arg_t *a = varg;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    stack_view_t v = {0};
    look_at_own_stack(&v);
    if (!v.found_stack || !v.found_guard || strcmp(v.guard.perms, "---p") != 0)
        _exit(10);
    /* The victim, right below the guard. Below the newest stack the address space is normally
     * free; if something is mapped there, the child (which only overflows from here on) maps
     * over it. */
    uintptr_t at = v.guard.lo - VICTIM_SIZE;
    void *victim = mmap((void *)at, VICTIM_SIZE, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_FIXED_NOREPLACE, a->victim_fd, 0);
    if (victim == MAP_FAILED && errno == EEXIST) {
        a->st->place_errno = EEXIST;
        victim = mmap((void *)at, VICTIM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                      a->victim_fd, 0);
    }
    if (victim != (void *)at)
        _exit(11);
    a->st->step = STEP_VICTIM_MAPPED;
    int r = a->use_alloca ? alloca_past_end(v.stack.lo) : descend(v.stack.lo, page);
    a->st->step = STEP_OVERFLOW_RETURNED;
    return r;
}

static void run_overflow_child(bool use_alloca)
{
    lc_test_watchdog(60);
    child_state_t *st =
        mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(st != MAP_FAILED);
    int fd = memfd_create("lc-stack-guard-victim", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, VICTIM_SIZE), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL); /* a hang ends in SIGALRM, not in the watchdog's abort() */
        /* CMocka catches SIGSEGV to report a failed test. Its handler would run on the faulting
         * stack: an alloca's probe touches the page above the stack pointer, so when it faults
         * on the guard the stack pointer is already a page lower, and the kernel would write the
         * signal frame into the victim. The default action writes nothing. */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        alarm(20);
        st->step = STEP_START;
        if (freopen("/dev/null", "w", stderr) == NULL) /* a sanitizer's report is expected */
            _exit(12);
        lc_loop_t *loop = NULL;
        if (lc_new_event_loop(&loop) != 0)
            _exit(13);
        overflow_arg_t a = {.st = st, .victim_fd = fd, .use_alloca = use_alloca};
        lc_future_t *task;
        if (lc_loop_create_task(loop, coro_overflow, &a, &task) != 0)
            _exit(14);
        lc_loop_run_until_complete(loop, task, NULL);
        _exit(42); /* the overflow went unnoticed */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    const unsigned char *victim = mmap(NULL, VICTIM_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(victim != MAP_FAILED);
    size_t written = 0;
    for (size_t i = 0; i < VICTIM_SIZE; i++)
        written += victim[i] != 0;
    if (WIFSIGNALED(status))
        printf("# child: signal %d, step %d, victim bytes written %zu%s\n", WTERMSIG(status),
               st->step, written, st->place_errno == EEXIST ? " (mapped over a neighbour)" : "");
    else
        printf("# child: exit %d, step %d, victim bytes written %zu\n", WEXITSTATUS(status),
               st->step, written);

    /* The child got as far as the overflow, and the overflow did not return... */
    assert_int_equal(st->step, STEP_VICTIM_MAPPED);
    /* ...nor write a byte past the guard... */
    assert_int_equal(written, 0);
    /* ...it faulted on the guard. AddressSanitizer reports the fault and aborts
     * (abort_on_error=1); ThreadSanitizer may report it and exit with an error status. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    if (WIFSIGNALED(status))
        assert_true(WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGABRT);
    else
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 42);
#else
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
#endif
    munmap((void *)victim, VICTIM_SIZE);
    close(fd);
    munmap(st, sizeof(*st));
}

static void test_stack_guard_large_frame_cannot_jump_it(void **state)
{
    (void)state;
    run_overflow_child(false);
}

static void test_stack_guard_alloca_cannot_jump_it(void **state)
{
    (void)state;
    run_overflow_child(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_stack_guard_page_below_each_task_stack),
        T(test_stack_guard_large_frame_cannot_jump_it),
        T(test_stack_guard_alloca_cannot_jump_it),
#undef T
    };
    return cmocka_run_group_tests_name("stack_guard", tests, NULL, NULL);
}
