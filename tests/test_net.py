"""goroutine.net and the netpoller (issue 15): every rule of API.md's "net".

A goroutine waiting on the network parks on the netpoller (src/netpoll.c)
instead of holding an OS thread; a plain thread calling the same
functions blocks.  Subprocess tests cover what must not hang (exit) and
what a fresh process measures (its OS threads).
"""
import errno
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time as _time

import pytest

import goroutine as gr
from goroutine import chan, context, go, net, runtime, sync
from conftest import ROOT_DIR, run_py, source_tree_env

HANG = 20.0     # a generous bound that only catches a hang


def in_goroutine(fn, *args):
    """Run fn(*args) in a goroutine; its result, or its exception raised
    here."""
    out = chan(1)

    def run():
        try:
            out.send((True, fn(*args)))
        except BaseException as e:
            out.send((False, e))
    go(run)
    i, r = gr.select(out.recv, gr.time.after(HANG).recv)
    assert i == 0, "the goroutine hung"
    ok, v = r
    if not ok:
        raise v
    return v


@pytest.fixture
def listener():
    ln = net.listen("tcp", "127.0.0.1:0")
    yield ln
    ln.close()


def pair(ln):
    """A connected (client Conn, server Conn) pair over ln."""
    got = chan(1)
    go(lambda: got.send(ln.accept()))
    c = net.dial("tcp", "127.0.0.1:%d" % ln.addr()[1])
    return c, got.recv()


def conn_pair():
    """A connected pair of Conns over a socketpair (unix)."""
    a, b = socket.socketpair()
    return net.Conn.from_socket(a), net.Conn.from_socket(b)


@pytest.fixture
def conns():
    """conn_pair(), both closed after the test (close is idempotent)."""
    a, b = conn_pair()
    yield a, b
    a.close()
    b.close()


def parked(n_before, extra, timeout=HANG):
    """Wait until `extra` more goroutines are parked than before."""
    deadline = _time.monotonic() + timeout
    while runtime.stats()["parked"] < n_before + extra:
        assert _time.monotonic() < deadline, runtime.stack()
        _time.sleep(0.005)


# ---- addresses and networks ----------------------------------------------

def test_listen_unknown_network_is_a_value_error():
    with pytest.raises(ValueError, match="unknown network 'udp'"):
        net.listen("udp", ":0")
    with pytest.raises(ValueError, match="unknown network 'x'"):
        net.dial("x", "127.0.0.1:1")


@pytest.mark.parametrize("address, msg", [
    ("127.0.0.1", "missing port in address"),
    ("::1:80", "too many colons in address"),
    ("[::1", "missing ']' in address"),
    ("127.0.0.1:99999", "invalid port"),
    ("127.0.0.1:nosuchservice", "unknown port"),
])
def test_bad_address_is_a_value_error(address, msg):
    with pytest.raises(ValueError, match=msg):
        net.listen("tcp", address)


def test_os_errors_keep_their_errno(listener):
    with pytest.raises(OSError) as e:
        net.listen("tcp", "127.0.0.1:%d" % listener.addr()[1])
    assert e.value.errno == errno.EADDRINUSE
    port = listener.addr()[1]
    listener.close()
    with pytest.raises(ConnectionRefusedError):
        in_goroutine(net.dial, "tcp", "127.0.0.1:%d" % port)


def test_err_closed_is_an_oserror_with_gos_message():
    assert issubclass(net.ErrClosed, OSError)
    assert str(net.ErrClosed("use of closed network connection")) == \
        "use of closed network connection"


def echo_once(network, listen_addr, dial_addr_of):
    with net.listen(network, listen_addr) as ln:
        go(echo_server, ln)
        with net.dial(network, dial_addr_of(ln)) as c:
            c.write(b"ping")
            return c.read()


@pytest.mark.parametrize("network, host", [
    ("tcp", "127.0.0.1"), ("tcp4", "127.0.0.1"), ("tcp6", "[::1]"),
    ("tcp", "[::1]")])
def test_tcp_v4_and_v6_echo_in_a_goroutine(network, host):
    r = in_goroutine(echo_once, network, host + ":0",
                     lambda ln: host + ":%d" % ln.addr()[1])
    assert r == b"ping"


def test_listen_on_all_interfaces_with_an_empty_host():
    with net.listen("tcp", ":0") as ln:
        port = ln.addr()[1]
        got = chan(1)

        def take():
            with ln.accept() as c:
                got.send(c.read())
        go(take)
        with net.dial("tcp", "127.0.0.1:%d" % port) as c:
            c.write(b"x")
        assert got.recv() == b"x"


def test_unix_echo_and_the_socket_file_is_removed(tmp_path):
    path = str(tmp_path / "s")
    r = in_goroutine(echo_once, "unix", path, lambda ln: path)
    assert r == b"ping"
    assert not os.path.exists(path)


