"""Interpreter shutdown (issue 23): the runtime serves goroutines until the
last atexit callback has run, and a call that comes after it stopped raises
at once.  Each trigger runs in a fresh interpreter with a timeout; before
the fix every one of them hung (the runtime's own atexit hook stopped the
Ms while later atexit callbacks still used them)."""
import os
import subprocess

import pytest

from conftest import beyond_tsan_thread_limit, run_py

TIMEOUT = 30
# Sanitized builds run each child several times slower: fewer runs.
RUNS = 2 if os.environ.get("GR_TEST_SANITIZED") else 5


def run(code, timeout=TIMEOUT, **kw):
    try:
        return run_py(code, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung at exit")


def test_logging_handler_close_drains_its_goroutine_at_exit():
    # logging registers logging.shutdown with atexit when it is imported,
    # before goroutine: it runs after anything goroutine registers.
    r = run("""
        import logging
        import sys
        from goroutine import chan, sync

        class ShippingHandler(logging.Handler):
            def __init__(self):
                super().__init__()
                self.q = chan(1000)
                self.acks = chan()
                self.done = sync.WaitGroup()
                self.done.go(self._ship)
            def _ship(self):
                for rec in self.q:
                    if rec is None:
                        self.acks.send(True)    # a flush marker
                    else:
                        sys.stdout.write("shipped: " + rec + "\\n")
            def emit(self, record):
                self.q.send(self.format(record))
            def close(self):
                # a few flush round trips, each needing the goroutine to
                # run at exit, then drain and wait
                for _ in range(20):
                    self.q.send(None)
                    self.acks.recv()
                self.q.close()
                self.done.wait()
                super().close()

        log = logging.getLogger("app")
        log.addHandler(ShippingHandler()); log.setLevel(logging.INFO)
        for i in range(3):
            log.info("hello %d", i)
        sys.stdout.write("main done\\n")
    """)
    assert r.returncode == 0, r.stderr
    # the shipper runs concurrently with main: only its own order is fixed
    lines = r.stdout.splitlines()
    assert sorted(lines) == ["main done", "shipped: hello 0",
                             "shipped: hello 1", "shipped: hello 2"], lines
    assert [ln for ln in lines if ln.startswith("shipped")] == [
        "shipped: hello 0", "shipped: hello 1", "shipped: hello 2"]
    assert r.stderr == ""


@pytest.mark.parametrize("when", ["before", "after"])
def test_atexit_handler_uses_goroutines(when):
    # Registered before the import (runs after anything goroutine would
    # register) or after it: either way it starts goroutines, sends,
    # receives, sleeps on a timer and waits for them.
    reg = "atexit.register(at_exit)"
    r = run(f"""
        import atexit

        def at_exit():
            from goroutine import chan, go, sync, time as gtime
            c = chan()
            wg = sync.WaitGroup()
            def worker(i):
                gtime.sleep(0.001)
                c.send(i * i)
            for i in range(10):
                wg.go(worker, i)
            total = sum(c.recv() for _ in range(10))
            wg.wait()
            fired = chan(1)
            gtime.after_func(0.001, lambda: fired.send("timer"))
            print("atexit", total, fired.recv(), flush=True)

        {reg if when == "before" else ""}
        from goroutine import go, chan
        {reg if when == "after" else ""}
        c = chan(); go(c.send, 1); assert c.recv() == 1
        print("main done", flush=True)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["main done", "atexit 285 timer"]
    assert r.stderr == ""


def test_del_run_by_an_atexit_handler_uses_goroutines():
    # A __del__ that runs while atexit callbacks run (the handler drops the
    # last reference) is served like any other code.
    r = run("""
        import atexit
        holder = []
        atexit.register(holder.clear)
        from goroutine import chan, go

        class Flusher:
            def __del__(self):
                c = chan()
                go(c.send, "flushed")
                print("del", c.recv(), flush=True)

        holder.append(Flusher())
        print("main done", flush=True)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["main done", "del flushed"]


def test_del_in_the_final_collection_gets_a_clear_error_not_a_hang():
    # After the last atexit callback the interpreter finalizes: no thread
    # but the finalizing one runs Python again, so a goroutine could never
    # run.  go() and a blocking receive raise RuntimeError at once; a
    # non-blocking operation still works.
    r = run("""
        from goroutine import chan, go

        class Late:
            def __del__(self):
                c = chan(1)
                c.send("buffered")
                print("buffered", c.recv(), flush=True)
                try:
                    go(print, "never")
                except RuntimeError as e:
                    print("go:", e, flush=True)
                try:
                    c.recv()
                except RuntimeError as e:
                    print("recv:", e, flush=True)

        late = Late()           # a module global: freed by finalization
        c = chan(); go(c.send, 1); assert c.recv() == 1
        print("main done", flush=True)
    """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "main done"
    assert lines[1] == "buffered buffered"
    assert lines[2].startswith("go: goroutine: the runtime has stopped")
    assert lines[3].startswith("recv: goroutine: the runtime has stopped")
    assert "never" not in r.stdout
    assert "Fatal Python error" not in r.stderr


def test_go_after_explicit_shutdown_raises_at_once():
    r = run("""
        from goroutine import _core, chan, go
        c = chan(); go(c.send, 1); assert c.recv() == 1
        _core._shutdown()
        for op in (lambda: go(print, "never"), lambda: chan().recv()):
            try:
                op()
            except RuntimeError as e:
                print(e)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("the runtime has stopped") == 2, r.stdout
    assert "never" not in r.stdout


def test_sys_exit_in_a_goroutine_ends_it_quietly_after_its_defers():
    r = run("""
        import sys
        from goroutine import chan, go, func, defer

        done = chan()
        @func
        def g():
            defer(lambda: done.send("deferred"))
            try:
                sys.exit(3)
            finally:
                print("finally", flush=True)
            print("not reached")

        go(g)
        print(done.recv(), flush=True)
        c = chan(); go(c.send, "still running"); print(c.recv())
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["finally", "deferred", "still running"]
    assert r.stderr == ""
    assert "not reached" not in r.stdout


def test_exit_while_timers_deliver_into_python_is_clean():
    # The timer thread keeps delivering (it takes the GIL with its own
    # thread state) until finalization starts, then never touches Python.
    # Before, it stopped at our atexit hook; a PyGILState_Ensure racing
    # finalization crashed in PyThreadState_New.
    for _ in range(5):
        r = run("""
            from goroutine import time as gtime
            t = gtime.Ticker(0.0002)
            # Channel timers: the timer thread itself delivers them under
            # the GIL (no goroutine is left running Python at exit, which
            # CPython would end with pthread_exit on its stack).
            timers = [gtime.Timer(0.0001 * i) for i in range(200)]
            gtime.after(0.002).recv()
            print("bye")
        """)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "bye"
        assert "Fatal Python error" not in r.stderr


EXIT_AFTER_CLOSE = """
    import time
    from goroutine import go, chan, runtime
    c = chan(1); go(c.send, 1); c.recv()
    hold = chan()
    N = 20000
    for _ in range(N):
        go(hold.recv)
    while runtime.stats()["parked"] < N:
        time.sleep(0.05)
    hold.close()
"""


@beyond_tsan_thread_limit
def test_exit_right_after_waking_20k_goroutines_is_clean():
    # Close a channel 20,000 goroutines wait on and exit at once: the Ms
    # are still finishing them while Py_FinalizeEx runs.  At 98af790 an M
    # back on g0 after its goroutine ended called PyEval_SaveThread with
    # the goroutine's thread state, which finalization had just freed
    # (finished goroutines' pooled thread states were still on the
    # interpreter's list; now they are unlisted).  How often depends on
    # the machine's load and on how it is started: from a shell, 98af790
    # crashed in 32 of 54 runs at a load average of 9 and in 0 of 56 at
    # 15-17; started from Python (as here, at 9-17) in 1 of 136.  So this
    # is a guard for the exit path, not a reliable detector of that bug.
    for i in range(RUNS):
        r = run(EXIT_AFTER_CLOSE, timeout=120)
        assert r.returncode == 0, (
            f"run {i + 1}: exit status {r.returncode}\n{r.stderr}")
        assert "Fatal Python error" not in r.stderr
