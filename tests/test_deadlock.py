"""When Deadlock fires and when it must not: it fires only when nothing
could ever end the wait -- no goroutine runnable or running, no timer
pending, no other Python thread (daemon or not) outside the runtime, and no
Python signal handler installed.  Each case runs in a fresh interpreter."""
from conftest import run_py


def test_a_daemon_thread_that_will_send_prevents_deadlock():
    r = run_py("""
        import threading, time
        from goroutine import chan
        ch = chan()
        threading.Thread(target=lambda: (time.sleep(1.2), ch.send("late")),
                         daemon=True).start()
        print(ch.recv())
    """, timeout=30)
    assert r.stdout.strip() == "late", r.stderr


def test_an_idle_daemon_thread_prevents_deadlock_of_a_select():
    # A server's request threads wait outside the runtime: main must wait.
    r = run_py("""
        import threading, time
        from goroutine import chan, select
        a, b = chan(), chan()
        ev = threading.Event()
        def server():
            ev.wait()                     # idle, outside the runtime
            b.send("request")
        threading.Thread(target=server, daemon=True).start()
        waker = threading.Timer(1.2, ev.set)
        waker.daemon = True
        waker.start()
        print(select(a.recv, b.recv))
    """, timeout=30)
    assert r.stdout.strip() == "(1, 'request')", r.stderr


def test_a_python_signal_handler_prevents_deadlock():
    r = run_py("""
        import os, signal, subprocess, sys
        from goroutine import chan
        stop = chan(1)
        signal.signal(signal.SIGUSR1, lambda *a: stop.send("SIGUSR1"))
        subprocess.Popen([sys.executable, "-c",
                          "import os, time; time.sleep(1.2); "
                          f"os.kill({os.getpid()}, {int(signal.SIGUSR1)})"])
        print(stop.recv())
    """, timeout=30)
    assert r.stdout.strip() == "SIGUSR1", r.stderr


def test_a_thread_blocked_in_the_runtime_does_not_prevent_deadlock():
    r = run_py("""
        import threading
        from goroutine import chan, Deadlock
        parked = chan()
        threading.Thread(target=parked.recv, daemon=True).start()
        try:
            chan().recv()
        except Deadlock as e:
            print(e)
    """, timeout=30)
    assert r.stdout.strip() == "all goroutines are asleep - deadlock!", \
        r.stderr


def test_goroutine_threads_do_not_count_as_other_threads():
    # A goroutine calling threading.current_thread() leaves a dummy Thread
    # for its M in threading.enumerate(); that M is the runtime itself.
    r = run_py("""
        import threading
        from goroutine import go, chan, Deadlock, sync
        wg = sync.WaitGroup()
        for _ in range(8):
            wg.go(threading.current_thread)
        wg.wait()
        go(chan().recv)
        try:
            chan().recv()
        except Deadlock as e:
            print(e)
    """, timeout=30)
    assert r.stdout.strip() == "all goroutines are asleep - deadlock!", \
        r.stderr


def test_sigint_default_handler_does_not_prevent_deadlock():
    r = run_py("""
        import signal
        from goroutine import chan, Deadlock
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            chan().recv()
        except Deadlock as e:
            print(e)
    """, timeout=30)
    assert r.stdout.strip() == "all goroutines are asleep - deadlock!", \
        r.stderr
