"""goroutine.context: Go's context package.

A Context carries a done channel (closed on cancel), an error, values and
a deadline down a tree.  Cancelling a context cancels every descendant
(iteratively: a chain or fan-out of any size), never an ancestor; cancel
functions are idempotent and unlink the context from its parent, so a
long-lived parent with many short-lived children does not grow; a child's
deadline is never later than its parent's, and its timer is released when
it is cancelled.

The tree, the done channels and the deadline timers are C (src/context.c:
no lock of its own, the GIL and code that calls no Python in between make
each change atomic; deadlines on the runtime's timer heap).  This module
holds what is clearer in Python: the error classes, after_func's argument
check, and the goroutine that watches a Context of a foreign type (a
user's subclass of Context) for its children.
"""
from goroutine import _core
from goroutine._check import check_callable as _check_callable
from goroutine._core import go, nilchan, select

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

Context = _core.Context
background = _core._ctx_background
todo = _core._ctx_todo
with_cancel = _core._ctx_with_cancel
with_cancel_cause = _core._ctx_with_cancel_cause
with_deadline = _core._ctx_with_deadline
with_timeout = _core._ctx_with_timeout
with_value = _core._ctx_with_value
without_cancel = _core._ctx_without_cancel
merge = _core._ctx_merge
cause = _core._ctx_cause


def after_func(ctx, f):
    """Run f() in its own goroutine once ctx is done.  Returns stop(): True
    if it stopped f from being run."""
    if ctx is not None:
        _check_callable("after_func", f)
    return _core._ctx_after_func(ctx, f)


def _watch(parent, node):
    """A node (a cancel context or an after_func) below a foreign parent:
    a goroutine waits for either side to be done (Go's propagateCancel
    for a Context it does not know)."""
    if parent.done() is nilchan:
        return
    fire = getattr(node, "_fire", None)
    if fire is not None:                # after_func: node._stopc ends it
        mine = node._stopc
    else:
        mine = node.done()
    err = parent.err()
    if err is not None:
        if fire is not None:
            fire()
        else:
            node._cancel_from(err, cause(parent))
        return

    def watch():
        if select(parent.done().recv, mine.recv)[0] == 0:
            if fire is not None:
                fire()
            else:
                node._cancel_from(parent.err(), cause(parent))
    go(watch)


_core._ctx_register(canceled, deadlineExceeded, _watch)
