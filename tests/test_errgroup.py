"""goroutine.errgroup: API.md's errgroup section."""
import time as _t

import pytest

from goroutine import Panic, chan, context, errgroup, runtime
from goroutine.sync import Mutex


def test_wait_raises_the_first_exception_after_all_finished():
    g = errgroup.Group()
    finished = []

    def slow():
        _t.sleep(0.05)
        finished.append("slow")
    g.go(slow)
    g.go(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        g.wait()
    assert finished == ["slow"]


def test_wait_returns_when_all_succeed():
    g = errgroup.Group()
    out = chan(10)
    for i in range(10):
        g.go(out.send, i)
    g.wait()
    assert len(out) == 10


def test_with_context_cancels_on_first_error():
    g, ctx = errgroup.with_context(context.background())
    g.go(lambda: ctx.done().recv())
    g.go(lambda: (_ for _ in ()).throw(KeyError("k")))
    with pytest.raises(KeyError):
        g.wait()
    assert ctx.err() is context.canceled
    assert isinstance(context.cause(ctx), KeyError)


def test_set_limit_makes_a_worker_pool_never_over_the_limit():
    g = errgroup.Group()
    g.set_limit(8)
    m = Mutex()
    active = [0]
    peak = [0]
    done = [0]

    def job():
        with m:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        runtime.gosched()
        _t.sleep(0)
        with m:
            active[0] -= 1
            done[0] += 1
    for _ in range(1000):
        g.go(job)
    g.wait()
    assert done[0] == 1000 and peak[0] <= 8


def test_try_go_refuses_when_no_slot_is_free():
    g = errgroup.Group()
    g.set_limit(1)
    gate = chan()
    assert g.try_go(gate.recv) is True
    assert g.try_go(lambda: None) is False
    gate.close()
    g.wait()
    assert g.try_go(lambda: None) is True
    g.wait()


def test_changing_the_limit_with_active_goroutines_panics():
    g = errgroup.Group()
    gate = chan()
    g.go(gate.recv)
    with pytest.raises(Panic, match="modify limit"):
        g.set_limit(2)
    gate.close()
    g.wait()
