"""goroutine.interp: goroutines in worker interpreters with their own GIL
(issue 19).  Worker functions live in tests/interp_workers.py, which a
worker imports by name.  Every channel rule is checked with sender and
receiver in different interpreters."""
import os
import sys

import pytest

from conftest import TSAN, run_py
from goroutine import chan, default, select, Panic, excepthook
import goroutine
from goroutine import context, interp, sync

import interp_workers as W

NEW = sys.version_info >= (3, 12)
needs_workers = pytest.mark.skipif(not NEW, reason="PEP 684 is 3.12+")
TESTS = os.path.dirname(os.path.abspath(__file__))


def test_before_312_a_clear_error():
    assert interp.supported is NEW
    if NEW:
        pytest.skip("3.12+ has worker interpreters")
    with pytest.raises(RuntimeError, match="needs CPython 3.12 or later"):
        interp.Pool(1)


@pytest.fixture
def pool():
    p = interp.Pool(2)
    yield p
    p.close()


@needs_workers
def test_bad_arguments(pool):
    with pytest.raises(ValueError):
        interp.Pool(0)
    with pytest.raises(TypeError):
        interp.Pool("2")
    with pytest.raises(TypeError, match="must be callable"):
        pool.go(3)
    with pytest.raises(TypeError, match="cannot be found in a worker"):
        pool.go(lambda: None)
    with pytest.raises(TypeError, match="cannot copy Unpicklable into another interpreter"):
        pool.go(W.echo, W.Unpicklable(), chan())


@needs_workers
def test_runs_in_a_worker_without_goroutine(pool):
    c = chan()
    pool.go(W.report, c)
    pool.go(W.report, c)
    a, b = c.recv(), c.recv()
    assert a[0] != 0 and b[0] != 0 and a[0] != b[0]   # two workers
    assert a[1:] == (False, True) and b[1:] == (False, True)
    assert W.where() == 0


@needs_workers
def test_values_of_every_kind_are_copied_both_ways(pool):
    inp, out = chan(), chan()
    pool.go(W.echo, inp, out)
    values = [None, True, False, 0, -1, 2**100, 1.5, float("inf"), "",
              "héllo", b"", b"\x00\xff", (), (1, ("a", b"b", None), 2.0),
              [1, [2]], {"k": (1, 2)}, {1, 2}, W.Point(1, 2),
              ValueError("x")]
    for v in values:
        inp.send(v)
        name, back = out.recv()
        assert name == type(v).__name__
        if isinstance(v, Exception):
            assert back.args == v.args
        else:
            assert back == v
    inp.close()
    assert out.recv_() == (None, False)


@needs_workers
def test_unpicklable_value_raises_in_the_sender(pool):
    c = chan(1)
    pool.go(W.send_unpicklable, c)
    assert "cannot copy Unpicklable into another interpreter" in c.recv()


@needs_workers
def test_unbuffered_rendezvous_both_directions(pool):
    c, out = chan(), chan()
    pool.go(W.recv_n, c, 3, out)            # worker receives from main
    for v in (1, "two", (3,)):
        c.send(v)
    assert out.recv() == (1, "two", (3,))
    pool.go(W.send_all, c, [4, 5])          # worker sends to main
    assert [c.recv(), c.recv()] == [4, 5]


@needs_workers
def test_buffered_len_cap_and_order(pool):
    c, out = chan(5), chan()
    pool.go(W.buffered, c, out)
    assert out.recv() == (2, 5)
    assert len(c) == 2 and c.recv() == 1 and c.recv() == 2


@needs_workers
def test_close_rules_across(pool):
    c, out = chan(1), chan()
    c.send("last")
    c.close()
    pool.go(W.try_, "recv_", c, out)        # drains the buffer first
    assert out.recv() == ("ok", ("last", True))
    pool.go(W.try_, "recv_", c, out)
    assert out.recv() == ("ok", (None, False))
    pool.go(W.try_, "recv", c, out)
    assert out.recv() == ("ok", None)
    pool.go(W.try_, "send", c, out, 1)
    assert out.recv() == ("Panic", "send on closed channel")
    pool.go(W.try_, "close", c, out)
    assert out.recv() == ("Panic", "close of closed channel")
    # closing in a worker wakes a receiver parked in the main interpreter
    d = chan()
    pool.go(W.try_, "close", d, out)
    assert d.recv_() == (None, False)
    assert out.recv() == ("ok", None)
    # a worker's sender parked on a channel the main interpreter closes
    e = chan()
    pool.go(W.try_, "send", e, out, 1)
    while not goroutine.runtime.num_goroutine() or \
            "chan send" not in goroutine.runtime.stack():
        goroutine.time.sleep(0.01)
    e.close()
    assert out.recv() == ("Panic", "send on closed channel")


