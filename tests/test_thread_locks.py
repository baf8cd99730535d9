"""Locks owned by an OS thread (threading.RLock) held across a park, and
sync.RLock, the lock owned by a goroutine.

A goroutine's OS thread is its M, shared with other goroutines and
possibly different after every park.  The runtime keeps a goroutine that
parks holding logging's locks wired to its M; any other lock held across a
park must be a goroutine lock (sync.RLock, sync.Mutex)."""
import threading

import pytest

from goroutine import chan, go, runtime, sync, time

from conftest import TSAN, run_py


def test_logging_handler_whose_emit_sends_on_a_channel_works_and_exits():
    r = run_py("""
        import logging
        from goroutine import go, chan, sync, time
        import goroutine
        records = chan(4)
        class ChanHandler(logging.Handler):
            def emit(self, record):
                records.send(self.format(record))   # parks: sink is slow
        log = logging.getLogger("app")
        log.setLevel(logging.INFO)
        log.addHandler(ChanHandler())
        log.propagate = False
        shipped, shipper_done = [], chan()
        def shipper():
            for r in records:
                shipped.append(r)
                time.sleep(0.0005)
            shipper_done.close()
        go(shipper)
        errs = []
        goroutine.excepthook = lambda info: errs.append(info.exc_value)
        wg = sync.WaitGroup()
        for i in range(20):
            wg.go(lambda i=i: [log.info("w%d %d", i, k) for k in range(20)])
        wg.wait()
        records.close()
        shipper_done.recv()         # nothing left running at exit
        print(len(shipped), errs)
    """, timeout=60)         # the old failure also hung in logging.shutdown
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "400 []", r.stderr


def test_a_goroutine_parked_in_a_handler_keeps_its_lock_exclusive():
    prev = runtime.gomaxprocs(1)
    try:
        import logging
        inside, go_on, res = chan(), chan(), chan(2)

        class Parking(logging.Handler):
            def emit(self, record):
                inside.send(1)          # park holding self.lock
                runtime.gosched()       # a yield, wired too
                go_on.recv()
        h = Parking()
        log = logging.getLogger("test_thread_locks.exclusive")
        log.addHandler(h)
        log.propagate = False

        def a():
            try:
                log.warning("x")
                res.send("a logged")
            except BaseException as e:      # pragma: no cover - the bug
                res.send(repr(e))

        def b():
            inside.recv()
            got = h.lock.acquire(blocking=False)
            if got:
                h.lock.release()
            go_on.send(1)
            res.send(f"b acquired: {got}")
        go(a)
        go(b)
        out = sorted([res.recv(), res.recv()])
        log.removeHandler(h)
        assert out == ["a logged", "b acquired: False"]
    finally:
        runtime.gomaxprocs(prev)


def test_rlock_is_exclusive_between_goroutines_across_a_park():
    prev = runtime.gomaxprocs(1)
    try:
        rl = sync.RLock()
        inside, go_on, res = chan(), chan(), chan(2)

        def a():
            with rl:
                with rl:                        # reentrant
                    inside.send(1)
                    go_on.recv()
            res.send("a done")

        def b():
            inside.recv()
            res.send(rl.acquire(blocking=False))
            go_on.send(1)
        go(a)
        go(b)
        assert sorted(map(str, [res.recv(), res.recv()])) == \
            ["False", "a done"]
        assert not rl.locked()
    finally:
        runtime.gomaxprocs(prev)


def test_rlock_released_after_resuming_on_another_thread():
    errors = []

    def c():
        r = sync.RLock()
        try:
            with r:
                time.sleep(0.005)
                threading.Event().wait(0.001)   # a blocking call, too
        except Exception as e:                  # pragma: no cover
            errors.append(e)
    wg = sync.WaitGroup()
    for _ in range(50):
        wg.go(c)
    wg.wait()
    assert errors == []


def test_rlock_waiters_park_and_get_it_in_turn():
    rl, n, inside = sync.RLock(), [0], []

    def worker():
        for _ in range(20):
            with rl:
                inside.append(1)
                assert len(inside) == 1
                time.sleep(0.0001)
                n[0] += 1
                inside.pop()
    wg = sync.WaitGroup()
    for _ in range(8):
        wg.go(worker)
    wg.wait()
    assert n[0] == 160


