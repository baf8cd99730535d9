"""python -m benchmarks.http [--quick] [--conns 100,1000] [--duration S]
                             [--idle N] [--impl I,..] [--repeat R] [--json P]

The HTTP hello-world server (examples/http_hello.py's protocol) on
goroutine.net, asyncio streams and gevent, side by side:

- load: each server in its own process (benchmarks/_http_server.py),
  loaded by `wrk` in another at each connection count for --duration
  seconds; requests/s and wrk's p99 latency, each as a ratio to asyncio's
  (requests/s: above 1 is more than asyncio; p99: below 1 is faster).
  Without wrk on PATH the rows say so and are skipped.
- idle: N connections held open by this process, each held on the server
  side by a handler parked in its read; the server's RSS growth from the
  first connection to the N-th, divided by N - 1 (measured in the server
  process, after gc.collect()).

Results go to benchmarks/results/http-STAMP.json.
"""
import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
IMPLS = ("goroutine", "asyncio", "gevent")
PEER_MODULES = {"gevent": "gevent"}


_CWD = []


def _child_cwd():
    """An empty directory of our own for the servers: sys.path[0] of a -m
    child is its cwd, and the checkout there would shadow the goroutine
    this process imported (make test-asan imports a separate build; the
    checkout's package has no _core then)."""
    if not _CWD:
        import atexit
        _CWD.append(tempfile.mkdtemp(prefix="gr-http-"))
        atexit.register(shutil.rmtree, _CWD[0], True)
    return _CWD[0]


def available(impl):
    mod = PEER_MODULES.get(impl)
    return mod is None or importlib.util.find_spec(mod) is not None


