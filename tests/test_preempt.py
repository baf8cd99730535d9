"""Preemption: a goroutine running Python yields at its next safe point
(CPython's eval breaker) when a goroutine readied from outside waits for
its P, and resumes on its own M.  CPython 3.12+ (3.10/3.11 run pending
calls only on the main thread: no preemption there, docs/design.md).

No test here measures time: each counts where and whether goroutines ran
(thread idents, loop counters, runtime.stats()), with generous bounds
only to turn a hang into a failure."""
import io
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

import goroutine
from goroutine import chan, go, runtime
from goroutine import time as gtime

pytestmark = [
    pytest.mark.skipif(sys.version_info < (3, 12),
                       reason="3.10/3.11 have no per-thread safe point "
                              "a goroutine can be asked to stop at"),
]

# Preemption is opt-in (GODEBUG=asyncpreemptoff=0, read when the runtime
# starts): the preempted goroutine's M runs the waiting one on the same
# thread ident, which can then enter a threading.RLock the preempted one
# holds (test_preemption_is_off_by_default shows it).  The tests of the
# mechanism run in a child process with it on.
PREEMPT_ON = "asyncpreemptoff=0" in os.environ.get("GODEBUG", "")
needs_on = pytest.mark.skipif(
    not PREEMPT_ON, reason="run with preemption on, in a child process, by "
                           "test_the_preemption_tests_with_it_opted_in")

_RLOCK_SCRIPT = r"""
import threading, time
from goroutine import chan, go, runtime
lock = threading.RLock()
inside, overlap, stop = [0], [0], [False]
def burner():
    while not stop[0]:
        with lock:
            inside[0] += 1
            overlap[0] += inside[0] > 1
            for i in range(2000):
                pass
            inside[0] -= 1
ping, done = chan(), chan()
def echo():
    while ping.recv() is not None:
        with lock:
            inside[0] += 1
            overlap[0] += inside[0] > 1
            inside[0] -= 1
    done.close()
go(burner)
go(echo)
for i in range(200):
    ping.send(i)
    time.sleep(0.001)
ping.send(None)
done.recv()
stop[0] = True
print(overlap[0], runtime.stats()["preemptions"])
"""


def _rlock_run(godebug):
    env = dict(os.environ, GOMAXPROCS="1")
    env.pop("GODEBUG", None)
    if godebug:
        env["GODEBUG"] = godebug
    r = subprocess.run([sys.executable, "-c", _RLOCK_SCRIPT], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    overlap, preemptions = map(int, r.stdout.split())
    return overlap, preemptions


def test_preemption_is_off_by_default():
    # One P, a goroutine that holds a threading.RLock while it burns CPU,
    # and another readied 200 times from the main thread that takes the
    # same RLock.  Off (the default), the second runs on another M and
    # waits for the lock as a thread would: never inside with the first.
    assert _rlock_run(None) == (0, 0)
    # On, it runs on the busy goroutine's M (its thread ident) and enters
    # the RLock the preempted one holds: the hazard that keeps it opt-in.
    overlap, preemptions = _rlock_run("asyncpreemptoff=0")
    assert preemptions > 0
    assert overlap > 0


@pytest.mark.skipif(PREEMPT_ON, reason="this is the child run")
def test_the_preemption_tests_with_it_opted_in():
    env = dict(os.environ, GODEBUG="asyncpreemptoff=0")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q",
                        "-p", "no:cacheprovider", "-p", "no:randomly",
                        os.path.abspath(__file__)],
                       env=env, capture_output=True, text=True, timeout=900,
                       cwd=os.path.dirname(os.path.abspath(__file__)))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    # The five mechanism tests and the default-off one ran.
    assert "6 passed" in r.stdout.splitlines()[-1], r.stdout[-2000:]

ROUNDS = 30


class Burners:
    """n goroutines in pure-Python loops: each counts its loops and
    records the OS threads it ran on.  setup(i) runs first in goroutine
    i (to take a lock, say) and its result is passed to teardown(i, r)
    once the loop ends."""

    def __init__(self, n, setup=None, teardown=None):
        self.stop = False
        self.counts = [0] * n
        self.idents = [set() for _ in range(n)]
        self.done = chan(n)
        for i in range(n):
            go(self._run, i, setup, teardown)
        deadline = time.monotonic() + 30
        while min(self.counts) == 0:
            assert time.monotonic() < deadline, "burners never ran"
            time.sleep(0.001)

    def _run(self, i, setup, teardown):
        r = setup(i) if setup else None
        x = 0
        while not self.stop:
            for j in range(200):
                x += j
            self.counts[i] += 1
            self.idents[i].add(threading.get_ident())
        if teardown:
            teardown(i, r)
        self.done.send(i)

    def all_idents(self):
        return set().union(*self.idents)

    def finish(self):
        self.stop = True
        for _ in self.counts:
            self.done.recv()


def recv_within(c, seconds):
    """c.recv(), or AssertionError after a generous bound (a hang)."""
    i, v = goroutine.select(c.recv, gtime.after(seconds).recv)
    assert i == 0, f"no answer within {seconds} s"
    return v


def echo(ping, pong):
    while ping.recv() is not None:
        pong.send(threading.get_ident())


