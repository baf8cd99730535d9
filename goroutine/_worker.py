"""The worker side of goroutine.interp, and the codec both sides share.

In a worker interpreter this file is run as the module ``goroutine_worker``
(src/interp.c boots it there, with ``_xcall`` added): it must import
nothing from the goroutine package, which cannot be imported in a worker.
In the main interpreter goroutine/interp.py imports it as
``goroutine._worker`` for the codec.

A value crosses as bytes: ``b"M"`` + marshal for None, bool, int, float,
str, bytes and tuples of them (read without importing anything), else
``b"P"`` + pickle.  Objects that cross by reference (channels, WaitGroups,
Contexts of the main interpreter) and the runtime's exceptions are pickle
persistent ids, so they may sit anywhere inside a pickled value.
"""
import io
import marshal
import pickle
import sys
from typing import Any, Callable, Optional

_PLAIN = (type(None), bool, int, float, str, bytes)


def _plain(v):
    t = type(v)
    if t in _PLAIN:
        return True
    if t is tuple:
        # a loop, not all(<generator>): this runs on every crossing, and
        # the generator's frame showed in a ping-pong profile
        for x in v:
            if not _plain(x):
                return False
        return True
    return False


def dumps(v, persistent_id=None):
    """v as bytes for another interpreter; TypeError when it cannot be."""
    if _plain(v):
        return b"M" + marshal.dumps(v)
    f = io.BytesIO()
    p = _Pickler(f, protocol=pickle.HIGHEST_PROTOCOL)
    p.pid = persistent_id
    try:
        p.dump(v)
    except Exception as e:
        bad = _culprit(v, persistent_id)
        raise TypeError(
            f"goroutine.interp: cannot copy {type(bad).__qualname__} into "
            f"another interpreter: {e}") from None
    return b"P" + f.getvalue()


def _culprit(v, persistent_id):
    # The innermost element of a tuple, list or dict that fails alone,
    # so that the message names the value, not the envelope.
    items = (v if type(v) in (tuple, list) else
             [x for kv in v.items() for x in kv] if type(v) is dict else ())
    for x in items:
        try:
            dumps(x, persistent_id)
        except TypeError:
            return _culprit(x, persistent_id)
    return v


def loads(b, persistent_load=None):
    if b[:1] == b"M":
        return marshal.loads(b[1:])
    u = _Unpickler(io.BytesIO(b[1:]))
    u.pload = persistent_load
    return u.load()


class _Pickler(pickle.Pickler):
    pid: Optional[Callable[[Any], Any]] = None

    def persistent_id(self, obj):
        return None if self.pid is None else self.pid(obj)


class _Unpickler(pickle.Unpickler):
    pload: Optional[Callable[[Any], Any]] = None

    def persistent_load(self, pid):
        if self.pload is None:
            raise pickle.UnpicklingError("unexpected reference")
        return self.pload(pid)


def exc_text(e):
    import traceback
    return "".join(traceback.format_exception(e))


# ---- the worker's own classes (never shared with another interpreter) ----

class Panic(Exception):
    """goroutine.Panic, as seen in a worker interpreter."""


class Deadlock(RuntimeError):
    """goroutine.Deadlock, as seen in a worker interpreter."""


class Canceled(Exception):
    """goroutine.context.Canceled, as seen in a worker interpreter."""


class DeadlineExceeded(TimeoutError):
    """goroutine.context.DeadlineExceeded, as seen in a worker."""


# Exceptions that cross by name: the other side makes its own class's.
EXC_NAMES = ("Panic", "Deadlock", "Canceled", "DeadlineExceeded")
_EXC = {n: globals()[n] for n in EXC_NAMES}


# Refs of proxies that died here, for the main interpreter to release
# (goroutine/interp.py's _release): sent with the next call or at the end
# of a goroutine.
_released: list = []


def _take_released():
    global _released
    rel, _released = _released, []
    return tuple(rel)


