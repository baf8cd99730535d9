"""Argument checks shared by the Python half of the package, so that a
function which hands f to a goroutine later rejects a bad f at the call,
with go()'s wording."""
import inspect as _inspect
from typing import Any as _Any


def check_callable(what: str, f: _Any) -> None:
    """What go(f) checks at once: f is callable and not a coroutine (or
    async generator) function, whose call would only make an object that
    nobody awaits.  `what` names the function in the message."""
    if not callable(f):
        raise TypeError("%s() argument must be callable, not %r"
                        % (what, type(f).__name__))
    if _inspect.iscoroutinefunction(f) or _inspect.isasyncgenfunction(f):
        raise TypeError("%s() takes a plain function, not a coroutine "
                        "function: run a coroutine with go(asyncio.run, "
                        "coro) or await the _async methods from asyncio "
                        "code" % what)
