"""goroutine.sync: API.md's sync section."""
import threading
import time as _t

import pytest

from goroutine import Panic, chan, context, default, go, runtime, select
from goroutine import sync


def test_mutex_excludes_across_goroutines_and_threads_with_gosched_inside():
    m = sync.Mutex()
    inside = [0]
    count = [0]
    bad = []
    wg = sync.WaitGroup()

    def work(n):
        for _ in range(n):
            m.lock()
            inside[0] += 1
            if inside[0] != 1:
                bad.append(inside[0])
            runtime.gosched()
            _t.sleep(0)
            count[0] += 1
            inside[0] -= 1
            m.unlock()
    for _ in range(6):
        wg.go(work, 300)
    ts = [threading.Thread(target=work, args=(300,)) for _ in range(3)]
    for t in ts:
        t.start()
    wg.wait()
    for t in ts:
        t.join()
    assert bad == [] and count[0] == 9 * 300


def test_mutex_context_manager_and_try_lock():
    m = sync.Mutex()
    with m:
        assert m.try_lock() is False
        assert m.locked()
    assert m.try_lock() is True
    m.unlock()


def test_unlock_of_unlocked_mutex_panics_with_gos_message():
    with pytest.raises(Panic) as e:
        sync.Mutex().unlock()
    assert str(e.value) == "sync: unlock of unlocked mutex"


def test_mutex_is_not_owned_another_goroutine_may_unlock():
    m = sync.Mutex()
    m.lock()
    done = chan()
    go(lambda: (m.unlock(), done.send(1)))
    done.recv()
    assert m.try_lock()
    m.unlock()


def test_mutex_waiters_are_not_starved():
    # A goroutine that relocks in a tight loop cannot keep a waiter out for
    # long: after 1 ms of waiting the mutex hands off FIFO.
    m = sync.Mutex()
    stop = chan()
    got = chan(1)

    def hog():
        while select(stop.recv, default)[0] == 1:
            m.lock()
            x = 0
            for i in range(200):
                x += i
            m.unlock()
            runtime.gosched()
    go(hog)
    go(hog)
    _t.sleep(0.01)
    t0 = _t.monotonic()
    go(lambda: (m.lock(), got.send(_t.monotonic() - t0), m.unlock()))
    waited = got.recv()
    stop.close()
    assert waited < 1.0


def test_rwmutex_readers_share_writers_exclude():
    rw = sync.RWMutex()
    rw.rlock()
    assert rw.try_rlock() is True
    assert rw.try_lock() is False
    rw.runlock()
    rw.runlock()
    assert rw.try_lock() is True
    assert rw.try_rlock() is False
    rw.unlock()


def test_rwmutex_waiting_writer_blocks_new_readers():
    rw = sync.RWMutex()
    rw.rlock()
    wrote = chan(1)
    go(lambda: (rw.lock(), wrote.send(1), rw.unlock()))
    # Until the writer waits (a fixed 20 ms sleep was too short once, under
    # a load average of 14: try_rlock then won before the writer came).
    deadline = _t.monotonic() + 30
    while "[sync.RWMutex.Lock]" not in runtime.stack():
        assert _t.monotonic() < deadline, runtime.stack()
        _t.sleep(0.005)
    assert rw.try_rlock() is False          # the writer is waiting
    rw.runlock()
    wrote.recv()
    assert rw.try_rlock() is True
    rw.runlock()


def test_rwmutex_misuse_panics():
    with pytest.raises(Panic, match="sync: RUnlock of unlocked RWMutex"):
        sync.RWMutex().runlock()
    with pytest.raises(Panic, match="sync: Unlock of unlocked RWMutex"):
        sync.RWMutex().unlock()


def test_rlocker_locks_for_reading():
    rw = sync.RWMutex()
    r = rw.rlocker()
    r.lock()
    assert rw.try_lock() is False and rw.try_rlock() is True
    rw.runlock()
    r.unlock()


def test_waitgroup_waits_for_all_and_go_adds_and_dones():
    wg = sync.WaitGroup()
    out = chan(100)
    for i in range(100):
        wg.go(out.send, i)
    wg.wait()
    assert len(out) == 100


def test_waitgroup_negative_counter_panics():
    with pytest.raises(Panic) as e:
        sync.WaitGroup().done()
    assert str(e.value) == "sync: negative WaitGroup counter"


def test_waitgroup_wait_from_many_goroutines_and_threads():
    wg = sync.WaitGroup()
    wg.add(1)
    woke = chan(10)
    for _ in range(3):
        go(lambda: (wg.wait(), woke.send(1)))
    t = threading.Thread(target=lambda: (wg.wait(), woke.send(1)))
    t.start()
    _t.sleep(0.02)
    assert len(woke) == 0
    wg.done()
    for _ in range(4):
        woke.recv()
    t.join()


