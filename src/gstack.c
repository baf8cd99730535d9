/*
 * gstack.c: goroutine C stacks, their pool, the stack-overflow report, and
 * the context a new stack starts in.
 *
 * Layout of one slot (the stack grows down; a slot spans whole 2 MiB
 * units but starts GR_TOP_ROOM into one, see "Page tables" below):
 *
 *     [... margin ...][guard][slack][...... C stack ......][frames ..]
 *      ^slot            ^slot + GR_GAP ^lo          lo + size^    ^top
 *
 * The C stack has the size configured (the recursion budgets are fitted to
 * it); the slack is what rounding the slot to whole units leaves over.
 * The C stack starts below GR_FRAME_AREA (core.h), where pystate.c puts
 * the thread state's first frame-data chunk: a parked goroutine's C frames
 * and its Python frames then share one page.
 *
 * Page tables: every resident page needs its 2 MiB unit's page-table page
 * (4 KiB), and so does every guard marker.  A parked goroutine touches
 * only the top of its stack, so its stack top and the next slot's guard
 * are placed in one 2 MiB unit: the top sits GR_TOP_ROOM into a unit, the
 * next slot's margin and guard fill the rest of it (GR_GAP).  One page-
 * table page per goroutine instead of two.  Trimming a slot (below) frees
 * a shared unit's page-table page only when the neighbour sharing it is
 * idle too, so each slab keeps a byte per slot saying which are (slabrec).
 *
 * Size: as large as a thread's stack (RLIMIT_STACK, at least 8 MiB), so
 * CPython's own recursion budget for a thread is safe for a goroutine too
 * (pystate.c scales it down for a smaller GOROUTINE_STACK_KB).  Virtual
 * address space is cheap on 64-bit: only touched pages are resident
 * (MAP_NORESERVE, MADV_NOHUGEPAGE).
 *
 * Guards: vm.max_map_count defaults to 65530 and a PROT_NONE guard splits
 * a mapping, so guard VMAs would cap a process near 32k goroutines.  With
 * MADV_GUARD_INSTALL (Linux 6.13+) every stack gets a guard region that
 * costs no VMA; slots are carved from ~1 GiB slabs, one VMA for many.
 * Without it, the first max_map_count/8 stacks get a PROT_NONE VMA (and
 * are preferred from the pool); the rest rely on the untouched margin and
 * a red zone of known bytes checked at every switch away from the
 * goroutine.  Invariant: an overflow of less than the margin never writes
 * into another goroutine's memory.
 *
 * Overflow report: a SIGSEGV/SIGBUS handler, on each M's alternate signal
 * stack, recognises a fault inside the running goroutine's slot below its
 * stack and prints Go's "goroutine N: stack overflow" with the goroutine's
 * Python traceback, then aborts; other faults go to the previous handler.
 *
 * Memory: a freed stack goes back to a LIFO pool (records out of line) so
 * a hot go() costs no mmap; beyond GR_POOL_HOT pooled stacks a freed one
 * gets a fresh mapping over its slot, which gives back its pages and page
 * tables.  sched.c bounds the dead Gs that hold stacks.
 *
 * Locking: pool_lock guards the pool, the slab cursor and the counters; it
 * is a leaf lock, taken with or without the GIL, from any thread.  mark_ok
 * is read without it (relaxed atomics).
 */
#define _GNU_SOURCE 1
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
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
#include <sanitizer/asan_interface.h>    /* __asan_handle_no_return */
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

/* Sizes, with why (measurements in docs/design.md, "Goroutine stacks").
 *
 * GR_STACK_FULL (core.h): CPython's default recursion budgets (the
 * recursion limit of 1000 on 3.10/3.11, the C recursion limit of
 * 3.12/3.13) are what the main thread runs with on its 8 MiB stack, and
 * what threading.Thread runs with on the pthread default (RLIMIT_STACK,
 * 8 MiB here).  A goroutine stack at least this large keeps that budget
 * unchanged, so whatever a thread survives a goroutine survives.  Smaller
 * stacks (GOROUTINE_STACK_KB) get a budget scaled down in pystate.c.
 *
 * GR_SLOT_ALIGN: every slot starts on a 2 MiB boundary and spans whole
 * 2 MiB units, so replacing a slot's mapping (trim) frees its page-table
 * pages too, not just its pages.
 *
 * GR_MARGIN_MIN: never-touched address space below every stack.  Its top
 * GR_GUARD bytes are a guard region (MADV_GUARD_INSTALL, Linux 6.13+: a
 * guard that costs no VMA), or, without it, the stack's own PROT_NONE VMA
 * for the first max_map_count/8 stacks; the rest is untouched margin, so
 * an overflow that skips the guard still lands on nobody's memory. */
