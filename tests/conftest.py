"""Shared fixtures: every test must leave no goroutine behind."""
import gc
import os
import subprocess
import sys
import sysconfig
import textwrap
import time

import pytest

ROOT_DIR = __import__("pathlib").Path(__file__).resolve().parent.parent

import goroutine
from goroutine import runtime


def _settle(baseline, timeout=5.0):
    """Wait (bounded) until no more than `baseline` goroutines are left;
    returns how many are."""
    deadline = time.monotonic() + timeout
    while runtime.num_goroutine() > baseline and time.monotonic() < deadline:
        time.sleep(0.005)
    return runtime.num_goroutine()


def _settle_timers(baseline, timeout=5.0):
    """Likewise for pending timers; a dropped timer is garbage (a cycle
    with its channel) and goes at a collection, so collect once."""
    deadline = time.monotonic() + timeout
    if runtime.stats()["timers"] > baseline:
        gc.collect()
    while (runtime.stats()["timers"] > baseline
           and time.monotonic() < deadline):
        time.sleep(0.005)
    return runtime.stats()["timers"]


@pytest.fixture(autouse=True)
def no_goroutine_leak():
    """Goroutines and pending timers are back to baseline after each test
    (uvloop-style): a leaked timer keeps firing into a dropped channel
    and keeps deadlock detection from ever firing."""
    before = runtime.num_goroutine()
    timers = runtime.stats()["timers"]
    yield
    after = _settle(before)
    assert after <= before, (
        f"test leaked {after - before} goroutine(s):\n{runtime.stack()}")
    left = _settle_timers(timers)
    assert left <= timers, f"test leaked {left - timers} pending timer(s)"


def run_py(code, *, timeout=30, env=None, input=None):
    """Run code in a fresh interpreter; returns CompletedProcess."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout,
                          env=e, input=input)


def source_tree_env():
    """Environment for a subprocess that runs code from the source tree
    (the README, examples/, benchmarks/) against the goroutine package
    this test imports: its directory first on PYTHONPATH, the checkout
    after it.  Run it with cwd outside the checkout (sys.path[0] is the
    cwd for -c and -m), or the source package, which has no _core when
    only a separate build (make test-asan) was made, would shadow it."""
    pkg_parent = os.path.dirname(os.path.dirname(goroutine.__file__))
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent, str(ROOT_DIR)]
        + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    return e


def wait_until(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


if os.environ.get("GR_TEST_SANITIZED"):
    # make test-asan must exercise the sanitized build, never a plain one.
    assert "/build/asan/" in goroutine._core.__file__, goroutine._core.__file__

if os.environ.get("GR_TEST_DEBUG"):
    # make test-debug: a Py_DEBUG interpreter running the module built
    # against it (the 311d suffix), so reference counts are checked.
    assert hasattr(sys, "gettotalrefcount"), sys.executable
    assert sys.abiflags == "d" and goroutine._core.__file__.endswith(
        sysconfig.get_config_var("EXT_SUFFIX")), goroutine._core.__file__

TSAN = bool(os.environ.get("GR_TEST_TSAN"))
if TSAN:
    # make test-tsan, likewise.
    assert "/build/tsan/" in goroutine._core.__file__, goroutine._core.__file__

# Under ThreadSanitizer every live goroutine is a TSan fiber, which costs a
# thread's worth of TSan state, and TSan dies beyond 8128 live threads.
beyond_tsan_thread_limit = pytest.mark.skipif(
    TSAN, reason="more live goroutines than TSan's 8128-thread limit")

if os.environ.get("GR_TEST_INSTALLED"):
    # make test-wheel must exercise the wheel installed in its venv, never
    # a source tree.
    assert goroutine.__file__.startswith(
        os.environ["GR_TEST_INSTALLED"] + "/"), goroutine.__file__
