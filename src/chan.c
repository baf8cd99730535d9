/*
 * chan.c: Go's hchan for Python objects.
 *
 * Invariants (Go's, restated for this struct):
 *   - At least one of sendq and recvq is empty, except for an unbuffered
 *     channel with a single select blocked on both its send and receive.
 *   - Buffered: qcount > 0 implies recvq is empty; qcount < dataqsiz
 *     implies sendq is empty.
 *   - closed implies no new sudog is enqueued.
 *   - A sudog's waiter is claimed before anyone completes it (waiter.c),
 *     so a stale sudog (its select fired elsewhere, or it was cancelled)
 *     is dropped on sight.
 *
 * Locking: `lock` guards every field below it.  While holding it: no
 * Python call, no DECREF (it can run __del__), no GIL release, no waking.
 * Py_NewRef of a value is fine (the caller holds the GIL; all channel
 * operations are made from Python).  Waiters to wake are collected on a
 * gr_wakelist and woken after unlocking.  Blocking is waiter.c's
 * gr_block_on, with this lock as the one it releases.
 * Lock order: channels by address (select.c), never two otherwise.
 *
 * Values are passed by reference: the buffer owns strong references; a
 * blocked sender's sudog borrows its value (the sender keeps it alive
 * until it resumes), and the receiver takes a new reference to it.
 *
 * Directional views (send_only/recv_only) are chan objects with `base`
 * set: they forward to base's hchan and restrict `dir`.  nilchan is a chan
 * object with isnil set: every operation blocks forever, close panics.
 *
 * Element types (pygolang's chan(dtype=...)): `dtype` is fixed at creation.
 * A typed channel still carries Python objects; the type is enforced at
 * the send entry points (ch.send, a select send case), which convert the
 * value (C.double turns 4 into 4.0) or raise TypeError, and a receive from
 * a closed typed channel yields the type's zero value instead of None.
 * The queues and the buffer never see the type.  chan.nil(dtype) returns
 * one nil channel per type; a typed nil equals nilchan (pygolang's untyped
 * nil) and hashes like it.
 *
 * A timer's channel (timer.c) has `timer` set: it keeps its Timer alive
 * (the timer heap holds the Timer only weakly, so a Timer and channel that
 * nothing references are collected, as in Go 1.23), and len()/cap() are
 * 0: Go 1.23 presents timer channels as unbuffered, although the timer
 * delivers into a one-slot buffer that stop()/reset() drain.
 */
#include "core.h"
#include <structmember.h>
#include <limits.h>

struct hchan {
    PyObject_HEAD
    pthread_mutex_t lock;       /* never held across Python or the GIL */
    Py_ssize_t qcount;          /* values in buf (stored atomically: see
                                   gr_chan_peek) */
    Py_ssize_t dataqsiz;        /* capacity */
    PyObject **buf;             /* ring of strong refs, dataqsiz slots */
    Py_ssize_t sendx;           /* next slot to fill */
    Py_ssize_t recvx;           /* next slot to drain */
    int closed;                 /* stored atomically: see gr_chan_peek */
    gr_waitq recvq;             /* blocked receivers, FIFO */
    gr_waitq sendq;             /* blocked senders, FIFO */
    /* immutable after creation: */
    struct hchan *base;         /* views: the channel they restrict */
    int dir;                    /* GR_DIR_* allowed through this object */
    int isnil;                  /* nilchan */
    int dtype;                  /* GR_DTYPE_* of the elements */
    PyObject *timer;            /* set once, GIL: the Timer sending on it */
    PyObject *weakreflist;
};

static hchan *
chan_of(hchan *self)
{
    return self->base != NULL ? self->base : self;
}

int
gr_chan_unwrap(PyObject *obj, hchan **c, int *dir)
{
    if (!PyObject_TypeCheck(obj, gr_globals.chan_type)) {
        return -1;
    }
    hchan *self = (hchan *)obj;
    hchan *base = chan_of(self);
    *c = base->isnil ? NULL : base;
    *dir = self->dir;
    return 0;
}

