/*
 * gstack.c: goroutine C stacks, their pool, and the context a new stack
 * starts in.
 *
 * Layout of one stack (grows down):
 *
 *     [guard page?][red zone][........ usable ........][top: first frame]
 *      ^map         ^lo                                 ^lo + size
 *
 * Budget: vm.max_map_count defaults to 65530 and a PROT_NONE guard page
 * splits a mapping in two, so one guarded mmap per goroutine would cap a
 * process near 32k goroutines.  We guard the first GR_GUARDED_STACKS
 * stacks (a stray overflow there is a SIGSEGV, loud and at the fault) and
 * carve the rest from slabs of GR_SLAB_STACKS stacks in one mapping, which
 * costs one VMA per slab.  Every stack, guarded or not, has a red zone of
 * known bytes at its low end that is checked at every switch away from the
 * goroutine: an overflow there is reported as a fatal "goroutine: stack
 * overflow" before anything else runs on the corrupted memory.  The real
 * defence is upstream: CPython's recursion limits are fitted to the stack
 * (gr_pystate_fit_stack), so Python code gets RecursionError first.
 *
 * Memory: stacks are mapped MAP_NORESERVE and only touched pages are
 * resident.  A freed stack goes back to a LIFO pool so a hot go() costs no
 * mmap; beyond GR_POOL_HOT stacks in the pool, freed stacks have their
 * pages returned to the kernel (MADV_DONTNEED) before pooling.
 *
 * Locking: pool_lock guards the pool and counters; it is a leaf lock and
 * is taken without the GIL or with it, from any thread.
 */
#define _GNU_SOURCE 1
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define GR_ASAN 1
#  endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#  define GR_ASAN 1
#endif
#ifdef GR_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define GR_TSAN 1
#  endif
#endif
#if defined(__SANITIZE_THREAD__)
#  define GR_TSAN 1
#endif
#ifdef GR_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define GR_VALGRIND 1
#endif

/* 1 MiB of virtual stack, of which only touched pages are resident: with
 * it, 3.10 and 3.11 (where every Python call can cost C stack) keep
 * CPython's default recursion limit of 1000 inside goroutines, and the
 * C recursion budget of 3.12+ is fitted to it.  Override with
 * GOROUTINE_STACK_KB (64..65536). */
#define GR_STACK_DEFAULT (1024u * 1024u)
#define GR_REDZONE 256u
#define GR_REDZONE_BYTE 0xA5
#define GR_GUARDED_STACKS 4096
#define GR_SLAB_STACKS 32
#define GR_POOL_HOT 256

typedef struct freestack {
    struct freestack *next;
    gr_stack st;
} freestack;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static freestack *pool;          /* free stacks, LIFO */
static size_t pool_len;
static size_t nguarded;          /* guarded mappings made so far */
static char *slab_next;          /* next unused stack in the current slab */
static size_t slab_left;         /* stacks left in it */
static size_t stack_size;        /* usable bytes, set once */
static size_t page_size;

size_t
gr_stack_size(void)
{
    if (stack_size == 0) {
        page_size = (size_t)sysconf(_SC_PAGESIZE);
        size_t sz = GR_STACK_DEFAULT;
        const char *env = getenv("GOROUTINE_STACK_KB");
        if (env != NULL) {
            long kb = strtol(env, NULL, 10);
            if (kb >= 64 && kb <= 65536) {
                sz = (size_t)kb * 1024u;
            }
        }
        stack_size = (sz + page_size - 1) & ~(page_size - 1);
    }
    return stack_size;
}

static void
redzone_fill(gr_stack *st)
{
    memset(st->lo, GR_REDZONE_BYTE, GR_REDZONE);
}

