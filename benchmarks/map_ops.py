"""python -m benchmarks.map_ops [--sizes 16,2000,1000000] [--keys int,str]
                              [--order seq,shuf] [--ops get,set,insert,delete]
                              [--workers 1,4] [--impl Map,dict,dict+Lock]
                              [--repeat R] [--min-ops N] [--quick]
                              [--json PATH]

goroutine.Map per operation, against a dict and a dict under
threading.Lock, for every combination of:

  size     16, 2,000 and 1,000,000 keys (16 stays in L1, 2,000 in L2, a
           million in DRAM);
  keys     int (0..n-1) or str (str(i)); --keys also takes longstr, 40
           characters (f"{i:040d}"), which takes the general encoder;
  order    seq (the keys in the order they were inserted) or shuf
           (shuffled once, with a fixed seed);
  op       get       v = m[k] over existing keys;
           set       m[k] = v over existing keys;
           insert    m[k] = v of every key into an empty map (the map
                     grows as it goes: the cost of growth is included);
           delete    del m[k] of every key of a full map;
  workers  1: the loop in the calling thread; 4: the same operations
           split over 4 goroutines (Map) or 4 threads (the dict peers),
           on one shared map, timed from the first start to the last end.

Times are CPU time: the calling thread's for 1 worker, the process's
for 4 (all threads: the GIL hand-offs' work counts, waiting does not).
On a shared machine the wall clock mostly measures the OS scheduler.

Each cell is a tight `for k in ks: <op>` loop.  The empty loop `for k in
ks: pass` over the same list (with the same workers) is timed right
before it, and both are printed: loop is the whole ns per iteration,
net is loop minus empty, the cost of the operation itself.  A dict under
a lock pays `with lock:` inside its loop.  Map, dict and dict+Lock take
turns inside each repetition, so load on this shared machine lands on
all of them alike; each number is the median over the repetitions.  For
an operation whose difference the wall clock cannot resolve, use
callgrind on a single cell (see docs/benchmarks.md):

  valgrind --tool=callgrind python -m benchmarks.map_ops --sizes 2000 \\
      --keys str --ops get --impl Map --repeat 1
"""
import argparse
import json
import random
import statistics
import sys
import threading
import time

MIN_OPS = 200_000       # operations per timed loop for the small sizes
VALUE = object()


def make_keys(n, kind):
    if kind == "int":
        return list(range(n))
    if kind == "str":
        return [str(i) for i in range(n)]
    if kind == "longstr":
        return [f"{i:040d}" for i in range(n)]
    raise ValueError(kind)


def op_list(keys, order, reps):
    ks = keys * reps
    if order == "shuf":
        random.Random(1).shuffle(ks)
    return ks


# ---- the loops: one function per (op, impl), each over a key list ---------

def empty_loop(maps, ks, lock):
    for m in maps:
        for k in ks:
            pass


def get_loop(maps, ks, lock):
    for m in maps:
        for k in ks:
            m[k]


def get_locked(maps, ks, lock):
    for m in maps:
        for k in ks:
            with lock:
                m[k]


def set_loop(maps, ks, lock):
    v = VALUE
    for m in maps:
        for k in ks:
            m[k] = v


def set_locked(maps, ks, lock):
    v = VALUE
    for m in maps:
        for k in ks:
            with lock:
                m[k] = v


def del_loop(maps, ks, lock):
    for m in maps:
        for k in ks:
            del m[k]


def del_locked(maps, ks, lock):
    for m in maps:
        for k in ks:
            with lock:
                del m[k]


LOOPS = {
    ("get", False): get_loop, ("get", True): get_locked,
    ("set", False): set_loop, ("set", True): set_locked,
    ("insert", False): set_loop, ("insert", True): set_locked,
    ("delete", False): del_loop, ("delete", True): del_locked,
}


def run_workers(impl, fn, jobs):
    """Run fn(maps, ks, lock) for each job; one job runs in this thread, more
    run in 4 goroutines (Map) or threads.  Returns the seconds taken: CPU
    time of this thread for one job, of the process for more."""
    if len(jobs) == 1:
        # The thread's CPU clock: time this process spent descheduled
        # (the machine is shared) is not counted.
        t = time.thread_time()
        fn(*jobs[0])
        return time.thread_time() - t
    # More workers: the process's CPU clock (all its threads).  The wall
    # clock of 4 workers on this shared 2-core machine measured the OS
    # scheduler: the same cell read 70 and 1,240 ns an operation in two
    # runs a second apart, while CPU time stayed within 62-83 ns.  CPU
    # time counts the GIL hand-offs' work, not the time spent waiting.
    clock = time.process_time
    if impl == "Map":
        from goroutine import sync
        wg = sync.WaitGroup()
        t = clock()
        for j in jobs:
            wg.go(fn, *j)
        wg.wait()
        return clock() - t
    ts = [threading.Thread(target=fn, args=j) for j in jobs]
    t = clock()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    return clock() - t


