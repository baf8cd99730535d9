/*
 * switch_x86_64.S: the goroutine context switch for x86-64 (System V).
 *
 * gr_ctx_switch(gr_ctx *from, gr_ctx *to) saves the callee-saved registers
 * and the SSE/x87 control words on the current stack, stores the stack
 * pointer in from->sp, loads to->sp and restores the same set from there.
 * Everything else is caller-saved, so the C compiler has already spilled
 * it.  A new context is built by gr_ctx_make (gstack.c) to look as if it
 * had been switched out just before gr_ctx_trampoline: r12 holds the
 * argument, r13 the entry function.
 *
 * Frame, from the saved sp upward: mxcsr(4) fpucw(4) r15 r14 r13 r12 rbx rbp ret
 */
    .text
    .globl  gr_ctx_switch
    .hidden gr_ctx_switch
    .type   gr_ctx_switch, @function
gr_ctx_switch:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    (%rsi), %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .cfi_endproc
    .size   gr_ctx_switch, .-gr_ctx_switch

/* First code a new context runs: entry(arg).  The entry never returns (a
 * finished goroutine switches away for good), so a return is a bug. */
    .globl  gr_ctx_trampoline
    .hidden gr_ctx_trampoline
    .type   gr_ctx_trampoline, @function
gr_ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    xorl    %ebp, %ebp
    movq    %r12, %rdi
    callq   *%r13
    ud2
    .cfi_endproc
    .size   gr_ctx_trampoline, .-gr_ctx_trampoline

    .section .note.GNU-stack,"",@progbits
