"""What the server examples (net_echo.py, http_hello.py) share: Go's
accept loop, and their command line.

    python examples/X.py --serve ADDR   # serve on ADDR until Ctrl-C
    python examples/X.py                # a self-test against a goroutine
"""
from goroutine import go, net


def serve(ln, handle):
    """Accept until ln is closed, each connection handled in a goroutine
    of its own and closed when handle returns.  A peer that resets its
    connection ends that handler quietly, as in Go's net/http."""
    for c in ln:
        go(_serve_conn, handle, c)


def _serve_conn(handle, c):
    with c:
        try:
            handle(c)
        except ConnectionError:
            pass


def main(argv, handle, what, default_address, self_test):
    """--serve [ADDR]: serve from the main thread, which accepts (so
    Ctrl-C stops it); else self_test(address) against a server in a
    goroutine."""
    if argv[1:2] == ["--serve"]:
        ln = net.listen("tcp", argv[2] if len(argv) > 2 else default_address)
        host, port = ln.addr()[:2]
        print(f"{what} listening on {host}:{port}", flush=True)
        try:
            serve(ln, handle)
        except KeyboardInterrupt:
            pass
        finally:
            ln.close()
        return
    with net.listen("tcp", "127.0.0.1:0") as ln:
        go(serve, ln, handle)
        self_test("127.0.0.1:%d" % ln.addr()[1])