void
gr_chan_lock(hchan *c)
{
    pthread_mutex_lock(&c->lock);
}

void
gr_chan_unlock(hchan *c)
{
    pthread_mutex_unlock(&c->lock);
}

pthread_mutex_t *
gr_chan_mutex(hchan *c)
{
    return &c->lock;
}

void
gr_chan_set_timer(hchan *c, PyObject *timer)
{
    Py_XSETREF(c->timer, Py_NewRef(timer));
}

void
gr_chan_enqueue(hchan *c, gr_sudog *sg, bool send)
{
    gr_waitq_push(send ? &c->sendq : &c->recvq, sg, false);
}

/* ---- the lock-free peek (select's first pass) ------------------------ */

int
gr_chan_peek(hchan *c, bool send)
{
    /* One field per question, as Go's empty()/full(): buffered channels
     * are answered by qcount alone (a sender waits only when the buffer
     * is full, a receiver only when it is empty), unbuffered ones by the
     * peer queue's head.  Then closed: it never goes back to 0, and a
     * channel cannot go from "ready" to "not ready" by being closed, so
     * "not ready, then not closed" means there was an instant at which
     * both held (Go's selectnbrecv argument). */
    bool ready;
    if (c->dataqsiz > 0) {
        Py_ssize_t n = GR_LOAD_ACQUIRE(&c->qcount);
        ready = send ? n < c->dataqsiz : n > 0;
    }
    else {
        ready = GR_LOAD_ACQUIRE(send ? &c->recvq.head : &c->sendq.head)
                != NULL;
    }
    if (ready) {
        return 1;
    }
    return GR_LOAD_ACQUIRE(&c->closed) ? -1 : 0;
}

/* ---- the three operations, non-blocking part (lock held) ------------ */

int
gr_chan_trysend(hchan *c, PyObject *v, gr_wakelist *wl)
{
    if (c->closed) {
        return -1;
    }
    gr_sudog *sg = gr_waitq_dequeue(&c->recvq);
    if (sg != NULL) {
        /* Direct handoff to a parked receiver. */
        sg->elem = Py_NewRef(v);
        sg->success = true;
        gr_wakelist_add(wl, sg);
        return 1;
    }
    if (c->qcount < c->dataqsiz) {
        c->buf[c->sendx] = Py_NewRef(v);
        if (++c->sendx == c->dataqsiz) {
            c->sendx = 0;
        }
        GR_STORE_RELAXED(&c->qcount, c->qcount + 1);
        return 1;
    }
    return 0;
}

int
gr_chan_tryrecv(hchan *c, PyObject **out, gr_wakelist *wl)
{
    gr_sudog *sg = gr_waitq_dequeue(&c->sendq);
    if (sg != NULL) {
        if (c->dataqsiz == 0) {
            *out = Py_NewRef(sg->elem);
        }
        else {
            /* Full buffer: take the head, put the sender's value in the
             * freed slot, which is the tail. */
            *out = c->buf[c->recvx];
            c->buf[c->recvx] = Py_NewRef(sg->elem);
            if (++c->recvx == c->dataqsiz) {
                c->recvx = 0;
            }
            c->sendx = c->recvx;
        }
        sg->success = true;
        gr_wakelist_add(wl, sg);
        return 1;
    }
    if (c->qcount > 0) {
        *out = c->buf[c->recvx];
        c->buf[c->recvx] = NULL;
        if (++c->recvx == c->dataqsiz) {
            c->recvx = 0;
        }
        GR_STORE_RELAXED(&c->qcount, c->qcount - 1);
        return 1;
    }
    if (c->closed) {
        *out = NULL;
        return -1;
    }
    return 0;
}

/* ---- blocking ------------------------------------------------------- */

/* Block on c (locked on entry, unlocked on return) with sg queued on its
 * send or receive queue.  c NULL: nilchan, blocks forever.  Returns 0
 * when woken, -1 with an exception when a thread's wait was interrupted
 * (nothing happened). */
