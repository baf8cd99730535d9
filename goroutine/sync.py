"""goroutine.sync: Go's sync package.  Every primitive parks goroutines
(their OS thread runs other goroutines meanwhile) and also works from plain
threads, where a wait is interruptible by Ctrl-C."""
from goroutine import _core, _async
from goroutine._check import check_callable as _check_callable
from goroutine._core import Cond, Sema, go

__all__ = ["Mutex", "RWMutex", "WaitGroup", "Once", "Cond", "Sema",
           "WorkGroup"]


class WaitGroup(_core.WaitGroup):
    """Waits for a collection of goroutines to finish."""
    __slots__ = ()

    def go(self, f, *args, **kw) -> None:
        """add(1), run f(*args, **kw) in a goroutine, done() when it ends
        (even by an exception, which is reported as any goroutine's).
        f not callable -> TypeError at once, as go(f)."""
        _check_callable("WaitGroup.go", f)
        self.add(1)

        def run():
            try:
                f(*args, **kw)
            finally:
                self.done()
        go(run)

    async def wait_async(self) -> None:
        """await wg.wait_async(): wait, suspending the asyncio task."""
        if self._count() == 0:
            return
        await _async.call(self.wait)


class Mutex(_core.Mutex):
    """Go's sync.Mutex: not reentrant, not owned (any goroutine may
    unlock), starvation-free; also a context manager."""
    __slots__ = ()

    async def lock_async(self) -> None:
        """await m.lock_async(): lock, suspending the asyncio task.  If the
        task is cancelled, the mutex is left as it was found."""
        if self.try_lock():
            return
        await _async.acquire(self.lock, self.unlock)


class _RLocker:
    __slots__ = ("_rw",)

    def __init__(self, rw):
        self._rw = rw

    def lock(self):
        self._rw.rlock()

    def unlock(self):
        self._rw.runlock()

    def __enter__(self):
        self._rw.rlock()

    def __exit__(self, *exc):
        self._rw.runlock()


class RWMutex(_core.RWMutex):
    """A reader/writer lock; a waiting writer blocks new readers."""
    __slots__ = ()

    def rlocker(self):
        """A locker (lock/unlock) that takes this mutex for reading."""
        return _RLocker(self)


class Once:
    """do(f): f runs at most once; every caller returns after it has
    completed.  An exception in f counts as done and propagates to the
    caller that ran it only."""
    __slots__ = ("_done", "_m")

    def __init__(self):
        self._done = False
        self._m = Mutex()

    def do(self, f) -> None:
        _check_callable("Once.do", f)
        if self._done:
            return
        with self._m:
            if not self._done:
                try:
                    f()
                finally:
                    self._done = True


class WorkGroup:
    """pygolang's sync.WorkGroup: go(f, *args) runs f(ctx, *args) in a
    goroutine; the first exception cancels the group's ctx; wait() waits
    for all and re-raises that first exception."""

    def __init__(self, ctx):
        from goroutine import context
        self._ctx, self._cancel = context.with_cancel(ctx)
        self._wg = WaitGroup()
        self._m = Mutex()
        self._err = None

    def go(self, f, *args, **kw) -> None:
        _check_callable("WorkGroup.go", f)
        self._wg.add(1)

        def run():
            try:
                f(self._ctx, *args, **kw)
            except BaseException as e:
                with self._m:
                    first = self._err is None
                    if first:
                        self._err = e
                if first:
                    self._cancel()
            finally:
                self._wg.done()
        go(run)

    def wait(self) -> None:
        self._wg.wait()
        self._cancel()
        if self._err is not None:
            raise self._err