class _Proxy:
    """A main-interpreter object used from a worker, by reference."""
    __slots__ = ("_ref",)
    _kind = ""

    def __init__(self, ref):
        self._ref = ref

    def __del__(self):
        if self._ref > 0:
            _released.append(self._ref)

    def _call(self, name, *args):
        return _call(self._ref, name, args)

    def __reduce__(self):
        raise TypeError("goroutine.interp: proxies cross only through "
                        "goroutine channels and Pool.go arguments")

    def __repr__(self):
        return f"<goroutine {self._kind} of the main interpreter #{self._ref}>"


class chan(_Proxy):
    """The same channel as in the main interpreter: values are copied."""
    __slots__ = ()
    _kind = "chan"

    def send(self, v):
        self._call("send", v)

    def recv(self):
        return self._call("recv")

    def recv_(self):
        return self._call("recv_")

    def close(self):
        self._call("close")

    def cap(self):
        return self._call("cap")

    def __len__(self):
        return self._call("__len__")

    def __iter__(self):
        while True:
            v, ok = self._call("recv_")
            if not ok:
                return
            yield v


class WaitGroup(_Proxy):
    __slots__ = ()
    _kind = "WaitGroup"

    def add(self, n):
        self._call("add", n)

    def done(self):
        self._call("done")

    def wait(self):
        self._call("wait")


class Context(_Proxy):
    __slots__ = ()
    _kind = "Context"

    def done(self):
        return self._call("done")

    def err(self):
        return self._call("err")

    def value(self, key):
        return self._call("value", key)

    def deadline(self):
        return self._call("deadline")


class Mutex(_Proxy):
    """sync.Mutex of the main interpreter: lock() parks this goroutine
    until the holder, in any interpreter, unlocks."""
    __slots__ = ()
    _kind = "Mutex"

    def lock(self):
        self._call("lock")

    def unlock(self):
        self._call("unlock")

    def try_lock(self):
        return self._call("try_lock")

    def locked(self):
        return self._call("locked")

    def __enter__(self):
        self.lock()
        return self

    def __exit__(self, *exc):
        self.unlock()


class _RLocker:
    __slots__ = ("_rw",)

    def __init__(self, rw):
        self._rw = rw

    def lock(self):
        self._rw.rlock()

    def unlock(self):
        self._rw.runlock()

    def __enter__(self):
        self.lock()
        return self

    def __exit__(self, *exc):
        self.unlock()


class RWMutex(Mutex):
    """sync.RWMutex of the main interpreter."""
    __slots__ = ()
    _kind = "RWMutex"

    def rlock(self):
        self._call("rlock")

    def runlock(self):
        self._call("runlock")

    def try_rlock(self):
        return self._call("try_rlock")

    def unlock_to_rlock(self):
        self._call("unlock_to_rlock")

    def locked(self):
        raise AttributeError("'RWMutex' object has no attribute 'locked'")

    def rlocker(self):
        return _RLocker(self)


class Cond(_Proxy):
    """sync.Cond of the main interpreter (its L is the main one's)."""
    __slots__ = ()
    _kind = "Cond"

    @property
    def L(self):
        return self._call("_L")

    def wait(self):
        self._call("wait")

    def signal(self):
        self._call("signal")

    def broadcast(self):
        self._call("broadcast")


class Sema(_Proxy):
    """sync.Sema of the main interpreter."""
    __slots__ = ()
    _kind = "Sema"

    def acquire(self, n=1):
        self._call("acquire", n)

    def release(self, n=1):
        self._call("release", n)

    def try_acquire(self, n=1):
        return self._call("try_acquire", n)


#: The nil channel: never ready in a select; send and recv block forever.
nilchan = chan(-1)


class _Default:
    """goroutine_worker.default: select's default case."""
    __slots__ = ()

    def __repr__(self):
        return "goroutine_worker.default"


default = _Default()