@needs_workers
def test_nilchan_from_a_worker_panics_on_close(pool):
    out = chan()
    pool.go(W.try_, "close", goroutine.nilchan, out)
    assert out.recv() == ("Panic", "close of nil channel")


@needs_workers
def test_worker_to_worker_ping_pong(pool):
    a, b, c = chan(), chan(), chan()
    pool.go(W.ping, a, b, 100)              # worker 1
    pool.go(W.ping, b, c, 100)              # worker 2
    for i in range(100):
        a.send(i)
        assert c.recv() == i + 2


@needs_workers
def test_parked_in_one_interpreter_woken_from_another(pool):
    # worker 1 parks receiving; worker 2 sends; main only watches
    c, out = chan(), chan()
    pool.go(W.recv_n, c, 1, out)
    pool.go(W.send_all, c, ["from worker 2"])
    assert out.recv() == ("from worker 2",)


@needs_workers
def test_waitgroup_across(pool):
    wg = sync.WaitGroup()
    go_on = chan()
    wg.add(4)
    for _ in range(4):
        pool.go(W.wg_done, wg, go_on)
    for _ in range(4):
        go_on.send(None)
    wg.wait()


@needs_workers
def test_context_cancellation_reaches_a_worker(pool):
    ctx, cancel = context.with_cancel(context.background())
    out = chan()
    pool.go(W.ctx_wait, ctx, out)
    pool.go(W.ctx_wait, ctx, out)
    cancel()
    assert out.recv() == ("Canceled", "context canceled")
    assert out.recv() == ("Canceled", "context canceled")


@needs_workers
def test_exception_in_a_worker_reaches_excepthook(pool, monkeypatch):
    seen = chan(1)
    monkeypatch.setattr(goroutine, "excepthook",
                        lambda info: seen.send(info.exc_value))
    pool.go(W.boom, "bad value")
    e = seen.recv()
    assert type(e) is ValueError and e.args == ("bad value",)
    assert "in worker interpreter" in "".join(e.__notes__)
    assert "interp_workers.py" in "".join(e.__notes__)


@needs_workers
def test_recursion_is_an_error_not_a_crash(pool):
    out = chan()
    pool.go(W.recurse, out)
    assert out.recv() == "RecursionError"


@needs_workers
def test_close_with_goroutines_parked_loses_nothing():
    p = interp.Pool(1)
    ready, c = chan(), chan()
    p.go(W.park, ready, c)
    ready.recv()
    p.close()
    with pytest.raises(RuntimeError, match="closed Pool"):
        p.go(W.park, ready, c)
    w = p._workers[0]
    assert goroutine._core._interp_busy(w) == 1
    c.send("wake")                          # the parked one finishes
    p.close(wait=True)
    with pytest.raises(RuntimeError, match="has ended"):
        goroutine._core._interp_stop(w)
    p.close()                               # idempotent


