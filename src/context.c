/*
 * context.c: Go's context package, its cancel tree in C.
 *
 * Types (goroutine.context re-exports them; its Python part is the
 * exception classes, after_func's argument check and the watch of a
 * foreign Context):
 *   Context      the interface, a base type: done(), err(), value(key),
 *                deadline() raise NotImplementedError.  A user's subclass
 *                is a "foreign" context.
 *   emptyCtx     background(), todo(), and without_cancel(parent) (which
 *                keeps parent only for value()): never done.
 *   valueCtx     with_value(parent, key, val): the rest is its parent's.
 *   cancelCtx    with_cancel, with_cancel_cause, with_timeout,
 *                with_deadline (a deadline and a timer) and merge (two
 *                parents): a node of the cancel tree.
 *   afterFunc    after_func(ctx, f): a leaf of the cancel tree that starts
 *                f in a goroutine when its ancestor is cancelled.
 *
 * The tree.  A node (cancelCtx or afterFunc) is linked on the `children`
 * list of its nearest cancelCtx ancestor through value contexts (Go's
 * parentCancelCtx), by one of its `up` links (a merge has two parents, so
 * two links).  The list owns a strong reference to each node on it.
 * Invariants:
 *   - up[i].anc != NULL  iff  up[i] is on up[i].anc's children list;
 *     then up[i].anc is alive (an ancestor that goes away unlinks every
 *     child first: ctx_release_children).
 *   - err != NULL (cancelled)  implies  nochildren, the children list is
 *     empty, every up link is off its list, and done (once made) is
 *     closed.  err and cause are set once.
 *   - a child is linked only under an ancestor that is not cancelled;
 *     one made under a cancelled ancestor is cancelled at birth.
 *
 * Locking: none of its own.  Every function here runs with the GIL, and
 * the tree changes only in stretches that call no Python code: no
 * allocation of a GC object (which can collect and run any __del__), no
 * DECREF, no Python call.  So the GIL makes each stretch atomic, and a
 * __del__ or gc callback that cancels a context (the reason the Python
 * version's tree lock had to be reentrant) runs only between stretches,
 * when the tree is consistent.  cancel() is two phases: the walk marks
 * the whole subtree cancelled and closes its done channels (closing wakes
 * goroutines, runs no Python code), moving every link it takes off a
 * list to a local list that keeps its reference; then, with the tree
 * consistent again, the timers are stopped, after_func goroutines
 * started and the references dropped, any of which may run Python code.
 * The walk is iterative (a chain or fan-out of any size): a cancelled
 * node's children list is spliced onto the work list.
 *
 * Deadlines ride on timer.c's heap as C function timers (TK_FN, with the
 * GIL): the record holds the context and calls ctx_expire on the timer
 * thread with the GIL; cancel stops it at once (runtime.stats()["timers"] drops).
 *
 * done() makes its channel on first use (Go's lazy done): a context that
 * nobody waits on never allocates one; one cancelled before anyone asked
 * hands out a channel closed at init.
 */
#include "core.h"
#include <structmember.h>
#include <time.h>

typedef struct ctxnode ctxnode;

/* A node's place on an ancestor's children list.  The list is circular
 * with the ancestor's `children` as its sentinel (node NULL). */
typedef struct ctxlink {
    struct ctxlink *prev, *next;
    ctxnode *node;              /* the node this link belongs to */
    struct cancelctx *anc;      /* whose list it is on, or NULL */
} ctxlink;

enum { NODE_CANCEL = 1, NODE_AFTER = 2 };

/* What cancelCtx and afterFunc share: the tree's view of a node. */
struct ctxnode {
    PyObject_HEAD
    int kind;                   /* NODE_* */
    ctxlink up[2];              /* links under its ancestors */
};

typedef struct cancelctx {
    ctxnode hd;
    PyObject *parents[2];       /* strong; parents[1] only for merge */
    PyObject *done;             /* its chan, made by done(), or NULL */
    PyObject *err;              /* NULL until cancelled, then set once */
    PyObject *cause;            /* set with err */
    ctxlink children;           /* sentinel of the children list */
    bool nochildren;            /* cancelled: nothing may link below */
    bool has_deadline;
    double deadline;            /* wall-clock seconds, if has_deadline */
    gr_timer_rec *timer;        /* the deadline's timer, until cancel */
    PyObject *weakreflist;
} cancelctx;

typedef struct {
    ctxnode hd;
    PyObject *f;                /* started in a goroutine on cancel */
    int state;                  /* 0 waiting, 1 ran, 2 stopped */
    PyObject *stopc;            /* foreign ctx: closed by stop() */
} afterfunc;

typedef struct {
    PyObject_HEAD
    PyObject *parent;
    PyObject *key, *val;
} valuectx;

typedef struct {
    PyObject_HEAD
    const char *name;           /* background/todo: their repr */
    PyObject *parent;           /* without_cancel: the values' source */
} emptyctx;

/* The types and roots live in the process state (state.h, made
 * all-or-nothing by gr_context_init); X is short for them. */
#define X gr_globals.ctx

static void ctx_cancel(cancelctx *ctx, PyObject *err, PyObject *cause);

/* ---- the list ------------------------------------------------------- */

static void
list_init(ctxlink *head)
{
    head->prev = head->next = head;
    head->node = NULL;
    head->anc = NULL;
}

static bool
list_empty(const ctxlink *head)
{
    return head->next == head;
}