class Server:
    """benchmarks/_http_server.py IMPL MODE [N] in its own process; it
    exits when its stdin closes."""

    def __init__(self, impl, mode, n=0):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
            + [str(HERE.parent)])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._http_server", impl, mode,
             str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            cwd=_child_cwd(), env=env)
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"{impl} server did not start "
                               f"(exit {self.proc.returncode})")
        self.port = int(line)

    def readline(self):
        return self.proc.stdout.readline()

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse_wrk(out):
    """requests/s, p99 in ms, and the errors wrk counted, from its
    --latency output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return {"rps": rps, "p99_ms": p99, "errors": errors}


def wrk(port, conns, duration):
    threads = min(conns, max(1, os.cpu_count() or 1))
    r = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency",
         "--timeout", "10s", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=duration + 60)
    if r.returncode != 0:
        raise RuntimeError("wrk failed: " + (r.stderr or r.stdout).strip())
    return parse_wrk(r.stdout)


def load_row(impl, conns, duration, repeat):
    runs = []
    for _ in range(repeat):
        with Server(impl, "serve") as s:
            runs.append(wrk(s.port, conns, duration))
    return {"bench": "http_load", "impl": impl, "conns": conns,
            "rps": statistics.median(r["rps"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "errors": max(r["errors"] for r in runs),
            "runs": runs}


def idle_row(impl, n):
    socks = []
    with Server(impl, "idle", n) as s:
        try:
            socks.append(socket.create_connection(("127.0.0.1", s.port)))
            first, rss1 = map(int, s.readline().split())
            for _ in range(n - 1):
                socks.append(socket.create_connection(("127.0.0.1", s.port)))
            last, rss2 = map(int, s.readline().split())
        finally:
            for x in socks:
                x.close()
    if (first, last) != (1, n):
        raise RuntimeError(f"{impl}: server saw {first}, {last} connections")
    return {"bench": "http_idle", "impl": impl, "conns": n,
            "bytes_per_conn": (rss2 - rss1) / (n - 1),
            "rss_first_mib": rss1 / 2**20, "rss_last_mib": rss2 / 2**20}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.http")
    ap.add_argument("--quick", action="store_true",
                    help="2 s loads and 500 idle connections")
    ap.add_argument("--conns", default="100,1000")
    ap.add_argument("--duration", type=int, default=None)
    ap.add_argument("--idle", type=int, default=None)
    ap.add_argument("--impl", default=",".join(IMPLS))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    duration = args.duration or (2 if args.quick else 10)
    n_idle = args.idle or (500 if args.quick else 10000)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n_idle = min(n_idle, hard - 100)
    impls = [i for i in args.impl.split(",") if i]
    have_wrk = shutil.which("wrk") is not None

    results = []

    def run(row, *a):
        label = f"{a[0]:10} {a[1]:>6}"
        print(f"  {row.__name__:8} {label}", end="", file=sys.stderr,
              flush=True)
        try:
            r = row(*a)
        except Exception as e:          # one peer failing skips its row
            r = {"impl": a[0], "conns": a[1], "error": str(e)}
        print(" error: " + r["error"] if "error" in r else " done",
              file=sys.stderr)
        return r

    for conns in [int(c) for c in args.conns.split(",") if c]:
        for impl in impls:
            if not have_wrk:
                results.append({"bench": "http_load", "impl": impl,
                                "conns": conns,
                                "error": "wrk not installed: skipped"})
            elif not available(impl):
                results.append({"bench": "http_load", "impl": impl,
                                "conns": conns, "error": "not installed"})
            else:
                r = run(load_row, impl, conns, duration, args.repeat)
                r.setdefault("bench", "http_load")
                results.append(r)
    for impl in impls:
        if not available(impl):
            results.append({"bench": "http_idle", "impl": impl,
                            "conns": n_idle, "error": "not installed"})
            continue
        r = run(idle_row, impl, n_idle)
        r.setdefault("bench", "http_idle")
        results.append(r)

    print_table(results, duration)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = pathlib.Path(args.json) if args.json else out / f"http-{stamp}.json"
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(),
            "duration_s": duration, "repeat": args.repeat, "when": stamp,
            "loadavg": os.getloadavg()}
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"\nresults: {path}")
    return 0


def print_error(r):
    print(f"{r['conns']:>6} {r['impl']:10} {'n/a':>10}   ({r['error']})")


def print_table(results, duration):
    print(f"\nhttp hello-world, wrk {duration:g} s per row "
          "(ratios to asyncio; req/s above 1 and p99 below 1 beat it)")
    print(f"{'conns':>6} {'impl':10} {'req/s':>10} {'x asyncio':>9} "
          f"{'p99':>10} {'x asyncio':>9}")
    loads = [r for r in results if r["bench"] == "http_load"]
    for conns in sorted({r["conns"] for r in loads}):
        rows = [r for r in loads if r["conns"] == conns]
        base = next((r for r in rows if r["impl"] == "asyncio"
                     and "rps" in r), None)
        for r in rows:
            if "error" in r:
                print_error(r)
                continue
            rr = pr = ""
            if base:
                rr = f"{r['rps'] / base['rps']:.2f}x"
                pr = f"{r['p99_ms'] / base['p99_ms']:.2f}x"
            err = f"  errors {r['errors']}" if r["errors"] else ""
            print(f"{conns:>6} {r['impl']:10} {r['rps']:>10.0f} {rr:>9} "
                  f"{r['p99_ms']:>7.2f} ms {pr:>9}{err}")
    idle = [r for r in results if r["bench"] == "http_idle"]
    if idle:
        print("\nmemory per idle connection (server RSS growth / conns, "
              "a handler parked in read on each)")
        base = next((r for r in idle if r["impl"] == "asyncio"
                     and "bytes_per_conn" in r), None)
        for r in idle:
            if "error" in r:
                print_error(r)
                continue
            ratio = (f"{r['bytes_per_conn'] / base['bytes_per_conn']:.2f}x"
                     if base else "")
            print(f"{r['conns']:>6} {r['impl']:10} "
                  f"{r['bytes_per_conn'] / 1024:>7.1f} KiB {ratio:>9}")


if __name__ == "__main__":
    sys.exit(main())