@needs_workers
@pytest.mark.parametrize("state", ["spin", "park"])
def test_exit_with_workers_busy(state):
    r = run_py(f"""
        import sys
        sys.path.insert(0, {TESTS!r})
        from goroutine import chan, interp
        import interp_workers as W
        p = interp.Pool(2)
        ready = chan()
        keep = chan()
        p.go(W.{state}, ready, *([keep] if {state!r} == "park" else []))
        p.go(W.{state}, ready, *([keep] if {state!r} == "park" else []))
        ready.recv(); ready.recv()
        print("main done", flush=True)
    """, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "main done" in r.stdout
    assert "Fatal Python error" not in r.stderr
    assert "panic" not in r.stderr, r.stderr


@needs_workers
@pytest.mark.skipif(TSAN, reason="TSan cannot start threads in the child "
                    "of a multi-threaded fork")
def test_fork_after_close_child_makes_its_own_pool():
    # CPython 3.12/3.13 itself crash the child of a fork made while any
    # subinterpreter exists (_PyInterpreterState_DeleteExceptMain; a bare
    # _interpreters.create() then os.fork() does it), so pools are closed
    # before forking; the child then makes its own.
    r = run_py(f"""
        import os, sys, warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        sys.path.insert(0, {TESTS!r})
        from goroutine import chan, interp
        import interp_workers as W
        p = interp.Pool(1)
        c = chan(); p.go(W.send_all, c, [1]); assert c.recv() == 1
        p.close(wait=True)
        pid = os.fork()
        if pid == 0:
            try:
                p.go(W.send_all, c, [2])
                os._exit(3)
            except RuntimeError as e:
                print("child:", e, flush=True)
            q = interp.Pool(1)
            q.go(W.send_all, c, [5])
            print("child got", c.recv(), flush=True)
            q.close()
            os._exit(0)
        _, st = os.waitpid(pid, 0)
        print("status", os.waitstatus_to_exitcode(st), flush=True)
    """, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "child: goroutine.interp: go on a closed Pool" in r.stdout
    assert "child got 5" in r.stdout
    assert "status 0" in r.stdout


@needs_workers
def test_import_goroutine_in_a_worker_is_a_clear_importerror(pool):
    c = chan()
    pool.go(W.import_goroutine, c)
    kind, msg = c.recv()
    assert kind == "ImportError" and "goroutine._core" in msg, msg
    assert "subinterpreter" in msg, msg


@needs_workers
def test_goroutines_entering_and_leaving_one_worker_at_once():
    # 3.12 gave a new thread state the interpreter's static first one
    # whenever no other was listed, and reset it only after unlisting it:
    # a goroutine entering an idle worker while another left aborted the
    # process ("init_threadstate: thread state already initialized")
    # until each worker kept its first thread state.
    r = run_py(f"""
        import sys
        sys.path.insert(0, {TESTS!r})
        from goroutine import chan, interp
        import interp_workers as W
        p = interp.Pool(1)
        c = chan(64)
        for _ in range(300):
            p.go(W.send_all, c, [1])
        print("sum", sum(c.recv() for _ in range(300)), flush=True)
        p.close(wait=True)
    """, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-2000:])
    assert "sum 300" in r.stdout


@needs_workers
def test_deadlock_detection_counts_worker_goroutines():
    # A goroutine parked from a worker is parked like any other: with the
    # main thread waiting too, nothing can wake anyone.  (A subprocess:
    # pytest-timeout's signal handler turns the detection off here.)
    r = run_py(f"""
        import sys
        sys.path.insert(0, {TESTS!r})
        import goroutine
        from goroutine import chan, interp
        import interp_workers as W
        p = interp.Pool(1)
        ready, d, c = chan(), chan(), chan()
        p.go(W.park, ready, d)
        ready.recv()
        try:
            c.recv()
        except goroutine.Deadlock as e:
            print("Deadlock:", e, flush=True)
        d.close()
        p.close(wait=True)
        print("closed", flush=True)
    """, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-2000:])
    assert "Deadlock: all goroutines are asleep - deadlock!" in r.stdout
    assert "closed" in r.stdout


# ---- select in a worker (goroutine_worker.select) ----

def _parked(what, n=1):
    # Until n goroutines are parked in `what` (a stack() state).
    while goroutine.runtime.stack().count(f"[{what}") < n:
        goroutine.time.sleep(0.01)


@needs_workers
def test_select_recv_ready_from_main(pool):
    c, d, out = chan(1), chan(), chan()
    c.send("x")
    pool.go(W.select_spec, [("recv", d), ("recv", c)], out)
    assert out.recv() == ("ok", (1, "x"))
    c.send("y")
    pool.go(W.select_spec, [("recv_", c)], out)
    assert out.recv() == ("ok", (0, ("y", True)))


@needs_workers
def test_select_send_case_and_copy(pool):
    c, out = chan(), chan()
    pool.go(W.select_spec, [("recv", chan()), ("send", c, [1, {"k": 2}])],
            out)
    assert c.recv() == [1, {"k": 2}]
    assert out.recv() == ("ok", (1, None))


@needs_workers
def test_select_default_only_when_none_ready(pool):
    c, out = chan(1), chan()
    pool.go(W.select_spec, [("recv", c), ("default",)], out)
    assert out.recv() == ("ok", (1, None))
    c.send(7)
    pool.go(W.select_spec, [("default",), ("recv", c)], out)
    assert out.recv() == ("ok", (1, 7))
    pool.go(W.select_spec, [("send", chan(), 1), ("default",)], out)
    assert out.recv() == ("ok", (1, None))