#define GR_STACK_MIN_KB 256u
#define GR_STACK_MAX_KB (1024u * 1024u)
#define GR_SLOT_ALIGN (2u * 1024u * 1024u)
#define GR_MARGIN_MIN (1024u * 1024u)
#define GR_GUARD (64u * 1024u)
/* Margin and guard below every stack: the rest of the 2 MiB unit its
 * neighbour's top sits GR_TOP_ROOM into. */
#define GR_TOP_ROOM (512u * 1024u)
#define GR_GAP (GR_SLOT_ALIGN - GR_TOP_ROOM)
_Static_assert(GR_GAP >= GR_MARGIN_MIN + GR_GUARD,
               "the margin below every stack is at least GR_MARGIN_MIN");
_Static_assert(GR_TOP_ROOM >= 2 * GR_FRAME_AREA,
               "a parked goroutine's top pages fit in its top unit");
#define GR_SLAB_BYTES ((size_t)1 << 30)
#define GR_REDZONE 256u
#define GR_REDZONE_BYTE 0xA5
#define GR_POOL_HOT 256
#define GR_ALTSTACK (256u * 1024u)

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

enum { GUARD_NONE, GUARD_MARK, GUARD_VMA };

/* A pooled stack: the slot is kept (slab address space is never given
 * back, it costs nothing once trimmed), only its record lives here, out of
 * line, so that a trimmed stack has no resident page at all. */
typedef struct {
    char *lo;
    unsigned valgrind_id;
    unsigned char guard;        /* GUARD_*: what guards it right now */
    bool trimmed;               /* pages and page tables given back */
} poolent;

typedef struct {
    poolent *v;
    size_t len, cap;
} poolvec;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static poolvec pool_guarded;     /* guarded (or guardable) stacks, LIFO */
static poolvec pool_bare;        /* slab stacks that can have no guard */
static size_t pool_hot;          /* pooled stacks not trimmed */
static size_t nvmaguarded;       /* stacks with a guard VMA of their own */
static size_t nvmaguard_max;     /* max_map_count / 8, read at run time */
static int mark_ok = -1;         /* MADV_GUARD_INSTALL works: -1 unknown;
                                    relaxed atomics (read unlocked) */
/* A slab, and which of its slots hold no goroutine's pages: never handed
 * out, or trimmed.  Sorted by base, highest first (binary search by
 * address; a new slab is usually mapped below the others, at the end). */
typedef struct {
    char *base;                 /* GR_SLOT_ALIGN-aligned */
    size_t n;                   /* slots: slot k at base + GR_TOP_ROOM +
                                   k * slot_size */
    unsigned char *idle;        /* n bytes */
} slabrec;

static slabrec *slabs;           /* pool_lock */
static size_t nslabs, capslabs;
static char *slab_last;          /* the current slab's start */
static char *slab_next;          /* next unused slot in the current slab */
static size_t slab_left;         /* slots left in it */
static size_t stack_size;        /* C stack bytes, set once */
static size_t slot_size;         /* gap + stack, GR_SLOT_ALIGN units */
static size_t page_size;
static const char *size_error;   /* GOROUTINE_STACK_KB was bad */

/* The default: as large as a thread's stack (RLIMIT_STACK, which glibc
 * uses for pthread stacks), at least GR_STACK_FULL. */
static size_t
thread_stack_size(void)
{
    struct rlimit rl;
    size_t sz = GR_STACK_FULL;
    if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
            && rl.rlim_cur > sz) {
        sz = rl.rlim_cur;
    }
    if (sz > (size_t)GR_STACK_MAX_KB * 1024u) {
        sz = (size_t)GR_STACK_MAX_KB * 1024u;
    }
    return sz;
}

