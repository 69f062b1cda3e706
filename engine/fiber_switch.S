/* The fiber context switch (engine/fiber.h), for x86-64 (System V) and aarch64 (AAPCS64).
 *
 *   void lc__fiber_switch(void **save, void *to);
 *
 * Pushes the callee-saved registers on the current stack, stores the stack pointer in *save,
 * loads `to` (a stack pointer stored by an earlier switch, or the initial frame built by
 * lc__fiber_create), pops the registers saved there and returns into that context. The
 * caller-saved registers need no saving: the switch is an ordinary call for the compiler.
 *
 *   lc__fiber_trampoline
 *
 * The return address of a new fiber's initial frame: calls fn(arg), both taken from callee-saved
 * registers of that frame, and never returns (the fiber ends with lc__fiber_exit). Its CFI marks
 * the return address undefined, so unwinders and debuggers stop there.
 *
 * Built only when the ucontext backend is not selected (LC_FIBER_UCONTEXT). */

#if !defined(LC_FIBER_UCONTEXT) && defined(__x86_64__)

    .text
    .p2align 4
    .globl  lc__fiber_switch
    .hidden lc__fiber_switch
    .type   lc__fiber_switch, @function
lc__fiber_switch:
    .cfi_startproc
#ifdef __CET__
    endbr64
#endif
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    .cfi_adjust_cfa_offset -48
    ret
    .cfi_endproc
    .size   lc__fiber_switch, .-lc__fiber_switch

    .p2align 4
    .globl  lc__fiber_trampoline
    .hidden lc__fiber_trampoline
    .type   lc__fiber_trampoline, @function
lc__fiber_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r12, %rdi
    callq   *%r13
    ud2
    .cfi_endproc
    .size   lc__fiber_trampoline, .-lc__fiber_trampoline

#elif !defined(LC_FIBER_UCONTEXT) && defined(__aarch64__)

    .text
    .p2align 4
    .globl  lc__fiber_switch
    .hidden lc__fiber_switch
    .type   lc__fiber_switch, %function
lc__fiber_switch:
    .cfi_startproc
#if defined(__ARM_FEATURE_BTI_DEFAULT)
    hint    #34                     /* bti c */
#endif
    sub     sp, sp, #160
    .cfi_adjust_cfa_offset 160
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mov     x2, sp
    str     x2, [x0]
    mov     sp, x1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #160
    .cfi_adjust_cfa_offset -160
    ret
    .cfi_endproc
    .size   lc__fiber_switch, .-lc__fiber_switch

    .p2align 4
    .globl  lc__fiber_trampoline
    .hidden lc__fiber_trampoline
    .type   lc__fiber_trampoline, %function
lc__fiber_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    mov     x0, x19
    blr     x20
    brk     #1
    .cfi_endproc
    .size   lc__fiber_trampoline, .-lc__fiber_trampoline

#endif

/* No executable stack for the objects linked with this one. */
    .section .note.GNU-stack, "", %progbits