/* Fresh memory for one stack; pool_lock held. */
static int
stack_map(gr_stack *st)
{
    size_t size = gr_stack_size();
    if (nguarded < GR_GUARDED_STACKS) {
        size_t total = size + page_size;
        char *map = mmap(NULL, total, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (map == MAP_FAILED) {
            return -1;
        }
        if (mprotect(map, page_size, PROT_NONE) != 0) {
            munmap(map, total);
            return -1;
        }
        nguarded++;
        st->map = map;
        st->lo = map + page_size;
        st->size = size;
        return 0;
    }
    if (slab_left == 0) {
        char *slab = mmap(NULL, size * GR_SLAB_STACKS,
                          PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (slab == MAP_FAILED) {
            return -1;
        }
        slab_next = slab;
        slab_left = GR_SLAB_STACKS;
    }
    st->map = NULL;
    st->lo = slab_next;
    st->size = size;
    slab_next += size;
    slab_left--;
    return 0;
}

/* Get a stack.  Any thread, GIL or not.  Returns 0, or -1 when out of
 * memory (errno set). */
int
gr_stack_alloc(gr_stack *st)
{
    pthread_mutex_lock(&pool_lock);
    freestack *fs = pool;
    if (fs != NULL) {
        pool = fs->next;
        pool_len--;
        pthread_mutex_unlock(&pool_lock);
        /* The record lives in the stack's own top bytes: copy it out
         * before the first frame overwrites it. */
        *st = fs->st;
        redzone_fill(st);
        return 0;
    }
    int r = stack_map(st);
    pthread_mutex_unlock(&pool_lock);
    if (r == 0) {
        st->asan_fake = NULL;
        st->tsan_fiber = NULL;
        st->valgrind_id = 0;
#ifdef GR_VALGRIND
        st->valgrind_id = VALGRIND_STACK_REGISTER(st->lo, st->lo + st->size);
#endif
        redzone_fill(st);
    }
    return r;
}

/* Return a stack to the pool.  The goroutine that ran on it must be off
 * it for good.  Any thread. */
void
gr_stack_free(gr_stack *st)
{
    pthread_mutex_lock(&pool_lock);
    bool trim = pool_len >= GR_POOL_HOT;
    pthread_mutex_unlock(&pool_lock);
    if (trim) {
        /* Keep the top page: the free-list record lives there. */
        madvise(st->lo, st->size - page_size, MADV_DONTNEED);
    }
    freestack *fs = (freestack *)(st->lo + st->size - sizeof(freestack));
    fs->st = *st;
    pthread_mutex_lock(&pool_lock);
    fs->next = pool;
    pool = fs;
    pool_len++;
    pthread_mutex_unlock(&pool_lock);
}

/* A red zone that is not intact means the goroutine wrote below its
 * stack: nothing that runs afterwards can be trusted, so stop loudly.
 * Runs on g0 after every switch away from a goroutine. */
void
gr_stack_check(gr_stack *st, uint64_t goid)
{
    /* The stack grows down, so an overflow crosses the top of the red
     * zone first: its highest cache line is the one to check, cheaply, at
     * every switch. */
    const uint64_t *top = (const uint64_t *)(st->lo + GR_REDZONE - 64);
    const uint64_t pat = 0x0101010101010101ull * GR_REDZONE_BYTE;
    uint64_t diff = 0;
    for (int i = 0; i < 8; i++) {
        diff |= top[i] ^ pat;
    }
    if (diff != 0) {
        char msg[96];
        snprintf(msg, sizeof msg,
                 "goroutine: stack overflow in goroutine %llu",
                 (unsigned long long)goid);
        Py_FatalError(msg);
    }
}

/* A context that, when switched to, calls entry(arg) on `st`: the start
 * of goroutine `goid`.  Called by the goroutine's creator, GIL held.
 *
 * TSan: every goroutine is a fiber of its own from here until
 * gr_ctx_done.  TSan keeps a shadow call stack per fiber, which must
 * follow the real stack across gr_ctx_switch, and names the goroutine in
 * reports.  Creating the fiber here, on the creator's thread, gives the
 * edge "go() happens before the goroutine starts", as in Go's memory
 * model. */
void
gr_ctx_make(gr_ctx *ctx, gr_stack *st, void (*entry)(void *), void *arg,
            uint64_t goid)
{
    gr_ctx_init(ctx, st->lo, st->size, entry, arg);
#ifdef GR_TSAN
    st->tsan_fiber = __tsan_create_fiber(0);
    char name[32];
    snprintf(name, sizeof name, "goroutine %llu", (unsigned long long)goid);
    __tsan_set_fiber_name(st->tsan_fiber, name);
#else
    (void)goid;
#endif
}

/* The goroutine started on `st` by gr_ctx_make has finished and switched
 * away for good; the stack may serve another one.  On g0. */
void
gr_ctx_done(gr_stack *st)
{
#ifdef GR_TSAN
    /* A dead goroutine's fiber is never switched to again; destroying it
     * keeps TSan's live fibers equal to the live goroutines (pooled dead
     * Gs would otherwise each keep a thread's worth of TSan state). */
    __tsan_destroy_fiber(st->tsan_fiber);
    st->tsan_fiber = NULL;
#else
    (void)st;
#endif
}

/* TSan's fiber for the calling OS thread's own stack: an M's g0.  NULL
 * in other builds. */
void *
gr_switch_fiber_self(void)
{
#ifdef GR_TSAN
    return __tsan_get_current_fiber();
#else
    return NULL;
#endif
}

/* Right before gr_ctx_switch to the stack [lo, lo + size) whose TSan
 * fiber is `fiber`.  ASan: saves the current fake stack in *fake (NULL:
 * the current stack is being left for good).  TSan: nothing instrumented
 * may run between this and the switch, or it is charged to `fiber`. */
void
gr_switch_annotate_begin(void **fake, const char *lo, size_t size,
                         void *fiber)
{
#ifdef GR_ASAN
    __sanitizer_start_switch_fiber(fake, lo, size);
#else
    (void)fake; (void)lo; (void)size;
#endif
#ifdef GR_TSAN
    /* Synchronizing (flags 0): the switch is a handoff within one OS
     * thread, so everything before it happens before everything after
     * it.  A goroutine resumed on another M is still ordered after its
     * previous run only through the runtime's own synchronization (the
     * run queues, the locks its waker took), which TSan checks on the
     * g0 side. */
    __tsan_switch_to_fiber(fiber, 0);
#else
    (void)fiber;
#endif
}

/* Go's park runs the goroutine's unlock function on g0, after the switch:
 * a lock the goroutine took is released by another TSan fiber, which TSan
 * reports as "unlock of an unlocked mutex (or by a wrong thread)" and,
 * worse, then drops the release, so later holders would not be ordered
 * after this one.  So the parking goroutine hands each such lock to g0
 * explicitly: out on the goroutine right before gr_park, in on g0 at the
 * start of the unlock function.  That is what really happens -- the lock
 * is held throughout and g0 releases it -- and TSan then sees one owner
 * for every lock/unlock pair.  No-ops outside the TSan build. */
void
gr_lock_handoff_out(pthread_mutex_t *mu)
{
#ifdef GR_TSAN
    __tsan_mutex_pre_unlock(mu, 0);
    __tsan_mutex_post_unlock(mu, 0);
#else
    (void)mu;
#endif
}

void
gr_lock_handoff_in(pthread_mutex_t *mu)
{
#ifdef GR_TSAN
    __tsan_mutex_pre_lock(mu, 0);
    __tsan_mutex_post_lock(mu, 0, 0);
#else
    (void)mu;
#endif
}

void
gr_switch_annotate_end(void *fake)
{
#ifdef GR_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
    (void)fake;
#endif
}
