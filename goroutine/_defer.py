"""Go's defer, panic and recover for Python functions decorated with @func.

    @func
    def copy(src, dst):
        f = open(src)
        defer(f.close)
        ...

How a call of an @func function runs (gofunc below):

- Entry pushes a _GoFrame on the calling thread's stack (a threading.local;
  each goroutine has its own thread state, so its own stack).  defer()
  appends (fn, args, kw) to the frame on top; args are evaluated at the
  defer() call, as in Go.
- When the body returns or raises, the deferred calls run LIFO, then the
  frame is popped.

Invariants of the unwinding (_rundefers):

- gf.panic is the exception "in flight" for the frame: the one that will
  propagate from the call unless recovered.  It is None on a normal return
  and after recover() took it.
- gf.panic is not None implies the deferred calls run inside the `except`
  clause that caught gf.panic.  So an exception a deferred call raises gets
  gf.panic as its __context__ by Python's own implicit chaining (a re-panic
  shows both in the traceback), and the exception that finally propagates
  is re-raised with a bare `raise` inside the clause that caught it: its
  traceback still starts at its raise site and its __context__ is untouched.
- A deferred call that raises E while gf.panic is in flight nests one level
  deeper (one `except` clause per exception); a recovery returns from every
  nested level, so the deferred calls after a recover() run outside those
  clauses and nothing chains to a recovered panic (Go: the panic is over).

recover() follows Go's rule: it stops a panic only when called directly by
the deferred function that the unwinding runs (that function may itself be
@func-decorated).  It identifies that caller by its frame: the direct
caller's parent frame runs _rundefers' code, or runs gofunc's code while the
grandparent runs _rundefers' code.  Called anywhere else it returns None
and the panic goes on.

recover() stops only Exception subclasses.  KeyboardInterrupt, SystemExit,
GeneratorExit and Goexit run every deferred call on the way up, but
recover() returns None for them and they keep propagating: Go has no such
exceptions, and swallowing Ctrl-C or sys.exit() in a catch-all
`defer(lambda: recover())` would surprise a Python programmer.

Goexit is what runtime.goexit() raises: it runs every deferred call of every
@func frame on the way up, cannot be recovered, and is swallowed by the
goroutine's entry.  As in Go, recovering a panic raised by a deferred call
during a Goexit stops that panic but not the Goexit.
"""
from __future__ import annotations

import functools
import inspect
import sys
import threading
from typing import Any, Callable, List, NoReturn, Optional, Tuple

from goroutine import _core
from goroutine._core import Panic

__all__ = ["func", "defer", "panic", "recover"]


# runtime.goexit() raises the core's Goexit (a BaseException); the
# goroutine's entry swallows it once every @func frame has run its defers.
Goexit = _core.Goexit


class _GoFrame:
    """The defer state of one running call of an @func function."""

    __slots__ = ("deferred", "panic", "goexit")

    def __init__(self) -> None:
        # (fn, args, kw) in defer() order; run from the end.
        self.deferred: List[Tuple[Callable[..., Any], tuple, dict]] = []
        # The exception in flight, or None (normal return, or recovered).
        self.panic: Optional[BaseException] = None
        # The Goexit that was in flight, kept to resume it after a recovery.
        self.goexit: Optional[Goexit] = None

    def raised(self, exc: BaseException) -> None:
        self.panic = exc
        if isinstance(exc, Goexit):
            self.goexit = exc


class _State(threading.local):
    def __init__(self) -> None:
        # The _GoFrames of the @func calls running on this thread, innermost
        # last.
        self.stack: List[_GoFrame] = []


_state = _State()


def _rundefers(gf: _GoFrame) -> None:
    """Run gf's deferred calls LIFO until none is left or gf.panic is
    recovered.

    Called inside the `except` clause that caught gf.panic when it is not
    None (see the module's invariants), otherwise outside any.  Returns
    normally when the calls are exhausted (gf.panic, if any, still in
    flight: the caller re-raises it) or when a call recovered gf.panic.
    Raises the exception in flight when a deferred call raised one that
    nothing recovered.
    """
    unwinding = gf.panic is not None
    deferred = gf.deferred
    while deferred:
        fn, args, kw = deferred.pop()
        try:
            fn(*args, **kw)
        except BaseException as exc:
            gf.raised(exc)
            _rundefers(gf)
            if gf.panic is not None:
                raise
        if unwinding and gf.panic is None:
            # Recovered: leave the `except` clauses of the recovered
            # panics; the outermost level runs the rest.
            return


_RUNDEFERS_CODE = _rundefers.__code__