def test_waitgroup_with_10000_goroutines():
    wg = sync.WaitGroup()
    for _ in range(10000):
        wg.go(lambda: None)
    wg.wait()


def test_once_runs_f_once_and_everyone_returns_after_it():
    once = sync.Once()
    calls = []
    done = chan(10)

    def f():
        _t.sleep(0.02)
        calls.append(1)
    for _ in range(5):
        go(lambda: (once.do(f), done.send(len(calls))))
    assert [done.recv() for _ in range(5)] == [1] * 5


def test_once_exception_counts_as_done_and_reaches_that_caller_only():
    once = sync.Once()
    with pytest.raises(ZeroDivisionError):
        once.do(lambda: 1 / 0)
    once.do(lambda: 1 / 0)      # not run again


def test_cond_signal_and_broadcast():
    m = sync.Mutex()
    c = sync.Cond(m)
    ready = [False]
    woke = chan(10)

    def waiter():
        with m:
            while not ready[0]:
                c.wait()
        woke.send(1)
    for _ in range(4):
        go(waiter)
    _t.sleep(0.02)
    with m:
        ready[0] = True
        c.signal()
    woke.recv()
    with m:
        c.broadcast()
    for _ in range(3):
        woke.recv()
    assert c.L is m


def test_cond_signal_between_unlock_and_sleep_is_not_lost():
    for _ in range(200):
        m = sync.Mutex()
        c = sync.Cond(m)
        flag = [False]
        done = chan(1)

        def waiter():
            m.lock()
            while not flag[0]:
                c.wait()
            m.unlock()
            done.send(1)
        go(waiter)
        m.lock()
        flag[0] = True
        c.signal()
        m.unlock()
        done.recv()


def test_sema_is_weighted_and_fifo():
    s = sync.Sema(3)
    s.acquire(2)
    assert s.try_acquire(2) is False
    assert s.try_acquire() is True
    order = chan(10)
    go(lambda: (s.acquire(3), order.send("big"), s.release(3)))
    _t.sleep(0.02)
    go(lambda: (s.acquire(1), order.send("small"), s.release(1)))
    _t.sleep(0.02)
    s.release(3)
    assert [order.recv(), order.recv()] == ["big", "small"]


def test_sema_over_release_panics():
    with pytest.raises(Panic):
        sync.Sema(1).release()


def test_workgroup_first_error_cancels_ctx_and_is_reraised():
    wg = sync.WorkGroup(context.background())
    seen = chan(1)

    def fails(ctx):
        raise ValueError("first")

    def waits(ctx):
        ctx.done().recv()
        seen.send(ctx.err())
    wg.go(waits)
    wg.go(fails)
    with pytest.raises(ValueError, match="first"):
        wg.wait()
    assert seen.recv() is context.canceled


def test_thread_blocked_on_mutex_wakes_on_unlock_from_goroutine():
    m = sync.Mutex()
    m.lock()
    got = []
    t = threading.Thread(target=lambda: (m.lock(), got.append(1), m.unlock()))
    t.start()
    _t.sleep(0.02)
    go(m.unlock)
    t.join(5)
    assert got == [1]


# Waking a list of waiters must not allocate: every waiter it wakes was
# already taken off its queue (and counted: readers, the semaphore's units),
# so a failed allocation there lost them for good.  _testcapi.set_nomemory
# makes every allocation fail for the duration of the one waking call.
NOMEM_WAKE = r"""
import sys, time as T
import _testcapi
from goroutine import go, chan, runtime, select, sync, time

N = 8
def parked_at_least(n):
    deadline = T.monotonic() + 10
    while runtime.stats()["parked"] < n:
        if T.monotonic() > deadline:
            sys.exit("waiters never parked")
        T.sleep(0.001)

def check(name, wake, block):
    got = chan(N)
    base = runtime.stats()["parked"]
    for i in range(N):
        go(lambda i=i: (block(), got.send(i)))
    parked_at_least(base + N)
    _testcapi.set_nomemory(0)
    try:
        wake()
    finally:
        _testcapi.remove_mem_hooks()
    for k in range(N):
        j, _ = select(got.recv, time.after(10).recv)
        if j != 0:
            print(name, "lost", N - k, "wakeups"); sys.exit(1)

rw = sync.RWMutex(); rw.lock()
check("RWMutex.unlock", rw.unlock, lambda: (rw.rlock(), rw.runlock()))
wg = sync.WaitGroup(); wg.add(1)
check("WaitGroup.done", wg.done, wg.wait)
mu = sync.Mutex(); c = sync.Cond(mu)
def cwait():
    mu.lock(); c.wait(); mu.unlock()
check("Cond.broadcast", c.broadcast, cwait)
print("ok")
"""


def test_waking_many_waiters_allocates_nothing_so_none_is_lost():
    from conftest import run_py
    r = run_py(NOMEM_WAKE, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
