"""A minimal HTTP/1.1 hello-world server on goroutine.net.

    python examples/http_hello.py --serve 127.0.0.1:8080   # Ctrl-C stops it
    python examples/http_hello.py                          # a self-test

One goroutine per connection, keep-alive, GET/HEAD only, no request
bodies: the smallest server a load generator (wrk) can talk to.  The
protocol is in respond(), which knows nothing of sockets: `make bench`
serves it from asyncio and gevent too (benchmarks/_http_server.py), so
the three servers differ only in how they wait for bytes.  The accept
loop and the command line are in _serve.py.
"""
import sys
import urllib.request

import _serve

BODY = b"Hello, world!\n"
OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
      b"Content-Length: %d\r\n\r\n" % len(BODY))
OK_CLOSE = OK[:-2] + b"Connection: close\r\n\r\n"
BAD = (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
       b"Connection: close\r\n\r\n")
MAX_HEAD = 16 * 1024


def respond(buf):
    """Answer every whole request at the front of buf (pipelined ones in
    one go): (replies, rest, close) -- the bytes to write, the bytes left
    over, and whether to close the connection after writing."""
    out = []
    while True:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if not sep:
            if len(buf) > MAX_HEAD:
                return b"".join(out) + BAD, b"", True
            return b"".join(out), buf, False
        buf = rest
        lines = head.split(b"\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
            return b"".join(out) + BAD, b"", True
        headers = b"\n".join(lines[1:]).lower()
        close = (parts[2] == b"HTTP/1.0"
                 and b"connection: keep-alive" not in headers
                 or b"connection: close" in headers)
        out.append((OK_CLOSE if close else OK)
                   + (BODY if parts[0] == b"GET" else b""))
        if close:
            return b"".join(out), b"", True


def handle(c):
    buf = b""
    while True:
        data = c.read()
        if not data:
            return
        out, buf, close = respond(buf + data)
        if out:
            c.write(out)
        if close:
            return


def self_test(address):
    url = "http://%s/" % address
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(url, timeout=10) as r:
        print(r.status, r.read().decode().strip())


if __name__ == "__main__":
    _serve.main(sys.argv, handle, "http server", "127.0.0.1:8080", self_test)