static void
list_remove(ctxlink *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

static void
list_push(ctxlink *head, ctxlink *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

/* Move every link of `from` to the tail of `to`; `from` is left empty. */
static void
list_splice(ctxlink *to, ctxlink *from)
{
    if (list_empty(from)) {
        return;
    }
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    list_init(from);
}

/* Link node under anc by its link `slot`; the list takes a reference. */
static void
link_under(cancelctx *anc, ctxnode *node, int slot)
{
    ctxlink *l = &node->up[slot];
    l->node = node;
    l->anc = anc;
    list_push(&anc->children, l);
    Py_INCREF(node);
}

/* Take node's links off their lists onto `rel` (each keeps its
 * reference, dropped by release()).  No Python code. */
static void
unlink_all(ctxnode *node, ctxlink *rel)
{
    for (int i = 0; i < 2; i++) {
        ctxlink *l = &node->up[i];
        if (l->anc != NULL) {
            list_remove(l);
            l->anc = NULL;
            list_push(rel, l);
        }
    }
}

/* ---- kinds ---------------------------------------------------------- */

static bool
is_cancel(PyObject *o)
{
    return Py_TYPE(o) == X.cancel;
}

/* The nearest cancelCtx at or above o through value contexts (Go's
 * parentCancelCtx), or NULL.  *foreign: o's chain ends at a context of
 * a type we do not know (a user's subclass).  Borrowed; no Python. */
static cancelctx *
cancel_ancestor(PyObject *o, bool *foreign)
{
    *foreign = false;
    while (Py_TYPE(o) == X.value) {
        o = ((valuectx *)o)->parent;
    }
    if (is_cancel(o)) {
        return (cancelctx *)o;
    }
    *foreign = Py_TYPE(o) != X.empty;
    return NULL;
}

static int
check_parent(PyObject *parent)
{
    if (parent == Py_None) {
        PyErr_SetString(PyExc_TypeError,
                        "cannot create context from nil parent");
        return -1;
    }
    if (!PyObject_TypeCheck(parent, X.Context)) {
        PyErr_Format(PyExc_TypeError,
                     "context parent must be a Context, not '%.200s'",
                     Py_TYPE(parent)->tp_name);
        return -1;
    }
    return 0;
}

static int
check_ready(void)
{
    if (X.canceled == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "goroutine.context is not initialised");
        return -1;
    }
    return 0;
}

static double
wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- cancel --------------------------------------------------------- */

/* Mark c cancelled (no Python code): err, cause, its done channel, its
 * other links onto rel, its children onto work. */
static void
mark_cancelled(cancelctx *c, PyObject *err, PyObject *cause, ctxlink *work,
               ctxlink *rel)
{
    c->err = Py_NewRef(err);
    c->cause = Py_NewRef(cause);
    c->nochildren = true;
    if (c->done != NULL) {
        hchan *h;
        int dir;
        if (gr_chan_unwrap(c->done, &h, &dir) == 0 && h != NULL) {
            gr_chan_tryclose(h);
        }
    }
    unlink_all(&c->hd, rel);
    list_splice(work, &c->children);
}

/* Phase 2: with the tree consistent, stop the timers, start the
 * after_func goroutines, drop the references on rel.  May run Python. */
static void
release(ctxlink *rel)
{
    while (!list_empty(rel)) {
        ctxlink *l = rel->next;
        list_remove(l);
        ctxnode *node = l->node;
        if (node->kind == NODE_CANCEL) {
            cancelctx *c = (cancelctx *)node;
            gr_timer_rec *t = c->timer;
            if (t != NULL && c->err != NULL) {
                c->timer = NULL;
                gr_timer_fn_free(t);
            }
        }
        else {
            afterfunc *a = (afterfunc *)node;
            if (a->state == 0 && a->f != NULL) {
                a->state = 1;
                PyObject *args = PyTuple_New(0);
                PyObject *r = args ? gr_go(a->f, args) : NULL;
                Py_XDECREF(args);
                if (r == NULL) {
                    PyErr_WriteUnraisable((PyObject *)a);
                }
                Py_XDECREF(r);
            }
        }
        Py_DECREF(node);
    }
}

/* Cancel ctx and every node below it (Go's cancelCtx.cancel), and take
 * it off its ancestors' lists.  GIL held; any pending exception is kept. */
static void
ctx_cancel(cancelctx *ctx, PyObject *err, PyObject *cause)
{
    if (ctx->err != NULL) {
        return;
    }
    if (cause == NULL || cause == Py_None) {
        cause = err;
    }
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    ctxlink work, rel;
    list_init(&work);
    list_init(&rel);
    /* Phase 1: no Python code from here... */
    mark_cancelled(ctx, err, cause, &work, &rel);
    while (!list_empty(&work)) {
        ctxlink *l = work.next;
        list_remove(l);
        l->anc = NULL;
        list_push(&rel, l);
        ctxnode *node = l->node;
        if (node->kind == NODE_CANCEL && ((cancelctx *)node)->err == NULL) {
            mark_cancelled((cancelctx *)node, err, cause, &work, &rel);
        }
    }
    /* ...to here. */
    gr_timer_rec *t = ctx->timer;
    ctx->timer = NULL;
    Py_INCREF(ctx);
    if (t != NULL) {
        gr_timer_fn_free(t);
    }
    release(&rel);
    Py_DECREF(ctx);
    PyErr_Restore(et, ev, etb);
}

/* The deadline's timer fired: on the timer thread, GIL held (a TK_FN
 * record with `gil`, which holds obj until this returns). */
static void
ctx_expire(void *obj, uint64_t seq)
{
    (void)seq;
    ctx_cancel((cancelctx *)obj, X.deadline_exceeded, NULL);
}

/* Arrange for child to be cancelled with parent (Go's propagateCancel),
 * by its link `slot`.  0, or -1 with an exception (a foreign parent's
 * watch failed to start). */
static int
propagate(PyObject *parent, ctxnode *child, int slot)
{
    bool foreign;
    cancelctx *anc = cancel_ancestor(parent, &foreign);
    if (anc != NULL) {
        if (anc->err == NULL) {
            link_under(anc, child, slot);
            return 0;
        }
        if (child->kind == NODE_CANCEL) {
            ctx_cancel((cancelctx *)child, anc->err, anc->cause);
        }
        return 0;
    }
    if (!foreign) {
        return 0;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(X.watch, parent, child, NULL);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* ---- Context (the interface) ---------------------------------------- */

static PyObject *
abstract(PyObject *self, PyObject *unused)
{
    PyErr_SetString(PyExc_NotImplementedError,
                    "a Context subclass must define done(), err(), "
                    "value(key) and deadline()");
    return NULL;
}

static PyObject *
abstract_value(PyObject *self, PyObject *key)
{
    return abstract(self, NULL);
}

static PyMethodDef iface_methods[] = {
    {"done", abstract, METH_NOARGS,
     "done($self, /)\n--\n\nA channel closed when the context is "
     "cancelled (nilchan-like, never closed, for contexts that cannot "
     "be cancelled)."},
    {"err", abstract, METH_NOARGS,
     "err($self, /)\n--\n\nNone while not done; canceled or "
     "deadlineExceeded after."},
    {"value", abstract_value, METH_O,
     "value($self, key, /)\n--\n\nThe value for key set by with_value "
     "here or above, or None."},
    {"deadline", abstract, METH_NOARGS,
     "deadline($self, /)\n--\n\nThe deadline (as time.now() gives it), "
     "or None."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot iface_slots[] = {
    {Py_tp_doc, "The interface: done(), err(), value(key), deadline()."},
    {Py_tp_methods, iface_methods},
    {0, NULL},
};

static PyType_Spec iface_spec = {
    .name = "goroutine.context.Context",
    .basicsize = sizeof(PyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = iface_slots,
};

/* ---- generic access: C kinds directly, foreign ones by method -------- */

static PyObject *str_done, *str_err, *str_value, *str_deadline;

/* Strip value contexts: the context that answers done/err/deadline. */
static PyObject *
answerer(PyObject *o)
{
    while (Py_TYPE(o) == X.value) {
        o = ((valuectx *)o)->parent;
    }
    return o;
}

static PyObject *
cancel_done(cancelctx *c, PyObject *unused)
{
    if (c->done != NULL) {
        return Py_NewRef(c->done);
    }
    if (c->err != NULL && X.closedchan != NULL) {
        return Py_NewRef(X.closedchan);
    }
    PyObject *ch = PyObject_CallNoArgs((PyObject *)gr_globals.chan_type);
    if (ch == NULL) {
        return NULL;
    }
    /* The allocation may have run a __del__ that asked for done() or
     * cancelled c: look again. */
    if (c->done != NULL) {
        Py_DECREF(ch);
        return Py_NewRef(c->done);
    }
    if (c->err != NULL) {
        /* Cancelled before anyone asked: the shared closed channel, made
         * the first time it is needed. */
        hchan *h;
        int dir;
        gr_chan_unwrap(ch, &h, &dir);
        gr_chan_tryclose(h);
        if (X.closedchan == NULL) {
            X.closedchan = Py_NewRef(ch);
        }
        return ch;
    }
    c->done = Py_NewRef(ch);
    return ch;
}

static PyObject *
any_done(PyObject *o)
{
    o = answerer(o);
    if (is_cancel(o)) {
        return cancel_done((cancelctx *)o, NULL);
    }
    if (Py_TYPE(o) == X.empty) {
        return Py_NewRef(gr_globals.nilchan);
    }
    return PyObject_CallMethodNoArgs(o, str_done);
}

static PyObject *
any_err(PyObject *o)
{
    o = answerer(o);
    if (is_cancel(o)) {
        PyObject *e = ((cancelctx *)o)->err;
        return Py_NewRef(e != NULL ? e : Py_None);
    }
    if (Py_TYPE(o) == X.empty) {
        Py_RETURN_NONE;
    }
    return PyObject_CallMethodNoArgs(o, str_err);
}

static PyObject *
any_deadline(PyObject *o)
{
    o = answerer(o);
    if (is_cancel(o)) {
        cancelctx *c = (cancelctx *)o;
        if (c->has_deadline) {
            return PyFloat_FromDouble(c->deadline);
        }
        Py_RETURN_NONE;
    }
    if (Py_TYPE(o) == X.empty) {
        Py_RETURN_NONE;
    }
    return PyObject_CallMethodNoArgs(o, str_deadline);
}

/* value(key) walking up iteratively (value chains can be long); a merged
 * context asks its first parent, then its second.  New reference. */
static PyObject *
any_value(PyObject *o, PyObject *key)
{
    for (;;) {
        PyTypeObject *tp = Py_TYPE(o);
        if (tp == X.value) {
            valuectx *v = (valuectx *)o;
            /* __eq__ may run anything, but the chain is immutable and
             * our caller holds its bottom. */
            int eq = PyObject_RichCompareBool(v->key, key, Py_EQ);
            if (eq < 0) {
                return NULL;
            }
            if (eq) {
                return Py_NewRef(v->val);
            }
            o = v->parent;
        }
        else if (tp == X.cancel) {
            cancelctx *c = (cancelctx *)o;
            if (c->parents[0] == NULL) {
                Py_RETURN_NONE;     /* cleared by the GC */
            }
            if (c->parents[1] != NULL) {
                if (Py_EnterRecursiveCall(" in context value()")) {
                    return NULL;
                }
                PyObject *r = any_value(c->parents[0], key);
                Py_LeaveRecursiveCall();
                if (r != Py_None) {
                    return r;
                }
                Py_DECREF(r);
                o = c->parents[1];
            }
            else {
                o = c->parents[0];
            }
        }
        else if (tp == X.empty) {
            emptyctx *e = (emptyctx *)o;
            if (e->parent == NULL) {
                Py_RETURN_NONE;
            }
            o = e->parent;
        }
        else {
            return PyObject_CallMethodOneArg(o, str_value, key);
        }
    }
}

/* ---- emptyCtx ------------------------------------------------------- */

static PyObject *
empty_done(PyObject *self, PyObject *unused)
{
    return Py_NewRef(gr_globals.nilchan);
}

static PyObject *
none_method(PyObject *self, PyObject *unused)
{
    Py_RETURN_NONE;
}

static PyObject *
ctx_value_m(PyObject *self, PyObject *key)
{
    return any_value(self, key);
}

static PyObject *
empty_repr(emptyctx *self)
{
    if (self->name != NULL) {
        return PyUnicode_FromString(self->name);
    }
    return PyUnicode_FromFormat("context.WithoutCancel(%R)", self->parent);
}

static int
empty_traverse(emptyctx *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->parent);
    return 0;
}

static int
empty_clear(emptyctx *self)
{
    Py_CLEAR(self->parent);
    return 0;
}

static void
empty_dealloc(emptyctx *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    empty_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef empty_methods[] = {
    {"done", empty_done, METH_NOARGS, NULL},
    {"err", none_method, METH_NOARGS, NULL},
    {"value", ctx_value_m, METH_O, NULL},
    {"deadline", none_method, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot empty_slots[] = {
    {Py_tp_repr, empty_repr},
    {Py_tp_methods, empty_methods},
    {Py_tp_traverse, empty_traverse},
    {Py_tp_clear, empty_clear},
    {Py_tp_dealloc, empty_dealloc},
    {0, NULL},
};

static PyType_Spec empty_spec = {
    .name = "goroutine.context._emptyCtx",
    .basicsize = sizeof(emptyctx),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = empty_slots,
};

static PyObject *
empty_new(PyTypeObject *tp, const char *name)
{
    emptyctx *e = PyObject_GC_New(emptyctx, tp);
    if (e == NULL) {
        return NULL;
    }
    e->name = name;
    e->parent = NULL;
    PyObject_GC_Track(e);
    return (PyObject *)e;
}

/* ---- valueCtx ------------------------------------------------------- */

static PyObject *
value_done(PyObject *self, PyObject *unused)
{
    return any_done(self);
}

static PyObject *
value_err(PyObject *self, PyObject *unused)
{
    return any_err(self);
}

static PyObject *
value_deadline(PyObject *self, PyObject *unused)
{
    return any_deadline(self);
}

static PyObject *
value_repr(valuectx *self)
{
    return PyUnicode_FromFormat("%R.WithValue(%R, %R)", self->parent,
                                self->key, self->val);
}

static int
value_traverse(valuectx *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->parent);
    Py_VISIT(self->key);
    Py_VISIT(self->val);
    return 0;
}

/* The parent stays until dealloc (a chain walk never meets NULL); key and
 * value are what can close a cycle through user objects, and a cycle
 * through the tree is broken by cancel_clear. */
static int
value_clear(valuectx *self)
{
    Py_CLEAR(self->key);
    Py_CLEAR(self->val);
    return 0;
}

static void
value_dealloc(valuectx *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    /* A chain of value contexts can be long: the trashcan keeps its
     * dealloc from recursing the C stack away. */
    Py_TRASHCAN_BEGIN(self, value_dealloc)
    value_clear(self);
    Py_CLEAR(self->parent);
    tp->tp_free(self);
    Py_DECREF(tp);
    Py_TRASHCAN_END
}

static PyMethodDef value_methods[] = {
    {"done", value_done, METH_NOARGS, NULL},
    {"err", value_err, METH_NOARGS, NULL},
    {"value", ctx_value_m, METH_O, NULL},
    {"deadline", value_deadline, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot value_slots[] = {
    {Py_tp_repr, value_repr},
    {Py_tp_methods, value_methods},
    {Py_tp_traverse, value_traverse},
    {Py_tp_clear, value_clear},
    {Py_tp_dealloc, value_dealloc},
    {0, NULL},
};

static PyType_Spec value_spec = {
    .name = "goroutine.context._valueCtx",
    .basicsize = sizeof(valuectx),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = value_slots,
};

/* ---- cancelCtx ------------------------------------------------------ */

static PyObject *
cancel_err(cancelctx *c, PyObject *unused)
{
    return Py_NewRef(c->err != NULL ? c->err : Py_None);
}

static PyObject *
cancel_deadline(cancelctx *c, PyObject *unused)
{
    return any_deadline((PyObject *)c);
}

static PyObject *
cancel_repr(cancelctx *c)
{
    return PyUnicode_FromFormat("context.WithCancel(%R)",
                                c->parents[0] ? c->parents[0] : Py_None);
}

/* _children: the nodes linked below (a list), None once cancelled. */
static PyObject *
cancel_get_children(cancelctx *c, void *unused)
{
    if (c->nochildren) {
        Py_RETURN_NONE;
    }
    PyObject *out = PyList_New(0);
    for (ctxlink *l = c->children.next; out && l != &c->children;
         l = l->next) {
        if (PyList_Append(out, (PyObject *)l->node) < 0) {
            Py_CLEAR(out);
        }
    }
    return out;
}

/* The cancel function with_cancel returns: cancel(). */
static PyObject *
cancel_fn(PyObject *self, PyObject *unused)
{
    ctx_cancel((cancelctx *)self, X.canceled, NULL);
    Py_RETURN_NONE;
}

/* with_cancel_cause's: cancel(cause=None). */
static PyObject *
cancel_cause_fn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    PyObject *cause = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1) {
        PyErr_Format(PyExc_TypeError, "cancel() takes at most 1 argument "
                     "(%zd given)", nargs + nkw);
        return NULL;
    }
    if (nargs == 1) {
        cause = args[0];
    }
    else if (nkw == 1) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, 0);
        if (!PyUnicode_Check(name) ||
            PyUnicode_CompareWithASCIIString(name, "cause") != 0) {
            PyErr_Format(PyExc_TypeError, "cancel() got an unexpected "
                         "keyword argument '%S'", name);
            return NULL;
        }
        cause = args[0];
    }
    ctx_cancel((cancelctx *)self, X.canceled, cause);
    Py_RETURN_NONE;
}

/* _cancel_from(err, cause): a foreign parent's watch cancels us. */
static PyObject *
cancel_from(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_cancel_from(err, cause)");
        return NULL;
    }
    ctx_cancel((cancelctx *)self, args[0] == Py_None ? X.canceled : args[0],
               args[1]);
    Py_RETURN_NONE;
}

static PyMethodDef cancel_fn_def = {
    "cancel", cancel_fn, METH_NOARGS,
    "cancel()\n--\n\nCancel the context and every context below it; "
    "idempotent."};

static PyMethodDef cancel_cause_fn_def = {
    "cancel", (PyCFunction)(void (*)(void))cancel_cause_fn,
    METH_FASTCALL | METH_KEYWORDS,
    "cancel(cause=None)\n--\n\nCancel the context and every context below "
    "it, recording cause (see context.cause); idempotent."};

/* Unlink every child of c (its dealloc or clear): they lose an ancestor
 * that can no longer cancel them.  Their references go to rel. */
static void
ctx_release_children(cancelctx *c, ctxlink *rel)
{
    while (!list_empty(&c->children)) {
        ctxlink *l = c->children.next;
        list_remove(l);
        l->anc = NULL;
        list_push(rel, l);
    }
}

static int
cancel_traverse(cancelctx *c, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(c));
    Py_VISIT(c->parents[0]);
    Py_VISIT(c->parents[1]);
    Py_VISIT(c->done);
    Py_VISIT(c->err);
    Py_VISIT(c->cause);
    for (ctxlink *l = c->children.next; l != &c->children; l = l->next) {
        Py_VISIT((PyObject *)l->node);
    }
    return 0;
}

static int
cancel_clear(cancelctx *c)
{
    ctxlink rel;
    list_init(&rel);
    unlink_all(&c->hd, &rel);
    ctx_release_children(c, &rel);
    gr_timer_rec *t = c->timer;
    c->timer = NULL;
    if (t != NULL) {
        gr_timer_fn_free(t);
    }
    while (!list_empty(&rel)) {
        ctxlink *l = rel.next;
        list_remove(l);
        Py_DECREF(l->node);
    }
    Py_CLEAR(c->parents[0]);
    Py_CLEAR(c->parents[1]);
    Py_CLEAR(c->done);
    Py_CLEAR(c->err);
    Py_CLEAR(c->cause);
    return 0;
}

static void
cancel_dealloc(cancelctx *c)
{
    PyTypeObject *tp = Py_TYPE(c);
    PyObject_GC_UnTrack(c);
    Py_TRASHCAN_BEGIN(c, cancel_dealloc)
    if (c->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)c);
    }
    cancel_clear(c);
    tp->tp_free(c);
    Py_DECREF(tp);
    Py_TRASHCAN_END
}

static PyMethodDef cancel_methods[] = {
    {"done", (PyCFunction)cancel_done, METH_NOARGS, NULL},
    {"err", (PyCFunction)cancel_err, METH_NOARGS, NULL},
    {"value", ctx_value_m, METH_O, NULL},
    {"deadline", (PyCFunction)cancel_deadline, METH_NOARGS, NULL},
    {"_cancel_from", (PyCFunction)(void (*)(void))cancel_from, METH_FASTCALL,
     NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef cancel_getset[] = {
    {"_children", (getter)cancel_get_children, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef cancel_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(cancelctx, weakreflist),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot cancel_slots[] = {
    {Py_tp_repr, cancel_repr},
    {Py_tp_methods, cancel_methods},
    {Py_tp_getset, cancel_getset},
    {Py_tp_members, cancel_members},
    {Py_tp_traverse, cancel_traverse},
    {Py_tp_clear, cancel_clear},
    {Py_tp_dealloc, cancel_dealloc},
    {0, NULL},
};

static PyType_Spec cancel_spec = {
    .name = "goroutine.context._cancelCtx",
    .basicsize = sizeof(cancelctx),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = cancel_slots,
};

/* A new, unlinked cancelCtx.  GIL held; may run Python (allocation). */
static cancelctx *
cancel_new(PyObject *p0, PyObject *p1, bool has_deadline, double deadline)
{
    cancelctx *c = PyObject_GC_New(cancelctx, X.cancel);
    if (c == NULL) {
        return NULL;
    }
    c->hd.kind = NODE_CANCEL;
    for (int i = 0; i < 2; i++) {
        c->hd.up[i].prev = c->hd.up[i].next = &c->hd.up[i];
        c->hd.up[i].node = &c->hd;
        c->hd.up[i].anc = NULL;
    }
    c->parents[0] = Py_NewRef(p0);
    c->parents[1] = Py_XNewRef(p1);
    c->done = c->err = c->cause = NULL;
    list_init(&c->children);
    c->nochildren = false;
    c->has_deadline = has_deadline;
    c->deadline = deadline;
    c->timer = NULL;
    c->weakreflist = NULL;
    PyObject_GC_Track(c);
    return c;
}

/* (ctx, cancel) for a linked ctx; steals ctx. */
static PyObject *
pair(cancelctx *c, PyMethodDef *def)
{
    PyObject *fn = PyCFunction_New(def, (PyObject *)c);
    if (fn == NULL) {
        Py_DECREF(c);
        return NULL;
    }
    PyObject *t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(c);
        Py_DECREF(fn);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, (PyObject *)c);
    PyTuple_SET_ITEM(t, 1, fn);
    return t;
}

/* The parent's deadline: *has false when it has none.  0 or -1. */
static int
parent_deadline(PyObject *parent, bool *has, double *d)
{
    PyObject *o = answerer(parent);
    if (is_cancel(o)) {
        *has = ((cancelctx *)o)->has_deadline;
        *d = ((cancelctx *)o)->deadline;
        return 0;
    }
    *has = false;
    if (Py_TYPE(o) == X.empty) {
        return 0;
    }
    PyObject *v = PyObject_CallMethodNoArgs(o, str_deadline);
    if (v == NULL) {
        return -1;
    }
    if (v != Py_None) {
        *d = PyFloat_AsDouble(v);
        if (*d == -1.0 && PyErr_Occurred()) {
            Py_DECREF(v);
            return -1;
        }
        *has = true;
    }
    Py_DECREF(v);
    return 0;
}

static PyObject *
make_cancel(PyObject *parent, PyMethodDef *def)
{
    if (check_ready() < 0 || check_parent(parent) < 0) {
        return NULL;
    }
    bool has;
    double d;
    if (parent_deadline(parent, &has, &d) < 0) {
        return NULL;
    }
    cancelctx *c = cancel_new(parent, NULL, has, d);
    if (c == NULL) {
        return NULL;
    }
    if (propagate(parent, &c->hd, 0) < 0) {
        ctx_cancel(c, X.canceled, NULL);
        Py_DECREF(c);
        return NULL;
    }
    return pair(c, def);
}

static PyObject *
ctx_with_cancel(PyObject *module, PyObject *parent)
{
    return make_cancel(parent, &cancel_fn_def);
}

static PyObject *
ctx_with_cancel_cause(PyObject *module, PyObject *parent)
{
    return make_cancel(parent, &cancel_cause_fn_def);
}

/* with_deadline, given also d, the time left until t (both finite or
 * infinite floats, not NaN; the parent checked). */
static PyObject *
make_deadline(PyObject *parent, double t, double d)
{
    bool has;
    double pd;
    if (parent_deadline(parent, &has, &pd) < 0) {
        return NULL;
    }
    if (has && pd <= t) {
        return make_cancel(parent, &cancel_fn_def);  /* the parent's rules */
    }
    cancelctx *c = cancel_new(parent, NULL, true, t);
    if (c == NULL) {
        return NULL;
    }
    if (d <= 0) {
        /* A cancelled parent's err rules; else the deadline has passed. */
        if (propagate(parent, &c->hd, 0) < 0) {
            Py_DECREF(c);
            return NULL;
        }
        ctx_cancel(c, X.deadline_exceeded, NULL);
        return pair(c, &cancel_fn_def);
    }
    /* Armed before c is linked: a cancel from above, once linked, finds
     * the timer to stop. */
    c->timer = gr_timer_fn_new(ctx_expire, c, true);
    if (c->timer != NULL) {
        gr_timer_fn_add(c->timer, gr_timer_when(d), 0);
    }
    if (c->timer == NULL || propagate(parent, &c->hd, 0) < 0) {
        ctx_cancel(c, X.canceled, NULL);
        Py_DECREF(c);
        return NULL;
    }
    return pair(c, &cancel_fn_def);
}

static PyObject *
ctx_with_deadline(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "with_deadline() takes 2 positional "
                     "arguments but %zd were given", nargs);
        return NULL;
    }
    double t;
    if (check_ready() < 0 || check_parent(args[0]) < 0 ||
        gr_timer_seconds(args[1], "deadline", &t) < 0) {
        return NULL;
    }
    return make_deadline(args[0], t, t - wall_now());
}

static PyObject *
ctx_with_timeout(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "with_timeout() takes 2 positional "
                     "arguments but %zd were given", nargs);
        return NULL;
    }
    double d;
    if (check_ready() < 0 || check_parent(args[0]) < 0 ||
        gr_timer_seconds(args[1], "timeout", &d) < 0) {
        return NULL;
    }
    return make_deadline(args[0], wall_now() + d, d);
}

