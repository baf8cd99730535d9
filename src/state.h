/*
 * state.h: the runtime's process state, in one struct (state.c).
 *
 * The scheduler owns OS threads, so the runtime is a process-wide
 * singleton anyway; its Python objects (exception classes, types,
 * sentinels) and the callbacks the package registers live here, in
 * gr_globals, so that GIL-holding code in any file can reach them without
 * a module lookup (PyType_GetModuleByDef does not exist on 3.10).
 *
 * Initialised all-or-nothing by module.c's exec slot: every file's
 * gr_<concept>_init fills a zeroed staging copy, and only when every step
 * succeeded is the copy published (gr_globals.ready is then true); a
 * failed step clears the copy (gr_globals_clear), so a failed import
 * leaves nothing that the next import would trust.  Never freed after
 * that: threads that use these objects can outlive the module object.
 * Every field is read and written with the GIL held.
 *
 * This is the bottom layer of the C core: state.c uses no other file.
 */
#ifndef GR_STATE_H
#define GR_STATE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
#include <stdbool.h>

enum { GR_SYNC_NTYPES = 5 };

/* Element types a channel can be made with (chan.c's GR_DTYPE_*). */
#define GR_CHAN_NDTYPES 5

typedef struct {
    bool ready;             /* published: every field below is set */
    PyObject *Panic;        /* goroutine.Panic(Exception) */
    PyObject *Deadlock;     /* goroutine.Deadlock(RuntimeError) */
    PyObject *Goexit;       /* _core.Goexit(BaseException): runtime.goexit */
    PyObject *default_;     /* the `default` select case sentinel (select.c) */
    PyTypeObject *chan_type;    /* chan.c */
    PyObject *nilchan;      /* the nil channel (chan.c) */
    PyObject *typed_nil[GR_CHAN_NDTYPES];   /* chan.nil(dtype) per dtype */
    PyTypeObject *timer_type;   /* _core._timer (timer.c) */
    PyObject *sync_types[GR_SYNC_NTYPES];   /* sync.c, in its order */
    struct {                /* gomap.c */
        PyTypeObject *Map, *Iter, *Keys, *Values, *Items;
    } map;
    struct {                /* context.c */
        PyTypeObject *Context, *empty, *value, *cancel, *after;
        PyObject *background, *todo;
        PyObject *closedchan;   /* done() of a context cancelled unasked */
        /* registered by goroutine/context.py (_ctx_register): */
        PyObject *canceled, *deadline_exceeded;
        PyObject *watch;        /* watch(foreign_parent, node) */
    } ctx;
    PyObject *ErrClosed;    /* netpoll.c: net.ErrClosed(OSError) */
    PyTypeObject *polldesc_type;    /* netpoll.c: _core.PollDesc */
    PyObject *blocked;      /* sched.c: {thread ident: count} of plain
                               threads blocked in the runtime */
    /* Python callbacks, set by goroutine/__init__.py through
     * _core._register(); NULL until then. */
    PyObject *report;       /* goroutine._report(type, value, tb, goid) */
    PyObject *send_async;   /* goroutine._async.send_async(ch, v) */
    PyObject *recv_async;   /* ... recv_async(ch) */
    PyObject *recv_async_;  /* ... recv_async_(ch) */
    PyObject *aiter;        /* ... aiter_(ch) */
} gr_globals_t;

extern gr_globals_t gr_globals;

/* Make the three exception classes into `st` (staging); 0 or -1. */
int gr_state_init(gr_globals_t *st);
/* Drop every reference `st` holds and zero it (a failed init). */
void gr_globals_clear(gr_globals_t *st);

/* Raise goroutine.Panic(msg) with Go's wording; returns NULL. */
PyObject *gr_panic(const char *msg);

/* Bumped in a forked child: a thread waiter or G made before it belongs
 * to a thread that does not exist there, and can no longer be claimed or
 * run (sched.c's fork handler bumps it; waiter.c and sched.c compare). */
extern atomic_uint gr_forkgen;

/* Timers that can still fire: timer.c counts them, sched.c's deadlock
 * check reads them. */
extern atomic_long gr_timers_pending;

/* Goroutines parked on the netpoller (netpoll.c counts them): sched.c's
 * deadlock check counts them as not asleep, and the scheduler polls the
 * network only while there are some. */
extern atomic_long gr_netwaiters;

#endif /* GR_STATE_H */
