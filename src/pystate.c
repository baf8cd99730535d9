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
 *   - the PyGILState TSS key (which thread state PyGILState_Ensure finds
 *     for this OS thread).  It must be the goroutine's while it runs, or a
 *     ctypes callback inside a goroutine takes the GIL for the M's own
 *     thread state and deadlocks.  3.10/3.11 keep the key in
 *     _PyRuntime.gilstate.autoTSSkey; 3.12+ in _PyRuntime.autoTSSkey, and
 *     3.12+ rebinds it by itself on activation when the thread state's
 *     bound_gilstate bit is clear, so there we only clear the bit on leave.
 *   - thread_id / native_thread_id, which say where a thread state runs
 *     (faulthandler, sys._current_frames): set on every enter.
 *   - recursion budgets, fitted to the goroutine's C stack: a thread's
 *     budget on a thread-sized stack, less on a smaller one.  3.12+ count C
 *     recursion per thread state (c_recursion_remaining); 3.10/3.11 count
 *     Python calls, each of which can cost C stack, so their depth starts
 *     biased.
 *   - the stack-overflow report: a goroutine's Python traceback written
 *     from a signal handler (gr_pystate_dump).
 *
 * All functions here run with the GIL held except gr_pystate_enter, which
 * takes it.
 */
#define Py_BUILD_CORE 1
#include "core.h"
#include "internal/pycore_runtime.h"
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#else
#include "frameobject.h"
#endif
#include <limits.h>
#include <unistd.h>

#if PY_VERSION_HEX >= 0x030E0000
#error "goroutine: CPython 3.14+ is not supported yet (see docs/design.md)"
#endif

#if PY_VERSION_HEX >= 0x030C0000
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

/* Recursion budgets.  A goroutine stack of at least gr_stack_full_size()
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

PyThreadState *
gr_pystate_new(void)
{
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Get());
    if (ts == NULL) {
        PyErr_NoMemory();
    }
    return ts;
}

static int
stack_levels(size_t stack_bytes)
{
    int levels = stack_bytes <= STACK_RESERVE + STACK_PER_LEVEL ? 1
        : (int)((stack_bytes - STACK_RESERVE) / STACK_PER_LEVEL);
    if (stack_bytes >= gr_stack_full_size()) {
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

/* Fit a fresh (or recycled) thread state's recursion budget to the stack
 * [lo, lo + size); *fit_limit records the recursion limit it was fitted
 * under, for gr_pystate_refit.  3.10-3.13 cannot know frame sizes, so the
 * budget is a count of levels (see STACK_PER_LEVEL); `lo` is for 3.14+,
 * which checks the real stack pointer against bounds set from it. */
void
gr_pystate_fit_stack(PyThreadState *ts, char *lo, size_t size, int *fit_limit)
{
    (void)lo;
    int levels = stack_levels(size);
    *fit_limit = Py_GetRecursionLimit();
#if PY_VERSION_HEX >= 0x030C0000
    /* A thread starts with C_LIMIT; set it outright so that a recycled
     * thread state never keeps an older fit. */
    ts->c_recursion_remaining = levels < C_LIMIT ? levels : C_LIMIT;
#elif PY_VERSION_HEX >= 0x030B0000
    /* 3.11's _Py_CheckRecursiveCall resets a thread state's own limit to
     * the interpreter's, so lower the budget by starting deeper instead:
     * depth = recursion_limit - recursion_remaining.  Set both, so that a
     * recycled thread state does not keep an older fit's depth. */
    ts->recursion_limit = *fit_limit;
    ts->recursion_remaining = *fit_limit - depth_base(*fit_limit, levels);
#else
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
#if PY_VERSION_HEX < 0x030B0000
    ts->recursion_depth = 0;
#endif
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
    /* 3.12+: PyEval_RestoreThread bound the key to ts (bit was clear). */
    /* The M's own thread state was made on this OS thread: copy its ids
     * rather than asking the kernel (gettid) on every switch. */
    ts->thread_id = mts->thread_id;
#if PY_VERSION_HEX >= 0x030B0000
    ts->native_thread_id = mts->native_thread_id;
#endif
}

/* Give the GIL back and make the M's own thread state the one
 * PyGILState finds on this OS thread again.  GIL held, ts current. */
void
gr_pystate_leave(PyThreadState *ts, PyThreadState *mts)
{
#if PY_VERSION_HEX >= 0x030C0000
    status_bits st = status_load(ts);
    st.bound_gilstate = 0;
    status_store(ts, st);
    st = status_load(mts);
    st.bound_gilstate = 1;
    status_store(mts, st);
#endif
    PyThread_tss_set(GILSTATE_KEY, mts);
    PyEval_SaveThread();
}

/* Is ts attached (running Python, holding the GIL) right now?  Read by
 * sysmon without the GIL, as a hint: a goroutine whose thread state is
 * detached while its M still runs it is inside a GIL-releasing call
 * (Py_BEGIN_ALLOW_THREADS) or waiting for the GIL -- either way its P can
 * go to another M.  A stale answer only delays or hastens one handoff. */
bool
gr_pystate_attached(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030C0000
    /* PyEval_SaveThread deactivates the thread state before dropping
     * the GIL; RestoreThread activates it after taking the GIL. */
    return status_load(ts).active;
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
#if PY_VERSION_HEX >= 0x030C0000
        if (f->owner == FRAME_OWNED_BY_CSTACK) {
            continue;       /* a shim frame: C called into Python here */
        }
#endif
        if (_PyFrame_IsIncomplete(f)) {
            continue;
        }
#if PY_VERSION_HEX >= 0x030D0000
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