static PyObject *
ctx_merge(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "merge() takes 2 positional "
                     "arguments but %zd were given", nargs);
        return NULL;
    }
    if (check_ready() < 0 || check_parent(args[0]) < 0 ||
        check_parent(args[1]) < 0) {
        return NULL;
    }
    bool h1, h2;
    double d1, d2;
    if (parent_deadline(args[0], &h1, &d1) < 0 ||
        parent_deadline(args[1], &h2, &d2) < 0) {
        return NULL;
    }
    double d = !h1 ? d2 : !h2 ? d1 : d1 < d2 ? d1 : d2;
    cancelctx *c = cancel_new(args[0], args[1], h1 || h2, d);
    if (c == NULL) {
        return NULL;
    }
    if (propagate(args[0], &c->hd, 0) < 0 ||
        propagate(args[1], &c->hd, 1) < 0) {
        ctx_cancel(c, X.canceled, NULL);
        Py_DECREF(c);
        return NULL;
    }
    return pair(c, &cancel_fn_def);
}

static PyObject *
ctx_with_value(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "with_value() takes 3 positional "
                     "arguments but %zd were given", nargs);
        return NULL;
    }
    if (check_ready() < 0 || check_parent(args[0]) < 0) {
        return NULL;
    }
    if (args[1] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "nil key");
        return NULL;
    }
    if (PyObject_Hash(args[1]) == -1) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
            return NULL;
        }
        /* Go: "key is not comparable"; a Python key must be hashable. */
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "key is not comparable: unhashable "
                     "type: '%.200s'", Py_TYPE(args[1])->tp_name);
        return NULL;
    }
    valuectx *v = PyObject_GC_New(valuectx, X.value);
    if (v == NULL) {
        return NULL;
    }
    v->parent = Py_NewRef(args[0]);
    v->key = Py_NewRef(args[1]);
    v->val = Py_NewRef(args[2]);
    PyObject_GC_Track(v);
    return (PyObject *)v;
}