def _wrap(f: Callable[..., Any]) -> Callable[..., Any]:
    def gofunc(*args: Any, **kw: Any) -> Any:
        stack = _state.stack
        gf = _GoFrame()
        stack.append(gf)
        try:
            try:
                result = f(*args, **kw)
            except BaseException as exc:
                gf.raised(exc)
                _rundefers(gf)
                if gf.panic is not None:
                    raise
                result = None
            if gf.deferred:
                _rundefers(gf)
            if gf.goexit is not None:
                raise gf.goexit
            return result
        finally:
            stack.pop()
            # The exceptions' tracebacks hold this frame, which holds gf.
            gf.panic = gf.goexit = None

    return functools.update_wrapper(gofunc, f)


# Every @func wrapper runs this one code object: defer() and recover() find
# @func frames by it.
_GOFUNC_CODE = _wrap(lambda: None).__code__


def _func(f: Any) -> Any:
    if isinstance(f, property):
        return type(f)(
            None if f.fget is None else _func(f.fget),
            None if f.fset is None else _func(f.fset),
            None if f.fdel is None else _func(f.fdel),
            f.__doc__,
        )
    if isinstance(f, (staticmethod, classmethod)):
        return type(f)(_func(f.__func__))
    if not callable(f):
        raise TypeError(
            f"@func expects a function or a class, not {type(f).__name__!r}")
    if getattr(f, "__code__", None) is _GOFUNC_CODE:
        return f
    if inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) \
            or inspect.isgeneratorfunction(f):
        raise TypeError(
            f"@func does not support generator or async functions "
            f"({f.__qualname__}): their body runs after the call returns")
    return _wrap(f)


def func(f: Any) -> Any:
    """func(f) -> f wrapped so that defer() works in it; func(cls) -> decorator

    `@func def f(...)` lets f's body call defer(): the deferred calls run
    LIFO when f returns or raises.  Works on functions, methods,
    staticmethod, classmethod and property.

    `@func(Cls) def meth(self, ...)` defines Cls.meth (wrapped as by @func)
    outside the class body, as in pygolang.  The name in the defining
    namespace keeps its previous value when it had one; otherwise it is
    bound to the wrapped function.
    """
    if not isinstance(f, type):
        return _func(f)
    cls = f
    namespace = sys._getframe(1).f_locals

    def method(meth: Any) -> Any:
        wrapped = _func(meth)
        named = wrapped.fget if isinstance(wrapped, property) else wrapped
        if named is None:
            raise ValueError("@func(cls) on a property without a getter")
        name = getattr(named, "__func__", named).__name__
        setattr(cls, name, wrapped)
        missing = object()
        previous = namespace.get(name, missing)
        return wrapped if previous is missing else previous

    return method


def defer(f: Callable[..., Any], *args: Any, **kw: Any) -> None:
    """defer(f, *args, **kw): call f(*args, **kw) when the calling @func
    function returns or raises.

    Deferred calls run last-in first-out; args are evaluated now.  Raises
    Panic when the caller is not decorated with @func.
    """
    if not callable(f):
        raise TypeError(
            f"defer: {type(f).__name__!r} object is not callable")
    caller = sys._getframe(1)
    parent = caller.f_back
    if parent is None or parent.f_code is not _GOFUNC_CODE:
        # pygolang's wording, word for word: code ported from it tests it.
        raise Panic(f"function {caller.f_code.co_name} uses defer, "
                    f"but not @func")
    _state.stack[-1].deferred.append((f, args, kw))


def panic(arg: Any) -> NoReturn:
    """panic(arg): raise Panic(arg); recover() returns arg."""
    raise Panic(arg)


def recover() -> Any:
    """recover() -> the panic in flight, stopped; or None

    Called directly by a deferred function while its @func function unwinds
    an exception, stops the unwinding (the function then returns None) and
    returns the panic's argument: Panic.arg for a Panic, the exception
    itself for any other Exception.  Returns None (and stops nothing) when
    nothing is in flight, when called anywhere but directly in a deferred
    function, a second time for the same panic, and for BaseExceptions that
    are not Exceptions (KeyboardInterrupt, SystemExit, Goexit).
    """
    stack = _state.stack
    parent = sys._getframe(1).f_back
    if parent is None:
        return None
    if parent.f_code is _RUNDEFERS_CODE:
        gf = stack[-1]
    elif (parent.f_code is _GOFUNC_CODE and parent.f_back is not None
          and parent.f_back.f_code is _RUNDEFERS_CODE):
        # A deferred function that is itself @func: its own frame is on top.
        gf = stack[-2]
    else:
        return None
    exc = gf.panic
    if not isinstance(exc, Exception):
        return None
    gf.panic = None
    return exc.arg if isinstance(exc, Panic) else exc
