"""Reference and memory leaks: run each concept's operations in a loop and
check that object counts, a sentinel's refcount and traced memory stay
flat; on a debug build of CPython (make test-debug), that the interpreter's
total reference count stays flat too."""
import asyncio
import gc
import sys
import threading
import tracemalloc

import pytest

import goroutine
from goroutine import (Map, Panic, chan, context, default, errgroup, go,
                       nilchan, runtime, select, sync, time)

from conftest import _settle


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
    child.done()
    cancel()
    child.err()
    # The C tree's other paths: cause, merge with two links, after_func
    # linked and stopped, a child born cancelled, a fired deadline.
    p, cancel_p = context.with_cancel_cause(context.background())
    m, cancel_m = context.merge(p, context.with_value(p, "k", s))
    stop = context.after_func(m, lambda: None)
    stop()
    # The goroutine after_func starts is waited for: a burst of 3,000 of
    # them grows the pool of dead goroutines (thread states, ~280 bytes
    # each on 3.10), which is not a leak.
    ran = chan(1)
    context.after_func(p, lambda: ran.send(None))
    cancel_p(ValueError(s))
    ran.recv()
    context.cause(m)
    context.with_timeout(m, 10)[0].done()
    cancel_m()
    context.with_timeout(context.without_cancel(p), 0)[0].err()


def workload_time(s):
    t = time.Timer(10)
    t.stop()
    t.reset(10)
    t.stop()


def workload_select_many(s):
    # More cases than fit on the C stack: the heap path.
    chans = [chan(1) for _ in range(12)]
    chans[5].send(s)
    select(*[c.recv for c in chans])
    go(chans[9].send, s)
    select(*[c.recv_ for c in chans])
    select(*[(c.send, s) for c in chans], default)


def workload_map(s):
    m = Map({1: s, "k": s}, x=s)
    m[2] = s
    m[(1, "a")] = s
    m[2.0] = s
    m[float("nan")] = s
    m.get(1)
    m.get("missing", s)
    m.setdefault(3, s)
    m.setdefault(3, s)
    m.load(1)
    m.store(4, s)
    m.load_or_store(4, s)
    m.load_or_store(5, s)
    m.swap(5, s)
    m.compare_and_swap(5, s, s)
    m.compare_and_delete(5, s)
    m.load_and_delete(4)
    m.incr("n")
    m.incr("n", 2)
    list(m.items())
    list(m.values())
    c = m.copy()
    c.update(m)
    c.update({7: s}, y=s)
    c.update([(8, s)])
    assert m != c
    m.pop(1)
    m.pop("missing", s)
    del m[2]
    m.stats()
    c.clear()


def workload_goroutine(s):
    done = chan(3)
    go(lambda a, b=None: done.send((a, b)), s, b=s)

    def exits():
        try:
            runtime.goexit()
        finally:
            done.send(s)
    go(exits)
    seen = chan(1)
    hook = goroutine.excepthook
    goroutine.excepthook = lambda info: seen.send(info.exc_value)
    try:
        go(lambda: done.send(s) or [][0])
        seen.recv()
    finally:
        goroutine.excepthook = hook
    for _ in range(3):
        done.recv()
    block = chan()
    go(block.recv)
    runtime.stack()
    runtime.stats()
    block.send(s)


_loop = None


@pytest.fixture(autouse=True, scope="module")
def loop():
    """One event loop for every workload_async call: a loop per call
    (asyncio.run) would cost more than the workload."""
    global _loop
    _loop = asyncio.new_event_loop()
    yield
    _loop.close()


def workload_async(s):
    async def main():
        c = chan(1)
        await c.send_async(s)
        await c.recv_async()
        go(c.send, s)
        await c.recv_async_()
        t = asyncio.ensure_future(c.recv_async())
        await asyncio.sleep(0)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
        m = sync.Mutex()
        await m.lock_async()
        m.unlock()
    _loop.run_until_complete(main())


def _raises(exc, f, *args):
    try:
        f(*args)
    except exc:
        return
    raise AssertionError(f"{f} did not raise {exc.__name__}")