static size_t
stack_bytes(void)
{
    if (stack_size == 0) {
        page_size = (size_t)sysconf(_SC_PAGESIZE);
        size_t sz = thread_stack_size();
        const char *env = getenv("GOROUTINE_STACK_KB");
        if (env != NULL && *env != '\0') {
            char *end;
            errno = 0;
            long long kb = strtoll(env, &end, 10);
            if (errno != 0 || *end != '\0' || kb < GR_STACK_MIN_KB
                    || kb > GR_STACK_MAX_KB) {
                size_error = "GOROUTINE_STACK_KB must be an integer from "
                             "256 to 1048576 (KiB)";
            }
            else {
                sz = (size_t)kb * 1024u;
            }
        }
        sz = (sz + page_size - 1) & ~(page_size - 1);
        slot_size = (sz + GR_FRAME_AREA + GR_GAP + GR_SLOT_ALIGN - 1)
                    & ~(size_t)(GR_SLOT_ALIGN - 1);
        stack_size = sz;
    }
    return stack_size;
}

/* NULL, or why GOROUTINE_STACK_KB was rejected (module init raises). */
const char *
gr_stack_config_error(void)
{
    stack_bytes();
    return size_error;
}

static size_t
read_max_map_count(void)
{
    size_t n = 65530;
    int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[32];
        ssize_t r = read(fd, buf, sizeof buf - 1);
        if (r > 0) {
            buf[r] = '\0';
            long long v = strtoll(buf, NULL, 10);
            if (v > 0) {
                n = (size_t)v;
            }
        }
        close(fd);
    }
    return n;
}

/* Only unguarded stacks have a red zone: a guarded one faults at the
 * first byte below it, and writing the red zone would cost a resident page
 * and a page-table page at the far end of every stack (measured: 8 KiB of
 * the 20 per parked goroutine). */
static void
redzone_fill(gr_stack *st)
{
    if (st->guard == GUARD_NONE) {
        memset(st->lo, GR_REDZONE_BYTE, GR_REDZONE);
    }
}

static char *
slot_of(const char *lo)
{
    return (char *)lo + stack_size + GR_FRAME_AREA - slot_size;
}

/* The end of the guard region below the stack at lo (the slack's start). */
static char *
guard_end(const char *lo)
{
    return slot_of(lo) + GR_GAP;
}

/* Fresh anonymous memory that never gets a huge page (a 2 MiB page behind
 * a stack would make every parked goroutine cost 2 MiB). */
static void *
map_anon(void *addr, size_t len, int prot, int fixed)
{
    void *m = mmap(addr, len, prot,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | fixed,
                   -1, 0);
    if (m != MAP_FAILED) {
        (void)madvise(m, len, MADV_NOHUGEPAGE);
    }
    return m;
}

/* Guard the stack at lo (GR_GUARD bytes below its slack) with guard
 * markers.  pool_lock not needed. */
static bool
guard_mark(char *lo)
{
    if (__atomic_load_n(&mark_ok, __ATOMIC_RELAXED) == 0) {
        return false;
    }
    if (madvise(guard_end(lo) - GR_GUARD, GR_GUARD, MADV_GUARD_INSTALL)
            == 0) {
        __atomic_store_n(&mark_ok, 1, __ATOMIC_RELAXED);
        return true;
    }
    /* EINVAL: the kernel predates guard regions. */
    __atomic_store_n(&mark_ok, 0, __ATOMIC_RELAXED);
    return false;
}

/* Register a new slab, all of its slots idle.  pool_lock held. */
static int
slab_add(char *base, size_t n)
{
    if (nslabs == capslabs) {
        size_t cap = capslabs ? capslabs * 2 : 64;
        slabrec *v = realloc(slabs, cap * sizeof *v);
        if (v == NULL) {
            return -1;
        }
        slabs = v;
        capslabs = cap;
    }
    unsigned char *idle = malloc(n);
    if (idle == NULL) {
        return -1;
    }
    memset(idle, 1, n);
    size_t i = nslabs;
    while (i > 0 && slabs[i - 1].base < base) {
        i--;
    }
    memmove(&slabs[i + 1], &slabs[i], (nslabs - i) * sizeof *slabs);
    slabs[i] = (slabrec){.base = base, .n = n, .idle = idle};
    nslabs++;
    return 0;
}

