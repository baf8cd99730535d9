import goroutine  # noqa: F401  (import errors surface before collection)