static int
block_on(hchan *c, gr_sudog *sg, bool send, const char *reason)
{
    if (c == NULL) {
        return gr_block_on(NULL, sg, false, NULL, reason);
    }
    return gr_block_on(send ? &c->sendq : &c->recvq, sg, false, &c->lock,
                       reason);
}

/* chansend: 0 sent, -1 exception set. */
static int
chansend(hchan *c, PyObject *v)
{
    if (c == NULL) {
        gr_sudog sg = {0};
        block_on(NULL, &sg, true, "chan send (nil chan)");
        return -1;      /* only an interrupted wait returns */
    }
    gr_wakelist wl = {0};
    gr_chan_lock(c);
    int r = gr_chan_trysend(c, v, &wl);
    if (r != 0) {
        gr_chan_unlock(c);
        gr_wakelist_wake(&wl);
        if (r < 0) {
            gr_panic("send on closed channel");
            return -1;
        }
        return 0;
    }
    gr_sudog sg = {0};
    sg.elem = v;
    if (block_on(c, &sg, true, "chan send") < 0) {
        return -1;
    }
    if (!sg.success) {
        gr_panic("send on closed channel");
        return -1;
    }
    return 0;
}

/* chanrecv: 1 received (*out new ref), 0 closed and drained (*out NULL),
 * -1 exception set. */
static int
chanrecv(hchan *c, PyObject **out)
{
    *out = NULL;
    if (c == NULL) {
        gr_sudog sg = {0};
        block_on(NULL, &sg, false, "chan receive (nil chan)");
        return -1;
    }
    gr_wakelist wl = {0};
    gr_chan_lock(c);
    int r = gr_chan_tryrecv(c, out, &wl);
    if (r != 0) {
        gr_chan_unlock(c);
        gr_wakelist_wake(&wl);
        return r > 0 ? 1 : 0;
    }
    gr_sudog sg = {0};
    if (block_on(c, &sg, false, "chan receive") < 0) {
        return -1;
    }
    if (!sg.success) {
        return 0;
    }
    *out = sg.elem;
    return 1;
}

bool
gr_chan_tryclose(hchan *c)
{
    gr_chan_lock(c);
    if (c->closed) {
        gr_chan_unlock(c);
        return false;
    }
    GR_STORE_RELAXED(&c->closed, 1);
    gr_wakelist wl = {0};
    gr_sudog *sg;
    while ((sg = gr_waitq_dequeue(&c->recvq)) != NULL) {
        sg->elem = NULL;
        sg->success = false;
        gr_wakelist_add(&wl, sg);
    }
    while ((sg = gr_waitq_dequeue(&c->sendq)) != NULL) {
        sg->success = false;
        gr_wakelist_add(&wl, sg);
    }
    gr_chan_unlock(c);
    gr_wakelist_wake(&wl);
    return true;
}

/* closechan: wake every receiver ((None, False)) and every sender (they
 * panic).  Never blocks. */
static int
closechan(hchan *c)
{
    if (c == NULL) {
        gr_panic("close of nil channel");
        return -1;
    }
    if (!gr_chan_tryclose(c)) {
        gr_panic("close of closed channel");
        return -1;
    }
    return 0;
}

/* ---- Python methods ------------------------------------------------- */

static int
check_dir(hchan *self, int want, const char *what)
{
    if (self->dir != GR_DIR_BOTH && self->dir != want) {
        PyErr_Format(PyExc_TypeError, "invalid operation: %s (%s)", what,
                     self->dir == GR_DIR_SEND ? "receive from send-only "
                     "channel" : "send to receive-only channel");
        return -1;
    }
    return 0;
}

static hchan *
target(hchan *self)
{
    hchan *b = chan_of(self);
    return b->isnil ? NULL : b;
}

/* ---- element types ------------------------------------------------- */

/* pygolang's dtype names, indexed by GR_DTYPE_*. */
static const char *const dtype_names[GR_NDTYPES] = {
    "object", "C.structZ", "C.bool", "C.int", "C.double",
};

