/*
 * pystate.c: a PyThreadState per goroutine, made current on whichever OS
 * thread runs it.  The ONLY file that touches CPython internals; every
 * version difference lives here.
 *
 * Why a thread state per goroutine: frames, the exception being handled,
 * recursion depth, contextvars and threading.local all hang off the
 * thread state, so giving each goroutine its own makes all of them per
 * goroutine for free, and lets a parked goroutine resume on another M.
 *
 * How it becomes current.  On 3.12 and 3.13, PyThreadState_Swap itself
 * drops and retakes the GIL, and the thread-local "current" pointer is not
 * exported, so there is no cheaper switch than PyEval_RestoreThread /
 * PyEval_SaveThread.  We use that pair on every version:
 *
 *     M (g0, no GIL) --enter(g)--> GIL held, g's tstate current --leave-->
 *
 * It also gives the invariant the migration needs: a goroutine's thread
 * state is attached to at most one OS thread, and it is detached before the
 * goroutine becomes visible to wakers (sched.c runs the park's unlock
 * function after leave).
 *
 * What CPython does not fix up for us, per version:
 *   - which thread state PyGILState_Ensure finds for this OS thread.  It
 *     must be the goroutine's while it runs, or a ctypes callback inside a
 *     goroutine takes the GIL for the M's own thread state and deadlocks.
 *     3.10/3.11 keep it under the TSS key _PyRuntime.gilstate.autoTSSkey,
 *     3.12-3.14 under _PyRuntime.autoTSSkey, and 3.12+ rebind it by
 *     themselves on activation when the thread state's bound_gilstate bit
 *     is clear, so there we only clear the bit on leave and point the key
 *     back at the M's thread state.  3.15 keeps it in a C thread-local
 *     (_Py_tss_gilstate) that is neither in the headers nor exported, so
 *     it cannot be pointed back: see gr_pystate_leave.
 *   - thread_id / native_thread_id, which say where a thread state runs
 *     (faulthandler, sys._current_frames): set on every enter.
 *   - recursion budgets, fitted to the goroutine's C stack.  3.14+ check
 *     C recursion against the machine stack pointer, with bounds kept per
 *     thread state and filled lazily from the OS thread's stack -- the M's,
 *     not the goroutine's: we set them to the goroutine's stack when the
 *     thread state is bound to it (3.15 has an API for it,
 *     PyUnstable_ThreadState_SetStackProtection; on 3.14 we write the
 *     fields it writes).  Up to 3.13: a thread's budget on a thread-sized
 *     stack, less on a smaller one.  3.12/3.13 count C recursion per
 *     thread state (c_recursion_remaining); 3.10/3.11 count Python calls,
 *     each of which can cost C stack, so their depth starts biased.
 *   - the stack-overflow report: a goroutine's Python traceback written
 *     from a signal handler (gr_pystate_dump).
 *
 * All functions here run with the GIL held except gr_pystate_enter, which
 * takes it.
 */
#define Py_BUILD_CORE 1
#include "core.h"
#include "internal/pycore_runtime.h"
#if PY_VERSION_HEX >= 0x030E0000
#include "internal/pycore_interpframe.h"   /* frames for the overflow report */
#elif PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#else
#include "frameobject.h"
#include "internal/pycore_interp.h"     /* tstate_head */
#endif
#if PY_VERSION_HEX >= 0x030C0000
#include "internal/pycore_ceval.h"      /* _PyEval_AddPendingCall */
#endif
#include <limits.h>
#include <sched.h>
#include <unistd.h>
#if PY_VERSION_HEX >= 0x030E0000
#include "internal/pycore_tstate.h"     /* _PyThreadStateImpl */
#include "internal/pycore_pythonrun.h"  /* _PyOS_STACK_MARGIN_BYTES */
#endif

#ifdef Py_GIL_DISABLED
#error "goroutine does not support free-threaded CPython: see docs/design.md"
#endif
#if PY_VERSION_HEX >= 0x03100000
#error "goroutine: CPython 3.16+ is not supported yet: pystate.c must be checked against its thread states first"
#endif

#if PY_VERSION_HEX >= 0x030F0000
/* No key: the gilstate is a C thread-local of CPython's (gr_pystate_leave). */
#elif PY_VERSION_HEX >= 0x030C0000
#define GILSTATE_KEY (&_PyRuntime.autoTSSkey)
#else
#define GILSTATE_KEY (&_PyRuntime.gilstate.autoTSSkey)
#endif

#if PY_VERSION_HEX >= 0x030C0000
/* ts->_status is one word of bit-fields.  Only the thread the thread state
 * is attached to writes it (CPython on attach and detach, gr_pystate_leave
 * here), but sysmon reads its `active` bit from another thread without the
 * GIL.  Plain bit-field accesses there would be a data race (TSan reported
 * it on 3.12/3.13), so every access from this file loads or stores the
 * whole word with relaxed atomics: sysmon reads a stale-at-worst hint, and
 * the owner's read-modify-write stays its own (no other thread writes the
 * word while it is attached).  CPython's own stores are plain, but they are
 * aligned word stores made by the owner thread. */
typedef __typeof__(((PyThreadState *)NULL)->_status) status_bits;
_Static_assert(sizeof(status_bits) == sizeof(uint32_t),
               "PyThreadState._status is expected to be one 32-bit word");

static status_bits
status_load(PyThreadState *ts)
{
    uint32_t w = __atomic_load_n((uint32_t *)&ts->_status, __ATOMIC_RELAXED);
    status_bits s;
    memcpy(&s, &w, sizeof s);
    return s;
}

static void
status_store(PyThreadState *ts, status_bits s)
{
    uint32_t w;
    memcpy(&w, &s, sizeof w);
    __atomic_store_n((uint32_t *)&ts->_status, w, __ATOMIC_RELAXED);
}
#endif

