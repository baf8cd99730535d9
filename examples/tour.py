"""A tour of goroutine, run by `make demo`: the seed's chapters, made
observable on the live runtime."""
import threading
import time as _time

import goroutine
from goroutine import (Panic, chan, context, default, errgroup, go, runtime,
                       select, sync, time)


def section(title):
    print(f"\n== {title} " + "=" * max(0, 60 - len(title)))


section("1. goroutines are not threads")
n = 20000
gate, done = chan(), chan(n)
threads_before = threading.active_count()
for _ in range(n):
    go(lambda: (gate.recv(), done.send(1)))
s = runtime.stats()
print(f"{runtime.num_goroutine()} goroutines parked on a channel, on "
      f"{s['ms']} OS threads (Ms) and {s['ps']} Ps; Python threads: "
      f"{threading.active_count() - threads_before} new")
gate.close()
for _ in range(n):
    done.recv()

section("2. the G/M/P scheduler: blocking calls hand off the P")
t0 = _time.monotonic()
wg = sync.WaitGroup()
for _ in range(16):
    wg.go(_time.sleep, 0.2)        # a plain blocking call, GIL released
wg.wait()
s = runtime.stats()
print(f"16 goroutines in time.sleep(0.2) took {_time.monotonic() - t0:.2f} s "
      f"with GOMAXPROCS={runtime.gomaxprocs()}: sysmon handed Ps to new "
      f"Ms {s['handoffs']} times (Ms now: {s['ms']})")

section("3. channels: unbuffered handoff, buffered FIFO")
ping, pong = chan(), chan()
go(lambda: [pong.send(ping.recv() + 1) for _ in range(3)])
v = 0
for _ in range(3):
    ping.send(v)
    v = pong.recv()
print("ping-pong through an unbuffered channel:", v)
buf = chan(3)
for i in "abc":
    buf.send(i)
print(f"buffered: len={len(buf)} cap={buf.cap()} ->",
      [buf.recv() for _ in range(3)])

section("4. close rules")
c = chan(1)
c.send("last")
c.close()
print("recv after close drains first:", c.recv_(), "then", c.recv_())
for what, f in [("send on closed", lambda: c.send(1)),
                ("close twice", c.close),
                ("close nilchan", goroutine.nilchan.close)]:
    try:
        f()
    except Panic as e:
        print(f"{what:15} -> Panic({str(e)!r})")

section("5. select, timeouts and context")
slow = chan()
i, _ = select(slow.recv, time.after(0.05).recv)
print("select with time.after: case", i, "(the timeout) won")
ctx, cancel = context.with_timeout(context.background(), 0.05)
ctx.done().recv()
print("with_timeout(0.05):", repr(ctx.err()))
print("non-blocking select with default:", select(slow.recv, default))

section("6. worker pool: errgroup with set_limit")
g = errgroup.Group()
g.set_limit(4)
m = sync.Mutex()
active = peak = 0


def job(k):
    global active, peak
    with m:
        active += 1
        peak = max(peak, active)
    time.sleep(0.002)
    with m:
        active -= 1


for k in range(100):
    g.go(job, k)
g.wait()
print(f"100 jobs with set_limit(4): at most {peak} ran at once")

section("7. runtime.stack(): Go's goroutine dump")
blocker = chan()


def parked_worker():
    blocker.recv()


go(parked_worker)
_time.sleep(0.01)
print(runtime.stack().strip().split("\n\n")[-1])
blocker.close()
print("\ntour done.")