/* The nil channel of each type is gr_globals.typed_nil[dtype] (state.h;
 * [GR_DTYPE_OBJECT] is nilchan), made by gr_chan_init. */
_Static_assert(GR_NDTYPES == GR_CHAN_NDTYPES, "state.h's typed_nil size");

/* dtype argument -> GR_DTYPE_*; -1 with TypeError.  The `object` type,
 * None and 'object' are the untyped default. */
static int
parse_dtype(PyObject *dtype)
{
    if (dtype == NULL || dtype == Py_None ||
        dtype == (PyObject *)&PyBaseObject_Type) {
        return GR_DTYPE_OBJECT;
    }
    if (PyUnicode_Check(dtype)) {
        for (int i = 0; i < GR_NDTYPES; i++) {
            if (PyUnicode_CompareWithASCIIString(dtype, dtype_names[i]) == 0) {
                return i;
            }
        }
    }
    PyErr_Format(PyExc_TypeError, "chan: invalid dtype: %.200R (want "
                 "'object', 'C.structZ', 'C.bool', 'C.int' or 'C.double')",
                 dtype);
    return -1;
}

int
gr_chan_dtype(PyObject *chanobj)
{
    return chan_of((hchan *)chanobj)->dtype;
}

static PyObject *
type_mismatch(PyObject *v, int dtype, const char *extra)
{
    /* Go's wording for a send of the wrong type. */
    return PyErr_Format(PyExc_TypeError, "cannot use %.200R (type %.200s) as "
                        "%s value in send%s", v, Py_TYPE(v)->tp_name,
                        dtype_names[dtype], extra);
}

PyObject *
gr_chan_convert(int dtype, PyObject *v)
{
    switch (dtype) {
    case GR_DTYPE_STRUCTZ:
        if (v != Py_None) {
            return type_mismatch(v, dtype, "");
        }
        return Py_NewRef(v);
    case GR_DTYPE_BOOL:
        if (!PyBool_Check(v)) {
            return type_mismatch(v, dtype, "");
        }
        return Py_NewRef(v);
    case GR_DTYPE_INT: {
        if (PyBool_Check(v)) {
            return type_mismatch(v, dtype, "");
        }
        PyObject *i;
        if (PyFloat_Check(v)) {
            /* pygolang takes 3.0 as 3, never truncates 3.5. */
            double d = PyFloat_AS_DOUBLE(v);
            if (!(d >= INT_MIN && d <= INT_MAX) || d != (double)(int)d) {
                return type_mismatch(v, dtype, " (truncated)");
            }
            return PyLong_FromLong((long)d);
        }
        if (!PyIndex_Check(v)) {
            return type_mismatch(v, dtype, "");
        }
        i = PyNumber_Index(v);
        if (i == NULL) {
            return NULL;
        }
        int overflow;
        long x = PyLong_AsLongAndOverflow(i, &overflow);
        if (x == -1 && PyErr_Occurred()) {
            Py_DECREF(i);
            return NULL;
        }
        if (overflow || x < INT_MIN || x > INT_MAX) {
            Py_DECREF(i);
            return PyErr_Format(PyExc_OverflowError, "cannot use %.200R as "
                                "C.int value in send (overflows)", v);
        }
        Py_DECREF(i);
        return PyLong_FromLong(x);
    }
    case GR_DTYPE_DOUBLE: {
        if (PyFloat_CheckExact(v)) {
            return Py_NewRef(v);
        }
        if (PyBool_Check(v) || PyUnicode_Check(v) || PyBytes_Check(v)) {
            return type_mismatch(v, dtype, "");
        }
        double d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                return type_mismatch(v, dtype, "");
            }
            return NULL;
        }
        return PyFloat_FromDouble(d);
    }
    default:
        return Py_NewRef(v);
    }
}

