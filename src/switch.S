/*
 * switch.S: the context switch for the architecture being compiled for,
 * chosen by the compiler's own macros rather than by the build host, so a
 * cross compiler (or a build host that is not the target) still gets the
 * right one.  Each switch_<arch>.S is complete on its own (tests/c builds
 * them one at a time too); this file only picks.
 */
#if defined(__x86_64__)
#include "switch_x86_64.S"
#elif defined(__aarch64__)
#include "switch_aarch64.S"
#else
#error "goroutine: no context switch for this architecture (x86-64 and aarch64 Linux are supported)"
#endif
