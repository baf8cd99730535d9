/*
 * waiter.c: how anything in the runtime waits -- Go's sudog and gopark,
 * written once.  Channels, select, sync's Mutex/RWMutex/WaitGroup/Cond/
 * Sema and sleep all block through the functions of this file:
 *
 *   gr_waiter   one blocked party: a parked goroutine or a plain OS thread
 *               (the main thread, a threading.Thread).  The asyncio twins
 *               need no third kind: goroutine/_async.py runs the operation
 *               in a goroutine and cancels it through a select's claim.
 *   gr_sudog    its place on one wait queue (a channel's sendq/recvq, a
 *               sync object's queue); a select has one per case, all
 *               pointing at one waiter.
 *   gr_waitq    a FIFO of sudogs, guarded by its owner's lock, and
 *   gr_wakelist the waiters taken off their queues under a lock, woken
 *               once it is released (STYLE recipe 4): both in waitq.h,
 *               inline, as they sit on every channel operation.
 *   gr_block    the park-or-block primitive: a goroutine parks (its locks
 *               released on g0, once it is off the CPU), a plain thread
 *               releases them and waits on a semaphore in its own frame.
 *   gr_sema     that semaphore (sema.c, at the bottom: an idle M parks
 *               on one too, and sched.c is below this file).
 *
 * The claim: a waiter may sit on several queues at once (select).  Whoever
 * wants to complete it -- a peer's send/recv, close, an unlock, a timer, or
 * a cancel (Ctrl-C, Deadlock) -- must first win w->claimed 0 -> 1 with a
 * CAS.  So exactly one case of a select fires, and a cancel that loses the
 * race knows the operation has completed (its result is delivered, never
 * dropped): it waits for the wake that is surely coming and reports the
 * interruption afterwards.
 *
 * Invariants (the queue's own are in waitq.h):
 *   - a waiter, its sudogs and a thread's semaphore live in the blocked
 *     party's frame (the stack stays put while it is parked), or in a
 *     timer record: valid until the waiter is woken or its cancel won.
 *     So a waker reads everything it needs before gr_waiter_wake.
 *
 * Locks: the queues are guarded by their owners' locks (hchan.lock, a sync
 * object's mu), which are never held while waking, calling Python or
 * taking the GIL.  gr_sema's mu is a leaf.  Nothing here needs the GIL
 * except gr_block on a plain thread (it releases it around each slice).
 *
 * A plain thread waits with the GIL released, in slices of GR_POLL_NS:
 * between slices the main thread runs signal handlers (Ctrl-C lands within
 * 100 ms), and every thread asks the scheduler whether the wait can ever
 * end (Deadlock within a second).
 */
#include "core.h"


#define GR_POLL_NS 50000000         /* 50 ms: Ctrl-C latency bound / 2 */

/* ---- the waiter ----------------------------------------------------- */

/* A waiter whose owner did not survive a fork (a ghost goroutine, or a
 * thread of the parent) is never claimed: a peer skips it as if another
 * select case had won, so no value is handed to a party that cannot take
 * it, and nobody waits on a ghost thread's semaphore (its mutex may have
 * been held at the fork). */
bool
gr_waiter_claim(gr_waiter *w)
{
    if (w->kind == GR_WAIT_G ? gr_g_ghost(w->g)
        : w->forkgen != atomic_load_explicit(&gr_forkgen,
                                             memory_order_relaxed)) {
        return false;
    }
    int expect = 0;
    return atomic_compare_exchange_strong(&w->claimed, &expect, 1);
}

/* Wake a claimed waiter.  No runtime lock held; GIL held or not. */
void
gr_waiter_wake(gr_waiter *w)
{
    if (w->kind == GR_WAIT_G) {
        gr_ready(w->g);
    }
    else {
        gr_sema_post(w->sema);
    }
}