PyObject *
gr_chan_zero(int dtype)
{
    switch (dtype) {
    case GR_DTYPE_BOOL:
        return Py_NewRef(Py_False);
    case GR_DTYPE_INT:
        return PyLong_FromLong(0);
    case GR_DTYPE_DOUBLE:
        return PyFloat_FromDouble(0.0);
    default:
        return Py_NewRef(Py_None);
    }
}

static PyObject *
chan_send(hchan *self, PyObject *v)
{
    if (check_dir(self, GR_DIR_SEND, "ch.send") < 0) {
        return NULL;
    }
    int dtype = chan_of(self)->dtype;
    if (dtype != GR_DTYPE_OBJECT) {
        PyObject *cv = gr_chan_convert(dtype, v);
        if (cv == NULL) {
            return NULL;
        }
        int r = chansend(target(self), cv);
        Py_DECREF(cv);
        if (r < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (chansend(target(self), v) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
chan_recv(hchan *self, PyObject *unused)
{
    if (check_dir(self, GR_DIR_RECV, "ch.recv") < 0) {
        return NULL;
    }
    PyObject *v;
    int r = chanrecv(target(self), &v);
    if (r < 0) {
        return NULL;
    }
    return r > 0 ? v : gr_chan_zero(chan_of(self)->dtype);
}

static PyObject *
chan_recv_(hchan *self, PyObject *unused)
{
    if (check_dir(self, GR_DIR_RECV, "ch.recv_") < 0) {
        return NULL;
    }
    PyObject *v;
    int r = chanrecv(target(self), &v);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        return Py_BuildValue("(NO)", gr_chan_zero(chan_of(self)->dtype),
                             Py_False);
    }
    PyObject *t = Py_BuildValue("(NO)", v, Py_True);
    return t;
}

static PyObject *
chan_close(hchan *self, PyObject *unused)
{
    if (self->dir == GR_DIR_RECV) {
        PyErr_SetString(PyExc_TypeError, "invalid operation: close of "
                        "receive-only channel");
        return NULL;
    }
    if (closechan(target(self)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
chan_cap(hchan *self, PyObject *unused)
{
    hchan *c = target(self);
    return PyLong_FromSsize_t(c && c->timer == NULL ? c->dataqsiz : 0);
}

static Py_ssize_t
chan_len(hchan *self)
{
    hchan *c = target(self);
    if (c == NULL || c->timer != NULL) {
        return 0;
    }
    gr_chan_lock(c);
    Py_ssize_t n = c->qcount;
    gr_chan_unlock(c);
    return n;
}

static PyObject *
make_view(hchan *self, int dir)
{
    if (self->dir != GR_DIR_BOTH && self->dir != dir) {
        PyErr_SetString(PyExc_TypeError, "cannot widen a directional "
                        "channel view");
        return NULL;
    }
    hchan *v = PyObject_GC_New(hchan, Py_TYPE(self));
    if (v == NULL) {
        return NULL;
    }
    memset((char *)v + sizeof(PyObject), 0, sizeof(hchan) - sizeof(PyObject));
    pthread_mutex_init(&v->lock, NULL);
    v->base = (hchan *)Py_NewRef(chan_of(self));
    v->dir = dir;
    PyObject_GC_Track(v);
    return (PyObject *)v;
}

static PyObject *
chan_send_only(hchan *self, PyObject *unused)
{
    return make_view(self, GR_DIR_SEND);
}

static PyObject *
chan_recv_only(hchan *self, PyObject *unused)
{
    return make_view(self, GR_DIR_RECV);
}

static PyObject *
chan_iter(hchan *self)
{
    if (check_dir(self, GR_DIR_RECV, "range over channel") < 0) {
        return NULL;
    }
    return Py_NewRef((PyObject *)self);
}

static PyObject *
chan_iternext(hchan *self)
{
    PyObject *v;
    int r = chanrecv(target(self), &v);
    return r > 0 ? v : NULL;    /* 0: closed and drained -> StopIteration */
}

/* The asyncio twins live in goroutine/_async.py, which the package
 * registered (_core._register): call fn(self, *args). */
static PyObject *
async_call(PyObject *fn, PyObject *self, PyObject *arg)
{
    if (fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "goroutine: the asyncio bridge is not registered "
                        "(import goroutine, not goroutine._core alone)");
        return NULL;
    }
    PyObject *args[2] = {self, arg};
    Py_INCREF(fn);          /* a later _register may replace it */
    PyObject *r = PyObject_Vectorcall(fn, args, arg != NULL ? 2 : 1, NULL);
    Py_DECREF(fn);
    return r;
}

static PyObject *
chan_send_async(hchan *self, PyObject *v)
{
    if (check_dir(self, GR_DIR_SEND, "ch.send_async") < 0) {
        return NULL;
    }
    return async_call(gr_globals.send_async, (PyObject *)self, v);
}

static PyObject *
chan_recv_async(hchan *self, PyObject *unused)
{
    if (check_dir(self, GR_DIR_RECV, "ch.recv_async") < 0) {
        return NULL;
    }
    return async_call(gr_globals.recv_async, (PyObject *)self, NULL);
}

static PyObject *
chan_recv_async_(hchan *self, PyObject *unused)
{
    if (check_dir(self, GR_DIR_RECV, "ch.recv_async_") < 0) {
        return NULL;
    }
    return async_call(gr_globals.recv_async_, (PyObject *)self, NULL);
}

static PyObject *
chan_aiter(hchan *self)
{
    if (check_dir(self, GR_DIR_RECV, "range over channel") < 0) {
        return NULL;
    }
    return async_call(gr_globals.aiter, (PyObject *)self, NULL);
}

static PyObject *
chan_repr(hchan *self)
{
    hchan *c = target(self);
    if (c == NULL) {
        int dtype = chan_of(self)->dtype;
        if (dtype != GR_DTYPE_OBJECT) {
            return PyUnicode_FromFormat("chan.nil('%s')", dtype_names[dtype]);
        }
        return PyUnicode_FromString("nilchan");
    }
    const char *d = self->dir == GR_DIR_SEND ? "chan<- "
                    : self->dir == GR_DIR_RECV ? "<-chan " : "chan ";
    gr_chan_lock(c);
    Py_ssize_t n = c->timer ? 0 : c->qcount;
    int closed = c->closed;
    gr_chan_unlock(c);
    return PyUnicode_FromFormat("<%s%p len=%zd cap=%zd%s>", d, (void *)c, n,
                                c->timer ? 0 : c->dataqsiz,
                                closed ? " closed" : "");
}

static PyObject *
chan_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"size", "dtype", NULL};
    Py_ssize_t size = 0;
    PyObject *sizeobj = NULL, *dtype = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO:chan", kwlist,
                                     &sizeobj, &dtype)) {
        return NULL;
    }
    if (sizeobj != NULL) {
        /* An int (or __index__): TypeError for 1.5, '4', None.  Out of
         * range is Go's makechan panic, as a ValueError: below zero, or a
         * buffer over Go's maxAlloc (2^48 bytes on 64-bit Linux). */
        PyObject *i = PyNumber_Index(sizeobj);
        if (i == NULL) {
            return NULL;
        }
        size = PyLong_AsSsize_t(i);
        Py_DECREF(i);
        if (size == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                return NULL;
            }
            PyErr_Clear();
            size = -1;
        }
    }
    if (size < 0 ||
        (uint64_t)size > ((uint64_t)1 << 48) / sizeof(PyObject *)) {
        PyErr_SetString(PyExc_ValueError, "makechan: size out of range");
        return NULL;
    }
    int dt = parse_dtype(dtype);
    if (dt < 0) {
        return NULL;
    }
    hchan *c = (hchan *)type->tp_alloc(type, 0);
    if (c == NULL) {
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    if (size > 0) {
        c->buf = PyMem_Calloc((size_t)size, sizeof(PyObject *));
        if (c->buf == NULL) {
            Py_DECREF(c);
            return PyErr_Format(PyExc_MemoryError, "makechan: cannot "
                                "allocate a buffer of %zd slots (%zd bytes)",
                                size, size * (Py_ssize_t)sizeof(PyObject *));
        }
    }
    c->dataqsiz = size;
    c->dtype = dt;
    return (PyObject *)c;
}

static PyObject *
chan_nil(PyObject *unused, PyObject *dtype)
{
    int dt = parse_dtype(dtype);
    if (dt < 0) {
        return NULL;
    }
    return Py_NewRef(gr_globals.typed_nil[dt]);
}

/* Channels compare by identity, except that nil channels are equal when
 * their types are, or when either is untyped (pygolang's nil[*]). */
static PyObject *
chan_richcompare(hchan *a, PyObject *other, int op)
{
    if ((op != Py_EQ && op != Py_NE) ||
        !PyObject_TypeCheck(other, gr_globals.chan_type)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    hchan *b = (hchan *)other;
    bool eq = a == b;
    if (!eq && a->isnil && b->isnil) {
        eq = a->dtype == b->dtype || a->dtype == GR_DTYPE_OBJECT ||
             b->dtype == GR_DTYPE_OBJECT;
    }
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static Py_hash_t
chan_hash(hchan *self)
{
    /* Equal objects hash alike: every nil hashes as nilchan. */
    PyObject *h = self->isnil ? gr_globals.typed_nil[GR_DTYPE_OBJECT]
                              : (PyObject *)self;
    return PyBaseObject_Type.tp_hash(h);
}

static int
chan_traverse(hchan *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->base);
    Py_VISIT(self->timer);
    /* The buffer changes under the lock, but the collector runs with the
     * GIL held and every buffer change is made with the GIL held too. */
    for (Py_ssize_t i = 0; i < self->dataqsiz; i++) {
        Py_VISIT(self->buf[i]);
    }
    return 0;
}

static int
chan_clear(hchan *self)
{
    Py_CLEAR(self->base);
    Py_CLEAR(self->timer);
    /* Move the references out under the lock, drop them after it. */
    PyObject **buf = NULL;
    Py_ssize_t n = 0;
    if (self->buf != NULL) {
        gr_chan_lock(self);
        buf = PyMem_Malloc(sizeof(PyObject *) * (size_t)self->dataqsiz);
        if (buf != NULL) {
            for (Py_ssize_t i = 0; i < self->dataqsiz; i++) {
                if (self->buf[i] != NULL) {
                    buf[n++] = self->buf[i];
                    self->buf[i] = NULL;
                }
            }
            GR_STORE_RELAXED(&self->qcount, 0);
        }
        gr_chan_unlock(self);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(buf[i]);
    }
    PyMem_Free(buf);
    return 0;
}

static void
chan_dealloc(hchan *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    chan_clear(self);
    PyMem_Free(self->buf);
    pthread_mutex_destroy(&self->lock);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef chan_methods[] = {
    {"send", (PyCFunction)chan_send, METH_O,
     "send($self, obj, /)\n--\n\n"
     "Send obj; block until received (unbuffered) or buffered.  On a closed "
     "channel raise Panic('send on closed channel')."},
    {"recv", (PyCFunction)chan_recv, METH_NOARGS,
     "recv($self, /)\n--\n\n"
     "Receive a value; None at once when closed and drained."},
    {"recv_", (PyCFunction)chan_recv_, METH_NOARGS,
     "recv_($self, /)\n--\n\n"
     "Receive (value, ok); ok is False only when closed and drained."},
    {"close", (PyCFunction)chan_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Close: wake every receiver and sender.  Never blocks."},
    {"cap", (PyCFunction)chan_cap, METH_NOARGS,
     "cap($self, /)\n--\n\nThe buffer's capacity."},
    {"send_only", (PyCFunction)chan_send_only, METH_NOARGS,
     "send_only($self, /)\n--\n\nA send-only view (chan<-) of this channel."},
    {"recv_only", (PyCFunction)chan_recv_only, METH_NOARGS,
     "recv_only($self, /)\n--\n\nA receive-only view (<-chan)."},
    {"send_async", (PyCFunction)chan_send_async, METH_O,
     "send_async($self, obj, /)\n--\n\n"
     "await ch.send_async(obj): send, suspending the asyncio task (not the "
     "thread).  Cancelled, it either sent or left no trace."},
    {"recv_async", (PyCFunction)chan_recv_async, METH_NOARGS,
     "recv_async($self, /)\n--\n\nawait ch.recv_async(): receive, "
     "suspending the asyncio task.  Cancelling it never loses a value."},
    {"recv_async_", (PyCFunction)chan_recv_async_, METH_NOARGS,
     "recv_async_($self, /)\n--\n\nawait ch.recv_async_(): (value, ok)."},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS,
     "chan[T]: for typing only."},
    {"nil", (PyCFunction)chan_nil, METH_O | METH_STATIC,
     "nil(dtype, /)\n--\n\n"
     "The nil channel of element type dtype (pygolang's chan.nil); "
     "chan.nil('object') is nilchan."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef chan_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(hchan, weakreflist),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot chan_slots[] = {
    {Py_tp_doc, "chan(size=0, dtype='object')\n--\n\n"
                "A Go channel: unbuffered when size == 0, buffered "
                "otherwise.  dtype ('object', 'C.structZ', 'C.bool', "
                "'C.int', 'C.double') restricts what can be sent and sets "
                "the zero value received from it once closed."},
    {Py_tp_richcompare, chan_richcompare},
    {Py_tp_hash, chan_hash},
    {Py_tp_new, chan_new},
    {Py_tp_dealloc, chan_dealloc},
    {Py_tp_traverse, chan_traverse},
    {Py_tp_clear, chan_clear},
    {Py_tp_methods, chan_methods},
    {Py_tp_members, chan_members},
    {Py_tp_iter, chan_iter},
    {Py_tp_iternext, chan_iternext},
    {Py_am_aiter, chan_aiter},
    {Py_tp_repr, chan_repr},
    {Py_mp_length, chan_len},
    {0, NULL},
};

static PyType_Spec chan_spec = {
    .name = "goroutine.chan",
    .basicsize = sizeof(hchan),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = chan_slots,
};

/* Identify ch.recv / ch.recv_ / ch.send bound methods for select. */
int
gr_chan_method_kind(PyObject *obj, PyObject **self)
{
    if (!PyCFunction_Check(obj)) {
        return 0;
    }
    PyObject *s = PyCFunction_GET_SELF(obj);
    if (s == NULL || !PyObject_TypeCheck(s, gr_globals.chan_type)) {
        return 0;
    }
    PyCFunction f = PyCFunction_GET_FUNCTION(obj);
    *self = s;
    if (f == (PyCFunction)chan_recv) {
        return 1;
    }
    if (f == (PyCFunction)chan_recv_) {
        return 2;
    }
    if (f == (PyCFunction)chan_send) {
        return 3;
    }
    return 0;
}

/* Module init, staging (state.h): the chan type and nilchan. */
int
gr_chan_init(gr_globals_t *st)
{
    st->chan_type = (PyTypeObject *)PyType_FromSpec(&chan_spec);
    if (st->chan_type == NULL) {
        return -1;
    }
    for (int i = 0; i < GR_NDTYPES; i++) {
        hchan *nil = (hchan *)st->chan_type->tp_alloc(st->chan_type, 0);
        if (nil == NULL) {
            return -1;      /* the caller clears what was made */
        }
        pthread_mutex_init(&nil->lock, NULL);
        nil->isnil = 1;
        nil->dtype = i;
        st->typed_nil[i] = (PyObject *)nil;
    }
    st->nilchan = Py_NewRef(st->typed_nil[GR_DTYPE_OBJECT]);
    return 0;
}

int
gr_chan_exec(PyObject *module)
{
    if (PyModule_AddObjectRef(module, "chan",
                              (PyObject *)gr_globals.chan_type) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "nilchan", gr_globals.nilchan);
}