@needs_workers
def test_select_nil_channel_never_chosen(pool):
    c, out = chan(1), chan()
    pool.go(W.select_spec, [("nil",), ("nilsend",), ("default",)], out)
    assert out.recv() == ("ok", (2, None))
    # a nil case passed in from main (goroutine.nilchan) is the same
    pool.go(W.select_spec, [("recv", goroutine.nilchan), ("recv", c)], out)
    _parked("select")
    c.send(5)
    assert out.recv() == ("ok", (1, 5))


@needs_workers
def test_select_closed_channel_rules(pool):
    c, out = chan(), chan()
    c.close()
    pool.go(W.select_spec, [("recv", c), ("recv", chan())], out)
    assert out.recv() == ("ok", (0, None))
    pool.go(W.select_spec, [("recv_", c)], out)
    assert out.recv() == ("ok", (0, (None, False)))
    pool.go(W.select_spec, [("send", c, 1)], out)
    assert out.recv() == ("Panic", "send on closed channel")
    # parked in select, woken by a close from main
    d = chan()
    pool.go(W.select_spec, [("recv_", d), ("nil",)], out)
    _parked("select")
    d.close()
    assert out.recv() == ("ok", (0, (None, False)))


@needs_workers
def test_select_random_among_ready(pool):
    a, b, out = chan(400), chan(400), chan()
    for i in range(400):
        a.send(i)
        b.send(i)
    pool.go(W.select_spec, [("recv", a), ("recv", b)], out, 400)
    kind, res = out.recv()
    assert kind == "ok"
    first = sum(1 for i, _ in res if i == 0)
    # uniform choice: 400 draws land outside [100, 300] with p < 1e-20
    assert 100 <= first <= 300, first
    assert sorted(v for i, v in res if i == 0) == list(range(first))


@needs_workers
def test_select_parks_and_is_woken_from_main_and_another_worker(pool):
    a, b, out = chan(), chan(), chan()
    pool.go(W.select_spec, [("recv", a), ("recv", b)], out)
    _parked("select")
    b.send("main")
    assert out.recv() == ("ok", (1, "main"))
    # the other side in the other worker (round-robin: worker 2, then 1)
    pool.go(W.select_spec, [("recv", a), ("send", b, "sent")], out)
    pool.go(W.send_all, a, ["from a worker"])
    assert out.recv() == ("ok", (0, "from a worker"))
    # a send case taken by a receiver in another worker
    pool.go(W.select_spec, [("send", a, "to a worker"), ("recv", b)], out)
    pool.go(W.recv_n, a, 1, out)
    got = {out.recv(), out.recv()}
    assert got == {("ok", (0, None)), ("to a worker",)}


@needs_workers
def test_select_bad_cases_raise_typeerror(pool):
    out = chan()
    pool.go(W.select_spec, [("bad", 3)], out)
    kind, msg = out.recv()
    assert kind == "TypeError" and msg.startswith("select: case 0 must be")
    pool.go(W.select_spec, [("default",), ("default",)], out)
    assert out.recv() == ("TypeError", "select: multiple default cases")
    # a WaitGroup is not a channel: refused in the main interpreter
    pool.go(W.select_spec, [("bad", (sync.WaitGroup(), 1))], out)
    kind, msg = out.recv()
    assert kind == "TypeError" and msg.startswith("select: case 0 must be")


# ---- sync types across ----

def _nothing_on(out):
    return select(out.recv, default) == (1, None)


@needs_workers
def test_mutex_held_in_main_wakes_a_worker_on_unlock(pool):
    m, out = sync.Mutex(), chan()
    m.lock()
    gate = chan()
    pool.go(W.run_ops, m, [("try_lock",), ("lock",), ("locked",),
                           ("gate", gate), ("unlock",), ("unlock",)], out)
    assert out.recv() == ("ok", "try_lock", False)
    _parked("sync.Mutex.Lock")
    assert _nothing_on(out)
    m.unlock()
    assert out.recv() == ("ok", "lock", None)
    assert out.recv() == ("ok", "locked", True)
    assert m.try_lock() is False            # held by the worker
    gate.send(None)
    assert out.recv() == ("ok", "unlock", None)
    assert out.recv() == ("Panic", "unlock", "sync: unlock of unlocked mutex")
    assert m.try_lock() is True
    # held in one worker, waited for in the other, and `with`
    pool.go(W.run_ops, m, [("with",)], out)
    _parked("sync.Mutex.Lock")
    m.unlock()
    assert out.recv() == ("ok", "with", None)   # sent inside the with
    m.lock()                                # the worker's exit unlocks
    m.unlock()


