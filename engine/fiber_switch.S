/* The entry trampoline of new fibers (engine/fiber.h), for x86-64 (System V) and aarch64
 * (AAPCS64). The switch itself is inline assembly in fiber.h (lc__fiber_jump), so that it costs
 * no call and no return at each switch point.
 *
 *   lc__fiber_trampoline
 *
 * The resume address of a new fiber's initial frame (built by lc__fiber_create): reached by the
 * switch's indirect jump with the stack pointer 16-byte aligned on two words, fn's argument and
 * fn. Calls fn(arg), which never returns (a fiber ends with lc__fiber_exit). Its CFI marks the
 * return address undefined, so unwinders and debuggers stop there.
 *
 * Built only when the ucontext backend is not selected (LC_FIBER_UCONTEXT). */

#if !defined(LC_FIBER_UCONTEXT) && defined(__x86_64__)

    .text
    .p2align 4
    .globl  lc__fiber_trampoline
    .hidden lc__fiber_trampoline
    .type   lc__fiber_trampoline, @function
lc__fiber_trampoline:
    .cfi_startproc
    .cfi_undefined rip
#ifdef __CET__
    endbr64                         /* reached by an indirect jump */
#endif
    movq    (%rsp), %rdi
    callq   *8(%rsp)
    ud2
    .cfi_endproc
    .size   lc__fiber_trampoline, .-lc__fiber_trampoline

/* Under -fcf-protection (__CET__: 1 IBT, 2 SHSTK), mark the object IBT compatible, or the linker
 * drops the marking of the whole binary: the linker ANDs the markers of all the objects it links.
 * The trampoline and the resume points of lc__fiber_jump (fiber.h) are landing pads (endbr64).
 * SHSTK is deliberately not claimed, even when the C code is marked for it: a switch moves the
 * stack pointer to another fiber's stack but leaves the thread's shadow stack where it was, so the
 * first `ret` after a switch would not match it. Leaving it out clears SHSTK from every binary
 * that links the fibers, which then runs without a shadow stack rather than faulting where one is
 * enforced. (Supporting it means a shadow stack per fiber and switching it: rdsspq / rstorssp.) */
#if defined(__CET__) && (__CET__ & 1) != 0
#define LC_GNU_PROPERTY_TYPE 0xc0000002 /* GNU_PROPERTY_X86_FEATURE_1_AND */
#define LC_GNU_PROPERTY_BITS 1          /* GNU_PROPERTY_X86_FEATURE_1_IBT */
#endif

#elif !defined(LC_FIBER_UCONTEXT) && defined(__aarch64__)

    .text
    .p2align 4
    .globl  lc__fiber_trampoline
    .hidden lc__fiber_trampoline
    .type   lc__fiber_trampoline, %function
lc__fiber_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    hint    #36                     /* bti j: reached by `br`; a NOP without BTI */
    ldp     x0, x1, [sp]
    blr     x1
    brk     #1
    .cfi_endproc
    .size   lc__fiber_trampoline, .-lc__fiber_trampoline

/* Mark the object BTI / PAC compatible when the C code is (-mbranch-protection), or the linker
 * drops the marking of the whole binary. The resume points carry `bti j`; x30 is only ever
 * saved and restored by compiled code on its own stack, so return addresses stay signed. */
#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT == 1
#define LC_GNU_PROPERTY_BTI 1
#else
#define LC_GNU_PROPERTY_BTI 0
#endif
#if defined(__ARM_FEATURE_PAC_DEFAULT) && __ARM_FEATURE_PAC_DEFAULT != 0
#define LC_GNU_PROPERTY_PAC 2
#else
#define LC_GNU_PROPERTY_PAC 0
#endif
#if LC_GNU_PROPERTY_BTI != 0 || LC_GNU_PROPERTY_PAC != 0
#define LC_GNU_PROPERTY_TYPE 0xc0000000 /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
#define LC_GNU_PROPERTY_BITS (LC_GNU_PROPERTY_BTI | LC_GNU_PROPERTY_PAC)
#endif

#endif

/* The marker chosen above: one property of 4 bytes in a GNU note. */
#ifdef LC_GNU_PROPERTY_TYPE
    .pushsection .note.gnu.property, "a"
    .balign 8
    .long   4                       /* name size */
    .long   16                      /* descriptor size */
    .long   5                       /* NT_GNU_PROPERTY_TYPE_0 */
    .asciz  "GNU"
    .long   LC_GNU_PROPERTY_TYPE
    .long   4                       /* property size */
    .long   LC_GNU_PROPERTY_BITS
    .long   0                       /* padding to 8 bytes */
    .popsection
#endif

/* No executable stack for the objects linked with this one. */
    .section .note.GNU-stack, "", %progbits
