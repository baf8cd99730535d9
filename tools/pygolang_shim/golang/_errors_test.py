"""pygolang's Cython/C++ errors tests: nothing to run against goroutine."""
