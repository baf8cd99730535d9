"""Goroutines that run Python in parallel, in worker interpreters (3.12+).

A ``Pool(n)`` makes n interpreters, each with its own GIL (PEP 684), once;
``pool.go(fn, *args, **kw)`` runs ``fn`` as a goroutine of one of them on
the shared scheduler: CPU-bound Python in two workers runs on two cores at
once.  ``fn`` is found in the worker by its module and qualified name, and
its arguments are copied in (None, bool, int, float, str, bytes and tuples
of them directly, anything else through pickle).  A ``chan``, ``WaitGroup``
or ``Context`` passed in is the same object there, used through a proxy:
a value sent across is copied into the receiving interpreter.

The goroutine package itself cannot be imported in a worker; a worker's
code finds the proxies' classes and the runtime's exceptions (``Panic``,
``Deadlock``, ``Canceled``, ``DeadlineExceeded``) in the module
``goroutine_worker``.  See docs/design.md, "Worker interpreters", and
docs/api.md.
"""
import atexit
import itertools
import os
import sys
import threading
from typing import Any, Dict, Set, Tuple

from goroutine import _core, _worker, chan, default, go, nilchan, select, Panic, \
    Deadlock
from goroutine import context as _context
from goroutine import sync as _sync

__all__ = ["Pool", "supported"]

#: True where worker interpreters exist (CPython 3.12+).
supported = bool(_core._HAVE_WORKERS)

_EXC = {"Panic": Panic, "Deadlock": Deadlock,
        "Canceled": _context.Canceled,
        "DeadlineExceeded": _context.DeadlineExceeded}
_KIND: Tuple[Tuple[Any, str], ...] = (
    (chan, "chan"), (_sync.WaitGroup, "WaitGroup"),
    (_context.Context, "Context"), (_core.Mutex, "Mutex"),
    (_core.RWMutex, "RWMutex"), (_sync.Cond, "Cond"),
    (_core.Sema, "Sema"))
# What a worker may call on each kind of object it holds.
_METHODS = {
    "chan": frozenset({"send", "recv", "recv_", "close", "cap", "__len__"}),
    "WaitGroup": frozenset({"add", "done", "wait"}),
    "Context": frozenset({"done", "err", "value", "deadline"}),
    "Mutex": frozenset({"lock", "unlock", "try_lock", "locked"}),
    "RWMutex": frozenset({"lock", "unlock", "rlock", "runlock", "try_lock",
                         "try_rlock", "unlock_to_rlock"}),
    "Cond": frozenset({"wait", "signal", "broadcast", "_L"}),
    "Sema": frozenset({"acquire", "release", "try_acquire"}),
}

# Objects a worker holds by reference: ref -> (object, kind).  An object
# stays here while some worker may hold a proxy to it: _held[(pool, i)]
# counts, per ref, the proxies sent to that worker (each pickling makes
# one proxy there) not yet released (a proxy's __del__ in the worker
# queues its ref, and the worker's next call or its goroutine's end brings
# the queue here, src/ _release).  A count is raised before the proxy can
# exist and lowered only after it died, so it never reaches zero while a
# proxy lives; a worker's counts are dropped when it ends.  A ref no
# worker counts leaves _refs.  _pools: the pools with a worker not yet
# ended.
_refs: Dict[int, Tuple[Any, str]] = {}
_ref_of: Dict[int, int] = {}    # id(object) -> ref
_held: Dict[Any, Dict[int, int]] = {}
_next_ref = itertools.count(1)
_pools: "Set[Pool]" = set()
_exiting = False            # _at_exit has begun
_lock = threading.Lock()


def _pid_to(dest, sent):
    """The persistent_id for a value going to worker dest ((pool, i));
    each ref it emits is counted for dest and appended to sent."""
    def pid(obj):
        if obj is nilchan:
            return ("ref", -1, "chan")
        for cls, kind in _KIND:
            if isinstance(obj, cls):
                with _lock:
                    ref = _ref_of.get(id(obj))
                    if ref is None or _refs[ref][0] is not obj:
                        ref = next(_next_ref)
                        _refs[ref] = (obj, kind)
                        _ref_of[id(obj)] = ref
                    held = _held.setdefault(dest, {})
                    held[ref] = held.get(ref, 0) + 1
                sent.append(ref)
                return ("ref", ref, kind)
        if isinstance(obj, BaseException):
            for name, exc in _EXC.items():
                if type(obj) is exc:
                    return ("exc", name, obj.args)
        return None
    return pid


