/*
 * timer.c: the libuv loop thread that owns every timer; sleep, and the
 * C half of goroutine.time's Timer and Ticker.
 *
 * One loop thread runs uv_run on a private loop.  Every timer is a
 * heap-allocated record with its own uv_timer_t, touched only by the loop
 * thread once submitted.  Other threads hand the loop requests (START,
 * STOP) through a mutex-protected queue and uv_async_send (sends coalesce);
 * the loop drains the queue in its async callback.
 *
 * Two kinds of record:
 *   - SLEEP: a waiter (goroutine or thread).  Firing claims and wakes it
 *     with no GIL: 10,000 sleeping goroutines cost one thread, and a
 *     sleeper's wake-up never waits for Python code to yield the GIL.
 *   - PY: a Timer/Ticker object (owner).  Firing takes the GIL, then
 *     delivers (sends the time on owner.c without blocking -- a full
 *     buffer drops the tick -- or starts owner.f in a goroutine).
 *     stop()/reset() run with the GIL too, so "stopped" and "delivered"
 *     are decided under one lock: after they return no stale value is
 *     received (Go 1.23).
 *
 * Ownership: rec->refs counts the loop (until uv_close's callback) plus
 * one holder outside it (the thread that sleeps, or the owner object).
 * The last one frees the record.  rec->owner (a strong reference that
 * keeps an unreferenced `after(d)` timer alive until it fires) is read
 * and written only with the GIL held.
 *
 * gr_timers_pending counts records that can still fire: +1 when started,
 * -1 by the loop when a one-shot fires or a STOP reaches an unfired
 * record.  The deadlock check reads it.
 */
#include "core.h"

#include <uv.h>

enum { TK_SLEEP = 1, TK_PY = 2 };
enum { OP_START = 1, OP_STOP = 2, OP_DROPPED = 3 };

typedef struct gr_pytimer gr_pytimer;

typedef struct gr_timer_rec {
    uv_timer_t h;               /* loop thread only */
    atomic_int refs;            /* loop + one outside holder */
    int kind;                   /* TK_* */
    uint64_t timeout_ms;
    uint64_t repeat_ms;         /* Ticker period, 0 for one-shot */
    gr_waiter w;                /* TK_SLEEP */
    gr_pytimer *owner;          /* TK_PY, GIL: strong ref while pending */
    bool delivered;             /* TK_PY, GIL: a one-shot has delivered */
    bool fired;                 /* loop: counted out of pending */
    bool started;               /* loop: uv handle initialized */
    bool closing;               /* loop: uv_close called */
    struct req *startreq;       /* L.lock: its START, while still queued */
} gr_timer_rec;

typedef struct req {
    struct req *next;
    int op;
    gr_timer_rec *rec;
} req;

static struct {
    pthread_mutex_t lock;       /* guards the queue; leaf lock */
    req *head, *tail;
    uv_loop_t loop;
    uv_async_t async;
    atomic_bool started;
    pthread_t thread;
} L = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void rec_unref(gr_timer_rec *rec);
struct req;

/* ---- loop thread ---------------------------------------------------- */

static void
close_cb(uv_handle_t *h)
{
    rec_unref((gr_timer_rec *)h->data);
}

static void
rec_close(gr_timer_rec *rec)
{
    if (rec->started && !rec->closing) {
        rec->closing = true;
        uv_close((uv_handle_t *)&rec->h, close_cb);
    }
    else if (!rec->started) {
        rec_unref(rec);
    }
}

static void
count_out(gr_timer_rec *rec)
{
    if (!rec->fired) {
        rec->fired = true;
        atomic_fetch_sub(&gr_timers_pending, 1);
    }
}

void gr_pytimer_fire(gr_timer_rec *rec);   /* below, takes the GIL */

static void
fire_cb(uv_timer_t *h)
{
    gr_timer_rec *rec = h->data;
    if (rec->kind == TK_SLEEP) {
        count_out(rec);
        if (gr_waiter_claim(&rec->w)) {
            gr_waiter_wake(&rec->w);
        }
        rec_close(rec);
        return;
    }
    gr_pytimer_fire(rec);
    if (rec->repeat_ms == 0) {
        count_out(rec);
        rec_close(rec);
    }
}

