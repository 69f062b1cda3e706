/* Fibers: guarded mmap'd stacks and the context switch (see fiber.h for the backends). */

/* _longjmp onto another stack is what the ucontext backend does on every switch; glibc's
 * fortified _longjmp (__longjmp_chk, with -D_FORTIFY_SOURCE, which -c opt builds pass: see
 * bazel/copts.bzl) aborts when the target frame is not above the current one on the same stack.
 * The assembly backend needs no such exception, but nothing here has a fortified form either. */
#undef _FORTIFY_SOURCE

#define LC__FIBER_IMPL 1 /* the out-of-line switch functions of the ucontext backend */
#include "engine/fiber.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef LC_FIBER_UCONTEXT
#include <ucontext.h>
#endif
#ifdef LC__FIBER_ASAN
#include <sanitizer/asan_interface.h>
#endif

#if defined(LC_FIBER_UCONTEXT)
const char lc__fiber_backend[] = "ucontext";
#elif defined(__x86_64__)
const char lc__fiber_backend[] = "asm-x86_64";
#else
const char lc__fiber_backend[] = "asm-aarch64";
#endif

size_t lc__fiber_page_size(void)
{
    /* relaxed: every thread computes the same value; a race only repeats the sysconf(). */
    static _Atomic size_t page;
    size_t p = atomic_load_explicit(&page, memory_order_relaxed);
    if (p == 0) {
        long v = sysconf(_SC_PAGESIZE);
        p = v > 0 ? (size_t)v : 4096;
        atomic_store_explicit(&page, p, memory_order_relaxed);
    }
    return p;
}

_Noreturn void lc__fiber_exit(lc__fiber *f)
{
    f->exited = true;
    lc__fiber_before_out(f, true);
    LC__FIBER_SWITCH_OUT(f);
    abort(); /* an exited fiber is never resumed */
}

/* ---- Creation -------------------------------------------------------------------------------- */

#ifdef LC_FIBER_UCONTEXT
/* makecontext passes int arguments only: the pointer comes in two halves. */
static void uc_entry(unsigned lo, unsigned hi)
{
    lc__fiber *f = (lc__fiber *)(((uintptr_t)hi << 32) | (uintptr_t)lo);
    lc__fiber_after_in(f, true);
    /* Back to lc__fiber_create(); the first real resume continues here. */
    lc__fiber_suspend(f);
    f->fn(f);
    abort();
}

static int ctx_init(lc__fiber *f)
{
    ucontext_t uc;
    if (getcontext(&uc) != 0)
        return -errno;
    uc.uc_stack.ss_sp = f->stack;
    uc.uc_stack.ss_size = f->stack_size;
    uc.uc_link = NULL;
    uintptr_t p = (uintptr_t)f;
    makecontext(&uc, (void (*)(void))uc_entry, 2, (unsigned)(p & 0xffffffffu),
                (unsigned)((uint64_t)p >> 32));
    /* Enter the new stack once, so that every later switch is a plain _longjmp. */
    void *fake = NULL;
    lc__fiber_resumer_before(f, &fake);
    if (_setjmp(f->caller_ctx) == 0)
        setcontext(&uc);
    lc__fiber_resumer_after(fake);
    return 0;
}
#else
/* engine/fiber_switch.S: where a new fiber's context resumes. It calls lc__fiber_entry(f), both
 * read from the top of the new stack. */
void lc__fiber_trampoline(void);

/* The body's C entry on the new stack. */
void lc__fiber_entry(lc__fiber *f);
void lc__fiber_entry(lc__fiber *f)
{
    lc__fiber_after_in(f, true);
    f->fn(f);
    abort();
}

static int ctx_init(lc__fiber *f)
{
    /* The trampoline's two words at the top of the stack; top is 16-byte aligned, and so is the
     * stack pointer when the trampoline calls (top - 16). */
    uintptr_t top = ((uintptr_t)f->stack + f->stack_size) & ~(uintptr_t)15;
    void **sp = (void **)(top - 2 * sizeof(void *));
    sp[0] = f;                       /* the argument */
    sp[1] = (void *)lc__fiber_entry; /* the function */
    f->ctx.sp = sp;
    f->ctx.fp = NULL; /* ends frame-pointer walks */
    f->ctx.pc = (void *)lc__fiber_trampoline;
    return 0;
}
#endif

int lc__fiber_create(lc__fiber **out, size_t stack_size, lc__fiber_fn fn, void *data)
{
    *out = NULL;
    size_t page = lc__fiber_page_size();
    lc__fiber *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    /* MAP_NORESERVE: only the pages a task touches count; MAP_STACK documents the use. */
    char *base = mmap(NULL, stack_size + page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) {
        free(f);
        return -ENOMEM;
    }
    /* The guard page: the lowest one, since stacks grow down. */
    if (mprotect(base, page, PROT_NONE) != 0) {
        int r = -errno;
        munmap(base, stack_size + page);
        free(f);
        return r;
    }
    f->stack = base + page;
    f->stack_size = stack_size;
    f->fn = fn;
    f->data = data;
#ifdef LC__FIBER_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
    int r = ctx_init(f);
    if (r != 0) {
        lc__fiber_destroy(f);
        return r;
    }
    *out = f;
    return 0;
}

void lc__fiber_destroy(lc__fiber *f)
{
    if (f == NULL)
        return;
#ifdef LC__FIBER_TSAN
    __tsan_destroy_fiber(f->tsan_fiber);
#endif
#ifdef LC__FIBER_ASAN
    /* Frames that were live at the fiber's last switch leave their redzones poisoned; the
     * mapping's addresses may be reused by anything, so clear them. */
    ASAN_UNPOISON_MEMORY_REGION(f->stack, f->stack_size);
#endif
    size_t page = lc__fiber_page_size();
    munmap(f->stack - page, f->stack_size + page);
    free(f);
}
