"""An asyncio service that hands blocking work to goroutines: requests
arrive on the event loop, a pool of goroutines does the blocking part, and
answers come back with recv_async -- the loop never blocks."""
import asyncio
import hashlib
import time as _time

from goroutine import chan, go


def blocking_worker(jobs):
    for n, reply in jobs:
        _time.sleep(0.01)                      # blocking I/O stand-in
        reply.send(hashlib.sha1(str(n).encode()).hexdigest()[:8])


async def handle(jobs, n):
    reply = chan(1)
    await jobs.send_async((n, reply))
    return n, await reply.recv_async()


async def main():
    jobs = chan()
    for _ in range(8):
        go(blocking_worker, jobs)
    heartbeat = []

    async def beat():
        while True:
            heartbeat.append(_time.monotonic())
            await asyncio.sleep(0.005)
    hb = asyncio.ensure_future(beat())
    t0 = _time.monotonic()
    answers = await asyncio.gather(*(handle(jobs, n) for n in range(40)))
    took = _time.monotonic() - t0
    hb.cancel()
    jobs.close()
    print(f"asyncio service: 40 requests (10 ms of blocking work each) in "
          f"{took:.2f} s on 8 goroutines; the loop ticked {len(heartbeat)} "
          f"times meanwhile; e.g. {answers[0]}")
    assert len(answers) == 40 and len(heartbeat) > 5


if __name__ == "__main__":
    asyncio.run(main())
