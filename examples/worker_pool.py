"""A worker pool with errgroup.set_limit: at most N jobs at once, the first
failure cancels the rest, wait() reports it."""
import time

from goroutine import context, errgroup, sync


def main():
    g, ctx = errgroup.with_context(context.background())
    g.set_limit(5)
    m = sync.Mutex()
    state = {"active": 0, "peak": 0, "done": 0}

    def job(k):
        if ctx.err() is not None:
            return                       # the group is already failing
        with m:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
        try:
            time.sleep(0.001)            # blocking I/O stand-in
            if k == 150:
                raise RuntimeError(f"job {k} failed")
        finally:
            with m:
                state["active"] -= 1
                state["done"] += 1

    for k in range(200):
        g.go(job, k)
    try:
        g.wait()
    except RuntimeError as e:
        print(f"worker pool: {state['done']} jobs ran, at most "
              f"{state['peak']} at once; first error: {e}; "
              f"context: {ctx.err()}")
    assert state["peak"] <= 5


if __name__ == "__main__":
    main()
