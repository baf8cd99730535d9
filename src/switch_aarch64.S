/*
 * switch_aarch64.S: the goroutine context switch for AArch64 (AAPCS64).
 *
 * gr_ctx_switch(gr_ctx *from, gr_ctx *to) saves x19-x30, d8-d15 and fpcr
 * on the current stack, stores sp in from->sp, loads to->sp and restores
 * the same set.  A new context (gr_ctx_make in gstack.c) is laid out so
 * that the restore "returns" (x30) into gr_ctx_trampoline with x19 = arg
 * and x20 = entry.
 *
 * Frame, from the saved sp upward (176 bytes, 16-aligned):
 *   x19..x28 (80)  x29 x30 (16)  d8..d15 (64)  fpcr (8) pad (8)
 */
    .text
    .globl  gr_ctx_switch
    .hidden gr_ctx_switch
    .type   gr_ctx_switch, %function
gr_ctx_switch:
    sub     sp, sp, #176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8,  d9,  [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x9, fpcr
    str     x9, [sp, #160]
    mov     x9, sp
    str     x9, [x0]
    ldr     x9, [x1]
    mov     sp, x9
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8,  d9,  [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    ldr     x9, [sp, #160]
    msr     fpcr, x9
    add     sp, sp, #176
    ret
    .size   gr_ctx_switch, .-gr_ctx_switch

    .globl  gr_ctx_trampoline
    .hidden gr_ctx_trampoline
    .type   gr_ctx_trampoline, %function
gr_ctx_trampoline:
    mov     x29, xzr
    mov     x0, x19
    blr     x20
    brk     #0
    .size   gr_ctx_trampoline, .-gr_ctx_trampoline

    .section .note.GNU-stack,"",@progbits
