"""Goroutines and the runtime module: API.md's Goroutines and runtime
sections."""
import contextvars
import ctypes
import threading
import time

import pytest

import goroutine
from goroutine import chan, go, runtime

from conftest import beyond_tsan_thread_limit, run_py


def test_go_returns_none_at_once_and_runs_f_with_args_and_kwargs():
    out = chan(1)
    assert go(lambda a, b=0: out.send(a + b), 1, b=2) is None
    assert out.recv() == 3


def test_go_rejects_non_callables():
    with pytest.raises(TypeError):
        go(42)
    with pytest.raises(TypeError):
        go()


def test_go_rejects_coroutine_functions_and_says_what_to_do():
    async def co():
        pass
    with pytest.raises(TypeError, match="asyncio.run"):
        go(co)


def test_go_from_threads_and_goroutines():
    out = chan(10)
    t = threading.Thread(target=lambda: go(out.send, "thread"))
    t.start()
    t.join()
    go(lambda: go(out.send, "nested"))
    assert sorted([out.recv(), out.recv()]) == ["nested", "thread"]


def test_goid_is_zero_outside_and_unique_inside():
    assert runtime.goid() == 0
    out = chan(100)
    for _ in range(20):
        go(lambda: out.send(runtime.goid()))
    ids = [out.recv() for _ in range(20)]
    assert all(i > 0 for i in ids)
    assert len(set(ids)) == 20


def test_num_goroutine_counts_live_goroutines():
    base = runtime.num_goroutine()
    block = chan()
    for _ in range(5):
        go(block.recv)
    assert runtime.num_goroutine() == base + 5
    block.close()


def test_goroutine_runs_in_a_copy_of_its_creators_context():
    var = contextvars.ContextVar("var", default="unset")
    var.set("creator")
    out = chan(1)

    def f():
        seen = var.get()
        var.set("goroutine")
        out.send((seen, var.get()))
    go(f)
    assert out.recv() == ("creator", "goroutine")
    assert var.get() == "creator"


def test_threading_local_is_per_goroutine():
    local = threading.local()
    local.x = "main"
    out = chan(10)
    gate = chan()

    def f(i):
        local.x = i
        gate.recv()         # park: others run and set their own x
        out.send((i, local.x))
    for i in range(5):
        go(f, i)
    time.sleep(0.02)
    gate.close()
    assert sorted(out.recv() for _ in range(5)) == [(i, i) for i in range(5)]
    assert local.x == "main"


def test_threading_local_does_not_leak_into_a_later_goroutine():
    local = threading.local()
    out = chan(1)
    go(lambda: setattr(local, "secret", 1) or out.send(None))
    out.recv()
    time.sleep(0.01)
    go(lambda: out.send(getattr(local, "secret", "clean")))
    assert out.recv() == "clean"


def test_gosched_lets_another_goroutine_run():
    order = chan(10)
    done = chan()
    runtime.gomaxprocs()    # start the scheduler

    def a():
        order.send("a1")
        runtime.gosched()
        order.send("a2")
        done.send(1)

    def b():
        order.send("b")
        done.send(1)
    go(a)
    go(b)
    done.recv()
    done.recv()
    got = [order.recv() for _ in range(3)]
    assert sorted(got) == ["a1", "a2", "b"]


def test_goexit_ends_the_goroutine_after_finally_blocks():
    out = chan(2)

    def f():
        try:
            runtime.goexit()
            out.send("not reached")
        finally:
            out.send("finally ran")
    go(f)
    assert out.recv() == "finally ran"
    time.sleep(0.02)
    assert len(out) == 0


def test_goexit_outside_a_goroutine_is_an_error():
    with pytest.raises(RuntimeError):
        runtime.goexit()


def test_stack_dumps_every_goroutine_in_gos_format():
    block = chan()

    def parked_in_recv():
        block.recv()
    go(parked_in_recv)
    time.sleep(0.02)
    dump = runtime.stack()
    assert "[chan receive]:" in dump
    assert "in parked_in_recv" in dump
    block.close()


def test_stats_has_the_scheduler_counters():
    s = runtime.stats()
    for k in ("goroutines_created", "running", "runnable", "parked", "ms",
              "idle_ms", "ps", "steals", "handoffs", "context_switches",
              "timers"):
        assert k in s


def test_gomaxprocs_reads_and_sets():
    prev = runtime.gomaxprocs()
    assert prev >= 1
    assert runtime.gomaxprocs(1) == prev
    assert runtime.gomaxprocs() == 1
    out = chan(10)
    for i in range(10):
        go(out.send, i)
    assert sorted(out.recv() for _ in range(10)) == list(range(10))
    assert runtime.gomaxprocs(prev) == 1


def test_num_cpu_matches_affinity():
    import os
    assert runtime.num_cpu() == len(os.sched_getaffinity(0))


def test_blocking_calls_hand_the_p_to_another_m():
    # 16 goroutines each in time.sleep(0.5): with P handoff they overlap;
    # without it they would take 16 * 0.5 / GOMAXPROCS seconds.
    done = chan(16)
    t0 = time.monotonic()
    for _ in range(16):
        go(lambda: (time.sleep(0.5), done.send(1)))
    for _ in range(16):
        done.recv()
    assert time.monotonic() - t0 < 2.0