def test_dial_resolves_names():
    r = in_goroutine(echo_once, "tcp", "127.0.0.1:0",
                     lambda ln: "localhost:%d" % ln.addr()[1])
    assert r == b"ping"


# ---- Listener ------------------------------------------------------------

def test_listener_addr_fileno_context_manager_and_repr():
    with net.listen("tcp", "127.0.0.1:0") as ln:
        host, port = ln.addr()
        assert host == "127.0.0.1" and port > 0
        assert ln.fileno() >= 0
        assert "Listener" in repr(ln)
    assert "closed" in repr(ln)
    with pytest.raises(net.ErrClosed):
        ln.accept()
    ln.close()      # idempotent


def test_close_wakes_goroutines_waiting_in_accept_with_err_closed():
    ln = net.listen("tcp", "127.0.0.1:0")
    errs = chan(3)
    before = runtime.stats()["parked"]
    for _ in range(3):
        def wait():
            try:
                ln.accept()
                errs.send(None)
            except BaseException as e:
                errs.send(e)
        go(wait)
    parked(before, 3)
    ln.close()
    for _ in range(3):
        e = errs.recv()
        assert isinstance(e, net.ErrClosed), e
        assert str(e) == "use of closed network connection"


def test_iterating_a_listener_accepts_until_it_is_closed():
    ln = net.listen("tcp", "127.0.0.1:0")
    port = ln.addr()[1]
    got = chan(10)

    def serve():
        for c in ln:
            got.send(c.read())
            c.close()
        got.close()
    go(serve)
    for i in range(3):
        with net.dial("tcp", "127.0.0.1:%d" % port) as c:
            c.write(b"%d" % i)
    _time.sleep(0.05)
    while runtime.stats()["parked"] == 0:
        _time.sleep(0.005)
    ln.close()
    assert sorted(got) == [b"0", b"1", b"2"]


def test_listener_from_socket_adopts_a_listening_socket():
    s = socket.create_server(("127.0.0.1", 0))
    ln = net.Listener.from_socket(s)
    try:
        assert s.gettimeout() == 0.0
        got = chan(1)

        def take():
            with ln.accept() as c:
                got.send(c.read())
        go(take)
        with net.dial("tcp", "127.0.0.1:%d" % s.getsockname()[1]) as c:
            c.write(b"adopted")
        assert got.recv() == b"adopted"
    finally:
        ln.close()


# ---- Conn ----------------------------------------------------------------

def test_conn_read_returns_at_most_n_bytes_and_b_empty_at_eof(listener):
    c, s = pair(listener)
    with c, s:
        c.write(b"hello world")
        assert in_goroutine(s.read, 5) == b"hello"
        assert in_goroutine(s.read) == b" world"
        c.socket.shutdown(socket.SHUT_WR)
        assert in_goroutine(s.read) == b""
        assert in_goroutine(s.read) == b""


def test_read_size_must_be_positive(listener):
    c, s = pair(listener)
    with c, s:
        with pytest.raises(ValueError, match="at least 1"):
            s.read(0)
        with pytest.raises(TypeError):
            s.read("1")


def test_read_returns_every_queued_byte_up_to_n(conns):
    a, b = conns
    data = bytes(range(256)) * 40               # 10,240 bytes, all queued
    b.write(data)
    deadline = _time.monotonic() + HANG
    while a.socket.recv(len(data) + 1, socket.MSG_PEEK) != data:
        assert _time.monotonic() < deadline
    assert a.read(65536) == data                # one call, all of it
    b.write(data)
    assert a.read(3000) == data[:3000]
    assert a.read(65536) == data[3000:]


@pytest.mark.skipif(bool(os.environ.get("GR_TEST_TSAN")),
                    reason="TSan's shadow memory makes RSS grow about 150 KB "
                    "per goroutine, whatever it holds")