/* Recursion budgets.  A goroutine stack of at least GR_STACK_FULL
 * (8 MiB: the main thread's and threading.Thread's stack here) keeps the
 * budget a thread has on this version, unchanged: CPython's defaults are
 * what it considers safe on such a stack, and a goroutine is then exactly
 * as safe as a thread.  A smaller stack (GOROUTINE_STACK_KB) gets
 * (size - STACK_RESERVE) / STACK_PER_LEVEL levels.  Measured on x86-64
 * (the frame address read through ctypes at two depths): recursion
 * through sorted(key=...) costs 5.0 KiB of C stack per step on 3.11 and
 * 5.2 KiB on 3.13, which CPython counts as 3 levels (3.11) or about 4
 * (3.13 C levels): up to 1.7 KiB per counted level, the worst we know;
 * 3 KiB keeps a 1.8x margin. */
#define STACK_PER_LEVEL 3072
/* Bytes kept free for the runtime's own frames, the parser and C code at
 * the leaf (compile() of 40 nested brackets needs ~50 KiB on 3.10). */
#define STACK_RESERVE (96 * 1024)

/* ---- which thread states the interpreter lists ------------------------
 *
 * faulthandler's dump and sys._current_frames walk the interpreter's list
 * of thread states, newest first, as threads (faulthandler stops after
 * 100).  A dead goroutine's thread state waits in sched.c's pool for the
 * next go(), and a burst leaves a thousand of them: listed, they were
 * dumped as a thousand frameless "threads" ahead of the main thread,
 * which fell past faulthandler's limit.  So (docs/design.md, "What
 * faulthandler and sys._current_frames show"):
 *
 *   - a pooled thread state is not listed (gr_pystate_unlist when its
 *     goroutine ends, gr_pystate_list when a go() takes it again);
 *   - a live goroutine's is listed at the tail, after every OS thread's,
 *     so the threads always come first in a dump;
 *   - a parked goroutine's says it runs on no thread (thread_id 0, set by
 *     gr_pystate_leave), so sys._current_frames()[ident] is what that
 *     thread runs now, never a goroutine that once ran there.
 *
 * Invariant (under CPython's HEAD_LOCK): the listed goroutine thread
 * states are the last `nlisted` of the list, ending at `gtail`
 * (NULL iff nlisted == 0).  It holds because CPython only ever inserts
 * at the head, and deletes only thread states of OS threads (ours are
 * deleted through gr_pystate_delete, from the pool, unlisted) -- except
 * at fork, where the child keeps only the forking thread's (see
 * gr_pystate_after_fork), and at finalization, after which goroutines
 * never run again and nothing here touches the list
 * (gr_pystate_finalizing). */
static PyThreadState *gtail;
static long nlisted;

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
/* CPython's HEAD_LOCK is a PyMutex from 3.13, atomics inside libpython,
 * which TSan does not see: an M's PyThreadState_New links its state under
 * it, and gr_pystate_new below writes that state's list links under it.
 * The M's side is announced as a release on the lock (gr_pystate_new_m)
 * and list_lock acquires it, so TSan sees the order the lock gives. */
#define LIST_TSAN_RELEASE() __tsan_release(&_PyRuntime.interpreters.mutex)
#define LIST_TSAN_ACQUIRE() __tsan_acquire(&_PyRuntime.interpreters.mutex)
#else
#define LIST_TSAN_RELEASE() ((void)0)
#define LIST_TSAN_ACQUIRE() ((void)0)
#endif

#if PY_VERSION_HEX >= 0x030D0000
/* CPython's HEAD_LOCK, a PyMutex from 3.13.  Its slow path
 * (_PyMutex_LockTimed) is not exported on 3.13, and the exported
 * PyMutex_Lock would detach our thread state while it waits (sysmon would
 * then take the P).  So take the lock bit as that slow path does, keeping
 * the has-parked bit, and yield while it is held: its holders never wait
 * for the GIL, and hold it for a few pointer writes.  PyMutex_Unlock
 * (exported) wakes a parked waiter if the bit says there is one. */
static void
list_lock(void)
{
    uint8_t *bits = &_PyRuntime.interpreters.mutex._bits;
    for (;;) {
        uint8_t v = __atomic_load_n(bits, __ATOMIC_RELAXED);
        if ((v & 1) == 0 &&
            __atomic_compare_exchange_n(bits, &v, (uint8_t)(v | 1), false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            LIST_TSAN_ACQUIRE();
            return;
        }
        sched_yield();
    }
}
#define LIST_LOCK() list_lock()
#define LIST_UNLOCK() PyMutex_Unlock(&_PyRuntime.interpreters.mutex)
#else
#define LIST_LOCK() PyThread_acquire_lock(_PyRuntime.interpreters.mutex, \
                                          WAIT_LOCK)
#define LIST_UNLOCK() PyThread_release_lock(_PyRuntime.interpreters.mutex)
#endif

static PyThreadState **
list_head(PyInterpreterState *interp)
{
#if PY_VERSION_HEX >= 0x030B0000
    return &interp->threads.head;
#else
    return &interp->tstate_head;
#endif
}

/* List lock held. */
static void
unlink_locked(PyThreadState *ts)
{
    if (ts->prev != NULL) {
        ts->prev->next = ts->next;
    }
    else {
        *list_head(ts->interp) = ts->next;
    }
    if (ts->next != NULL) {
        ts->next->prev = ts->prev;
    }
    ts->prev = ts->next = NULL;
}

/* List lock held; ts on no list. */
static void
link_head_locked(PyThreadState *ts)
{
    PyThreadState **head = list_head(ts->interp);
    ts->prev = NULL;
    ts->next = *head;
    if (*head != NULL) {
        (*head)->prev = ts;
    }
    *head = ts;
}

/* List lock held; ts on no list.  Walks the OS threads' states only when
 * no goroutine's is listed (a handful: the threads and the Ms). */
