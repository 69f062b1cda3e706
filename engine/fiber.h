/* Fibers: a stack of its own and a saved context, for tasks (engine/task.c). Internal.
 *
 * A fiber is switched to with lc__fiber_resume() from any stack (the loop's thread stack, or
 * another fiber when loops nest) and runs until it calls lc__fiber_suspend() or lc__fiber_exit(),
 * which return control to whoever resumed it last (asymmetric coroutines).
 *
 * The stack is mmap'd with one PROT_NONE guard page below it, so an overflow faults instead of
 * corrupting the neighbouring memory.
 *
 * The context switch. Two backends, chosen at build time:
 *   - the default on x86-64 and aarch64: hand-written assembly, inlined at each switch point
 *     (lc__fiber_jump below); engine/fiber_switch.S holds the entry trampoline of new fibers.
 *     A switch stores the stack pointer, the frame pointer and a resume address in the
 *     fiber (lc__fiber_ctx), loads the other context's three and jumps. Every other register
 *     is declared clobbered, so the compiler keeps nothing in registers across a switch, and
 *     the function that contains one saves the callee-saved registers in its own prologue, as
 *     for any call. Like setjmp, a switch leaves the signal mask and the floating-point control
 *     state (MXCSR / x87 control word, FPCR) shared by all the fibers of a thread.
 *   - LC_FIBER_UCONTEXT (build with --copt=-DLC_FIBER_UCONTEXT; the fallback on other CPUs):
 *     Seastar's way, makecontext + setcontext once to enter a new fiber, then _setjmp / _longjmp
 *     for every switch.
 * Chosen by measurement (bench/RESULTS.md, task_bench, "The context switch"): the inlined assembly
 * beats the same assembly out of line and _setjmp/_longjmp on task_bench's await/resume round trip,
 * on task creation and on a bare switch pair, by a wide margin on the last. A stack switch defeats
 * the CPU's return-address prediction: every `ret` executed after a switch, before the next call,
 * pops a prediction that belongs to the other stack. An out-of-line switch function adds such
 * returns on both sides at each switch (the switch itself, its wrapper); inlined, only the one of
 * the function that awaits remains per side (a bare switch pair with one return per side costs
 * about what the out-of-line one does: the returns are the cost, not the call). glibc's _longjmp
 * also demangles the saved pointers and unwinds through _longjmp_unwind. A new fiber costs a few
 * stores instead of getcontext + setcontext (a rt_sigprocmask system call each). So the inlined
 * assembly is the default; the ucontext backend (~50 lines) stays as the portable fallback for
 * other CPUs.
 *
 * Sanitizers: under AddressSanitizer every switch is bracketed by
 * __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber (a fiber's last switch passes
 * NULL so that its fake stack is freed); under ThreadSanitizer each fiber has a TSan fiber
 * (__tsan_create_fiber / __tsan_switch_to_fiber / __tsan_destroy_fiber), switched with
 * synchronization, since the fibers of a loop run on one thread at a time. */
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
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#define LC__FIBER_TSAN 1
#include <sanitizer/tsan_interface.h>
#endif

typedef struct lc__fiber_s lc__fiber;

#ifndef LC_FIBER_UCONTEXT
/* A switched-out context of the assembly backend: all a switch saves (see lc__fiber_jump). */
typedef struct lc__fiber_ctx_s {
    void *sp; /* stack pointer */
    void *fp; /* frame pointer: rbp / x29 */
    void *pc; /* where it resumes */
} lc__fiber_ctx;
#endif

/* The body of a fiber: runs on the fiber's stack at its first resume and must never return (it
 * ends with lc__fiber_exit). */
typedef void (*lc__fiber_fn)(lc__fiber *f);

struct lc__fiber_s {
#ifdef LC_FIBER_UCONTEXT
    jmp_buf ctx;        /* the fiber, while it is switched out */
    jmp_buf caller_ctx; /* its resumer, while the fiber runs */
#else
    lc__fiber_ctx ctx;    /* the fiber, while it is switched out */
    lc__fiber_ctx caller; /* its resumer, while the fiber runs */
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

/* The page size. */
size_t lc__fiber_page_size(void);

/* Maps a stack of stack_size usable bytes (a multiple of the page size) plus a guard page and
 * prepares a fiber that will run fn(f) at its first resume. Returns 0 or a negative errno. */
int lc__fiber_create(lc__fiber **out, size_t stack_size, lc__fiber_fn fn, void *data);

/* Called on f's stack: switches back to f's resumer for the last time. */
_Noreturn void lc__fiber_exit(lc__fiber *f);

/* Unmaps an exited or never-resumed fiber. */
void lc__fiber_destroy(lc__fiber *f);

/* ---- The switch ------------------------------------------------------------------------------ */

#if defined(LC_FIBER_UCONTEXT)

/* _setjmp/_longjmp save and restore no signal mask (no system call). fiber.c undefines
 * _FORTIFY_SOURCE, whose __longjmp_chk refuses jumps to another stack; task.c, the other user,
 * must not be built fortified either with this backend. */
#define LC__FIBER_JUMP(from_ctx, to_ctx)                                                           \
    do {                                                                                           \
        if (_setjmp(from_ctx) == 0)                                                                \
            _longjmp(to_ctx, 1);                                                                   \
    } while (0)
#define LC__FIBER_SWITCH_IN(f) LC__FIBER_JUMP((f)->caller_ctx, (f)->ctx)
#define LC__FIBER_SWITCH_OUT(f) LC__FIBER_JUMP((f)->ctx, (f)->caller_ctx)

#elif defined(__x86_64__)

/* Under -fcf-protection the resume point, reached by an indirect jump, is an IBT landing pad. */
#ifdef __CET__
#define LC__FIBER_ENDBR "\n\tendbr64"
#else
#define LC__FIBER_ENDBR ""
#endif

#ifdef __AVX512F__
#define LC__FIBER_CLOBBER_AVX512                                                                   \
    , "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25",    \
        "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k1", "k2", "k3", "k4", "k5", "k6",  \
        "k7"
#else
#define LC__FIBER_CLOBBER_AVX512
#endif

/* Saves the current context in *from (stack pointer, rbp, resume address) and continues in the
 * context saved in *to. Nothing is written to the stack, so the System V red zone is safe. A new
 * fiber's context resumes in lc__fiber_trampoline (engine/fiber_switch.S). */
/* clang-format off */
static inline __attribute__((always_inline)) void lc__fiber_jump(lc__fiber_ctx *from,
                                                                 lc__fiber_ctx *to)
{
    __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                     "movq %%rsp, 0(%%rdi)\n\t"
                     "movq %%rbp, 8(%%rdi)\n\t"
                     "movq %%rax, 16(%%rdi)\n\t"
                     "movq 0(%%rsi), %%rsp\n\t"
                     "movq 8(%%rsi), %%rbp\n\t"
                     "jmpq *16(%%rsi)\n"
                     "1:" LC__FIBER_ENDBR
                     : "+D"(from), "+S"(to)
                     :
                     : "rax", "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
                       "r15", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                       "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st",
                       "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)", "memory",
                       "cc" LC__FIBER_CLOBBER_AVX512);
}
/* clang-format on */
#define LC__FIBER_SWITCH_IN(f) lc__fiber_jump(&(f)->caller, &(f)->ctx)
#define LC__FIBER_SWITCH_OUT(f) lc__fiber_jump(&(f)->ctx, &(f)->caller)