def test_a_parked_reader_holds_no_read_buffer():
    """read(65536) parks before it allocates: 2,000 goroutines parked in
    read() cost no more memory than 2,000 parked on a channel, over the
    same connections (allocating first cost a 4 KiB page each)."""
    r = run_py("""
        import gc, socket, time
        import goroutine as gr
        from goroutine import net, runtime
        N = 2000
        def rss():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        def park(wait, pairs):
            before = runtime.stats()["parked"]
            gc.collect()
            r0 = rss()
            for c, _ in pairs:
                gr.go(wait, c)
            while runtime.stats()["parked"] < before + N:
                time.sleep(0.01)
            return rss() - r0
        def conns():
            out = []
            for _ in range(N):
                x, y = socket.socketpair()
                out.append((net.Conn.from_socket(x), y))
            return out
        block = gr.chan()
        # Warm-up: the goroutine stacks and pools that both kinds use.
        warm = conns()
        park(lambda c: block.recv(), warm)
        on_chan = park(lambda c: block.recv(), conns())
        in_read = park(lambda c: c.read(), conns())
        print((in_read - on_chan) / N)
    """, env=source_tree_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    extra = float(r.stdout.strip().splitlines()[-1])
    assert extra < 2048, "each parked read() holds %.0f more bytes" % extra


def test_read_into_and_write_of_any_bytes_like(listener):
    c, s = pair(listener)
    with c, s:
        assert c.write(bytearray(b"abc")) == 3
        assert c.write(memoryview(b"defg")) == 4
        buf = bytearray(16)
        n = 0
        while n < 7:
            n += in_goroutine(s.read_into, memoryview(buf)[n:])
        assert bytes(buf[:7]) == b"abcdefg"
        c.close()
        assert in_goroutine(s.read_into, bytearray(4)) == 0


def test_conn_addresses_fileno_socket_context_manager(listener):
    c, s = pair(listener)
    with c as c2, s:
        assert c2 is c
        assert c.remote_addr() == s.local_addr() == listener.addr()
        assert c.local_addr() == s.remote_addr()
        assert c.fileno() == c.socket.fileno() >= 0
        assert isinstance(c.socket, socket.socket)
        assert c.socket.gettimeout() == 0.0
    assert c.fileno() == -1
    c.close()       # idempotent
    for op in (c.read, lambda: c.write(b"x"), lambda: c.read_into(
            bytearray(1)), lambda: c.set_deadline(None)):
        with pytest.raises(net.ErrClosed):
            op()


def test_conn_from_socket_makes_it_non_blocking():
    a, b = socket.socketpair()
    assert a.gettimeout() is None
    c = net.Conn.from_socket(a)
    try:
        assert a.gettimeout() == 0.0
        b.sendall(b"x")
        assert in_goroutine(c.read) == b"x"
    finally:
        c.close()
        b.close()


def test_many_goroutines_waiting_on_one_fd_each_get_their_byte(conns):
    a, b = conns
    n = 20
    got = chan(n)
    before = runtime.stats()["parked"]
    for _ in range(n):
        go(lambda: got.send(a.read(1)))
    parked(before, n)
    for i in range(n):
        b.write(b"%c" % (65 + i))
    out = sorted(got.recv() for _ in range(n))
    assert out == sorted(b"%c" % (65 + i) for i in range(n))


def test_close_wakes_readers_and_writers_with_err_closed(conns):
    a, b = conns
    a.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    errs = chan(4)
    before = runtime.stats()["parked"]

    def run(f):
        try:
            f()
            errs.send(None)
        except BaseException as e:
            errs.send(e)
    go(run, a.read)
    go(run, a.read)
    go(run, lambda: a.write(b"x" * (4 << 20)))     # fills the buffer
    parked(before, 3)
    a.close()
    for _ in range(3):
        assert isinstance(errs.recv(), net.ErrClosed)


def test_peer_reset_raises_connection_reset(listener):
    c, s = pair(listener)
    # SO_LINGER 0: close sends RST instead of FIN.
    c.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        b"\x01\x00\x00\x00\x00\x00\x00\x00")
    got = chan(1)

    def read():
        try:
            got.send(s.read())
        except BaseException as e:
            got.send(e)
    before = runtime.stats()["parked"]
    go(read)
    parked(before, 1)
    c.close()
    e = got.recv()
    assert isinstance(e, ConnectionResetError), e
    s.close()


def test_partial_writes_with_a_small_send_buffer_deliver_everything(conns):
    a, b = conns
    a.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    data = bytes(range(256)) * 4096         # 1 MiB
    wrote = chan(1)
    go(lambda: wrote.send(a.write(data)))

    def read_all():
        out = bytearray()
        while len(out) < len(data):
            out += b.read(1000)     # slower than the writer
        return bytes(out)
    assert in_goroutine(read_all) == data
    assert wrote.recv() == len(data)


# ---- deadlines -----------------------------------------------------------

def read_error(c):
    try:
        return c.read()
    except BaseException as e:
        return e


def parked_reader(c, set_deadline, when):
    """Set c's deadline with set_deadline(when), start a goroutine that reads
    c and sends what it got (data or the error) on the returned chan, and
    wait until it is parked in the read."""
    got = chan(1)
    set_deadline(when)
    before = runtime.stats()["parked"]
    go(lambda: got.send(read_error(c)))
    parked(before, 1)
    return got


def test_read_deadline_expiring_wakes_the_waiter_with_timeout(conns):
    a, b = conns
    a.set_read_deadline(gr.time.now() + 0.1)
    e = in_goroutine(read_error, a)
    assert isinstance(e, TimeoutError) and str(e) == "i/o timeout"
    # A deadline in the past fails at once, even with data there.
    b.write(b"x")
    with pytest.raises(TimeoutError, match="i/o timeout"):
        a.read()
    a.set_read_deadline(None)
    assert a.read() == b"x"


