"""A goroutine-per-connection TCP echo server on goroutine.net.

    python examples/net_echo.py --serve 127.0.0.1:7000   # Ctrl-C stops it
    python examples/net_echo.py                          # a self-test

Each connection gets its own goroutine, written as blocking code; while
it waits for bytes it is parked on the netpoller and holds no OS thread,
so 10,000 idle clients cost 10,000 parked goroutines on a few threads.
The accept loop and the command line are in _serve.py.
"""
import sys

from goroutine import net

import _serve


def handle(c):
    while True:
        data = c.read()
        if not data:                # the client closed its side
            return
        c.write(data)


def self_test(address):
    with net.dial("tcp", address) as c:
        for word in (b"hello", b"goroutine", b"net"):
            c.write(word)
            print(c.read().decode())


if __name__ == "__main__":
    _serve.main(sys.argv, handle, "echo server", "127.0.0.1:7000", self_test)
