"""goroutine.runtime: the scheduler's knobs and introspection (Go's runtime)."""
from goroutine._core import num_cpu

__all__ = ["num_cpu"]
