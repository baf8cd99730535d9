"""Bad input gets a clear exception at the call that is wrong, and leaves
the runtime usable.

ROWS is the whole public API as a table: (name, call, exception, message).
Each call passes one bad argument (wrong type, out of range, NaN, None, an
object whose __index__/__float__ raises, a missing or extra argument) and
must raise that exception with a message matching the regex: Go's wording
where Go has one, Python's where Python has one.  test_every_public_callable
_has_rows fails when a public function or method has no row, so a new one
is noticed."""
import asyncio
import subprocess
import sys
import threading
import time as _time
import types

import pytest
from conftest import wait_until

import goroutine
from goroutine import (ExceptHookArgs, Map, Panic, chan, context,
                       default, defer, errgroup, errors, func, go, nilchan,
                       panic, recover, runtime, select, select_async, sync,
                       time)

nan = float("nan")
inf = float("inf")
bg = context.background()


class BadIndex:
    """An int-like whose __index__ raises."""

    def __index__(self):
        raise ZeroDivisionError("from __index__")


class BadFloat:
    """A number-like whose __float__ raises."""

    def __float__(self):
        raise ZeroDivisionError("from __float__")


class BadEq:
    """A value whose == raises."""

    def __eq__(self, other):
        raise ZeroDivisionError("from __eq__")

    __hash__ = object.__hash__


class BadBool:
    """A flag whose truth value raises."""

    def __bool__(self):
        raise ZeroDivisionError("from __bool__")


class Row:
    def __init__(self, name, call, exc, msg):
        self.name, self.call, self.exc, self.msg = name, call, exc, msg


def on(cls, method, *args):
    """cls(inf).method(*args), stopping the timer whatever happens: a
    failed stop() or reset() leaves it active, and an active timer
    lives (and counts as pending) until it fires."""
    t = cls(inf)
    try:
        return getattr(t, method)(*args)
    finally:
        t.stop()


def run_async(coro_fn):
    """A thunk that runs an async call to completion in a new loop."""
    return lambda: asyncio.run(coro_fn())


async def _coro():
    pass


NOARGS = r"takes (no arguments|\d+ positional arguments? but \d+ (was|were) given|0 positional arguments)"
ONEARG = r"(takes exactly one argument|missing 1 required positional argument|expected 1)"
NOT_INT = r"'%s' object cannot be interpreted as an integer"
DUR = r"^duration must be a number of seconds, not '%s'$"
NAN = r"^Invalid value NaN \(not a number\)$"
NOT_CALLABLE = r"^%s\(\) argument must be callable, not '%s'$"
CORO = r"takes a plain function, not a coroutine function"
PARENT = r"^context parent must be a Context, not '%s'$"
NIL_PARENT = r"^cannot create context from nil parent$"

