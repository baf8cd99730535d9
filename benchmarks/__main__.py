"""python -m benchmarks [--quick] [--only W,..] [--impl I,..] [--repeat N]
                        [--json PATH] [--no-chart]

Measures every workload on goroutine and on each installed peer
(threading + queue, concurrent.futures, asyncio, gevent, and, when they
import, pygolang, py-routine and pygoroutine; Go when a `go` toolchain is
on PATH), each measurement in a fresh process, several repetitions,
medians.  Prints a table with ratios
(peer / goroutine: above 1 means goroutine is faster or smaller) and
writes JSON and, with matplotlib, a PNG chart to benchmarks/results/.
"""
import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

from benchmarks.workloads import WORKLOADS

HERE = pathlib.Path(__file__).resolve().parent
PEER_MODULES = {"gevent": "gevent", "pygolang": "golang",
                "pyroutine": "pyroutine", "pygoroutine": "pygoroutine"}
# The workloads benchmarks/go/main.go implements.
GO_WORKLOADS = {"pingpong", "buffered_1p1c", "mpmc_4x4", "select_2",
                "select_8", "spawn", "daisy_chain", "parked_memory",
                "prime_sieve", "ctx_cancel", "ctx_timeout", "timers",
                "mutex_8"}


def available(impl):
    mod = PEER_MODULES.get(impl)
    return mod is None or importlib.util.find_spec(mod) is not None