@needs_workers
def test_rwmutex_across(pool):
    rw, out = sync.RWMutex(), chan()
    rw.rlock()
    gate = chan()
    pool.go(W.run_ops, rw, [("try_rlock",), ("runlock",), ("try_lock",),
                            ("lock",), ("gate", gate), ("unlock",)], out)
    assert out.recv() == ("ok", "try_rlock", True)
    assert out.recv() == ("ok", "runlock", None)
    assert out.recv() == ("ok", "try_lock", False)
    _parked("sync.RWMutex.Lock")
    rw.runlock()
    assert out.recv() == ("ok", "lock", None)
    assert rw.try_rlock() is False          # the worker writes
    gate.send(None)
    assert out.recv() == ("ok", "unlock", None)
    assert rw.try_lock() is True
    rw.unlock()


@needs_workers
def test_cond_across(pool):
    m = sync.Mutex()
    cond = sync.Cond(m)
    ready, out = chan(), chan()
    pool.go(W.cond_wait, cond, m, ready, out)
    ready.recv()
    _parked("sync.Cond.Wait")
    with m:                                 # wait() let m go
        cond.signal()
    assert out.recv() == ("woken", False)   # relocked m before returning
    m.lock()                                # then unlocked it
    m.unlock()
    pool.go(W.run_ops, cond, [("L",)], out)
    assert out.recv() == ("ok", "L", "Mutex")


@needs_workers
def test_sema_across(pool):
    s, out = sync.Sema(2), chan()
    s.acquire(2)
    pool.go(W.run_ops, s, [("try_acquire",), ("acquire", 2), ("release",)],
            out)
    assert out.recv() == ("ok", "try_acquire", False)
    _parked("semacquire")
    s.release(2)
    assert out.recv() == ("ok", "acquire", None)
    assert out.recv() == ("ok", "release", None)
    assert s.try_acquire(1) and not s.try_acquire(1)


@needs_workers
def test_stack_names_the_interpreter_and_shows_worker_frames(pool):
    ready, c = chan(), chan()
    pool.go(W.park_deep, ready, c)
    wid = ready.recv()
    _parked("chan receive")
    dump = goroutine.runtime.stack()
    block = next(b for b in dump.split("\n\n") if "park_deep" in b)
    head = block.splitlines()[0]
    assert head.endswith(f"[chan receive, interpreter {wid}]:"), block
    lines = block.splitlines()
    # main frames into the worker, the worker's own frames, then the
    # main-side frames of the receive: in call order
    at = [i for i, l in enumerate(lines) if ", in " in l]
    names = [lines[i].rsplit(", in ", 1)[1] for i in at]
    assert names.index("_body") < names.index("park_deep") < \
        names.index("inner_wait") < names.index("_serve"), block
    assert "interp_workers.py" in block and "_worker.py" not in block
    # the main thread's own goroutine-less header is unchanged
    assert "interpreter 0" not in dump
    c.send(None)


# ---- objects passed by reference are released ----

def _dies(wr):
    # until the main object is collected (bounded by pytest-timeout)
    import gc
    while wr() is not None:
        gc.collect()
        goroutine.time.sleep(0.01)


@needs_workers
def test_objects_passed_by_reference_are_released(pool):
    import weakref
    c, out = chan(1), chan()
    m, cancel = context.with_cancel(context.background())
    wr, wm = weakref.ref(c), weakref.ref(m)
    pool.go(W.send_all, c, [1])
    pool.go(W.run_ops, m, [("err",)], out)   # (sync types: no weakrefs)
    assert c.recv() == 1
    assert out.recv() == ("ok", "err", None)
    cancel()
    del cancel
    del c, m
    _dies(wr)                   # while the pool is open
    _dies(wm)
    # one kept by the worker lives until the worker lets it go
    c = chan()
    wr = weakref.ref(c)
    pool.go(W.keep, c, out)
    assert out.recv() == 1
    del c
    import gc
    for _ in range(5):
        gc.collect()
        goroutine.time.sleep(0.01)
    assert wr() is not None
    pool.go(W.drop, out)        # round-robin: the same worker (2 goes)
    pool.go(W.drop, out)
    assert out.recv() == 0 and out.recv() == 0
    _dies(wr)


@needs_workers
def test_objects_kept_in_a_worker_are_released_when_the_pool_closes():
    import weakref
    p = interp.Pool(1)
    c, out = chan(), chan()
    wr = weakref.ref(c)
    p.go(W.keep, c, out)
    assert out.recv() == 1
    del c
    p.close(wait=True)
    _dies(wr)
