"""A minimal HTTP/1.1 hello-world server on goroutine.net.

    python examples/http_hello.py --serve 127.0.0.1:8080   # Ctrl-C stops it
    python examples/http_hello.py                          # a self-test

One goroutine per connection, keep-alive, GET/HEAD only, no request
bodies: the smallest server a load generator (wrk) can talk to.
"""
import sys
import urllib.request

from goroutine import go, net

BODY = b"Hello, world!\n"
OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
      b"Content-Length: %d\r\n\r\n" % len(BODY))
BAD = (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
       b"Connection: close\r\n\r\n")
MAX_HEAD = 16 * 1024


def handle(c):
    with c:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                if len(buf) > MAX_HEAD:
                    c.write(BAD)
                    return
                data = c.read()
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            parts = lines[0].split()
            if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
                c.write(BAD)
                return
            headers = b"\n".join(lines[1:]).lower()
            close = (parts[2] == b"HTTP/1.0"
                     and b"connection: keep-alive" not in headers
                     or b"connection: close" in headers)
            reply = OK if not close else OK[:-2] + b"Connection: close\r\n\r\n"
            c.write(reply + (BODY if parts[0] == b"GET" else b""))
            if close:
                return


def serve(ln):
    for c in ln:
        go(handle, c)


def main(argv):
    if argv[1:2] == ["--serve"]:
        ln = net.listen("tcp", argv[2] if len(argv) > 2 else "127.0.0.1:8080")
        host, port = ln.addr()[:2]
        print(f"http server listening on {host}:{port}", flush=True)
        try:
            serve(ln)
        except KeyboardInterrupt:
            pass
        finally:
            ln.close()
        return
    ln = net.listen("tcp", "127.0.0.1:0")
    go(serve, ln)
    url = "http://127.0.0.1:%d/" % ln.addr()[1]
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(url, timeout=10) as r:
        print(r.status, r.read().decode().strip())
    ln.close()


if __name__ == "__main__":
    main(sys.argv)
