/*
 * module.c: the goroutine._core module object, the top layer of the core.
 *
 * It registers: the exec slot builds the process state (state.h)
 * all-or-nothing from every file's gr_<concept>_init, then lets each file
 * add its types and functions to the module (gr_<concept>_exec).  It also
 * wires the few things that span files and so belong to no file below:
 * the pthread_atfork handlers (sched.c's locks, then timer.c's), the
 * child's after-fork restart, _core._shutdown (sched.c stops, timer.c's
 * fence), and _core._register, through which goroutine/__init__.py hands
 * the core its Python callbacks.  No other file calls into this one.
 *
 * The runtime behind the module (scheduler threads, timer loop) is
 * process-wide and started lazily by the first call that needs it, so
 * importing the module costs no thread.  GIL held everywhere here except
 * in the fork handlers (inside fork(), pure C).
 */
#include "core.h"

#include <stdlib.h>

/* ---- fork and shutdown: sched.c's locks outside timer.c's ------------ */

static void
fork_prepare(void)
{
    gr_sched_fork_prepare();
    gr_timer_fork_prepare();
}

static void
fork_parent(void)
{
    gr_timer_fork_parent();
    gr_sched_fork_parent();
}

static void
fork_child(void)
{
    gr_sched_fork_child();
    gr_timer_fork_child();
}

/* os.register_at_fork(after_in_child=...): GIL held, after CPython freed
 * every thread state but the current one.  The timer thread starts again
 * now only if the parent's timers are still armed, else with the first
 * timer: a child that only execs or exits starts no thread. */
static PyObject *
core_after_fork(PyObject *module, PyObject *unused)
{
    if (gr_sched_after_fork() < 0 || gr_timer_after_fork() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _core._shutdown(): stop the runtime now, as finalization does by itself
 * (see "Shutdown" in docs/design.md); for embedders and tests.  Waits
 * until the timer thread is not delivering and sysmon has left its loop.
 * GIL held. */
static PyObject *
core_shutdown(PyObject *module, PyObject *unused)
{
    if (!gr_sched_stop()) {
        Py_RETURN_NONE;
    }
    Py_BEGIN_ALLOW_THREADS
    gr_timer_fence();
    gr_sched_wait_sysmon();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* _core._register(report, send_async, recv_async, recv_async_, aiter):
 * the package's Python callbacks (goroutine/__init__.py calls it once at
 * import; a later call replaces them).  Each must be callable. */
static PyObject *
core_register(PyObject *module, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"report", "send_async", "recv_async",
                             "recv_async_", "aiter", NULL};
    PyObject *fn[5];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOO:_register", kwlist,
                                     &fn[0], &fn[1], &fn[2], &fn[3],
                                     &fn[4])) {
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        if (!PyCallable_Check(fn[i])) {
            return PyErr_Format(PyExc_TypeError,
                                "_register: %s must be callable, not %.200s",
                                kwlist[i], Py_TYPE(fn[i])->tp_name);
        }
    }
    Py_XSETREF(gr_globals.report, Py_NewRef(fn[0]));
    Py_XSETREF(gr_globals.send_async, Py_NewRef(fn[1]));
    Py_XSETREF(gr_globals.recv_async, Py_NewRef(fn[2]));
    Py_XSETREF(gr_globals.recv_async_, Py_NewRef(fn[3]));
    Py_XSETREF(gr_globals.aiter, Py_NewRef(fn[4]));
    Py_RETURN_NONE;
}

static PyMethodDef core_methods[] = {
    {"_register", (PyCFunction)(void (*)(void))core_register,
     METH_VARARGS | METH_KEYWORDS,
     "_register(report, send_async, recv_async, recv_async_, aiter)\n--\n\n"
     "Hand the core the package's Python callbacks (goroutine/__init__.py)."},
    {"_shutdown", core_shutdown, METH_NOARGS, NULL},
    {"_after_fork", core_after_fork, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* ---- the process state, all or nothing ------------------------------ */

/* GR_TEST_INIT_FAIL=n makes step n of state_init fail as if out of
 * memory, for tests/test_layers.py: the import raises, and the next one
 * (with the variable unset) must start clean. */
static int
fail_on_purpose(int step)
{
    const char *e = getenv("GR_TEST_INIT_FAIL");
    if (e != NULL && atoi(e) == step) {
        PyErr_Format(PyExc_MemoryError,
                     "goroutine: init step %d failed on purpose "
                     "(GR_TEST_INIT_FAIL)", step);
        return -1;
    }
    return 0;
}

static int
state_init(void)
{
    if (gr_globals.ready) {
        return 0;
    }
    static int (*const steps[])(gr_globals_t *) = {
        gr_state_init, gr_sched_init, gr_chan_init, gr_select_init,
        gr_timer_init, gr_sync_init, gr_gomap_init, gr_context_init,
        gr_netpoll_init,
    };
    gr_globals_t st;
    memset(&st, 0, sizeof st);
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (fail_on_purpose((int)i + 1) < 0 || steps[i](&st) < 0) {
            gr_globals_clear(&st);
            return -1;
        }
    }
    st.ready = true;
    gr_globals = st;
    return 0;
}

static int
module_exec(PyObject *module)
{
    /* One runtime per process, bound to the main interpreter: its Ms make
     * thread states there, and a subinterpreter cannot be destroyed while
     * they exist ("Py_EndInterpreter: not the last thread" on 3.12+, a
     * hang at exit on 3.10/3.11).  CPython enforces the slot below only
     * for isolated subinterpreters, so refuse every other kind here too
     * (legacy, shared-GIL ones: mod_wsgi's, _xxsubinterpreters on 3.10/3.11). */
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
            "goroutine does not support subinterpreters: import it only "
            "in the main interpreter");
        return -1;
    }
    static bool atfork;
    if (!atfork) {
        if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0) {
            PyErr_SetString(PyExc_RuntimeError,
                            "goroutine: pthread_atfork failed");
            return -1;
        }
        atfork = true;
    }
    if (state_init() < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Panic", gr_globals.Panic) < 0 ||
        PyModule_AddObjectRef(module, "Deadlock", gr_globals.Deadlock) < 0 ||
        PyModule_AddObjectRef(module, "Goexit", gr_globals.Goexit) < 0 ||
        PyModule_AddFunctions(module, core_methods) < 0) {
        return -1;
    }
    if (gr_sched_exec(module) < 0 || gr_chan_exec(module) < 0 ||
        gr_select_exec(module) < 0 || gr_timer_exec(module) < 0 ||
        gr_sync_exec(module) < 0 || gr_gomap_exec(module) < 0 ||
        gr_context_exec(module) < 0 ||
        gr_netpoll_exec(module) < 0 || gr_interp_exec(module) < 0) {
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    /* One scheduler per process: a subinterpreter must not get its own. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "goroutine._core",
    .m_doc = "The C core of goroutine: Go's runtime for CPython.",
    .m_size = 0,
    .m_slots = module_slots,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&module_def);
}
