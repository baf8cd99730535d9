"""Bounded-time stress: producers x consumers x select x close, goroutines
and threads mixed, with exact checksums.  GOROUTINE_STRESS_SECONDS sets
the time per test (default 3 s; `make stress` runs longer).

The cancellation test adds select with time.after/Timer timeouts and
ctx.done() cases, contexts with timeouts and cancel() fired at random
moments (a timer, a goroutine, a thread), channels closed by the root
context's cancellation, and sync.Mutex, WaitGroup and Map.incr under the
same load; every total is exact: an abandoned send is accounted as not
sent, so sent == received + left buffered, value by value."""
import itertools
import os
import random
import threading
import time
import traceback
from collections import Counter

from goroutine import (Map, Panic, chan, context, default, go, runtime,
                       select, sync)
from goroutine import time as gtime

SECONDS = float(os.environ.get("GOROUTINE_STRESS_SECONDS", "3"))


def test_nothing_is_lost_or_duplicated_under_mixed_load():
    deadline = time.monotonic() + SECONDS
    rounds = 0
    checked = 0
    while time.monotonic() < deadline:
        rounds += 1
        rng = random.Random(rounds)
        nch = rng.randint(1, 4)
        chans = [chan(rng.choice([0, 0, 1, 4, 64])) for _ in range(nch)]
        n_prod, n_cons, per = rng.randint(1, 6), rng.randint(1, 6), 300
        sums = chan(64)
        produced = chan(64)

        def produce(k, in_thread):
            s = 0
            for i in range(per):
                v = k * per + i
                if len(chans) > 1 and i % 3 == 0:
                    select(*[(c.send, v) for c in chans])
                else:
                    chans[i % len(chans)].send(v)
                s += v
                if i % 50 == 0 and not in_thread:
                    runtime.gosched()
            produced.send(s)

        def consume():
            s = n = 0
            open_ = list(chans)
            while open_:
                i, (v, ok) = select(*[c.recv_ for c in open_])
                if not ok:
                    open_.pop(i)
                    continue
                s += v
                n += 1
            sums.send((s, n))
        for k in range(n_prod):
            if k % 2:
                threading.Thread(target=produce, args=(k, True)).start()
            else:
                go(produce, k, False)
        cons_threads = []
        for k in range(n_cons):
            if k % 3 == 2:
                t = threading.Thread(target=consume)
                t.start()
                cons_threads.append(t)
            else:
                go(consume)
        want = sum(produced.recv() for _ in range(n_prod))
        for c in chans:
            c.close()
        got = [sums.recv() for _ in range(n_cons)]
        for t in cons_threads:
            t.join()
        assert sum(s for s, _ in got) == want
        assert sum(n for _, n in got) == n_prod * per
        checked += n_prod * per
    assert checked > 0


def test_close_racing_with_blocked_senders_and_selects():
    deadline = time.monotonic() + SECONDS / 2
    while time.monotonic() < deadline:
        c = chan(random.choice([0, 2]))
        results = chan(100)

        def sender(v):
            try:
                c.send(v)
                results.send(("sent", v))
            except Panic:
                results.send(("panic", v))

        def selector(v):
            try:
                if v % 4 == 0:
                    i, _ = select((c.send, v), default)
                else:
                    i, _ = select((c.send, v))
                results.send(("sent" if i == 0 else "skipped", v))
            except Panic:
                results.send(("panic", v))
        n = 20
        for v in range(n):
            go(sender if v % 2 else selector, v)
        received = []
        for _ in range(random.randint(0, n)):
            i, x = select(c.recv, default)
            if i == 0:
                received.append(x)
        c.close()
        received += list(c)
        outcome = [results.recv() for _ in range(n)]
        sent = [v for kind, v in outcome if kind == "sent"]
        # Exactly the values reported sent were received, each once: a
        # sender blocked at close panicked and sent nothing.
        assert sorted(received) == sorted(sent)


# ---- producers x consumers x close x select timeouts x cancellation ----

HANG = 60.0     # a round that has not ended by then hangs


def _wait(c, hang, what):
    """Receive from c, failing (with every goroutine's stack) on a hang."""
    i, v = select(c.recv, hang.recv)
    assert i == 0, f"{what} hangs:\n{runtime.stack()}"
    return v


def _spawn(how, f, *args):
    """Start f as a goroutine, a thread, or a goroutine started by a
    thread; return a thread to join, or None."""
    if how == "go":
        go(f, *args)
    elif how == "thread":
        t = threading.Thread(target=f, args=args)
        t.start()
        return t
    else:
        t = threading.Thread(target=go, args=(f, *args))
        t.start()
        return t


