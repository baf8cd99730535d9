"""goroutine.context: Go's context package.

A Context carries a done channel (closed on cancel), an error, values and
a deadline down a tree.  Cancelling a context cancels every descendant
(iteratively: a chain or fan-out of any size), never an ancestor; cancel
functions are idempotent and unlink the context from its parent, so a
long-lived parent with many short-lived children does not grow; a child's
deadline is never later than its parent's, and its timer is released when
it is cancelled.

Locking: one lock for the whole tree (_tree) guards every context's
error, children and timer.  It is held only to decide, link or unlink, and
to close done channels (which never blocks); so cancelling a subtree takes
it once, and its timers are stopped and after_func goroutines started
after it is released.  Every context operation runs with the GIL anyway,
so one lock costs no parallelism.

The lock is reentrant: the GC can run a __del__ inside a critical section
(at an allocation, or at 3.12+'s eval-breaker checks), and a __del__ that
cancels a context must not deadlock its own thread.  Re-entry is safe
because a critical section never iterates over anything still reachable
from the tree: a subtree being cancelled is detached first.
"""
import threading as _threading
from typing import (Any as _Any, Dict as _Dict,
                    Optional as _Optional, Tuple as _Tuple)
from time import time as _now       # goroutine.time.now()

from goroutine import _core
from goroutine._check import check_callable as _check_callable
from goroutine._core import chan, go, nilchan, select

_tree = _threading.RLock()

__all__ = ["Context", "Canceled", "DeadlineExceeded", "canceled",
           "deadlineExceeded", "background", "todo", "with_cancel",
           "with_cancel_cause", "with_timeout", "with_deadline",
           "with_value", "cause", "after_func", "without_cancel", "merge"]


class Canceled(Exception):
    """The context was cancelled: "context canceled"."""


class DeadlineExceeded(TimeoutError):
    """The context's deadline passed: "context deadline exceeded"."""


canceled = Canceled("context canceled")
deadlineExceeded = DeadlineExceeded("context deadline exceeded")


class Context:
    """The interface: done(), err(), value(key), deadline()."""
    __slots__ = ()

    def done(self) -> chan:
        """A channel closed when the context is cancelled (nilchan-like,
        never closed, for contexts that cannot be cancelled)."""
        raise NotImplementedError

    def err(self):
        """None while not done; canceled or deadlineExceeded after."""
        raise NotImplementedError

    def value(self, key):
        """The value for key set by with_value here or above, or None."""
        raise NotImplementedError

    def deadline(self):
        """The deadline (as time.now() gives it), or None."""
        raise NotImplementedError


def _check_parent(parent):
    if parent is None:
        raise TypeError("cannot create context from nil parent")
    if not isinstance(parent, Context):
        raise TypeError("context parent must be a Context, not %r"
                        % type(parent).__name__)


class _Empty(Context):
    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def done(self):
        return nilchan

    def err(self):
        return None

    def value(self, key):
        return None

    def deadline(self):
        return None

    def __repr__(self):
        return self._name


_background = _Empty("context.Background")
_todo = _Empty("context.TODO")


def background() -> Context:
    """The root context: never cancelled, no values, no deadline."""
    return _background


def todo() -> Context:
    """A placeholder root context for code not yet given one."""
    return _todo


def _parent_value(ctx, key):
    """value(key) walking up iteratively (value chains can be long); a
    merged context asks its first parent, then its second."""
    while True:
        if isinstance(ctx, _ValueCtx):
            if ctx._key == key:
                return ctx._val
            ctx = ctx._parent
        elif isinstance(ctx, _CancelCtx):
            if len(ctx._parents) > 1:
                v = _parent_value(ctx._parents[0], key)
                if v is not None:
                    return v
            ctx = ctx._parents[-1]
        elif isinstance(ctx, _WithoutCancel):
            ctx = ctx._parent
        elif isinstance(ctx, _Empty):
            return None
        else:
            return ctx.value(key)