def ping_rounds(ping, pong, rounds):
    idents = []
    for _ in range(rounds):
        time.sleep(0.002)           # the echo goroutine is parked again
        ping.send(1)
        idents.append(recv_within(pong, 30))
    return idents


@pytest.fixture
def procs():
    prev = runtime.gomaxprocs()
    yield runtime.gomaxprocs
    runtime.gomaxprocs(prev)


@needs_on
def test_a_goroutine_readied_by_a_thread_runs_on_the_m_of_a_busy_one(procs):
    # The one P runs a goroutine that never parks, so without preemption
    # the echo goroutine can only run on another M (after sysmon hands the
    # P over): a round answered from the burner's thread was a preemption.
    # One P, not two: two burners on two Ps can end up on one M, one
    # preempted in its slot while the other runs, swapping every slice
    # (docs/design.md, "Preemption"); the other P is then free and echo
    # rightly runs there.  Measured on 3.13: in 7 runs of 10 the burners
    # ended on one thread, and those had 0-20 rounds of 30 preempted (CI
    # failed on 3.14 and 3.15 with 4); apart, 30 of 30.  One P: 30 of 30
    # in 16 runs on 3.13 and 3.14; preemption off: 0.
    procs(1)
    ping, pong = chan(), chan()
    go(echo, ping, pong)
    b = Burners(1)
    before = runtime.stats()["preemptions"]
    idents = ping_rounds(ping, pong, ROUNDS)
    preempted = sum(ident in b.all_idents() for ident in idents)
    after = runtime.stats()["preemptions"]
    ping.send(None)
    b.finish()
    assert preempted >= ROUNDS // 2, (preempted, ROUNDS)
    assert after - before >= preempted


@needs_on
def test_a_preempted_goroutine_gets_its_turn_back(procs):
    # One P: a second pure-Python goroutine made from the main thread
    # preempts the first, which then waits on its M; after a slice of the
    # newcomer the two swap, so both keep counting.
    procs(1)
    a = Burners(1)
    b = Burners(1)
    deadline = time.monotonic() + 30
    for _ in range(3):      # both advance, again and again
        seen_a, seen_b = a.counts[0], b.counts[0]
        while a.counts[0] == seen_a or b.counts[0] == seen_b:
            assert time.monotonic() < deadline, (a.counts, b.counts)
            time.sleep(0.01)
    b.finish()
    a.finish()


@needs_on
def test_lock_os_thread_goroutines_are_not_preempted(procs):
    procs(2)
    ping, pong = chan(), chan()
    go(echo, ping, pong)
    b = Burners(2, setup=lambda i: runtime.lock_os_thread(),
                teardown=lambda i, r: runtime.unlock_os_thread())
    before = runtime.stats()["preemptions"]
    idents = ping_rounds(ping, pong, 5)
    assert runtime.stats()["preemptions"] == before
    assert not set(idents) & b.all_idents()
    ping.send(None)
    b.finish()


@needs_on
def test_a_goroutine_holding_a_logging_lock_is_not_preempted(procs):
    # Another goroutine on its M would enter the handler's RLock (same
    # thread ident) while it is held.
    procs(1)
    handler = logging.StreamHandler(io.StringIO())
    ping, pong = chan(), chan()
    go(echo, ping, pong)

    def take(i):
        handler.acquire()

    b = Burners(1, setup=take, teardown=lambda i, r: handler.release())
    before = runtime.stats()["preemptions"]
    idents = ping_rounds(ping, pong, 5)
    assert runtime.stats()["preemptions"] == before
    assert not set(idents) & b.all_idents()
    ping.send(None)
    b.finish()
    handler.close()


@needs_on
def test_a_preempted_goroutine_holding_a_lock_the_next_one_needs_moves_on(
        procs):
    # The burner holds a threading.Lock (owned by no thread) while it
    # spins; the goroutine it is preempted for blocks on that lock on the
    # same M.  sysmon sees it blocked and lets the burner run elsewhere,
    # where it sees `release` and lets the lock go: no deadlock.
    procs(1)
    # Up to 5 attempts: under load the waiter is sometimes served by
    # sysmon's hand-off instead (the holder owed the GIL), which does not
    # test the slot's release.
    assert any(_lock_holder_preempted_by_its_waiter() for _ in range(5))


def _lock_holder_preempted_by_its_waiter():
    lock = threading.Lock()
    release = [False]
    spins = [0]
    got, done, started = chan(1), chan(1), chan(1)

    def hold():
        with lock:
            while not release[0]:
                for j in range(200):
                    pass
                spins[0] += 1
        done.send(1)

    def waiter():
        started.send(1)
        with lock:
            got.send(1)
    go(hold)
    deadline = time.monotonic() + 30
    while spins[0] == 0:
        assert time.monotonic() < deadline, "the holder never ran"
        time.sleep(0.001)
    before = runtime.stats()["preemptions"]
    go(waiter)
    # Blocked, not polling: a main thread that keeps asking for the GIL
    # makes the holder owe it, and then it is not preempted (design.md).
    recv_within(started, 30)
    preempted = runtime.stats()["preemptions"] > before
    release[0] = True
    recv_within(got, 30)
    recv_within(done, 30)
    return preempted
