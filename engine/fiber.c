/* Fibers: guarded mmap'd stacks and the context switch (see fiber.h for the backends). */

/* _longjmp onto another stack is what the ucontext backend does on every switch; glibc's
 * fortified _longjmp (__longjmp_chk, with -D_FORTIFY_SOURCE, which Bazel's toolchain passes)
 * aborts when the target frame is not above the current one on the same stack. */
#undef _FORTIFY_SOURCE

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
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef LC__FIBER_TSAN
#include <sanitizer/tsan_interface.h>
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

/* ---- The switch ------------------------------------------------------------------------------ */

#ifdef LC_FIBER_UCONTEXT
/* Saves the current context in from and continues in to. _setjmp/_longjmp do not save or
 * restore the signal mask (no system call). */
static inline __attribute__((always_inline)) void ctx_switch(jmp_buf from, jmp_buf to)
{
    if (_setjmp(from) == 0)
        _longjmp(to, 1);
}
#define SWITCH_IN(f) ctx_switch((f)->caller_ctx, (f)->ctx)
#define SWITCH_OUT(f) ctx_switch((f)->ctx, (f)->caller_ctx)
#else
/* engine/fiber_switch.S: pushes the callee-saved registers, stores the stack pointer in *save,
 * loads to, pops the registers saved there and returns into that context. */
void lc__fiber_switch(void **save, void *to);
/* The first return address of a new fiber: calls fn(f), taken from two callee-saved registers
 * of the initial frame (x86-64: r13(r12); aarch64: x20(x19)). */
void lc__fiber_trampoline(void);
#define SWITCH_IN(f) lc__fiber_switch(&(f)->caller_sp, (f)->sp)
#define SWITCH_OUT(f) lc__fiber_switch(&(f)->sp, (f)->caller_sp)
#endif

/* Sanitizer bookkeeping around a switch. The resumer's side: */
static inline void resumer_before(lc__fiber *f, void **fake)
{
#ifdef LC__FIBER_ASAN
    __sanitizer_start_switch_fiber(fake, f->stack, f->stack_size);
#else
    (void)fake;
#endif
#ifdef LC__FIBER_TSAN
    f->caller_tsan_fiber = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(f->tsan_fiber, 0);
#endif
    (void)f;
}

static inline void resumer_after(void *fake)
{
#ifdef LC__FIBER_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    (void)fake;
}

/* The fiber's side. finishing: its last switch (ASan then frees its fake stack). */
static inline void fiber_before_out(lc__fiber *f, bool finishing)
{
#ifdef LC__FIBER_ASAN
    __sanitizer_start_switch_fiber(finishing ? NULL : &f->fake_stack, f->caller_bottom,
                                   f->caller_size);
#endif
#ifdef LC__FIBER_TSAN
    __tsan_switch_to_fiber(f->caller_tsan_fiber, 0);
#endif
    (void)f;
    (void)finishing;
}

/* After the fiber was switched in (first: its first run). Records the resumer's stack. */
static inline void fiber_after_in(lc__fiber *f, bool first)
{
#ifdef LC__FIBER_ASAN
    __sanitizer_finish_switch_fiber(first ? NULL : f->fake_stack, &f->caller_bottom,
                                    &f->caller_size);
#endif
    (void)f;
    (void)first;
}

bool lc__fiber_resume(lc__fiber *f)
{
    void *fake = NULL;
    resumer_before(f, &fake);
    SWITCH_IN(f);
    resumer_after(fake);
    return f->exited;
}

void lc__fiber_suspend(lc__fiber *f)
{
    fiber_before_out(f, false);
    SWITCH_OUT(f);
    fiber_after_in(f, false);
}

_Noreturn void lc__fiber_exit(lc__fiber *f)
{
    f->exited = true;
    fiber_before_out(f, true);
    SWITCH_OUT(f);
    abort(); /* an exited fiber is never resumed */
}

/* ---- Creation -------------------------------------------------------------------------------- */

#ifdef LC_FIBER_UCONTEXT
/* makecontext passes int arguments only: the pointer comes in two halves. */
static void uc_entry(unsigned lo, unsigned hi)
{
    lc__fiber *f = (lc__fiber *)(((uintptr_t)hi << 32) | (uintptr_t)lo);
    fiber_after_in(f, true);
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
    resumer_before(f, &fake);
    if (_setjmp(f->caller_ctx) == 0)
        setcontext(&uc);
    resumer_after(fake);
    return 0;
}
#else
/* The body's C entry on the new stack, called by lc__fiber_trampoline. */
void lc__fiber_entry(lc__fiber *f);
void lc__fiber_entry(lc__fiber *f)
{
    fiber_after_in(f, true);
    f->fn(f);
    abort();
}

static int ctx_init(lc__fiber *f)
{
    /* The initial frame, as lc__fiber_switch pops it; top is 16-byte aligned, so that after the
     * final `ret` the trampoline's call leaves the callee an ABI-aligned stack. */
    uintptr_t top = ((uintptr_t)f->stack + f->stack_size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* From sp up: r15 r14 r13 r12 rbx rbp, return address. rbp = 0 ends frame-pointer walks. */
    void **sp = (void **)(top - 7 * sizeof(void *));
    sp[0] = NULL;                          /* r15 */
    sp[1] = NULL;                          /* r14 */
    sp[2] = (void *)lc__fiber_entry;       /* r13: the function */
    sp[3] = f;                             /* r12: its argument */
    sp[4] = NULL;                          /* rbx */
    sp[5] = NULL;                          /* rbp */
    sp[6] = (void *)lc__fiber_trampoline;  /* return address */
#else
    /* From sp up: x19..x28, x29 (fp), x30 (lr), d8..d15: 20 slots of 8 bytes. */
    void **sp = (void **)(top - 20 * sizeof(void *));
    for (int i = 0; i < 20; i++)
        sp[i] = NULL;
    sp[0] = f;                            /* x19: the argument */
    sp[1] = (void *)lc__fiber_entry;      /* x20: the function */
    sp[11] = (void *)lc__fiber_trampoline; /* x30: where `ret` goes */
#endif
    f->sp = sp;
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