def test_deadline_moved_later_while_waiting_does_not_fire_at_the_old_time(conns):
    a, b = conns
    # The old deadline leaves a slow machine (ASan, a loaded CI) time to
    # park the reader before it is moved.
    old = gr.time.now() + 2
    got = parked_reader(a, a.set_read_deadline, old)
    a.set_read_deadline(gr.time.now() + 60)
    i, _ = gr.select(got.recv, gr.time.after(old - gr.time.now() + 0.5).recv)
    assert i == 1, "the old deadline fired"
    b.write(b"late")
    assert got.recv() == b"late"


def test_deadline_moved_earlier_while_waiting_fires_then(conns):
    a, b = conns
    got = parked_reader(a, a.set_deadline, gr.time.now() + 60)
    a.set_deadline(gr.time.now() + 0.05)
    i, e = gr.select(got.recv, gr.time.after(HANG).recv)
    assert i == 0 and isinstance(e, TimeoutError)
    # Moved into the past: parked waiters wake at once.  (The expired
    # deadline is cleared before the reader starts: a reader started first
    # could fail at once and never park.)
    got = parked_reader(a, a.set_read_deadline, None)
    a.set_read_deadline(gr.time.now() - 1)
    assert isinstance(got.recv(), TimeoutError)


def test_deadline_cleared_while_waiting_never_fires(conns):
    a, b = conns
    old = gr.time.now() + 2
    got = parked_reader(a, a.set_read_deadline, old)
    a.set_read_deadline(None)
    i, _ = gr.select(got.recv, gr.time.after(old - gr.time.now() + 0.5).recv)
    assert i == 1, "a cleared deadline fired"
    b.write(b"ok")
    assert got.recv() == b"ok"


def test_write_deadline_is_separate_from_the_read_deadline(conns):
    a, b = conns
    a.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    a.set_write_deadline(gr.time.now() + 0.1)

    def write():
        try:
            a.write(b"x" * (4 << 20))
        except BaseException as e:
            return e
    assert isinstance(in_goroutine(write), TimeoutError)
    b.write(b"r")
    assert a.read() == b"r"     # reads are unaffected


def test_deadline_argument_must_be_a_time_or_none(conns):
    a, b = conns
    with pytest.raises(TypeError):
        a.set_deadline("soon")
    with pytest.raises(ValueError):
        a.set_deadline(float("nan"))


# ---- dial ----------------------------------------------------------------