class _CancelCtx(Context):
    __slots__ = ("_parents", "_ancs", "_done", "_err", "_cause",
                 "_children", "_deadline", "_timer", "__weakref__")

    def __init__(self, parents, deadline=None):
        self._parents = parents         # tuple of the parent contexts
        self._ancs: _Tuple[_Any, ...] = ()    # _tree: the _CancelCtx we are in
        self._done: chan[None] = chan()
        self._err = None                # _tree: set once, on cancel
        self._cause = None              # _tree
        # _tree: None once cancelled
        self._children: _Optional[_Dict[_Any, None]] = {}
        self._deadline = deadline
        self._timer = None              # _tree: the deadline's timer

    def done(self):
        return self._done

    def err(self):
        return self._err

    def value(self, key):
        return _parent_value(self, key)

    def deadline(self):
        return self._deadline

    def __repr__(self):
        return "context.WithCancel(%r)" % (self._parents[0],)

    def _cancel_fn(self):
        """The cancel function with_cancel returns."""
        self._cancel(canceled, None)

    def _cancel_cause_fn(self, cause=None):
        """The cancel function with_cancel_cause returns."""
        self._cancel(canceled, cause)

    def _expire(self):
        """The deadline timer's callback (in its own goroutine)."""
        self._cancel(deadlineExceeded, None)

    def _cancel(self, err, cause, unlink=True):
        """Cancel self and every descendant (iteratively); unlink self
        from its parents.  Idempotent."""
        with _tree:
            if self._err is not None:
                return
            cause = err if cause is None else cause
            self._err = err
            self._cause = cause
            self._done.close()
            timer, self._timer = self._timer, None
            children, self._children = self._children, None
            if unlink:
                for anc in self._ancs:
                    if anc._children is not None:
                        anc._children.pop(self, None)
            if children:
                timers, funcs = _cancel_descendants(children, err, cause)
        if timer is not None:
            timer.stop()
        if children:
            for t in timers:
                t.stop()
            for f in funcs:
                f._fire()


def _cancel_descendants(children, err, cause):
    """Cancel every context below (a dict of children), iteratively: a
    chain or fan-out of any size.  _tree held.  Returns the timers to stop
    and the after_func nodes to fire once it is released."""
    timers = []
    funcs = []
    stack = [children]
    while stack:
        for child in stack.pop():
            if not isinstance(child, _CancelCtx):
                funcs.append(child)
                continue
            if child._err is not None:
                continue
            child._err = err
            child._cause = cause
            child._done.close()
            if child._timer is not None:
                timers.append(child._timer)
                child._timer = None
            if child._children:
                stack.append(child._children)
            child._children = None
    return timers, funcs


def _cancel_ancestor(ctx):
    """The nearest _CancelCtx at or above ctx through value wrappers, or
    None when ctx cannot be cancelled or is of a foreign type."""
    while True:
        if isinstance(ctx, _CancelCtx):
            return ctx
        if isinstance(ctx, _ValueCtx):
            ctx = ctx._parent
            continue
        return None


def _unlink(parent, child):
    anc = _cancel_ancestor(parent)
    if anc is not None:
        with _tree:
            if anc._children is not None:
                anc._children.pop(child, None)


def _propagate(parent, child):
    """Arrange for child to be cancelled when parent is (Go's
    propagateCancel)."""
    if parent is _background or parent is _todo:
        return
    anc = _cancel_ancestor(parent)
    if anc is not None:
        with _tree:
            if anc._err is None:
                anc._children[child] = None
                child._ancs += (anc,)
                return
            err, c = anc._err, anc._cause
        child._cancel(err, c, unlink=False)
        return
    if parent.done() is nilchan:
        return
    # A foreign Context: watch its done channel in a goroutine, which
    # ends when either side is done.
    err = parent.err()
    if err is not None:
        child._cancel(err, cause(parent), unlink=False)
        return

    def watch():
        if select(parent.done().recv, child.done().recv)[0] == 0:
            child._cancel(parent.err(), cause(parent))
    go(watch)


def with_cancel(parent):
    """(ctx, cancel): ctx is done when cancel() is called or parent is."""
    _check_parent(parent)
    ctx = _CancelCtx((parent,), parent.deadline())
    _propagate(parent, ctx)
    return ctx, ctx._cancel_fn


def with_cancel_cause(parent):
    """(ctx, cancel) where cancel(cause=None) records why; see cause()."""
    _check_parent(parent)
    ctx = _CancelCtx((parent,), parent.deadline())
    _propagate(parent, ctx)
    return ctx, ctx._cancel_cause_fn


def cause(ctx):
    """Why ctx was cancelled: the cause given to a with_cancel_cause
    cancel (here or above), else ctx.err(); None while ctx is not done."""
    if not isinstance(ctx, Context):
        raise TypeError("cause() argument must be a Context, not %r"
                        % type(ctx).__name__)
    anc = _cancel_ancestor(ctx)
    if anc is not None:
        return anc._cause if anc._err is not None else None
    return ctx.err()


