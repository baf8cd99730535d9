"""Typing stubs for goroutine._core, the C core."""

class Panic(Exception):
    """A Go panic: str(exc) is Go's message, .arg the value given to panic."""

class Deadlock(RuntimeError):
    """all goroutines are asleep - deadlock!"""

def num_cpu() -> int: ...
