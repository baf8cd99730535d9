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
 *   - recursion budgets, fitted to the goroutine's C stack: 3.12+ count C
 *     recursion per thread state (c_recursion_remaining); 3.10/3.11 count
 *     Python calls, each of which can cost C stack, so their limit is
 *     lowered per goroutine.
 *
 * All functions here run with the GIL held except gr_pystate_enter, which
 * takes it.
 */
#define Py_BUILD_CORE 1
#include "core.h"
#include "internal/pycore_runtime.h"

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

/* C stack spent per level of recursion that CPython counts.  Measured on
 * x86-64 by recursing through C (list(map(lambda: f()))) in a goroutine
 * with the fit disabled until the guard page faulted: about 550 bytes per
 * counted level on 3.10, 300 on 3.11, 250 on 3.13 (3.12 stopped at its
 * own C limit first).  The constants keep a 2-3x margin. */
#if PY_VERSION_HEX >= 0x030C0000
#define STACK_PER_LEVEL 600
#elif PY_VERSION_HEX >= 0x030B0000
#define STACK_PER_LEVEL 900
#else
#define STACK_PER_LEVEL 1000
#endif
/* Bytes kept free for the runtime's own frames and C code at the leaf. */
#define STACK_RESERVE (48 * 1024)

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
    return (int)((stack_bytes - STACK_RESERVE) / STACK_PER_LEVEL);
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

/* Fit a fresh (or recycled) thread state's recursion budget to a stack
 * of stack_bytes; *fit_limit records the recursion limit it was fitted
 * under, for gr_pystate_refit. */
void
gr_pystate_fit_stack(PyThreadState *ts, size_t stack_bytes, int *fit_limit)
{
    int levels = stack_levels(stack_bytes);
    *fit_limit = Py_GetRecursionLimit();
#if PY_VERSION_HEX >= 0x030C0000
    if (ts->c_recursion_remaining > levels) {
        ts->c_recursion_remaining = levels;
    }
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