def with_deadline(parent, t):
    """(ctx, cancel): also done at wall-clock time t (time.now() scale).
    The deadline is never later than the parent's."""
    _check_parent(parent)
    t = _core._seconds(t, "deadline")
    return _with_deadline(parent, t, t - _now())


def with_timeout(parent, d):
    """with_deadline(parent, time.now() + d)."""
    _check_parent(parent)
    d = _core._seconds(d, "timeout")
    return _with_deadline(parent, _now() + d, d)


def _with_deadline(parent, t, d):
    """with_deadline, given also d, the time left until t (both floats,
    not NaN; the parent checked)."""
    pd = parent.deadline()
    if pd is not None and pd <= t:
        return with_cancel(parent)      # the parent's deadline rules
    ctx = _CancelCtx((parent,), t)
    if d <= 0:
        _propagate(parent, ctx)         # a cancelled parent's err rules
        ctx._cancel(deadlineExceeded, None)
        return ctx, ctx._cancel_fn
    # The bare C timer: no channel, it starts ctx._expire in a goroutine.
    # It is set before ctx is linked, so no cancel from above can miss it;
    # if it fires first, ctx keeps a reference to a spent timer, harmless.
    ctx._timer = _core._after(d, ctx._expire)
    _propagate(parent, ctx)
    return ctx, ctx._cancel_fn


class _ValueCtx(Context):
    __slots__ = ("_parent", "_key", "_val")

    def __init__(self, parent, key, val):
        self._parent, self._key, self._val = parent, key, val

    def done(self):
        return self._parent.done()

    def err(self):
        return self._parent.err()

    def value(self, key):
        return _parent_value(self, key)

    def deadline(self):
        return self._parent.deadline()

    def __repr__(self):
        return "%r.WithValue(%r, %r)" % (self._parent, self._key, self._val)


def with_value(parent, key, value):
    """A child of parent whose value(key) is value."""
    _check_parent(parent)
    if key is None:
        raise TypeError("nil key")
    try:
        hash(key)
    except TypeError:
        # Go: "key is not comparable"; a Python key must be hashable.
        raise TypeError("key is not comparable: unhashable type: %r"
                        % type(key).__name__) from None
    return _ValueCtx(parent, key, value)


class _WithoutCancel(Context):
    __slots__ = ("_parent",)

    def __init__(self, parent):
        self._parent = parent

    def done(self):
        return nilchan

    def err(self):
        return None

    def value(self, key):
        return _parent_value(self._parent, key)

    def deadline(self):
        return None


def without_cancel(parent):
    """A context with parent's values that is never cancelled."""
    _check_parent(parent)
    return _WithoutCancel(parent)


class _AfterFunc:
    """A tree node that runs f in a goroutine when its parent is done."""
    __slots__ = ("_f", "_state", "__weakref__")

    def __init__(self, f):
        self._f = f
        self._state = 0             # 0 waiting, 1 ran, 2 stopped; _tree

    def _cancel(self, err, cause, unlink=True):
        self._fire()

    def _fire(self):
        with _tree:
            if self._state != 0:
                return
            self._state = 1
        go(self._f)


def after_func(ctx, f):
    """Run f() in its own goroutine once ctx is done.  Returns stop(): True
    if it stopped f from being run."""
    _check_parent(ctx)
    _check_callable("after_func", f)
    node = _AfterFunc(f)
    anc = _cancel_ancestor(ctx)
    if ctx.done() is nilchan:
        pass
    elif anc is not None:
        with _tree:
            linked = anc._err is None
            if linked:
                anc._children[node] = None
        if not linked:
            node._fire()
    else:
        stopc: chan[None] = chan()

        def watch():
            if select(ctx.done().recv, stopc.recv)[0] == 0:
                node._fire()
        go(watch)

    def stop():
        with _tree:
            if node._state != 0:
                return False
            node._state = 2
        if anc is not None:
            _unlink(anc, node)
        elif ctx.done() is not nilchan:
            stopc.close()
        return True
    return stop


def merge(ctx1, ctx2):
    """(ctx, cancel): done when either is done (pygolang's merge); values
    from ctx1 then ctx2; the earlier deadline."""
    _check_parent(ctx1)
    _check_parent(ctx2)
    d1, d2 = ctx1.deadline(), ctx2.deadline()
    d = d1 if d2 is None else d2 if d1 is None else min(d1, d2)
    ctx = _CancelCtx((ctx1, ctx2), d)
    _propagate(ctx1, ctx)
    _propagate(ctx2, ctx)
    return ctx, ctx._cancel_fn