/* The slab holding the stack whose slack starts at `p` (guard_end), and
 * its slot index in *k; NULL for a stack of its own mapping.  pool_lock
 * held. */
static slabrec *
slab_find(const char *p, size_t *k)
{
    /* The first slab (highest first) whose base is <= p. */
    size_t lo = 0, hi = nslabs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (slabs[mid].base > p) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    if (lo == nslabs) {
        return NULL;
    }
    slabrec *r = &slabs[lo];
    const char *first = r->base + GR_TOP_ROOM;
    if (p < first + GR_GAP || p >= first + r->n * slot_size) {
        return NULL;
    }
    *k = (size_t)(p - first) / slot_size;
    return r;
}

/* Mark the slab slot whose slack starts at `p` idle or in use; pool_lock
 * held. */
static slabrec *
slab_set_idle(const char *p, unsigned char idle)
{
    size_t k;
    slabrec *r = slab_find(p, &k);
    if (r != NULL) {
        r->idle[k] = idle;
    }
    return r;
}

/* Fresh memory for one stack; pool_lock held. */
static int
stack_map(gr_stack *st)
{
    size_t size = stack_bytes();
    if (nvmaguard_max == 0) {
        nvmaguard_max = read_max_map_count() / 8;
        /* Tests exercise the path for kernels without guard regions. */
        const char *e = getenv("GR_TEST_NO_GUARD_REGIONS");
        if (e != NULL && *e != '\0') {
            __atomic_store_n(&mark_ok, 0, __ATOMIC_RELAXED);
        }
    }
    if (__atomic_load_n(&mark_ok, __ATOMIC_RELAXED) == 0
            && nvmaguarded < nvmaguard_max) {
        /* No guard markers: a slot of its own, PROT_NONE below the
         * stack (two VMAs). */
        char *map = map_anon(NULL, slot_size, PROT_NONE, 0);
        if (map == MAP_FAILED) {
            return -1;
        }
        char *lo = map + slot_size - GR_FRAME_AREA - size;
        if (mprotect(map + GR_GAP, slot_size - GR_GAP,
                     PROT_READ | PROT_WRITE) != 0) {
            munmap(map, slot_size);
            return -1;
        }
        nvmaguarded++;
        st->map = map;
        st->lo = lo;
        st->size = size;
        st->guard = GUARD_VMA;
        return 0;
    }
    if (slab_left == 0) {
        /* Slabs of about 1 GiB, one VMA each (adjacent slabs usually
         * merge into one), aligned to GR_SLOT_ALIGN.  Slot k starts at
         * slab + GR_TOP_ROOM + k * slot_size, so the slab has one more
         * unit than its slots fill. */
        size_t n = GR_SLAB_BYTES / slot_size;
        if (n == 0) {
            n = 1;
        }
        size_t len = n * slot_size + GR_SLOT_ALIGN;
        char *slab = NULL;
        if (slab_last != NULL && (uintptr_t)slab_last > len) {
            /* Right below the previous slab (mmap allocates top-down):
             * already aligned, and the two merge into one VMA. */
            char *hint = slab_last - len;
            char *m = map_anon(hint, len, PROT_READ | PROT_WRITE, 0);
            if (m == hint) {
                slab = m;
            }
            else if (m != MAP_FAILED) {
                munmap(m, len);
            }
        }
        if (slab == NULL) {
            char *raw = map_anon(NULL, len + GR_SLOT_ALIGN,
                                 PROT_READ | PROT_WRITE, 0);
            if (raw == MAP_FAILED) {
                return -1;
            }
            slab = gr_map_trim(raw, len, GR_SLOT_ALIGN);
        }
        if (slab_add(slab, n) < 0) {
            munmap(slab, len);
            errno = ENOMEM;
            return -1;
        }
        slab_last = slab;
        slab_next = slab + GR_TOP_ROOM;
        slab_left = n;
    }
    slab_set_idle(slab_next + GR_GAP, 0);
    st->map = NULL;
    st->lo = slab_next + slot_size - GR_FRAME_AREA - size;
    st->size = size;
    st->guard = GUARD_NONE;
    slab_next += slot_size;
    slab_left--;
    return 0;
}