static void
link_tail_locked(PyThreadState *ts)
{
    PyThreadState *last = gtail;
    if (last == NULL) {
        last = *list_head(ts->interp);
        while (last != NULL && last->next != NULL) {
            last = last->next;
        }
    }
    if (last == NULL) {
        link_head_locked(ts);
    }
    else {
        ts->prev = last;
        ts->next = NULL;
        last->next = ts;
    }
    gtail = ts;
    nlisted++;
}

/* An M's own thread state, made on its thread without the GIL (as
 * PyThreadState_New allows); CPython lists it at the head. */
PyThreadState *
gr_pystate_new_m(PyInterpreterState *interp)
{
    PyThreadState *ts = PyThreadState_New(interp);
    LIST_TSAN_RELEASE();
    return ts;
}

/* A new goroutine thread state, listed at the tail.  GIL held. */
PyThreadState *
gr_pystate_new(void)
{
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Get());
    if (ts == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (!gr_pystate_finalizing()) {
        LIST_LOCK();
        unlink_locked(ts);          /* CPython put it at the head */
        link_tail_locked(ts);
        LIST_UNLOCK();
    }
    return ts;
}

/* A pooled thread state serves a goroutine again: list it.  GIL held. */
void
gr_pystate_list(PyThreadState *ts)
{
    if (gr_pystate_finalizing()) {
        return;
    }
    LIST_LOCK();
    link_tail_locked(ts);
    LIST_UNLOCK();
}

/* ts's goroutine ended and ts goes to the pool: unlist it.  GIL held (ts
 * may still be current: it is detached right after, by gr_pystate_leave,
 * which does not need it listed). */
void
gr_pystate_unlist(PyThreadState *ts)
{
    if (gr_pystate_finalizing()) {
        return;
    }
    LIST_LOCK();
    if (ts == gtail) {
        gtail = nlisted > 1 ? ts->prev : NULL;
    }
    nlisted--;
    unlink_locked(ts);
    LIST_UNLOCK();
}

#if PY_VERSION_HEX >= 0x030B0000
static void frames_remove(PyThreadState *ts);
#endif

#if PY_VERSION_HEX >= 0x030F0000
/* 3.15: which goroutine thread state each M's OS thread's gilstate still
 * names (gr_pystate_leave cannot point it back).  That thread's next
 * attach clears the bound_gilstate bit of the named thread state, a write
 * into it: deleting it first would make that write land in freed memory
 * (a segfault in PyEval_RestoreThread seen about 1 run in 8 after a burst
 * of 30,000 goroutines, when gfscavenge deleted the pooled thread states).
 * So a thread state some M's gilstate names is not deleted
 * (gr_pystate_delete says so and it stays pooled): at most one per M.
 * One record per OS thread that ever entered a goroutine, linked once and
 * never freed (Ms live as long as the process); every read and write of
 * the list and the names is made with the GIL held. */
typedef struct gilname {
    PyThreadState *ts;
    struct gilname *next;
} gilname;
static gilname *gilnames;
static _Thread_local gilname *gilname_self;

static void
gilname_set(PyThreadState *ts)
{
    gilname *n = gilname_self;
    if (n == NULL) {
        n = PyMem_RawCalloc(1, sizeof *n);
        if (n == NULL) {
            Py_FatalError("goroutine: out of memory for an M's record");
        }
        n->next = gilnames;
        gilnames = n;
        gilname_self = n;
    }
    n->ts = ts;
}

static bool
gilname_named(PyThreadState *ts)
{
    for (gilname *n = gilnames; n != NULL; n = n->next) {
        if (n->ts == ts) {
            return true;
        }
    }
    return false;
}
#endif

/* Clear and delete a pooled (unlisted) thread state, unless (3.15) an
 * M's gilstate still names it: then it is left as it is and false is
 * returned (the caller keeps it pooled).  GIL held, ts not current.
 * PyThreadState_Delete unlinks it from the list, so it is linked (at the
 * head, outside the goroutines' run) first. */
bool
gr_pystate_delete(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030F0000
    if (gilname_named(ts)) {
        return false;
    }
#endif
#if PY_VERSION_HEX >= 0x030B0000
    frames_remove(ts);
#endif
    LIST_LOCK();
    link_head_locked(ts);
    LIST_UNLOCK();
    PyThreadState_Clear(ts);
    PyThreadState_Delete(ts);
    return true;
}

/* In a fork child, after CPython deleted every thread state but the
 * current one, which is a goroutine's when a goroutine forked.  GIL held,
 * before anything else is listed. */
void
gr_pystate_after_fork(bool goroutine_forked)
{
    PyThreadState *cur = PyThreadState_Get();
    gtail = goroutine_forked ? cur : NULL;
    nlisted = goroutine_forked ? 1 : 0;
#if PY_VERSION_HEX >= 0x030F0000
    /* The other threads, and their gilstates, are gone. */
    for (gilname *n = gilnames; n != NULL; n = n->next) {
        if (n != gilname_self) {
            n->ts = NULL;
        }
    }
#endif
}

#if PY_VERSION_HEX < 0x030E0000
static int
stack_levels(size_t stack_bytes)
{
    int levels = stack_bytes <= STACK_RESERVE + STACK_PER_LEVEL ? 1
        : (int)((stack_bytes - STACK_RESERVE) / STACK_PER_LEVEL);
    if (stack_bytes >= GR_STACK_FULL) {
#if PY_VERSION_HEX >= 0x030C0000
        levels = INT_MAX;       /* a thread's C budget: no lowering */
#else
        /* At least a thread's budget under the default limit; a limit
         * raised past what the stack holds at STACK_PER_LEVEL still stops
         * at RecursionError (a thread would crash there). */
        if (levels < 1000) {
            levels = 1000;
        }
#endif
    }
    return levels;
}
#endif

