"""goroutine: Go's concurrency runtime for CPython.

Goroutines on an M:N scheduler, channels and select, timers and context,
Go's sync primitives and Go's hash map, implemented in C (goroutine._core).

    import goroutine as gr
    from goroutine import go, chan, select, default, nilchan
"""
from goroutine import _core
from goroutine._core import Deadlock, Panic
from goroutine._defer import defer, func, panic, recover
from goroutine import runtime

__all__ = ["Deadlock", "Panic", "defer", "func", "panic", "recover", "runtime"]
