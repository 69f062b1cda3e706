/* Fibers: a stack of its own and a saved register context, for tasks (engine/task.c). Internal.
 *
 * A fiber is switched to with lc__fiber_resume() from any stack (the loop's thread stack, or
 * another fiber when loops nest) and runs until it calls lc__fiber_suspend() or lc__fiber_exit(),
 * which return control to whoever resumed it last. Asymmetric: a fiber never resumes another one
 * directly except through a nested resume, which returns to it.
 *
 * The stack is mmap'd with one PROT_NONE guard page below it, so an overflow faults instead of
 * corrupting the neighbouring memory.
 *
 * The context switch. Two backends, chosen at build time:
 *   - default on x86-64 and aarch64: engine/fiber_switch.S, six (x86-64) or twenty (aarch64)
 *     callee-saved registers pushed on the old stack, the stack pointer swapped, the same popped
 *     from the new one. Nothing else is saved: like setjmp, the switch leaves the signal mask and
 *     the floating-point control state (MXCSR / x87 control word, FPCR) shared by all fibers of
 *     the thread.
 *   - LC_FIBER_UCONTEXT (defined with --copt=-DLC_FIBER_UCONTEXT, and the fallback on other
 *     CPUs): Seastar's way, makecontext + setcontext once to enter a new fiber, then _setjmp /
 *     _longjmp for every switch.
 * bench/task_bench measured both (bench/RESULTS.md, "task_bench"): the assembly switch makes an
 * await/resume round trip of the bench about 10 ns cheaper (a switch pair ~3 ns against ~13 ns;
 * glibc's _longjmp demangles the saved pointers and goes through _longjmp_unwind and its
 * shadow-stack check), and entering a fresh stack costs a few stores instead of a
 * getcontext/setcontext pair, each with a rt_sigprocmask system call. The assembly switch is the
 * default; the ucontext one is ~60 lines kept as the portable fallback.
 *
 * Sanitizers: under AddressSanitizer every switch is bracketed by
 * __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber (a fiber's last switch passes
 * NULL so its fake stack is freed); under ThreadSanitizer each fiber has a TSan fiber
 * (__tsan_create_fiber / __tsan_switch_to_fiber / __tsan_destroy_fiber), switched with
 * synchronization, since all the fibers of a loop run on its thread one at a time. */
#ifndef LOOPCORE_ENGINE_FIBER_H
#define LOOPCORE_ENGINE_FIBER_H

#include <stdbool.h>
#include <stddef.h>

#if !defined(LC_FIBER_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define LC_FIBER_UCONTEXT 1
#endif

#ifdef LC_FIBER_UCONTEXT
#include <setjmp.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define LC__FIBER_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define LC__FIBER_TSAN 1
#endif

typedef struct lc__fiber_s lc__fiber;

/* The body of a fiber: runs on the fiber's stack at its first resume and must never return (it
 * ends with lc__fiber_exit). */
typedef void (*lc__fiber_fn)(lc__fiber *f);

struct lc__fiber_s {
#ifdef LC_FIBER_UCONTEXT
    jmp_buf ctx;        /* the fiber, while it is switched out */
    jmp_buf caller_ctx; /* its resumer, while the fiber runs */
#else
    void *sp;        /* the fiber's stack pointer, while it is switched out */
    void *caller_sp; /* its resumer's, while the fiber runs */
#endif
    char *stack;       /* lowest usable byte, just above the guard page */
    size_t stack_size; /* usable bytes */
    lc__fiber_fn fn;
    void *data;      /* the owner's (engine/task.c: the task it runs) */
    lc__fiber *next; /* the owner's free list */
    bool exited;     /* lc__fiber_exit() was called: destroy it, never resume it */
#ifdef LC__FIBER_ASAN
    void *fake_stack;          /* the fiber's fake stack while it is switched out */
    const void *caller_bottom; /* the resumer's stack, to announce the switch back */
    size_t caller_size;
#endif
#ifdef LC__FIBER_TSAN
    void *tsan_fiber;
    void *caller_tsan_fiber;
#endif
};

/* The name of the context-switch backend: "asm-x86_64", "asm-aarch64" or "ucontext". */
extern const char lc__fiber_backend[];

/* The page size, and stack_size rounded up to whole pages. */
size_t lc__fiber_page_size(void);

/* Maps a stack of stack_size usable bytes (a multiple of the page size) plus a guard page and
 * prepares a fiber that will run fn(f) at its first resume. Returns 0 or a negative errno. */
int lc__fiber_create(lc__fiber **out, size_t stack_size, lc__fiber_fn fn, void *data);

/* Switches to f; returns when f suspends or exits. Returns f->exited. */
bool lc__fiber_resume(lc__fiber *f);

/* Called on f's stack: switches back to f's resumer; returns at f's next resume. */
void lc__fiber_suspend(lc__fiber *f);

/* Called on f's stack: switches back to f's resumer for the last time. */
_Noreturn void lc__fiber_exit(lc__fiber *f);

/* Unmaps an exited or never-resumed fiber. */
void lc__fiber_destroy(lc__fiber *f);

#endif