#if PY_VERSION_HEX < 0x030C0000
/* 3.10/3.11 count Python-level depth against the interpreter-wide limit,
 * so a goroutine starts `base` levels deep: the levels it can afford
 * then run out exactly at the limit. */
static int
depth_base(int limit, int levels)
{
    return limit > levels ? limit - levels : 0;
}
#endif

#if PY_VERSION_HEX >= 0x030D0000
#define C_LIMIT Py_C_RECURSION_LIMIT
#elif PY_VERSION_HEX >= 0x030C0000
#define C_LIMIT C_RECURSION_LIMIT
#endif

#if PY_VERSION_HEX >= 0x030E0000
/* 3.14+: the stack bounds CPython checks C recursion against, for a
 * goroutine stack [lo, lo + size).  The lowest STACK_FLOOR bytes are left
 * below CPython's hard limit for the red zone (gstack.c) and for C that
 * runs past the last check at the leaf: our own park/switch path, libc.
 * CPython itself raises RecursionError below its soft limit, two margins
 * (2 x 16 KiB on 64-bit release builds) above the floor, and gives up
 * ("Unrecoverable stack overflow") below the hard limit, one margin above
 * it -- the same layout it gives an OS thread, whose floor is its guard
 * page. */
#define STACK_FLOOR (16 * 1024)

static void
set_stack_bounds(PyThreadState *ts, char *lo, size_t size)
{
    uintptr_t base = (uintptr_t)lo + STACK_FLOOR;
    uintptr_t top = (uintptr_t)lo + size;
#if PY_VERSION_HEX >= 0x030F0000
    if (PyUnstable_ThreadState_SetStackProtection(
            ts, (void *)base, (size_t)(top - base)) == 0) {
        return;
    }
    /* Refused: smaller than CPython's minimum (48 KiB on a release build;
     * GOROUTINE_STACK_KB allows 64).  Such a stack still gets bounds, set
     * as below, rather than the M's. */
    PyErr_Clear();
#endif
    _PyThreadStateImpl *impl = (_PyThreadStateImpl *)ts;
    impl->c_stack_top = top;
    impl->c_stack_hard_limit = base + _PyOS_STACK_MARGIN_BYTES;
    impl->c_stack_soft_limit = base + 2 * _PyOS_STACK_MARGIN_BYTES;
}
#endif

/* ---- the first frame-data chunk on the goroutine's stack -------------
 *
 * 3.11+ bump-allocate Python frames from per-thread-state chunks, the
 * first of 16 KiB, mmap'd on the thread state's first call: a page of its
 * own resident in every goroutine that runs a Python function, plus an
 * mmap, a page fault and (at the end) a munmap for every new goroutine.
 * gstack.c leaves GR_FRAME_AREA above each goroutine's C stack, starting
 * 3 KiB into a page: that area becomes the thread state's root chunk, so
 * a goroutine's first frames share the page of its C stack's top.  Deeper
 * frames spill into chunks CPython allocates itself, as on any thread.
 *
 * CPython never frees a root chunk while the thread state lives: its
 * first frame starts one slot in (push_chunk's "skip" for a chunk with no
 * previous), so popping it never empties the chunk.  We make the same
 * layout.  What must not happen is CPython freeing ours: gr_pystate_delete
 * takes it off first.  A goroutine's thread state that CPython deletes
 * itself (a fork child's, at finalization) frees it with
 * _PyObject_VirtualFree, an munmap of an address that is not page-aligned
 * (GR_FRAME_AREA is not a whole number of pages): EINVAL, nothing
 * unmapped. */
#if PY_VERSION_HEX >= 0x030B0000
static void
frames_install(PyThreadState *ts, char *area)
{
    _PyStackChunk *c = ts->datastack_chunk;
    if (c != NULL && c->previous != NULL) {
        return;         /* frames still live: cannot happen on a dead G */
    }
    c = (_PyStackChunk *)area;
    c->previous = NULL;
    c->size = GR_FRAME_AREA;
    c->top = 0;
    ts->datastack_chunk = c;
    ts->datastack_top = &c->data[1];
    ts->datastack_limit = (PyObject **)(area + GR_FRAME_AREA);
}

/* Take the root chunk (ours) off ts, leaving CPython's own chunks. */
static void
frames_remove(PyThreadState *ts)
{
    _PyStackChunk *c = ts->datastack_chunk, *above = NULL;
    while (c != NULL && c->previous != NULL) {
        above = c;
        c = c->previous;
    }
    if (c == NULL) {
        return;
    }
    if (above != NULL) {
        above->previous = NULL;     /* frames live: cannot happen */
    }
    else {
        ts->datastack_chunk = NULL;
        ts->datastack_top = NULL;
        ts->datastack_limit = NULL;
    }
}
#endif

/* Fit a fresh (or recycled) thread state's recursion budget to its
 * goroutine's stack [lo, lo + stack_bytes), and give it the frame area
 * above that stack as its first frame chunk; *fit_limit records the
 * recursion limit it was fitted under, for gr_pystate_refit. */