def test_rlock_misuse_and_timeouts_follow_threading():
    rl = sync.RLock()
    with pytest.raises(RuntimeError, match="cannot release un-acquired lock"):
        rl.release()
    with pytest.raises(ValueError, match="non-blocking"):
        rl.acquire(False, 1)
    with pytest.raises(ValueError, match="non-negative"):
        rl.acquire(True, -2)
    assert rl.acquire()
    other = chan()
    go(lambda: other.send((rl.acquire(timeout=0.05),
                           rl.acquire(blocking=False))))
    assert other.recv() == (False, False)

    def foreign_release():
        try:
            rl.release()
        except RuntimeError as e:
            other.send(str(e))
    go(foreign_release)
    assert other.recv() == "cannot release un-acquired lock"
    rl.release()
    assert not rl.locked()


def test_rlock_works_as_a_condition_lock_and_a_cond_locker():
    cv = threading.Condition(sync.RLock())
    with cv:
        with cv:                        # held twice: wait releases both
            go(lambda: (cv.acquire(), cv.notify(), cv.release()))
            assert cv.wait(10)
    rl = sync.RLock()
    c, flag = sync.Cond(rl), []

    def setter():
        with rl:
            flag.append(1)
            c.signal()
    rl.lock()
    go(setter)
    while not flag:
        c.wait()                        # unlock()s rl, then lock()s it
    rl.unlock()
    assert not rl.locked()


@pytest.mark.skipif(TSAN, reason="the misuse it reproduces leaves "
                    "threading.RLocks held by a thread the goroutine left; "
                    "freeing them trips a ThreadSanitizer-internal CHECK "
                    "(tsan_interceptors_posix.cpp:1085) in the child, not a "
                    "report on our code")
def test_a_thread_rlock_released_on_another_thread_says_what_to_use():
    # The runtime cannot see an arbitrary threading.RLock; when one held
    # across a park fails to release on the goroutine's new OS thread, the
    # panic report says why and what to use instead.
    r = run_py("""
        import threading, sys
        from goroutine import sync, time, runtime
        runtime.gomaxprocs(2)
        def c():
            r = threading.RLock()
            with r:
                time.sleep(0.002)
                threading.Event().wait(0.001)   # hand the P around
        for _ in range(40):                     # until one moves
            wg = sync.WaitGroup()
            for _ in range(20):
                wg.go(c)
            wg.wait()
        # wg.wait() returns at done(), before the dying goroutines have
        # printed their reports: let them finish, or exit cuts them short.
        while runtime.num_goroutine() > 0:
            time.sleep(0.01)
        sys.stderr.flush()
    """, timeout=120)
    assert r.returncode == 0, r.stderr
    reports = r.stderr.count("panic: RuntimeError: cannot release un-acquired")
    assert reports > 0, r.stderr
    assert r.stderr.count("Use goroutine.sync.RLock") == reports, r.stderr


def test_parking_inside_a_logging_handler_keeps_refcounts_flat():
    from test_leaks import Sentinel, _total_refcount_deltas
    if not hasattr(__import__("sys"), "gettotalrefcount"):
        pytest.skip("sys.gettotalrefcount needs a debug build of CPython "
                    "(make test-debug)")
    import logging
    records = chan()

    class Parking(logging.Handler):
        def emit(self, record):
            records.send(record.msg)    # parks wired, holding self.lock
    h = Parking()
    log = logging.getLogger("test_thread_locks.refcounts")
    log.addHandler(h)
    log.propagate = False

    def work(s):
        done = chan()
        go(lambda: (log.warning("x"), done.close()))
        records.recv()
        done.recv()
    try:
        deltas = _total_refcount_deltas(work, Sentinel())
    finally:
        log.removeHandler(h)
    assert min(deltas) < 50, f"total refcount grew by {deltas} per round"


def test_the_check_for_logging_locks_at_a_park_runs_no_python_code():
    """The check runs under a channel lock, so it must run no Python code.
    It used to find logging through PyImport_GetModule, which reads
    `logging.__spec__._initializing` (a Python attribute lookup: a
    property there ran at every park, and the check took about 1,400
    instructions of every park, 820 now)."""
    import logging
    calls = []

    class Spec:
        @property
        def _initializing(self):
            calls.append(1)
            return False

        def __getattr__(self, name):
            return getattr(old, name)
    old = logging.__spec__
    logging.__spec__ = Spec()
    try:
        a, b = chan(), chan()

        def pong():
            for _ in range(50):
                b.send(a.recv())
        go(pong)
        for i in range(50):
            a.send(i)
            assert b.recv() == i
    finally:
        logging.__spec__ = old
    assert calls == []