def test_cpu_bound_goroutines_do_not_starve_a_third():
    stop = chan()
    ping, pong = chan(), chan()

    def spin():
        while True:
            x = 0
            for i in range(10000):
                x += i
            if goroutine.select(stop.recv, goroutine.default)[0] == 0:
                return
    for _ in range(2):
        go(spin)
    go(lambda: pong.send(ping.recv()))
    time.sleep(0.05)
    t0 = time.monotonic()
    ping.send(1)
    assert pong.recv() == 1
    latency = time.monotonic() - t0
    stop.close()
    assert latency < 1.0


def test_ctypes_callback_inside_a_goroutine_takes_the_gil_correctly():
    # The callback runs PyGILState_Ensure on the goroutine's OS thread; it
    # must find the goroutine's own thread state, also after migrating.
    libc = ctypes.CDLL(None)
    CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                           ctypes.POINTER(ctypes.c_int))
    calls = []

    def cmp(a, b):
        calls.append(runtime.goid())
        return a[0] - b[0]
    cb = CMP(cmp)
    out = chan(10)
    gate = chan()

    def f():
        arr = (ctypes.c_int * 5)(5, 1, 4, 2, 3)
        libc.qsort(arr, 5, ctypes.sizeof(ctypes.c_int), cb)
        gate.recv()                 # park; may resume on another M
        arr2 = (ctypes.c_int * 3)(3, 2, 1)
        libc.qsort(arr2, 3, ctypes.sizeof(ctypes.c_int), cb)
        out.send((list(arr), list(arr2), runtime.goid()))
    for _ in range(4):
        go(f)
    time.sleep(0.05)
    gate.close()
    results = [out.recv() for _ in range(4)]
    for arr, arr2, gid in results:
        assert arr == [1, 2, 3, 4, 5]
        assert arr2 == [1, 2, 3]
    assert set(calls) == {gid for _, _, gid in results}


def test_deep_recursion_in_a_goroutine_raises_recursion_error():
    out = chan(1)

    def through_c(n):
        return list(map(lambda _: through_c(n + 1), [0]))

    def f():
        try:
            through_c(0)
        except RecursionError:
            out.send("RecursionError")
    go(f)
    assert out.recv() == "RecursionError"


# A goroutine's recursion budget is fitted to its stack under the current
# recursion limit.  Changing the limit while it is parked must not leave
# the fit stale: on 3.10/3.11 a lowered limit used to abort the process
# ("Cannot recover from stack overflow") when the goroutine resumed, and a
# raised one let it recurse past its C stack (a segfault).
# Hypothesis changes the limit around every example, which is how the
# channel model tests found it.  Subprocesses: the failure is a crash.
_LIMIT_SCRIPT = """
import sys
from goroutine import chan, go
sys.setrecursionlimit({before})
gate, out = chan(), chan(1)

def through_c(n):
    return list(map(lambda _: through_c(n + 1), [0]))

def f():
    gate.recv()                 # parked while the limit changes
    try:
        through_c(0)
    except RecursionError:
        out.send("RecursionError")
go(f)
go(lambda: None)                # another goroutine, to run and recycle
sys.setrecursionlimit({after})
gate.send(1)
print(out.recv())
# Let f finish before the interpreter does: a goroutine still running
# Python at finalization is ended by CPython with pthread_exit on its own
# stack, which TSan's interceptor cannot handle (a CHECK failure, exit 66).
import time
from goroutine import runtime
while runtime.num_goroutine():
    time.sleep(0.001)
"""


@pytest.mark.parametrize("before,after", [(5000, 1000), (1000, 200000)])
def test_recursion_limit_changed_while_a_goroutine_is_parked(before, after):
    r = run_py(_LIMIT_SCRIPT.format(before=before, after=after))
    assert (r.returncode, r.stdout) == (0, "RecursionError\n"), r.stderr


@beyond_tsan_thread_limit
def test_many_goroutines_parked_at_once():
    n = 20000
    gate = chan()
    done = chan(n)
    for _ in range(n):
        go(lambda: (gate.recv(), done.send(1)))
    assert runtime.num_goroutine() >= n
    gate.close()
    for _ in range(n):
        done.recv()


def test_lock_os_thread_pins_the_goroutine_and_keeps_others_off_its_thread():
    out = chan(1)
    stop = chan()
    pinned = []         # the locked thread's id while it is locked
    violations = []

    def locked():
        runtime.lock_os_thread()
        pinned.append(threading.get_native_id())
        tids = set()
        for _ in range(200):
            runtime.gosched()
            c = chan()
            go(c.send, 1)
            c.recv()               # park and resume
            tids.add(threading.get_native_id())
        pinned.clear()
        runtime.unlock_os_thread()
        out.send(tids)

    def other():
        while goroutine.select(stop.recv, goroutine.default)[0] == 1:
            if pinned and threading.get_native_id() == pinned[0]:
                violations.append(runtime.goid())
            runtime.gosched()
    for _ in range(3):
        go(other)
    go(locked)
    tids = out.recv()
    stop.close()
    assert len(tids) == 1
    assert violations == []


def test_lock_os_thread_outside_a_goroutine_is_harmless():
    runtime.lock_os_thread()
    runtime.unlock_os_thread()


def test_goexit_runs_func_defers_and_recover_cannot_stop_it():
    from goroutine import defer, func, recover
    out = chan(4)

    @func
    def f():
        defer(out.send, "deferred")
        defer(lambda: out.send(("recover", recover())))
        runtime.goexit()
        out.send("not reached")
    go(f)
    assert out.recv() == ("recover", None)
    assert out.recv() == "deferred"
    time.sleep(0.02)
    assert len(out) == 0
