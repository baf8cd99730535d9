"""Goroutines and the runtime module: API.md's Goroutines and runtime
sections."""
import contextvars
import ctypes
import sys
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


def test_gosched_lets_a_runnable_goroutine_run_before_the_caller_goes_on():
    # One P (pinned, as Go's scheduler tests pin GOMAXPROCS): b is
    # runnable on it, the caller loops on gosched until b has run.  Go's
    # Gosched puts the caller on the global queue and b (in runnext) runs;
    # at most one call in 61 takes the global queue first (the fairness
    # tick), so b has run after the second call at the latest.  A no-op
    # gosched never lets b run while the caller loops.
    r = run_py("""
        from goroutine import chan, go, runtime
        def caller(out):
            ran = []
            go(ran.append, "b")         # to this P's runnext
            n = 0
            while not ran and n < 1000:
                runtime.gosched()
                n += 1
            out.send(n)
        out = chan()
        counts = set()
        for _ in range(50):
            go(caller, out)
            counts.add(out.recv())
        print(sorted(counts))
    """, env={"GOMAXPROCS": "1"})
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.strip() in ("[1]", "[1, 2]"), (r.stdout, r.stderr)


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="reads /proc")
def test_sysmon_backs_off_while_goroutines_only_run():
    # Two goroutines burn CPU on two Ps with nothing queued and no hand-off:
    # sysmon has nothing to do, and its tick backs off from 100 us to 1 ms
    # (sched.c, GR_SYSMON_CALM_US) instead of waking 10,000 times a second
    # beside them.  Counted as the voluntary context switches of its
    # thread (named gr-sysmon) over one second: at most ~1,000 at a 1 ms
    # tick, several thousand at 100 us.
    r = run_py("""
        import glob, threading, time
        from goroutine import go, sync
        def sysmon_switches():
            for d in glob.glob("/proc/self/task/*"):
                with open(d + "/comm") as f:
                    if f.read().strip() != "gr-sysmon":
                        continue
                with open(d + "/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches"):
                            return int(line.split()[1])
            raise AssertionError("no gr-sysmon thread")
        stop = [False]
        wg = sync.WaitGroup()
        def burn():
            while not stop[0]:
                for _ in range(1000):
                    pass
        for _ in range(2):
            wg.go(burn)
        time.sleep(0.5)             # past the 50 ticks before it backs off
        a, t = sysmon_switches(), time.monotonic()
        time.sleep(1.0)
        b, dt = sysmon_switches(), time.monotonic() - t
        stop[0] = True
        wg.wait()
        print(round((b - a) / dt))
    """, env={"GOMAXPROCS": "2"}, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert int(r.stdout) < 1500, r.stdout


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


def test_stats_counts_goroutines_ps_and_timers_exactly():
    # A fresh process with two Ps (pinned): every counter is checked for
    # its value, not only its name.
    r = run_py("""
        import time as _t
        from goroutine import chan, go, runtime, time
        def settle(pred):
            deadline = _t.monotonic() + 30
            while not pred(runtime.stats()):
                assert _t.monotonic() < deadline, runtime.stats()
                _t.sleep(0.001)
        KEYS = {"goroutines_created", "goroutines", "running", "runnable",
                "parked", "ms", "idle_ms", "ps", "idle_ps", "steals",
                "handoffs", "context_switches", "spinning_ms", "timers"}
        assert runtime.gomaxprocs() == 2    # (starts the scheduler)
        s0 = runtime.stats()
        assert KEYS <= set(s0), set(s0)
        assert s0["goroutines"] == 0 and s0["parked"] == 0, s0
        assert s0["running"] == 0 and s0["runnable"] == 0, s0
        assert s0["ps"] == 2 and s0["idle_ps"] == 2, s0
        assert s0["timers"] == 0 and s0["goroutines_created"] == 0, s0
        gate = chan()
        for _ in range(5):
            go(gate.recv)
        settle(lambda s: s["parked"] == 5)
        s1 = runtime.stats()
        assert s1["goroutines_created"] - s0["goroutines_created"] == 5, s1
        assert s1["goroutines"] == 5 and s1["running"] == 0, s1
        assert s1["runnable"] == 0, s1
        assert s1["context_switches"] - s0["context_switches"] >= 5, s1
        assert 1 <= s1["ms"] and 0 <= s1["idle_ms"] <= s1["ms"], s1
        assert 0 <= s1["idle_ps"] <= 2, s1
        # seen from inside a goroutine: itself running, the 5 parked
        out = chan(1)
        go(lambda: out.send(runtime.stats()))
        s2 = out.recv()
        assert (s2["running"], s2["parked"], s2["goroutines"]) == (1, 5, 6), s2
        assert s2["ps"] == 2 and s2["idle_ps"] <= 1, s2   # its P is busy
        t = time.Timer(60)
        assert runtime.stats()["timers"] == 1
        assert t.stop() is True
        assert runtime.stats()["timers"] == 0
        switches = runtime.stats()["context_switches"]
        gate.close()
        settle(lambda s: s["goroutines"] == 0)
        s3 = runtime.stats()
        assert s3["parked"] == 0 and s3["running"] == 0, s3
        assert s3["goroutines_created"] - s0["goroutines_created"] == 6, s3
        # each of the 5 was switched to once more, to finish
        assert s3["context_switches"] - switches >= 5, s3
        print("OK")
    """, env={"GOMAXPROCS": "2"}, timeout=60)
    assert r.stdout.strip() == "OK", (r.stdout, r.stderr)


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


@pytest.mark.parametrize("procs", [1, 2, 8])
def test_goroutines_blocked_in_the_os_give_their_p_to_others(procs):
    # As many goroutines as Ps (pinned) block in os.read, which releases
    # the GIL but does not park: each holds its P until sysmon retakes it
    # (Go's retake of a P in a syscall).  A goroutine started then must
    # run while they are still blocked: without the retake it never
    # would (30 s is only a hang catcher; the blockers are released
    # either way, so the process ends).
    r = run_py(f"""
        import os, threading
        from goroutine import chan, go, runtime
        N = {procs}
        rfd, wfd = os.pipe()
        started, done = chan(N), chan(N)
        def blocker():
            started.send(None)
            os.read(rfd, 1)
            done.send(None)
        for _ in range(N):
            go(blocker)
        for _ in range(N):
            started.recv()
        ran = threading.Event()
        go(ran.set)
        ok = ran.wait(30)
        # N blocked Ms held all N Ps: a retake freed one (perhaps before
        # go(), for a blocker still queued then), and it is counted
        handoffs = runtime.stats()["handoffs"]
        os.write(wfd, b"x" * N)
        # (they end before exit: a goroutine that wakes from a syscall
        # during finalization is ended by CPython's pthread_exit on its
        # goroutine stack, which TSan cannot follow)
        for _ in range(N):
            done.recv()
        print("RAN" if ok else "STARVED", handoffs >= 1)
    """, env={"GOMAXPROCS": str(procs)}, timeout=90)
    assert r.stdout.split() == ["RAN", "True"], (r.stdout, r.stderr)


@pytest.mark.parametrize("procs", [1, 2])
def test_cpu_bound_goroutines_do_not_starve_another(procs):
    # As many spinning goroutines as Ps (pinned): they never park, so a
    # goroutine started after them runs only because sysmon takes a P
    # from a G that ran Python for over 5 ms (Go's preemption).  30 s is
    # a hang catcher, not a speed bound.
    r = run_py(f"""
        import threading
        from goroutine import chan, default, go, select
        N = {procs}
        stop, started, done = chan(), chan(N), chan(N)
        def spin():
            started.send(None)
            while select(stop.recv, default)[0] != 0:
                sum(range(1000))
            done.send(None)
        for _ in range(N):
            go(spin)
        for _ in range(N):
            started.recv()
        ran = threading.Event()
        go(ran.set)
        ok = ran.wait(30)
        stop.close()
        for _ in range(N):
            done.recv()                 # ended before exit (TSan)
        print("RAN" if ok else "STARVED")
    """, env={"GOMAXPROCS": str(procs)}, timeout=90)
    assert r.stdout.split() == ["RAN"], (r.stdout, r.stderr)


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
