/*
 * switch.h: the goroutine context switch, free of Python so it can be
 * tested on its own (tests/c/test_switch.c, natively and under qemu).
 *
 * gr_ctx_switch (switch_<arch>.S) saves the callee-saved registers and the
 * floating-point control state on the current stack, stores the stack
 * pointer in from->sp and resumes `to`.  gr_ctx_init lays out a new stack
 * so that the first switch to it "returns" into gr_ctx_trampoline, which
 * calls entry(arg); entry must never return.
 */
#ifndef GR_SWITCH_H
#define GR_SWITCH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    void *sp;               /* saved stack pointer; the registers are on it */
} gr_ctx;

void gr_ctx_switch(gr_ctx *from, gr_ctx *to);
void gr_ctx_trampoline(void);

static inline void
gr_ctx_init(gr_ctx *ctx, char *lo, size_t size, void (*entry)(void *),
            void *arg)
{
    uintptr_t top = ((uintptr_t)(lo + size)) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* The frame gr_ctx_switch pops: mxcsr/fpucw, r15 r14 r13 r12 rbx rbp,
     * then the return address; the ret slot sits at top-24 so the
     * trampoline starts with a 16-byte aligned stack. */
    uint64_t *sp = (uint64_t *)(top - 80);
    uint32_t ctl[2] = {0x1F80, 0x037F};    /* default MXCSR, x87 CW */
    memcpy(&sp[0], ctl, sizeof ctl);
    sp[1] = 0;                              /* r15 */
    sp[2] = 0;                              /* r14 */
    sp[3] = (uint64_t)(uintptr_t)entry;     /* r13 */
    sp[4] = (uint64_t)(uintptr_t)arg;       /* r12 */
    sp[5] = 0;                              /* rbx */
    sp[6] = 0;                              /* rbp */
    sp[7] = (uint64_t)(uintptr_t)gr_ctx_trampoline;
    sp[8] = 0;
    ctx->sp = sp;
#elif defined(__aarch64__)
    /* x19..x28, x29 x30, d8..d15, fpcr, pad: 176 bytes. */
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)arg;       /* x19 */
    sp[1] = (uint64_t)(uintptr_t)entry;     /* x20 */
    sp[11] = (uint64_t)(uintptr_t)gr_ctx_trampoline;   /* x30 */
    ctx->sp = sp;
#else
#error "goroutine: no context switch for this architecture yet"
#endif
}

#endif /* GR_SWITCH_H */
