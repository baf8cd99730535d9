"""Loopback echo server for the blocking-socket workload, in its own process.

    python -m benchmarks._echo

Listens on 127.0.0.1 (an ephemeral port, printed as the first stdout line)
and echoes every byte back on the same connection.  It runs as a separate
process so that its Python loop does not compete for the measured
process's GIL, and it exits when its stdin closes, so a measuring child
that dies cannot leave it behind.
"""
import selectors
import socket
import sys


def serve():
    sel = selectors.DefaultSelector()
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print(listener.getsockname()[1], flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "stdin":
                if not sys.stdin.buffer.read1(4096):
                    return
            elif key.data == "accept":
                conn, _ = listener.accept()
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(conn, selectors.EVENT_READ, "conn")
            else:
                conn = key.fileobj
                try:
                    data = conn.recv(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    conn.close()
                    continue
                # Replies are 64 bytes into an empty socket buffer: sendall
                # on a non-blocking socket does not hit EAGAIN here.
                conn.sendall(data)


if __name__ == "__main__":
    serve()