def _case(i, case):
    # A case as the main side's select rebuilds it: ("recv", ref),
    # ("recv_", ref), ("send", ref, value) or ("default",).
    if case is default:
        return ("default",)
    if type(case) is tuple and len(case) == 2:
        fn = case[0]
        if getattr(fn, "__func__", None) is chan.send and \
                isinstance(fn.__self__, chan):
            return ("send", fn.__self__._ref, case[1])
    else:
        fn = getattr(case, "__func__", None)
        if fn is chan.recv or fn is chan.recv_:
            if isinstance(case.__self__, chan):
                return (fn.__name__, case.__self__._ref)
    raise TypeError(f"select: case {i} must be ch.recv, ch.recv_, "
                    f"(ch.send, value) or default, not {case!r}")


def select(*cases):
    """select(*cases) -> (index, rx): goroutine.select for a worker, over
    channel proxies: ch.recv, ch.recv_, (ch.send, value), default.  The
    select itself runs in the main interpreter, so Go's rules (random
    choice among ready cases, nil channels never ready, closed ones) are
    the main runtime's own."""
    ops = tuple(_case(i, c) for i, c in enumerate(cases))
    if sum(1 for op in ops if op[0] == "default") > 1:
        raise TypeError("select: multiple default cases")
    return _call(0, "select", ops)


KINDS = {c._kind: c for c in (chan, WaitGroup, Context, Mutex, RWMutex,
                               Cond, Sema)}


def _pid(obj):
    if isinstance(obj, _Proxy):
        return ("ref", obj._ref, obj._kind)
    if isinstance(obj, BaseException) and type(obj) in _EXC.values():
        return ("exc", type(obj).__name__, obj.args)
    return None


def _pload(pid):
    tag, a, b = pid
    if tag == "ref":
        return KINDS[b](a)
    return _EXC[a](*b)


def _call(ref, name, args):
    xcall = globals()["_xcall"]     # added by src/interp.c's boot
    ans = loads(xcall(dumps((ref, name, args, _take_released()), _pid)),
                _pload)
    if ans[0] == "ok":
        return ans[1]
    raise ans[1]


def _find(modname, qualname, mainfile):
    import importlib
    if modname == "__main__":
        mod = sys.modules.get("__mp_main__")
        if mod is None:
            if not mainfile:
                raise LookupError("goroutine.interp: a function of an "
                                  "interactive __main__ cannot be found in "
                                  "a worker: define it in a module")
            import runpy
            import types
            mod = types.ModuleType("__mp_main__")
            sys.modules["__mp_main__"] = mod
            mod.__dict__.update(runpy.run_path(mainfile,
                                               run_name="__mp_main__"))
    else:
        mod = importlib.import_module(modname)
    obj = mod
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _stack_text(frame):
    """A goroutine's worker-side frames, formatted as traceback does, for
    the main interpreter's runtime.stack() (src/interp.c calls it with
    this worker's GIL held)."""
    if frame is None:
        return ""
    import traceback
    # goroutine_worker's own frames (_run, the proxies) are plumbing
    frames = [f for f in traceback.extract_stack(frame)
              if f.filename != __file__]
    return "".join(traceback.format_list(frames))


def _run(payload):
    """Run one goroutine's function here; the answer as bytes."""
    try:
        modname, qualname, mainfile, args, kw = loads(payload, _pload)
        fn = _find(modname, qualname, mainfile)
        fn(*args, **kw)
        del fn, args, kw            # the proxies in them die here
        return dumps(("ok", None, _take_released()))
    except BaseException as e:   # noqa: B902 - reported in main
        tb = exc_text(e)
        e.__traceback__ = None
        try:
            e.add_note(  # type: ignore[attr-defined]  # 3.11+
                "in worker interpreter:\n" + tb.rstrip())
            return dumps(("err", e, _take_released()), _pid)
        except Exception:
            return dumps(("err", RuntimeError(tb), _take_released()))
