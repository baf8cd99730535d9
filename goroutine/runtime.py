"""goroutine.runtime: the scheduler's knobs and introspection (Go's runtime)."""
import sys as _sys
import traceback as _traceback

from goroutine._core import (goexit, gomaxprocs, goid, gosched,
                             lock_os_thread, num_cpu, num_goroutine, stats,
                             unlock_os_thread)
from goroutine import _core

__all__ = ["gomaxprocs", "num_goroutine", "num_cpu", "gosched", "goexit",
           "goid", "lock_os_thread", "unlock_os_thread", "stack", "stats",
           "set_panic_exit"]

_panic_exit = False


def set_panic_exit(flag: bool) -> None:
    """With True, an exception escaping a goroutine prints the panic and
    exits the process with status 2, as Go does; False (the default) only
    reports it through goroutine.excepthook."""
    global _panic_exit
    _panic_exit = bool(flag)


def stack() -> str:
    """Every goroutine's state and Python traceback, in Go's dump format:

        goroutine 7 [chan receive]:
          File "...", line 3, in worker

    A goroutine of a worker interpreter (goroutine.interp) says so in its
    header, "goroutine 9 [chan receive, interpreter 2]:", and its frames
    in the worker follow the frame that entered it.
    """
    interp = _sys.modules.get("goroutine.interp")
    workers = interp._stack_info() if interp is not None else {}
    parts = []
    for goid_, state, frame in _core._goroutines():
        w = workers.get(goid_)
        extra = f", interpreter {w[0]}" if w is not None else ""
        lines = [f"goroutine {goid_} [{state}{extra}]:"]
        if frame is not None:
            lines.extend(l.rstrip("\n") for l in
                         _traceback.format_list(_traceback.extract_stack(frame)))
        if w is not None and w[1]:
            # after the frame (file line and source line) that entered it
            at = next((i + 1 for i, l in enumerate(lines)
                       if ", in _body\n" in l), len(lines))
            lines[at:at] = [w[1].rstrip("\n")]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + ("\n" if parts else "")
