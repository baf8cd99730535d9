"""The HTTP hello-world server of examples/http_hello.py on goroutine.net,
asyncio streams or gevent, in its own process, for benchmarks/http.py.

    python -m benchmarks._http_server IMPL serve
    python -m benchmarks._http_server IMPL idle N

All three answer with the example's respond() (the protocol, which knows
nothing of sockets), one handler per connection written in each library's
natural style: goroutine.net's Conn in a goroutine, asyncio.start_server's
reader/writer, gevent.server.StreamServer's cooperative socket.  So they
differ only in how a handler waits for bytes.

The first stdout line is the port (127.0.0.1).  `serve` answers requests
until stdin closes.  `idle N` holds every connection with a handler parked
in its read and prints "CONNS RSS_BYTES" twice, 0.5 s after the first and
after the N-th connection arrived: the driver divides the difference by
N - 1 (memory per idle connection, measured in the server process).
"""
import gc
import os
import pathlib
import resource
import sys
import threading

ROOT = pathlib.Path(__file__).resolve().parent.parent
BACKLOG = 4096


# The example's modules, as `python examples/http_hello.py` finds them.
sys.path.insert(0, str(ROOT / "examples"))
import _serve          # noqa: E402
import http_hello      # noqa: E402
from benchmarks.workloads import rss_bytes as rss      # noqa: E402

respond = http_hello.respond


class Idle:
    """Counts arrivals; at the first and the n-th, report() after a pause
    (schedule(delay, fn) is the library's own timer)."""

    def __init__(self, n, schedule):
        self.n, self.count, self.schedule = n, 0, schedule

    def arrived(self):
        self.count += 1
        if self.count in (1, self.n):
            self.schedule(0.5, self.report)

    def report(self):
        gc.collect()
        print(self.count, rss(), flush=True)


def exit_when_stdin_closes():
    """A thread that ends the process when the driver goes away, whatever
    the library's loop is doing."""
    def watch():
        sys.stdin.buffer.read()
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


# ---- goroutine.net -------------------------------------------------------

def run_goroutine(mode, n):
    from goroutine import go, net, time as gtime
    ln = net.listen("tcp", "127.0.0.1:0", backlog=BACKLOG)
    print(ln.addr()[1], flush=True)
    if mode == "serve":
        handle = http_hello.handle
    else:
        idle = Idle(n, lambda d, f: go(lambda: (gtime.sleep(d), f())))

        def handle(c):
            idle.arrived()
            c.read()
    _serve.serve(ln, handle)


# ---- asyncio streams -----------------------------------------------------

def run_asyncio(mode, n):
    import asyncio

    async def serve(reader, writer):
        buf = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                out, buf, close = respond(buf + data)
                if out:
                    writer.write(out)
                    await writer.drain()
                if close:
                    return
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def main():
        if mode == "serve":
            handler = serve
        else:
            loop = asyncio.get_running_loop()
            idle = Idle(n, loop.call_later)

            async def handler(reader, writer):
                idle.arrived()
                await reader.read(65536)
                writer.close()
        server = await asyncio.start_server(handler, "127.0.0.1", 0,
                                            backlog=BACKLOG)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()
    asyncio.run(main())


# ---- gevent --------------------------------------------------------------

def run_gevent(mode, n):
    import gevent
    from gevent.server import StreamServer

    def serve(sock, _addr):
        buf = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                out, buf, close = respond(buf + data)
                if out:
                    sock.sendall(out)
                if close:
                    return
        except ConnectionError:
            pass

    if mode == "serve":
        handler = serve
    else:
        idle = Idle(n, gevent.spawn_later)

        def handler(sock, _addr):
            idle.arrived()
            sock.recv(65536)
    server = StreamServer(("127.0.0.1", 0), handler, backlog=BACKLOG)
    server.start()
    print(server.server_port, flush=True)
    server.serve_forever()


IMPLS = {"goroutine": run_goroutine, "asyncio": run_asyncio,
         "gevent": run_gevent}


def main():
    impl, mode = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    exit_when_stdin_closes()
    IMPLS[impl](mode, n)


if __name__ == "__main__":
    main()