def workload_errors(s):
    """Go's panics and bad input: every error path gives its references
    back."""
    c = chan(1)
    c.close()
    _raises(Panic, c.send, s)
    _raises(Panic, c.close)
    _raises(Panic, nilchan.close)
    _raises(Panic, select, (c.send, s))
    _raises(ValueError, chan, -1)
    _raises(TypeError, select, s)
    _raises(TypeError, select, (c.recv, s))
    _raises(TypeError, select, default, default)
    _raises(TypeError, go, s)
    _raises(TypeError, chan(1).recv_only().send, s)
    _raises(Panic, sync.WaitGroup().done)
    _raises(Panic, sync.Mutex().unlock)
    _raises(Panic, sync.RWMutex().runlock)
    _raises(TypeError, time.sleep, s)
    _raises(ValueError, time.Ticker, 0)
    m = Map()
    _raises(TypeError, m.__setitem__, [1], s)
    _raises(KeyError, m.__getitem__, 1)
    _raises(ValueError, Map, [(1, s, s)])
    _raises(TypeError, context.with_cancel, None)

    def boom():
        raise ValueError(s)
    once = sync.Once()
    _raises(ValueError, once.do, boom)
    once.do(boom)
    g = errgroup.Group()
    g.go(boom)
    _raises(ValueError, g.wait)


def workload_typed_chan(s):
    """Typed channels convert at send (new objects for C.double and
    C.int) and refuse the sentinel; a select that fails on its second
    case gives back the first case's converted value."""
    d = chan(2, dtype="C.double")
    d.send(4)
    select((d.send, 5), default)
    d.recv()
    d.recv_()
    i = chan(dtype="C.int")
    go(i.send, 3.0)
    select(i.recv)
    _raises(TypeError, i.send, s)
    _raises(TypeError, select, (d.send, 1), (i.send, s))
    _raises(TypeError, chan.nil("C.bool").send, s)
    _raises(TypeError, chan, 1, s)
    d.close()
    d.recv()
    select(d.recv_)
    rw = sync.RWMutex()
    rw.lock()
    rw.unlock_to_rlock()
    rw.runlock()
    with sync.Sema():
        pass


WORKLOADS = [workload_chan, workload_select, workload_select_many,
             workload_sync, workload_context, workload_time, workload_map,
             workload_goroutine, workload_async, workload_errors,
             workload_typed_chan]


@pytest.mark.parametrize("work", WORKLOADS, ids=lambda f: f.__name__)
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


def _total_refcount_deltas(work, s, rounds=4, per_round=200):
    """sys.gettotalrefcount() growth over `rounds` rounds of `per_round`
    calls of work(s), after a warm-up (free lists, pooled goroutines and
    thread states, interned strings)."""
    for _ in range(50):
        work(s)
    baseline = runtime.num_goroutine()
    deltas = []
    for _ in range(rounds):
        _settle(baseline)
        time.sleep(0.02)        # timer stops are processed asynchronously
        gc.collect()
        before = sys.gettotalrefcount()
        for _ in range(per_round):
            work(s)
        _settle(baseline)
        time.sleep(0.02)
        gc.collect()
        deltas.append(sys.gettotalrefcount() - before)
    return deltas


needs_refcount_debug = pytest.mark.skipif(
    not hasattr(sys, "gettotalrefcount"),
    reason="sys.gettotalrefcount needs a debug build of CPython "
           "(make test-debug)")


@needs_refcount_debug
@pytest.mark.parametrize("work", WORKLOADS, ids=lambda f: f.__name__)
def test_total_reference_count_stays_flat(work):
    # One reference leaked per call is +200 in every round; caches and the
    # measurement itself move the count by a few (measured: 0-31).
    deltas = _total_refcount_deltas(work, Sentinel())
    assert min(deltas) < 50, f"total refcount grew by {deltas} per round"


@needs_refcount_debug
def test_total_refcount_check_sees_one_reference_kept_per_call():
    kept = []
    deltas = _total_refcount_deltas(kept.append, Sentinel())
    assert min(deltas) >= 200, deltas


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
