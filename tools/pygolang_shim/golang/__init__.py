"""A stand-in `golang` package over goroutine, to run pygolang's own test
files against this package (tools/pygolang_compat.py).  It is the "import
change" of docs/coming-from.md plus the few names pygolang's tests import
that are not concurrency API (its string types, its test hooks); those are
scaffolding here, not goroutine API."""
from goroutine import (go, chan, select, default, nilchan, func, defer,
                       panic, recover, Panic as _PanicError)

# pygolang's bytes/unicode string types: outside goroutine's scope; plain
# str conversions let the test modules import.
def u(x):
    return x.decode("utf-8", "surrogateescape") if isinstance(x, bytes) else str(x)


def b(x):
    return x if isinstance(x, bytes) else str(x).encode("utf-8",
                                                        "surrogateescape")
