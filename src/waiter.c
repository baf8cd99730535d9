/*
 * waiter.c: one waiter ("sudog" owner) for the three kinds of blocked
 * party: a parked goroutine, a plain OS thread, an asyncio task.
 *
 * The claim: a waiter may sit on several channel queues at once (select).
 * Whoever wants to complete it -- a peer's send/recv, close, or a cancel
 * (Ctrl-C, Deadlock, asyncio cancellation) -- must first win
 * w->claimed 0 -> 1 with a CAS.  So exactly one case of a select fires,
 * and a cancel that loses the race knows the operation has completed (its
 * result is delivered, never dropped): it waits for the wake that is
 * surely coming and reports the interruption afterwards.
 *
 * Waking happens after the waker has released every runtime lock (the
 * channel code collects waiters, unlocks, then calls gr_waiter_wake).
 *
 * A plain thread waits on a gr_sema in its own stack frame with the GIL
 * released, in slices of GR_POLL_NS: between slices the main thread runs
 * signal handlers (Ctrl-C lands within 100 ms), and every thread asks the
 * scheduler whether the wait can ever end (Deadlock within a second).
 */
#include "core.h"

#define GR_POLL_NS 50000000         /* 50 ms: Ctrl-C latency bound / 2 */

/* A waiter whose owner did not survive a fork (a ghost goroutine, or a
 * thread of the parent) is never claimed: a peer skips it as if another
 * select case had won, so no value is handed to a party that cannot take
 * it, and nobody waits on a ghost thread's semaphore (its mutex may have
 * been held at the fork). */
bool
gr_waiter_claim(gr_waiter *w)
{
    if (w->kind == GR_WAIT_G ? gr_g_ghost(w->g)
        : (w->kind == GR_WAIT_THREAD &&
           w->forkgen != atomic_load_explicit(&gr_forkgen,
                                              memory_order_relaxed))) {
        return false;
    }
    int expect = 0;
    return atomic_compare_exchange_strong(&w->claimed, &expect, 1);
}

/* Wake a claimed waiter.  No runtime lock held.  For an asyncio waiter the
 * GIL must be held. */
void
gr_waiter_wake(gr_waiter *w)
{
    switch (w->kind) {
    case GR_WAIT_G:
        gr_ready(w->g);
        break;
    case GR_WAIT_THREAD:
        gr_sema_post(w->sema);
        break;
    case GR_WAIT_ASYNC: {
        PyObject *r = PyObject_CallNoArgs(w->async_wake);
        if (r == NULL) {
            PyErr_WriteUnraisable(w->async_wake);
        }
        Py_XDECREF(r);
        break;
    }
    }
}

void
gr_waiter_init_thread(gr_waiter *w, gr_sema *sema)
{
    memset(w, 0, sizeof *w);
    w->kind = GR_WAIT_THREAD;
    w->forkgen = atomic_load_explicit(&gr_forkgen, memory_order_relaxed);
    gr_sema_init(sema);
    w->sema = sema;
}

/* Set w up for whoever is calling: the current goroutine (returned), or,
 * on a plain thread, a thread waiter on `sema` (returns NULL; finish it
 * with gr_waiter_fini_thread). */
gr_g *
gr_waiter_init_current(gr_waiter *w, gr_sema *sema)
{
    gr_g *g = gr_getg();
    if (g != NULL) {
        memset(w, 0, sizeof *w);
        w->kind = GR_WAIT_G;
        w->g = g;
    }
    else {
        gr_waiter_init_thread(w, sema);
    }
    return g;
}

void
gr_waiter_fini_thread(gr_waiter *w)
{
    gr_sema_destroy(w->sema);
}

/* Pending call: raise, in the main thread's next bytecode, the exception
 * that interrupted an operation which completed anyway. */
static int
reraise(void *arg)
{
    PyObject *exc = arg;
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc,
                  PyException_GetTraceback(exc));
    return -1;
}

/* Only the main thread runs Python signal handlers. */
static bool
is_main_thread(void)
{
    static unsigned long main_ident;
    if (main_ident == 0) {
        PyObject *threading = PyImport_ImportModule("threading");
        PyObject *t = threading ? PyObject_CallMethod(threading,
                                                      "main_thread", NULL)
                                : NULL;
        PyObject *ident = t ? PyObject_GetAttrString(t, "ident") : NULL;
        if (ident != NULL) {
            main_ident = PyLong_AsUnsignedLong(ident);
        }
        Py_XDECREF(ident);
        Py_XDECREF(t);
        Py_XDECREF(threading);
        PyErr_Clear();
    }
    return PyThread_get_thread_ident() == main_ident;
}

int
gr_waiter_block_thread(gr_waiter *w, void (*cancel)(void *), void *arg,
                       const char *reason)
{
    bool is_main = is_main_thread();
    if (gr_sched_note_blocked(+1) < 0) {
        PyErr_Clear();
    }
    int polls = 0;
    uint64_t quiet_epoch = 0;
    int quiet_seen = 0;
    int result = 0;
    bool stopped = false;
    for (;;) {
        bool posted;
        if (polls == 0 && gr_pystate_finalizing()) {
            /* Too late (a __del__ of the final collections): goroutines no
             * longer run, so do not sleep at all; the check below raises. */
            posted = gr_sema_wait(w->sema, 0);
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            posted = gr_sema_wait(w->sema, GR_POLL_NS);
            Py_END_ALLOW_THREADS
        }
        if (posted) {
            break;
        }
        polls++;
        bool interrupted = false;
        if (gr_sched_stopped()) {
            /* Finalizing: nothing can wake this wait any more. */
            interrupted = stopped = true;
        }
        else if (is_main && PyErr_CheckSignals() < 0) {
            interrupted = true;
        }
        else if (polls % 4 == 0) {
            /* Twice quiescent with nothing made runnable in between. */
            uint64_t e = gr_sched_epoch();
            if (gr_sched_deadlocked()) {
                if (quiet_seen && e == quiet_epoch) {
                    PyErr_SetString(gr_globals.Deadlock,
                                    "all goroutines are asleep - deadlock!");
                    interrupted = true;
                }
                quiet_seen = 1;
                quiet_epoch = e;
            }
            else {
                quiet_seen = 0;
            }
        }
        if (!interrupted) {
            continue;
        }
        if (gr_waiter_claim(w)) {
            if (cancel != NULL) {
                cancel(arg);
            }
            result = -1;
            break;
        }
        /* Lost to a waker: the operation completed.  Wait for its wake,
         * then deliver; a KeyboardInterrupt is raised right after. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        Py_BEGIN_ALLOW_THREADS
        gr_sema_wait(w->sema, -1);
        Py_END_ALLOW_THREADS
        if (value != NULL && !stopped &&
            !PyErr_GivenExceptionMatches(value, gr_globals.Deadlock)) {
            if (tb != NULL) {
                PyException_SetTraceback(value, tb);
            }
            if (Py_AddPendingCall(reraise, value) == 0) {
                value = NULL;       /* stolen by the pending call */
            }
        }
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        break;
    }
    PyObject *exc_t, *exc_v, *exc_tb;
    PyErr_Fetch(&exc_t, &exc_v, &exc_tb);
    if (gr_sched_note_blocked(-1) < 0) {
        PyErr_Clear();
    }
    PyErr_Restore(exc_t, exc_v, exc_tb);
    (void)reason;
    return result;
}
