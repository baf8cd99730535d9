"""Reference and memory leaks: run each concept's operations in a loop and
check that object counts, a sentinel's refcount and traced memory stay
flat."""
import gc
import sys
import threading
import tracemalloc

import pytest

from goroutine import (Panic, chan, context, default, go, select, sync,
                       time)


class Sentinel:
    pass


def workload_chan(s):
    c = chan(2)
    c.send(s)
    c.send(s)
    c.recv()
    c.recv_()
    u = chan()
    go(u.send, s)
    u.recv()
    c.close()
    try:
        c.send(s)
    except Panic:
        pass
    list(c)


def workload_select(s):
    a, b = chan(1), chan()
    a.send(s)
    select(a.recv, b.recv, default)
    select((a.send, s), b.recv_, default)
    a.recv()
    go(lambda: select((b.send, s), a.recv))
    b.recv()


def workload_sync(s):
    m = sync.Mutex()
    with m:
        pass
    wg = sync.WaitGroup()
    wg.go(lambda: s)
    wg.wait()
    c = sync.Cond(m)
    with m:
        c.signal()
    sema = sync.Sema(2)
    sema.acquire(2)
    sema.release(2)


def workload_context(s):
    ctx, cancel = context.with_cancel(context.with_value(
        context.background(), "k", s))
    child, _ = context.with_timeout(ctx, 10)
    ctx.value("k")
    cancel()
    child.err()


def workload_time(s):
    t = time.Timer(10)
    t.stop()
    t.reset(10)
    t.stop()


@pytest.mark.parametrize("work", [workload_chan, workload_select,
                                  workload_sync, workload_context,
                                  workload_time],
                         ids=lambda f: f.__name__)
def test_no_reference_or_memory_growth(work):
    s = Sentinel()
    for _ in range(300):
        work(s)
    gc.collect()
    time.sleep(0.05)        # let goroutines and timer stops finish
    gc.collect()
    refs0 = sys.getrefcount(s)
    objs0 = len(gc.get_objects())
    tracemalloc.start()
    mem0 = tracemalloc.get_traced_memory()[0]
    for _ in range(3000):
        work(s)
    time.sleep(0.05)
    gc.collect()
    mem1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert sys.getrefcount(s) == refs0
    assert len(gc.get_objects()) - objs0 < 100
    assert mem1 - mem0 < 64 * 1024, f"{mem1 - mem0} bytes kept"


def test_values_in_a_dropped_channel_are_released():
    s = Sentinel()
    refs0 = sys.getrefcount(s)
    c = chan(10)
    for _ in range(10):
        c.send(s)
    del c
    assert sys.getrefcount(s) == refs0


def test_channel_in_a_cycle_is_collected():
    import weakref
    c = chan(1)
    box = [c]
    c.send(box)            # c -> buffer -> box -> c
    r = weakref.ref(c)
    del c, box
    gc.collect()
    assert r() is None
