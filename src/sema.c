/*
 * sema.c: the semaphore every blocked OS thread sleeps on -- a plain
 * thread's wait in gr_block (waiter.c) and an idle M's park (sched.c) --
 * the monotonic clock and timed-wait deadlines they and sync.c read, and
 * the trim of an over-sized mapping to an aligned one (gstack.c's slabs,
 * gomap_table.c's big tables): the OS-level leaves of the core.
 *
 * A leaf of the core's layers (docs/design.md, "Layout"): it uses no other
 * file of src/, so both sched.c and waiter.c (which parks goroutines
 * through sched.c) can use it without a cycle.
 *
 * The semaphore is binary: a post sets `posted`, a wait consumes it.  A
 * waiter spins GR_SEMA_SPIN_NS before it sleeps on the condition variable
 * (design.md, "spin 20 us"): a wake that comes that soon (a goroutine
 * answering a thread) then costs no futex sleep on either side.  mu is a
 * leaf lock.  No GIL anywhere here.
 */
#include "core.h"

#include <errno.h>
#include <sched.h>
#include <sys/mman.h>
#include <time.h>

#define GR_SEMA_SPIN_NS 20000       /* blocked thread spin before sleeping */

int64_t
gr_nanotime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct timespec
gr_deadline_after(int64_t ns)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += ns / 1000000000;
    dl.tv_nsec += ns % 1000000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    return dl;
}

void *
gr_map_trim(void *raw, size_t len, size_t align)
{
    char *r = raw;
    char *a = (char *)(((uintptr_t)r + align - 1) & ~(uintptr_t)(align - 1));
    if (a > r) {
        munmap(r, (size_t)(a - r));
    }
    munmap(a + len, (size_t)(r + len + align - (a + len)));
    return a;
}

/* ---- semaphores (a thread waiter's wake-up, an M's park) ------------ */

void
gr_sema_init(gr_sema *s)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, &attr);
    pthread_condattr_destroy(&attr);
    s->posted = 0;
}

void
gr_sema_destroy(gr_sema *s)
{
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

void
gr_sema_post(gr_sema *s)
{
    pthread_mutex_lock(&s->mu);
    __atomic_store_n(&s->posted, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Wait for a post, at most timeout_ns (< 0: forever).  Consumes the post.
 * Returns true if posted.  No GIL. */
bool
gr_sema_wait(gr_sema *s, int64_t timeout_ns)
{
    struct timespec dl = {0, 0};
    if (timeout_ns >= 0) {
        dl = gr_deadline_after(timeout_ns);
    }
    /* Spin first: a wake that comes within GR_SEMA_SPIN_NS (a goroutine
     * answering a thread) then costs no futex sleep on either side. */
    int64_t spin_end = gr_nanotime() + GR_SEMA_SPIN_NS;
    while (!__atomic_load_n(&s->posted, __ATOMIC_ACQUIRE) &&
           gr_nanotime() < spin_end) {
        sched_yield();
    }
    pthread_mutex_lock(&s->mu);
    while (!s->posted) {
        if (timeout_ns < 0) {
            pthread_cond_wait(&s->cv, &s->mu);
        }
        else if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT) {
            break;
        }
    }
    bool posted = s->posted;
    s->posted = 0;
    pthread_mutex_unlock(&s->mu);
    return posted;
}
