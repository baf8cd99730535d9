"""Where a parked goroutine's memory goes, and what a fresh one costs.

    python -m benchmarks.gmem [N] [--mode recv|func] [--spawn]

Parks N goroutines (default 100,000) on one channel, either directly
(go(ch.recv): no Python frame) or inside a Python function (go(f), f calls
ch.recv()), and prints per goroutine the growth of:
  - VmRSS and VmPTE (/proc/self/status): resident pages and page tables;
  - resident bytes by kind of mapping (/proc/self/smaps): goroutine stacks
    (the slabs: MAP_NORESERVE + MADV_NOHUGEPAGE, VmFlags "nr" and "nh"),
    malloc's heap ([heap] and the per-thread arenas, which malloc maps with
    MAP_NORESERVE but no "nh"), and other anonymous mappings (pymalloc
    arenas, CPython's frame-data chunks, G struct chunks);
  - the number of mappings.
--spawn also times go()+run+exit of fresh goroutines (never pooled: all
of them are started before any ends) and of reused ones, minus the loop.
"""
import sys
import time

from goroutine import chan, go, runtime, sync


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmPTE"):
                out[k] = int(v.split()[0]) * 1024
    return out


def smaps():
    """{kind: resident bytes}, and the number of mappings."""
    kinds = {"stacks": 0, "heap": 0, "other": 0, "file": 0}
    n = 0
    cur = None
    rss = 0
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                n += 1
                parts = line.split()
                name = parts[5] if len(parts) > 5 else ""
                cur = {"name": name, "flags": ""}
                rss = 0
            elif first == "Rss:":
                rss = int(line.split()[1]) * 1024
            elif first == "VmFlags:":
                flags = line.split()[1:]
                name = cur["name"]
                if name == "[heap]":
                    kind = "heap"
                elif name.startswith("/"):
                    kind = "file"
                elif "nr" in flags and "nh" in flags:
                    kind = "stacks"
                elif "nr" in flags:
                    kind = "heap"       # glibc's per-thread arenas
                else:
                    kind = "other"
                kinds[kind] += rss
    return kinds, n


def park(n, mode):
    gate = chan()
    if mode == "recv":
        fn = gate.recv
    else:
        def fn():
            gate.recv()
    go(lambda: None)
    time.sleep(0.1)
    s0, (k0, m0) = status(), smaps()
    for _ in range(n):
        go(fn)
    while runtime.stats()["parked"] < n:
        time.sleep(0.01)
    s1, (k1, m1) = status(), smaps()
    print(f"{n} goroutines parked ({mode}), per goroutine:")
    for k in ("VmRSS", "VmPTE"):
        print(f"  {k:8} {(s1[k] - s0[k]) / n:8.0f} B")
    for k in k0:
        print(f"  rss {k:6} {(k1[k] - k0[k]) / n:6.0f} B")
    print(f"  mappings +{m1 - m0}")
    gate.close()
    while runtime.num_goroutine() > 1:
        time.sleep(0.01)


def spawn(n):
    def loop():
        pass
    # Empty loop.
    t = time.perf_counter()
    for _ in range(n):
        loop()
    empty = time.perf_counter() - t
    # Fresh: every G is new (n start before any may end).
    gate = chan()
    wg = sync.WaitGroup()
    wg.add(n)

    def f():
        gate.recv()
        wg.done()
    t = time.perf_counter()
    for _ in range(n):
        go(f)
    while runtime.stats()["parked"] < n:
        time.sleep(0.001)
    fresh = time.perf_counter() - t
    gate.close()
    wg.wait()
    # Reused.
    wg.add(n)
    t = time.perf_counter()
    for _ in range(n):
        go(wg.done)
    wg.wait()
    reused = time.perf_counter() - t
    print(f"fresh go()+run+park: {(fresh - empty) / n * 1e6:.2f} us; "
          f"reused go()+run+exit: {(reused - empty) / n * 1e6:.2f} us "
          f"(n={n})")


if __name__ == "__main__":
    args = sys.argv[1:]
    n = int(args[0]) if args and args[0].isdigit() else 100000
    mode = "func" if "func" in args else "recv"
    if "--spawn" in args:
        spawn(n)
    else:
        park(n, mode)