void
gr_pystate_fit_stack(PyThreadState *ts, char *lo, size_t stack_bytes,
                     int *fit_limit)
{
#if PY_VERSION_HEX >= 0x030B0000
    frames_install(ts, lo + stack_bytes);
#endif
    *fit_limit = Py_GetRecursionLimit();
#if PY_VERSION_HEX >= 0x030E0000
    /* Python-to-Python calls cost no C stack from 3.11 and are counted
     * against sys.getrecursionlimit() as on any thread. */
    set_stack_bounds(ts, lo, stack_bytes);
#elif PY_VERSION_HEX >= 0x030C0000
    (void)lo;
    int levels = stack_levels(stack_bytes);
    /* A thread starts with C_LIMIT; set it outright so that a recycled
     * thread state never keeps an older fit. */
    ts->c_recursion_remaining = levels < C_LIMIT ? levels : C_LIMIT;
#elif PY_VERSION_HEX >= 0x030B0000
    (void)lo;
    int levels = stack_levels(stack_bytes);
    /* 3.11's _Py_CheckRecursiveCall resets a thread state's own limit to
     * the interpreter's, so lower the budget by starting deeper instead:
     * depth = recursion_limit - recursion_remaining.  Set both, so that a
     * recycled thread state does not keep an older fit's depth. */
    ts->recursion_limit = *fit_limit;
    ts->recursion_remaining = *fit_limit - depth_base(*fit_limit, levels);
#else
    (void)lo;
    int levels = stack_levels(stack_bytes);
    /* 3.10 compares recursion_depth with the interpreter-wide limit: start
     * the goroutine's depth where the levels it can afford run out. */
    ts->recursion_depth = depth_base(*fit_limit, levels);
#endif
}

/* ts is current (GIL held) and about to run its goroutine again.  If
 * sys.setrecursionlimit changed the limit since the fit (the goroutine
 * was parked meanwhile), move the starting depth so the budget fits the
 * stack again.  A stale base is fatal on 3.10/3.11: after the limit is
 * lowered the goroutine is deeper than the new limit and the RecursionError
 * it gets at its next call aborts the process ("Cannot recover from stack
 * overflow"); after it is raised, deep recursion through C overflows
 * the goroutine's stack (a segfault).  3.12+ budget the C stack on a
 * counter of their own, which the limit does not move: nothing to do.
 * A change made while the goroutine runs is seen at its next resume. */
void
gr_pystate_refit(PyThreadState *ts, size_t stack_bytes, int *fit_limit)
{
#if PY_VERSION_HEX < 0x030C0000
    int limit = Py_GetRecursionLimit();
    if (limit == *fit_limit) {
        return;
    }
    int levels = stack_levels(stack_bytes);
    int delta = depth_base(limit, levels) - depth_base(*fit_limit, levels);
#if PY_VERSION_HEX >= 0x030B0000
    ts->recursion_remaining -= delta;      /* depth grows by delta */
#else
    ts->recursion_depth += delta;
#endif
    *fit_limit = limit;
#else
    (void)ts;
    (void)stack_bytes;
    (void)fit_limit;
#endif
}

/* Drop per-goroutine data before a thread state serves another goroutine:
 * threading.local values, asyncio's async-generator hooks. */
void
gr_pystate_recycle(PyThreadState *ts)
{
    Py_CLEAR(ts->dict);             /* threading.local up to 3.12 */
#if PY_VERSION_HEX >= 0x030D0000
    /* 3.13 keys threading.local by these; dropping the sentinel makes
     * every local forget this goroutine's values (weakref callbacks). */
    Py_CLEAR(ts->threading_local_key);
    Py_CLEAR(ts->threading_local_sentinel);
#endif
    Py_CLEAR(ts->async_gen_firstiter);
    Py_CLEAR(ts->async_gen_finalizer);
#if PY_VERSION_HEX >= 0x030E0000
    /* 3.14 keeps asyncio's running loop and task in the thread state
     * (asyncio._set_running_loop without a reset must not leak into the
     * next goroutine). */
    Py_CLEAR(((_PyThreadStateImpl *)ts)->asyncio_running_loop);
    Py_CLEAR(((_PyThreadStateImpl *)ts)->asyncio_running_task);
#endif
#if PY_VERSION_HEX < 0x030B0000
    ts->recursion_depth = 0;
#endif
    /* A trace or profile function the goroutine set (pdb, coverage's
     * installer) is its own, as a thread's is; ts is current here. */
    if (ts->c_tracefunc != NULL) {
        PyEval_SetTrace(NULL, NULL);
    }
    if (ts->c_profilefunc != NULL) {
        PyEval_SetProfile(NULL, NULL);
    }
}

/* Install one of threading's hooks (name: "_trace_hook") with sys's
 * setter (e.g. "settrace"), if threading has one. */
static void
start_hook(PyObject *threading, const char *name, const char *setter)
{
    PyObject *hook = PyObject_GetAttrString(threading, name);
    if (hook == NULL) {
        PyErr_Clear();      /* not this Python's threading: no hook */
        return;
    }
    if (hook != Py_None) {
        PyObject *set = PySys_GetObject(setter);    /* borrowed */
        PyObject *r = set ? PyObject_CallOneArg(set, hook) : NULL;
        if (r == NULL) {
            PyErr_WriteUnraisable(hook);
        }
        Py_XDECREF(r);
    }
    Py_DECREF(hook);
}

/* Give the current goroutine the trace and profile functions a new
 * thread gets: threading.Thread's bootstrap installs threading.settrace's
 * and threading.setprofile's hooks (which settrace_all_threads and
 * setprofile_all_threads set too, 3.12+) in every new thread; coverage.py,
 * pytest-cov and profilers rely on it.  GIL held, the goroutine's thread
 * state current, before its function runs.  Never raises. */
void
gr_pystate_start_hooks(void)
{
    static PyObject *threading_str;     /* interned once, kept */
    if (threading_str == NULL) {
        threading_str = PyUnicode_InternFromString("threading");
        if (threading_str == NULL) {
            PyErr_WriteUnraisable(NULL);
            return;
        }
    }
    PyObject *threading = PyImport_GetModule(threading_str);
    if (threading == NULL) {
        PyErr_Clear();      /* not imported: nobody set a hook */
        return;
    }
    start_hook(threading, "_trace_hook", "settrace");
    start_hook(threading, "_profile_hook", "setprofile");
    Py_DECREF(threading);
}

/* Make `ts` current on this OS thread and take the GIL.  Called on an M's
 * g0 stack without the GIL; `mts` is the M's own thread state. */
