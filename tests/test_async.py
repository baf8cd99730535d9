"""The asyncio twins: they suspend the task, not the thread, and a
cancelled operation either completed (its result is delivered) or never
happened."""
import asyncio
import random

import pytest

from goroutine import Panic, chan, default, go, select, select_async, sync
from goroutine import time


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_recv_async_and_send_async_suspend_the_task_not_the_loop():
    async def main():
        c = chan()
        ticks = []

        async def ticker():
            for _ in range(5):
                ticks.append(1)
                await asyncio.sleep(0.005)
        t = asyncio.ensure_future(ticker())
        go(lambda: (time.sleep(0.05), c.send("v")))
        v = await c.recv_async()
        await t
        return v, len(ticks)
    v, n = run(main())
    assert v == "v" and n == 5


def test_recv_async_underscore_reports_closed():
    async def main():
        c = chan()
        go(lambda: (time.sleep(0.01), c.close()))
        return await c.recv_async_()
    assert run(main()) == (None, False)


def test_send_async_to_a_closed_channel_panics():
    async def main():
        c = chan()
        c.close()
        await c.send_async(1)
    with pytest.raises(Panic, match="send on closed channel"):
        run(main())


def test_async_for_receives_until_closed():
    async def main():
        c = chan()

        def produce():
            for i in range(50):
                c.send(i)
            c.close()
        go(produce)
        return [v async for v in c]
    assert run(main()) == list(range(50))


def test_select_async_takes_the_same_cases():
    async def main():
        a, b = chan(), chan()           # nobody receives from b
        go(lambda: (time.sleep(0.01), a.send("a")))
        r1 = await select_async((b.send, 1), a.recv)
        r2 = await select_async(a.recv, default)
        return r1, r2
    r1, r2 = run(main())
    assert r1 == (1, "a") and r2 == (1, None)


def test_waitgroup_wait_async_and_mutex_lock_async():
    async def main():
        wg = sync.WaitGroup()
        for _ in range(5):
            wg.go(time.sleep, 0.01)
        await wg.wait_async()
        m = sync.Mutex()
        m.lock()
        go(lambda: (time.sleep(0.01), m.unlock()))
        await m.lock_async()
        return m.locked()
    assert run(main()) is True


def test_cancelled_lock_async_leaves_the_mutex_as_it_was():
    async def main():
        m = sync.Mutex()
        m.lock()
        t = asyncio.ensure_future(m.lock_async())
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        m.unlock()
        await asyncio.sleep(0.02)
        return m.try_lock()
    assert run(main()) is True


def test_cancellation_stress_loses_no_value():
    # Producers send 0..n-1; consumer tasks receive with random
    # cancellations.  Every value sent is received exactly once: by a
    # task that finished, or by one whose cancel lost to the delivery.
    n = 2000

    async def main():
        c = chan()
        got = []

        def produce():
            for i in range(n):
                c.send(i)
            c.close()
        go(produce)

        async def consumer():
            while True:
                try:
                    v, ok = await c.recv_async_()
                except asyncio.CancelledError:
                    return "cancelled"
                if not ok:
                    return "closed"
                got.append(v)
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    return "cancelled"
        finished = 0
        while finished < 1:
            tasks = [asyncio.ensure_future(consumer()) for _ in range(4)]
            await asyncio.sleep(random.random() * 0.002)
            for t in random.sample(tasks, 2):
                t.cancel()
            res = await asyncio.gather(*tasks, return_exceptions=True)
            finished += res.count("closed")
        return got
    got = run(main())
    assert sorted(got) == list(range(n))
