/*
 * select.c: Go's selectgo for Python.
 *
 *   i, rx = select(ch1.recv, ch2.recv_, (ch3.send, obj), default)
 *
 * The algorithm is Go's:
 *   1. poll order: a random permutation of the cases (uniform choice among
 *      the ready ones); nil-channel cases are dropped (never chosen);
 *   2. lock order: the distinct channels sorted by address, so two selects
 *      never lock the same pair in opposite orders;
 *   3. pass 1, all locked: the first ready case in poll order completes;
 *      else `default` if present;
 *   4. pass 2: one sudog per case, all pointing at one waiter, enqueued on
 *      every channel; gr_block (waiter.c) parks the goroutine and unlocks
 *      the channels on g0 once it is off the CPU, or, on a plain thread,
 *      unlocks them and waits;
 *   5. pass 3, on wake: whoever fired us claimed the waiter and unlinked
 *      that one sudog; lock all again and unlink the losers.
 * The claim (waiter.c) makes sure exactly one case completes, and a
 * select never matches its own send with its own receive: the first of
 * its sudogs to be taken claims the whole waiter.
 *
 * Sudogs live on the C stack of the blocked goroutine or thread (the stack
 * stays put while it is parked), or in a heap array for many cases.
 */
#include "core.h"

#define GR_SELECT_STACK 8

int gr_chan_method_kind(PyObject *obj, PyObject **self);

enum { CASE_RECV = 1, CASE_RECV_OK = 2, CASE_SEND = 3 };

typedef struct {
    hchan *c;               /* NULL: nil channel */
    int kind;               /* CASE_* */
    PyObject *elem;         /* send: the value (borrowed from args, or
                               owned when `owned`) */
    int owned;              /* elem is a typed channel's converted value */
    int dtype;              /* the channel's GR_DTYPE_* */
    int index;              /* position in the call */
} scase;

static int
parse_case(PyObject *arg, int index, scase *sc)
{
    PyObject *self = NULL;
    int dir;
    sc->index = index;
    sc->elem = NULL;
    sc->owned = 0;
    int kind = gr_chan_method_kind(arg, &self);
    if (kind == CASE_RECV || kind == CASE_RECV_OK) {
        gr_chan_unwrap(self, &sc->c, &dir);
        sc->dtype = gr_chan_dtype(self);
        if (dir == GR_DIR_SEND) {
            PyErr_SetString(PyExc_TypeError, "select: invalid operation: "
                            "receive from send-only channel");
            return -1;
        }
        sc->kind = kind;
        return 0;
    }
    if (PyTuple_Check(arg) && PyTuple_GET_SIZE(arg) == 2 &&
        gr_chan_method_kind(PyTuple_GET_ITEM(arg, 0), &self) == CASE_SEND) {
        gr_chan_unwrap(self, &sc->c, &dir);
        if (dir == GR_DIR_RECV) {
            PyErr_SetString(PyExc_TypeError, "select: invalid operation: "
                            "send to receive-only channel");
            return -1;
        }
        sc->kind = CASE_SEND;
        sc->elem = PyTuple_GET_ITEM(arg, 1);
        sc->dtype = gr_chan_dtype(self);
        if (sc->dtype != GR_DTYPE_OBJECT) {
            /* A typed channel checks the value before anything is
             * locked, as ch.send does. */
            sc->elem = gr_chan_convert(sc->dtype, sc->elem);
            if (sc->elem == NULL) {
                return -1;
            }
            sc->owned = 1;
        }
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "select: case %d must be ch.recv, "
                 "ch.recv_, (ch.send, value) or default, not %.200R",
                 index, arg);
    return -1;
}

/* (index, rx) without Py_BuildValue's format parsing: this is on every
 * select's return.  v is a new reference or NULL (closed: the zero
 * value), stolen. */
/* (i, rx), stealing rx. */
static PyObject *
pair(int i, PyObject *rx)
{
    PyObject *t = PyTuple_New(2);
    PyObject *idx = t ? PyLong_FromLong(i) : NULL;
    if (idx == NULL) {
        Py_XDECREF(t);
        Py_DECREF(rx);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, idx);
    PyTuple_SET_ITEM(t, 1, rx);
    return t;
}

static PyObject *
result(scase *sc, int ok, PyObject *v)
{
    PyObject *rx;
    if (sc->kind == CASE_SEND) {
        rx = Py_NewRef(Py_None);
    }
    else {
        if (v == NULL) {
            v = gr_chan_zero(sc->dtype);
            if (v == NULL) {
                return NULL;
            }
        }
        if (sc->kind == CASE_RECV) {
            rx = v;
        }
        else {
            rx = PyTuple_New(2);
            if (rx == NULL) {
                Py_DECREF(v);
                return NULL;
            }
            PyTuple_SET_ITEM(rx, 0, v);
            PyTuple_SET_ITEM(rx, 1, Py_NewRef(ok ? Py_True : Py_False));
        }
    }
    return pair(sc->index, rx);
}

