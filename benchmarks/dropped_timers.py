"""python -m benchmarks.dropped_timers [--n N]

Issue 14.7's measurement: make and drop N Tickers (never stopped), run
the cyclic collector, and print runtime.stats()["timers"] and the
process's resident memory before and after.  Go 1.23 collects such
tickers; so must we: both numbers should come back to where they were.
"""
import argparse
import gc

from goroutine import runtime, time


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100000)
    n = ap.parse_args().n
    gc.collect()
    r0, t0 = rss_mib(), runtime.stats()["timers"]
    for _ in range(n):
        time.Ticker(1.0)
    gc.collect()
    print(f"{n:,} dropped Tickers: timers {t0} -> "
          f"{runtime.stats()['timers']}, RSS {r0:.1f} -> {rss_mib():.1f} MiB")


if __name__ == "__main__":
    main()
