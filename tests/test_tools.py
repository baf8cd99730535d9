"""The tools people rely on see goroutines as they see threads: trace and
profile hooks (coverage.py, pytest-cov, profilers) and pdb."""
import json
import os
import re
import subprocess
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


def test_pdb_steps_through_a_goroutine_line_by_line():
    # `next` inside a goroutine moves to its next line (the trace
    # function pdb set is the goroutine's), `where` shows its frames, and
    # `continue` lets it finish and the program go on.
    r = run_py("""
        from goroutine import chan, go
        def body(out):
            breakpoint()
            a = 6
            b = a * 7
            out.send(b)
        out = chan(1)
        go(body, out)
        print("got", out.recv())
    """, input="n\nn\np a\nwhere\nc\n", env={"PYTHONBREAKPOINT": ""})
    # pdb reports <string>(line)body(); 3.13+ stops on the breakpoint()
    # line itself, earlier versions on the line after it.
    out = r.stdout
    lines = [int(n) for n in re.findall(r"<string>\((\d+)\)body\(\)", out)]
    assert len(lines) == 4 and lines[0] in (4, 5), (out, r.stderr)
    assert lines == [lines[0], lines[0] + 1, lines[0] + 2, lines[0] + 2], out
    assert "(Pdb) 6\n" in out and out.endswith("got 42\n"), (out, r.stderr)


COVERED = '''
from goroutine import chan, go, sync

def worker(n, out):
    total = 0
    for i in range(n):
        total += i
    out.send(total)

def parked(gate, wg):
    gate.recv()
    x = "resumed"
    wg.done()

out = chan(1)
go(worker, 5, out)
assert out.recv() == 10
gate, wg = chan(), sync.WaitGroup()
wg.add(3)
for _ in range(3):
    go(parked, gate, wg)
gate.close()
wg.wait()
'''


@pytest.mark.parametrize("core", ["ctrace", "pytrace", "sysmon"])
def test_coverage_reports_lines_run_in_goroutines(tmp_path, core):
    # `coverage run` (what pytest-cov drives) over a program whose lines
    # run only in goroutines, some after the goroutine parked and resumed
    # (possibly on another M): every line is reported as run.
    pytest.importorskip("coverage")
    if core == "sysmon" and sys.version_info < (3, 12):
        pytest.skip("sys.monitoring is 3.12+")
    prog = tmp_path / "prog.py"
    prog.write_text(COVERED)
    env = dict(os.environ, COVERAGE_CORE=core)
    data = str(tmp_path / ".coverage")
    run = subprocess.run(
        [sys.executable, "-m", "coverage", "run", f"--data-file={data}",
         str(prog)], capture_output=True, text=True, timeout=60, env=env,
        cwd=tmp_path)
    assert run.returncode == 0, (run.stdout, run.stderr)
    rep = subprocess.run(
        [sys.executable, "-m", "coverage", "json", f"--data-file={data}",
         "-o", str(tmp_path / "cov.json")], capture_output=True, text=True,
        timeout=60, env=env, cwd=tmp_path)
    assert rep.returncode == 0, (rep.stdout, rep.stderr)
    files = json.loads((tmp_path / "cov.json").read_text())["files"]
    (report,) = [v for k, v in files.items() if k.endswith("prog.py")]
    lines = COVERED.splitlines()
    missing = {n: lines[n - 1] for n in report["missing_lines"]}
    assert missing == {}, missing
    assert report["summary"]["num_statements"] == 19, report["summary"]


# faulthandler and sys._current_frames list threads, not pooled goroutines
# (docs/design.md, "What faulthandler and sys._current_frames show").
DUMP = '''
import faulthandler, sys, tempfile, threading, time
from goroutine import chan, go, sync

def dump():
    with tempfile.TemporaryFile("w+") as f:
        faulthandler.dump_traceback(f, all_threads=True)
        f.seek(0)
        return f.read()

def main_shown(text):
    # the main thread's frame: this file's <module>
    return any("<module>" in ln for ln in text.splitlines())

def parked(gate, wg):
    gate.recv()
    wg.done()

gate, wg = chan(), sync.WaitGroup()
wg.add(2000)
for _ in range(2000):
    go(parked, gate, wg)
time.sleep(0.2)
'''


def test_faulthandler_lists_no_pooled_goroutines():
    # 2000 goroutines parked, then finished: their thread states wait in
    # the pool.  Listed, faulthandler printed 100 frameless "threads" and
    # stopped before reaching the main thread.
    r = run_py(DUMP + '''
gate.close()
wg.wait()
text = dump()
n = text.count("Thread 0x") + text.count("Current thread 0x")
from goroutine import runtime
print("THREADS", n, runtime.stats()["ms"], "MAIN", main_shown(text))
''', timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    words = r.stdout.split()
    # Listed: the main thread, each M's own thread state and the timer
    # loop's (sysmon has none); before, 100 (faulthandler's cut-off).
    assert words[0] == "THREADS", r.stdout
    assert int(words[1]) <= 2 + int(words[2]), r.stdout
    assert words[3:] == ["MAIN", "True"], r.stdout


def test_faulthandler_lists_threads_before_parked_goroutines():
    # 2000 parked goroutines are live: faulthandler may show them (it cuts
    # off at 100), but after every thread, so the main thread is shown.
    r = run_py(DUMP + '''
text = dump()
print("MAIN", main_shown(text))
gate.close()
wg.wait()
''', timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.split() == ["MAIN", "True"], (r.stdout, r.stderr)


def test_current_frames_maps_a_thread_to_what_it_runs_now():
    # On one M, 50 goroutines park after running there; then another runs
    # on the same OS thread.  sys._current_frames()[ident] is that one's
    # frame, and no parked goroutine is put on a thread (they ran on the
    # M, but do not run there now).
    r = run_py('''
        import sys, threading
        from goroutine import chan, go, sync
        def parked(gate, wg, ready):
            ready.send(None)
            gate.recv()
            wg.done()
        def checker(out):
            frames = sys._current_frames()
            me = frames.get(threading.get_ident())
            on_threads = sorted(f.f_code.co_name
                                for k, f in frames.items() if k != 0)
            out.send((me.f_code.co_name if me else None, on_threads))
        gate, wg, ready = chan(), sync.WaitGroup(), chan()
        wg.add(50)
        for _ in range(50):
            go(parked, gate, wg, ready)
            ready.recv()
        out = chan(1)
        go(checker, out)
        me, on_threads = out.recv()
        gate.close()
        wg.wait()
        print(me, on_threads)
    ''', env={"GOMAXPROCS": "1"})
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.split() == ["checker", "['<module>',", "'checker']"], \
        (r.stdout, r.stderr)
