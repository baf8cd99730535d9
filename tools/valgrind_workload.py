"""A short workload for `make valgrind`: goroutines, channels, select,
timers, sync and context, run under memcheck."""
from goroutine import chan, context, go, select, sync, time

c, done = chan(), chan()


def ping():
    for i in range(200):
        c.send(i)
    c.close()


def pong():
    s = 0
    for v in c:
        s += v
    done.send(s)


go(ping)
go(pong)
assert done.recv() == sum(range(200))
wg = sync.WaitGroup()
m = sync.Mutex()
for _ in range(50):
    wg.go(lambda: (time.sleep(0.001), m.lock(), m.unlock()))
wg.wait()
a, b = chan(1), chan()
for i in range(100):
    select((a.send, i), b.recv)
    a.recv()
ctx, cancel = context.with_timeout(context.background(), 0.01)
ctx.done().recv()
t = time.Ticker(0.001)
t.c.recv()
t.stop()
print("ok")
