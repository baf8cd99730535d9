"""goroutine.errgroup: golang.org/x/sync/errgroup.

A Group runs goroutines for subtasks of a common task; wait() waits for
all of them and raises the first exception any raised.  set_limit(n) caps
the active goroutines: go() then blocks for a free slot, which makes a
Group the worker-pool primitive."""
import operator as _operator
from typing import Any as _Any, Callable as _Callable

from goroutine import Panic
from goroutine._check import check_callable as _check_callable
from goroutine._core import chan as _chan, go as _go
from goroutine.sync import Mutex, Sema, WaitGroup

__all__ = ["Group", "with_context"]


class Group:
    """A group of goroutines working on subtasks of one task: go() starts
    them, wait() waits for all and raises the first exception, and
    set_limit(n) bounds how many run at once."""

    def __init__(self):
        self._wg = WaitGroup()
        self._m = Mutex()
        self._err = None
        self._sem = None            # Sema(limit), or None: no limit
        self._never = None          # limit 0: a channel never ready
        self._cancel = None

    def _run(self, f, args, kw):
        self._wg.add(1)

        def run():
            try:
                f(*args, **kw)
            except BaseException as e:
                with self._m:
                    first = self._err is None
                    if first:
                        self._err = e
                if first and self._cancel is not None:
                    self._cancel(e)
            finally:
                if self._sem is not None:
                    self._sem.release()
                self._wg.done()
        _go(run)

    def go(self, f: _Callable[..., _Any], *args: _Any, **kw: _Any) -> None:
        """Run f(*args, **kw) in a goroutine; with a limit, first wait for
        a slot.  f not callable -> TypeError at once, as go(f)."""
        _check_callable("Group.go", f)
        if self._sem is not None:
            if self._never is not None:
                # Limit 0: Go's go() sends on an unbuffered token channel
                # nobody receives from, and blocks for good (a plain thread
                # with nothing else running then gets Deadlock).
                self._never.recv()
            self._sem.acquire()
        self._run(f, args, kw)

    def try_go(self, f: _Callable[..., _Any], *args: _Any, **kw: _Any) -> bool:
        """go() only if a slot is free now; return whether it started."""
        _check_callable("Group.try_go", f)
        if self._sem is not None and not self._sem.try_acquire():
            return False
        self._run(f, args, kw)
        return True

    def set_limit(self, n: int) -> None:
        """At most n goroutines active at once (n < 0: no limit; n == 0:
        go() blocks forever, as in Go).  The limit cannot change while
        goroutines of the group are active."""
        n = _operator.index(n)      # TypeError for 'x', 1.5, None
        active = self._wg._count()
        if active != 0:
            raise Panic("errgroup: modify limit while %d goroutines in the "
                        "group are still active" % active)
        self._sem = None if n < 0 else Sema(n)
        self._never = _chan() if n == 0 else None

    def wait(self) -> None:
        """Wait for every goroutine; raise the first exception."""
        self._wg.wait()
        if self._cancel is not None:
            self._cancel(self._err)
        if self._err is not None:
            raise self._err


def with_context(parent):
    """(group, ctx): ctx is cancelled by the first exception in the group
    or when wait() returns, whichever comes first."""
    from goroutine import context
    ctx, cancel = context.with_cancel_cause(parent)
    g = Group()
    g._cancel = cancel
    return g, ctx