def _drop_locked(ref):
    # _lock held: proxies of ref are gone; forget it if no worker holds one.
    if any(ref in held for held in _held.values()):
        return
    obj = _refs.pop(ref, (None,))[0]
    if obj is not None and _ref_of.get(id(obj)) == ref:
        del _ref_of[id(obj)]


def _release(dest, refs):
    """Proxies of refs died in worker dest (or were never delivered)."""
    if not refs:
        return
    with _lock:
        held = _held.get(dest)
        if held is None:            # the worker has ended
            return
        for ref in refs:
            k = held.get(ref, 0)
            if k <= 0:
                continue
            if k == 1:
                del held[ref]
            else:
                held[ref] = k - 1
            _drop_locked(ref)


def _release_worker(dest):
    """Worker dest has ended: every proxy it held is gone."""
    with _lock:
        for ref in _held.pop(dest, {}):
            _drop_locked(ref)


def _dumps_to(dest, v):
    sent: list = []
    try:
        return _worker.dumps(v, _pid_to(dest, sent))
    except BaseException:
        _release(dest, sent)
        raise


def _pload(pid):
    tag, a, b = pid
    if tag == "ref":
        return _deref(a)[0]
    return _EXC[a](*b)


def _serve(payload):
    """A worker's call on a main-interpreter object, run by its goroutine
    in the main interpreter (src/interp.c's _xcall)."""
    dest = _goroutines.get(_core.goid())
    try:
        ref, name, args, released = _worker.loads(payload, _pload)
        _release(dest, released)
        if ref == 0:
            ans = ("ok", _select(args))
        else:
            obj, kind = _deref(ref)
            if name not in _METHODS[kind]:
                raise AttributeError(f"goroutine.interp: {kind}.{name} "
                                     "cannot be called from a worker "
                                     "interpreter")
            if name == "_L":        # Cond.L, an attribute
                ans = ("ok", obj.L)
            else:
                ans = ("ok", getattr(obj, name)(*args))
    except Exception as e:
        e.__traceback__ = None
        ans = ("err", e)
    try:
        return _dumps_to(dest, ans)
    except TypeError as e:
        return _dumps_to(dest, ("err", e))


def _deref(ref):
    # ref -1 is goroutine_worker.nilchan: the main interpreter's nilchan.
    return (nilchan, "chan") if ref == -1 else _refs[ref]


def _select(ops):
    # A worker's select (goroutine_worker.select): its cases rebuilt on
    # the channels themselves, and goroutine.select run here, as the
    # worker's goroutine, so every rule is the main runtime's.
    cases = []
    for op in ops:
        if op[0] == "default":
            cases.append(default)
            continue
        obj, kind = _deref(op[1])
        if kind != "chan":
            raise TypeError(f"select: a case needs a chan, not a {kind}")
        if op[0] == "send":
            cases.append((obj.send, op[2]))
        elif op[0] == "recv_":
            cases.append(obj.recv_)
        else:
            cases.append(obj.recv)
    return select(*cases)


if supported:
    _core._interp_register(_serve)


# goid -> (pool, worker index) of each goroutine inside a worker, for
# runtime.stack().
_goroutines: Dict[int, Tuple[Any, int]] = {}


def _stack_info():
    """{goid: (interpreter id, worker-side frames as text)} for
    runtime.stack()."""
    out = {}
    for goid, (pool, i) in list(_goroutines.items()):
        w = pool._workers[i]
        try:
            out[goid] = (_core._interp_id(w), "")
        except RuntimeError:
            continue
    seen = set()
    for goid, (pool, i) in list(_goroutines.items()):
        w = pool._workers[i]
        if id(w) in seen:
            continue
        seen.add(id(w))
        try:
            for g, text in _core._interp_frames(w):
                if g in out:
                    out[g] = (out[g][0], text)
        except RuntimeError:        # ended meanwhile
            pass
    return out


def _body(pool, i, payload):
    me = _core.goid()
    _goroutines[me] = (pool, i)
    try:
        ans = _core._interp_run(pool._workers[i], payload, me)
    finally:
        _goroutines.pop(me, None)
        pool._left(i)
    tag, val, released = _worker.loads(ans, _pload)
    _release((pool, i), released)
    if tag == "err":
        raise val