@pytest.fixture
def full_backlog():
    """A listener whose accept queue is full: a further connect hangs."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    port = s.getsockname()[1]
    fill = []
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fill.append(c)
    _time.sleep(0.05)
    yield "127.0.0.1:%d" % port
    for c in fill:
        c.close()
    s.close()


def test_dial_timeout_is_an_io_timeout(full_backlog):
    with pytest.raises(TimeoutError, match="i/o timeout"):
        in_goroutine(net.dial, "tcp", full_backlog, 0.2)
    with pytest.raises(TimeoutError, match="i/o timeout"):
        net.dial("tcp", full_backlog, 0.2)      # from a plain thread


def test_dial_context_raises_the_contexts_error(full_backlog):
    ctx, cancel = context.with_timeout(context.background(), 0.2)
    with pytest.raises(context.DeadlineExceeded):
        in_goroutine(net.dial_context, ctx, "tcp", full_backlog)
    cancel()
    ctx, cancel = context.with_cancel(context.background())
    go(lambda: (gr.time.sleep(0.1), cancel()))
    with pytest.raises(context.Canceled):
        in_goroutine(net.dial_context, ctx, "tcp", full_backlog)
    with pytest.raises(context.Canceled):
        net.dial_context(ctx, "tcp", full_backlog)
    with pytest.raises(TypeError, match="nil parent"):
        net.dial_context(None, "tcp", full_backlog)


def test_dial_context_connects(listener):
    ctx, cancel = context.with_timeout(context.background(), 30)
    c = in_goroutine(net.dial_context, ctx, "tcp",
                     "127.0.0.1:%d" % listener.addr()[1])
    cancel()
    c.close()


# ---- plain threads ---------------------------------------------------------

def test_from_a_plain_thread_every_call_blocks_the_thread(listener):
    c, s = pair(listener)
    c.set_read_deadline(gr.time.now() + 0.1)
    with pytest.raises(TimeoutError, match="i/o timeout"):
        c.read()
    c.set_read_deadline(None)
    threading.Timer(0.1, lambda: s.write(b"later")).start()
    assert c.read() == b"later"
    # close from another thread wakes a thread waiting in read
    threading.Timer(0.1, c.close).start()
    with pytest.raises(net.ErrClosed):
        c.read()
    s.close()


def client_session(port, rounds=20):
    with net.dial("tcp", "127.0.0.1:%d" % port) as c:
        for i in range(rounds):
            msg = b"%d" % i * 10
            c.write(msg)
            got = b""
            while len(got) < len(msg):
                got += c.read(len(msg) - len(got))
            assert got == msg
    return rounds


def echo_server(ln):
    def handle(c):
        with c:
            while True:
                d = c.read()
                if not d:
                    return
                c.write(d)
    for c in ln:
        go(handle, c)


def test_the_same_program_runs_from_threads_and_from_goroutines(listener):
    go(echo_server, listener)
    port = listener.addr()[1]
    results = []
    ts = [threading.Thread(target=lambda: results.append(
        client_session(port))) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(HANG)
    wg = sync.WaitGroup()
    for _ in range(4):
        wg.go(lambda: results.append(client_session(port)))
    wg.wait()
    assert results == [20] * 8


# ---- wait_readable / wait_writable -----------------------------------------

def test_wait_readable_and_writable_on_any_fd():
    a, b = socket.socketpair()
    try:
        with pytest.raises(TimeoutError, match="i/o timeout"):
            in_goroutine(net.wait_readable, a, gr.time.now() + 0.05)
        with pytest.raises(TimeoutError):
            net.wait_readable(a.fileno(), gr.time.now() + 0.05)
        go(lambda: (gr.time.sleep(0.05), b.send(b"x")))
        in_goroutine(net.wait_readable, a.fileno())
        assert a.recv(1) == b"x"
        in_goroutine(net.wait_writable, a)
        net.wait_writable(a)
        with pytest.raises(TypeError):
            net.wait_readable("nope")
    finally:
        a.close()
        b.close()


def test_wait_readable_works_on_a_conns_own_fd(conns):
    a, b = conns
    go(lambda: (gr.time.sleep(0.05), b.write(b"y")))
    in_goroutine(net.wait_readable, a.fileno())
    assert a.read() == b"y"


# ---- the runtime around it ---------------------------------------------------

def test_network_waiters_are_not_a_deadlock():
    """A goroutine waiting on the network can be woken from outside the
    process: the main thread waiting on it is not deadlocked."""
    r = run_py("""
        import socket, subprocess, sys
        import goroutine as gr
        from goroutine import net
        a, b = socket.socketpair()
        # Another process writes in 2.5 s: longer than Deadlock's 1 s.
        p = subprocess.Popen([sys.executable, "-c",
            "import os, time, sys; time.sleep(2.5); os.write(%d, b'x')"
            % b.fileno()], pass_fds=[b.fileno()])
        b.close()
        c = net.Conn.from_socket(a)
        out = gr.chan()
        gr.go(lambda: out.send(c.read()))
        print(out.recv())
        p.wait()
    """, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "b'x'"


# Twenty goroutines parked on the netpoller, ten in accept and ten reading
# a socket (with a deadline an hour away): what the exit and Ctrl-C tests'
# programs leave waiting.
PARK_20_ON_SOCKETS = """
import socket, time
import goroutine as gr
from goroutine import net, runtime
ln = net.listen("tcp", "127.0.0.1:0")
a, b = socket.socketpair()
c = net.Conn.from_socket(a)
c.set_read_deadline(gr.time.now() + 3600)
for _ in range(10):
    gr.go(ln.accept)
    gr.go(c.read)
while runtime.stats()["parked"] < 20:
    time.sleep(0.01)
"""


def test_exit_while_goroutines_wait_on_sockets_does_not_hang():
    r = run_py(PARK_20_ON_SOCKETS + 'print("bye")', timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "bye"
    assert "Fatal" not in r.stderr


# The main thread waits (on a channel, or on a socket itself) while 20
# goroutines are parked on the netpoller; SIGINT must reach the main thread
# as KeyboardInterrupt and the process must then exit.  SIGINT's handler is
# installed explicitly: a test run as a background job inherits it ignored.
CTRL_C_PROGRAM = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
""" + PARK_20_ON_SOCKETS + """
x, y = socket.socketpair()
main_conn = net.Conn.from_socket(x)
print("waiting", flush=True)
try:
    if sys.argv[1] == "chan":
        gr.chan().recv()
    else:
        main_conn.read()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise
"""


@pytest.mark.parametrize("main_waits_on", ["chan", "socket"])
def test_ctrl_c_while_goroutines_wait_on_sockets(main_waits_on):
    p = subprocess.Popen([sys.executable, "-c", CTRL_C_PROGRAM,
                          main_waits_on], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env=source_tree_env(), cwd="/")
    try:
        assert p.stdout.readline() == "waiting\n", p.stderr.read()
        _time.sleep(0.2)        # into the wait, past the print
        p.send_signal(signal.SIGINT)
        rc = p.wait(3 * HANG)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail("the process did not exit after Ctrl-C")
    finally:
        out, err = p.communicate()
    assert out == "interrupted\n", err
    # (A debug build adds ResourceWarnings for the sockets after it.)
    assert "\nKeyboardInterrupt\n" in err, err
    assert "Fatal" not in err
    # An uncaught KeyboardInterrupt ends the process by SIGINT itself.
    assert rc == -signal.SIGINT, err