R = Row
ROWS = [
    # ---- goroutines
    R("go", lambda: go(1), TypeError, NOT_CALLABLE % ("go", "int")),
    R("go", lambda: go(), TypeError, "^go\\(\\) missing the function to run$"),
    R("go", lambda: go(_coro), TypeError, CORO),
    R("excepthook", lambda: goroutine.excepthook(1), TypeError,
      "^excepthook argument type must be ExceptHookArgs, not 'int'$"),
    R("ExceptHookArgs", lambda: ExceptHookArgs(1), TypeError, "missing 3"),
    # ---- channels
    R("chan", lambda: chan(-1), ValueError, "^makechan: size out of range$"),
    R("chan", lambda: chan(2 ** 70), ValueError, "^makechan: size out of range$"),
    R("chan", lambda: chan(-2 ** 70), ValueError, "^makechan: size out of range$"),
    R("chan", lambda: chan(2 ** 46), ValueError, "^makechan: size out of range$"),
    R("chan", lambda: chan(None), TypeError, NOT_INT % "NoneType"),
    R("chan", lambda: chan("4"), TypeError, NOT_INT % "str"),
    R("chan", lambda: chan(1.5), TypeError, NOT_INT % "float"),
    R("chan", lambda: chan(nan), TypeError, NOT_INT % "float"),
    R("chan", lambda: chan(BadIndex()), ZeroDivisionError, "from __index__"),
    R("chan", lambda: chan(1, 2, 3), TypeError, "at most 2 arguments"),
    R("chan.send", lambda: chan(1).send(), TypeError, ONEARG),
    R("chan.send", lambda: chan(1).recv_only().send(1), TypeError,
      r"^invalid operation: ch.send \(send to receive-only channel\)$"),
    R("chan.send", lambda: (lambda c: (c.close(), c.send(1)))(chan(1)), Panic,
      "^send on closed channel$"),
    R("chan.recv", lambda: chan(1).recv(1), TypeError, NOARGS),
    R("chan.recv", lambda: chan(1).send_only().recv(), TypeError,
      r"receive from send-only channel"),
    R("chan.recv_", lambda: chan(1).recv_(1), TypeError, NOARGS),
    R("chan.recv_", lambda: chan(1).send_only().recv_(), TypeError,
      r"receive from send-only channel"),
    R("chan.close", lambda: nilchan.close(), Panic, "^close of nil channel$"),
    R("chan.close", lambda: (lambda c: (c.close(), c.close()))(chan()), Panic,
      "^close of closed channel$"),
    R("chan.close", lambda: chan().recv_only().close(), TypeError,
      "close of receive-only channel"),
    R("chan.cap", lambda: chan().cap(1), TypeError, NOARGS),
    R("chan.send_only", lambda: chan().send_only(1), TypeError, NOARGS),
    R("chan.send_only", lambda: chan().recv_only().send_only(), TypeError,
      "cannot widen"),
    R("chan.recv_only", lambda: chan().recv_only(1), TypeError, NOARGS),
    R("chan.recv_only", lambda: chan().send_only().recv_only(), TypeError,
      "cannot widen"),
    R("chan.send_async", run_async(lambda: chan(1).send_async()), TypeError,
      ONEARG),
    R("chan.send_async", run_async(lambda: chan(1).recv_only().send_async(1)),
      TypeError, "send to receive-only channel"),
    R("chan.recv_async", run_async(lambda: chan(1).recv_async(1)), TypeError,
      NOARGS),
    R("chan.recv_async_", run_async(lambda: chan(1).recv_async_(1)), TypeError,
      NOARGS),
    R("chan.recv_async_", run_async(lambda: chan(1).send_only().recv_async_()),
      TypeError, "receive from send-only channel"),
    R("chan", lambda: chan(1, dtype="int"), TypeError,
      r"^chan: invalid dtype: 'int' \(want 'object', 'C.structZ', 'C.bool', "
      r"'C.int' or 'C.double'\)$"),
    R("chan", lambda: chan(dtype=int), TypeError, "^chan: invalid dtype: <class 'int'>"),
    R("chan.send", lambda: chan(1, dtype="C.int").send("1"), TypeError,
      r"^cannot use '1' \(type str\) as C.int value in send$"),
    R("chan.send", lambda: chan(1, dtype="C.int").send(2 ** 40), OverflowError,
      r"^cannot use 1099511627776 as C.int value in send \(overflows\)$"),
    R("chan.send", lambda: chan(1, dtype="C.double").send(None), TypeError,
      r"^cannot use None \(type NoneType\) as C.double value in send$"),
    R("chan.nil", lambda: chan.nil("x"), TypeError, "^chan: invalid dtype: 'x'"),
    R("chan.nil", lambda: chan.nil(), TypeError, ONEARG),
    # ---- select
    R("select", lambda: select(None), TypeError,
      r"^select: case 0 must be ch.recv, ch.recv_, \(ch.send, value\) or default, not None$"),
    R("select", lambda: select(default, 1), TypeError, "^select: case 1 must be"),
    R("select", lambda: select((chan().send,)), TypeError, "^select: case 0 must be"),
    R("select", lambda: select((chan().send, 1, 2)), TypeError, "^select: case 0 must be"),
    R("select", lambda: select(chan().recv, 1.5), TypeError, "^select: case 1 must be"),
    R("select", lambda: select(default, default), TypeError,
      "^select: multiple default cases$"),
    R("select", lambda: select(chan(1).send_only().recv_, default), TypeError,
      "receive from send-only channel"),
    R("select_async", run_async(lambda: select_async(1)), TypeError,
      "^select: case 0 must be"),
    # ---- defer / panic / recover
    R("func", lambda: func(1), TypeError, "^@func expects a function or a class, not 'int'$"),
    R("defer", lambda: defer(1), TypeError, "^defer: 'int' object is not callable$"),
    R("defer", lambda: defer(print), Panic, "uses defer, but not @func"),
    R("panic", lambda: panic(), TypeError, "missing 1 required positional argument"),
    R("panic", lambda: panic(None), Panic, "^None$"),
    R("recover", lambda: recover(1), TypeError, NOARGS),
    # ---- time
    R("time.now", lambda: time.now(1), TypeError, NOARGS),
    R("time.sleep", lambda: time.sleep(nan), ValueError, NAN),
    R("time.sleep", lambda: time.sleep(None), TypeError, DUR % "NoneType"),
    R("time.sleep", lambda: time.sleep("1"), TypeError, DUR % "str"),
    R("time.sleep", lambda: time.sleep(BadFloat()), ZeroDivisionError, "from __float__"),
    R("time.sleep", lambda: time.sleep(BadIndex()), ZeroDivisionError, "from __index__"),
    R("time.sleep", lambda: time.sleep(10 ** 400), OverflowError, "too large"),
    R("time.after", lambda: time.after(nan), ValueError, NAN),
    R("time.after", lambda: time.after(object()), TypeError, DUR % "object"),
    R("time.tick", lambda: time.tick(nan), ValueError, NAN),
    R("time.tick", lambda: time.tick([]), TypeError, DUR % "list"),
    R("time.after_func", lambda: time.after_func(nan, print), ValueError, NAN),
    R("time.after_func", lambda: time.after_func(1, 1), TypeError,
      NOT_CALLABLE % ("after_func", "int")),
    R("time.after_func", lambda: time.after_func(1, _coro), TypeError, CORO),
    R("time.Timer", lambda: time.Timer(nan), ValueError, NAN),
    R("time.Timer", lambda: time.Timer(None), TypeError, DUR % "NoneType"),
    R("time.Timer", lambda: time.Timer(BadFloat()), ZeroDivisionError, "from __float__"),
    R("time.Timer", lambda: time.Timer(1, 2), TypeError,
      NOT_CALLABLE % ("after_func", "int")),
    R("time.Timer", lambda: time.Timer(1, f=2), TypeError,
      NOT_CALLABLE % ("after_func", "int")),
    R("time.Timer", lambda: time.Timer(1, dt=1), TypeError,
      r"^Timer\(\) got both 'd' and pygolang's 'dt' for the duration$"),
    R("time.Timer", lambda: time.Timer(), TypeError,
      r"^Timer\(\) missing the duration argument 'd'$"),
    R("time.Timer", lambda: time.Timer(dt="1"), TypeError, DUR % "str"),
    R("time.Ticker", lambda: time.Ticker(dt=1, d=1), TypeError,
      r"^Ticker\(\) got both 'd' and pygolang's 'dt' for the duration$"),
    R("time.Ticker", lambda: time.Ticker(dt=-1), ValueError,
      "^non-positive interval for NewTicker$"),
    R("time.Timer.stop", lambda: on(time.Timer, "stop", 1), TypeError, NOARGS),
    R("time.Timer.reset", lambda: on(time.Timer, "reset", nan), ValueError, NAN),
    R("time.Timer.reset", lambda: on(time.Timer, "reset", "1"), TypeError, DUR % "str"),
    R("time.Ticker", lambda: time.Ticker(0), ValueError,
      "^non-positive interval for NewTicker$"),
    R("time.Ticker", lambda: time.Ticker(-inf), ValueError,
      "^non-positive interval for NewTicker$"),
    R("time.Ticker", lambda: time.Ticker(nan), ValueError, NAN),
    R("time.Ticker", lambda: time.Ticker("1"), TypeError, DUR % "str"),
    R("time.Ticker.stop", lambda: on(time.Ticker, "stop", 1), TypeError, NOARGS),
    R("time.Ticker.reset", lambda: on(time.Ticker, "reset", 0), ValueError,
      "^non-positive interval for Ticker.Reset$"),
    R("time.Ticker.reset", lambda: on(time.Ticker, "reset", nan), ValueError, NAN),
    R("time.Ticker.reset", lambda: on(time.Ticker, "reset", None), TypeError,
      DUR % "NoneType"),
    # ---- context
    R("context.background", lambda: context.background(1), TypeError, NOARGS),
    R("context.todo", lambda: context.todo(1), TypeError, NOARGS),
    R("context.with_cancel", lambda: context.with_cancel(None), TypeError, NIL_PARENT),
    R("context.with_cancel", lambda: context.with_cancel(1), TypeError, PARENT % "int"),
    R("context.with_cancel_cause", lambda: context.with_cancel_cause(None),
      TypeError, NIL_PARENT),
    R("context.with_timeout", lambda: context.with_timeout(bg, nan), ValueError, NAN),
    R("context.with_timeout", lambda: context.with_timeout(bg, None), TypeError,
      "^timeout must be a number of seconds, not 'NoneType'$"),
    R("context.with_timeout", lambda: context.with_timeout(None, 1), TypeError,
      NIL_PARENT),
    R("context.with_deadline", lambda: context.with_deadline(bg, None), TypeError,
      "^deadline must be a number of seconds, not 'NoneType'$"),
    R("context.with_deadline", lambda: context.with_deadline(bg, nan), ValueError, NAN),
    R("context.with_deadline", lambda: context.with_deadline(bg, BadFloat()),
      ZeroDivisionError, "from __float__"),
    R("context.with_deadline", lambda: context.with_deadline("bg", 1), TypeError,
      PARENT % "str"),
    R("context.with_value", lambda: context.with_value(bg, None, 1), TypeError, "^nil key$"),
    R("context.with_value", lambda: context.with_value(bg, [], 1), TypeError,
      "^key is not comparable"),
    R("context.with_value", lambda: context.with_value(None, 1, 1), TypeError, NIL_PARENT),
    R("context.cause", lambda: context.cause(1), TypeError,
      "^cause\\(\\) argument must be a Context, not 'int'$"),
    R("context.cause", lambda: context.cause(None), TypeError,
      "^cause\\(\\) argument must be a Context, not 'NoneType'$"),
    R("context.after_func", lambda: context.after_func(bg, None), TypeError,
      NOT_CALLABLE % ("after_func", "NoneType")),
    R("context.after_func", lambda: context.after_func(None, print), TypeError, NIL_PARENT),
    R("context.without_cancel", lambda: context.without_cancel(None), TypeError, NIL_PARENT),
    R("context.merge", lambda: context.merge(bg, 1), TypeError, PARENT % "int"),
    R("context.Context", lambda: context.Context(1), TypeError, "takes no arguments"),
    R("context.Context.done", lambda: context.with_cancel(bg)[0].done(1), TypeError, NOARGS),
    R("context.Context.err", lambda: context.with_cancel(bg)[0].err(1), TypeError, NOARGS),
    R("context.Context.value", lambda: context.with_cancel(bg)[0].value(), TypeError,
      r"value\(\) takes exactly one argument \(0 given\)"),
    R("context.Context.deadline", lambda: bg.deadline(1), TypeError, NOARGS),
    # ---- sync
    R("sync.Mutex", lambda: sync.Mutex(1), TypeError, "^Mutex\\(\\) takes no arguments$"),
    R("sync.Mutex.lock", lambda: sync.Mutex().lock(1), TypeError, NOARGS),
    R("sync.Mutex.unlock", lambda: sync.Mutex().unlock(), Panic,
      "^sync: unlock of unlocked mutex$"),
    R("sync.Mutex.try_lock", lambda: sync.Mutex().try_lock(1), TypeError, NOARGS),
    R("sync.Mutex.locked", lambda: sync.Mutex().locked(1), TypeError, NOARGS),
    R("sync.Mutex.lock_async", run_async(lambda: sync.Mutex().lock_async(1)),
      TypeError, NOARGS),
    R("sync.RLock", lambda: sync.RLock(1), TypeError, "takes 1 positional argument but 2 were given"),
    R("sync.RLock.acquire", lambda: sync.RLock().acquire(True, "x"), TypeError,
      "^timeout must be a real number, not 'str'$"),
    R("sync.RLock.acquire", lambda: sync.RLock().acquire(True, float("nan")), ValueError,
      "^Invalid value NaN \\(not a number\\)$"),
    R("sync.RLock.acquire", lambda: sync.RLock().acquire(True, -2), ValueError,
      "^timeout value must be a non-negative number$"),
    R("sync.RLock.acquire", lambda: sync.RLock().acquire(False, 1), ValueError,
      "^can't specify a timeout for a non-blocking call$"),
    R("sync.RLock.lock", lambda: sync.RLock().lock(True, "x"), TypeError,
      "^timeout must be a real number, not 'str'$"),
    R("sync.RLock.release", lambda: sync.RLock().release(), RuntimeError,
      "^cannot release un-acquired lock$"),
    R("sync.RLock.unlock", lambda: sync.RLock().unlock(), RuntimeError,
      "^cannot release un-acquired lock$"),
    R("sync.RLock.locked", lambda: sync.RLock().locked(1), TypeError, NOARGS),
    R("sync.RWMutex", lambda: sync.RWMutex(1), TypeError, "^RWMutex\\(\\) takes no arguments$"),
    R("sync.RWMutex.lock", lambda: sync.RWMutex().lock(1), TypeError, NOARGS),
    R("sync.RWMutex.unlock", lambda: sync.RWMutex().unlock(), Panic,
      "^sync: Unlock of unlocked RWMutex$"),
    R("sync.RWMutex.rlock", lambda: sync.RWMutex().rlock(1), TypeError, NOARGS),
    R("sync.RWMutex.runlock", lambda: sync.RWMutex().runlock(), Panic,
      "^sync: RUnlock of unlocked RWMutex$"),
    R("sync.RWMutex.try_lock", lambda: sync.RWMutex().try_lock(1), TypeError, NOARGS),
    R("sync.RWMutex.try_rlock", lambda: sync.RWMutex().try_rlock(1), TypeError, NOARGS),
    R("sync.RWMutex.rlocker", lambda: sync.RWMutex().rlocker(1), TypeError, NOARGS),
    R("sync.RWMutex.rlocker", lambda: sync.RWMutex().rlocker().unlock(), Panic,
      "^sync: RUnlock of unlocked RWMutex$"),
    R("sync.RWMutex.unlock_to_rlock", lambda: sync.RWMutex().unlock_to_rlock(), Panic,
      "^sync: UnlockToRLock of unlocked RWMutex$"),
    R("sync.RWMutex.unlock_to_rlock", lambda: sync.RWMutex().unlock_to_rlock(1),
      TypeError, NOARGS),
    R("sync.RWMutex.UnlockToRLock", lambda: sync.RWMutex().UnlockToRLock(), Panic,
      "^sync: UnlockToRLock of unlocked RWMutex$"),
    R("sync.RWMutex.Lock", lambda: sync.RWMutex().Lock(1), TypeError, NOARGS),
    R("sync.RWMutex.Unlock", lambda: sync.RWMutex().Unlock(), Panic,
      "^sync: Unlock of unlocked RWMutex$"),
    R("sync.RWMutex.RLock", lambda: sync.RWMutex().RLock(1), TypeError, NOARGS),
    R("sync.RWMutex.RUnlock", lambda: sync.RWMutex().RUnlock(), Panic,
      "^sync: RUnlock of unlocked RWMutex$"),
    R("sync.WaitGroup", lambda: sync.WaitGroup(1), TypeError,
      "^WaitGroup\\(\\) takes no arguments$"),
    R("sync.WaitGroup.add", lambda: sync.WaitGroup().add(-1), Panic,
      "^sync: negative WaitGroup counter$"),
    R("sync.WaitGroup.add", lambda: sync.WaitGroup().add(-2 ** 70), Panic,
      "^sync: negative WaitGroup counter$"),
    R("sync.WaitGroup.add", lambda: sync.WaitGroup().add(2 ** 70), OverflowError,
      "^sync: WaitGroup counter overflow$"),
    R("sync.WaitGroup.add", lambda: (lambda wg: (wg.add(2 ** 62), wg.add(2 ** 62)))(
        sync.WaitGroup()), OverflowError, "^sync: WaitGroup counter overflow$"),
    R("sync.WaitGroup.add", lambda: sync.WaitGroup().add("x"), TypeError, NOT_INT % "str"),
    R("sync.WaitGroup.add", lambda: sync.WaitGroup().add(1.0), TypeError, NOT_INT % "float"),
    R("sync.WaitGroup.add", lambda: sync.WaitGroup().add(BadIndex()),
      ZeroDivisionError, "from __index__"),
    R("sync.WaitGroup.done", lambda: sync.WaitGroup().done(), Panic,
      "^sync: negative WaitGroup counter$"),
    R("sync.WaitGroup.wait", lambda: sync.WaitGroup().wait(1), TypeError, NOARGS),
    R("sync.WaitGroup.go", lambda: sync.WaitGroup().go(1), TypeError,
      NOT_CALLABLE % ("WaitGroup.go", "int")),
    R("sync.WaitGroup.go", lambda: sync.WaitGroup().go(_coro), TypeError, CORO),
    R("sync.WaitGroup.wait_async", run_async(lambda: sync.WaitGroup().wait_async(1)),
      TypeError, NOARGS),
    R("sync.Once", lambda: sync.Once(1), TypeError, NOARGS),
    R("sync.Once.do", lambda: sync.Once().do(None), TypeError,
      NOT_CALLABLE % ("Once.do", "NoneType")),
    R("sync.Cond", lambda: sync.Cond(1), TypeError,
      r"^Cond: locker must have lock\(\) and unlock\(\) \(or acquire\(\) and "
      r"release\(\)\), not 'int'$"),
    R("sync.Cond", lambda: sync.Cond(None), TypeError, "^Cond: locker must have"),
    R("sync.Cond", lambda: sync.Cond(types.SimpleNamespace(lock=print)), TypeError,
      "^Cond: locker must have .*not 'types.SimpleNamespace'$"),
    R("sync.Cond", lambda: sync.Cond(), TypeError, "takes exactly 1 argument"),
    R("sync.Cond.wait", lambda: sync.Cond(sync.Mutex()).wait(1), TypeError, NOARGS),
    R("sync.Cond.wait", lambda: sync.Cond(sync.Mutex()).wait(), Panic,
      "^sync: unlock of unlocked mutex$"),
    R("sync.Cond.wait", lambda: sync.Cond(threading.Lock()).wait(), RuntimeError,
      "^release unlocked lock$"),
    R("sync.Cond.signal", lambda: sync.Cond(sync.Mutex()).signal(1), TypeError, NOARGS),
    R("sync.Cond.broadcast", lambda: sync.Cond(sync.Mutex()).broadcast(1), TypeError, NOARGS),
    R("sync.Sema", lambda: sync.Sema(-1), ValueError, "^semaphore: negative size$"),
    R("sync.Sema", lambda: sync.Sema("x"), TypeError, NOT_INT % "str"),
    R("sync.Sema", lambda: sync.Sema(nan), TypeError, NOT_INT % "float"),
    R("sync.Sema", lambda: sync.Sema(2 ** 63), OverflowError,
      "^semaphore: size too large$"),
    R("sync.Sema", lambda: sync.Sema(-2 ** 70), ValueError, "^semaphore: negative size$"),
    R("sync.Sema", lambda: sync.Sema(n="x"), TypeError, NOT_INT % "str"),
    R("sync.Sema.acquire", lambda: sync.Sema(1).acquire(-1), ValueError,
      "^semaphore: negative weight$"),
    R("sync.Sema.acquire", lambda: sync.Sema(1).acquire(2), ValueError,
      r"^semaphore: acquire\(2\) exceeds its size 1$"),
    R("sync.Sema.acquire", lambda: sync.Sema(1).acquire(1.0), TypeError, NOT_INT % "float"),
    R("sync.Sema.acquire", lambda: sync.Sema(1).acquire(1, 2), TypeError,
      r"^expected at most 1 argument \(the weight\), got 2$"),
    R("sync.Sema.try_acquire", lambda: sync.Sema(1).try_acquire(BadIndex()),
      ZeroDivisionError, "from __index__"),
    R("sync.Sema.release", lambda: sync.Sema(1).release(), Panic,
      "^semaphore: released more than held$"),
    R("sync.Sema.release", lambda: sync.Sema(1).release(None), TypeError, NOT_INT % "NoneType"),
    R("sync.Sema.release", lambda: sync.Sema(1).release(2 ** 64), OverflowError,
      "^semaphore: weight too large$"),
    R("sync.Sema.try_acquire", lambda: sync.Sema(1).try_acquire(-2 ** 64), ValueError,
      "^semaphore: negative weight$"),
    R("sync.WorkGroup", lambda: sync.WorkGroup(None), TypeError, NIL_PARENT),
    R("sync.WorkGroup", lambda: sync.WorkGroup(1), TypeError, PARENT % "int"),
    R("sync.WorkGroup.go", lambda: sync.WorkGroup(bg).go(1), TypeError,
      NOT_CALLABLE % ("WorkGroup.go", "int")),
    R("sync.WorkGroup.wait", lambda: sync.WorkGroup(bg).wait(1), TypeError, NOARGS),
    # ---- errgroup
    R("errgroup.Group", lambda: errgroup.Group(1), TypeError, NOARGS),
    R("errgroup.Group.go", lambda: errgroup.Group().go(None), TypeError,
      NOT_CALLABLE % ("Group.go", "NoneType")),
    R("errgroup.Group.go", lambda: errgroup.Group().go(_coro), TypeError, CORO),
    R("errgroup.Group.try_go", lambda: errgroup.Group().try_go(1), TypeError,
      NOT_CALLABLE % ("Group.try_go", "int")),
    R("errgroup.Group.set_limit", lambda: errgroup.Group().set_limit("x"), TypeError,
      NOT_INT % "str"),
    R("errgroup.Group.set_limit", lambda: errgroup.Group().set_limit(1.5), TypeError,
      NOT_INT % "float"),
    R("errgroup.Group.set_limit", lambda: errgroup.Group().set_limit(2 ** 70),
      OverflowError, "^semaphore: size too large$"),
    R("errgroup.Group.wait", lambda: errgroup.Group().wait(1), TypeError, NOARGS),
    R("errgroup.with_context", lambda: errgroup.with_context(None), TypeError, NIL_PARENT),
    # ---- runtime
    R("runtime.gomaxprocs", lambda: runtime.gomaxprocs("2"), TypeError, NOT_INT % "str"),
    R("runtime.gomaxprocs", lambda: runtime.gomaxprocs(1.0), TypeError, NOT_INT % "float"),
    R("runtime.gomaxprocs", lambda: runtime.gomaxprocs(1, 2), TypeError,
      r"^gomaxprocs\(n=0\) takes one argument$"),
    R("runtime.gomaxprocs", lambda: runtime.gomaxprocs(BadIndex()),
      ZeroDivisionError, "from __index__"),
    R("runtime.num_goroutine", lambda: runtime.num_goroutine(1), TypeError, NOARGS),
    R("runtime.num_cpu", lambda: runtime.num_cpu(1), TypeError, NOARGS),
    R("runtime.gosched", lambda: runtime.gosched(1), TypeError, NOARGS),
    R("runtime.goexit", lambda: runtime.goexit(), RuntimeError,
      r"^runtime.goexit\(\) called outside a goroutine$"),
    R("runtime.goid", lambda: runtime.goid(1), TypeError, NOARGS),
    R("runtime.lock_os_thread", lambda: runtime.lock_os_thread(1), TypeError, NOARGS),
    R("runtime.unlock_os_thread", lambda: runtime.unlock_os_thread(1), TypeError, NOARGS),
    R("runtime.stack", lambda: runtime.stack(1), TypeError, NOARGS),
    R("runtime.stats", lambda: runtime.stats(1), TypeError, NOARGS),
    R("runtime.set_panic_exit", lambda: runtime.set_panic_exit(), TypeError,
      "missing 1 required positional argument: 'flag'"),
    R("runtime.set_panic_exit", lambda: runtime.set_panic_exit(BadBool()),
      ZeroDivisionError, "from __bool__"),
    # ---- Map
    R("Map", lambda: Map(1), TypeError, "^'int' object is not iterable$"),
    R("Map", lambda: Map([(1,)]), ValueError,
      "^dictionary update sequence element #0 has length 1; 2 is required$"),
    R("Map", lambda: Map([([], 1)]), TypeError,
      "^unsupported map key type: 'list'$"),
    R("Map", lambda: Map({}, {}), TypeError, "expected at most 1 argument"),
    R("Map.__getitem__", lambda: Map()[1], KeyError, "1"),
    R("Map.__setitem__", lambda: Map().__setitem__(object(), 1), TypeError,
      "^unsupported map key type: 'object'$"),
    R("Map.__setitem__", lambda: Map().__setitem__((1, []), 1), TypeError,
      "^unsupported map key type: 'list'$"),
    R("Map.__delitem__", lambda: Map().__delitem__("k"), KeyError, "k"),
    R("Map.get", lambda: Map().get(), TypeError, "^get expected 1 or 2 arguments$"),
    R("Map.get", lambda: Map().get(BadIndex()), TypeError,
      "^unsupported map key type: 'BadIndex'$"),
    R("Map.pop", lambda: Map().pop("k"), KeyError, "k"),
    R("Map.pop", lambda: Map().pop(), TypeError, "^pop expected 1 or 2 arguments$"),
    R("Map.setdefault", lambda: Map().setdefault([]), TypeError,
      "^unsupported map key type: 'list'$"),
    R("Map.update", lambda: Map().update(1), TypeError, "^'int' object is not iterable$"),
    R("Map.update", lambda: Map().update([1]), TypeError,
      "cannot convert dictionary update sequence element #0 to a sequence"),
    R("Map.clear", lambda: Map().clear(1), TypeError, NOARGS),
    R("Map.copy", lambda: Map().copy(1), TypeError, NOARGS),
    R("Map.keys", lambda: Map().keys(1), TypeError, NOARGS),
    R("Map.values", lambda: Map().values(1), TypeError, NOARGS),
    R("Map.items", lambda: Map().items(1), TypeError, NOARGS),
    R("Map.stats", lambda: Map().stats(1), TypeError, NOARGS),
    R("Map.load", lambda: Map().load(), TypeError, ONEARG),
    R("Map.load", lambda: Map().load({}), TypeError, "^unsupported map key type: 'dict'$"),
    R("Map.store", lambda: Map().store(1), TypeError, "^store expected 2 arguments$"),
    R("Map.load_or_store", lambda: Map().load_or_store([], 1), TypeError,
      "^unsupported map key type: 'list'$"),
    R("Map.load_and_delete", lambda: Map().load_and_delete(set()), TypeError,
      "^unsupported map key type: 'set'$"),
    R("Map.swap", lambda: Map().swap([], 1), TypeError, "^unsupported map key type: 'list'$"),
    R("Map.compare_and_swap", lambda: Map({1: BadEq()}).compare_and_swap(1, 0, 2),
      ZeroDivisionError, "from __eq__"),
    R("Map.compare_and_swap", lambda: Map().compare_and_swap(1, 2), TypeError, "3 arguments"),
    R("Map.compare_and_delete", lambda: Map({1: BadEq()}).compare_and_delete(1, 0),
      ZeroDivisionError, "from __eq__"),
    R("Map.incr", lambda: Map().incr("k", "x"), TypeError,
      r"^unsupported operand type\(s\) for \+: 'int' and 'str'$"),
    R("Map.incr", lambda: Map({"k": "a"}).incr("k"), TypeError,
      r'can only concatenate str \(not "int"\) to str'),
    R("Map.incr", lambda: Map().incr([], 1), TypeError, "^unsupported map key type: 'list'$"),
    R("Map.incr", lambda: Map().incr(), TypeError, "^incr expected 1 or 2 arguments$"),
    R("Map.__eq__", lambda: Map({1: BadEq()}) == {1: 2}, ZeroDivisionError, "from __eq__"),
    R("Map.__hash__", lambda: hash(Map()), TypeError, "unhashable type"),    # ---- errors
    R("errors.New", lambda: errors.New(1), TypeError,
      "^errors.New: text must be str, not 'int'$"),
    R("errors.new", lambda: errors.new(b"x"), TypeError,
      "^errors.New: text must be str, not 'bytes'$"),
    R("errors.Is", lambda: errors.Is("x", None), TypeError,
      "^errors.Is: err must be an exception or None, not 'str'$"),
    R("errors.is_", lambda: errors.is_(None, 1), TypeError,
      "^errors.Is: target must be an exception or None, not 'int'$"),
    R("errors.Unwrap", lambda: errors.Unwrap(1), TypeError,
      "^errors.Unwrap: err must be an exception or None, not 'int'$"),
    R("errors.unwrap", lambda: errors.unwrap(), TypeError, "missing 1 required"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_bad_input_raises_at_the_call(row):
    with pytest.raises(row.exc, match=row.msg):
        row.call()


def public_callables():
    """Every public function, class and method: the names in each
    module's __all__, and the methods the package defines on its classes
    (not the ones inherited from object, tuple or Exception).  Exception
    classes take anything, as Exception does."""
    out = set()
    for prefix, mod in [("", goroutine), ("time.", time),
                        ("context.", context), ("sync.", sync),
                        ("errgroup.", errgroup), ("runtime.", runtime),
                        ("errors.", errors)]:
        for n in mod.__all__:
            obj = getattr(mod, n)
            if isinstance(obj, types.ModuleType) or not callable(obj):
                continue
            if isinstance(obj, type) and issubclass(obj, BaseException):
                continue
            out.add(prefix + n)
            if isinstance(obj, type):
                for a in dir(obj):
                    if a.startswith("_"):
                        continue
                    owner = next(c for c in obj.__mro__ if a in c.__dict__)
                    if (owner.__module__ or "").startswith("goroutine") \
                            and callable(getattr(obj, a)):
                        out.add(prefix + n + "." + a)
    return out


def test_every_public_callable_has_rows():
    api = public_callables()
    assert len(api) > 100       # the enumeration itself works
    missing = sorted(api - {r.name for r in ROWS})
    assert not missing, "public callables without a bad-input row: %s" % missing


def test_a_failed_call_leaves_the_runtime_usable():
    # Each row again, then the basics: nothing half-done got in the way,
    # and no timer was left pending.
    timers = runtime.stats()["timers"]
    for row in ROWS:
        with pytest.raises(row.exc):
            row.call()
    # Timer stops are processed asynchronously.
    assert wait_until(lambda: runtime.stats()["timers"] == timers), \
        runtime.stats()["timers"] - timers
    out = chan(1)
    go(out.send, 1)
    assert out.recv() == 1
    assert select(default) == (0, None)
    wg = sync.WaitGroup()
    wg.go(out.send, 2)
    wg.wait()
    assert out.recv() == 2


# ---- behaviour around the checks: nothing lost, nothing left behind ----

def test_nan_durations_leave_no_timer():
    before = runtime.stats()["timers"]
    for call in (lambda: time.Timer(nan), lambda: time.after(nan),
                 lambda: time.after_func(nan, print), lambda: time.tick(nan),
                 lambda: context.with_timeout(bg, nan),
                 lambda: context.with_deadline(bg, nan)):
        with pytest.raises(ValueError, match=NAN):
            call()
    assert runtime.stats()["timers"] == before


def test_infinite_and_negative_durations_are_go_durations():
    # +inf is "never" (as 1e300 is), -inf and negatives are "now", as a
    # negative duration is in Go.
    t = time.Timer(inf)
    assert select(t.c.recv, default)[0] == 1
    assert t.stop() is True
    assert time.after(-inf).recv() is not None
    time.sleep(-inf)
    time.sleep(-1)
    assert time.tick(-inf) is nilchan
    ctx, cancel = context.with_timeout(bg, -inf)
    assert ctx.err() is context.deadlineExceeded
    ctx, cancel = context.with_deadline(bg, inf)
    assert ctx.deadline() == inf and ctx.err() is None
    cancel()
    ctx, cancel = context.with_timeout(bg, 1e300)
    cancel()


def test_number_likes_are_durations():
    from decimal import Decimal
    from fractions import Fraction

    class Sec:
        def __float__(self):
            return 0.001
    for d in (True, 0, 1e-3, Fraction(1, 1000), Decimal("0.001"), Sec()):
        time.sleep(d)
        assert time.after(d).recv() is not None
    ctx, cancel = context.with_timeout(bg, Fraction(1, 1000))
    assert isinstance(ctx.deadline(), float)
    ctx.done().recv()
    assert ctx.err() is context.deadlineExceeded


def test_chan_size_past_memory_is_a_memory_error_with_a_message():
    # 2**40 slots (8 TiB) is within Go's maxAlloc, so it is not a size
    # error; the allocation fails (unless the kernel overcommits).
    try:
        c = chan(2 ** 40)
    except MemoryError as e:
        assert str(e) == ("makechan: cannot allocate a buffer of "
                          "1099511627776 slots (8796093022208 bytes)")
    else:
        assert c.cap() == 2 ** 40       # vm.overcommit_memory=1
    # Go's limit: a buffer of at most maxAlloc = 2**48 bytes.
    with pytest.raises(ValueError, match="^makechan: size out of range$"):
        chan(2 ** 45 + 1)
    assert chan(3).cap() == 3


def test_cond_with_a_python_lock():
    # threading.Lock / RLock: what a Python user reaches for.  wait()
    # releases and re-acquires it, in goroutines and in plain threads.
    for lk in (threading.Lock(), threading.RLock()):
        cond = sync.Cond(lk)
        assert cond.L is lk
        state = {"ready": False}
        done = chan(2)

        def waiter():
            with lk:
                while not state["ready"]:
                    cond.wait()
            done.send(True)
        go(waiter)
        th = threading.Thread(target=waiter)
        th.start()
        with lk:
            state["ready"] = True
            cond.broadcast()
        assert done.recv() and done.recv()
        th.join()
        assert lk.acquire(blocking=False)
        lk.release()


def test_cond_prefers_lock_unlock():
    calls = []

    class Both:
        def lock(self):
            calls.append("lock")

        def unlock(self):
            calls.append("unlock")

        def acquire(self):
            calls.append("acquire")

        def release(self):
            calls.append("release")
    cond = sync.Cond(Both())
    go(lambda: (runtime.gosched(), cond.signal()))
    timer = time.after_func(0.05, cond.broadcast)
    cond.wait()
    timer.stop()
    assert calls == ["unlock", "lock"]


def test_map_incr_bad_delta_stores_nothing():
    m = Map()
    with pytest.raises(TypeError):
        m.incr("k", "x")
    assert "k" not in m and len(m) == 0
    assert m.incr("k", True) == 1 and type(m["k"]) is int      # 0 + True
    assert m.incr("f", 1.5) == 1.5


def test_waitgroup_go_with_a_bad_function_adds_nothing():
    wg = sync.WaitGroup()
    with pytest.raises(TypeError):
        wg.go(1)
    assert wg._count() == 0
    wg.wait()                   # returns at once


def test_errgroup_bad_function_takes_no_slot():
    g = errgroup.Group()
    g.set_limit(1)
    with pytest.raises(TypeError):
        g.go(None)
    with pytest.raises(TypeError):
        g.try_go(None)
    assert g.try_go(lambda: None) is True
    g.wait()


def test_errgroup_limit_zero_never_starts_anything():
    # Go's errgroup: SetLimit(0) makes Go block forever and TryGo fail.
    g = errgroup.Group()
    g.set_limit(0)
    assert g.try_go(lambda: None) is False
    started = chan(1)
    returned = chan(1)

    def attempt():
        try:
            g.go(started.send, 1)
        except BaseException as e:
            returned.send(e)
        else:
            returned.send(None)
    go(attempt)
    i, rx = select(started.recv, returned.recv, time.after(0.3).recv)
    assert i == 2, "go() with limit 0 did not block: %r" % (rx,)
    # End the blocked goroutine through the group's internals: closing
    # the never-ready channel lets go() on to acquire(1) of a Sema(0).
    g._never.close()
    assert isinstance(returned.recv(), ValueError)
    assert select(started.recv, default)[0] == 1
    g.wait()


def test_errgroup_limit_zero_go_on_the_main_thread_is_a_deadlock():
    # Nothing can ever give a slot: as in Go, the runtime says so.
    code = ("from goroutine import errgroup\n"
            "g = errgroup.Group(); g.set_limit(0); g.go(print)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Deadlock: all goroutines are asleep - deadlock!" in r.stderr


def test_a_del_that_uses_the_runtime_while_a_channel_drops_values():
    # Re-entrancy: dropping a buffered value runs __del__, which sends on
    # another channel and starts a goroutine.
    log = chan(100)

    class Reenter:
        def __del__(self):
            log.send("del")
            go(log.send, "from goroutine")
    c = chan(5)
    for _ in range(5):
        c.send(Reenter())
    del c
    got = sorted(log.recv() for _ in range(10))
    assert got == ["del"] * 5 + ["from goroutine"] * 5


def test_a_cancel_reentering_the_context_tree_from_inside_it():
    # The GC can run Python code (a __del__, a gc callback) at an
    # allocation inside a context operation (3.12+: at the next eval
    # breaker); code there that cancels or creates contexts of the same
    # tree must find it consistent and must not deadlock.  A gc callback
    # with threshold 1 makes that happen at nearly every allocation.
    import gc
    root, cancel_root = context.with_cancel(bg)
    others = [context.with_cancel(root) for _ in range(100)]
    made = []

    def cb(phase, info):
        if phase == "start" and others:
            others.pop()[1]()
            made.append(context.with_timeout(root, 30))
    old = gc.get_threshold()
    gc.callbacks.append(cb)
    gc.set_threshold(1)
    try:
        # Until every re-entrant cancel ran (3.13's GC runs less often
        # at threshold 1 than 3.11's), with a bound.
        for _ in range(5000):
            if not others:
                break
            p, cancel = context.with_cancel(root)
            kids = [context.with_timeout(p, 30) for _ in range(3)]
            grandkid, _ = context.with_cancel(kids[0][0])
            done = grandkid.done()
            cancel()
            assert [p.err(), grandkid.err()] + [k.err() for k, _ in kids] \
                == [context.canceled] * 5
            assert p._children is None
            assert select(done.recv, default)[0] == 0
    finally:
        gc.callbacks.remove(cb)
        gc.set_threshold(*old)
        cancel_root()
    assert not others, "the re-entrant cancels did not all run"
    assert all(c.err() is context.canceled for c, _ in made)
    assert root._children is None


def test_conversions_that_call_back_into_the_runtime():
    # __index__ / __float__ run user code in the middle of a runtime
    # call: it may itself use channels, goroutines and timers.
    class Size:
        def __index__(self):
            c = chan(1)
            go(c.send, 3)
            return c.recv()

    class Seconds(int):
        def __float__(self):
            time.sleep(0.001)
            return 0.002
    assert chan(Size()).cap() == 3
    t0 = _time.monotonic()
    time.sleep(Seconds(60))
    t = time.Timer(Seconds(60))
    assert t.c.recv() is not None
    assert _time.monotonic() - t0 < 30


# ---- reference counts: the C argument checks leak nothing ----

C_ROWS = [r for r in ROWS if r.name.split(".")[0] in ("chan", "time", "Map")
          or r.name.startswith(("sync.Cond", "sync.Sema", "sync.WaitGroup.add",
                                "context.with_timeout", "context.with_deadline"))]


def _good_calls():
    lk = threading.Lock()
    m = Map()
    m.incr("i", 1.5)                    # new key, non-int delta: 0 + delta
    m.incr("i", 2)                      # existing key, slow path
    sync.Cond(lk)
    sync.Cond(sync.Mutex())
    chan(3).cap()
    chan(BadIndexless()).cap()
    time.Timer(inf).stop()
    time.sleep(0)
    time.sleep(Seconds())
    wg = sync.WaitGroup()
    wg.add(BigInt(2))
    wg.add(-2)
    s = sync.Sema(BigInt(2))
    s.acquire(2)
    s.release(2)


class BadIndexless(int):
    """An int subclass: chan() turns it into an exact int."""


class BigInt(int):
    pass


class Seconds:
    def __float__(self):
        return 0.0


def _bad_calls():
    for row in C_ROWS:
        try:
            row.call()
        except row.exc:
            pass
    _good_calls()


@pytest.mark.skipif(not hasattr(sys, "gettotalrefcount"),
                    reason="sys.gettotalrefcount needs a debug build of "
                           "CPython (make test-debug)")
def test_argument_checks_keep_no_reference():
    # One reference leaked per call of any row is +100 per round; the
    # measurement itself moves the count by a few.
    import gc
    assert len(C_ROWS) > 50
    for _ in range(5):
        _bad_calls()
    deltas = []
    for _ in range(4):
        _time.sleep(0.02)       # timer stops are processed asynchronously
        gc.collect()
        before = sys.gettotalrefcount()
        for _ in range(100):
            _bad_calls()
        _time.sleep(0.02)
        gc.collect()
        deltas.append(sys.gettotalrefcount() - before)
    assert min(deltas) < 50, f"total refcount grew by {deltas} per round"
