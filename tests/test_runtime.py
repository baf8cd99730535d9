import os

import goroutine
from goroutine import runtime


def test_num_cpu_is_the_affinity_mask():
    n = runtime.num_cpu()
    assert isinstance(n, int)
    assert n == len(os.sched_getaffinity(0))


def test_num_cpu_follows_a_narrowed_affinity_mask():
    # Go's NumCPU counts the CPUs the process may use, not the machine's.
    import subprocess
    import sys
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
            "from goroutine import runtime; print(runtime.num_cpu())")
    out = subprocess.run([sys.executable, "-c", code], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "1"


def test_errors_are_exported_with_go_bases():
    assert issubclass(goroutine.Panic, Exception)
    assert issubclass(goroutine.Deadlock, RuntimeError)
    assert goroutine.Panic.__module__ == "goroutine"