static PyObject *
ctx_without_cancel(PyObject *module, PyObject *parent)
{
    if (check_ready() < 0 || check_parent(parent) < 0) {
        return NULL;
    }
    emptyctx *e = (emptyctx *)empty_new(X.empty, NULL);
    if (e != NULL) {
        e->parent = Py_NewRef(parent);
    }
    return (PyObject *)e;
}

static PyObject *
ctx_background(PyObject *module, PyObject *unused)
{
    if (check_ready() < 0) {
        return NULL;
    }
    return Py_NewRef(X.background);
}

static PyObject *
ctx_todo(PyObject *module, PyObject *unused)
{
    if (check_ready() < 0) {
        return NULL;
    }
    return Py_NewRef(X.todo);
}

static PyObject *
ctx_cause(PyObject *module, PyObject *ctx)
{
    if (!PyObject_TypeCheck(ctx, X.Context)) {
        PyErr_Format(PyExc_TypeError, "cause() argument must be a Context, "
                     "not '%.200s'", Py_TYPE(ctx)->tp_name);
        return NULL;
    }
    bool foreign;
    cancelctx *anc = cancel_ancestor(ctx, &foreign);
    if (anc != NULL) {
        return Py_NewRef(anc->err != NULL ? anc->cause : Py_None);
    }
    return any_err(ctx);
}