void
gr_pystate_enter(PyThreadState *ts, PyThreadState *mts)
{
#if PY_VERSION_HEX < 0x030C0000
    /* Before the GIL, not after: a debug build's _PyThreadState_Swap
     * (Py_DEBUG) aborts with "Invalid thread state for this thread" when
     * the key names another thread state of the interpreter than the one
     * being made current.  The key is thread-local (pthread_setspecific),
     * so setting it needs no GIL. */
    PyThread_tss_set(GILSTATE_KEY, ts);
#endif
    PyEval_RestoreThread(ts);
    /* 3.12+: PyEval_RestoreThread bound the gilstate to ts (bit was
     * clear). */
#if PY_VERSION_HEX >= 0x030F0000
    gilname_set(ts);
#endif
    /* The M's own thread state was made on this OS thread: copy its ids
     * rather than asking the kernel (gettid) on every switch. */
    ts->thread_id = mts->thread_id;
#if PY_VERSION_HEX >= 0x030B0000
    ts->native_thread_id = mts->native_thread_id;
#endif
}

/* Give the GIL back and make the M's own thread state the one
 * PyGILState finds on this OS thread again.  GIL held, ts current.
 *
 * 3.15: the gilstate is a C thread-local we cannot reach, so it keeps
 * naming ts until this OS thread next attaches a thread state: mts's bit
 * stays clear, so CPython binds it (or the next goroutine's) on that
 * attach.  Meanwhile nothing on the M asks for it: g0 runs no Python and
 * calls no PyGILState_*, and every way back into Python here is an
 * attach.  The one effect is CPython's: the next attach on this thread
 * clears the bound_gilstate bit of the stale ts (under the GIL; the bit
 * is already clear unless ts sits in a GIL-releasing call on another M,
 * which then just rebinds it when it reattaches). */
void
gr_pystate_leave(PyThreadState *ts, PyThreadState *mts)
{
#if PY_VERSION_HEX >= 0x030C0000
    status_bits st = status_load(ts);
    st.bound_gilstate = 0;
    status_store(ts, st);
#endif
#ifdef GILSTATE_KEY
#if PY_VERSION_HEX >= 0x030C0000
    st = status_load(mts);
    st.bound_gilstate = 1;
    status_store(mts, st);
#endif
    PyThread_tss_set(GILSTATE_KEY, mts);
#else
    (void)mts;
#endif
    /* Parked (or dead) it runs on no thread: faulthandler and
     * sys._current_frames must not put it on this one (see "which thread
     * states the interpreter lists"); gr_pystate_enter sets them again. */
    ts->thread_id = 0;
#if PY_VERSION_HEX >= 0x030B0000
    ts->native_thread_id = 0;
#endif
    PyEval_SaveThread();
}

/* Is ts attached (running Python, holding the GIL) right now?  Read by
 * sysmon without the GIL, as a hint: a goroutine whose thread state is
 * detached while its M still runs it is inside a GIL-releasing call
 * (Py_BEGIN_ALLOW_THREADS) or waiting for the GIL -- either way its P can
 * go to another M.  A stale answer only delays or hastens one handoff.
 *
 * Never dereferences ts: sysmon keeps running while the interpreter
 * finalizes, and finalization frees every thread state but the main
 * thread's (Py_FinalizeEx's _PyThreadState_DeleteExcept), so ts may be
 * dangling.  Only statically allocated runtime memory is read: 3.10/3.11
 * keep the current thread state in _PyRuntime; 3.12+ keep it in a thread
 * local, so ask the main interpreter's GIL (part of the static
 * _PyRuntime._main_interpreter) whether it is held and by whom. */
bool
gr_pystate_attached(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030D0000
    struct _gil_runtime_state *gil = &_PyRuntime._main_interpreter._gil;
    return _Py_atomic_load_int_relaxed(&gil->locked) &&
           _Py_atomic_load_ptr_relaxed(&gil->last_holder) == ts;
#elif PY_VERSION_HEX >= 0x030C0000
    struct _gil_runtime_state *gil = &_PyRuntime._main_interpreter._gil;
    return _Py_atomic_load_relaxed(&gil->locked) &&
           (PyThreadState *)_Py_atomic_load_relaxed(&gil->last_holder) == ts;
#else
    return (PyThreadState *)_Py_atomic_load_relaxed(
        &_PyRuntime.gilstate.tstate_current) == ts;
#endif
}

/* ---- the stack-overflow report ----------------------------------------
 *
 * Write ts's Python traceback to fd, most recent call first, as
 * faulthandler does, from a signal handler on the faulting thread: no
 * allocation, no locks, no Python calls, only reads of frames and code
 * objects and write().  (faulthandler's own _Py_DumpTraceback is not
 * exported on 3.10 and 3.13.)  The frames may be inconsistent if the fault
 * hit mid-update; this is the last thing the process does. */