@pytest.mark.skipif(bool(os.environ.get("GR_TEST_TSAN")),
                    reason="TSan cannot follow a fork of a threaded process")
# gcc 12's ASan takes no allocator lock around fork() (test_fork.py says
# more): in 3 of ~124 runs of this program under ASan, 4 at once, the
# child's threads waited for good on the allocator's size-class mutex
# (SizeClassAllocator64::GetFromAllocator -> FutexWait), copied locked from
# a parent thread inside free().  The plain build ran 160 such forks clean.
@pytest.mark.skipif(bool(os.environ.get("GR_TEST_SANITIZED")),
                    reason="ASan (gcc 12) is not fork-safe with busy threads")
def test_forked_child_gets_its_own_poller():
    r = run_py("""
        import os, socket
        import goroutine as gr
        from goroutine import net
        a, b = socket.socketpair()
        ca, cb = net.Conn.from_socket(a), net.Conn.from_socket(b)
        out = gr.chan(1)
        gr.go(lambda: out.send(ca.read()))
        cb.write(b"parent")
        assert out.recv() == b"parent"
        pid = os.fork()
        if pid == 0:
            # The parent's Conns and new ones work in the child.
            x, y = socket.socketpair()
            cx, cy = net.Conn.from_socket(x), net.Conn.from_socket(y)
            got = gr.chan(2)
            gr.go(lambda: got.send(cx.read()))
            gr.go(lambda: got.send(ca.read()))
            import time
            from goroutine import runtime
            t = time.monotonic() + 10
            while runtime.stats()["parked"] < 2 and time.monotonic() < t:
                time.sleep(0.005)
            cy.write(b"child")
            cb.write(b"again")
            res = []
            for _ in range(2):
                i, v = gr.select(got.recv, gr.time.after(10).recv)
                res.append(v if i == 0 else b"hung")
            res.sort()
            os._exit(0 if res == [b"again", b"child"] else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"


@pytest.mark.parametrize("preempt", ["off", "on"])
def test_2000_connections_wait_on_few_os_threads(preempt):
    """2,000 goroutines each hold a connection to an echo server in
    another process: the client's OS threads stay at most GOMAXPROCS + 8
    (before the netpoller, each waiting connection held an M: 234 threads).
    With preemption (the default on 3.12+) a hand-off for the GIL leaves
    the displaced goroutine running on its own M beside the one handed its
    P: measured 11-15 threads on 3.12 and 3.13 (docs/design.md, "The
    netpoller").  Both runs are held to a bound that still fails a thread
    per connection (below)."""
    godebug = "asyncpreemptoff=1" if preempt == "off" else ""
    r = run_py("""
        import os, subprocess, sys
        import goroutine as gr
        from goroutine import net, runtime, sync
        N = 2000
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks._echo"],
                                stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        port = int(proc.stdout.readline())
        def threads():
            return len(os.listdir("/proc/self/task"))
        peak = [threads()]
        connected, wg, go_on = sync.WaitGroup(), sync.WaitGroup(), gr.chan()
        done = []
        def client():
            with net.dial("tcp", "127.0.0.1:%d" % port) as c:
                connected.done()
                go_on.recv()
                for _ in range(10):
                    c.write(b"x" * 64)
                    got = b""
                    while len(got) < 64:
                        got += c.read(64 - len(got))
                    assert got == b"x" * 64
                done.append(1)
        stop = gr.chan()
        def monitor():
            while gr.select(stop.recv, gr.default)[0] != 0:
                peak[0] = max(peak[0], threads())
                gr.time.sleep(0.002)
        gr.go(monitor)
        connected.add(N)
        for _ in range(N):
            wg.go(client)
        connected.wait()
        peak[0] = max(peak[0], threads())
        go_on.close()
        wg.wait()
        stop.close()
        proc.stdin.close()
        proc.wait()
        print(len(done), peak[0], runtime.gomaxprocs())
    """, timeout=300, env={"GOMAXPROCS": "2", "GODEBUG": godebug,
                            # benchmarks._echo from the checkout, the
                            # goroutine this test imports (make test-asan)
                            "PYTHONPATH": source_tree_env()["PYTHONPATH"]})
    assert r.returncode == 0, r.stderr
    done, peak, procs = map(int, r.stdout.split())
    assert done == 2000
    tsan = 1 if os.environ.get("GR_TEST_TSAN") else 0   # its own thread
    # The target is GOMAXPROCS + 8 (9-10 measured quiet, with
    # preemption off; the net_conns bench row reports it).  Under load a
    # goroutine waiting for the GIL looks blocked to sysmon, which hands
    # its P to another M: 12 seen with preemption off while a CI run
    # shared the machine.  So both runs are held to a bound that a thread
    # per connection (234) fails, with room for those hand-offs.
    bound = 4 * procs + 16
    assert peak <= bound + tsan, f"{peak} OS threads for 2,000 connections"


# ---- the examples: start, one request, stop ----------------------------------

# Runs an example as `python examples/X --serve ADDR` would, with Ctrl-C's
# handler installed even when this test runs where SIGINT is ignored (a
# background job): Python leaves an ignored SIGINT ignored.
RUN_EXAMPLE = """
import os, runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(sys.argv[0])     # as `python SCRIPT` has it
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def start_example(name):
    p = subprocess.Popen(
        [sys.executable, "-c", RUN_EXAMPLE,
         str(ROOT_DIR / "examples" / name), "--serve", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=source_tree_env(), cwd="/")
    line = p.stdout.readline()
    assert "listening on" in line, p.stderr.read()
    port = int(line.rsplit(":", 1)[1])

    def stop():
        p.send_signal(signal.SIGINT)
        try:
            rc = p.wait(3 * HANG)      # an ASan build starts and ends slowly
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            pytest.fail("the example did not stop on Ctrl-C")
        err = p.stderr.read()
        p.stdout.close()
        p.stderr.close()
        assert rc == 0, err
        assert "Traceback" not in err
    return port, stop


def test_example_net_echo_serves_and_stops_on_ctrl_c():
    port, stop = start_example("net_echo.py")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=HANG) as s:
            s.sendall(b"echo me")
            got = b""
            while len(got) < 7:
                got += s.recv(64)
            assert got == b"echo me"
    finally:
        stop()


def http_get(port, request):
    """Send one request that ends the connection; the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as s:
        s.sendall(request)
        resp = b""
        while True:
            d = s.recv(4096)
            if not d:
                return resp
            resp += d


def test_example_http_hello_serves_and_stops_on_ctrl_c():
    port, stop = start_example("http_hello.py")
    try:
        resp = http_get(port, b"GET / HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
        assert resp.startswith(b"HTTP/1.1 200 OK\r\n")
        assert resp.endswith(b"\r\n\r\nHello, world!\n")
    finally:
        stop()


def test_example_http_hello_survives_a_client_that_resets():
    port, stop = start_example("http_hello.py")
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=HANG)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")     # half a request
        # Linger 0: close sends RST, and the handler's read raises
        # ConnectionResetError (wrk ends every run like this).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        s.close()
        _time.sleep(0.2)
        resp = http_get(port, b"GET / HTTP/1.0\r\n\r\n")
        assert resp.endswith(b"\r\n\r\nHello, world!\n")
    finally:
        stop()          # and its stderr holds no traceback (a panic)


def test_example_crawler_fetches_every_page_of_a_local_site():
    r = subprocess.run([sys.executable,
                        str(ROOT_DIR / "examples" / "crawler.py")],
                       capture_output=True, text=True, timeout=3 * HANG,
                       env=source_tree_env(), cwd="/")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("crawled 40 pages, "), r.stdout
    assert lines[0].endswith("; 1 failed"), r.stdout
    assert lines[1].endswith("/gone.html: HTTP Error 404: File not found")


# ---- TLS over a Conn ---------------------------------------------------------

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate for localhost, made by the openssl CLI."""
    import shutil
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
         "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=60)
    return str(d / "cert.pem"), str(d / "key.pem")


def tls_contexts(cert):
    import ssl
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*cert)
    client = ssl.create_default_context(cafile=cert[0])
    return server, client


def test_tls_client_and_server_echo_over_conns(cert, listener):
    server_ctx, client_ctx = tls_contexts(cert)

    def serve():
        with net.tls_server(listener.accept(), server_ctx) as t:
            while True:
                d = t.read()
                if not d:
                    return
                t.write(d)
    go(serve)

    def client():
        c = net.dial("tcp", "127.0.0.1:%d" % listener.addr()[1])
        with net.tls_client(c, client_ctx, server_hostname="localhost") as t:
            assert t.ssl_object.version().startswith("TLS")
            big = os.urandom(200000)
            t.write(big)
            got = b""
            while len(got) < len(big):
                got += t.read()
            buf = bytearray(5)
            t.write(b"hello")
            n = 0
            while n < 5:
                n += t.read_into(memoryview(buf)[n:])
            return got == big, bytes(buf)
    assert in_goroutine(client) == (True, b"hello")


def test_tls_client_against_a_stdlib_tls_server_in_a_thread(cert):
    server_ctx, client_ctx = tls_contexts(cert)
    raw = socket.create_server(("127.0.0.1", 0))
    port = raw.getsockname()[1]

    def serve():
        with raw, server_ctx.wrap_socket(raw, server_side=True) as srv:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(conn.recv(100).upper())
    t = threading.Thread(target=serve)
    t.start()

    def client():
        c = net.dial("tcp", "127.0.0.1:%d" % port)
        with net.tls_client(c, client_ctx, "localhost") as tc:
            tc.write(b"shout")
            out = b""
            while len(out) < 5:
                d = tc.read()
                if not d:
                    break
                out += d
            return out
    assert in_goroutine(client) == b"SHOUT"
    t.join(HANG)


def test_tls_handshake_failure_is_an_ssl_error_and_closes_the_conn(cert,
                                                                   listener):
    import ssl
    server_ctx, _ = tls_contexts(cert)
    untrusting = ssl.create_default_context()   # does not know our CA

    def serve():
        try:
            net.tls_server(listener.accept(), server_ctx)
        except (ssl.SSLError, OSError):
            pass
    go(serve)
    c = net.dial("tcp", "127.0.0.1:%d" % listener.addr()[1])
    with pytest.raises(ssl.SSLCertVerificationError):
        in_goroutine(net.tls_client, c, untrusting, "localhost")
    with pytest.raises(net.ErrClosed):
        c.read()
    with pytest.raises(TypeError):
        net.tls_client(object(), untrusting)


# ---- cooperative(): plain sockets inside goroutines ----------------------------

def test_cooperative_is_off_by_default_and_restores_socket_methods():
    import _socket
    orig = {n: getattr(socket.socket, n) for n in (
        "connect", "accept", "recv", "recv_into", "recvfrom", "send",
        "sendall", "sendto")}
    with net.cooperative():
        assert socket.socket.recv is not _socket.socket.recv
        with net.cooperative():
            pass
        assert socket.socket.recv is not _socket.socket.recv   # still on
    assert {n: getattr(socket.socket, n) for n in orig} == orig
    net.cooperative(True)
    try:
        assert socket.socket.sendall is not orig["sendall"]
    finally:
        net.cooperative(False)
    assert {n: getattr(socket.socket, n) for n in orig} == orig


def test_cooperative_plain_sockets_park_goroutines(listener):
    go(echo_server, listener)
    port = listener.addr()[1]

    def client(i):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"%05d" % i)
            got = b""
            while len(got) < 5:
                got += s.recv(5 - len(got))
            buf = bytearray(5)
            s.send(b"again")
            n = 0
            while n < 5:
                n += s.recv_into(memoryview(buf)[n:])
            return got == b"%05d" % i and bytes(buf) == b"again"
    with net.cooperative():
        wg = sync.WaitGroup()
        ok = []
        for i in range(50):
            wg.go(lambda i=i: ok.append(client(i)))
        wg.wait()
    assert ok == [True] * 50