def build_go(tmp):
    if shutil.which("go") is None:
        return None
    exe = os.path.join(tmp, "gobench")
    env = dict(os.environ, GOFLAGS="-mod=mod", GOCACHE=os.path.join(tmp, "c"))
    r = subprocess.run(["go", "build", "-o", exe, "."], cwd=HERE / "go",
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print("go build failed, Go is skipped:\n" + r.stderr, file=sys.stderr)
        return None
    return exe


_CWD = []


def _child_cwd():
    """An empty directory of our own: sys.path[0] of a -m child is its cwd,
    and a shared one like /tmp may hold anything (an enum.py there broke
    every measurement)."""
    if not _CWD:
        import atexit
        _CWD.append(tempfile.mkdtemp(prefix="gr-bench-"))
        atexit.register(shutil.rmtree, _CWD[0], True)
    return _CWD[0]


def _child_env():
    """The checkout goes on PYTHONPATH AFTER what is there already, and the
    child runs outside the checkout: a goroutine package the caller put
    first (the sanitizer builds' build tree) is the one measured, never
    the source tree's, which has no _core unless built in place."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(
        ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []) + [str(HERE.parent)])
    return e


def measure(name, impl, n, go_exe, timeout):
    if impl == "go":
        cmd = [go_exe, "-w", name, "-n", str(n)]
    else:
        cmd = [sys.executable, "-m", "benchmarks._one", name, impl, str(n)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout, cwd=_child_cwd(),
                           env=_child_env())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if r.returncode != 0:
        # The status too: a child that printed its result and then died
        # (a signal at exit) showed only its result line here once.
        how = (f"killed by signal {-r.returncode}" if r.returncode < 0
               else f"exit {r.returncode}")
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:]
        return {"error": f"{how}: {tail[0]}" if tail else how}
    return json.loads(r.stdout.strip().splitlines()[-1])


def fmt(v, unit):
    if unit == "ns/op":
        return f"{v / 1000:.2f} us" if v >= 1000 else f"{v:.0f} ns"
    if unit == "B/unit":
        return f"{v / 1024:.1f} KiB"
    return f"{v:.2f} {unit}"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("--quick", action="store_true", help="tiny sizes")
    ap.add_argument("--only", help="comma-separated workloads")
    ap.add_argument("--impl", help="comma-separated implementations")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--json", help="where to write the JSON results")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    names = [w for w in WORKLOADS
             if not args.only or w in args.only.split(",")]
    impls_wanted = args.impl.split(",") if args.impl else None

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        go_exe = None
        if impls_wanted is None or "go" in impls_wanted:
            go_exe = build_go(tmp)
        for name in names:
            spec = WORKLOADS[name]
            n = spec["sizes"][0 if args.quick else 1]
            impls = list(spec["impls"])
            if go_exe and name in GO_WORKLOADS:
                impls.append("go")
            for impl in impls:
                if impls_wanted and impl not in impls_wanted:
                    continue
                if impl != "go" and not available(impl):
                    results.append({"workload": name, "impl": impl,
                                    "error": "not installed"})
                    continue
                print(f"  {name:18} {impl:12}", end="", file=sys.stderr,
                      flush=True)
                runs = []
                err = None
                for _ in range(repeat):
                    r = measure(name, impl, n, go_exe, args.timeout)
                    if "error" in r:
                        err = r["error"]
                        break
                    runs.append(r)
                    print(".", end="", file=sys.stderr, flush=True)
                if err:
                    print(" error:", err, file=sys.stderr)
                    results.append({"workload": name, "impl": impl,
                                    "error": err})
                    continue
                row = {"workload": name, "impl": impl, "n": n,
                       "unit": runs[0]["unit"],
                       "value": statistics.median(r["value"] for r in runs),
                       "runs": [r["value"] for r in runs]}
                if "extra" in runs[0]:
                    row["extra"] = {k: statistics.median(r["extra"][k]
                                                         for r in runs)
                                    for k in runs[0]["extra"]}
                for k in ("rss_mib", "pte_mib"):
                    if k in runs[0]:
                        row[k] = statistics.median(r[k] for r in runs)
                print(f" {fmt(row['value'], row['unit'])}", file=sys.stderr)
                results.append(row)

    print_table(results)
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = pathlib.Path(args.json) if args.json else out_dir / f"{stamp}.json"
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "quick": args.quick, "repeat": repeat,
            "when": stamp}
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"\nresults: {path}")
    if not args.no_chart:
        chart(results, out_dir / f"{stamp}.png")
    return 0


def print_table(results):
    by = {}
    for r in results:
        by.setdefault(r["workload"], []).append(r)
    print(f"\n{'workload':18} {'impl':12} {'result':>12} {'vs goroutine':>13}")
    for name, rows in by.items():
        base = next((r for r in rows if r["impl"] == "goroutine"
                     and "value" in r), None)
        for r in rows:
            if "error" in r:
                print(f"{name:18} {r['impl']:12} {'n/a':>12}   ({r['error']})")
                continue
            ratio = ""
            if base and r is not base and base["value"] > 0:
                ratio = f"{r['value'] / base['value']:.2f}x"
            extra = f"  peak +{r['rss_mib']} MiB" if "rss_mib" in r else ""
            if "pte_mib" in r:
                extra += f" (+{r['pte_mib']} MiB page tables)"
            for k, v in r.get("extra", {}).items():
                extra += (f"  {k} {v:g}" if k == "threads"
                          else f"  {k} {fmt(v, r['unit'])}")
            print(f"{name:18} {r['impl']:12} "
                  f"{fmt(r['value'], r['unit']):>12} {ratio:>13}{extra}")


def chart(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    by = {}
    for r in results:
        if "value" in r:
            by.setdefault(r["workload"], []).append(r)
    names = [n for n, rows in by.items()
             if any(r["impl"] == "goroutine" for r in rows)]
    if not names:
        return
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.6 * len(names)))
    if len(names) == 1:
        axes = [axes]
    for ax, name in zip(axes, names):
        rows = by[name]
        ax.barh([r["impl"] for r in rows], [r["value"] for r in rows],
                color=["tab:green" if r["impl"] == "goroutine" else "tab:gray"
                       for r in rows])
        ax.set_title(f"{name} ({rows[0]['unit']}, lower is better)",
                     fontsize=9)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"chart: {path}")


if __name__ == "__main__":
    sys.exit(main())