static int
poolvec_push(poolvec *pv, poolent e)
{
    if (pv->len == pv->cap) {
        size_t cap = pv->cap ? pv->cap * 2 : 256;
        poolent *v = realloc(pv->v, cap * sizeof *v);
        if (v == NULL) {
            return -1;
        }
        pv->v = v;
        pv->cap = cap;
    }
    pv->v[pv->len++] = e;
    return 0;
}

/* Get a stack.  Any thread, GIL or not.  Returns 0, or -1 when out of
 * memory (errno set).  Guarded stacks are preferred. */
int
gr_stack_alloc(gr_stack *st)
{
    pthread_mutex_lock(&pool_lock);
    poolvec *pv = pool_guarded.len > 0 ? &pool_guarded
                : pool_bare.len > 0 ? &pool_bare : NULL;
    if (pv != NULL) {
        poolent e = pv->v[--pv->len];
        if (!e.trimmed) {
            pool_hot--;
        }
        else if (e.guard != GUARD_VMA) {
            /* In use again before the lock is let go: a neighbour's trim
             * must leave the units we share alone from now on. */
            slab_set_idle(guard_end(e.lo), 0);
        }
        pthread_mutex_unlock(&pool_lock);
        memset(st, 0, sizeof *st);
        st->lo = e.lo;
        st->size = stack_bytes();
        st->map = e.guard == GUARD_VMA ? slot_of(e.lo) : NULL;
        st->guard = e.guard;
        st->valgrind_id = e.valgrind_id;
        if (st->guard == GUARD_NONE && guard_mark(st->lo)) {
            st->guard = GUARD_MARK;      /* trimmed: markers went too */
        }
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
        st->valgrind_id = VALGRIND_STACK_REGISTER(st->lo,
                                                  st->lo + stack_size
                                                  + GR_FRAME_AREA);
#endif
        if (st->guard == GUARD_NONE && guard_mark(st->lo)) {
            st->guard = GUARD_MARK;
        }
        redzone_fill(st);
    }
    return r;
}

/* Give a pooled stack's pages and page tables back: a fresh mapping over
 * the old one (MAP_FIXED replaces it atomically; madvise(MADV_DONTNEED)
 * would keep the page tables, 4 KiB or more per stack).  A slab slot is
 * replaced whole, guard markers included, so the slot's own page-table
 * pages go too; the markers come back when the stack is reused.  Returns
 * the guard the stack has afterwards. */
static unsigned char
stack_trim(char *lo, unsigned char guard)
{
    char *slot = slot_of(lo);
    if (guard == GUARD_VMA) {
        char *rw = guard_end(lo);
        size_t len = slot_size - GR_GAP;
        if (map_anon(rw, len, PROT_READ | PROT_WRITE, MAP_FIXED)
                == MAP_FAILED) {
            (void)madvise(rw, len, MADV_DONTNEED);
        }
        return GUARD_VMA;
    }
    if (map_anon(slot, slot_size, PROT_READ | PROT_WRITE, MAP_FIXED)
            == MAP_FAILED) {
        (void)madvise(guard_end(lo), slot_size - GR_GAP, MADV_DONTNEED);
        return guard;
    }
    /* That freed the page-table pages of the units the slot covers whole,
     * not of the two it shares with its neighbours (its guard's and its
     * top's): trim_shared does, once both sharers are idle. */
    return GUARD_NONE;
}

/* A slab slot (slack at `p`) was trimmed: mark it idle, and give back
 * the page-table page of each unit it shares with a neighbour that is
 * idle too, by mapping the whole unit afresh (the pages in it are all
 * gone already; a neighbour in use, or taken from the pool, is marked so
 * under pool_lock, which is held here).  The first slot's lower unit and
 * the last one's upper unit are shared with nobody. */
