/*
 * sync.c: Go's sync primitives for goroutines and threads: Mutex,
 * RWMutex, WaitGroup, Cond and a weighted Sema.  Waiting parks a goroutine
 * (its M runs others) or blocks a plain thread interruptibly; both through
 * the claimable waiter of waiter.c, so a Ctrl-C on a thread either leaves
 * no trace or lets the acquisition complete.
 *
 * Every object has one small lock `mu` guarding all its fields and its
 * wait queue (a gr_waitq of sudogs, as a channel's).  Under mu: no Python
 * call, no GIL release, no wake; waiters to wake are collected on a
 * gr_wakelist and woken after mu is released (STYLE recipe 4).  A waiter
 * blocks with waiter.c's gr_block_on, which releases mu; a sudog's
 * `success` says whether the waker granted what it waited for.
 * All entry points are called from Python, with the GIL held.
 *
 * Mutex (Go's sync.Mutex, two modes):
 *   - normal: unlock clears `locked` and wakes the first waiter, which then
 *     competes with newcomers (barging keeps throughput high: a goroutine
 *     that unlocks and relocks does not wait for a context switch);
 *   - starvation: once a waiter has waited over 1 ms, unlock hands the
 *     mutex straight to the queue head (`locked` stays set), FIFO, until
 *     the queue empties.  A woken waiter that loses the race re-queues at
 *     the front, keeping its original start time.
 * RWMutex: a waiting writer blocks new readers (writers are not starved);
 *   when a writer unlocks, all queued readers go first, then the next
 *   writer -- the two alternate under contention, as in Go.
 *   unlock_to_rlock (pygolang's UnlockToRLock) is that unlock with the
 *   caller counted as one of the readers it lets in.
 * WaitGroup: counter; reaching 0 wakes every waiter.  Below 0 panics.
 * Cond: Go's notifyList tickets.  wait() takes a ticket before unlocking
 *   its locker and sleeps only if that ticket has not been notified yet,
 *   so a signal between the unlock and the sleep is never lost.
 * Sema: a weighted semaphore (golang.org/x/sync/semaphore): FIFO, and a
 *   large request at the head blocks smaller ones behind it.
 */
#include "core.h"

#include <stddef.h>

#define GR_STARVATION_NS 1000000    /* Go's starvationThresholdNs: 1 ms */

/* ---- Mutex ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    int locked;                 /* held (by nobody in particular) */
    bool starving;              /* starvation mode: unlock hands off */
    gr_waitq q;
} mutexobject;

/* 1 acquired, 0 would block (mu held on return in both cases). */
static int
mutex_lock_impl(mutexobject *m)
{
    pthread_mutex_lock(&m->mu);
    if (!m->locked && (!m->starving || m->q.head == NULL)) {
        m->locked = 1;
        pthread_mutex_unlock(&m->mu);
        return 0;
    }
    gr_sudog n = {0};
    n.since = gr_nanotime();
    bool front = false;
    for (;;) {
        if (gr_block_on(&m->q, &n, front, &m->mu, "sync.Mutex.Lock") < 0) {
            return -1;
        }
        if (n.success) {
            return 0;           /* starvation mode: ownership given to us */
        }
        pthread_mutex_lock(&m->mu);
        if (!m->locked) {
            m->locked = 1;
            pthread_mutex_unlock(&m->mu);
            return 0;
        }
        /* Lost to a newcomer: wait again at the front, and switch the
         * mutex to starvation mode once we have waited too long. */
        if (gr_nanotime() - n.since > GR_STARVATION_NS) {
            m->starving = true;
        }
        front = true;
    }
}

