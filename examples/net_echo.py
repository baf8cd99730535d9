"""A goroutine-per-connection TCP echo server on goroutine.net.

    python examples/net_echo.py --serve 127.0.0.1:7000   # Ctrl-C stops it
    python examples/net_echo.py                          # a self-test

Each connection gets its own goroutine, written as blocking code; while
it waits for bytes it is parked on the netpoller and holds no OS thread,
so 10,000 idle clients cost 10,000 parked goroutines on a few threads.
"""
import sys

from goroutine import go, net


def handle(c):
    with c:
        while True:
            data = c.read()
            if not data:            # the client closed its side
                return
            c.write(data)


def serve(ln):
    for c in ln:                    # accepts until ln.close()
        go(handle, c)


def main(argv):
    if argv[1:2] == ["--serve"]:
        ln = net.listen("tcp", argv[2] if len(argv) > 2 else "127.0.0.1:7000")
        host, port = ln.addr()[:2]
        print(f"echo server listening on {host}:{port}", flush=True)
        try:
            serve(ln)               # the main thread accepts: Ctrl-C works
        except KeyboardInterrupt:
            pass
        finally:
            ln.close()
        return
    ln = net.listen("tcp", "127.0.0.1:0")
    go(serve, ln)
    with net.dial("tcp", "127.0.0.1:%d" % ln.addr()[1]) as c:
        for word in (b"hello", b"goroutine", b"net"):
            c.write(word)
            print(c.read().decode())
    ln.close()


if __name__ == "__main__":
    main(sys.argv)
