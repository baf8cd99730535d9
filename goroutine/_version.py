"""The package's version, in one place: pyproject.toml reads it from here
(without importing the package) and goroutine.__version__ re-exports it.
Bump it with a CHANGELOG.md entry."""
__version__ = "0.1.0"