def new_map(impl):
    if impl == "Map":
        from goroutine import Map
        return Map()
    return {}


def filled(impl, keys):
    m = new_map(impl)
    for k in keys:
        m[k] = VALUE
    return m


def measure(impl, op, keys, order, workers, min_ops=MIN_OPS):
    """One repetition of one cell: (loop seconds, empty seconds, ops)."""
    locked = impl == "dict+Lock"
    lock = threading.Lock()
    fn = LOOPS[(op, locked)]
    n = len(keys)
    if op in ("get", "set"):
        reps = max(1, min_ops // n)
        m = filled(impl, keys)
        ks = op_list(keys, order, reps)
        parts = [ks[i::workers] for i in range(workers)]
        empty = run_workers(impl, empty_loop, [([m], p, lock) for p in parts])
        loop = run_workers(impl, fn, [([m], p, lock) for p in parts])
        return loop, empty, len(ks)
    # insert and delete consume their map: one map per round, made before
    # the clock starts; the workers take disjoint shares of the keys.
    rounds = max(1, min_ops // n)
    ks = op_list(keys, order, 1)
    parts = [ks[i::workers] for i in range(workers)]
    if op == "insert":
        maps = [new_map(impl) for _ in range(rounds)]
    else:
        maps = [filled(impl, keys) for _ in range(rounds)]
    empty = run_workers(impl, empty_loop, [(maps, p, lock) for p in parts])
    loop = run_workers(impl, fn, [(maps, p, lock) for p in parts])
    if op == "insert":
        assert len(maps[-1]) == n
    else:
        assert len(maps[-1]) == 0
    return loop, empty, rounds * n


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.map_ops")
    ap.add_argument("--sizes", default="16,2000,1000000")
    ap.add_argument("--keys", default="int,str")
    ap.add_argument("--order", default="seq,shuf")
    ap.add_argument("--ops", default="get,set,insert,delete")
    ap.add_argument("--workers", default="1,4")
    ap.add_argument("--impl", default="Map,dict,dict+Lock")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--min-ops", type=int, default=MIN_OPS,
                    help="operations per timed loop (more for big sizes)")
    ap.add_argument("--quick", action="store_true",
                    help="sizes 16 and 2000, one repetition")
    ap.add_argument("--json", help="write the rows here too")
    a = ap.parse_args(argv)
    if a.quick:
        a.sizes, a.repeat = "16,2000", 1
    impls = a.impl.split(",")
    rows = []
    print(f"{'size':>8} {'keys':7} {'order':5} {'op':7} {'w':>2}  " +
          "  ".join(f"{i + ' loop/net':>19}" for i in impls) +
          ("   Map/dict  Map/dict+Lock" if impls[:1] == ["Map"] else ""),
          flush=True)
    for size in (int(s) for s in a.sizes.split(",")):
        for kind in a.keys.split(","):
            keys = make_keys(size, kind)
            for order in a.order.split(","):
                for op in a.ops.split(","):
                    for workers in (int(w) for w in a.workers.split(",")):
                        res = {i: ([], []) for i in impls}
                        for _ in range(a.repeat):
                            for impl in impls:
                                loop, empty, nops = measure(
                                    impl, op, keys, order, workers,
                                    a.min_ops)
                                res[impl][0].append(loop / nops * 1e9)
                                res[impl][1].append((loop - empty) / nops * 1e9)
                        row = {"size": size, "keys": kind, "order": order,
                               "op": op, "workers": workers}
                        cells = []
                        for impl in impls:
                            lp = statistics.median(res[impl][0])
                            nt = statistics.median(res[impl][1])
                            row[impl] = {"loop": lp, "net": nt}
                            cells.append(f"{lp:9.1f}/{nt:9.1f}")
                        line = (f"{size:>8} {kind:7} {order:5} {op:7} "
                                f"{workers:>2}  " + "  ".join(cells))
                        if impls[:1] == ["Map"]:
                            for peer in ("dict", "dict+Lock"):
                                if peer in row and row[peer]["net"] > 0:
                                    r = row["Map"]["net"] / row[peer]["net"]
                                    row["Map/" + peer] = r
                                    line += f"  {r:9.2f}x"
                        print(line, flush=True)
                        rows.append(row)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"python": sys.version.split()[0], "repeat": a.repeat,
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