static void
async_cb(uv_async_t *a)
{
    pthread_mutex_lock(&L.lock);
    req *q = L.head;
    L.head = L.tail = NULL;
    for (req *x = q; x != NULL; x = x->next) {
        if (x->op == OP_START) {
            x->rec->startreq = NULL;    /* taken: a STOP must queue now */
        }
    }
    pthread_mutex_unlock(&L.lock);
    while (q != NULL) {
        req *next = q->next;
        gr_timer_rec *rec = q->rec;
        if (q->op == OP_DROPPED) {
            /* Stopped before it started: it never reaches libuv. */
            count_out(rec);
            rec_close(rec);
        }
        else if (q->op == OP_START) {
            uv_timer_init(&L.loop, &rec->h);
            rec->h.data = rec;
            rec->started = true;
            uv_timer_start(&rec->h, fire_cb, rec->timeout_ms, rec->repeat_ms);
        }
        else if (!rec->closing) {
            /* STOP: the record may already have fired and closed. */
            count_out(rec);
            uv_timer_stop(&rec->h);
            rec_close(rec);
            rec_unref(rec);         /* the STOP request's reference */
        }
        else {
            rec_unref(rec);
        }
        free(q);
        q = next;
    }
}

static void *
loop_main(void *arg)
{
    uv_run(&L.loop, UV_RUN_DEFAULT);
    return NULL;
}

static int
loop_start(void)
{
    if (atomic_load(&L.started)) {
        return 0;
    }
    pthread_mutex_lock(&L.lock);
    if (!atomic_load(&L.started)) {
        if (uv_loop_init(&L.loop) != 0 ||
            uv_async_init(&L.loop, &L.async, async_cb) != 0) {
            pthread_mutex_unlock(&L.lock);
            PyErr_SetString(PyExc_RuntimeError,
                            "goroutine: cannot start the libuv loop");
            return -1;
        }
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int r = pthread_create(&L.thread, &attr, loop_main, NULL);
        pthread_attr_destroy(&attr);
        if (r != 0) {
            pthread_mutex_unlock(&L.lock);
            PyErr_SetString(PyExc_RuntimeError,
                            "goroutine: cannot start the timer thread");
            return -1;
        }
        atomic_store(&L.started, true);
    }
    pthread_mutex_unlock(&L.lock);
    return 0;
}

/* Hand the loop a request.  Any thread, GIL or not.  A STOP whose START
 * is still queued cancels it in place: with_timeout + cancel, the common
 * case, then costs the loop one request and no second wake-up. */
static void
submit(int op, gr_timer_rec *rec)
{
    pthread_mutex_lock(&L.lock);
    if (op == OP_STOP && rec->startreq != NULL) {
        rec->startreq->op = OP_DROPPED;
        rec->startreq = NULL;
        pthread_mutex_unlock(&L.lock);
        rec_unref(rec);         /* the STOP's (outside) reference */
        return;
    }
    pthread_mutex_unlock(&L.lock);
    req *q = malloc(sizeof *q);
    if (q == NULL) {
        Py_FatalError("goroutine: out of memory submitting a timer");
    }
    q->op = op;
    q->rec = rec;
    q->next = NULL;
    pthread_mutex_lock(&L.lock);
    if (op == OP_START) {
        rec->startreq = q;
    }
    if (L.tail) {
        L.tail->next = q;
    }
    else {
        L.head = q;
    }
    L.tail = q;
    pthread_mutex_unlock(&L.lock);
    uv_async_send(&L.async);
}

static void
rec_unref(gr_timer_rec *rec)
{
    if (atomic_fetch_sub(&rec->refs, 1) == 1) {
        free(rec);
    }
}

static uint64_t
duration_ms(double seconds)
{
    if (!(seconds > 0)) {
        return 0;
    }
    double ms = seconds * 1000.0;
    if (ms > 9.0e15) {
        ms = 9.0e15;
    }
    /* Round up: a sleep never ends early. */
    uint64_t r = (uint64_t)ms;
    return (double)r < ms ? r + 1 : r;
}

