"""runtime.gomaxprocs(n) while goroutines run: Go's procresize.

A shrink must strand no goroutine queued on a P it takes out of use, a
grow must bring each such P back exactly once, and no M may stay counted
as spinning after it lost its P (else wakep wakes nobody, for good).
The toggling tests run in a fresh interpreter: a wedged scheduler would
otherwise take the rest of the suite with it."""
import time as T

from goroutine import chan, go, runtime, select, sync, time

from conftest import run_py, wait_until


def _quiet():
    """Every M idle, every P on the idle list, nobody spinning."""
    s = runtime.stats()
    return (s["idle_ps"] == s["ps"] and s["idle_ms"] == s["ms"]
            and s["spinning_ms"] == 0 and s["runnable"] == 0)


def test_shrink_from_goroutines_strands_none_of_their_queued_goroutines():
    # Each spawner queues 20 goroutines on its own P's local queue, then
    # takes that P out of use.  The queued ones must all still run.
    prev = runtime.gomaxprocs()
    try:
        for _ in range(50):
            runtime.gomaxprocs(2)
            done = chan(100)

            def spawner():
                for _ in range(20):
                    go(done.send, 1)
                runtime.gomaxprocs(1)
            for _ in range(4):
                go(spawner)
            got = 0
            for _ in range(80):
                i, _ = select(done.recv, time.after(20).recv)
                assert i == 0, f"stranded {80 - got} goroutines"
                got += 1
    finally:
        runtime.gomaxprocs(prev)


def test_shrink_kills_a_p_whose_goroutine_blocks_and_moves_its_queue():
    # A goroutine queues work on its P and then blocks outside the GIL
    # (time.sleep).  A shrink from the main thread retakes that P (or
    # sysmon hands it on, if it was P 0) and its queue moves on: no queued
    # goroutine waits for a P nobody will run again.  (No timing is
    # asserted beyond the hang-catching watchdog.)
    prev = runtime.gomaxprocs(2)
    try:
        for _ in range(20):
            runtime.gomaxprocs(2)
            done = chan(100)
            sleeping = chan(1)
            release = chan()

            def sleeper():
                for _ in range(10):
                    go(done.send, 1)
                sleeping.send(runtime.stats()["ps"])
                T.sleep(0.3)
                release.send(None)
            go(sleeper)
            sleeping.recv()
            runtime.gomaxprocs(1)
            for _ in range(10):
                i, _ = select(done.recv, time.after(20).recv)
                assert i == 0, "goroutines stranded behind a blocked G"
            release.recv()
    finally:
        runtime.gomaxprocs(prev)


def test_grow_after_shrink_lists_every_p_once():
    prev = runtime.gomaxprocs()
    try:
        for n in (4, 1, 3, 2, 1, 4, 2):
            runtime.gomaxprocs(n)
            out = chan(50)
            for i in range(50):
                go(out.send, i)
            assert sorted(out.recv() for _ in range(50)) == list(range(50))
            assert wait_until(_quiet, 10), runtime.stats()
            s = runtime.stats()
            assert s["ps"] == n and s["idle_ps"] == n, s
    finally:
        runtime.gomaxprocs(prev)


TOGGLE = r"""
import sys, time as T, random
from goroutine import go, chan, runtime, sync, select, time

runtime.gomaxprocs(2)
stop = False
total = [0]

def pair(wg, lk):
    a, b = chan(), chan()
    def ponger():
        for v in a:
            b.send(v + 1)
    go(ponger)
    k = s = 0
    while not stop:
        a.send(k); s += b.recv() - k; k += 1
        if k % 20 == 0:
            T.sleep(0.0001)          # a real blocking call now and then
    a.close()
    assert s == k, (s, k)
    lk.lock(); total[0] += k; lk.unlock()
    wg.done()

def quiet():
    s = runtime.stats()
    return (s["idle_ps"] == s["ps"] and s["idle_ms"] == s["ms"]
            and s["spinning_ms"] == 0 and s["runnable"] == 0)

for attempt in range(ATTEMPTS):
    stop = False
    wg, lk = sync.WaitGroup(), sync.Mutex()
    wg.add(16)
    for _ in range(16):
        go(pair, wg, lk)
    t_end = T.monotonic() + SECONDS
    while T.monotonic() < t_end:
        runtime.gomaxprocs(1); T.sleep(random.random() * 0.0005)
        runtime.gomaxprocs(2); T.sleep(random.random() * 0.0005)
    stop = True
    fin = chan(1)
    go(lambda: (wg.wait(), fin.send(1)))
    i, _ = select(fin.recv, time.after(30).recv)
    if i != 0:
        print("work never finished:", runtime.stats()); sys.exit(1)
    # Everything goes idle: exactly ps idle Ps, no spinning M left.
    deadline = T.monotonic() + 10
    while not quiet() and T.monotonic() < deadline:
        T.sleep(0.002)
    if not quiet():
        print("not quiet:", runtime.stats()); sys.exit(1)
    # A brand-new goroutine from a plain thread must still be run.
    probe = chan(1)
    go(probe.send, "alive")
    j, _ = select(probe.recv, time.after(10).recv)
    if j != 0:
        print("wedged:", runtime.stats()); sys.exit(1)
print("ok", total[0] > 0)
"""


def test_toggling_under_load_loses_no_value_no_p_and_no_wakeup():
    r = run_py(TOGGLE.replace("ATTEMPTS", "6").replace("SECONDS", "1.0"),
               timeout=240)
    assert r.returncode == 0 and r.stdout.strip() == "ok True", (
        r.stdout + r.stderr)


def test_toggling_from_inside_goroutines():
    # gomaxprocs called by goroutines that may sit on the P it kills.
    r = run_py(r"""
        import sys
        from goroutine import go, chan, runtime, select, time
        runtime.gomaxprocs(2)
        out = chan(1000)
        def worker(i):
            for k in range(50):
                runtime.gomaxprocs(1 + (i + k) % 3)
                go(out.send, 1)
        for i in range(20):
            go(worker, i)
        for n in range(1000):
            j, _ = select(out.recv, time.after(30).recv)
            if j != 0:
                print("stranded after", n, runtime.stats()); sys.exit(1)
        runtime.gomaxprocs(2)
        print("ok")
    """, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
