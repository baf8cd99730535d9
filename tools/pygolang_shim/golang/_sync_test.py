"""pygolang's Cython/C++ sync tests: nothing to run against goroutine."""
