"""The tools people rely on see goroutines as they see threads: trace and
profile hooks (coverage.py, pytest-cov, profilers) and pdb."""
import sys
import threading

import pytest

from goroutine import chan, go

from conftest import run_py


def _calls(seen):
    def hook(frame, event, arg):
        if event == "call":
            seen.add(frame.f_code.co_name)
        return None
    return hook


def test_goroutines_get_threading_settrace_hook_like_new_threads():
    # coverage.py and pytest-cov install their tracer with
    # threading.settrace: every new thread gets it, so must a goroutine.
    seen = set()

    def in_goroutine(out):
        out.send(1)
    out = chan(1)
    threading.settrace(_calls(seen))
    try:
        go(in_goroutine, out)
        out.recv()
    finally:
        threading.settrace(None)
    assert "in_goroutine" in seen


def test_goroutines_get_threading_setprofile_hook_like_new_threads():
    seen = set()

    def profiled(out):
        out.send(1)
    out = chan(1)
    threading.setprofile(_calls(seen))
    try:
        go(profiled, out)
        out.recv()
    finally:
        threading.setprofile(None)
    assert "profiled" in seen


def test_a_goroutines_own_trace_function_ends_with_it():
    # A dead goroutine's thread state serves the next go() (on one P, the
    # very next): sys.settrace inside one (pdb does it) must not trace
    # the goroutines that come after.  One P from the start (GOMAXPROCS=1
    # in a fresh process): toggling gomaxprocs in-process can wedge the
    # scheduler (issue 14.5).
    r = run_py("""
        import sys
        from goroutine import chan, go
        seen = set()
        def hook(frame, event, arg):
            if event == "call":
                seen.add(frame.f_code.co_name)
        def tracing(done):
            sys.settrace(hook)
            done.send(None)
        def later(out):
            out.send(sys.gettrace())
        def parent(res):
            done = chan()
            go(tracing, done)
            done.recv()
            out = chan()
            traced = []
            for _ in range(20):
                go(later, out)
                traced.append(out.recv())
            res.send(traced)
        res = chan(1)
        go(parent, res)
        print(res.recv() == [None] * 20, "later" in seen)
    """, env={"GOMAXPROCS": "1"})
    assert r.stdout.split() == ["True", "False"], (r.stdout, r.stderr)


def test_pdb_breakpoint_inside_a_goroutine():
    r = run_py("""
        from goroutine import chan, go
        def body(out):
            secret = 6 * 7
            breakpoint()
            out.send(secret)
        out = chan(1)
        go(body, out)
        print("got", out.recv())
    """, input="p secret\nc\n", env={"PYTHONBREAKPOINT": ""})
    assert "42" in r.stdout and "got 42" in r.stdout, (r.stdout, r.stderr)


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="threading.settrace_all_threads is 3.12+")
def test_goroutines_get_settrace_all_threads_hook():
    seen = set()

    def in_goroutine(out):
        out.send(1)
    out = chan(1)
    threading.settrace_all_threads(_calls(seen))
    try:
        go(in_goroutine, out)
        out.recv()
    finally:
        threading.settrace_all_threads(None)
    assert "in_goroutine" in seen
