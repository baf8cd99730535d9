"""Deep recursion inside a goroutine raises RecursionError, never crashes.

A goroutine runs on a C stack of its own (a thread's size by default), not on the
stack of the OS thread that happens to run it.  CPython must therefore
judge its recursion against that stack: from 3.14 it compares the machine
stack pointer with bounds kept in the thread state (pystate.c sets them to
the goroutine's stack when the thread state is bound to it); up to 3.13 it
counts levels, and pystate.c fits the count to the stack.

Each case recurses through Python and through C (repr of a nested list,
json.dumps of a deep structure, a recursive __eq__, sorted(key=...) that
sorts again, a __repr__ that reprs its child) and reports how deep it got
before RecursionError.  The same case runs on a thread whose stack has the
goroutine's size, and the depths must be about the same.  Every case runs
in a subprocess: the failure this guards against is a segfault or a fatal
"Unrecoverable stack overflow".
"""
import functools
import sys

import pytest

from conftest import run_py

# From 3.14 CPython checks the real stack pointer against the bounds
# pystate.c gives the goroutine's thread state, so a 1 MiB goroutine stack
# is compared with a thread of a 1 MiB stack (small, so that the quadratic
# C-only cases stay fast).  Up to 3.13 CPython counts levels: a goroutine's
# default stack is as large as a thread's (gstack.c) and keeps a thread's
# count, so both run at their defaults (a thread with a 1 MiB stack is not
# safe from the count: sorted(key=...) recursion segfaults one on 3.11).
STACK_KB = 1024 if sys.version_info >= (3, 14) else None

_SCRIPT = r"""
import json, sys, threading, time
from goroutine import chan, go, runtime

KIND = sys.argv[1]
depth = 0


def nested_list(n):
    x = []
    for _ in range(n):
        x = [x]
    return x


def nested_dict(n):
    x = {}
    for _ in range(n):
        x = {"k": x}
    return x


def deepest(build, use, hi=256):
    # The deepest structure `use` handles without RecursionError
    # (bisection; `use` must raise RecursionError on deeper ones).
    lo = 1
    use(build(lo))
    while True:
        try:
            use(build(hi))
        except RecursionError:
            break
        lo, hi = hi, hi * 2
    while hi - lo > max(1, lo // 64):
        mid = (lo + hi) // 2
        try:
            use(build(mid))
            lo = mid
        except RecursionError:
            hi = mid
    return lo


class Node:
    def __init__(self, child):
        self.child = child

    def __eq__(self, other):
        global depth
        depth += 1
        return self.child == other.child

    __hash__ = None

    def __repr__(self):
        global depth
        depth += 1
        return "N(" + repr(self.child) + ")"


def chain(n):
    x = None
    for _ in range(n):
        x = Node(x)
    return x


def python_calls():
    global depth
    def f():
        global depth
        depth += 1
        f()
    depth = 0
    try:
        f()
    except RecursionError:
        return depth
    raise AssertionError("no RecursionError")


def through_c(op):
    def run():
        global depth
        depth = 0
        a, b = chain(200000), chain(200000)
        try:
            op(a, b)
        except RecursionError:
            return depth
        raise AssertionError("no RecursionError")
    return run


def sort_key():
    global depth
    def k(x):
        global depth
        depth += 1
        return sorted([x], key=k)
    depth = 0
    try:
        k(0)
    except RecursionError:
        return depth
    raise AssertionError("no RecursionError")


CASES = {
    "python": python_calls,
    "eq": through_c(lambda a, b: a == b),
    "node_repr": through_c(lambda a, b: repr(a)),
    "sorted_key": sort_key,
    "list_repr": lambda: deepest(nested_list, repr),
    "json_dumps": lambda: deepest(nested_dict, json.dumps),
    "list_eq": lambda: deepest(nested_list, lambda x: x == nested_list(len_of(x))),
}


def len_of(x):
    n = 0
    while x:
        x = x[0]
        n += 1
    return n


def on_thread(fn):
    out = []
    threading.stack_size(THREAD_STACK)
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    threading.stack_size(0)
    return out[0]


def on_goroutine(fn, migrate=False):
    ch = chan(1)

    def g():
        try:
            if migrate:
                # Park, and resume wherever the scheduler puts us: the
                # bounds belong to the goroutine's stack, not to an M.
                fn()
                for _ in range(20):
                    time.sleep(0.001)
                    runtime.gosched()
            ch.send(fn())
        except BaseException as e:
            ch.send(e)
    go(g)
    r = ch.recv()
    if isinstance(r, BaseException):
        raise r
    return r


THREAD_STACK = int(sys.argv[2]) * 1024
fn = CASES[KIND]
# The main thread's 8 MiB stack makes the C-only cases slow there (a
# nested list's repr is quadratic in its depth): those skip it.
on_main = KIND not in ("list_repr", "json_dumps", "list_eq")
main_before = fn() if on_main else -1
t = on_thread(fn)
g = on_goroutine(fn)
g2 = on_goroutine(fn, migrate=True)
main_after = fn() if on_main else -1
print(main_before, main_after, t, g, g2)
"""


THREAD_STACK_KB = STACK_KB or 0


@functools.lru_cache(maxsize=None)
def depths(kind):
    env = {"GOMAXPROCS": "2"}
    if STACK_KB is not None:
        env["GOROUTINE_STACK_KB"] = str(STACK_KB)
    r = run_py(f"import sys; sys.argv[1:] = [{kind!r}, '{THREAD_STACK_KB}']\n"
               + _SCRIPT, env=env, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-3000:])
    return tuple(int(x) for x in r.stdout.split())


PYTHON_AND_C = [
    pytest.param("eq", id="recursive __eq__"),
    pytest.param("node_repr", id="recursive __repr__"),
    pytest.param("sorted_key", id="sorted(key=...) recursion"),
]
C_ONLY = [
    pytest.param("list_repr", id="repr of a nested list"),
    pytest.param("json_dumps", id="json.dumps of a nested dict"),
    pytest.param("list_eq", id="== of nested lists"),
]
ALL = [pytest.param("python", id="python calls")] + PYTHON_AND_C + C_ONLY


@pytest.mark.parametrize("kind", ALL)
def test_deep_recursion_in_a_goroutine_raises_recursion_error(kind):
    main_before, main_after, thread, g, g_migrated = depths(kind)
    # Threads keep their own bounds: running goroutines does not change
    # the main thread's depth.  (Not to the level: on 3.11 the main
    # thread's sorted(key=...) depth was seen at 496, then 499 -- where
    # the RecursionError lands in sort's callbacks varies; bounds leaking
    # from a goroutine would move it by far more.)
    assert abs(main_after - main_before) <= max(8, main_before // 20), \
        (main_before, main_after)
    assert g > 10 and g_migrated > 10, (thread, g, g_migrated)


def _about_a_threads_depth(kind):
    main_before, main_after, thread, g, g_migrated = depths(kind)
    # Far less would be a budget that wastes the stack; far more, bounds
    # that are not the goroutine's stack (only luck kept it from a crash).
    assert thread / 2 <= g <= thread * 2, (thread, g)
    assert thread / 2 <= g_migrated <= thread * 2, (thread, g_migrated)


@pytest.mark.parametrize("kind", ALL[:1])
def test_python_recursion_depth_is_a_threads(kind):
    _about_a_threads_depth(kind)


@pytest.mark.parametrize("kind", PYTHON_AND_C + C_ONLY)
def test_c_recursion_depth_is_a_threads(kind):
    _about_a_threads_depth(kind)
