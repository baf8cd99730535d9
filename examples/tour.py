"""A tour of goroutine, run by `make demo`."""
from goroutine import runtime

print(f"goroutine runtime: {runtime.num_cpu()} CPUs usable by this process")