gr_g *
gr_waiter_init(gr_waiter *w)
{
    gr_g *g = gr_getg();
    memset(w, 0, sizeof *w);
    if (g != NULL) {
        w->kind = GR_WAIT_G;
        w->g = g;
    }
    else {
        w->kind = GR_WAIT_THREAD;
        w->forkgen = atomic_load_explicit(&gr_forkgen, memory_order_relaxed);
    }
    return g;
}

/* ---- blocking ------------------------------------------------------- */

void
gr_blockon_lock(const gr_blockon *bo)
{
    for (int i = 0; i < bo->nlocks; i++) {
        pthread_mutex_lock(bo->locks[i]);
    }
}

void
gr_blockon_unlock(const gr_blockon *bo)
{
    for (int i = bo->nlocks; i-- > 0;) {
        pthread_mutex_unlock(bo->locks[i]);
    }
}

void
gr_blockon_dequeue(const gr_blockon *bo)
{
    if (bo->nsgs == 0) {
        return;
    }
    gr_blockon_lock(bo);
    for (int i = 0; i < bo->nsgs; i++) {
        gr_waitq_remove(&bo->sgs[i]);
    }
    gr_blockon_unlock(bo);
}

/* gr_park's unlock function: on g0, once the goroutine is off the CPU.
 * The locks were handed over to g0 by gr_block (gstack.c explains). */
static void
park_release(void *arg)
{
    gr_blockon *bo = arg;
    /* *bo lives in the goroutine's frame, which a waker may resume as soon
     * as the last lock is released: read it all before.  (With several
     * locks, locks[] is read between unlocks: safe, because a woken
     * select takes every lock again, in pass 3, before its frame goes.) */
    pthread_mutex_t **locks = bo->locks;
    int n = bo->nlocks;
    void (*publish)(void *) = bo->publish;
    void *parg = bo->arg;
    for (int i = 0; i < n; i++) {
        gr_lock_handoff_in(locks[i]);
    }
    while (n-- > 0) {
        pthread_mutex_unlock(locks[n]);
    }
    if (publish != NULL) {
        publish(parg);
    }
}

/* A plain thread's interrupt won the claim: nobody will complete the
 * waiter now, so take it off everything it was published on. */
static void
cancel(gr_blockon *bo)
{
    if (bo->unpublish != NULL) {
        bo->unpublish(bo->arg);
    }
    gr_blockon_dequeue(bo);
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

/* Block the calling plain thread until w fires.  GIL held on entry and
 * exit.  0 when fired, -1 with an exception (KeyboardInterrupt, Deadlock)
 * when the operation left no trace. */
static int
block_thread(gr_waiter *w, gr_blockon *bo)
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
            cancel(bo);
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
    return result;
}

int
gr_block(gr_waiter *w, gr_blockon *bo, const char *reason)
{
    if (w->kind == GR_WAIT_G) {
        for (int i = bo->nlocks; i-- > 0;) {
            gr_lock_handoff_out(bo->locks[i]);
        }
        bool release = bo->nlocks > 0 || bo->publish != NULL;
        gr_park(release ? park_release : NULL, bo, reason);
        return 0;
    }
    /* Set before the waiter can be found: the locks still hide it, and
     * publish() has not run. */
    gr_sema sema;
    gr_sema_init(&sema);
    w->sema = &sema;
    gr_blockon_unlock(bo);
    if (bo->publish != NULL) {
        bo->publish(bo->arg);
    }
    int r = block_thread(w, bo);
    gr_sema_destroy(&sema);
    return r;
}

int
gr_block_on(gr_waitq *q, gr_sudog *sg, bool front, pthread_mutex_t *mu,
            const char *reason)
{
    gr_waiter w;
    gr_waiter_init(&w);
    sg->w = &w;
    sg->success = false;
    gr_blockon bo = {0};
    if (q != NULL) {
        gr_waitq_push(q, sg, front);
        bo = (gr_blockon){.locks = &mu, .nlocks = 1, .sgs = sg, .nsgs = 1};
    }
    return gr_block(&w, &bo, reason);
}