static void
trim_shared(const char *p)
{
    size_t k;
    slabrec *r = slab_set_idle(p, 1);
    if (r == NULL || slab_find(p, &k) != r) {
        return;
    }
    char *unit = r->base + k * slot_size;       /* below: guard's unit */
    if (k == 0 || r->idle[k - 1]) {
        (void)map_anon(unit, GR_SLOT_ALIGN, PROT_READ | PROT_WRITE,
                       MAP_FIXED);
    }
    unit += slot_size;                          /* above: top's unit */
    if (k + 1 == r->n || r->idle[k + 1]) {
        (void)map_anon(unit, GR_SLOT_ALIGN, PROT_READ | PROT_WRITE,
                       MAP_FIXED);
    }
}

/* Return a stack to the pool.  The goroutine that ran on it must be off
 * it for good.  Any thread, GIL or not.  Beyond GR_POOL_HOT pooled
 * stacks, the stack is trimmed first (Go frees idle stacks the same way). */
void
gr_stack_free(gr_stack *st)
{
    pthread_mutex_lock(&pool_lock);
    bool trim = pool_hot >= GR_POOL_HOT;
    if (!trim) {
        pool_hot++;     /* reserve the slot now: frees race for it */
    }
    pthread_mutex_unlock(&pool_lock);
    poolent e = {
        .lo = st->lo,
        .valgrind_id = st->valgrind_id,
        .guard = (unsigned char)st->guard,
        .trimmed = trim,
    };
    if (trim) {
        e.guard = stack_trim(st->lo, e.guard);
    }
    pthread_mutex_lock(&pool_lock);
    if (trim && st->guard != GUARD_VMA) {
        trim_shared(guard_end(st->lo));
    }
    bool guarded = e.guard != GUARD_NONE
                   || __atomic_load_n(&mark_ok, __ATOMIC_RELAXED) == 1;
    if (poolvec_push(guarded ? &pool_guarded : &pool_bare, e) < 0) {
        /* No memory for the record: the stack's address space is lost,
         * but it holds no page once trimmed. */
        if (!trim) {
            pool_hot--;
        }
    }
    pthread_mutex_unlock(&pool_lock);
}

/* ---- stack overflow: the fatal error ---------------------------------
 *
 * A goroutine that overflows its stack faults in its guard region (or, on
 * the margin of an unguarded slab stack, is caught by the red zone at the
 * next switch).  SIGSEGV is taken on the M's alternate signal stack; a
 * fault between the bottom of the goroutine's slot and the top of its red
 * zone is reported like Go's "goroutine stack exceeds limit", with the
 * goroutine's Python traceback, and the process aborts.  Any other fault
 * goes to the handler that was there before (faulthandler's, the
 * sanitizers', or the default).  Only async-signal-safe calls in the
 * handler: write(), and CPython's faulthandler dump (gr_pystate_dump). */

static struct sigaction old_segv, old_bus;
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

/* Each M's alternate signal stack starts with this header, so that the
 * handler finds its M without thread-local storage (a module's TLS block
 * can be allocated lazily, which is not async-signal-safe). */
#define GR_ALT_MAGIC 0x676f726f75746e65ull
typedef struct {
    uint64_t magic;
    void *m;
    gr_stack_curg_fn curg;      /* what runs on m (sched.c's) */
} altheader;

static void
write_str(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) {
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static void
write_u64(uint64_t v)
{
    char buf[24];
    char *p = buf + sizeof buf;
    *--p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    write_str(p);
}

static void
overflow_report(uint64_t goid, PyThreadState *ts)
{
    write_str("fatal error: goroutine ");
    write_u64(goid);
    write_str(": stack overflow (stack exceeds the ");
    write_u64(stack_size);
    write_str("-byte limit)\n\nPython traceback of goroutine ");
    write_u64(goid);
    write_str(" (most recent call first):\n");
    if (ts != NULL) {
        gr_pystate_dump(2, ts);
    }
    write_str("\nRecursion through C code with large frames can use more "
              "stack than the recursion limit allows for; raise "
              "GOROUTINE_STACK_KB or recurse less.\n");
}

static void
chain(int sig, siginfo_t *si, void *uctx)
{
    struct sigaction *old = sig == SIGBUS ? &old_bus : &old_segv;
    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, si, uctx);
        return;
    }
    if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
        /* Returning re-runs the faulting instruction, which now gets the
         * default action (a core dump, as without us). */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        return;
    }
    old->sa_handler(sig);
}