/* Sort the locks by address -- insertion sort: the few locks of a small
 * select need no qsort call and comparator per pair, and a qsorted
 * array passes through it in one compare each -- then drop duplicates
 * (a channel in two cases).  Returns how many remain. */
static int
sort_locks(pthread_mutex_t **locks, int n)
{
    for (int i = 1; i < n; i++) {
        pthread_mutex_t *x = locks[i];
        int j = i;
        for (; j > 0 && (uintptr_t)locks[j - 1] > (uintptr_t)x; j--) {
            locks[j] = locks[j - 1];
        }
        locks[j] = x;
    }
    int nd = 0;
    for (int i = 0; i < n; i++) {
        if (nd == 0 || locks[nd - 1] != locks[i]) {
            locks[nd++] = locks[i];
        }
    }
    return nd;
}

static int
cmp_lock(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(pthread_mutex_t *const *)a;
    uintptr_t y = (uintptr_t)*(pthread_mutex_t *const *)b;
    return x < y ? -1 : x > y;
}

/* Try one case under its channel's lock alone.  Returns the result (new
 * reference), NULL with an exception (the send panic), or NOTREADY. */
#define NOTREADY ((PyObject *)&notready_marker)
static int notready_marker;

static PyObject *
try_case(scase *sc)
{
    gr_wakelist wl = {0};
    gr_chan_lock(sc->c);
    if (sc->kind == CASE_SEND) {
        int r = gr_chan_trysend(sc->c, sc->elem, &wl);
        gr_chan_unlock(sc->c);
        gr_wakelist_wake(&wl);
        if (r == 0) {
            return NOTREADY;
        }
        if (r < 0) {
            return gr_panic("send on closed channel");
        }
        return result(sc, 1, NULL);
    }
    PyObject *v = NULL;
    int r = gr_chan_tryrecv(sc->c, &v, &wl);
    gr_chan_unlock(sc->c);
    gr_wakelist_wake(&wl);
    if (r == 0) {
        return NOTREADY;
    }
    return result(sc, r > 0, v);
}

static PyObject *
selectgo(scase *cases, int ncases, int dflt, scase *poll,
         pthread_mutex_t **locks, gr_sudog *sgs)
{
    /* 1. poll order over non-nil cases (Fisher-Yates, inside-out). */
    int npoll = 0;
    for (int i = 0; i < ncases; i++) {
        if (cases[i].c == NULL) {
            continue;
        }
        int j = npoll == 0 ? 0
                : (int)(gr_fastrand() % (uint32_t)(npoll + 1));
        poll[npoll] = poll[j];
        poll[j] = cases[i];
        npoll++;
    }
    /* Fast pass: peek at each case in poll order without a lock, and
     * complete the first that looks ready under its own channel's lock
     * alone.  The order is random, so the choice among ready cases stays
     * uniform.  A peek can be wrong both ways (stale sudogs, a race):
     * "ready" is confirmed under the lock, and "nothing ready" is only
     * trusted for a single case (one channel, one instant: Go's
     * selectnbrecv); otherwise pass 1 below decides with all locked. */
    bool any = false;
    for (int i = 0; i < npoll; i++) {
        if (gr_chan_peek(poll[i].c, poll[i].kind == CASE_SEND) != 0) {
            any = true;
            PyObject *r = try_case(&poll[i]);
            if (r != NOTREADY) {
                return r;
            }
        }
    }
    if (!any && npoll <= 1 && dflt >= 0) {
        return pair(dflt, Py_NewRef(Py_None));
    }
    /* 2. lock order: distinct channels by address (of their locks). */
    for (int i = 0; i < npoll; i++) {
        locks[i] = gr_chan_mutex(poll[i].c);
    }
    if (npoll > GR_SELECT_STACK) {
        qsort(locks, (size_t)npoll, sizeof *locks, cmp_lock);
    }
    int nd = sort_locks(locks, npoll);
    gr_blockon bo = {.locks = locks, .nlocks = nd, .sgs = sgs,
                     .nsgs = npoll};

    /* 3. pass 1 */
    gr_blockon_lock(&bo);
    gr_wakelist wl = {0};
    for (int i = 0; i < npoll; i++) {
        scase *sc = &poll[i];
        if (sc->kind == CASE_SEND) {
            int r = gr_chan_trysend(sc->c, sc->elem, &wl);
            if (r != 0) {
                gr_blockon_unlock(&bo);
                gr_wakelist_wake(&wl);
                if (r < 0) {
                    return gr_panic("send on closed channel");
                }
                return result(sc, 1, NULL);
            }
        }
        else {
            PyObject *v = NULL;
            int r = gr_chan_tryrecv(sc->c, &v, &wl);
            if (r != 0) {
                gr_blockon_unlock(&bo);
                gr_wakelist_wake(&wl);
                return result(sc, r > 0, v);
            }
        }
    }
    if (dflt >= 0) {
        gr_blockon_unlock(&bo);
        return pair(dflt, Py_NewRef(Py_None));
    }

    /* 4. pass 2: enqueue on every channel and block. */
    gr_waiter w;
    gr_waiter_init(&w);
    for (int i = 0; i < npoll; i++) {
        gr_sudog *sg = &sgs[i];
        memset(sg, 0, sizeof *sg);
        sg->w = &w;
        sg->caseidx = i;
        sg->elem = poll[i].kind == CASE_SEND ? poll[i].elem : NULL;
        gr_chan_enqueue(poll[i].c, sg, poll[i].kind == CASE_SEND);
    }
    if (gr_block(&w, &bo, "select") < 0) {
        return NULL;
    }
    /* 5. pass 3: the waker unlinked the sudog that fired. */
    if (npoll > 1) {
        gr_blockon_dequeue(&bo);
    }
    gr_sudog *fired = w.fired;
    scase *sc = &poll[fired->caseidx];
    if (sc->kind == CASE_SEND) {
        if (!fired->success) {
            return gr_panic("send on closed channel");
        }
        return result(sc, 1, NULL);
    }
    return result(sc, fired->success, fired->success ? fired->elem : NULL);
}