static PyObject *
mutex_lock(mutexobject *m, PyObject *unused)
{
    if (mutex_lock_impl(m) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
mutex_try_lock(mutexobject *m, PyObject *unused)
{
    pthread_mutex_lock(&m->mu);
    bool ok = !m->locked && !m->starving;
    if (ok) {
        m->locked = 1;
    }
    pthread_mutex_unlock(&m->mu);
    return PyBool_FromLong(ok);
}

static PyObject *
mutex_unlock(mutexobject *m, PyObject *unused)
{
    gr_wakelist wl = {0};
    pthread_mutex_lock(&m->mu);
    if (!m->locked) {
        pthread_mutex_unlock(&m->mu);
        return gr_panic("sync: unlock of unlocked mutex");
    }
    gr_sudog *n;
    while ((n = gr_waitq_first(&m->q)) != NULL) {
        bool starve = m->starving ||
                      gr_nanotime() - n->since > GR_STARVATION_NS;
        if (!gr_waitq_take(n)) {
            continue;
        }
        if (starve) {
            m->starving = true;
            n->success = true;  /* locked stays set: it is theirs now */
        }
        else {
            m->locked = 0;
        }
        gr_wakelist_add(&wl, n);
        break;
    }
    if (wl.head == NULL) {
        m->locked = 0;
    }
    if (m->q.head == NULL) {
        m->starving = false;
    }
    pthread_mutex_unlock(&m->mu);
    gr_wakelist_wake(&wl);
    Py_RETURN_NONE;
}

static PyObject *
mutex_locked(mutexobject *m, PyObject *unused)
{
    return PyBool_FromLong(m->locked);
}

static PyObject *
mutex_exit(mutexobject *m, PyObject *const *args, Py_ssize_t nargs)
{
    return mutex_unlock(m, NULL);
}

/* ---- RWMutex -------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    int64_t readers;            /* active readers */
    bool writer;                /* a writer holds it */
    int64_t wwait;              /* writers queued */
    gr_waitq rq;                   /* readers waiting */
    gr_waitq wq;                   /* writers waiting */
} rwmutexobject;

static PyObject *
rw_rlock(rwmutexobject *rw, PyObject *unused)
{
    pthread_mutex_lock(&rw->mu);
    if (!rw->writer && rw->wwait == 0) {
        rw->readers++;
        pthread_mutex_unlock(&rw->mu);
        Py_RETURN_NONE;
    }
    gr_sudog n = {0};
    if (gr_block_on(&rw->rq, &n, false, &rw->mu, "sync.RWMutex.RLock") < 0) {
        return NULL;
    }
    Py_RETURN_NONE;     /* granted by the waker: readers already counted */
}

static PyObject *
rw_try_rlock(rwmutexobject *rw, PyObject *unused)
{
    pthread_mutex_lock(&rw->mu);
    bool ok = !rw->writer && rw->wwait == 0;
    if (ok) {
        rw->readers++;
    }
    pthread_mutex_unlock(&rw->mu);
    return PyBool_FromLong(ok);
}

/* Grant the next writer if the lock is free (mu held). */
static void
rw_grant_writer(rwmutexobject *rw, gr_wakelist *wl)
{
    gr_sudog *n;
    while (!rw->writer && rw->readers == 0 &&
           (n = gr_waitq_first(&rw->wq)) != NULL) {
        rw->wwait--;
        if (gr_waitq_take(n)) {
            rw->writer = true;
            n->success = true;
            gr_wakelist_add(wl, n);
        }
    }
}

static PyObject *
rw_runlock(rwmutexobject *rw, PyObject *unused)
{
    gr_wakelist wl = {0};
    pthread_mutex_lock(&rw->mu);
    if (rw->readers <= 0) {
        pthread_mutex_unlock(&rw->mu);
        return gr_panic("sync: RUnlock of unlocked RWMutex");
    }
    rw->readers--;
    rw_grant_writer(rw, &wl);
    pthread_mutex_unlock(&rw->mu);
    gr_wakelist_wake(&wl);
    Py_RETURN_NONE;
}

static PyObject *
rw_lock(rwmutexobject *rw, PyObject *unused)
{
    pthread_mutex_lock(&rw->mu);
    if (!rw->writer && rw->readers == 0 && rw->wwait == 0) {
        rw->writer = true;
        pthread_mutex_unlock(&rw->mu);
        Py_RETURN_NONE;
    }
    rw->wwait++;
    gr_sudog n = {0};
    if (gr_block_on(&rw->wq, &n, false, &rw->mu, "sync.RWMutex.Lock") < 0) {
        /* Interrupted: no longer a waiting writer; readers held back by
         * us may go. */
        gr_wakelist wl = {0};
        pthread_mutex_lock(&rw->mu);
        rw->wwait--;
        gr_sudog *r;
        while (rw->wwait == 0 && !rw->writer &&
               (r = gr_waitq_first(&rw->rq)) != NULL) {
            if (gr_waitq_take(r)) {
                rw->readers++;
                gr_wakelist_add(&wl, r);
            }
        }
        pthread_mutex_unlock(&rw->mu);
        gr_wakelist_wake(&wl);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
rw_try_lock(rwmutexobject *rw, PyObject *unused)
{
    pthread_mutex_lock(&rw->mu);
    bool ok = !rw->writer && rw->readers == 0 && rw->wwait == 0;
    if (ok) {
        rw->writer = true;
    }
    pthread_mutex_unlock(&rw->mu);
    return PyBool_FromLong(ok);
}

/* Release the write lock; with `downgrade`, keep it for reading instead
 * (pygolang's UnlockToRLock): the caller becomes a reader before anyone
 * else can take the lock, so no writer gets in between. */
static PyObject *
rw_release_writer(rwmutexobject *rw, bool downgrade)
{
    gr_wakelist wl = {0};
    pthread_mutex_lock(&rw->mu);
    if (!rw->writer) {
        pthread_mutex_unlock(&rw->mu);
        return gr_panic(downgrade ? "sync: UnlockToRLock of unlocked RWMutex"
                                  : "sync: Unlock of unlocked RWMutex");
    }
    rw->writer = false;
    if (downgrade) {
        rw->readers++;
    }
    /* Readers that queued behind this writer go first... */
    gr_sudog *n;
    while ((n = gr_waitq_first(&rw->rq)) != NULL) {
        if (gr_waitq_take(n)) {
            rw->readers++;
            gr_wakelist_add(&wl, n);
        }
    }
    /* ...and if there were none, the next writer (none while a
     * downgraded reader holds it). */
    rw_grant_writer(rw, &wl);
    pthread_mutex_unlock(&rw->mu);
    gr_wakelist_wake(&wl);
    Py_RETURN_NONE;
}

static PyObject *
rw_unlock(rwmutexobject *rw, PyObject *unused)
{
    return rw_release_writer(rw, false);
}

static PyObject *
rw_unlock_to_rlock(rwmutexobject *rw, PyObject *unused)
{
    return rw_release_writer(rw, true);
}

/* __exit__(exc_type, exc, tb): METH_FASTCALL's signature, then unlock.
 * (Registering rw_unlock itself called a two-argument function through a
 * three-argument pointer: undefined behaviour, trapped by CFI builds.) */
static PyObject *
rw_exit(rwmutexobject *rw, PyObject *const *args, Py_ssize_t nargs)
{
    return rw_unlock(rw, NULL);
}

/* ---- WaitGroup ------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    int64_t counter;
    gr_waitq q;
} wgobject;

static int
wg_add_impl(wgobject *wg, int64_t delta)
{
    gr_wakelist wl = {0};
    pthread_mutex_lock(&wg->mu);
    int64_t v;
    if (__builtin_add_overflow(wg->counter, delta, &v)) {
        pthread_mutex_unlock(&wg->mu);      /* only delta > 0 can */
        PyErr_SetString(PyExc_OverflowError,
                        "sync: WaitGroup counter overflow");
        return -1;
    }
    if (v < 0) {
        pthread_mutex_unlock(&wg->mu);
        gr_panic("sync: negative WaitGroup counter");
        return -1;
    }
    wg->counter = v;
    if (v == 0) {
        gr_sudog *n;
        while ((n = gr_waitq_first(&wg->q)) != NULL) {
            if (gr_waitq_take(n)) {
                gr_wakelist_add(&wl, n);
            }
        }
    }
    pthread_mutex_unlock(&wg->mu);
    gr_wakelist_wake(&wl);
    return 0;
}

static PyObject *
wg_add(wgobject *wg, PyObject *arg)
{
    PyObject *i = PyNumber_Index(arg);     /* TypeError for 1.5, '1' */
    if (i == NULL) {
        return NULL;
    }
    int over;
    long long d = PyLong_AsLongLongAndOverflow(i, &over);
    Py_DECREF(i);
    if (d == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (over > 0) {
        PyErr_SetString(PyExc_OverflowError,
                        "sync: WaitGroup counter overflow");
        return NULL;
    }
    if (over < 0) {
        d = INT64_MIN;      /* below zero whatever the counter: Go's panic */
    }
    if (wg_add_impl(wg, d) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
wg_done(wgobject *wg, PyObject *unused)
{
    if (wg_add_impl(wg, -1) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
wg_wait(wgobject *wg, PyObject *unused)
{
    pthread_mutex_lock(&wg->mu);
    if (wg->counter == 0) {
        pthread_mutex_unlock(&wg->mu);
        Py_RETURN_NONE;
    }
    gr_sudog n = {0};
    if (gr_block_on(&wg->q, &n, false, &wg->mu,
                    "sync.WaitGroup.Wait") < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
wg_count(wgobject *wg, PyObject *unused)
{
    return PyLong_FromLongLong(wg->counter);
}

/* ---- Cond ----------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    PyObject *L;                /* the locker: lock()/unlock() */
    bool acq;                   /* L has acquire()/release() instead */
    uint32_t wait;              /* next ticket to hand out */
    uint32_t notify;            /* tickets below this are notified */
    gr_waitq q;
} condobject;

static PyObject *
cond_wait(condobject *c, PyObject *unused)
{
    pthread_mutex_lock(&c->mu);
    uint32_t t = c->wait++;
    pthread_mutex_unlock(&c->mu);
    PyObject *r = PyObject_CallMethod(c->L, c->acq ? "release" : "unlock",
                                      NULL);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    if ((int32_t)(t - c->notify) >= 0) {
        gr_sudog n = {0};
        n.ticket = t;
        rc = gr_block_on(&c->q, &n, false, &c->mu, "sync.Cond.Wait");
    }
    else {
        pthread_mutex_unlock(&c->mu);
    }
    /* Go re-locks L even when woken; so do we, also after an interrupt,
     * so the caller's `with` block stays balanced. */
    PyObject *exc_t, *exc_v, *exc_tb;
    PyErr_Fetch(&exc_t, &exc_v, &exc_tb);
    r = PyObject_CallMethod(c->L, c->acq ? "acquire" : "lock", NULL);
    if (r == NULL) {
        Py_XDECREF(exc_t);
        Py_XDECREF(exc_v);
        Py_XDECREF(exc_tb);
        return NULL;
    }
    Py_DECREF(r);
    PyErr_Restore(exc_t, exc_v, exc_tb);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
cond_signal(condobject *c, PyObject *unused)
{
    gr_wakelist wl = {0};
    pthread_mutex_lock(&c->mu);
    while (c->wait != c->notify) {
        uint32_t t = c->notify++;
        /* The holder of ticket t may not have queued yet; then it sees
         * the ticket notified and does not sleep. */
        gr_sudog *n = NULL;
        for (gr_sudog *x = c->q.head; x; x = x->next) {
            if (x->ticket == t) {
                n = x;
                break;
            }
        }
        if (n == NULL) {
            break;
        }
        if (gr_waitq_take(n)) {
            gr_wakelist_add(&wl, n);
            break;
        }
        /* That waiter was interrupted: signal the next ticket instead. */
    }
    pthread_mutex_unlock(&c->mu);
    gr_wakelist_wake(&wl);
    Py_RETURN_NONE;
}

static PyObject *
cond_broadcast(condobject *c, PyObject *unused)
{
    gr_wakelist wl = {0};
    pthread_mutex_lock(&c->mu);
    c->notify = c->wait;
    gr_sudog *n;
    while ((n = gr_waitq_first(&c->q)) != NULL) {
        if (gr_waitq_take(n)) {
            gr_wakelist_add(&wl, n);
        }
    }
    pthread_mutex_unlock(&c->mu);
    gr_wakelist_wake(&wl);
    Py_RETURN_NONE;
}

/* ---- Sema (weighted) ------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    int64_t size;
    int64_t cur;                /* units held */
    gr_waitq q;
} semaobject;

/* A Sema size or weight: an int (__index__) >= 0 that fits in int64.
 * Negative (however large) -> ValueError "semaphore: negative <what>";
 * past int64 -> OverflowError.  0 or -1 with an exception. */
static int
int64_arg(PyObject *o, const char *what, long long *out)
{
    PyObject *i = PyNumber_Index(o);
    if (i == NULL) {
        return -1;
    }
    int over;
    long long n = PyLong_AsLongLongAndOverflow(i, &over);
    Py_DECREF(i);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (over > 0) {
        PyErr_Format(PyExc_OverflowError, "semaphore: %s too large", what);
        return -1;
    }
    if (over < 0 || n < 0) {
        PyErr_Format(PyExc_ValueError, "semaphore: negative %s", what);
        return -1;
    }
    *out = n;
    return 0;
}

static int64_t
weight_arg(PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 0) {
        return 1;
    }
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "expected at most 1 argument (the "
                     "weight), got %zd", nargs);
        return -1;
    }
    long long n;
    if (int64_arg(args[0], "weight", &n) < 0) {
        return -1;
    }
    return n;
}

static PyObject *
sema_acquire(semaobject *s, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t n = weight_arg(args, nargs);
    if (n < 0) {
        return NULL;
    }
    pthread_mutex_lock(&s->mu);
    if (s->size - s->cur >= n && gr_waitq_first(&s->q) == NULL) {
        s->cur += n;
        pthread_mutex_unlock(&s->mu);
        Py_RETURN_NONE;
    }
    if (n > s->size) {
        /* Can never succeed: Go's semaphore blocks forever; a plain
         * thread would then get Deadlock or Ctrl-C, a goroutine hangs.
         * Say so instead. */
        pthread_mutex_unlock(&s->mu);
        PyErr_Format(PyExc_ValueError, "semaphore: acquire(%lld) exceeds "
                     "its size %lld", (long long)n, (long long)s->size);
        return NULL;
    }
    gr_sudog node = {0};
    node.weight = n;
    if (gr_block_on(&s->q, &node, false, &s->mu, "semacquire") < 0) {
        return NULL;
    }
    Py_RETURN_NONE;     /* the releaser counted our units */
}

static PyObject *
sema_try_acquire(semaobject *s, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t n = weight_arg(args, nargs);
    if (n < 0) {
        return NULL;
    }
    pthread_mutex_lock(&s->mu);
    bool ok = s->size - s->cur >= n && gr_waitq_first(&s->q) == NULL;
    if (ok) {
        s->cur += n;
    }
    pthread_mutex_unlock(&s->mu);
    return PyBool_FromLong(ok);
}

static PyObject *
sema_release(semaobject *s, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t n = weight_arg(args, nargs);
    if (n < 0) {
        return NULL;
    }
    gr_wakelist wl = {0};
    pthread_mutex_lock(&s->mu);
    if (s->cur < n) {
        pthread_mutex_unlock(&s->mu);
        return gr_panic("semaphore: released more than held");
    }
    s->cur -= n;
    gr_sudog *w;
    while ((w = gr_waitq_first(&s->q)) != NULL &&
           s->size - s->cur >= w->weight) {
        if (gr_waitq_take(w)) {
            s->cur += w->weight;
            gr_wakelist_add(&wl, w);
        }
    }
    pthread_mutex_unlock(&s->mu);
    gr_wakelist_wake(&wl);
    Py_RETURN_NONE;
}

/* ---- types ---------------------------------------------------------- */

static PyObject *
generic_new(PyTypeObject *type, size_t mu_off)
{
    PyObject *o = type->tp_alloc(type, 0);
    if (o != NULL) {
        pthread_mutex_init((pthread_mutex_t *)((char *)o + mu_off), NULL);
    }
    return o;
}

static PyObject *
mutex_new(PyTypeObject *t, PyObject *a, PyObject *k)
{
    if (PyTuple_GET_SIZE(a) != 0) {
        PyErr_SetString(PyExc_TypeError, "Mutex() takes no arguments");
        return NULL;
    }
    return generic_new(t, offsetof(mutexobject, mu));
}

static PyObject *
rw_new(PyTypeObject *t, PyObject *a, PyObject *k)
{
    if (PyTuple_GET_SIZE(a) != 0) {
        PyErr_SetString(PyExc_TypeError, "RWMutex() takes no arguments");
        return NULL;
    }
    return generic_new(t, offsetof(rwmutexobject, mu));
}

static PyObject *
wg_new(PyTypeObject *t, PyObject *a, PyObject *k)
{
    if (PyTuple_GET_SIZE(a) != 0) {
        PyErr_SetString(PyExc_TypeError, "WaitGroup() takes no arguments");
        return NULL;
    }
    return generic_new(t, offsetof(wgobject, mu));
}

/* 1 if o.name is a callable, 0 if o has no such attribute, -1 with an
 * error if looking it up raised anything but AttributeError. */
static int
has_method(PyObject *o, const char *name)
{
    PyObject *m = PyObject_GetAttrString(o, name);
    if (m == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    int r = PyCallable_Check(m);
    Py_DECREF(m);
    return r;
}

/* Cond(locker): a Go Locker (lock()/unlock()), or a Python lock
 * (acquire()/release(): threading.Lock, RLock, ...).  Anything else is a
 * TypeError here rather than at the first wait(). */
static int
locker_kind(PyObject *L, bool *acq)
{
    static const char *names[2][2] = {{"lock", "unlock"},
                                      {"acquire", "release"}};
    for (int i = 0; i < 2; i++) {
        int a = has_method(L, names[i][0]);
        int b = a > 0 ? has_method(L, names[i][1]) : 0;
        if (a < 0 || b < 0) {
            return -1;
        }
        if (a && b) {
            *acq = i == 1;
            return 0;
        }
    }
    PyErr_Format(PyExc_TypeError, "Cond: locker must have lock() and "
                 "unlock() (or acquire() and release()), not '%.200s'",
                 Py_TYPE(L)->tp_name);
    return -1;
}

static PyObject *
cond_new(PyTypeObject *t, PyObject *a, PyObject *k)
{
    PyObject *L;
    bool acq = false;
    if (!PyArg_ParseTuple(a, "O:Cond", &L) || locker_kind(L, &acq) < 0) {
        return NULL;
    }
    condobject *c = (condobject *)generic_new(t, offsetof(condobject, mu));
    if (c != NULL) {
        c->L = Py_NewRef(L);
        c->acq = acq;
    }
    return (PyObject *)c;
}

static PyObject *
sema_new(PyTypeObject *t, PyObject *a, PyObject *k)
{
    static char *kwlist[] = {"n", NULL};
    long long n = 1;
    PyObject *nobj = NULL;
    if (!PyArg_ParseTupleAndKeywords(a, k, "|O:Sema", kwlist, &nobj)) {
        return NULL;
    }
    if (nobj != NULL && int64_arg(nobj, "size", &n) < 0) {
        return NULL;
    }
    semaobject *s = (semaobject *)generic_new(t, offsetof(semaobject, mu));
    if (s != NULL) {
        s->size = n;
    }
    return (PyObject *)s;
}

static void
plain_dealloc(PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

static int
cond_traverse(condobject *c, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(c));
    Py_VISIT(c->L);
    return 0;
}

static int
cond_clear(condobject *c)
{
    Py_CLEAR(c->L);
    return 0;
}

static void
cond_dealloc(condobject *c)
{
    PyTypeObject *tp = Py_TYPE(c);
    PyObject_GC_UnTrack(c);
    cond_clear(c);
    tp->tp_free(c);
    Py_DECREF(tp);
}

static PyObject *
cond_get_L(condobject *c, void *closure)
{
    return Py_NewRef(c->L);
}

#define M(name, fn, flags, doc) {name, (PyCFunction)(void (*)(void))fn, flags, doc}

static PyMethodDef mutex_methods[] = {
    M("lock", mutex_lock, METH_NOARGS, "lock($self, /)\n--\n\nLock; parks "
      "the goroutine (or blocks the thread) while it is held."),
    M("unlock", mutex_unlock, METH_NOARGS, "unlock($self, /)\n--\n\nUnlock; "
      "Panic('sync: unlock of unlocked mutex') if not locked."),
    M("try_lock", mutex_try_lock, METH_NOARGS, "try_lock($self, /)\n--\n\n"
      "Lock if free; return whether it did."),
    M("locked", mutex_locked, METH_NOARGS, "locked($self, /)\n--\n\n"
      "Whether it is held (a snapshot)."),
    M("__enter__", mutex_lock, METH_NOARGS, NULL),
    M("__exit__", mutex_exit, METH_FASTCALL, NULL),
    {NULL, NULL, 0, NULL},
};

static PyMethodDef rw_methods[] = {
    M("lock", rw_lock, METH_NOARGS, "lock($self, /)\n--\n\nLock for writing."),
    M("unlock", rw_unlock, METH_NOARGS, "unlock($self, /)\n--\n\n"
      "Unlock for writing."),
    M("rlock", rw_rlock, METH_NOARGS, "rlock($self, /)\n--\n\n"
      "Lock for reading; waits behind a waiting writer."),
    M("runlock", rw_runlock, METH_NOARGS, "runlock($self, /)\n--\n\n"
      "Unlock for reading."),
    M("try_lock", rw_try_lock, METH_NOARGS, "try_lock($self, /)\n--\n\n"
      "Lock for writing if free; return whether it did."),
    M("try_rlock", rw_try_rlock, METH_NOARGS, "try_rlock($self, /)\n--\n\n"
      "Lock for reading if possible now; return whether it did."),
    M("unlock_to_rlock", rw_unlock_to_rlock, METH_NOARGS,
      "unlock_to_rlock($self, /)\n--\n\nAtomically turn the write lock "
      "into a read lock: waiting readers enter with it, writers wait."),
    M("__enter__", rw_lock, METH_NOARGS, NULL),
    M("__exit__", rw_exit, METH_FASTCALL, NULL),
    {NULL, NULL, 0, NULL},
};

static PyMethodDef wg_methods[] = {
    M("add", wg_add, METH_O, "add($self, n, /)\n--\n\nAdd n to the counter; "
      "Panic('sync: negative WaitGroup counter') below zero."),
    M("done", wg_done, METH_NOARGS, "done($self, /)\n--\n\nadd(-1)."),
    M("wait", wg_wait, METH_NOARGS, "wait($self, /)\n--\n\nBlock until the "
      "counter is zero."),
    M("_count", wg_count, METH_NOARGS, NULL),
    {NULL, NULL, 0, NULL},
};

static PyMethodDef cond_methods[] = {
    M("wait", cond_wait, METH_NOARGS, "wait($self, /)\n--\n\nUnlock L, wait "
      "for signal or broadcast, lock L again."),
    M("signal", cond_signal, METH_NOARGS, "signal($self, /)\n--\n\n"
      "Wake one waiter, if any."),
    M("broadcast", cond_broadcast, METH_NOARGS, "broadcast($self, /)\n--\n\n"
      "Wake every waiter."),
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef cond_getset[] = {
    {"L", (getter)cond_get_L, NULL, "The locker.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef sema_methods[] = {
    M("acquire", sema_acquire, METH_FASTCALL, "acquire($self, n=1, /)\n--\n\n"
      "Take n units, waiting FIFO while there are not enough."),
    M("try_acquire", sema_try_acquire, METH_FASTCALL,
      "try_acquire($self, n=1, /)\n--\n\nTake n units if possible now."),
    M("release", sema_release, METH_FASTCALL, "release($self, n=1, /)\n--\n\n"
      "Give n units back."),
    {NULL, NULL, 0, NULL},
};

/* The four lock types own no Python references: same slots but for
 * their names, constructors and methods.  Each spec names the type where
 * a user reaches it: Sema as goroutine.sync.Sema; Mutex, RWMutex and
 * WaitGroup in goroutine._core, as the C bases of sync's Python classes of
 * the same names (which add the async methods). */
#define SPEC(var, dotted, type, newf, meths, doc)                           \
    static PyType_Slot var##_slots[] = {                                    \
        {Py_tp_doc, doc}, {Py_tp_new, newf}, {Py_tp_methods, meths},        \
        {Py_tp_dealloc, plain_dealloc}, {0, NULL}};                         \
    static PyType_Spec var##_spec = {                                       \
        .name = dotted, .basicsize = sizeof(type),                          \
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE |                 \
                 Py_TPFLAGS_IMMUTABLETYPE,                                  \
        .slots = var##_slots};

SPEC(mutex, "goroutine._core.Mutex", mutexobject, mutex_new, mutex_methods,
     "Mutex()\n--\n\nGo's sync.Mutex: not reentrant, not owned; parks "
     "goroutines, starvation-free.")
SPEC(rw, "goroutine._core.RWMutex", rwmutexobject, rw_new, rw_methods,
     "RWMutex()\n--\n\nGo's sync.RWMutex: writers are not starved.")
SPEC(wg, "goroutine._core.WaitGroup", wgobject, wg_new, wg_methods,
     "WaitGroup()\n--\n\nGo's sync.WaitGroup.")
SPEC(sema, "goroutine._core.Sema", semaobject, sema_new, sema_methods,
     "Sema(n=1)\n--\n\nA weighted semaphore of size n.")

static PyType_Slot cond_slots[] = {
    {Py_tp_doc, "Cond(locker, /)\n--\n\nGo's sync.Cond over locker (anything "
                "with lock() and unlock(), or else acquire() and release(), "
                "such as threading.Lock)."},
    {Py_tp_new, cond_new},
    {Py_tp_methods, cond_methods},
    {Py_tp_getset, cond_getset},
    {Py_tp_traverse, cond_traverse},
    {Py_tp_clear, cond_clear},
    {Py_tp_dealloc, cond_dealloc},
    {0, NULL},
};

static PyType_Spec cond_spec = {
    .name = "goroutine.sync.Cond",
    .basicsize = sizeof(condobject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = cond_slots,
};

/* Module init, staging (state.h): the five types, in names[] order. */
int
gr_sync_init(gr_globals_t *st)
{
    PyType_Spec *specs[GR_SYNC_NTYPES] = {&mutex_spec, &rw_spec, &wg_spec,
                                          &cond_spec, &sema_spec};
    for (int i = 0; i < GR_SYNC_NTYPES; i++) {
        st->sync_types[i] = PyType_FromSpec(specs[i]);
        if (st->sync_types[i] == NULL) {
            return -1;
        }
    }
    return 0;
}

int
gr_sync_exec(PyObject *module)
{
    const char *names[GR_SYNC_NTYPES] = {"Mutex", "RWMutex", "WaitGroup",
                                         "Cond", "Sema"};
    for (int i = 0; i < GR_SYNC_NTYPES; i++) {
        if (PyModule_AddObjectRef(module, names[i],
                                  gr_globals.sync_types[i]) < 0) {
            return -1;
        }
    }
    return 0;
}
