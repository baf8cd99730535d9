"""goroutine: Go's concurrency runtime for CPython.

Goroutines on an M:N scheduler, channels and select, timers and context,
Go's sync primitives and Go's hash map, implemented in C (goroutine._core).

    import goroutine as gr
    from goroutine import go, chan, select, default, nilchan
"""
import atexit as _atexit
import sys as _sys
import traceback as _traceback
from typing import NamedTuple as _NamedTuple, Optional as _Optional

from goroutine import _core
from goroutine._core import (Deadlock, Goexit, Map, Panic, chan, default,
                             go, nilchan, select)
from goroutine._async import select_async
from goroutine._defer import defer, func, panic, recover

__all__ = [
    "go", "chan", "select", "select_async", "default", "nilchan", "func",
    "defer", "panic", "recover", "Map", "Panic", "Deadlock",
    "excepthook", "ExceptHookArgs", "runtime", "time", "context", "sync",
    "errgroup",
]


class ExceptHookArgs(_NamedTuple):
    """What goroutine.excepthook receives, like threading.ExceptHookArgs."""
    exc_type: type
    exc_value: _Optional[BaseException]
    exc_traceback: object
    goid: int


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
    out.flush()


#: Called with an ExceptHookArgs when an exception escapes a goroutine.
#: Assign your own; the default prints "panic: ..." and the traceback.
excepthook = _default_excepthook


def _report(exc_type, exc_value, exc_tb, goid):
    """Called by the C core when an exception escapes goroutine `goid`."""
    hook = globals().get("excepthook") or _default_excepthook
    try:
        hook(ExceptHookArgs(exc_type, exc_value, exc_tb, goid))
    except BaseException:
        _default_excepthook(ExceptHookArgs(exc_type, exc_value, exc_tb, goid))
    from goroutine import runtime as _rt
    if _rt._panic_exit:
        for f in (_sys.stdout, _sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        import os
        os._exit(2)


_atexit.register(_core._shutdown)

from goroutine import runtime, time, context, sync, errgroup  # noqa: E402