static PyObject *
select_select(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 100000) {
        PyErr_SetString(PyExc_ValueError, "select: too many cases");
        return NULL;
    }
    int n = (int)nargs;
    scase cstack[GR_SELECT_STACK], pstack[GR_SELECT_STACK];
    pthread_mutex_t *lstack[GR_SELECT_STACK];
    gr_sudog sstack[GR_SELECT_STACK];
    scase *cases = cstack, *poll = pstack;
    pthread_mutex_t **locks = lstack;
    gr_sudog *sgs = sstack;
    char *heap = NULL;
    if (n > GR_SELECT_STACK) {
        size_t per = 2 * sizeof(scase) + sizeof(pthread_mutex_t *) +
                     sizeof(gr_sudog);
        heap = PyMem_Malloc(per * (size_t)n);
        if (heap == NULL) {
            return PyErr_NoMemory();
        }
        cases = (scase *)heap;
        poll = cases + n;
        sgs = (gr_sudog *)(poll + n);
        locks = (pthread_mutex_t **)(sgs + n);
    }
    int ncases = 0, dflt = -1;
    PyObject *res = NULL;
    for (int i = 0; i < n; i++) {
        if (args[i] == gr_globals.default_) {
            if (dflt >= 0) {
                PyErr_SetString(PyExc_TypeError,
                                "select: multiple default cases");
                goto done;
            }
            dflt = i;
            continue;
        }
        if (parse_case(args[i], i, &cases[ncases]) < 0) {
            goto done;
        }
        ncases++;
    }
    res = selectgo(cases, ncases, dflt, poll, locks, sgs);
done:
    /* After selectgo: a blocked send borrowed the owned values until the
     * select returned. */
    for (int i = 0; i < ncases; i++) {
        if (cases[i].owned) {
            Py_DECREF(cases[i].elem);
        }
    }
    PyMem_Free(heap);
    return res;
}

static PyMethodDef select_methods[] = {
    {"select", (PyCFunction)(void (*)(void))select_select, METH_FASTCALL,
     "select(*cases)\n--\n\n"
     "Wait until one of the cases can proceed and complete it: ch.recv, "
     "ch.recv_, (ch.send, obj), or default.  Returns (index, rx)."},
    {NULL, NULL, 0, NULL},
};

/* `default`: a unique sentinel that says its name (repr "default", not
 * "<object object at ...>") and pickles and copies as itself.  Its type
 * cannot be instantiated, so there is only ever the one. */
static PyObject *
default_repr(PyObject *self)
{
    return PyUnicode_FromString("default");
}

static PyObject *
default_reduce(PyObject *self, PyObject *unused)
{
    return PyUnicode_FromString("default");     /* goroutine._core.default */
}

static PyMethodDef default_methods[] = {
    {"__reduce__", default_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot default_slots[] = {
    {Py_tp_doc, "The type of select's `default` case (one instance)."},
    {Py_tp_repr, default_repr},
    {Py_tp_methods, default_methods},
    {0, NULL},
};

static PyType_Spec default_spec = {
    .name = "goroutine._core._DefaultType",
    .basicsize = sizeof(PyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = default_slots,
};

/* Module init, staging (state.h): the `default` sentinel. */
int
gr_select_init(gr_globals_t *st)
{
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&default_spec);
    if (tp == NULL) {
        return -1;
    }
    st->default_ = PyType_GenericAlloc(tp, 0);
    Py_DECREF(tp);      /* the instance holds its heap type */
    return st->default_ == NULL ? -1 : 0;
}

int
gr_select_exec(PyObject *module)
{
    if (PyModule_AddObjectRef(module, "default", gr_globals.default_) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, select_methods);
}