/* ---- afterFunc ------------------------------------------------------ */

/* stop(): True if it kept f from being started. */
static PyObject *
after_stop(PyObject *self, PyObject *unused)
{
    afterfunc *a = (afterfunc *)self;
    if (a->state != 0) {
        Py_RETURN_FALSE;
    }
    a->state = 2;
    ctxlink rel;
    list_init(&rel);
    unlink_all(&a->hd, &rel);
    PyObject *stopc = a->stopc;
    a->stopc = NULL;
    if (stopc != NULL) {
        hchan *h;
        int dir;
        gr_chan_unwrap(stopc, &h, &dir);
        gr_chan_tryclose(h);
        Py_DECREF(stopc);
    }
    release(&rel);      /* state 2: drops the reference only */
    Py_RETURN_TRUE;
}

/* _fire(): the foreign watch saw the context done. */
static PyObject *
after_fire(PyObject *self, PyObject *unused)
{
    afterfunc *a = (afterfunc *)self;
    if (a->state == 0) {
        a->state = 1;
        PyObject *args = PyTuple_New(0);
        PyObject *r = args ? gr_go(a->f, args) : NULL;
        Py_XDECREF(args);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyMethodDef after_stop_def = {
    "stop", after_stop, METH_NOARGS,
    "stop()\n--\n\nKeep f from being run: True if it did (f had not been "
    "started and will not be)."};

static PyObject *
after_get_stopc(afterfunc *a, void *unused)
{
    return Py_NewRef(a->stopc != NULL ? a->stopc : gr_globals.nilchan);
}

static int
after_traverse(afterfunc *a, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(a));
    Py_VISIT(a->f);
    Py_VISIT(a->stopc);
    return 0;
}

static int
after_clear(afterfunc *a)
{
    ctxlink rel;
    list_init(&rel);
    unlink_all(&a->hd, &rel);
    while (!list_empty(&rel)) {
        ctxlink *l = rel.next;
        list_remove(l);
        Py_DECREF(l->node);
    }
    Py_CLEAR(a->f);
    Py_CLEAR(a->stopc);
    return 0;
}

static void
after_dealloc(afterfunc *a)
{
    PyTypeObject *tp = Py_TYPE(a);
    PyObject_GC_UnTrack(a);
    after_clear(a);
    tp->tp_free(a);
    Py_DECREF(tp);
}

static PyMethodDef after_methods[] = {
    {"_fire", after_fire, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef after_getset[] = {
    {"_stopc", (getter)after_get_stopc, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot after_slots[] = {
    {Py_tp_methods, after_methods},
    {Py_tp_getset, after_getset},
    {Py_tp_traverse, after_traverse},
    {Py_tp_clear, after_clear},
    {Py_tp_dealloc, after_dealloc},
    {0, NULL},
};

static PyType_Spec after_spec = {
    .name = "goroutine.context._afterFunc",
    .basicsize = sizeof(afterfunc),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = after_slots,
};

/* _after_func(ctx, f) -> stop; f already checked by context.py. */
static PyObject *
ctx_after_func(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "after_func(ctx, f)");
        return NULL;
    }
    if (check_ready() < 0 || check_parent(args[0]) < 0) {
        return NULL;
    }
    afterfunc *a = PyObject_GC_New(afterfunc, X.after);
    if (a == NULL) {
        return NULL;
    }
    a->hd.kind = NODE_AFTER;
    for (int i = 0; i < 2; i++) {
        a->hd.up[i].prev = a->hd.up[i].next = &a->hd.up[i];
        a->hd.up[i].node = &a->hd;
        a->hd.up[i].anc = NULL;
    }
    a->f = Py_NewRef(args[1]);
    a->state = 0;
    a->stopc = NULL;
    PyObject_GC_Track(a);
    PyObject *stop = PyCFunction_New(&after_stop_def, (PyObject *)a);
    if (stop == NULL) {
        Py_DECREF(a);
        return NULL;
    }
    bool foreign;
    cancelctx *anc = cancel_ancestor(args[0], &foreign);
    if (anc != NULL) {
        if (anc->err == NULL) {
            link_under(anc, &a->hd, 0);
        }
        else {
            PyObject *r = after_fire((PyObject *)a, NULL);
            Py_XDECREF(r);
            if (r == NULL) {
                Py_DECREF(stop);
                Py_DECREF(a);
                return NULL;
            }
        }
    }
    else if (foreign) {
        a->stopc = PyObject_CallNoArgs((PyObject *)gr_globals.chan_type);
        if (a->stopc == NULL ||
            propagate(args[0], &a->hd, 0) < 0) {
            Py_DECREF(stop);
            Py_DECREF(a);
            return NULL;
        }
    }
    Py_DECREF(a);       /* stop holds it, and the tree if linked */
    return stop;
}

/* _ctx_register(canceled, deadline_exceeded, watch): goroutine/context.py
 * hands over its error singletons and the watch of a foreign parent. */
static PyObject *
ctx_register(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "_ctx_register(canceled, "
                        "deadline_exceeded, watch)");
        return NULL;
    }
    Py_XSETREF(X.canceled, Py_NewRef(args[0]));
    Py_XSETREF(X.deadline_exceeded, Py_NewRef(args[1]));
    Py_XSETREF(X.watch, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

#define CTXDOC(sig, doc) sig "\n--\n\n" doc

static PyMethodDef ctx_functions[] = {
    {"background", ctx_background, METH_NOARGS,
     CTXDOC("background()", "The root context: never cancelled, no values, "
            "no deadline.")},
    {"todo", ctx_todo, METH_NOARGS,
     CTXDOC("todo()", "A placeholder root context for code not yet given "
            "one.")},
    {"with_cancel", ctx_with_cancel, METH_O,
     CTXDOC("with_cancel(parent, /)", "(ctx, cancel): ctx is done when "
            "cancel() is called or parent is.")},
    {"with_cancel_cause", ctx_with_cancel_cause, METH_O,
     CTXDOC("with_cancel_cause(parent, /)", "(ctx, cancel) where "
            "cancel(cause=None) records why; see cause().")},
    {"with_deadline", (PyCFunction)(void (*)(void))ctx_with_deadline,
     METH_FASTCALL,
     CTXDOC("with_deadline(parent, t, /)", "(ctx, cancel): also done at "
            "wall-clock time t (time.now() scale).  The deadline is never "
            "later than the parent's.")},
    {"with_timeout", (PyCFunction)(void (*)(void))ctx_with_timeout,
     METH_FASTCALL,
     CTXDOC("with_timeout(parent, d, /)", "with_deadline(parent, "
            "time.now() + d).")},
    {"with_value", (PyCFunction)(void (*)(void))ctx_with_value,
     METH_FASTCALL,
     CTXDOC("with_value(parent, key, value, /)", "A child of parent whose "
            "value(key) is value.")},
    {"without_cancel", ctx_without_cancel, METH_O,
     CTXDOC("without_cancel(parent, /)", "A context with parent's values "
            "that is never cancelled.")},
    {"merge", (PyCFunction)(void (*)(void))ctx_merge, METH_FASTCALL,
     CTXDOC("merge(ctx1, ctx2, /)", "(ctx, cancel): done when either is "
            "done (pygolang's merge); values from ctx1 then ctx2; the "
            "earlier deadline.")},
    {"cause", ctx_cause, METH_O,
     CTXDOC("cause(ctx, /)", "Why ctx was cancelled: the cause given to a "
            "with_cancel_cause cancel (here or above), else ctx.err(); "
            "None while ctx is not done.")},
    {"after_func", (PyCFunction)(void (*)(void))ctx_after_func,
     METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef ctx_private[] = {
    {"_ctx_register", (PyCFunction)(void (*)(void))ctx_register,
     METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

/* Module init, staging (state.h): the types and the two roots, into
 * st->ctx (gr_globals_clear drops them on failure). */
int
gr_context_init(gr_globals_t *st)
{
    if (str_done == NULL) {
        str_done = PyUnicode_InternFromString("done");
        str_err = PyUnicode_InternFromString("err");
        str_value = PyUnicode_InternFromString("value");
        str_deadline = PyUnicode_InternFromString("deadline");
        if (!str_done || !str_err || !str_value || !str_deadline) {
            return -1;
        }
    }
    st->ctx.Context = (PyTypeObject *)PyType_FromSpec(&iface_spec);
    if (st->ctx.Context == NULL) {
        return -1;
    }
    PyObject *bases = PyTuple_Pack(1, (PyObject *)st->ctx.Context);
    if (bases == NULL) {
        return -1;
    }
    st->ctx.empty = (PyTypeObject *)PyType_FromSpecWithBases(&empty_spec,
                                                             bases);
    st->ctx.value = (PyTypeObject *)PyType_FromSpecWithBases(&value_spec,
                                                             bases);
    st->ctx.cancel = (PyTypeObject *)PyType_FromSpecWithBases(&cancel_spec,
                                                              bases);
    Py_DECREF(bases);
    st->ctx.after = (PyTypeObject *)PyType_FromSpec(&after_spec);
    if (!st->ctx.empty || !st->ctx.value || !st->ctx.cancel ||
        !st->ctx.after) {
        return -1;
    }
    st->ctx.background = empty_new(st->ctx.empty, "context.Background");
    st->ctx.todo = empty_new(st->ctx.empty, "context.TODO");
    return st->ctx.background && st->ctx.todo ? 0 : -1;
}

int
gr_context_exec(PyObject *module)
{
    if (PyModule_AddObjectRef(module, "Context", (PyObject *)X.Context) < 0) {
        return -1;
    }
    PyObject *modname = PyUnicode_FromString("goroutine.context");
    if (modname == NULL) {
        return -1;
    }
    for (PyMethodDef *d = ctx_functions; d->ml_name != NULL; d++) {
        PyObject *fn = PyCFunction_NewEx(d, NULL, modname);
        char name[64];
        snprintf(name, sizeof name, "_ctx_%s", d->ml_name);
        if (fn == NULL || PyModule_AddObject(module, name, fn) < 0) {
            Py_XDECREF(fn);
            Py_DECREF(modname);
            return -1;
        }
    }
    Py_DECREF(modname);
    return PyModule_AddFunctions(module, ctx_private);
}
