"""The workloads, one function per (workload, implementation).

Each function takes n (the size) and returns a dict: {"value": float,
"unit": str}.  Time units are per operation ("ns/op"), so lower is
better; "B/unit" is resident memory per parked unit; "ms late" is median
timer lateness.  Only the standard library and the peers are imported
here, inside the functions, so a missing peer only skips its own rows.
"""
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time

WORKLOADS = {}


def workload(name, sizes, unit, doc):
    """Register: sizes = (quick n, full n)."""
    def deco(f):
        WORKLOADS.setdefault(name, {"sizes": sizes, "unit": unit,
                                    "doc": doc, "impls": {}})
        WORKLOADS[name]["impls"][f.__name__.split("__")[1]] = f
        return f
    return deco


def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes():
    return _status_bytes("VmRSS")


def mem_mark():
    """Start a peak-memory measurement: reset the kernel's high-water mark
    of this process's RSS (VmHWM) to its RSS now, where the kernel allows
    it (clear_refs, Linux 4.0+), and return (RSS, page tables) now."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return rss_bytes(), _status_bytes("VmPTE")


def peak_since(r, mark):
    """Add to r the peak RSS since mem_mark() (VmHWM, which the kernel keeps
    while the workload runs: RSS read after it would miss memory a workload
    frees at its end, as asyncio's finished tasks) and the page tables
    now, both in MiB over the mark.  Page tables are not part of RSS but
    are memory the process holds: a goroutine's stack costs a page of them."""
    rss, pte = mark
    r["rss_mib"] = round((_status_bytes("VmHWM") - rss) / 2 ** 20, 1)
    r["pte_mib"] = round((_status_bytes("VmPTE") - pte) / 2 ** 20, 1)
    return r


def per_op(t, n):
    return {"value": t / n * 1e9, "unit": "ns/op"}


def in_goroutine(fn):
    """Run fn() inside a goroutine and return its result: goroutine
    workloads are measured from inside the runtime, as Go's are."""
    from goroutine import chan, go
    out = chan(1)

    def run():
        try:
            out.send((True, fn()))
        except BaseException as e:
            out.send((False, e))
    go(run)
    ok, r = out.recv()
    if not ok:
        raise r
    return r


# ---- unbuffered ping-pong round trip ----------------------------------

PP = ((2000, 100000), "ns/op",
      "round trip of a value between two workers over unbuffered channels")


@workload("pingpong", *PP)
def pingpong__goroutine(n):
    from goroutine import chan, go

    def main():
        a, b = chan(), chan()

        def pong():
            for _ in range(n):
                b.send(a.recv())
        go(pong)
        t = time.perf_counter()
        for i in range(n):
            a.send(i)
            b.recv()
        return time.perf_counter() - t
    return per_op(in_goroutine(main), n)


@workload("pingpong", *PP)
def pingpong__pygolang(n):
    from golang import chan, go
    n = max(1, n // 20)             # its goroutines are OS threads
    a, b = chan(), chan()
    done = chan()

    def pong():
        for _ in range(n):
            b.send(a.recv())
        done.close()
    go(pong)
    t = time.perf_counter()
    for i in range(n):
        a.send(i)
        assert b.recv() == i
    t = time.perf_counter() - t
    done.recv()
    return per_op(t, n)


@workload("pingpong", *PP)
def pingpong__threading(n):
    import queue
    import threading
    n = max(1, n // 20)
    a, b = queue.Queue(1), queue.Queue(1)
    th = threading.Thread(target=lambda: [b.put(a.get()) for _ in range(n)])
    th.start()
    t = time.perf_counter()
    for i in range(n):
        a.put(i)
        b.get()
    t = time.perf_counter() - t
    th.join()
    return per_op(t, n)


@workload("pingpong", *PP)
def pingpong__asyncio(n):
    import asyncio

    async def main():
        a, b = asyncio.Queue(1), asyncio.Queue(1)

        async def pong():
            for _ in range(n):
                await b.put(await a.get())
        task = asyncio.ensure_future(pong())
        t = time.perf_counter()
        for i in range(n):
            await a.put(i)
            await b.get()
        t = time.perf_counter() - t
        await task
        return t
    return per_op(asyncio.run(main()), n)


@workload("pingpong", *PP)
def pingpong__gevent(n):
    import gevent
    from gevent.queue import Channel
    a, b = Channel(), Channel()

    def pong():
        for _ in range(n):
            b.put(a.get())
    g = gevent.spawn(pong)
    t = time.perf_counter()
    for i in range(n):
        a.put(i)
        b.get()
    t = time.perf_counter() - t
    g.join()
    return per_op(t, n)


# ---- buffered 1 producer 1 consumer ------------------------------------

BUF = ((5000, 300000), "ns/op", "values through a 128-slot buffer, one producer "
       "and one consumer")


@workload("buffered_1p1c", *BUF)
def buffered_1p1c__goroutine(n):
    from goroutine import chan, go

    def main():
        c = chan(128)

        def produce():
            for i in range(n):
                c.send(i)
            c.close()
        t = time.perf_counter()
        go(produce)
        for _ in c:
            pass
        return time.perf_counter() - t
    return per_op(in_goroutine(main), n)


@workload("buffered_1p1c", *BUF)
def buffered_1p1c__threading(n):
    import queue
    import threading
    q = queue.Queue(128)
    t = time.perf_counter()
    th = threading.Thread(target=lambda: [q.put(i) for i in range(n)])
    th.start()
    for _ in range(n):
        q.get()
    th.join()
    return per_op(time.perf_counter() - t, n)


@workload("buffered_1p1c", *BUF)
def buffered_1p1c__asyncio(n):
    import asyncio

    async def main():
        q = asyncio.Queue(128)

        async def produce():
            for i in range(n):
                await q.put(i)
        t = time.perf_counter()
        task = asyncio.ensure_future(produce())
        for _ in range(n):
            await q.get()
        await task
        return time.perf_counter() - t
    return per_op(asyncio.run(main()), n)


@workload("buffered_1p1c", *BUF)
def buffered_1p1c__gevent(n):
    import gevent
    from gevent.queue import Queue
    q = Queue(128)
    t = time.perf_counter()
    g = gevent.spawn(lambda: [q.put(i) for i in range(n)])
    for _ in range(n):
        q.get()
    g.join()
    return per_op(time.perf_counter() - t, n)


# ---- MPMC 4x4 ----------------------------------------------------------

MP = ((4000, 200000), "ns/op", "4 producers and 4 consumers on one "
      "16-slot buffer")


@workload("mpmc_4x4", *MP)
def mpmc_4x4__goroutine(n):
    from goroutine import chan, go, sync

    def main():
        c = chan(16)
        per = n // 4
        prod, cons = sync.WaitGroup(), sync.WaitGroup()
        t = time.perf_counter()
        for _ in range(4):
            prod.go(lambda: [c.send(i) for i in range(per)])
            cons.go(lambda: [None for _ in c])
        prod.wait()
        c.close()
        cons.wait()
        return time.perf_counter() - t
    return per_op(in_goroutine(main), n)


@workload("mpmc_4x4", *MP)
def mpmc_4x4__threading(n):
    import queue
    import threading
    n = max(4, n // 10)
    q = queue.Queue(16)
    per = n // 4

    def consume():
        while q.get() is not None:
            pass
    t = time.perf_counter()
    ps = [threading.Thread(target=lambda: [q.put(i) for i in range(per)])
          for _ in range(4)]
    cs = [threading.Thread(target=consume) for _ in range(4)]
    for x in ps + cs:
        x.start()
    for x in ps:
        x.join()
    for _ in cs:
        q.put(None)
    for x in cs:
        x.join()
    return per_op(time.perf_counter() - t, per * 4)


@workload("mpmc_4x4", *MP)
def mpmc_4x4__asyncio(n):
    import asyncio

    async def main():
        q = asyncio.Queue(16)
        per = n // 4

        async def produce():
            for i in range(per):
                await q.put(i)

        async def consume():
            while await q.get() is not None:
                pass
        t = time.perf_counter()
        cs = [asyncio.ensure_future(consume()) for _ in range(4)]
        await asyncio.gather(*(produce() for _ in range(4)))
        for _ in cs:
            await q.put(None)
        await asyncio.gather(*cs)
        return time.perf_counter() - t
    return per_op(asyncio.run(main()), n)


@workload("mpmc_4x4", *MP)
def mpmc_4x4__gevent(n):
    import gevent
    from gevent.queue import Queue
    q = Queue(16)
    per = n // 4

    def consume():
        while q.get() is not None:
            pass
    t = time.perf_counter()
    cs = [gevent.spawn(consume) for _ in range(4)]
    gevent.joinall([gevent.spawn(lambda: [q.put(i) for i in range(per)])
                    for _ in range(4)])
    for _ in cs:
        q.put(None)
    gevent.joinall(cs)
    return per_op(time.perf_counter() - t, n)


# ---- select over k channels -------------------------------------------

def _select_goroutine(n, k):
    from goroutine import chan, go, select

    def main():
        chans = [chan() for _ in range(k)]
        per = n // k
        for c in chans:
            go(lambda c=c: [c.send(i) for i in range(per)])
        cases = [c.recv for c in chans]
        t = time.perf_counter()
        for _ in range(per * k):
            select(*cases)
        return time.perf_counter() - t
    return per_op(in_goroutine(main), n)


def _select_asyncio(n, k):
    import asyncio

    async def main():
        qs = [asyncio.Queue(1) for _ in range(k)]
        per = n // k

        async def produce(q):
            for i in range(per):
                await q.put(i)
        ps = [asyncio.ensure_future(produce(q)) for q in qs]
        gets = {asyncio.ensure_future(q.get()): q for q in qs}
        t = time.perf_counter()
        for _ in range(per * k):
            done, _ = await asyncio.wait(list(gets),
                                         return_when=asyncio.FIRST_COMPLETED)
            f = done.pop()
            q = gets.pop(f)
            gets[asyncio.ensure_future(q.get())] = q
        t = time.perf_counter() - t
        for f in gets:
            f.cancel()
        await asyncio.gather(*ps)
        return t
    return per_op(asyncio.run(main()), n)


SEL = ((2000, 60000), "ns/op", "a receiver selecting over k channels fed by "
       "k senders (asyncio: asyncio.wait FIRST_COMPLETED over k gets)")


@workload("select_2", *SEL)
def select_2__goroutine(n):
    return _select_goroutine(n, 2)


@workload("select_2", *SEL)
def select_2__asyncio(n):
    return _select_asyncio(n // 4, 2)


@workload("select_8", *SEL)
def select_8__goroutine(n):
    return _select_goroutine(n, 8)


@workload("select_8", *SEL)
def select_8__asyncio(n):
    return _select_asyncio(n // 4, 8)


# ---- spawn + exit --------------------------------------------------------

SP = ((2000, 100000), "ns/op", "start an empty function and wait for it to "
      "finish, in batches of 100")


@workload("spawn", *SP)
def spawn__goroutine(n):
    from goroutine import sync

    def main():
        def f():
            pass
        t = time.perf_counter()
        for _ in range(n // 100):
            wg = sync.WaitGroup()
            for _ in range(100):
                wg.go(f)
            wg.wait()
        return time.perf_counter() - t
    return per_op(in_goroutine(main), n)


@workload("spawn", *SP)
def spawn__pygolang(n):
    from golang import go, sync
    n = max(100, n // 50)           # its goroutines are OS threads
    ran = []

    def f(wg):
        ran.append(1)
        wg.done()
    t = time.perf_counter()
    for _ in range(n // 100):
        wg = sync.WaitGroup()
        wg.add(100)
        for _ in range(100):
            go(f, wg)
        wg.wait()
    t = time.perf_counter() - t
    assert len(ran) == n // 100 * 100
    return per_op(t, n // 100 * 100)


@workload("spawn", *SP)
def spawn__threading(n):
    import threading
    n = max(100, n // 50)
    t = time.perf_counter()
    for _ in range(n // 100):
        ts = [threading.Thread(target=lambda: None) for _ in range(100)]
        for x in ts:
            x.start()
        for x in ts:
            x.join()
    return per_op(time.perf_counter() - t, n)


@workload("spawn", *SP)
def spawn__asyncio(n):
    import asyncio

    async def f():
        pass

    async def main():
        t = time.perf_counter()
        for _ in range(n // 100):
            await asyncio.gather(*[asyncio.ensure_future(f())
                                   for _ in range(100)])
        return time.perf_counter() - t
    return per_op(asyncio.run(main()), n)


@workload("spawn", *SP)
def spawn__gevent(n):
    import gevent
    t = time.perf_counter()
    for _ in range(n // 100):
        gevent.joinall([gevent.spawn(lambda: None) for _ in range(100)])
    return per_op(time.perf_counter() - t, n)


# ---- fresh spawn: nothing pooled ------------------------------------------

SF = ((20000, 100000), "ns/op", "start n units that all wait on one gate "
      "(so none reuses a finished one's memory), then open it and wait for "
      "all to finish; per unit, the empty loop's time subtracted "
      "(threads: n/100 of them)")


def _empty_loop(n):
    t = time.perf_counter()
    for _ in range(n):
        pass
    return time.perf_counter() - t


@workload("spawn_fresh", *SF)
def spawn_fresh__goroutine(n):
    from goroutine import chan, sync

    def main():
        gate = chan()
        wg = sync.WaitGroup()
        f = gate.recv
        t = time.perf_counter()
        for _ in range(n):
            wg.go(f)
        gate.close()
        wg.wait()
        return time.perf_counter() - t - _empty_loop(n)
    return per_op(in_goroutine(main), n)


@workload("spawn_fresh", *SF)
def spawn_fresh__threading(n):
    import threading
    n = max(100, n // 100)
    gate = threading.Event()
    t = time.perf_counter()
    ts = [threading.Thread(target=gate.wait) for _ in range(n)]
    for x in ts:
        x.start()
    gate.set()
    for x in ts:
        x.join()
    return per_op(time.perf_counter() - t - _empty_loop(n), n)


@workload("spawn_fresh", *SF)
def spawn_fresh__asyncio(n):
    import asyncio

    async def main():
        gate = asyncio.get_running_loop().create_future()

        async def f():
            await gate
        t = time.perf_counter()
        tasks = [asyncio.ensure_future(f()) for _ in range(n)]
        await asyncio.sleep(0)
        gate.set_result(None)
        await asyncio.gather(*tasks)
        return time.perf_counter() - t - _empty_loop(n)
    return per_op(asyncio.run(main()), n)


@workload("spawn_fresh", *SF)
def spawn_fresh__gevent(n):
    import gevent
    from gevent.event import Event
    gate = Event()
    t = time.perf_counter()
    gs = [gevent.spawn(gate.wait) for _ in range(n)]
    gevent.sleep(0)
    gate.set()
    gevent.joinall(gs)
    return per_op(time.perf_counter() - t - _empty_loop(n), n)


# ---- daisy chain -----------------------------------------------------------

DC = ((1000, 100000), "ns/op", "a chain of n workers each passing a value "
      "to the next (per link; peak RSS in the JSON)")


@workload("daisy_chain", *DC)
def daisy_chain__goroutine(n):
    from goroutine import chan, go
    mark = mem_mark()

    def main():
        leftmost = chan()
        left = leftmost
        t = time.perf_counter()
        for _ in range(n):
            right = chan()
            go(lambda l, r: l.send(1 + r.recv()), left, right)
            left = right
        go(right.send, 1)
        assert leftmost.recv() == n + 1
        return time.perf_counter() - t
    return peak_since(per_op(in_goroutine(main), n), mark)


@workload("daisy_chain", *DC)
def daisy_chain__asyncio(n):
    import asyncio
    mark = mem_mark()

    async def main():
        async def link(l, r):
            await l.put(1 + await r.get())
        leftmost = asyncio.Queue(1)
        left = leftmost
        t = time.perf_counter()
        tasks = []
        for _ in range(n):
            right = asyncio.Queue(1)
            tasks.append(asyncio.ensure_future(link(left, right)))
            left = right
        await right.put(1)
        assert await leftmost.get() == n + 1
        return time.perf_counter() - t
    return peak_since(per_op(asyncio.run(main()), n), mark)


@workload("daisy_chain", *DC)
def daisy_chain__gevent(n):
    import gevent
    from gevent.queue import Channel
    mark = mem_mark()
    leftmost = Channel()
    left = leftmost
    t = time.perf_counter()
    for _ in range(n):
        right = Channel()
        gevent.spawn(lambda l, r: l.put(1 + r.get()), left, right)
        left = right
    gevent.spawn(right.put, 1)
    assert leftmost.get() == n + 1
    return peak_since(per_op(time.perf_counter() - t, n), mark)


# ---- parked memory ------------------------------------------------------

PM = ((1000, 100000), "B/unit", "resident memory per unit parked on a "
      "channel/queue/future (threads: n/100 of them)")


@workload("parked_memory", *PM)
def parked_memory__goroutine(n):
    from goroutine import chan, go, runtime
    gate = chan()
    go(lambda: None)            # start the runtime before measuring
    time.sleep(0.05)
    base = rss_bytes()
    for _ in range(n):
        go(gate.recv)
    while runtime.stats()["parked"] < n:
        time.sleep(0.01)
    used = rss_bytes() - base
    gate.close()
    return {"value": used / n, "unit": "B/unit"}


@workload("parked_memory", *PM)
def parked_memory__pygolang(n):
    from golang import chan, go, sync
    n = max(10, n // 100)           # one OS thread each
    gate, ready = chan(), sync.WaitGroup()
    ready.add(n)

    def park():
        ready.done()
        gate.recv()
    base = rss_bytes()
    for _ in range(n):
        go(park)
    ready.wait()
    used = rss_bytes() - base
    gate.close()
    return {"value": used / n, "unit": "B/unit"}


@workload("parked_memory", *PM)
def parked_memory__threading(n):
    import threading
    n = max(10, n // 100)
    ev = threading.Event()
    base = rss_bytes()
    ts = [threading.Thread(target=ev.wait) for _ in range(n)]
    for t in ts:
        t.start()
    used = rss_bytes() - base
    ev.set()
    for t in ts:
        t.join()
    return {"value": used / n, "unit": "B/unit"}


@workload("parked_memory", *PM)
def parked_memory__asyncio(n):
    import asyncio

    async def main():
        fut = asyncio.get_running_loop().create_future()

        async def wait():
            await fut
        base = rss_bytes()
        tasks = [asyncio.ensure_future(wait()) for _ in range(n)]
        await asyncio.sleep(0)
        used = rss_bytes() - base
        fut.set_result(None)
        await asyncio.gather(*tasks)
        return used
    return {"value": asyncio.run(main()) / n, "unit": "B/unit"}


@workload("parked_memory", *PM)
def parked_memory__gevent(n):
    import gevent
    from gevent.event import Event
    ev = Event()
    base = rss_bytes()
    gs = [gevent.spawn(ev.wait) for _ in range(n)]
    gevent.sleep(0)
    used = rss_bytes() - base
    ev.set()
    gevent.joinall(gs)
    return {"value": used / n, "unit": "B/unit"}


# ---- prime sieve ---------------------------------------------------------

PS = ((100, 2000), "ns/op", "Go's concurrent prime sieve to the n-th prime "
      "(per prime found)")


@workload("prime_sieve", *PS)
def prime_sieve__goroutine(n):
    from goroutine import Panic, chan, go

    def main():
        def generate(ch):
            i = 2
            try:
                while True:
                    ch.send(i)
                    i += 1
            except Panic:
                pass

        def filt(inp, out, p):
            try:
                for i in inp:
                    if i % p:
                        out.send(i)
            except Panic:
                pass
        chans = [chan()]
        go(generate, chans[0])
        t = time.perf_counter()
        ch = chans[0]
        for _ in range(n):
            p = ch.recv()
            ch1 = chan()
            chans.append(ch1)
            go(filt, ch, ch1, p)
            ch = ch1
        t = time.perf_counter() - t
        for c in chans:
            c.close()
        return t
    return per_op(in_goroutine(main), n)


@workload("prime_sieve", *PS)
def prime_sieve__asyncio(n):
    import asyncio

    async def main():
        async def generate(q):
            i = 2
            while True:
                await q.put(i)
                i += 1

        async def filt(inp, out, p):
            while True:
                i = await inp.get()
                if i % p:
                    await out.put(i)
        tasks = []
        ch = asyncio.Queue(1)
        tasks.append(asyncio.ensure_future(generate(ch)))
        t = time.perf_counter()
        for _ in range(n):
            p = await ch.get()
            ch1 = asyncio.Queue(1)
            tasks.append(asyncio.ensure_future(filt(ch, ch1, p)))
            ch = ch1
        t = time.perf_counter() - t
        for x in tasks:
            x.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return t
    return per_op(asyncio.run(main()), n)


@workload("prime_sieve", *PS)
def prime_sieve__gevent(n):
    import gevent
    from gevent.queue import Channel

    def generate(ch):
        i = 2
        while True:
            ch.put(i)
            i += 1

    def filt(inp, out, p):
        while True:
            i = inp.get()
            if i % p:
                out.put(i)
    gs = []
    ch = Channel()
    gs.append(gevent.spawn(generate, ch))
    t = time.perf_counter()
    for _ in range(n):
        p = ch.get()
        ch1 = Channel()
        gs.append(gevent.spawn(filt, ch, ch1, p))
        ch = ch1
    t = time.perf_counter() - t
    gevent.killall(gs)
    return per_op(t, n)


# ---- context cancel fan-out ---------------------------------------------

CC = ((500, 10000), "ns/op", "cancel one context with n waiters and wait "
      "until every waiter has run (per waiter)")


@workload("ctx_cancel", *CC)
def ctx_cancel__goroutine(n):
    from goroutine import context, sync

    def main():
        ctx, cancel = context.with_cancel(context.background())
        wg = sync.WaitGroup()
        for _ in range(n):
            wg.go(lambda: ctx.done().recv())
        time.sleep(0.05)
        t = time.perf_counter()
        cancel()
        wg.wait()
        return time.perf_counter() - t
    return per_op(in_goroutine(main), n)


@workload("ctx_cancel", *CC)
def ctx_cancel__asyncio(n):
    import asyncio

    async def main():
        ev = asyncio.Event()
        tasks = [asyncio.ensure_future(ev.wait()) for _ in range(n)]
        await asyncio.sleep(0.05)
        t = time.perf_counter()
        ev.set()
        await asyncio.gather(*tasks)
        return time.perf_counter() - t
    return per_op(asyncio.run(main()), n)


@workload("ctx_cancel", *CC)
def ctx_cancel__gevent(n):
    import gevent
    from gevent.event import Event
    ev = Event()
    gs = [gevent.spawn(ev.wait) for _ in range(n)]
    gevent.sleep(0.05)
    t = time.perf_counter()
    ev.set()
    gevent.joinall(gs)
    return per_op(time.perf_counter() - t, n)


# ---- context with a deadline ---------------------------------------------

CT = ((20000, 200000), "ns/op", "create a context with a 10 s timeout and "
      "cancel it (per context); the with_cancel row is creating a plain "
      "cancellable context, the yardstick of issue #4's 3x target")


def _ctx_loop(make, n):
    t = time.perf_counter()
    for _ in range(n):
        make()
    return per_op(time.perf_counter() - t, n)


@workload("ctx_timeout", *CT)
def ctx_timeout__goroutine(n):
    from goroutine import context
    bg = context.background()
    return in_goroutine(
        lambda: _ctx_loop(lambda: context.with_timeout(bg, 10)[1](), n))


@workload("ctx_timeout", *CT)
def ctx_timeout__with_cancel(n):
    from goroutine import context
    bg = context.background()
    return in_goroutine(
        lambda: _ctx_loop(lambda: context.with_cancel(bg), n))


@workload("ctx_timeout", *CT)
def ctx_timeout__asyncio(n):
    import asyncio

    async def main():
        if hasattr(asyncio, "timeout"):         # 3.11+
            t = time.perf_counter()
            for _ in range(n):
                async with asyncio.timeout(10):
                    pass
            return per_op(time.perf_counter() - t, n)
        loop = asyncio.get_running_loop()
        return _ctx_loop(lambda: loop.call_later(10, int).cancel(), n)
    return asyncio.run(main())


@workload("ctx_timeout", *CT)
def ctx_timeout__gevent(n):
    import gevent
    t = time.perf_counter()
    for _ in range(n):
        to = gevent.Timeout(10)
        to.start()
        to.close()
    return per_op(time.perf_counter() - t, n)


# ---- timers ----------------------------------------------------------------

TM = ((500, 10000), "ms late", "median lateness of n concurrent 10 ms "
      "sleepers, started over 0.5 s")


def _lateness(samples):
    return {"value": statistics.median(samples) * 1000, "unit": "ms late"}


@workload("timers", *TM)
def timers__goroutine(n):
    import random
    from goroutine import chan, go
    from goroutine import time as gtime
    out = chan(n)

    def sleeper(off):
        gtime.sleep(off)
        t0 = time.monotonic()
        gtime.sleep(0.01)
        out.send(time.monotonic() - t0 - 0.01)
    for _ in range(n):
        go(sleeper, random.random() * 0.5)
    return _lateness([out.recv() for _ in range(n)])


@workload("timers", *TM)
def timers__asyncio(n):
    import asyncio
    import random

    async def sleeper(off):
        await asyncio.sleep(off)
        t0 = time.monotonic()
        await asyncio.sleep(0.01)
        return time.monotonic() - t0 - 0.01

    async def main():
        return await asyncio.gather(*(sleeper(random.random() * 0.5)
                                      for _ in range(n)))
    return _lateness(asyncio.run(main()))


@workload("timers", *TM)
def timers__gevent(n):
    import random
    import gevent

    def sleeper(off):
        gevent.sleep(off)
        t0 = time.monotonic()
        gevent.sleep(0.01)
        return time.monotonic() - t0 - 0.01
    gs = [gevent.spawn(sleeper, random.random() * 0.5) for _ in range(n)]
    gevent.joinall(gs)
    return _lateness([g.value for g in gs])


# ---- mutex contention ------------------------------------------------------

MX = ((4000, 200000), "ns/op", "8 workers incrementing one counter under a "
      "mutex (per increment)")


@workload("mutex_8", *MX)
def mutex_8__goroutine(n):
    from goroutine import sync

    def main():
        m, wg, c = sync.Mutex(), sync.WaitGroup(), [0]
        per = n // 8

        def work():
            for _ in range(per):
                m.lock()
                c[0] += 1
                m.unlock()
        t = time.perf_counter()
        for _ in range(8):
            wg.go(work)
        wg.wait()
        return time.perf_counter() - t
    return per_op(in_goroutine(main), n)


@workload("mutex_8", *MX)
def mutex_8__threading(n):
    # The same work as the goroutines: with less, each thread finishes
    # inside one GIL slice and the lock is never contended.
    import threading
    lock, c = threading.Lock(), [0]
    per = n // 8

    def work():
        for _ in range(per):
            lock.acquire()
            c[0] += 1
            lock.release()
    ts = [threading.Thread(target=work) for _ in range(8)]
    t = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    return per_op(time.perf_counter() - t, per * 8)


@workload("mutex_8", *MX)
def mutex_8__asyncio(n):
    import asyncio

    async def main():
        lock, c = asyncio.Lock(), [0]
        per = n // 8

        async def work():
            for _ in range(per):
                async with lock:
                    c[0] += 1
        t = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(8)))
        return time.perf_counter() - t
    return per_op(asyncio.run(main()), n)


# ---- GIL-releasing work ----------------------------------------------------

HL = ((4, 32), "ns/op", "sha256 over 4 MiB buffers, 8 at a time (per hash): "
      "hashlib releases the GIL, so Ms run them in parallel")


def _hash_buf():
    return b"x" * (4 << 20)


@workload("hashlib_parallel", *HL)
def hashlib_parallel__goroutine(n):
    import hashlib
    from goroutine import sync
    buf = _hash_buf()
    t = time.perf_counter()
    for _ in range(max(1, n // 8)):
        wg = sync.WaitGroup()
        for _ in range(8):
            wg.go(lambda: hashlib.sha256(buf).digest())
        wg.wait()
    return per_op(time.perf_counter() - t, max(1, n // 8) * 8)


@workload("hashlib_parallel", *HL)
def hashlib_parallel__threadpool(n):
    import hashlib
    from concurrent.futures import ThreadPoolExecutor
    buf = _hash_buf()
    with ThreadPoolExecutor(8) as ex:
        t = time.perf_counter()
        for _ in range(max(1, n // 8)):
            list(ex.map(lambda _: hashlib.sha256(buf).digest(), range(8)))
        t = time.perf_counter() - t
    return per_op(t, max(1, n // 8) * 8)


@workload("hashlib_parallel", *HL)
def hashlib_parallel__sequential(n):
    import hashlib
    buf = _hash_buf()
    m = max(1, n // 8) * 8
    t = time.perf_counter()
    for _ in range(m):
        hashlib.sha256(buf).digest()
    return per_op(time.perf_counter() - t, m)


# ---- blocking I/O ----------------------------------------------------------

BI = ((50, 2000), "ns/op", "n tasks each doing 5 blocking 2 ms sleeps, at most "
     "100 at once (per task); the goroutines use errgroup.set_limit")


@workload("blocking_io", *BI)
def blocking_io__goroutine(n):
    from goroutine import errgroup

    def task():
        for _ in range(5):
            time.sleep(0.002)
    g = errgroup.Group()
    g.set_limit(100)
    t = time.perf_counter()
    for _ in range(n):
        g.go(task)
    g.wait()
    return per_op(time.perf_counter() - t, n)


@workload("blocking_io", *BI)
def blocking_io__threadpool(n):
    from concurrent.futures import ThreadPoolExecutor

    def task(_):
        for _ in range(5):
            time.sleep(0.002)
    with ThreadPoolExecutor(100) as ex:
        t = time.perf_counter()
        list(ex.map(task, range(n)))
        return per_op(time.perf_counter() - t, n)


# ---- blocking sockets ------------------------------------------------------

BS = ((4, 64), "ns/op", "n clients each doing 200 round trips of 64 bytes "
      "with a loopback echo server in another process (per round trip), "
      "each with its library's natural socket API")
ROUNDS, MESSAGE = 200, b"x" * 64


@contextlib.contextmanager
def echo_server():
    """benchmarks/_echo.py in its own process (its loop must not compete
    for the measured process's GIL); yields its port."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks._echo"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__))))
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _echo_client(sock_module, port, done):
    """ROUNDS blocking round trips over one connection, each checked."""
    with sock_module.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(ROUNDS):
            s.sendall(MESSAGE)
            got = b""
            while len(got) < len(MESSAGE):
                chunk = s.recv(len(MESSAGE) - len(got))
                if not chunk:
                    raise ConnectionError("echo server closed the connection")
                got += chunk
            if got != MESSAGE:
                raise AssertionError("echo returned other bytes")
    done.append(ROUNDS)


def _per_roundtrip(t, n, done):
    if sum(done) != n * ROUNDS:
        raise AssertionError(f"{n * ROUNDS - sum(done)} round trips missing")
    return per_op(t, n * ROUNDS)


@workload("blocking_socket", *BS)
def blocking_socket__goroutine(n):
    from goroutine import sync
    done, wg = [], sync.WaitGroup()
    with echo_server() as port:
        t = time.perf_counter()
        for _ in range(n):
            wg.go(_echo_client, socket, port, done)
        wg.wait()
        return _per_roundtrip(time.perf_counter() - t, n, done)


@workload("blocking_socket", *BS)
def blocking_socket__threading(n):
    import threading
    done = []
    with echo_server() as port:
        ts = [threading.Thread(target=_echo_client, args=(socket, port, done))
              for _ in range(n)]
        t = time.perf_counter()
        for x in ts:
            x.start()
        for x in ts:
            x.join()
        return _per_roundtrip(time.perf_counter() - t, n, done)


@workload("blocking_socket", *BS)
def blocking_socket__asyncio(n):
    import asyncio
    done = []

    async def client(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(ROUNDS):
            writer.write(MESSAGE)
            await writer.drain()
            if await reader.readexactly(len(MESSAGE)) != MESSAGE:
                raise AssertionError("echo returned other bytes")
        writer.close()
        await writer.wait_closed()
        done.append(ROUNDS)

    async def main(port):
        t = time.perf_counter()
        await asyncio.gather(*(client(port) for _ in range(n)))
        return time.perf_counter() - t

    with echo_server() as port:
        return _per_roundtrip(asyncio.run(main(port)), n, done)


@workload("blocking_socket", *BS)
def blocking_socket__gevent(n):
    import gevent
    from gevent import socket as gsocket
    done = []
    with echo_server() as port:
        t = time.perf_counter()
        gevent.joinall([gevent.spawn(_echo_client, gsocket, port, done)
                        for _ in range(n)], raise_error=True)
        return _per_roundtrip(time.perf_counter() - t, n, done)


@workload("blocking_socket", *BS)
def blocking_socket__pygolang(n):
    from golang import go, sync
    done, wg = [], sync.WaitGroup()
    wg.add(n)

    def client(port):
        try:
            _echo_client(socket, port, done)
        finally:
            wg.done()
    with echo_server() as port:
        t = time.perf_counter()
        for _ in range(n):
            go(client, port)
        wg.wait()
        return _per_roundtrip(time.perf_counter() - t, n, done)


# ---- many connections --------------------------------------------------------

NC = ((200, 10000), "ns/op", "n concurrent client connections, each doing 10 "
      "round trips of 64 bytes with the echo server in another process (per "
      "round trip); threads: the client process's peak OS threads")
NC_ROUNDS = 10


class _PeakThreads:
    """Samples the process's OS threads (/proc/self/task) every 2 ms from a
    thread of its own, which is not counted."""

    def __init__(self):
        import threading
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, len(os.listdir("/proc/self/task")) - 1)
            self._stop.wait(0.002)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def _nc_result(t, n, done, peak):
    if sum(done) != n * NC_ROUNDS:
        raise AssertionError(f"{n * NC_ROUNDS - sum(done)} round trips "
                             "missing")
    r = per_op(t, n * NC_ROUNDS)
    r["extra"] = {"threads": peak}
    return r


def _nc_check(got):
    if got != MESSAGE:
        raise AssertionError("echo returned other bytes")


@workload("net_conns", *NC)
def net_conns__goroutine(n):
    from goroutine import net, sync
    done, wg = [], sync.WaitGroup()

    def client(port):
        with net.dial("tcp", "127.0.0.1:%d" % port) as c:
            for _ in range(NC_ROUNDS):
                c.write(MESSAGE)
                got = b""
                while len(got) < len(MESSAGE):
                    chunk = c.read(len(MESSAGE) - len(got))
                    if not chunk:
                        raise ConnectionError("echo server closed")
                    got += chunk
                _nc_check(got)
        done.append(NC_ROUNDS)
    with echo_server() as port, _PeakThreads() as pk:
        t = time.perf_counter()
        for _ in range(n):
            wg.go(client, port)
        wg.wait()
        t = time.perf_counter() - t
    return _nc_result(t, n, done, pk.peak)


def _nc_blocking_client(sock_module, port, done):
    with sock_module.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(NC_ROUNDS):
            s.sendall(MESSAGE)
            got = b""
            while len(got) < len(MESSAGE):
                chunk = s.recv(len(MESSAGE) - len(got))
                if not chunk:
                    raise ConnectionError("echo server closed")
                got += chunk
            _nc_check(got)
    done.append(NC_ROUNDS)


@workload("net_conns", *NC)
def net_conns__gevent(n):
    import gevent
    from gevent import socket as gsocket
    done = []
    with echo_server() as port, _PeakThreads() as pk:
        t = time.perf_counter()
        gevent.joinall([gevent.spawn(_nc_blocking_client, gsocket, port, done)
                        for _ in range(n)], raise_error=True)
        t = time.perf_counter() - t
    return _nc_result(t, n, done, pk.peak)


@workload("net_conns", *NC)
def net_conns__asyncio(n):
    import asyncio
    done = []

    async def client(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(NC_ROUNDS):
            writer.write(MESSAGE)
            await writer.drain()
            _nc_check(await reader.readexactly(len(MESSAGE)))
        writer.close()
        await writer.wait_closed()
        done.append(NC_ROUNDS)

    async def main(port):
        t = time.perf_counter()
        await asyncio.gather(*(client(port) for _ in range(n)))
        return time.perf_counter() - t

    with echo_server() as port, _PeakThreads() as pk:
        t = asyncio.run(main(port))
    return _nc_result(t, n, done, pk.peak)


@workload("net_conns", *NC)
def net_conns__threading(n):
    import threading
    # 10,000 threads at the default 8 MiB of stack reserve 80 GB.
    threading.stack_size(256 * 1024)
    done = []
    with echo_server() as port, _PeakThreads() as pk:
        ts = [threading.Thread(target=_nc_blocking_client,
                               args=(socket, port, done)) for _ in range(n)]
        t = time.perf_counter()
        for x in ts:
            x.start()
        for x in ts:
            x.join()
        t = time.perf_counter() - t
    return _nc_result(t, n, done, pk.peak)


# ---- the map ---------------------------------------------------------------

MG = ((20000, 1000000), "ns/op", "single-thread get and set of int and str "
      "keys (per operation)")


MAP_KEYS = list(range(1000)) + [str(i) for i in range(1000)]


def _map_ops(m, n, keys=MAP_KEYS, clock=time.perf_counter):
    nk = len(keys)
    for k in keys:
        m[k] = 0
    t = clock()
    for i in range(n // 4):
        k = keys[i % nk]
        m[k] = i
        m[k]
        k2 = keys[(i * 7) % nk]
        m[k2] = i
        m[k2]
    return per_op(clock() - t, n)


@workload("map_get_set", *MG)
def map_get_set__goroutine(n):
    from goroutine import Map
    return _map_ops(Map(), n)


@workload("map_get_set", *MG)
def map_get_set__dict(n):
    return _map_ops({}, n)


MI = ((8000, 400000), "ns/op", "4 workers incrementing 16 shared keys "
      "(per increment): Map.incr from goroutines against a dict under "
      "threading.Lock from threads")


@workload("map_incr_4", *MI)
def map_incr_4__goroutine(n):
    from goroutine import Map, sync
    m = Map()
    per = n // 4

    def work():
        for i in range(per):
            m.incr(i & 15)
    wg = sync.WaitGroup()
    t = time.perf_counter()
    for _ in range(4):
        wg.go(work)
    wg.wait()
    t = time.perf_counter() - t
    assert sum(m.values()) == per * 4
    return per_op(t, per * 4)


@workload("map_incr_4", *MI)
def map_incr_4__threading(n):
    import threading
    d, lock = {}, threading.Lock()
    per = n // 4

    def work():
        for i in range(per):
            k = i & 15
            with lock:
                d[k] = d.get(k, 0) + 1
    ts = [threading.Thread(target=work) for _ in range(4)]
    t = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    t = time.perf_counter() - t
    assert sum(d.values()) == per * 4
    return per_op(t, per * 4)


MU = ((20000, 1000000), "ns/op", "update() of n int pairs into an empty map "
      "(per pair); the GIL is released for the insertion")


@workload("map_update", *MU)
def map_update__goroutine(n):
    from goroutine import Map
    pairs = [(i, i) for i in range(n)]
    m = Map()
    t = time.perf_counter()
    m.update(pairs)
    return per_op(time.perf_counter() - t, n)


@workload("map_update", *MU)
def map_update__dict(n):
    pairs = [(i, i) for i in range(n)]
    d = {}
    t = time.perf_counter()
    d.update(pairs)
    return per_op(time.perf_counter() - t, n)


# ---- wake latency under CPU load (preemption) -----------------------------
#
# GOMAXPROCS workers run pure-Python loops; the main thread wakes an echo
# worker by a channel send (a queue.put for threads) and the worker answers
# with the time it started to run.  The row's value is the median from the
# send to that answer, with the p99 next to it; the main thread sleeps a
# little between sends, so the echo worker is parked each time and its
# wake-up is what is measured.  cpu_bound is the loop throughput of the
# same workers alone and with the echo worker pinged every millisecond.

WL = ((60, 400), "ms", "median wake-to-answer of a worker woken by a channel "
      "send while GOMAXPROCS workers run pure-Python loops (p99 beside it)")
CB = ((200, 3000), "ns/op", "GOMAXPROCS workers running a pure-Python loop "
      "(process CPU time per 1000-step unit, so that other load on the "
      "machine does not count); with_echo: while a worker is woken every "
      "millisecond")


def _burn(units, counts, i, stop):
    x = 0
    for _ in range(units):
        if stop and stop[0]:
            break
        for j in range(1000):
            x += j
        counts[i] += 1
    return x


def _latency_row(lat):
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return {"value": statistics.median(lat) * 1000, "unit": "ms",
            "extra": {"p99": p99 * 1000}}


def _gomaxprocs():
    """GOMAXPROCS as the runtime reads it, without starting the runtime
    (the threads rows must not have its threads)."""
    env = os.environ.get("GOMAXPROCS", "")
    return int(env) if env.isdigit() and int(env) > 0 else \
        len(os.sched_getaffinity(0))


def _ping_loop(n, send, recv, gap=0.002):
    lat = []
    for i in range(n):
        time.sleep(gap * (0.5 + (i % 7) / 7))
        t0 = time.perf_counter()
        send(t0)
        lat.append(recv() - t0)
    return lat


@workload("wake_latency", *WL)
def wake_latency__goroutine(n):
    return _wake_latency_goroutine(n)


@workload("wake_latency", *WL)
def wake_latency__preemptoff(n):
    # goroutine with asynchronous preemption turned off (GODEBUG, read when
    # the runtime starts: this child has not imported goroutine yet).
    os.environ["GODEBUG"] = "asyncpreemptoff=1"
    return _wake_latency_goroutine(n)


def _wake_latency_goroutine(n):
    from goroutine import chan, go, sync
    k, stop = _gomaxprocs(), [False]
    counts, wg = [0] * k, sync.WaitGroup()
    ping, pong = chan(), chan()

    def echo():
        while ping.recv() is not None:
            pong.send(time.perf_counter())
    go(echo)
    for i in range(k):
        wg.go(_burn, 10 ** 9, counts, i, stop)
    while min(counts) == 0:
        time.sleep(0.001)
    lat = _ping_loop(n, ping.send, pong.recv)
    stop[0] = True
    ping.send(None)
    wg.wait()
    return _latency_row(lat)


@workload("wake_latency", *WL)
def wake_latency__threading(n):
    import queue
    import threading
    k, stop = _gomaxprocs(), [False]
    counts = [0] * k
    ping, pong = queue.Queue(), queue.Queue()

    def echo():
        while ping.get() is not None:
            pong.put(time.perf_counter())
    ts = [threading.Thread(target=echo)]
    ts += [threading.Thread(target=_burn, args=(10 ** 9, counts, i, stop))
           for i in range(k)]
    for t in ts:
        t.start()
    while min(counts) == 0:
        time.sleep(0.001)
    lat = _ping_loop(n, ping.put, pong.get)
    stop[0] = True
    ping.put(None)
    for t in ts:
        t.join()
    return _latency_row(lat)


def _cpu_goroutine(n, echo):
    from goroutine import chan, go, sync
    k = _gomaxprocs()
    counts, wg = [0] * k, sync.WaitGroup()
    ping, pong = chan(), chan()

    def answer():
        while ping.recv() is not None:
            pong.send(time.perf_counter())
    t = time.process_time()
    for i in range(k):
        wg.go(_burn, n, counts, i, None)
    if echo:
        go(answer)
        while sum(counts) < n * k:
            time.sleep(0.001)
            ping.send(0)
            pong.recv()
        ping.send(None)
    wg.wait()
    return per_op(time.process_time() - t, n * k)


def _cpu_threading(n, echo):
    import queue
    import threading
    k = _gomaxprocs()
    counts = [0] * k
    ping, pong = queue.Queue(), queue.Queue()

    def answer():
        while ping.get() is not None:
            pong.put(time.perf_counter())
    ts = [threading.Thread(target=_burn, args=(n, counts, i, None))
          for i in range(k)]
    t = time.process_time()
    for x in ts:
        x.start()
    if echo:
        e = threading.Thread(target=answer)
        e.start()
        while sum(counts) < n * k:
            time.sleep(0.001)
            ping.put(0)
            pong.get()
        ping.put(None)
        e.join()
    for x in ts:
        x.join()
    return per_op(time.process_time() - t, n * k)


@workload("cpu_bound", *CB)
def cpu_bound__goroutine(n):
    return _cpu_goroutine(n, False)


@workload("cpu_bound", *CB)
def cpu_bound__with_echo(n):
    return _cpu_goroutine(n, True)


@workload("cpu_bound", *CB)
def cpu_bound__preemptoff(n):
    os.environ["GODEBUG"] = "asyncpreemptoff=1"     # as wake_latency
    return _cpu_goroutine(n, False)


@workload("cpu_bound", *CB)
def cpu_bound__off_echo(n):
    os.environ["GODEBUG"] = "asyncpreemptoff=1"
    return _cpu_goroutine(n, True)


@workload("cpu_bound", *CB)
def cpu_bound__threading(n):
    return _cpu_threading(n, False)


@workload("cpu_bound", *CB)
def cpu_bound__threads_echo(n):
    return _cpu_threading(n, True)


# ---- the newer Go-style packages on the index ------------------------------
#
# py-routine (PyPI `pygo-routines`, import `pyroutine`, 0.1.0): routines
# on a pool of OS threads (a blocked routine holds its thread), channels,
# select, WaitGroup, Mutex and a context tree in pure Python.  Sizes are
# scaled down as for pygolang where every unit is a thread.
#
# pygoroutine (0.1.11): one asyncio loop on a background thread; go(f)
# runs a plain function through asyncio.to_thread (a pool of
# min(32, cpus + 4) threads, so at most that many may block at once) and
# a coroutine function as a task on the loop; a Channel is an
# asyncio.Queue driven from other threads with run_coroutine_threadsafe,
# and put() returns before the value is taken.  Rows that park many
# units use coroutine functions, the only way it can park more than the
# pool's size.  It has no mutex and no cancel-only context.


def _pyroutine():
    os.environ.setdefault("PYROUTINE_NO_GIL_WARNING", "1")
    import pyroutine
    return pyroutine


@workload("pingpong", *PP)
def pingpong__pyroutine(n):
    pr = _pyroutine()
    n = max(1, n // 20)             # its routines are OS threads
    a, b = pr.Chan(), pr.Chan()
    h = pr.go(lambda: [b.send(a.recv()) for _ in range(n)])
    t = time.perf_counter()
    for i in range(n):
        a.send(i)
        assert b.recv() == i
    t = time.perf_counter() - t
    h.result()
    return per_op(t, n)


@workload("pingpong", *PP)
def pingpong__pygoroutine(n):
    import pygoroutine as pg
    n = max(1, n // 200)            # ~1 ms a round trip
    a, b = pg.nc(1), pg.nc(1)

    def pong():
        for _ in range(n):
            b.put(a.get())
    f = pg.go(pong)
    t = time.perf_counter()
    for i in range(n):
        a.put(i)
        assert b.get() == i
    t = time.perf_counter() - t
    f.result()
    return per_op(t, n)


@workload("buffered_1p1c", *BUF)
def buffered_1p1c__pyroutine(n):
    pr = _pyroutine()
    n = max(1, n // 10)
    c = pr.Chan(128)

    def produce():
        for i in range(n):
            c.send(i)
        c.close()
    t = time.perf_counter()
    h = pr.go(produce)
    got = sum(1 for _ in c)
    t = time.perf_counter() - t
    h.result()
    assert got == n
    return per_op(t, n)


@workload("mpmc_4x4", *MP)
def mpmc_4x4__pyroutine(n):
    pr = _pyroutine()
    n = max(4, n // 10)
    c = pr.Chan(16)
    per = n // 4
    prod, cons = pr.WaitGroup(), pr.WaitGroup()
    t = time.perf_counter()
    for _ in range(4):
        prod.go(lambda: [c.send(i) for i in range(per)])
        cons.go(lambda: [None for _ in c])
    prod.wait()
    c.close()
    cons.wait()
    return per_op(time.perf_counter() - t, per * 4)


def _select_pyroutine(n, k):
    pr = _pyroutine()
    n = max(k, n // 10)
    chans = [pr.Chan() for _ in range(k)]
    per = n // k
    hs = [pr.go(lambda c=c: [c.send(i) for i in range(per)]) for c in chans]
    cases = [pr.recv_case(c) for c in chans]
    t = time.perf_counter()
    for _ in range(per * k):
        pr.select(*cases)
    t = time.perf_counter() - t
    for h in hs:
        h.result()
    return per_op(t, per * k)


@workload("select_2", *SEL)
def select_2__pyroutine(n):
    return _select_pyroutine(n, 2)


@workload("select_8", *SEL)
def select_8__pyroutine(n):
    return _select_pyroutine(n, 8)


@workload("select_2", *SEL)
def select_2__pygoroutine(n):
    # Its select runs a get task per case and keeps one finished task's
    # value: when both finish in the same loop pass the other value is
    # dropped.  So the senders (coroutines on its loop, each put waiting
    # for room in a 1-slot queue) never stop, and the receiver counts its
    # selects; the senders are left blocked at the end.
    import pygoroutine as pg
    n = max(2, n // 20)
    chans = [pg.nc(1) for _ in range(2)]
    running = [True]

    async def produce(c):
        i = 0
        while running[0]:
            await c.put_async(i)
            i += 1
    for c in chans:
        pg.go(produce, c)
    cases = [pg.Case(c, pg.GET) for c in chans]
    t = time.perf_counter()
    for _ in range(n):
        pg.select(cases)
    t = time.perf_counter() - t
    running[0] = False
    return per_op(t, n)


@workload("spawn", *SP)
def spawn__pyroutine(n):
    pr = _pyroutine()
    n = max(100, n // 10)           # a pooled OS thread per routine

    def f():
        pass
    t = time.perf_counter()
    for _ in range(n // 100):
        wg = pr.WaitGroup()
        for _ in range(100):
            wg.go(f)
        wg.wait()
    return per_op(time.perf_counter() - t, n // 100 * 100)


@workload("spawn", *SP)
def spawn__pygoroutine(n):
    import concurrent.futures
    import pygoroutine as pg
    n = max(100, n // 10)

    def f():
        pass
    t = time.perf_counter()
    for _ in range(n // 100):
        concurrent.futures.wait([pg.go(f) for _ in range(100)])
    return per_op(time.perf_counter() - t, n // 100 * 100)


@workload("daisy_chain", *DC)
def daisy_chain__pyroutine(n):
    pr = _pyroutine()
    n = max(10, n // 100)           # one OS thread per link
    mark = mem_mark()
    leftmost = pr.Chan()
    left = leftmost
    t = time.perf_counter()
    for _ in range(n):
        right = pr.Chan()
        pr.go(lambda l, r: l.send(1 + r.recv()), left, right)
        left = right
    pr.go(right.send, 1)
    assert leftmost.recv() == n + 1
    return peak_since(per_op(time.perf_counter() - t, n), mark)


@workload("daisy_chain", *DC)
def daisy_chain__pygoroutine(n):
    import pygoroutine as pg
    n = max(10, n // 50)            # ~1.5 ms a link: each go() crosses threads
    mark = mem_mark()

    async def link(l, r):
        await l.put_async(1 + await r.get_async())
    leftmost = pg.nc()
    left = leftmost
    t = time.perf_counter()
    for _ in range(n):
        right = pg.nc()
        pg.go(link, left, right)
        left = right
    right.put(1)
    assert leftmost.get() == n + 1
    return peak_since(per_op(time.perf_counter() - t, n), mark)


@workload("parked_memory", *PM)
def parked_memory__pyroutine(n):
    pr = _pyroutine()
    n = max(10, n // 100)           # one OS thread each
    gate, ready = pr.Chan(), pr.WaitGroup()
    ready.add(n)

    def park():
        ready.done()
        for _ in gate:
            pass
    base = rss_bytes()
    hs = [pr.go(park) for _ in range(n)]
    ready.wait()
    used = rss_bytes() - base
    gate.close()
    for h in hs:
        h.result()
    return {"value": used / n, "unit": "B/unit"}


@workload("parked_memory", *PM)
def parked_memory__pygoroutine(n):
    import pygoroutine as pg
    gate = pg.nc()
    parked = [0]

    async def park():
        parked[0] += 1              # on the loop's thread only
        await gate.get_async()

    async def noop():
        pass
    pg.go(noop).result()            # its loop runs before measuring
    base = rss_bytes()
    fs = [pg.go(park) for _ in range(n)]
    while parked[0] < n:
        time.sleep(0.01)
    used = rss_bytes() - base
    for _ in range(n):
        gate.put(None)
    for f in fs:
        f.result()
    return {"value": used / n, "unit": "B/unit"}


@workload("mutex_8", *MX)
def mutex_8__pyroutine(n):
    pr = _pyroutine()
    m, wg, c = pr.Mutex(), pr.WaitGroup(), [0]
    per = n // 8

    def work():
        for _ in range(per):
            m.lock()
            c[0] += 1
            m.unlock()
    t = time.perf_counter()
    for _ in range(8):
        wg.go(work)
    wg.wait()
    assert c[0] == per * 8
    return per_op(time.perf_counter() - t, per * 8)


@workload("ctx_cancel", *CC)
def ctx_cancel__pyroutine(n):
    pr = _pyroutine()
    n = max(10, n // 10)            # one OS thread per waiter
    ctx, cancel = pr.with_cancel(pr.background())
    wg = pr.WaitGroup()
    done = ctx.done()
    for _ in range(n):
        wg.go(lambda: [None for _ in done])
    time.sleep(0.05)
    t = time.perf_counter()
    cancel()
    wg.wait()
    return per_op(time.perf_counter() - t, n)
