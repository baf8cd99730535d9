/*
 * module.c: the goroutine._core module object and nothing else.
 *
 * Multi-phase init: the exec slot creates the process-wide exception
 * classes once (gr_globals), then lets each concept file add its types and
 * functions.  The runtime behind them (scheduler threads, libuv loop) is
 * process-wide and started lazily by the first call that needs it, so
 * importing the module costs no thread.
 */
#include "core.h"

#include <structmember.h>

gr_globals_t gr_globals;

PyObject *
gr_panic(const char *msg)
{
    PyErr_SetString(gr_globals.Panic, msg);
    return NULL;
}

/* The exception classes are immutable like every type of the package
 * (goroutine.Panic.x = 1 raises TypeError, as ValueError.x = 1 does), so
 * they are made from specs, not with PyErr_NewException.  Their instances
 * have the builtin base's layout and slots, with two additions: what every
 * heap type needs, a reference to its type that dealloc drops and
 * traverse reports; and the weak reference list that type() gave the
 * classes PyErr_NewException made (the builtin bases have none).  The
 * builtin base's own dealloc and traverse are found through tp_base (the
 * first type that is not a heap type), so a Python subclass of Panic works
 * as well: it inherits the weak reference list, and its subtype_dealloc
 * leaves the list and the type reference to exc_dealloc. */
typedef struct {
    PyBaseExceptionObject base;
    PyObject *weakreflist;    /* weak references to this exception */
} excobject;

static PyMemberDef exc_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(excobject, weakreflist),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject *
exc_static_base(PyTypeObject *tp)
{
    while (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        tp = tp->tp_base;
    }
    return tp;
}

static int
exc_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return exc_static_base(Py_TYPE(self))->tp_traverse(self, visit, arg);
}

static void
exc_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (((excobject *)self)->weakreflist != NULL) {
        /* The callbacks run Python code, which may collect: not while the
         * GC can see self.  Tracked again after them, as subtype_dealloc
         * does, because the base's dealloc untracks it (on 3.10 with
         * _PyObject_GC_UNTRACK, which requires a tracked object). */
        PyObject_GC_UnTrack(self);
        PyObject_ClearWeakRefs(self);
        PyObject_GC_Track(self);
    }
    exc_static_base(tp)->tp_dealloc(self);
    Py_DECREF(tp);
}

/* Panic.arg: the value given to panic(); for a runtime panic raised from
 * C, Go's message, which is args[0] (recover() returns it, as in Go). */
static PyObject *
panic_arg(PyObject *self, void *closure)
{
    PyObject *args = ((PyBaseExceptionObject *)self)->args;
    if (args != NULL && PyTuple_Check(args) && PyTuple_GET_SIZE(args) > 0) {
        return Py_NewRef(PyTuple_GET_ITEM(args, 0));
    }
    Py_RETURN_NONE;
}

static PyGetSetDef panic_getset[] = {
    {"arg", panic_arg, NULL,
     "The value given to panic(); for a runtime panic, its message.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot panic_slots[] = {
    {Py_tp_doc,
     "Panic(arg): a Go panic.  Raised by panic(v) and by every Go runtime\n"
     "panic; str(exc) is Go's message and .arg the value given to panic."},
    {Py_tp_getset, panic_getset},
    {Py_tp_members, exc_members},
    {Py_tp_traverse, exc_traverse},
    {Py_tp_dealloc, exc_dealloc},
    {0, NULL},
};

static PyType_Slot deadlock_slots[] = {
    {Py_tp_doc,
     "Deadlock: all goroutines are asleep - deadlock!  Raised in every\n"
     "thread blocked in a runtime operation that nothing can wake."},
    {Py_tp_members, exc_members},
    {Py_tp_traverse, exc_traverse},
    {Py_tp_dealloc, exc_dealloc},
    {0, NULL},
};

static PyType_Slot goexit_slots[] = {
    {Py_tp_doc,
     "Goexit: raised by runtime.goexit() to end the calling goroutine\n"
     "after its deferred calls ran.  recover() does not stop it."},
    {Py_tp_members, exc_members},
    {Py_tp_traverse, exc_traverse},
    {Py_tp_dealloc, exc_dealloc},
    {0, NULL},
};

#define EXC_SPEC(var, dotted)                                               \
    static PyType_Spec var##_spec = {                                       \
        .name = dotted, .basicsize = sizeof(excobject),                     \
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE |                 \
                 Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,             \
        .slots = var##_slots};

EXC_SPEC(panic, "goroutine.Panic")
EXC_SPEC(deadlock, "goroutine.Deadlock")
EXC_SPEC(goexit, "goroutine.Goexit")

/* All three classes or none: they are published only once every one was
 * made, so an import that failed halfway (out of memory) leaves nothing
 * that the next import would trust as complete. */
static int
globals_init(void)
{
    if (gr_globals.Panic != NULL) {
        return 0;
    }
    PyObject *panic = PyType_FromSpecWithBases(&panic_spec,
                                               PyExc_Exception);
    PyObject *deadlock = panic == NULL ? NULL : PyType_FromSpecWithBases(
        &deadlock_spec, PyExc_RuntimeError);
    PyObject *goexit = deadlock == NULL ? NULL : PyType_FromSpecWithBases(
        &goexit_spec, PyExc_BaseException);
    if (goexit == NULL) {
        Py_XDECREF(panic);
        Py_XDECREF(deadlock);
        return -1;
    }
    gr_globals.Deadlock = deadlock;
    gr_globals.Goexit = goexit;
    gr_globals.Panic = panic;      /* last: it marks the set complete */
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
    if (globals_init() < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Panic", gr_globals.Panic) < 0 ||
        PyModule_AddObjectRef(module, "Deadlock", gr_globals.Deadlock) < 0 ||
        PyModule_AddObjectRef(module, "Goexit", gr_globals.Goexit) < 0) {
        return -1;
    }
    if (gr_sched_exec(module) < 0 || gr_chan_exec(module) < 0 ||
        gr_select_exec(module) < 0 || gr_timer_exec(module) < 0 ||
        gr_sync_exec(module) < 0 || gr_gomap_exec(module) < 0) {
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
