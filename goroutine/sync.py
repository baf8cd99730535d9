"""goroutine.sync: Go's sync package.  Every primitive parks goroutines
(their OS thread runs other goroutines meanwhile) and also works from plain
threads, where a wait is interruptible by Ctrl-C."""
import _thread
import numbers as _numbers
from typing import Any as _Any, Callable as _Callable

from goroutine import _core, _async
from goroutine._check import check_callable as _check_callable
from goroutine._core import Cond, chan, default, go, goid, select

__all__ = ["Mutex", "RWMutex", "RLock", "WaitGroup", "Once", "Cond", "Sema",
           "WorkGroup"]


class WaitGroup(_core.WaitGroup):
    """Waits for a collection of goroutines to finish."""
    __slots__ = ()

    def go(self, f: _Callable[..., _Any], *args: _Any, **kw: _Any) -> None:
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
    """A reader/writer lock; a waiting writer blocks new readers.  `with
    rw:` takes it for writing (as pygolang's)."""
    __slots__ = ()

    def rlocker(self):
        """A locker (lock/unlock) that takes this mutex for reading."""
        return _RLocker(self)

    # pygolang's Go-cased names (it has no lowercase ones).
    Lock = _core.RWMutex.lock
    Unlock = _core.RWMutex.unlock
    RLock = _core.RWMutex.rlock
    RUnlock = _core.RWMutex.runlock
    UnlockToRLock = _core.RWMutex.unlock_to_rlock


class Sema(_core.Sema):
    """A weighted semaphore of size n (FIFO; a large request at the head
    blocks smaller ones behind it).  `with sema:` acquires and releases
    one unit, as pygolang's Sema."""
    __slots__ = ()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def _owner_key():
    """Who is running: the goroutine's id, or (outside goroutines) a key
    derived from the OS thread's ident that no goroutine id can equal."""
    g = goid()
    return g if g else -_thread.get_ident() - 1


class RLock:
    """A reentrant lock owned by a goroutine (by a thread, outside
    goroutines): threading.RLock's API, but waiting parks the goroutine and
    the owner stays the owner when it parks and resumes on another OS
    thread.  threading.RLock is owned by the OS thread, which a goroutine
    shares with others and may change at every park; use this one for a
    lock held across a channel operation, a sleep or another lock.  Also a
    Go Locker (lock/unlock) for sync.Cond, and usable as the lock of a
    threading.Condition."""
    __slots__ = ("_token", "_owner", "_count", "__weakref__")

    def __init__(self):
        self._token: chan[None] = chan(1)   # full while held
        self._owner = None          # written only by the holder
        self._count = 0

    def acquire(self, blocking=True, timeout=-1):
        # threading.RLock's checks and wording, before anything is taken.
        if timeout != -1:
            if isinstance(timeout, bool) or not isinstance(timeout, _numbers.Real):
                raise TypeError("timeout must be a real number, not %r"
                                % type(timeout).__name__)
            if timeout != timeout:
                raise ValueError("Invalid value NaN (not a number)")
        me = _owner_key()
        if self._owner == me:
            self._count += 1
            return True
        if not blocking:
            if timeout != -1:
                raise ValueError("can't specify a timeout for a non-blocking "
                                 "call")
            got = select((self._token.send, None), default)[0] == 0
        elif timeout == -1:
            self._token.send(None)
            got = True
        elif timeout < 0:
            raise ValueError("timeout value must be a non-negative number")
        else:
            from goroutine import time
            t = time.Timer(timeout)
            got = select((self._token.send, None), t.c.recv)[0] == 0
            t.stop()
        if got:
            self._owner = me
            self._count = 1
        return got

    def release(self):
        if self._owner != _owner_key() or self._count == 0:
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = None
            self._token.recv()

    __enter__ = acquire
    lock = acquire

    def unlock(self):
        self.release()

    def __exit__(self, *exc):
        self.release()

    def locked(self):
        return len(self._token) == 1

    def _is_owned(self):
        return self._count > 0 and self._owner == _owner_key()

    def _release_save(self):
        # threading.Condition.wait: give the lock up entirely.
        if not self._is_owned():
            raise RuntimeError("cannot release un-acquired lock")
        state = self._count
        self._count = 0
        self._owner = None
        self._token.recv()
        return state

    def _acquire_restore(self, state):
        self._token.send(None)
        self._owner = _owner_key()
        self._count = state

    def __repr__(self):
        return (f"<{'locked' if self.locked() else 'unlocked'} "
                f"goroutine.sync.RLock owner={self._owner!r} "
                f"count={self._count}>")


class Once:
    """do(f): f runs at most once; every caller returns after it has
    completed.  An exception in f counts as done and propagates to the
    caller that ran it only."""
    __slots__ = ("_done", "_m")

    def __init__(self):
        self._done = False
        self._m = Mutex()

    def do(self, f: _Callable[[], _Any]) -> None:
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
    for all and re-raises that first exception.

    `with WorkGroup(ctx) as wg:` calls wait() at the end of the block.  If
    the block itself raises, the group's ctx is cancelled first (the work
    is being abandoned; without it a goroutine waiting on ctx.done() would
    hang the block's exit), and an error from wait() is raised with the
    block's exception as its __context__."""

    def __init__(self, ctx):
        from goroutine import context
        self._ctx, self._cancel = context.with_cancel(ctx)
        self._wg = WaitGroup()
        self._m = Mutex()
        self._err = None

    def go(self, f: _Callable[..., _Any], *args: _Any, **kw: _Any) -> None:
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

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None:
            self._cancel()
        # Raised here, wait()'s error gets the block's exception as its
        # __context__ (the one being handled), as pygolang chains it.
        self.wait()