static gr_timer_rec *
rec_new(int kind, double seconds, double period)
{
    gr_timer_rec *rec = calloc(1, sizeof *rec);
    if (rec == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    rec->kind = kind;
    rec->timeout_ms = duration_ms(seconds);
    rec->repeat_ms = period > 0 ? duration_ms(period) : 0;
    if (period > 0 && rec->repeat_ms == 0) {
        rec->repeat_ms = 1;
    }
    atomic_store(&rec->refs, 2);
    return rec;
}

static void
start(gr_timer_rec *rec)
{
    atomic_fetch_add(&gr_timers_pending, 1);
    submit(OP_START, rec);
}

/* ---- sleep ---------------------------------------------------------- */

static void
start_unlock(void *arg)
{
    start((gr_timer_rec *)arg);
}

static void
cancel_sleep(void *arg)
{
    /* The thread won the claim: our outside reference goes with STOP. */
    submit(OP_STOP, (gr_timer_rec *)arg);
}

/* Park the goroutine, or block the thread interruptibly, for `seconds`.
 * GIL held.  0 or -1 with an exception. */
int
gr_sleep(double seconds)
{
    if (!(seconds > 0)) {
        return 0;
    }
    if (loop_start() < 0) {
        return -1;
    }
    gr_timer_rec *rec = rec_new(TK_SLEEP, seconds, 0);
    if (rec == NULL) {
        return -1;
    }
    gr_g *g = gr_getg();
    if (g != NULL) {
        rec->w.kind = GR_WAIT_G;
        rec->w.g = g;
        atomic_store(&rec->refs, 1);    /* the loop's only */
        /* Start it only once we are off the CPU, so the wake cannot
         * precede the park. */
        gr_park(start_unlock, rec, "sleep");
        return 0;
    }
    gr_sema sema;
    gr_waiter_init_thread(&rec->w, &sema);
    start(rec);
    int r = gr_waiter_block_thread(&rec->w, cancel_sleep, rec, "sleep");
    gr_waiter_fini_thread(&rec->w);
    if (r == 0) {
        rec_unref(rec);
    }
    return r;
}

static PyObject *
timer_sleep(PyObject *module, PyObject *arg)
{
    double d = PyFloat_AsDouble(arg);
    if (d == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (gr_sleep(d) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- Timer / Ticker (the C half of goroutine.time) ------------------ */

struct gr_pytimer {
    PyObject_HEAD
    PyObject *c;                /* channel to send the time on, or NULL */
    PyObject *f;                /* callable to start as a goroutine, or NULL */
    gr_timer_rec *rec;          /* the pending record, GIL */
    double period;              /* > 0: a ticker */
};

static PyObject *
wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return PyFloat_FromDouble((double)ts.tv_sec + ts.tv_nsec * 1e-9);
}


/* Loop thread: deliver a PY record's fire.  Takes the GIL unless the
 * process is exiting (then Python must not be touched). */
void
gr_pytimer_fire(gr_timer_rec *rec)
{
    if (gr_sched_exiting()) {
        return;
    }
    PyGILState_STATE gs = PyGILState_Ensure();
    gr_pytimer *t = rec->owner;
    if (t != NULL && t->rec == rec && !rec->delivered) {
        Py_INCREF(t);
        if (rec->repeat_ms == 0) {
            rec->delivered = true;
            rec->owner = NULL;
            Py_DECREF(t);           /* the record's reference */
        }
        if (t->c != NULL) {
            hchan *c;
            int dir;
            PyObject *now = wall_now();
            if (now != NULL && gr_chan_unwrap(t->c, &c, &dir) == 0 && c) {
                gr_chan_after after = {{0}};
                gr_chan_lock(c);
                gr_chan_trysend(c, now, &after);   /* full: tick dropped */
                gr_chan_unlock(c);
                gr_chan_after_run(&after);
            }
            Py_XDECREF(now);
        }
        if (t->f != NULL) {
            PyObject *args = PyTuple_New(0);
            PyObject *r = args ? gr_go(t->f, args) : NULL;
            Py_XDECREF(args);
            Py_XDECREF(r);
        }
        if (PyErr_Occurred()) {
            PyErr_WriteUnraisable((PyObject *)t);
        }
        Py_DECREF(t);
    }
    PyGILState_Release(gs);
}

/* Drop the values buffered on t.c: after stop/reset no stale value. */
static void
drain(gr_pytimer *t)
{
    hchan *c;
    int dir;
    if (t->c == NULL || gr_chan_unwrap(t->c, &c, &dir) < 0 || c == NULL) {
        return;
    }
    for (;;) {
        PyObject *v = NULL;
        gr_chan_after after = {{0}};
        gr_chan_lock(c);
        int r = gr_chan_tryrecv(c, &v, &after);
        gr_chan_unlock(c);
        gr_chan_after_run(&after);
        Py_XDECREF(v);
        if (r <= 0) {
            break;
        }
    }
}

/* Stop the pending record; returns whether it was active.  GIL held. */
static bool
pytimer_stop(gr_pytimer *t)
{
    gr_timer_rec *rec = t->rec;
    if (rec == NULL) {
        return false;
    }
    t->rec = NULL;
    bool active = !rec->delivered;
    if (rec->owner != NULL) {
        rec->owner = NULL;
        Py_DECREF(t);       /* safe: the caller holds a reference */
    }
    submit(OP_STOP, rec);   /* carries our outside reference */
    return active;
}

static int
pytimer_start(gr_pytimer *t, double d)
{
    if (loop_start() < 0) {
        return -1;
    }
    gr_timer_rec *rec = rec_new(TK_PY, d, t->period);
    if (rec == NULL) {
        return -1;
    }
    rec->owner = (gr_pytimer *)Py_NewRef((PyObject *)t);
    t->rec = rec;
    start(rec);
    return 0;
}

static PyObject *
pytimer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"d", "c", "f", "period", NULL};
    double d, period = 0;
    PyObject *c = Py_None, *f = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "d|OOd:_timer", kwlist,
                                     &d, &c, &f, &period)) {
        return NULL;
    }
    gr_pytimer *t = (gr_pytimer *)type->tp_alloc(type, 0);
    if (t == NULL) {
        return NULL;
    }
    t->c = c != Py_None ? Py_NewRef(c) : NULL;
    t->f = f != Py_None ? Py_NewRef(f) : NULL;
    t->period = period;
    if (pytimer_start(t, d) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static PyObject *
pytimer_stop_m(gr_pytimer *t, PyObject *unused)
{
    bool active = pytimer_stop(t);
    drain(t);
    return PyBool_FromLong(active);
}

static PyObject *
pytimer_reset_m(gr_pytimer *t, PyObject *arg)
{
    double d = PyFloat_AsDouble(arg);
    if (d == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    bool active = pytimer_stop(t);
    drain(t);
    if (pytimer_start(t, d) < 0) {
        return NULL;
    }
    return PyBool_FromLong(active);
}

static PyObject *
pytimer_set_period(gr_pytimer *t, PyObject *arg)
{
    double p = PyFloat_AsDouble(arg);
    if (p == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    t->period = p;
    Py_RETURN_NONE;
}

static int
pytimer_traverse(gr_pytimer *t, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(t));
    Py_VISIT(t->c);
    Py_VISIT(t->f);
    return 0;
}

static int
pytimer_clear(gr_pytimer *t)
{
    Py_CLEAR(t->c);
    Py_CLEAR(t->f);
    return 0;
}

static void
pytimer_dealloc(gr_pytimer *t)
{
    PyTypeObject *tp = Py_TYPE(t);
    PyObject_GC_UnTrack(t);
    /* A pending record owns a reference to us, so here it has delivered
     * or been stopped: only our outside reference to it remains. */
    if (t->rec != NULL) {
        gr_timer_rec *rec = t->rec;
        t->rec = NULL;
        submit(OP_STOP, rec);
    }
    pytimer_clear(t);
    tp->tp_free(t);
    Py_DECREF(tp);
}

static PyMethodDef pytimer_methods[] = {
    {"stop", (PyCFunction)pytimer_stop_m, METH_NOARGS,
     "stop($self, /)\n--\n\nStop; True if the timer was active."},
    {"reset", (PyCFunction)pytimer_reset_m, METH_O,
     "reset($self, d, /)\n--\n\nRestart to fire after d seconds; True if "
     "it was active."},
    {"_set_period", (PyCFunction)pytimer_set_period, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot pytimer_slots[] = {
    {Py_tp_doc, "_timer(d, c=None, f=None, period=0)\n--\n\n"
                "The C half of goroutine.time.Timer and Ticker."},
    {Py_tp_new, pytimer_new},
    {Py_tp_dealloc, pytimer_dealloc},
    {Py_tp_traverse, pytimer_traverse},
    {Py_tp_clear, pytimer_clear},
    {Py_tp_methods, pytimer_methods},
    {0, NULL},
};

static PyType_Spec pytimer_spec = {
    .name = "goroutine._core._timer",
    .basicsize = sizeof(gr_pytimer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = pytimer_slots,
};

static PyMethodDef timer_methods[] = {
    {"sleep", timer_sleep, METH_O,
     "sleep(d, /)\n--\n\n"
     "Park the calling goroutine (or block the thread, interruptibly) for "
     "d seconds."},
    {NULL, NULL, 0, NULL},
};

static PyObject *timer_type;

int
gr_timer_exec(PyObject *module)
{
    if (timer_type == NULL) {
        timer_type = PyType_FromSpec(&pytimer_spec);
        if (timer_type == NULL) {
            return -1;
        }
    }
    if (PyModule_AddObjectRef(module, "_timer", timer_type) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, timer_methods);
}