static void
fault_handler(int sig, siginfo_t *si, void *uctx)
{
    int saved = errno;
    stack_t ss;
    if (sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK)
            && ss.ss_sp != NULL) {
        altheader *h = ss.ss_sp;
        uint64_t goid = 0;
        PyThreadState *ts = NULL;
        gr_stack *st = h->magic == GR_ALT_MAGIC ?
            h->curg(h->m, &goid, &ts) : NULL;
        char *addr = si->si_addr;
        if (st != NULL && st->lo != NULL && addr >= slot_of(st->lo)
                && addr < st->lo + GR_REDZONE) {
            overflow_report(goid, ts);
            abort();
        }
    }
    errno = saved;
    chain(sig, si, uctx);
}

static void
fault_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
}

/* On every new M, before it runs a goroutine: give this thread an
 * alternate signal stack that names `m` and how to find what runs on it
 * (`curg`, which the handler calls), and make sure the handler is
 * installed (once per process). */
void
gr_stack_thread_init(void *m, gr_stack_curg_fn curg)
{
    pthread_once(&fault_once, fault_install);
    char *alt = map_anon(NULL, GR_ALTSTACK, PROT_READ | PROT_WRITE, 0);
    if (alt == MAP_FAILED) {
        return;         /* overflows still trap, just without the report */
    }
    altheader *h = (altheader *)alt;
    h->magic = GR_ALT_MAGIC;
    h->m = m;
    h->curg = curg;
    stack_t ss = {.ss_sp = alt, .ss_size = GR_ALTSTACK, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(alt, GR_ALTSTACK);
    }
}

/* A red zone that is not intact means the goroutine wrote below its
 * stack: nothing that runs afterwards can be trusted, so stop loudly.
 * Runs on g0 after every switch away from a goroutine, whose thread state
 * is still current. */
void
gr_stack_check(gr_stack *st, uint64_t goid, PyThreadState *ts)
{
    /* The stack grows down, so an overflow crosses the top of the red
     * zone first: its highest cache line is the one to check, cheaply, at
     * every switch. */
    if (st->guard != GUARD_NONE) {
        return;
    }
    const uint64_t *top = (const uint64_t *)(st->lo + GR_REDZONE - 64);
    const uint64_t pat = 0x0101010101010101ull * GR_REDZONE_BYTE;
    uint64_t diff = 0;
    for (int i = 0; i < 8; i++) {
        diff |= top[i] ^ pat;
    }
    if (diff != 0) {
        overflow_report(goid, ts);
        abort();
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
 * may run between this and the switch, or it is charged to `fiber`.
 * That includes this function's own return: an instrumented function
 * would push its entry on the old fiber's shadow call stack and pop its
 * exit from the new one, one below a fresh fiber's first slot.  gcc 12's
 * TSan wrote there unnoticed; gcc 14+'s maps the shadow stack of each
 * fiber on its own, and the goroutine's first call faulted (every TSan
 * run on 3.14/3.15, whose sid root has gcc 16).  So this function is left
 * uninstrumented, and only calls out. */
#ifdef GR_TSAN
__attribute__((no_sanitize_thread))
#endif
void
gr_switch_annotate_begin(void **fake, const char *lo, size_t size,
                         void *fiber)
{
#ifdef GR_ASAN
    if (fake == NULL) {
        /* Leaving a dead goroutine's stack: its last frames never return,
         * so their redzones would stay poisoned in ASan's shadow, and the
         * next goroutine on this stack put uninstrumented CPython frames
         * there: its first memcpy into one (its first call's argument
         * array) was reported, and ASan died describing it (CHECK
         * asan_thread.cpp:371; test_preempt with preemption on, 3.13).
         * This unpoisons from here to the stack's top, the part that was
         * used (unpoisoning all 8 MiB wrote 1 MiB of shadow per dead
         * goroutine: test_burst_gives_memory_back's 8,000 kept 8 GB). */
        __asan_handle_no_return();
    }
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
