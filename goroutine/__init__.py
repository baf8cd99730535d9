"""goroutine: Go's concurrency runtime for CPython.

Goroutines on an M:N scheduler, channels and select, timers and context,
Go's sync primitives and Go's hash map, implemented in C (goroutine._core).

    import goroutine as gr
    from goroutine import go, chan, select, default, nilchan
"""
import sys as _sys
import traceback as _traceback
from types import TracebackType as _TracebackType
from typing import (NamedTuple as _NamedTuple, Optional as _Optional,
                    Type as _Type)

if "t" in getattr(_sys, "abiflags", ""):
    # A free-threaded CPython build (3.13t, 3.14t; "t" in its ABI flags),
    # even with PYTHON_GIL=1: the runtime relies on the GIL and on the GIL
    # build's thread states (docs/design.md, "Free-threaded CPython: what
    # would change").
    raise ImportError(
        "goroutine does not support free-threaded CPython (%s) yet: its "
        "runtime relies on the GIL. Use a regular (GIL) build of CPython "
        "3.10-3.15." % _sys.version.split()[0])

from goroutine import _core
from goroutine._version import __version__
from goroutine._core import (Deadlock, Goexit, Map, Panic, chan, default,
                             go, nilchan, select)
from goroutine._async import select_async
from goroutine._defer import defer, func, panic, recover

__all__ = [
    "go", "chan", "select", "select_async", "default", "nilchan", "func",
    "defer", "panic", "recover", "Map", "Panic", "Deadlock",
    "excepthook", "ExceptHookArgs", "runtime", "time", "context", "sync",
    "errgroup", "errors",
]


class ExceptHookArgs(_NamedTuple):
    """What goroutine.excepthook receives, like threading.ExceptHookArgs."""
    exc_type: _Type[BaseException]
    exc_value: _Optional[BaseException]
    exc_traceback: _Optional[_TracebackType]
    goid: int


_RLOCK_HINT = (
    "goroutine: a threading.RLock (or threading.Condition) was released on "
    "another OS thread than the one that acquired it, because the goroutine "
    "parked (channel operation, sync wait, goroutine.time.sleep) while "
    "holding it; a goroutine's OS thread is shared and changes at parks. "
    "Use goroutine.sync.RLock (or sync.Mutex), or call "
    "runtime.lock_os_thread() before taking the lock.")


def _rlock_hint(exc):
    """The advice for the one symptom of a thread lock held across a park
    that the runtime can see: its release failing after the goroutine
    moved to another OS thread."""
    if (type(exc) is RuntimeError and
            str(exc) == "cannot release un-acquired lock"):
        return _RLOCK_HINT
    return None


def _default_excepthook(info: ExceptHookArgs) -> None:
    """Print a goroutine's uncaught exception the way Go prints a panic."""
    if not isinstance(info, ExceptHookArgs):
        # threading.excepthook's check, with this package's type.
        raise TypeError("excepthook argument type must be ExceptHookArgs, "
                        "not %r" % type(info).__name__)
    out = _sys.stderr
    if out is None:
        return
    exc = info.exc_value
    if isinstance(exc, Panic):
        what = str(exc)
    else:
        what = "".join(_traceback.format_exception_only(info.exc_type, exc)).strip()
    print(f"panic: {what}\n\ngoroutine {info.goid} [running]:", file=out)
    _traceback.print_exception(info.exc_type, exc, info.exc_traceback, file=out)
    hint = _rlock_hint(exc)
    if hint is not None:
        print(hint, file=out)
    out.flush()


#: Called with an ExceptHookArgs when an exception escapes a goroutine.
#: Assign your own; the default prints "panic: ..." and the traceback.
excepthook = _default_excepthook


def _report(exc_type, exc_value, exc_tb, goid):
    """Called by the C core when an exception escapes goroutine `goid`."""
    hook = globals().get("excepthook") or _default_excepthook
    hint = _rlock_hint(exc_value)
    if (hint is not None and hook is not _default_excepthook and
            hasattr(exc_value, "add_note")):
        exc_value.add_note(hint)        # a user's hook sees it too
    try:
        hook(ExceptHookArgs(exc_type, exc_value, exc_tb, goid))
    except BaseException:
        _default_excepthook(ExceptHookArgs(exc_type, exc_value, exc_tb, goid))
    if runtime._panic_exit:     # the submodule imported at the end
        for f in (_sys.stdout, _sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        import os
        os._exit(2)


# The core calls back into this package through what it registers here,
# never by importing it: _report for an exception that escapes a goroutine,
# goroutine._async for the channels' *_async methods.
from goroutine import _async as _async_mod  # noqa: E402
_core._register(report=_report, send_async=_async_mod.send_async,
                recv_async=_async_mod.recv_async,
                recv_async_=_async_mod.recv_async_, aiter=_async_mod.aiter_)
del _async_mod


# No atexit hook: the runtime serves goroutines until every atexit callback
# has run (logging.shutdown's handlers may drain goroutines), and stops by
# itself when the interpreter begins to finalize (see docs/design.md).

# A forked child gets a working runtime (its locks and queues are reset in
# C by pthread_atfork); this restarts its threads once CPython has freed
# the parent's other thread states.
import os as _os
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_core._after_fork)

from goroutine import (runtime, time, context, sync, errgroup,  # noqa: E402
                       errors)
