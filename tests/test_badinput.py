"""Bad input gets a clear exception and leaves the runtime usable."""
import time as _time

import pytest

from goroutine import (chan, context, default, errgroup, go, runtime, select,
                       sync, time)


@pytest.mark.parametrize("bad", [None, "4", 1.5, -1, 2 ** 70])
def test_chan_size_must_be_a_reasonable_int(bad):
    with pytest.raises((TypeError, ValueError, OverflowError)):
        chan(bad)


@pytest.mark.parametrize("case", [None, 1, "x", (1, 2), (), chan(), print,
                                  (chan().recv, 1), [chan().recv]])
def test_select_rejects_what_is_not_a_case(case):
    with pytest.raises(TypeError):
        select(case)
    assert select(default) == (0, None)


def test_go_rejects_bad_callables_and_the_runtime_goes_on():
    for bad in (None, 1, "f"):
        with pytest.raises(TypeError):
            go(bad)
    out = chan(1)
    go(out.send, 1)
    assert out.recv() == 1


@pytest.mark.parametrize("bad", [None, "1", object()])
def test_durations_must_be_numbers(bad):
    with pytest.raises(TypeError):
        time.sleep(bad)
    with pytest.raises(TypeError):
        time.Timer(bad)


def test_huge_durations_do_not_overflow():
    t = time.Timer(1e300)
    assert t.stop() is True
    ctx, cancel = context.with_timeout(context.background(), 1e300)
    cancel()


def test_runtime_knobs_reject_bad_values():
    with pytest.raises(TypeError):
        runtime.gomaxprocs("2")
    with pytest.raises(TypeError):
        runtime.gomaxprocs(1, 2)


def test_sync_constructors_reject_bad_arguments():
    with pytest.raises(TypeError):
        sync.Mutex(1)
    with pytest.raises(ValueError):
        sync.Sema(-1)
    with pytest.raises(ValueError):
        sync.Sema(1).acquire(-1)
    with pytest.raises(TypeError):
        sync.WaitGroup().add("x")


def test_a_del_that_uses_the_runtime_while_a_channel_drops_values():
    # Re-entrancy: dropping a buffered value runs __del__, which sends on
    # another channel and starts a goroutine.
    log = chan(100)

    class Reenter:
        def __del__(self):
            log.send("del")
            go(log.send, "from goroutine")
    c = chan(5)
    for _ in range(5):
        c.send(Reenter())
    del c
    got = sorted(log.recv() for _ in range(10))
    assert got == ["del"] * 5 + ["from goroutine"] * 5


def test_errgroup_requires_callables():
    g = errgroup.Group()
    g.go(None)              # fails inside the goroutine: reported by wait
    with pytest.raises(TypeError):
        g.wait()


def test_a_cancel_reentering_the_context_tree_from_inside_it():
    # The GC can run a __del__ in the middle of the context tree's
    # critical section; a __del__ that cancels a context must not
    # deadlock its own thread.  A trace function makes that re-entry
    # happen at every line of context.py, deterministically.
    import sys
    import threading
    bg = context.background()
    others = [context.with_cancel(bg) for _ in range(200)]

    def local(frame, event, arg):
        if others:
            others.pop()[1]()
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename.endswith("context.py") \
            else None
    result = {}

    def work():
        sys.settrace(tracer)
        try:
            p, cancel = context.with_cancel(bg)
            kids = [context.with_timeout(p, 30) for _ in range(3)]
            grandkid, _ = context.with_cancel(kids[0][0])
            cancel()
            result["errs"] = [p.err(), grandkid.err()] + [
                k.err() for k, _ in kids]
            result["children"] = p._children
        finally:
            sys.settrace(None)
    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "a re-entrant cancel deadlocked"
    assert result["errs"] == [context.canceled] * 5
    assert result["children"] is None
    assert not others, "the re-entrant cancels did not all run"


def test_conversions_that_call_back_into_the_runtime():
    # __index__ / __float__ run user code in the middle of a runtime
    # call: it may itself use channels, goroutines and timers.
    class Size:
        def __index__(self):
            c = chan(1)
            go(c.send, 3)
            return c.recv()

    class Seconds(int):
        def __float__(self):
            time.sleep(0.001)
            return 0.002
    assert chan(Size()).cap() == 3
    t0 = _time.monotonic()
    time.sleep(Seconds(60))
    t = time.Timer(Seconds(60))
    assert t.c.recv() is not None
    assert _time.monotonic() - t0 < 30
