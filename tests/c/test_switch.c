/*
 * test_switch.c: the context switch on its own.  Two contexts bounce
 * control back and forth; each keeps values in callee-saved integer and
 * floating-point registers across every switch and checks them, and the
 * floating-point control state (rounding mode) must stay per context.
 * Prints "switch ok N" and exits 0, or names what broke.
 */
#include <fenv.h>
#include <stdio.h>
#include <stdlib.h>

#include "switch.h"

#define ROUNDS 100000
#define STACK (64 * 1024)

static gr_ctx main_ctx, co_ctx;
static volatile long co_sum;

#if defined(__aarch64__)
/* d8-d15 are callee-saved on AArch64: pin values there and check them
 * across a switch (the compiler would otherwise spill doubles). */
static int __attribute__((noinline))
fp_regs_survive(gr_ctx *from, gr_ctx *to, double seed)
{
    register double r8 __asm__("d8") = seed + 8;
    register double r9 __asm__("d9") = seed + 9;
    register double r12 __asm__("d12") = seed + 12;
    register double r15 __asm__("d15") = seed + 15;
    __asm__ volatile("" : "+w"(r8), "+w"(r9), "+w"(r12), "+w"(r15));
    gr_ctx_switch(from, to);
    __asm__ volatile("" : "+w"(r8), "+w"(r9), "+w"(r12), "+w"(r15));
    return r8 == seed + 8 && r9 == seed + 9 && r12 == seed + 12 &&
           r15 == seed + 15;
}
#endif

static void __attribute__((noinline))
co_entry(void *arg)
{
    long base = (long)(intptr_t)arg;
    /* Many live values force callee-saved registers into use. */
    register long a = base + 1, b = base + 2, c = base + 3, d = base + 4;
    register long e = base + 5, f = base + 6, g = base + 7, h = base + 8;
    /* From runtime values, so the compiler cannot fold the checks: they
     * must live in callee-saved FP registers (d8-d15, xmm is caller-saved
     * on x86-64 and spilled) across each switch. */
    volatile double seed = (double)base;
    double x = seed * 0.5, y = seed * 0.25, z = seed * 0.125;
    double w = seed * 0.0625, x2 = seed + 1, y2 = seed + 2, z2 = seed + 3;
    double w2 = seed + 4;
    fesetround(FE_DOWNWARD);
    for (int i = 0; i < ROUNDS; i++) {
        co_sum += a + b + c + d + e + f + g + h +
                  (long)(x + y + z + w + x2 + y2 + z2 + w2);
#if defined(__aarch64__)
        if (!fp_regs_survive(&co_ctx, &main_ctx, seed)) {
            printf("coroutine d8-d15 clobbered at %d\n", i);
            exit(1);
        }
#else
        gr_ctx_switch(&co_ctx, &main_ctx);
#endif
        double sd = seed;
        if (a != base + 1 || h != base + 8 || b != base + 2 ||
            c != base + 3 || d != base + 4 || e != base + 5 ||
            f != base + 6 || g != base + 7 || x != sd * 0.5 ||
            y != sd * 0.25 || z != sd * 0.125 || w != sd * 0.0625 ||
            x2 != sd + 1 || y2 != sd + 2 || z2 != sd + 3 || w2 != sd + 4) {
            printf("coroutine registers clobbered at %d\n", i);
            exit(1);
        }
        if (fegetround() != FE_DOWNWARD) {
            printf("coroutine rounding mode lost at %d\n", i);
            exit(1);
        }
    }
    co_sum = -1;
    gr_ctx_switch(&co_ctx, &main_ctx);
    abort();    /* never resumed */
}

int
main(void)
{
    char *stack = malloc(STACK);
    gr_ctx_init(&co_ctx, stack, STACK, co_entry, (void *)(intptr_t)1000);
    register long p = 11, q = 22, r = 33;
    double u = 0.1, v = 0.2;
    fesetround(FE_TONEAREST);
    long rounds = 0;
    while (co_sum != -1) {
#if defined(__aarch64__)
        /* Different values on this side, so a register the switch does
         * not restore shows up on the other. */
        if (!fp_regs_survive(&main_ctx, &co_ctx, -7.0)) {
            printf("main d8-d15 clobbered\n");
            return 1;
        }
#else
        gr_ctx_switch(&main_ctx, &co_ctx);
#endif
        if (p != 11 || q != 22 || r != 33 || u != 0.1 || v != 0.2) {
            printf("main registers clobbered\n");
            return 1;
        }
        if (fegetround() != FE_TONEAREST) {
            printf("main rounding mode lost\n");
            return 1;
        }
        rounds++;
    }
    printf("switch ok %ld\n", rounds);
    return rounds == ROUNDS + 1 ? 0 : 1;
}
