"""CPU-bound pure Python split over 2 workers, side by side (issue 19):
goroutines in one interpreter, goroutine.interp worker interpreters,
ProcessPoolExecutor and (3.14+) InterpreterPoolExecutor; and a ping-pong of
small ints over an unbuffered chan between two interpreters against a
multiprocessing.Queue pair between two processes.

    python -m benchmarks.interp_cpu [N]     (make bench runs it)

Each row is the best of 3 wall-clock runs; pools are made before timing
(their start-up is printed separately).
"""
import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
import time

from goroutine import chan, go, interp

from benchmarks import _cpu_work as W

PARTS = 2


def best(fn, reps=3):
    return min(fn() for _ in range(reps))


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv):
    n = int(argv[0]) if argv else 3_000_000
    rows = []

    def one():
        out = chan()
        for _ in range(PARTS):
            go(W.count_to, out, n)
        for _ in range(PARTS):
            out.recv()
    rows.append(("goroutines, one interpreter", best(lambda: timed(one))))

    if interp.supported:
        t = time.perf_counter()
        pool = interp.Pool(PARTS)
        print(f"interp.Pool({PARTS}) start-up: "
              f"{(time.perf_counter() - t) * 1e3:.1f} ms")

        def workers():
            out = chan()
            for _ in range(PARTS):
                pool.go(W.count_to, out, n)
            for _ in range(PARTS):
                out.recv()
        timed(workers)      # warm: the workers import the module once
        rows.append((f"interp.Pool({PARTS})", best(lambda: timed(workers))))
    # spawn: a fork while worker interpreters exist crashes the child in
    # CPython 3.12/3.13 itself (docs/api.md, goroutine.interp).
    with cf.ProcessPoolExecutor(PARTS, mp_context=mp.get_context("spawn")) as ex:
        list(ex.map(W.count, [1] * PARTS))
        rows.append((f"ProcessPoolExecutor({PARTS})", best(lambda: timed(
            lambda: list(ex.map(W.count, [n] * PARTS))))))
    if hasattr(cf, "InterpreterPoolExecutor"):
        with cf.InterpreterPoolExecutor(PARTS) as ex:
            list(ex.map(W.count, [1] * PARTS))
            rows.append((f"InterpreterPoolExecutor({PARTS})",
                         best(lambda: timed(lambda: list(
                             ex.map(W.count, [n] * PARTS))))))
    base = rows[0][1]
    print(f"CPU-bound pure Python, {PARTS} x count({n}), best of 3:")
    for name, s in rows:
        print(f"  {name:34s} {s:8.3f} s  {base / s:5.2f}x")

    trips = 2000
    if interp.supported:
        a, b = chan(), chan()
        pool.go(W.pong, a, b, trips + WARM)
        us = ping_pong(a.send, b.recv, trips)
        print(f"ping-pong across interpreters, unbuffered chan: "
              f"{us:8.1f} us/round trip")
        pool.close(wait=True)
    ctx = mp.get_context("spawn")
    qa, qb = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=W.mp_pong, args=(qa, qb, trips + WARM))
    p.start()
    us = ping_pong(qa.put, qb.get, trips)
    p.join()
    print(f"ping-pong between processes, multiprocessing.Queue pair: "
          f"{us:8.1f} us/round trip")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


WARM = 100


def ping_pong(send, recv, trips):
    """Warm up with WARM round trips, then time trips of them (the other
    side answers each value it gets): microseconds a round trip.  The
    same loop for the channel and the multiprocessing.Queue pair."""
    for i in range(WARM):
        send(i)
        recv()
    t = time.perf_counter()
    for i in range(trips):
        send(i)
        recv()
    return (time.perf_counter() - t) / trips * 1e6


if __name__ == "__main__":
    main(sys.argv[1:])