#else /* __aarch64__ */

/* As on x86-64. The resume point is a BTI landing pad (`bti j`, a NOP on CPUs without BTI),
 * since it is reached by `br`. x18 is an ordinary temporary on Linux. */
/* clang-format off */
static inline __attribute__((always_inline)) void lc__fiber_jump(lc__fiber_ctx *from,
                                                                 lc__fiber_ctx *to)
{
    register lc__fiber_ctx *x0 __asm__("x0") = from;
    register lc__fiber_ctx *x1 __asm__("x1") = to;
    __asm__ volatile("adr x2, 1f\n\t"
                     "mov x3, sp\n\t"
                     "stp x3, x29, [x0]\n\t"
                     "str x2, [x0, #16]\n\t"
                     "ldp x3, x29, [x1]\n\t"
                     "ldr x2, [x1, #16]\n\t"
                     "mov sp, x3\n\t"
                     "br x2\n"
                     "1:\n\t"
                     "hint #36"
                     : "+r"(x0), "+r"(x1)
                     :
                     : "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13",
                       "x14", "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24",
                       "x25", "x26", "x27", "x28", "x30", "v0", "v1", "v2", "v3", "v4", "v5", "v6",
                       "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15", "v16", "v17",
                       "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28",
                       "v29", "v30", "v31", "memory", "cc");
}
/* clang-format on */
#define LC__FIBER_SWITCH_IN(f) lc__fiber_jump(&(f)->caller, &(f)->ctx)
#define LC__FIBER_SWITCH_OUT(f) lc__fiber_jump(&(f)->ctx, &(f)->caller)

#endif

/* Sanitizer bookkeeping around a switch. The resumer's side: */
static inline void lc__fiber_resumer_before(lc__fiber *f, void **fake)
{
#ifdef LC__FIBER_ASAN
    __sanitizer_start_switch_fiber(fake, f->stack, f->stack_size);
#endif
#ifdef LC__FIBER_TSAN
    f->caller_tsan_fiber = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(f->tsan_fiber, 0);
#endif
    (void)f;
    (void)fake;
}

static inline void lc__fiber_resumer_after(void *fake)
{
#ifdef LC__FIBER_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    (void)fake;
}

/* The fiber's side. finishing: its last switch (ASan then frees its fake stack). */
static inline void lc__fiber_before_out(lc__fiber *f, bool finishing)
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
static inline void lc__fiber_after_in(lc__fiber *f, bool first)
{
#ifdef LC__FIBER_ASAN
    __sanitizer_finish_switch_fiber(first ? NULL : f->fake_stack, &f->caller_bottom,
                                    &f->caller_size);
#endif
    (void)f;
    (void)first;
}

#ifdef LC_FIBER_UCONTEXT
/* A function that calls setjmp cannot be inlined: these two are defined once, in fiber.c
 * (which defines LC__FIBER_IMPL). */
bool lc__fiber_resume(lc__fiber *f);
void lc__fiber_suspend(lc__fiber *f);
#define LC__FIBER_INLINE
#else
#define LC__FIBER_INLINE static inline __attribute__((always_inline))
#endif

#if !defined(LC_FIBER_UCONTEXT) || defined(LC__FIBER_IMPL)

/* Switches to f; returns when f suspends or exits. Returns f->exited. Inlined at its call sites
 * with the assembly switch (see the file comment on return prediction). */
LC__FIBER_INLINE bool lc__fiber_resume(lc__fiber *f)
{
    void *fake = NULL;
    lc__fiber_resumer_before(f, &fake);
    LC__FIBER_SWITCH_IN(f);
    lc__fiber_resumer_after(fake);
    return f->exited;
}

/* Called on f's stack: switches back to f's resumer; returns at f's next resume. */
LC__FIBER_INLINE void lc__fiber_suspend(lc__fiber *f)
{
    lc__fiber_before_out(f, false);
    LC__FIBER_SWITCH_OUT(f);
    lc__fiber_after_in(f, false);
}
#endif

#endif
