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

gr_globals_t gr_globals;
atomic_uint gr_forkgen;
atomic_long gr_timers_pending;

PyObject *
gr_panic(const char *msg)
{
    PyErr_SetString(gr_globals.Panic, msg);
    return NULL;
}

/* Panic.arg: the value given to panic(); for a runtime panic raised in C,
 * Go's message (args[0]), as recover() returns it in Go. */
static PyObject *
panic_arg(PyObject *unused, PyObject *self)
{
    PyObject *args = PyObject_GetAttrString(self, "args");
    if (args == NULL) {
        return NULL;
    }
    PyObject *r = PyTuple_Check(args) && PyTuple_GET_SIZE(args) > 0
        ? PyTuple_GET_ITEM(args, 0) : Py_None;
    Py_INCREF(r);
    Py_DECREF(args);
    return r;
}

static PyMethodDef panic_arg_def = {
    "arg", panic_arg, METH_O, NULL,
};

#define PANIC_ARG_DOC \
    "The value given to panic(); for a runtime panic, its message."

/* A class dict holding the read-only property `arg`: new ref or NULL. */
static PyObject *
panic_dict(void)
{
    PyObject *get = PyCFunction_New(&panic_arg_def, NULL);
    if (get == NULL) {
        return NULL;
    }
    PyObject *prop = PyObject_CallFunction((PyObject *)&PyProperty_Type,
                                           "OOOs", get, Py_None, Py_None,
                                           PANIC_ARG_DOC);
    Py_DECREF(get);
    if (prop == NULL) {
        return NULL;
    }
    PyObject *dict = PyDict_New();
    if (dict == NULL || PyDict_SetItemString(dict, "arg", prop) < 0) {
        Py_XDECREF(dict);
        Py_DECREF(prop);
        return NULL;
    }
    Py_DECREF(prop);
    return dict;
}

int
gr_state_init(gr_globals_t *st)
{
    PyObject *dict = panic_dict();
    if (dict == NULL) {
        return -1;
    }
    st->Panic = PyErr_NewExceptionWithDoc(
        "goroutine.Panic",
        "Panic(arg): a Go panic.  Raised by panic(v) and by every Go runtime\n"
        "panic; str(exc) is Go's message and .arg the value given to panic.",
        PyExc_Exception, dict);
    Py_DECREF(dict);
    if (st->Panic == NULL) {
        return -1;
    }
    st->Deadlock = PyErr_NewExceptionWithDoc(
        "goroutine.Deadlock",
        "Deadlock: all goroutines are asleep - deadlock!  Raised in every\n"
        "thread blocked in a runtime operation that nothing can wake.",
        PyExc_RuntimeError, NULL);
    if (st->Deadlock == NULL) {
        return -1;
    }
    st->Goexit = PyErr_NewExceptionWithDoc(
        "goroutine.Goexit",
        "Goexit: raised by runtime.goexit() to end the calling goroutine\n"
        "after its deferred calls ran.  recover() does not stop it.",
        PyExc_BaseException, NULL);
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
    Py_CLEAR(st->timer_type);
    for (int i = 0; i < GR_SYNC_NTYPES; i++) {
        Py_CLEAR(st->sync_types[i]);
    }
    Py_CLEAR(st->map.Map);
    Py_CLEAR(st->map.Iter);
    Py_CLEAR(st->map.Keys);
    Py_CLEAR(st->map.Values);
    Py_CLEAR(st->map.Items);
    Py_CLEAR(st->blocked);
    Py_CLEAR(st->report);
    Py_CLEAR(st->send_async);
    Py_CLEAR(st->recv_async);
    Py_CLEAR(st->recv_async_);
    Py_CLEAR(st->aiter);
    st->ready = false;
}
