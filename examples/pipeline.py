"""A pipeline: generator -> N workers -> collector, with backpressure
(small buffers make a fast stage wait for a slow one) and a context
timeout that stops every stage cleanly."""
import hashlib

from goroutine import chan, context, go, select, sync


def generate(ctx, out):
    n = 0
    while True:
        i, _ = select(ctx.done().recv, (out.send, n))
        if i == 0:
            break
        n += 1
    out.close()


def work(ctx, inp, out, wg):
    try:
        for n in inp:
            digest = hashlib.sha256(str(n).encode()).hexdigest()
            if select(ctx.done().recv, (out.send, (n, digest)))[0] == 0:
                return
    finally:
        wg.done()


def main():
    ctx, cancel = context.with_timeout(context.background(), 0.3)
    numbers, results = chan(8), chan(8)        # backpressure
    go(generate, ctx, numbers)
    wg = sync.WaitGroup()
    for _ in range(4):
        wg.add(1)
        go(work, ctx, numbers, results, wg)
    go(lambda: (wg.wait(), results.close()))
    seen = 0
    for n, digest in results:
        seen += 1
    cancel()
    print(f"pipeline: {seen} items hashed by 4 workers before the 0.3 s "
          f"timeout ({ctx.err()})")
    assert seen > 0


if __name__ == "__main__":
    main()
