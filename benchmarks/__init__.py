"""goroutine's benchmarks: the same workloads on goroutine and on each
installed peer, side by side in one run.  `python -m benchmarks --help`."""
