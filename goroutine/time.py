"""goroutine.time: Go's time package on the runtime's libuv timer thread.

Durations are seconds as float.  Timers and tickers follow Go 1.23: a
timer's channel is synchronous (len and cap 0; a value that fired but was
not received is taken back by stop()/reset(), which then return True), no
stale value is received after stop()/reset() return, a ticker drops ticks
for a slow receiver, and a Timer or Ticker that nothing references is
garbage-collected even if it was never stopped.
"""
import time as _time
from typing import Any as _Any, Callable as _Callable, Optional as _Optional

from goroutine import _core
from goroutine._check import check_callable as _check_callable
from goroutine._core import chan, nilchan

__all__ = ["nanosecond", "microsecond", "millisecond", "second", "minute",
           "hour", "now", "sleep", "after", "tick", "after_func", "Timer",
           "Ticker"]

nanosecond = 1e-9
microsecond = 1e-6
millisecond = 1e-3
second = 1.0
minute = 60.0
hour = 3600.0


# d as float seconds: TypeError for a non-number ("duration must be a
# number of seconds, not 'str'"), ValueError for NaN (time.sleep's
# "Invalid value NaN (not a number)"); +-inf are accepted, as any huge
# value is: inf never fires, -inf fires at once.
_seconds = _core._seconds


def now() -> float:
    """The wall clock, in seconds since the epoch (like time.time())."""
    return _time.time()


def _duration(what, d, dt):
    """The duration argument of Timer/Ticker: d, or pygolang's keyword
    name dt (Timer(dt=..., f=...), Ticker(dt=...)), never both."""
    if dt is _unset:
        if d is _unset:
            raise TypeError("%s() missing the duration argument 'd'" % what)
        return d
    if d is not _unset:
        raise TypeError("%s() got both 'd' and pygolang's 'dt' for the "
                        "duration" % what)
    return dt


_unset = object()


def sleep(d: float) -> None:
    """Pause the calling goroutine for d seconds: only the goroutine parks,
    its OS thread runs others.  On a plain thread, block it (Ctrl-C works).
    d <= 0 returns at once (as in Go); NaN is a ValueError."""
    _core.sleep(d)


class Timer(_core._timer):
    """Timer(d, f=None): a single event: after d seconds the time it was
    due is sent on .c (or, given f -- as after_func(d, f) does -- f runs in
    its own goroutine and .c is nilchan).  pygolang's keyword name for the
    duration, dt=, is accepted too.
    """
    __slots__ = ()

    def __new__(cls, d: float = _unset,  # type: ignore[assignment]
                f: _Optional[_Callable[[], _Any]] = None, *,
                dt: float = _unset) -> "Timer":  # type: ignore[assignment]
        d = _duration("Timer", d, dt)
        if f is not None:
            _check_callable("after_func", f)
        return super().__new__(cls, _seconds(d), f)

    def stop(self) -> bool:
        """Stop the timer; True if that kept its value (or call) from
        happening: it had not fired, or its value was not yet received.
        After it returns, .c yields no stale value."""
        return super().stop()

    def reset(self, d: float) -> bool:
        """Make the timer fire after d seconds; returns what stop() would
        have.  No value of the old setting is received afterwards."""
        return super().reset(_seconds(d))


class Ticker(_core._timer):
    """Ticker(d): sends the time on .c every d seconds; drops ticks for a
    slow receiver.  pygolang's keyword name dt= is accepted too."""
    __slots__ = ()

    def __new__(cls, d: float = _unset,  # type: ignore[assignment]
                *, dt: float = _unset) -> "Ticker":  # type: ignore[assignment]
        d = _seconds(_duration("Ticker", d, dt))
        if not d > 0:
            raise ValueError("non-positive interval for NewTicker")
        return super().__new__(cls, d, None, d)

    # Go's Ticker.Stop and Reset return nothing, where Timer's (and the
    # shared C base's) return whether the timer was still pending.
    def stop(self) -> None:  # type: ignore[override]
        """Turn the ticker off; no more ticks are sent (none is left
        buffered)."""
        super().stop()

    def reset(self, d: float) -> None:  # type: ignore[override]
        """Stop, then tick every d seconds from now."""
        d = _seconds(d)
        if not d > 0:
            raise ValueError("non-positive interval for Ticker.Reset")
        self._set_period(d)
        super().reset(d)


def after(d: float) -> chan:
    """A channel that receives the time once, after d seconds."""
    return Timer(d).c


def tick(d: float) -> chan:
    """A channel that receives the time every d seconds (nilchan if
    d <= 0, as Go's Tick returns nil)."""
    if not _seconds(d) > 0:
        return nilchan
    return Ticker(d).c


def after_func(d: float, f: _Callable[[], _Any]) -> Timer:
    """Run f() in its own goroutine after d seconds; stop() cancels it.
    The Timer's .c is nilchan (a select on it never fires), and the timer
    runs f even if the Timer is dropped."""
    _check_callable("after_func", f)
    return Timer(d, f)
