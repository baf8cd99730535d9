"""The asyncio twins: channel, select and sync operations that suspend the
asyncio task instead of its thread.

How a blocking operation is bridged: first a non-blocking attempt (select
with default), which settles most operations without leaving the loop.
Otherwise a goroutine runs select(*cases, cancel.recv) and hands the
outcome to the loop with call_soon_threadsafe.

Cancellation.  asyncio's own primitives (Queue.get, Lock.acquire) take
their resource inside the task after it wakes, so a cancel can always
win.  A channel handoff cannot be taken back: an unbuffered sender has
returned the moment a receiver took its value.  So a cancel of the
awaiting task closes `cancel`, and the select's own claim decides, exactly
once:

  - the cancel case won: nothing was sent or received; the task sees
    CancelledError, as asyncio expects;
  - the operation had already completed: its result is returned to the
    awaiting code (a send returns normally, so the caller knows the value
    went out) and the cancellation is *deferred*, not repeated: it is
    delivered at the task's next suspension point by _defer_cancel, as if
    it had arrived a moment later.

Deferral keeps every asyncio construct right.  A task whose coroutine is
the operation itself (create_task(ch.recv_async()), and wait_for's inner
task on 3.10/3.11) finishes with the value and there is nothing left to
cancel.  asyncio.timeout (and wait_for on 3.12+) and TaskGroup withdraw
their own request with Task.uncancel() when their block ends; the deferred
delivery checks Task.cancelling() and drops the request once its owner has
withdrawn it, and when it does deliver it uses cancel() + uncancel(), so
the count of requests stays the one the owners made.  The old way (calling
task.cancel() again) lost the value in the first case and raised a
CancelledError nobody asked for in the second.
"""
import asyncio
from typing import Any, List, Tuple, cast

from goroutine._core import chan, default, go, select

__all__ = ["select_async"]


def _defer_cancel(task, exc):
    """The task's cancellation (exc) lost to a completed operation:
    deliver it, with its message, at the task's next suspension (the
    callback runs after the current step), unless the task has finished
    or, on 3.11+, the request's owner withdrew it (Task.uncancel) in the
    meantime."""
    if task is None:
        return
    msg = exc.args[0] if exc.args else None
    if hasattr(task, "cancelling"):
        pending = task.cancelling()

        def redeliver():
            if not task.done() and task.cancelling() >= pending:
                task.cancel(msg)    # throws at the await it sits in ...
                task.uncancel()     # ... without counting a new request
    else:
        def redeliver():
            if not task.done():
                task.cancel(msg)
    task.get_loop().call_soon(redeliver)


async def _bridge(cases):
    n = len(cases)
    i, v = select(*cases, default)
    if i != n:
        return i, v
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    cancel: chan[None] = chan()
    outcome: chan[Tuple[bool, Any]] = chan(1)

    def deliver(res):
        if not fut.done():
            fut.set_result(res)

    def run():
        try:
            res: Tuple[bool, Any] = (True, select(*cases, cancel.recv))
        except BaseException as e:      # a send on a closed channel
            res = (False, e)
        outcome.send(res)
        try:
            loop.call_soon_threadsafe(deliver, res)
        except RuntimeError:
            pass                        # the loop is closed: nobody waits
    go(run)
    try:
        ok, res = await fut
    except asyncio.CancelledError as exc:
        cancel.close()
        # imminent: the select has settled; outcome is never closed, so
        # recv() returns a value, not None
        ok, res = cast(Tuple[bool, Any], outcome.recv())
        if ok and res[0] == n:
            raise                       # cancelled first: nothing happened
        _defer_cancel(asyncio.current_task(), exc)
    if not ok:
        raise res
    return res


async def select_async(*cases):
    """await select_async(ch1.recv, (ch2.send, v), ...): select for asyncio
    code; with `default` it never suspends."""
    if any(c is default for c in cases):
        return select(*cases)
    return await _bridge(cases)


async def send_async(ch, obj):
    await _bridge(((ch.send, obj),))


async def recv_async(ch):
    return (await _bridge((ch.recv,)))[1]


async def recv_async_(ch):
    return (await _bridge((ch.recv_,)))[1]


class _AsyncIter:
    __slots__ = ("_ch",)

    def __init__(self, ch):
        self._ch = ch

    def __aiter__(self):
        return self

    async def __anext__(self):
        v, ok = await recv_async_(self._ch)
        if not ok:
            raise StopAsyncIteration
        return v


def aiter_(ch):
    return _AsyncIter(ch)


async def call(fn):
    """Run a blocking runtime call (WaitGroup.wait) in a goroutine and
    await it.  For calls without an effect to undo."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def deliver(exc):
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    def run():
        try:
            fn()
            exc = None
        except BaseException as e:
            exc = e
        try:
            loop.call_soon_threadsafe(deliver, exc)
        except RuntimeError:
            pass
    go(run)
    await fut


async def acquire(lock, unlock):
    """Run lock() in a goroutine and await it; if the awaiting task is
    cancelled meanwhile, the acquisition is undone by unlock() once it
    happens, so a cancelled lock_async leaves the lock as it found it."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    state: chan[None] = chan(1)   # a token: whoever holds it decides
    state.send(None)
    cancelled: List[bool] = []
    handed: List[bool] = []

    def deliver():
        if not fut.done():
            fut.set_result(None)

    def run():
        lock()
        state.recv()
        if cancelled:
            unlock()            # the task went away before we got it
        else:
            handed.append(True)
            try:
                loop.call_soon_threadsafe(deliver)
            except RuntimeError:
                pass
        state.send(None)
    go(run)
    try:
        await fut
    except asyncio.CancelledError:
        state.recv()
        if handed:
            unlock()            # acquired for us, but we are going away
        cancelled.append(True)
        state.send(None)
        raise