static void
dump_bytes(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) {
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static void
dump_cstr(int fd, const char *s)
{
    dump_bytes(fd, s, strlen(s));
}

static void
dump_int(int fd, long v)
{
    char buf[24];
    char *p = buf + sizeof buf;
    bool neg = v < 0;
    unsigned long u = neg ? 0ul - (unsigned long)v : (unsigned long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (neg) {
        *--p = '-';
    }
    dump_bytes(fd, p, (size_t)(buf + sizeof buf - p));
}

/* At most 200 characters of a str; non-ASCII as \xNN, \uNNNN. */
static void
dump_str(int fd, PyObject *o)
{
    if (o == NULL || !PyUnicode_Check(o)) {
        dump_cstr(fd, "???");
        return;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(o);
    int kind = PyUnicode_KIND(o);
    const void *data = PyUnicode_DATA(o);
    Py_ssize_t lim = n < 200 ? n : 200;
    for (Py_ssize_t i = 0; i < lim; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= ' ' && c < 0x7f) {
            char ch = (char)c;
            dump_bytes(fd, &ch, 1);
        }
        else {
            static const char hex[] = "0123456789abcdef";
            char buf[12];
            int k = 0, digits = c < 0x100 ? 2 : c < 0x10000 ? 4 : 8;
            buf[k++] = '\\';
            buf[k++] = digits == 2 ? 'x' : digits == 4 ? 'u' : 'U';
            for (int d = digits - 1; d >= 0; d--) {
                buf[k++] = hex[(c >> (4 * d)) & 0xf];
            }
            dump_bytes(fd, buf, (size_t)k);
        }
    }
    if (lim < n) {
        dump_cstr(fd, "...");
    }
}

static void
dump_frame(int fd, PyCodeObject *code, int addr)
{
    dump_cstr(fd, "  File \"");
    dump_str(fd, code->co_filename);
    dump_cstr(fd, "\", line ");
    dump_int(fd, addr >= 0 ? PyCode_Addr2Line(code, addr) : -1);
    dump_cstr(fd, " in ");
    dump_str(fd, code->co_name);
    dump_cstr(fd, "\n");
}

#define DUMP_MAX_FRAMES 100

void
gr_pystate_dump(int fd, PyThreadState *ts)
{
    int depth = 0;
#if PY_VERSION_HEX >= 0x030B0000
#if PY_VERSION_HEX >= 0x030D0000
    _PyInterpreterFrame *f = ts->current_frame;
#else
    _PyInterpreterFrame *f = ts->cframe != NULL ? ts->cframe->current_frame
                                                : NULL;
#endif
    for (; f != NULL; f = f->previous) {
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030E0000
        /* (3.14+: _PyFrame_IsIncomplete covers shim frames, and 3.15 has
         * no FRAME_OWNED_BY_CSTACK) */
        if (f->owner == FRAME_OWNED_BY_CSTACK) {
            continue;       /* a shim frame: C called into Python here */
        }
#endif
        if (_PyFrame_IsIncomplete(f)) {
            continue;
        }
#if PY_VERSION_HEX >= 0x030E0000
        /* f_executable is a tagged stack reference from 3.14 */
        PyObject *exe = PyStackRef_AsPyObjectBorrow(f->f_executable);
        if (exe == NULL || !PyCode_Check(exe)) {
            continue;
        }
        PyCodeObject *code = (PyCodeObject *)exe;
#elif PY_VERSION_HEX >= 0x030D0000
        if (f->f_executable == NULL || !PyCode_Check(f->f_executable)) {
            continue;
        }
        PyCodeObject *code = (PyCodeObject *)f->f_executable;
#else
        PyCodeObject *code = f->f_code;
#endif
        if (depth++ >= DUMP_MAX_FRAMES) {
            dump_cstr(fd, "  ...\n");
            break;
        }
        dump_frame(fd, code,
                   _PyInterpreterFrame_LASTI(f) * (int)sizeof(_Py_CODEUNIT));
    }
#else
    for (PyFrameObject *f = ts->frame; f != NULL; f = f->f_back) {
        if (depth++ >= DUMP_MAX_FRAMES) {
            dump_cstr(fd, "  ...\n");
            break;
        }
        dump_frame(fd, f->f_code, f->f_lasti * (int)sizeof(_Py_CODEUNIT));
    }
#endif
    if (depth == 0) {
        dump_cstr(fd, "  <no Python frame>\n");
    }
}

/* The object a weak reference points to, as a new reference, or NULL
 * (dead or not a weakref; no exception set).  3.13 deprecates the
 * borrowed-reference getter. */
PyObject *
gr_pystate_weakref_get(PyObject *ref)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *obj = NULL;
    if (PyWeakref_GetRef(ref, &obj) < 0) {
        PyErr_Clear();
        return NULL;
    }
    return obj;
#else
    if (!PyWeakref_Check(ref)) {
        return NULL;
    }
    PyObject *obj = PyWeakref_GetObject(ref);
    return obj == Py_None ? NULL : Py_NewRef(obj);
#endif
}

/* Does the calling OS thread own rlock, a _thread.RLock?  Reads its owner
 * and count fields, which 3.10-3.13 lay out alike (Modules/_threadmodule.c
 * rlockobject; PyThread_ident_t is unsigned long on Linux).  Checked once
 * against the type's size by the caller; 3.14 replaces the fields with a
 * recursive mutex, so there the method is asked.  GIL held; allocates
 * nothing, runs no Python code. */
typedef struct {
    PyObject_HEAD
    void *rlock_lock;
    unsigned long rlock_owner;
    unsigned long rlock_count;
    PyObject *in_weakreflist;
} gr_rlockobject;

/* The size rlockobject must have for the fields to be where we read them;
 * 0 where gr_pystate_rlock_owned asks the method instead. */
size_t
gr_pystate_rlock_size(void)
{
#if PY_VERSION_HEX < 0x030E0000
    return sizeof(gr_rlockobject);
#else
    return 0;
#endif
}

bool
gr_pystate_rlock_owned(PyObject *rlock)
{
#if PY_VERSION_HEX < 0x030E0000
    gr_rlockobject *r = (gr_rlockobject *)rlock;
    return r->rlock_count > 0 &&
           r->rlock_owner == PyThread_get_thread_ident();
#else
    PyObject *res = PyObject_CallMethod(rlock, "_is_owned", NULL);
    bool owned = res == Py_True;
    Py_XDECREF(res);
    PyErr_Clear();
    return owned;
#endif
}

/* Has Py_FinalizeEx passed the point where no thread but the finalizing
 * one may take the GIL any more (after every atexit callback ran)?  Any
 * thread, GIL or not: one relaxed load of static runtime memory.  From
 * then on an M or the timer thread that tries to take the GIL is ended by
 * CPython (PyThread_exit_thread, as daemon threads are), so the runtime
 * stops before that and every thread state other than the finalizing
 * thread's is freed. */
bool
gr_pystate_finalizing(void)
{
    return _PyRuntimeState_GetFinalizing(&_PyRuntime) != NULL;
}

/* ---- preemption: a safe point in the thread that runs Python ----------
 *
 * sched.c asks "whoever holds the GIL now: call cb at your next safe
 * point" (gr_pystate_preempt_post), and cb lets the GIL go there and
 * waits, without it, until the M it stepped aside for has taken it
 * (sched.c, "preemption").  The safe point is CPython's eval breaker,
 * checked on loop back-edges and calls; the request is a pending call.
 * What each version allows (read from Python/ceval_gil.c of each):
 *   - 3.10, 3.11: pending calls run only on the main thread
 *     (_Py_ThreadCanHandlePendingCalls), which never runs a goroutine, and
 *     the only other per-thread break-in is tstate->async_exc, which raises
 *     an exception in the goroutine.  The interpreter-wide gil_drop_request
 *     could be set from C, but it only makes the holder wait until *some*
 *     thread took the GIL, not the one it is for; there is no preemption
 *     (sysmon's hand-off after the switch interval still covers).
 *   - 3.12: _PyEval_AddPendingCall(interp, ..., mainthreadonly=0) queues
 *     on the interpreter, and the interpreter-wide eval breaker makes the
 *     thread holding the GIL run it.  While a callback runs,
 *     interp->ceval.pending.busy is set, and every other thread that trips
 *     the breaker returns at once without running calls.
 *   - 3.13, 3.14, 3.15: the same call; the breaker is per thread state and
 *     the request sets _PY_CALLS_TO_DO_BIT on the GIL holder
 *     (signal_active_thread), or on the next thread to take the GIL
 *     (take_gil's update_eval_breaker_for_thread, while calls are queued).
 *     While a callback runs, pending.handling_thread names its thread
 *     state, and other threads hand their bit to it.
 * Either marker would stay set while cb waits without the GIL, so the
 * next holder could not run the request sched.c queues again for it
 * (3.12 would even trip the breaker of every thread at every check
 * meanwhile): cb clears it before it lets the GIL go
 * (gr_pystate_preempt_out) and sets it again once it has the GIL back
 * (gr_pystate_preempt_in), the state CPython left it in.  Both run with
 * the GIL held; the GIL is what orders the markers here. */

bool
gr_pystate_preempt_supported(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return true;
#else
    return false;
#endif
}

/* Any thread, GIL or not (CPython's queue has its own lock).  Returns
 * whether the request was queued. */
bool
gr_pystate_preempt_post(PyInterpreterState *interp, int (*cb)(void *))
{
#if PY_VERSION_HEX >= 0x030D0000
    return _PyEval_AddPendingCall(interp, cb, NULL, 0) ==
           _Py_ADD_PENDING_SUCCESS;
#elif PY_VERSION_HEX >= 0x030C0000
    return _PyEval_AddPendingCall(interp, cb, NULL, 0) == 0;
#else
    (void)interp;
    (void)cb;
    return false;
#endif
}

void
gr_pystate_preempt_out(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030D0000
    struct _pending_calls *pending = &ts->interp->ceval.pending;
    PyMutex_Lock(&pending->mutex);
    if (pending->handling_thread == ts) {
        pending->handling_thread = NULL;
    }
    PyMutex_Unlock(&pending->mutex);
#elif PY_VERSION_HEX >= 0x030C0000
    ts->interp->ceval.pending.busy = 0;
#else
    (void)ts;
#endif
}

void
gr_pystate_preempt_in(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030D0000
    struct _pending_calls *pending = &ts->interp->ceval.pending;
    PyMutex_Lock(&pending->mutex);
    if (pending->handling_thread == NULL) {
        pending->handling_thread = ts;
    }
    PyMutex_Unlock(&pending->mutex);
#elif PY_VERSION_HEX >= 0x030C0000
    ts->interp->ceval.pending.busy = 1;
#else
    (void)ts;
#endif
}

/* ---- thread states of worker interpreters (interp.c) -----------------
 *
 * A goroutine that runs in a worker interpreter (docs/design.md, "Worker
 * interpreters") owns, besides its own thread state of the main
 * interpreter, one made in the worker for as long as its body runs there.
 * It is attached and detached with the plain PyEval pair, so 3.12+ rebind
 * the gilstate to it on attach (its bit is clear: attaching the
 * goroutine's main thread state cleared it) and back on the next attach.
 * It follows the goroutine from M to M like the main one, so its thread
 * ids are set on every attach. */

/* A thread state of `interp` for code that runs on the C stack
 * [lo, lo + size) (a goroutine's), or on this OS thread's own stack when
 * lo is NULL.  Needs no GIL (CPython takes its runtime lock); not
 * attached.  NULL with nothing set when out of memory. */
PyThreadState *
gr_pystate_foreign_new(PyInterpreterState *interp, char *lo, size_t size)
{
    PyThreadState *ts = PyThreadState_New(interp);
    if (ts == NULL || lo == NULL) {
        return ts;
    }
#if PY_VERSION_HEX >= 0x030E0000
    set_stack_bounds(ts, lo, size);
#elif PY_VERSION_HEX >= 0x030C0000
    int levels = stack_levels(size);
    ts->c_recursion_remaining = levels < C_LIMIT ? levels : C_LIMIT;
#else
    (void)size;
#endif
    return ts;
}

/* Attach ts (of any interpreter) on this OS thread, taking its
 * interpreter's GIL.  No thread state attached on entry. */
void
gr_pystate_foreign_attach(PyThreadState *ts)
{
    PyEval_RestoreThread(ts);
    ts->thread_id = PyThread_get_thread_ident();
#if PY_VERSION_HEX >= 0x030B0000
    ts->native_thread_id = PyThread_get_thread_native_id();
#endif
}
