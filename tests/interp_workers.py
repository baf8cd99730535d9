"""Functions that tests/test_interp.py runs in worker interpreters.

Imported there by name, so this module must not import goroutine (which
cannot be imported in a worker): the runtime's names come from
goroutine_worker, which exists only inside a worker.
"""
import sys


class Point:
    """A value that crosses by pickle."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x,
                                                                 other.y)


class Unpicklable:
    def __reduce__(self):
        raise TypeError("no pickling here")


def where():
    """The interpreter this runs in (0 is the main one)."""
    try:
        import _interpreters as i
    except ImportError:
        import _xxsubinterpreters as i
    return int(i.get_current()[0] if isinstance(i.get_current(), tuple)
               else i.get_current())


def echo(inp, out):
    """Send back every value received, tagged with its type, until inp
    closes; then close out."""
    for v in inp:
        out.send((type(v).__name__, v))
    out.close()


def send_all(ch, values):
    for v in values:
        ch.send(v)


def recv_n(ch, n, out):
    out.send(tuple(ch.recv() for _ in range(n)))


def work(ch, n):
    s = 0
    for i in range(n):
        s += i
    ch.send(s)


def report(ch):
    ch.send((where(), "goroutine" in sys.modules,
             "goroutine_worker" in sys.modules))


def try_(op, ch, out, *args):
    """Run one channel operation and report what happened."""
    import goroutine_worker as gw
    try:
        r = getattr(ch, op)(*args)
        out.send(("ok", r))
    except gw.Panic as e:
        out.send(("Panic", str(e)))
    except Exception as e:
        out.send((type(e).__name__, str(e)))


def buffered(ch, out):
    ch.send(1)
    ch.send(2)
    out.send((len(ch), ch.cap()))


def ping(ch_in, ch_out, n):
    for _ in range(n):
        ch_out.send(ch_in.recv() + 1)


def wg_done(wg, ch):
    ch.recv()
    wg.done()


def ctx_wait(ctx, out):
    ctx.done().recv()
    e = ctx.err()
    out.send((type(e).__name__, str(e)))


def boom(msg):
    raise ValueError(msg)


def spin(ready):
    ready.send(True)
    while True:
        pass


def park(ready, ch):
    ready.send(True)
    ch.recv()


def send_unpicklable(ch):
    try:
        ch.send(Unpicklable())
    except TypeError as e:
        ch.send(str(e))


def deep(n):
    return 0 if n == 0 else 1 + deep(n - 1)


def recurse(out):
    try:
        deep(100000)
        out.send("no error")
    except RecursionError:
        out.send("RecursionError")


def import_goroutine(out):
    try:
        import goroutine  # noqa: F401
        out.send(("imported", ""))
    except ImportError as e:
        out.send(("ImportError", str(e)))


def _cases(spec):
    import goroutine_worker as gw
    cases = []
    for s in spec:
        if s[0] == "default":
            cases.append(gw.default)
        elif s[0] == "nil":
            cases.append(gw.nilchan.recv)
        elif s[0] == "nilsend":
            cases.append((gw.nilchan.send, 1))
        elif s[0] == "send":
            cases.append((s[1].send, s[2]))
        elif s[0] == "bad":
            cases.append(s[1])
        else:
            cases.append(getattr(s[1], s[0]))
    return cases


def select_spec(spec, out, n=1):
    """Run goroutine_worker.select over spec n times; report the results
    (or the error) on out."""
    import goroutine_worker as gw
    try:
        cases = _cases(spec)
        res = [gw.select(*cases) for _ in range(n)]
        out.send(("ok", res if n > 1 else res[0]))
    except gw.Panic as e:
        out.send(("Panic", str(e)))
    except Exception as e:
        out.send((type(e).__name__, str(e)))


def run_ops(obj, ops, out):
    """Call obj's methods in order (ops: (name, *args) tuples), sending
    ("ok", name, result) after each, or the error, on out.  ("gate", ch)
    waits for a value on ch instead."""
    import goroutine_worker as gw
    for name, *args in ops:
        try:
            if name == "gate":      # wait for main's go-ahead
                args[0].recv()
                continue
            if name == "with":
                with obj:
                    out.send(("ok", "with", None))
                continue
            r = getattr(obj, name)
            r = r(*args) if callable(r) else r
            if isinstance(r, gw.Mutex):
                r = type(r).__name__
            out.send(("ok", name, r))
        except gw.Panic as e:
            out.send(("Panic", name, str(e)))
        except Exception as e:
            out.send((type(e).__name__, name, str(e)))


def cond_wait(cond, m, ready, out):
    m.lock()
    ready.send(True)
    cond.wait()             # unlocks m while it waits
    out.send(("woken", m.try_lock()))
    m.unlock()


def park_deep(ready, ch):
    """Park in a channel receive two frames down (for runtime.stack)."""
    def inner_wait():
        ready.send(where())
        ch.recv()
    inner_wait()


_kept = []


def keep(obj, out):
    """Keep a proxy in a module global (outliving this goroutine)."""
    _kept.append(obj)
    out.send(len(_kept))


def drop(out):
    del _kept[:]
    out.send(0)