class Pool:
    """Pool(n): n worker interpreters, each with its own GIL."""

    def __init__(self, n):
        if not supported:
            raise RuntimeError(
                "goroutine.interp needs CPython 3.12 or later (interpreters "
                "with their own GIL, PEP 684); this is "
                f"{sys.version_info.major}.{sys.version_info.minor}")
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"Pool: n must be an int, not "
                            f"{type(n).__name__}")
        if n < 1:
            raise ValueError("Pool: n must be at least 1")
        path = _worker.__file__
        paths = b"\0".join(os.fsencode(p) for p in sys.path
                           if isinstance(p, str))
        self._lock = threading.Lock()
        self._closed = False
        self._workers = []
        self._inside = []           # goroutines started, not yet ended
        self._rr = 0
        self._ended = 0             # workers ended (pool leaves _pools)
        self._gone: Any = chan()    # closed when every worker has ended
        try:
            for _ in range(n):
                self._workers.append(_core._interp_new(path, paths))
                self._inside.append(0)
        except BaseException:
            for w in self._workers:
                _core._interp_end(w)
            raise
        self._pid = os.getpid()
        with _lock:
            _pools.add(self)

    def __len__(self):
        return len(self._workers)

    def go(self, fn, *args, **kw):
        """go(fn, *args, **kw): run fn(*args, **kw) as a goroutine of the
        next worker interpreter."""
        if not callable(fn):
            raise TypeError(f"Pool.go: fn must be callable, not "
                            f"{type(fn).__name__}")
        mod = getattr(fn, "__module__", None)
        qn = getattr(fn, "__qualname__", None)
        if not isinstance(mod, str) or not isinstance(qn, str) or \
                "<" in qn:
            raise TypeError(
                f"Pool.go: {fn!r} cannot be found in a worker interpreter: "
                "pass a function defined at the top level of a module (or "
                "a class in one), not a lambda, local or bound method")
        mainfile = None
        if mod == "__main__":
            mainfile = getattr(sys.modules["__main__"], "__file__", None)
        with self._lock:
            if self._closed or self._pid != os.getpid():
                raise RuntimeError("goroutine.interp: go on a closed Pool")
            i = self._rr
            self._rr = (i + 1) % len(self._workers)
            self._inside[i] += 1
        sent: list = []
        try:
            payload = _worker.dumps((mod, qn, mainfile, args, kw),
                                    _pid_to((self, i), sent))
            go(_body, self, i, payload)
        except BaseException:
            _release((self, i), sent)
            self._left(i)
            raise

    def _left(self, i):
        with self._lock:
            self._inside[i] -= 1
            # At exit _at_exit ends the workers: a goroutine must not, as
            # finalization may begin while it waits for a worker's GIL.
            end = self._closed and self._inside[i] == 0 and not _exiting
        if end:
            self._end(i)

    def _end(self, i):
        _core._interp_end(self._workers[i])
        _release_worker((self, i))
        with self._lock:
            self._ended += 1
            gone = self._ended == len(self._workers)
        if gone:
            self._gone.close()
            with _lock:
                _pools.discard(self)

    def close(self, wait=False):
        """close(wait=False): refuse new goroutines; end each worker
        interpreter when its last goroutine has ended (at once for an idle
        one).  With wait=True, also block until every worker has ended.
        Idempotent."""
        with self._lock:
            first = not self._closed
            self._closed = True
            idle = [i for i, k in enumerate(self._inside) if k == 0] \
                if first else []
        for i in idle:
            self._end(i)
        if wait:
            self._gone.recv()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        ids = [_core._interp_id(w) for w in self._workers]
        state = "closed" if self._closed else "open"
        return f"<goroutine.interp.Pool {state} interpreters={ids}>"


@atexit.register
def _at_exit():
    # Before CPython ends leftover subinterpreters (3.13+ abort while a
    # thread state of ours is in one): goroutines running in a worker get
    # SystemExit, ones parked from one lose their worker thread state, and
    # every worker is ended once empty (docs/design.md).
    import time
    global _exiting
    _exiting = True
    with _lock:
        pools = list(_pools)
    for pool in pools:
        if pool._pid != os.getpid():
            continue
        with pool._lock:
            pool._closed = True
        for i, w in enumerate(pool._workers):
            running = 0
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    running, _ = _core._interp_stop(w)
                except RuntimeError:        # ended already
                    break
                if running == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            if running == 0:
                try:
                    pool._end(i)
                except (RuntimeError, ValueError):
                    pass
