"""pygolang's Cython test hooks, emulated from goroutine's goroutine
states (runtime._goroutines): a goroutine blocked on *some* channel, not
necessarily the one given; a plain thread (the main one) blocked is not
visible there, so waitBlocked gives up after a pause and assumes it.  The
"C side" of typed channels is the Python API here.  Good enough to find
API gaps, not exact."""
import time as _time

from goroutine import _core

_STATE = {"recv": "chan receive", "send": "chan send"}


def _count(state):
    return sum(1 for _, s, _ in _core._goroutines() if s == state)


def pywaitBlocked(chanop):
    state = _STATE[chanop.__name__]
    deadline = _time.monotonic() + 0.2
    while _count(state) == 0 and _time.monotonic() < deadline:
        _time.sleep(0.001)


def pylen_recvq(ch):
    return _count("chan receive")


def pylen_sendq(ch):
    return _count("chan send")


class pypanicWhenBlocked:
    """pygolang turns a block-forever into a panic inside this block;
    goroutine has no such hook (a lone blocked main thread gets Deadlock)."""
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _c_ops(ctype):
    g = globals()
    g["pychan_%s_recv" % ctype] = lambda ch: ch.recv()
    g["pychan_%s_send" % ctype] = lambda ch, obj: ch.send(obj)
    g["pychan_%s_close" % ctype] = lambda ch: ch.close()


for _ctype in ("structZ", "bool", "int", "double"):
    _c_ops(_ctype)
