/*
 * state.c: the runtime's process state (gr_globals, see state.h), the
 * panic helper and the counters that several files share.
 *
 * The bottom layer of the C core: it uses no other file of src/, so every
 * file may use it (docs/design.md, "Layout").  What lives here is what
 * would otherwise make two files depend on each other: the exception
 * classes that every file raises, the fork generation that sched.c bumps
 * and waiter.c reads, the timer count that timer.c keeps and sched.c's
 * deadlock check reads.
 *
 * GIL held for everything here except the two atomics.
 */
#include "state.h"

#include <structmember.h>

gr_globals_t gr_globals;
atomic_uint gr_forkgen;
atomic_long gr_timers_pending;
atomic_long gr_netwaiters;

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

/* The three classes are made into the staging state; gr_globals_clear
 * drops whichever were made if a later step fails. */
int
gr_state_init(gr_globals_t *st)
{
    st->Panic = PyType_FromSpecWithBases(&panic_spec, PyExc_Exception);
    if (st->Panic == NULL) {
        return -1;
    }
    st->Deadlock = PyType_FromSpecWithBases(&deadlock_spec,
                                            PyExc_RuntimeError);
    if (st->Deadlock == NULL) {
        return -1;
    }
    st->Goexit = PyType_FromSpecWithBases(&goexit_spec, PyExc_BaseException);
    return st->Goexit == NULL ? -1 : 0;
}

void
gr_globals_clear(gr_globals_t *st)
{
    Py_CLEAR(st->Panic);
    Py_CLEAR(st->Deadlock);
    Py_CLEAR(st->Goexit);
    Py_CLEAR(st->default_);
    Py_CLEAR(st->chan_type);
    Py_CLEAR(st->nilchan);
    for (int i = 0; i < GR_CHAN_NDTYPES; i++) {
        Py_CLEAR(st->typed_nil[i]);
    }
    Py_CLEAR(st->timer_type);
    for (int i = 0; i < GR_SYNC_NTYPES; i++) {
        Py_CLEAR(st->sync_types[i]);
    }
    Py_CLEAR(st->map.Map);
    Py_CLEAR(st->map.Iter);
    Py_CLEAR(st->map.Keys);
    Py_CLEAR(st->map.Values);
    Py_CLEAR(st->map.Items);
    Py_CLEAR(st->ctx.Context);
    Py_CLEAR(st->ctx.empty);
    Py_CLEAR(st->ctx.value);
    Py_CLEAR(st->ctx.cancel);
    Py_CLEAR(st->ctx.after);
    Py_CLEAR(st->ctx.background);
    Py_CLEAR(st->ctx.todo);
    Py_CLEAR(st->ctx.closedchan);
    Py_CLEAR(st->ctx.canceled);
    Py_CLEAR(st->ctx.deadline_exceeded);
    Py_CLEAR(st->ctx.watch);
    Py_CLEAR(st->ErrClosed);
    Py_CLEAR(st->polldesc_type);
    Py_CLEAR(st->blocked);
    Py_CLEAR(st->report);
    Py_CLEAR(st->send_async);
    Py_CLEAR(st->recv_async);
    Py_CLEAR(st->recv_async_);
    Py_CLEAR(st->aiter);
    st->ready = false;
}