def test_cooperative_recv_parks_the_goroutine_in_io_wait():
    a, b = socket.socketpair()
    got = chan(1)
    with net.cooperative():
        go(lambda: got.send(a.recv(10)))
        # Parked on the netpoller, as runtime.stack() shows it; without
        # cooperative() the goroutine stays "running" inside recv(2).
        deadline = _time.monotonic() + HANG
        while "[IO wait]" not in runtime.stack():
            assert _time.monotonic() < deadline, runtime.stack()
            _time.sleep(0.005)
        b.sendall(b"data")
        assert got.recv() == b"data"
    a.close()
    b.close()


def test_cooperative_socket_timeout_and_accept_in_a_goroutine():
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(HANG)

    def serve():
        c, _ = srv.accept()
        with c:
            c.settimeout(0.1)
            try:
                c.recv(10)
            except socket.timeout as e:
                return repr(e)
    with net.cooperative():
        out = chan(1)
        go(lambda: out.send(serve()))
        with socket.create_connection(srv.getsockname()):
            r = out.recv()
    srv.close()
    assert "timed out" in r


def test_cooperative_leaves_plain_threads_alone():
    a, b = socket.socketpair()
    with net.cooperative():
        a.settimeout(0.05)
        with pytest.raises(socket.timeout):
            a.recv(1)                       # the main thread: unchanged
        b.sendall(b"z")
        assert a.recv(1) == b"z"
    a.close()
    b.close()


def test_cooperative_urllib_in_goroutines(listener):
    import urllib.request
    sys.path.insert(0, str(ROOT_DIR / "examples"))
    try:
        import _serve
        import http_hello
    finally:
        sys.path.pop(0)
    go(_serve.serve, listener, http_hello.handle)
    url = "http://127.0.0.1:%d/" % listener.addr()[1]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def fetch():
        with opener.open(url, timeout=HANG) as r:
            return r.read()
    with net.cooperative():
        wg = sync.WaitGroup()
        pages = []
        for _ in range(10):
            wg.go(lambda: pages.append(fetch()))
        wg.wait()
    assert pages == [b"Hello, world!\n"] * 10
