"""Run one (workload, implementation, n) in this fresh process and print
its result as JSON: each measurement gets a clean interpreter, so memory
numbers and crashes stay isolated and gevent's hub never meets the
runtime's threads."""
import json
import sys

from benchmarks.workloads import WORKLOADS


def main():
    name, impl, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    r = WORKLOADS[name]["impls"][impl](n)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