def _cancel_round(rng):
    """One round; returns what it checked (a Counter of operations)."""
    hang = gtime.Timer(HANG)
    nch = rng.randint(1, 3)
    chans = [chan(rng.choice([0, 0, 1, 8, 64])) for _ in range(nch)]
    if rng.random() < 0.5:
        root, cancel_root = context.with_timeout(
            context.background(), rng.uniform(0.002, 0.06))
    else:
        root, cancel_root = context.with_cancel(context.background())
    n_prod, n_cons = rng.randint(1, 6), rng.randint(1, 6)
    per = rng.randint(20, 400)
    threads, stops = [], []

    def fire_later(cancel, d):
        """cancel() after d seconds, from a timer's goroutine, a sleeping
        goroutine or a sleeping thread."""
        how = rng.choice(["timer", "go", "thread"])
        if how == "timer":
            stops.append(gtime.after_func(d, cancel))
        elif how == "go":
            go(lambda: (gtime.sleep(d), cancel()))
        else:
            threads.append(_spawn("thread",
                                  lambda: (time.sleep(d), cancel())))

    if rng.random() < 0.7:
        fire_later(cancel_root, rng.uniform(0, 0.05))

    # Cancelling the root closes every channel: blocked senders panic
    # (their value is not sent), receivers drain what is buffered.
    closed = chan(1)
    children = []

    tick = itertools.count().__next__   # atomic: orders events in time
    closed_at = []

    def close_all():
        for c in chans:
            c.close()
        closed_at.append(tick())
        # after_func runs once the whole subtree is cancelled: every
        # child is done by now.
        closed.send([ctx for ctx, _ in list(children)
                     if select(ctx.done().recv, default)[0] != 0
                     or ctx.err() is None])
    context.after_func(root, close_all)

    mu = sync.Mutex()
    guarded = [0, 0]        # sum and count of received values, under mu
    m = Map()
    wg = sync.WaitGroup()
    prod_reports, cons_reports = chan(n_prod), chan(n_cons)
    errors = []             # tracebacks from the producers and consumers

    def produce(k, seed, ctx):
        r = random.Random(seed)
        sent, dropped, ops = [], [], Counter()
        try:
            for i in range(per):
                v = k * per + i
                c = chans[i % nch]
                mode = r.randrange(4)
                ops["send"] += 1
                t0 = tick()
                try:
                    if mode == 0:
                        c.send(v)
                    elif mode == 1:
                        j, _ = select(ctx.done().recv, (c.send, v))
                        if j == 0:
                            assert ctx.err() is not None
                            dropped.append(v)
                            ops["abandoned"] += 1
                            break
                    elif mode == 2:
                        t = gtime.Timer(r.uniform(0.0002, 0.003))
                        j, _ = select((c.send, v), t.c.recv,
                                      ctx.done().recv)
                        t.stop()
                        if j == 1:
                            dropped.append(v)
                            ops["send timeout"] += 1
                            continue
                        if j == 2:
                            assert ctx.err() is not None
                            dropped.append(v)
                            ops["abandoned"] += 1
                            break
                    else:
                        j, _ = select(*[(x.send, v) for x in chans],
                                      ctx.done().recv)
                        if j == nch:
                            assert ctx.err() is not None
                            dropped.append(v)
                            ops["abandoned"] += 1
                            break
                except Panic as e:
                    assert str(e) == "send on closed channel", e
                    dropped.append(v)
                    ops["send panic"] += 1
                    break
                # A send that started after the channels were closed
                # must have panicked.
                assert not (closed_at and t0 > closed_at[0]), (
                    f"{v} sent after close")
                sent.append(v)
                m.incr(("sent", v % 7), v)
                if i % 64 == 0:
                    runtime.gosched()
        except BaseException:
            errors.append(traceback.format_exc())
        finally:
            m.incr("finished")
            prod_reports.send((k, sent, dropped, ops))
            wg.done()

    def consume(j, seed, stop_on_ctx):
        r = random.Random(seed)
        got, ops = [], Counter()
        open_ = list(chans)
        tmo = gtime.after(r.uniform(0.0005, 0.005))
        try:
            while open_:
                cases = [c.recv_ for c in open_] + [tmo.recv]
                if stop_on_ctx:
                    cases.append(root.done().recv)
                i, rx = select(*cases)
                ops["select"] += 1
                if i == len(open_):
                    ops["recv timeout"] += 1
                    tmo = gtime.after(r.uniform(0.0005, 0.005))
                    continue
                if i > len(open_):
                    ops["consumer left on cancel"] += 1
                    break
                v, ok = rx
                if not ok:
                    open_.pop(i)
                    continue
                got.append(v)
                if r.random() < 0.25:
                    while not mu.try_lock():
                        runtime.gosched()
                else:
                    mu.lock()
                try:
                    s = guarded[0]
                    if r.random() < 0.05:
                        runtime.gosched()   # a broken mutex loses updates
                    guarded[0] = s + v
                    guarded[1] += 1
                finally:
                    mu.unlock()
                m.incr(v)                   # unique keys: the map grows
                m.incr(("recv", v % 7), v)
                ops["recv"] += 1
                if r.random() < 0.01:
                    gtime.sleep(r.uniform(0, 0.002))  # a slow consumer
        except BaseException:
            errors.append(traceback.format_exc())
        finally:
            m.incr("finished")
            cons_reports.send((j, got, ops))
            wg.done()

    wg.add(n_prod + n_cons)
    for k in range(n_prod):
        ctx = root
        x = rng.random()
        if x < 0.3:
            ctx, cancel = context.with_timeout(root, rng.uniform(0.001, 0.08))
            children.append((ctx, cancel))
        elif x < 0.6:
            ctx, cancel = context.with_cancel(root)
            children.append((ctx, cancel))
            fire_later(cancel, rng.uniform(0, 0.03))
        t = _spawn(rng.choice(["go", "thread", "go_from_thread"]),
                   produce, k, rng.random(), ctx)
        if t:
            threads.append(t)
    for j in range(n_cons):
        t = _spawn(rng.choice(["go", "thread", "go_from_thread"]),
                   consume, j, rng.random(), rng.random() < 0.5)
        if t:
            threads.append(t)

    # Producers end by themselves (quota, timeout, cancel); then cancel the
    # root, which closes the channels, and the consumers end.
    prods = [_wait(prod_reports, hang.c, "a producer") for _ in range(n_prod)]
    cancel_root()
    assert _wait(closed, hang.c, "closing on cancel") == [], (
        "a child context outlived its cancelled parent")
    # WaitGroup.wait returns only after every done(), so after every
    # "finished" increment: checked from a goroutine and from a thread.
    waited = chan(2)
    for how in ("go", "thread"):
        t = _spawn(how, lambda: (wg.wait(), waited.send(m.get("finished"))))
        if t:
            threads.append(t)
    for _ in range(2):
        assert _wait(waited, hang.c, "WaitGroup.wait") == n_prod + n_cons
    conss = [_wait(cons_reports, hang.c, "a consumer") for _ in range(n_cons)]
    for t in threads:
        t.join(HANG)
        assert not t.is_alive(), "a thread hangs"
    for s in stops:
        s.stop()
    hang.stop()
    leftover = [v for c in chans for v in c]
    assert not errors, "\n".join(errors)

    sent = [v for _, s, _, _ in prods for v in s]
    dropped = [v for _, _, d, _ in prods for v in d]
    received = [v for _, g, _ in conss for v in g]
    # Exact: every value sent is received once (by a consumer or left in
    # a closed channel's buffer); an abandoned send delivered nothing.
    assert len(set(sent)) == len(sent) and not set(sent) & set(dropped)
    assert Counter(received + leftover) == Counter(sent), (
        f"lost {sorted(Counter(sent) - Counter(received + leftover))[:10]}, "
        f"extra {sorted(Counter(received + leftover) - Counter(sent))[:10]}")
    assert guarded == [sum(received), len(received)]
    for r_ in range(7):
        assert m.get(("sent", r_), 0) == sum(v for v in sent if v % 7 == r_)
        assert m.get(("recv", r_), 0) == sum(v for v in received
                                             if v % 7 == r_)
    assert all(m[v] == 1 for v in received)
    assert set(m) == (set(received) | {"finished"}
                      | {("sent", v % 7) for v in sent}
                      | {("recv", v % 7) for v in received})
    # Cancellation reached every descendant; a context is done for a
    # reason; its done channel is closed.
    assert root.err() in (context.canceled, context.deadlineExceeded)
    for ctx, cancel in children:
        assert ctx.err() in (context.canceled, context.deadlineExceeded)
        assert select(ctx.done().recv, default)[0] == 0
        cancel()
    ops = Counter()
    for _, _, _, o in prods:
        ops.update(o)
    for _, _, o in conss:
        ops.update(o)
    ops["values"] = len(sent)
    ops["left in buffers"] = len(leftover)
    ops["mutex"] = len(received)
    ops["map incr"] = len(sent) + 2 * len(received) + n_prod + n_cons
    return ops


def test_cancellation_timeouts_and_close_lose_or_duplicate_nothing():
    deadline = time.monotonic() + SECONDS
    total = Counter()
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
        total.update(_cancel_round(random.Random(10_000 + rounds)))
    # Every path was taken: values delivered, sends abandoned on cancel,
    # per-send and per-receive timeouts.
    assert total["values"] > 0 and total["abandoned"] + total["send panic"] > 0
    assert total["recv timeout"] > 0
    print(f"{rounds} rounds: {dict(total)}")
