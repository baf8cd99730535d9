"""goroutine.net: Go's net package for goroutines.

A goroutine that waits on the network parks on the runtime's netpoller
(src/netpoll.c): it holds no OS thread while it waits, so 10,000 idle
connections cost 10,000 parked goroutines, not 10,000 threads.  A plain
thread calling the same functions blocks as a socket call would.

Every operation is Go's: try the non-blocking system call, and on EAGAIN
wait on the fd's PollDesc (which raises ErrClosed after close() and
TimeoutError("i/o timeout") past a deadline), then try again.

Addresses are Go's strings: "host:port", "[::1]:80", ":0" (all interfaces,
any port), or a path for "unix".  Deadlines are absolute times on
time.now()'s clock.
"""
import errno as _errno
import os as _os
import select as _select
import socket as _socket
import time as _time
from typing import (Any as _Any, Iterator as _Iterator,
                    Optional as _Optional, Tuple as _Tuple,
                    TypeVar as _TypeVar, Union as _Union)

from goroutine import _core
from goroutine._core import ErrClosed

__all__ = ["listen", "dial", "dial_context", "Listener", "Conn",
           "wait_readable", "wait_writable", "tls_client", "tls_server",
           "TLSConn", "cooperative", "ErrClosed"]

_NETWORKS = ("tcp", "tcp4", "tcp6", "unix")

Addr = _Union[_Tuple[_Any, ...], str]
_S = _TypeVar("_S", bound="_Stream")


def _closed_error() -> OSError:
    return ErrClosed("use of closed network connection")


# The runtime's own sockets are made, connected, read, written and closed
# with the GIL held (src/netpoll.c, "the calls", says why: a goroutine
# that lets the GIL go looks blocked to sysmon, which then makes threads).
def _adopt(family: int, fd: int) -> _socket.socket:
    """A socket.socket for a non-blocking fd, with no system call (the
    socket module asks the fd for what is not given)."""
    sock = _socket.socket(family, _socket.SOCK_STREAM | _SOCK_NONBLOCK, 0,
                          fileno=fd)
    if family != _socket.AF_UNIX:
        # Go's default on TCP connections: no Nagle delay.
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    return sock


def _close_socket(sock: _socket.socket) -> None:
    if sock.fileno() >= 0:
        _core._net_close(sock.detach())


def _take_socket(sock: _Any, what: str) -> _socket.socket:
    """sock, checked and made non-blocking, for a Conn or Listener."""
    if not isinstance(sock, _socket.socket):
        raise TypeError("%s needs a socket.socket, not %r"
                        % (what, type(sock).__name__))
    if sock.fileno() < 0:
        raise _closed_error()
    if sock.gettimeout() != 0.0:
        sock.setblocking(False)
    return sock


def _addr(a: _Any) -> Addr:
    return a if isinstance(a, (tuple, str)) else str(a)


_SOCK_NONBLOCK = getattr(_socket, "SOCK_NONBLOCK", 0)


def _check_network(network: _Any) -> str:
    if network not in _NETWORKS:
        raise ValueError("unknown network %r" % (network,))
    return str(network)


def _split_host_port(address: _Any) -> _Tuple[str, int]:
    """Go's net.SplitHostPort, and the port as a number."""
    if not isinstance(address, str):
        raise TypeError("address must be a str, not %r"
                        % type(address).__name__)
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError("address %s: missing ']' in address" % address)
        host, rest = address[1:end], address[end + 1:]
        if not rest.startswith(":"):
            raise ValueError("address %s: missing port in address" % address)
        port = rest[1:]
    else:
        i = address.rfind(":")
        if i < 0:
            raise ValueError("address %s: missing port in address" % address)
        host, port = address[:i], address[i + 1:]
        if ":" in host:
            raise ValueError("address %s: too many colons in address"
                             % address)
    if port.isdigit():
        n = int(port)
    else:
        try:
            n = _socket.getservbyname(port, "tcp")
        except OSError:
            raise ValueError("address %s: unknown port" % address) from None
    if not 0 <= n <= 65535:
        raise ValueError("address %s: invalid port" % address)
    return host, n


def _family(network: str) -> int:
    return {"tcp4": _socket.AF_INET, "tcp6": _socket.AF_INET6}.get(
        network, _socket.AF_UNSPEC)


def _deadline_arg(t: _Any, what: str = "deadline") -> _Optional[float]:
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise TypeError("%s must be a time (a number) or None, not %r"
                            % (what, type(t).__name__)) from None
    f = float(t)
    if f != f:
        raise ValueError("%s is NaN" % what)
    return f


# ---- Conn ----------------------------------------------------------------


class _Stream:
    """What Conn and TLSConn share: the socket, its pollDesc (_pd), and
    everything that works on them alone -- deadlines, addresses, fileno,
    the context manager.  read/write/close are each class's own."""

    __slots__ = ("_sock", "_pd", "__weakref__")
    _sock: _socket.socket
    _pd: _core.PollDesc

    def _oserror(self, e: OSError) -> OSError:
        # A call that raced close() sees EBADF (or ENOTSOCK): it is ErrClosed.
        if self._pd.closed:
            return _closed_error()
        return e

    def _set(self, t: _Any, mode: str) -> None:
        t = _deadline_arg(t)
        if self._pd.closed:
            raise _closed_error()
        self._pd.set_deadline(t, mode)

    def set_deadline(self, t: _Optional[float]) -> None:
        """Read and write deadline: absolute time (time.now() + 5), or None
        to clear.  Operations already waiting see it."""
        self._set(t, "rw")

    def set_read_deadline(self, t: _Optional[float]) -> None:
        """Read deadline only (see set_deadline)."""
        self._set(t, "r")

    def set_write_deadline(self, t: _Optional[float]) -> None:
        """Write deadline only (see set_deadline)."""
        self._set(t, "w")

    def close(self) -> None:
        """Close (each class's own)."""
        raise NotImplementedError

    def local_addr(self) -> Addr:
        """This end's address: (host, port[, flow, scope]) or a unix
        path."""
        try:
            return _addr(self._sock.getsockname())
        except OSError as e:
            raise self._oserror(e) from None

    def remote_addr(self) -> Addr:
        """The peer's address (see local_addr)."""
        try:
            return _addr(self._sock.getpeername())
        except OSError as e:
            raise self._oserror(e) from None

    def fileno(self) -> int:
        """The socket's fd (-1 once closed)."""
        return self._sock.fileno()

    @property
    def socket(self) -> _socket.socket:
        """The underlying (non-blocking) socket.socket."""
        return self._sock

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: _Any) -> None:
        self.close()

    def __repr__(self) -> str:
        name = "goroutine.net." + type(self).__name__
        if self._pd.closed:
            return "<%s closed>" % name
        try:
            return "<%s %r -> %r>" % (name, self._sock.getsockname(),
                                       self._sock.getpeername())
        except OSError:
            return "<%s fd=%d>" % (name, self._sock.fileno())


class Conn(_Stream):
    """A stream connection (Go's net.Conn): TCP or unix.

    read/read_into/write park the calling goroutine while the socket is not
    ready (a plain thread blocks); close() wakes every goroutine waiting on
    it with ErrClosed.
    """

    __slots__ = ()

    def __init__(self, sock: _socket.socket,
                 _pd: _Optional[_core.PollDesc] = None) -> None:
        self._sock = _take_socket(sock, "Conn")
        self._pd = _pd if _pd is not None else _core.PollDesc(sock.fileno())

    @classmethod
    def from_socket(cls, sock: _socket.socket) -> "Conn":
        """Adopt a connected socket (made non-blocking)."""
        return cls(sock)

    def read(self, n: int = 65536) -> bytes:
        """At most n bytes, at least 1, parking until some arrive; b"" at
        EOF."""
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError("read size must be an int, not %r"
                            % type(n).__name__)
        return self._pd.read(n)

    def read_into(self, buf: _Any) -> int:
        """Like socket.recv_into: the count read into buf; 0 at EOF."""
        return self._pd.read_into(buf)

    def write(self, data: _Any) -> int:
        """Write all of data (bytes-like), parking while the send buffer is
        full; returns len(data)."""
        return self._pd.write(data)

    def close(self) -> None:
        """Close; wakes every goroutine waiting on it with ErrClosed.
        Idempotent."""
        self._pd.close()
        _close_socket(self._sock)


# ---- Listener ------------------------------------------------------------


class Listener:
    """A listening socket (Go's net.Listener).  accept() parks until a
    connection arrives; close() wakes the goroutines waiting in accept()
    with ErrClosed.  `for c in ln:` accepts until the listener is closed."""

    __slots__ = ("_sock", "_pd", "_unlink", "__weakref__")

    def __init__(self, sock: _socket.socket, _unlink: str = "") -> None:
        self._sock = _take_socket(sock, "Listener")
        self._pd = _core.PollDesc(sock.fileno())
        self._unlink = _unlink

    @classmethod
    def from_socket(cls, sock: _socket.socket) -> "Listener":
        """Adopt a listening socket (made non-blocking)."""
        return cls(sock)

    def accept(self) -> Conn:
        """The next connection, parking until one arrives."""
        fd = self._pd.accept()
        try:
            sock = _adopt(self._sock.family, fd)
        except BaseException:
            _core._net_close(fd)
            raise
        return Conn(sock)

    def addr(self) -> Addr:
        """The address it listens on: (host, port[, flow, scope]) or a
        unix path."""
        try:
            return _addr(self._sock.getsockname())
        except OSError:
            if self._pd.closed:
                raise _closed_error() from None
            raise

    def close(self) -> None:
        """Close; goroutines waiting in accept() raise ErrClosed.
        Idempotent.  A unix listener removes its socket file, as Go's
        does."""
        if self._pd.closed:
            return
        self._pd.close()
        _close_socket(self._sock)
        if self._unlink:
            try:
                _os.unlink(self._unlink)
            except OSError:
                pass

    def fileno(self) -> int:
        """The listening socket's fd (-1 once closed)."""
        return self._sock.fileno()

    def __iter__(self) -> _Iterator[Conn]:
        while True:
            try:
                yield self.accept()
            except ErrClosed:
                return

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc: _Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._pd.closed:
            return "<goroutine.net.Listener closed>"
        return "<goroutine.net.Listener %r>" % (self._sock.getsockname(),)


def listen(network: str, address: str,
           backlog: _Optional[int] = None) -> Listener:
    """Listen on address: network "tcp", "tcp4", "tcp6" or "unix"."""
    _check_network(network)
    if backlog is None:
        backlog = _socket.SOMAXCONN
    if network == "unix":
        if not isinstance(address, str) or not address:
            raise ValueError("unix address must be a non-empty path")
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.bind(address)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return Listener(sock, _unlink=address)
    host, port = _split_host_port(address)
    if host == "":
        if network == "tcp" and _socket.has_dualstack_ipv6():
            sock = _socket.create_server(("", port), family=_socket.AF_INET6,
                                         backlog=backlog, reuse_port=False,
                                         dualstack_ipv6=True)
            return Listener(sock)
        host = "::" if network == "tcp6" else "0.0.0.0"
    infos = _socket.getaddrinfo(host, port, _family(network),
                                _socket.SOCK_STREAM, 0, _socket.AI_PASSIVE)
    af, _, _, _, sa = infos[0]
    sock = _socket.socket(af, _socket.SOCK_STREAM)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        if af == _socket.AF_INET6:
            sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY,
                            1 if network == "tcp6" or host != "::" else 0)
        sock.bind(sa)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return Listener(sock)


# ---- dial ----------------------------------------------------------------


def _connect(af: int, sa: _Any, deadline: _Optional[float],
             ctx: _Any = None) -> Conn:
    """One connection attempt, parking while the connect is in flight."""
    fd = _core._net_socket(af)
    try:
        pd = _core.PollDesc(fd)
    except BaseException:
        _core._net_close(fd)
        raise
    try:
        if deadline is not None:
            pd.set_deadline(deadline, "w")
        stop = None
        if ctx is not None and ctx.done() is not _core.nilchan:
            from goroutine import context as _context
            stop = _context.after_func(
                ctx, lambda: pd.set_deadline(0.0, "w"))
        try:
            pd.connect(af, sa)
        except TimeoutError:
            if ctx is not None:
                err = ctx.err()
                if err is None and deadline is not None and \
                        _time.time() >= deadline:
                    # The fd's deadline (ctx's) fired before ctx's own
                    # timer did: the same deadline, so ctx's error.
                    from goroutine import context as _context
                    err = _context.deadlineExceeded
                if err is not None:
                    raise err from None
            raise
        finally:
            if stop is not None:
                stop()
        pd.set_deadline(None, "w")
        return Conn(_adopt(af, fd), pd)
    except BaseException:
        pd.close()
        _core._net_close(fd)
        raise


def _numeric_family(host: str) -> int:
    for af in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(af, host)
            return af
        except OSError:
            pass
    return 0


def _resolve(network: str, host: str, port: int) -> _Any:
    """[(family, sockaddr)] to try in order.  A numeric host needs no
    resolver; a name is resolved by getaddrinfo, which blocks this M (the
    scheduler hands its P on), as Go's cgo resolver does."""
    want = _family(network)
    af = _numeric_family(host)
    if af:
        if want not in (_socket.AF_UNSPEC, af):
            raise OSError(_errno.EAFNOSUPPORT,
                          "address %s: no suitable address found" % host)
        return [(af, (host, port) if af == _socket.AF_INET
                 else (host, port, 0, 0))]
    return [(i[0], i[4]) for i in _socket.getaddrinfo(
        host, port, want, _socket.SOCK_STREAM)]


def _dial(network: str, address: str, deadline: _Optional[float],
          ctx: _Any = None) -> Conn:
    _check_network(network)
    if network == "unix":
        if not isinstance(address, str) or not address:
            raise ValueError("unix address must be a non-empty path")
        return _connect(_socket.AF_UNIX, address, deadline, ctx)
    host, port = _split_host_port(address)
    if host == "":
        host = "::1" if network == "tcp6" else "127.0.0.1"
    first: _Optional[BaseException] = None
    for af, sa in _resolve(network, host, port):
        try:
            return _connect(af, sa, deadline, ctx)
        except (TimeoutError, ErrClosed):
            raise
        except OSError as e:
            if first is None:
                first = e
            if ctx is not None and ctx.err() is not None:
                raise ctx.err() from None
    assert first is not None
    raise first


def dial(network: str, address: str,
         timeout: _Optional[float] = None) -> Conn:
    """Connect to address, parking while the connection is made.  timeout
    (seconds; None or 0: none, as Go's Dialer.Timeout) covers name
    resolution and the connect: past it, TimeoutError("i/o timeout")."""
    t = _deadline_arg(timeout, "timeout")
    deadline = None if not t else _time.time() + t
    return _dial(network, address, deadline)


def dial_context(ctx: _Any, network: str, address: str) -> Conn:
    """dial, cancelled by ctx: when ctx is done first, its error
    (context.canceled / context.deadlineExceeded) is raised."""
    if ctx is None:
        raise TypeError("cannot create context from nil parent")
    err = ctx.err()
    if err is not None:
        raise err
    return _dial(network, address, ctx.deadline(), ctx)


# ---- TLS -------------------------------------------------------------------


class TLSConn(_Stream):
    """TLS over a Conn (Go's tls.Conn), through ssl.MemoryBIO: the TLS
    engine works on memory buffers and every byte goes through the Conn,
    so a goroutine waiting for the peer parks on the netpoller.  It has
    Conn's API; deadlines, addresses and the socket (carrying the TLS
    records) are the Conn's.  One goroutine may read while another
    writes."""

    __slots__ = ("_conn", "_in", "_out", "_obj", "_rmu", "_wmu")

    def __init__(self, conn: Conn, ssl_context: _Any, server_side: bool,
                 server_hostname: _Optional[str]) -> None:
        import ssl
        from goroutine import sync
        if not isinstance(conn, Conn):
            raise TypeError("TLS needs a goroutine.net.Conn, not %r"
                            % type(conn).__name__)
        if not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError("ssl_context must be an ssl.SSLContext, not %r"
                            % type(ssl_context).__name__)
        self._conn = conn
        self._sock, self._pd = conn._sock, conn._pd
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ssl_context.wrap_bio(self._in, self._out,
                                         server_side=server_side,
                                         server_hostname=server_hostname)
        self._rmu = sync.Mutex()        # one reader feeds _in at a time
        self._wmu = sync.Mutex()        # records leave _out in order
        self._handshake()

    def _flush(self) -> None:
        with self._wmu:
            data = self._out.read()
            if data:
                self._conn.write(data)

    def _fill(self) -> bool:
        """Feed the engine what the peer sent; False at EOF."""
        data = self._conn.read()
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    def _handshake(self) -> None:
        import ssl
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    self._flush()
                    raise ssl.SSLEOFError(
                        "EOF occurred during the TLS handshake") from None
            except ssl.SSLWantWriteError:
                self._flush()
        self._flush()

    def read(self, n: int = 65536) -> bytes:
        """At most n bytes of plaintext, at least 1; b"" at EOF (the peer's
        close_notify, or its end of stream)."""
        import ssl
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError("read size must be an int, not %r"
                            % type(n).__name__)
        if n < 1:
            raise ValueError("read size must be at least 1, not %d" % n)
        with self._rmu:
            while True:
                try:
                    data = self._obj.read(n)
                except ssl.SSLWantReadError:
                    self._flush()
                    if self._in.eof:
                        return b""      # the peer ended without close_notify
                    self._fill()
                    continue
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return b""
                self._flush()           # TLS 1.3 may answer (key update)
                return data

    def read_into(self, buf: _Any) -> int:
        """Like Conn.read_into: the count read into buf; 0 at EOF."""
        view = memoryview(buf).cast("B")
        if len(view) == 0:
            return 0
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def write(self, data: _Any) -> int:
        """Encrypt and write all of data; returns len(data)."""
        import ssl
        view = memoryview(data).cast("B")
        off = 0
        while off < len(view):
            try:
                off += self._obj.write(view[off:])
            except ssl.SSLWantReadError:
                # Renegotiation wants the peer's bytes first.
                self._flush()
                with self._rmu:
                    self._fill()
            self._flush()
        return len(view)

    def close(self) -> None:
        """Send close_notify (best effort) and close the Conn; idempotent."""
        import ssl
        if not self._conn._pd.closed:
            try:
                self._obj.unwrap()
            except (ssl.SSLError, OSError):
                pass
            try:
                self._flush()
            except OSError:
                pass
        self._conn.close()

    @property
    def ssl_object(self) -> _Any:
        """The ssl.SSLObject: version(), cipher(), getpeercert(), ..."""
        return self._obj


def tls_client(conn: Conn, ssl_context: _Any,
               server_hostname: _Optional[str] = None) -> TLSConn:
    """TLS client over conn: handshakes (parking as needed) and returns a
    TLSConn.  Handshake errors raise ssl.SSLError (a failed certificate
    check: ssl.SSLCertVerificationError); conn is closed then."""
    try:
        return TLSConn(conn, ssl_context, False, server_hostname)
    except BaseException:
        if isinstance(conn, Conn):
            conn.close()
        raise


def tls_server(conn: Conn, ssl_context: _Any) -> TLSConn:
    """TLS server over conn (see tls_client)."""
    try:
        return TLSConn(conn, ssl_context, True, None)
    except BaseException:
        if isinstance(conn, Conn):
            conn.close()
        raise


# ---- waiting on any fd -----------------------------------------------------


def _fd_of(fileobj: _Any) -> int:
    if isinstance(fileobj, int) and not isinstance(fileobj, bool):
        fd = fileobj
    else:
        try:
            fd = fileobj.fileno()
        except AttributeError:
            raise TypeError("an fd or an object with fileno() is required, "
                            "not %r" % type(fileobj).__name__) from None
    if fd < 0:
        raise ValueError("file descriptor cannot be a negative integer "
                         "(%d)" % fd)
    return fd


def _wait_fd(fileobj: _Any, mode: str, deadline: _Any) -> None:
    deadline = _deadline_arg(deadline)
    # A duplicate is registered, not fd itself: fd may be on the netpoller
    # already (a Conn's), and epoll keys a registration by fd number.
    dup = _os.dup(_fd_of(fileobj))
    try:
        pd = _core.PollDesc(dup)
        events = _select.POLLIN if mode == "r" else _select.POLLOUT
        poller = _select.poll()
        poller.register(dup, events)
        try:
            if deadline is not None:
                pd.set_deadline(deadline, mode)
            # wait() may return early (an edge latched before): confirm.
            while not poller.poll(0):
                pd.wait(mode)
        finally:
            pd.close()
    finally:
        _os.close(dup)


def wait_readable(fileobj_or_fd: _Any,
                  deadline: _Optional[float] = None) -> None:
    """Park until the fd is readable (or the deadline passes:
    TimeoutError("i/o timeout")).  The building block for making other
    protocol code cooperative: try the non-blocking call, wait, retry."""
    _wait_fd(fileobj_or_fd, "r", deadline)


def wait_writable(fileobj_or_fd: _Any,
                  deadline: _Optional[float] = None) -> None:
    """Park until the fd is writable (see wait_readable)."""
    _wait_fd(fileobj_or_fd, "w", deadline)


# ---- cooperative(): plain sockets park inside goroutines ---------------------

_coop_on = False
_COOP_METHODS = ("connect", "accept", "recv", "recv_into", "recvfrom",
                 "send", "sendall", "sendto")
_coop_saved: "dict[str, _Any]" = {}


def _coop_applies(sock: _Any) -> bool:
    # Only a blocking (or timeout) socket used inside a goroutine; a
    # non-blocking one keeps raising BlockingIOError as its code expects.
    return _core.goid() != 0 and sock.gettimeout() != 0.0


def _coop_deadline(sock: _Any) -> _Optional[float]:
    t = sock.gettimeout()
    return None if t is None else _time.time() + t


def _coop_wait(sock: _Any, mode: str, deadline: _Optional[float]) -> None:
    try:
        _wait_fd(sock, mode, deadline)
    except TimeoutError:
        raise _socket.timeout("timed out") from None


# Where each method takes its flags, and the defaults of the positional
# arguments before them.
_COOP_FLAGS = {"recv": (1, ()), "recv_into": (2, (0,)), "recvfrom": (1, ()),
               "send": (1, ()), "sendto": (1, ())}


def _coop_args(name: str, args: _Tuple[_Any, ...],
               kw: "dict[str, _Any]") -> "list[_Any]":
    """args with MSG_DONTWAIT added to the flags."""
    out = list(args)
    if name == "sendto" and len(out) == 2:
        out.insert(1, 0)                    # sendto(data, address)
    if "flags" in kw:
        kw["flags"] |= _socket.MSG_DONTWAIT
        return out
    at, defaults = _COOP_FLAGS[name]
    if len(out) > at:
        out[at] |= _socket.MSG_DONTWAIT
        return out
    for i in range(len(out), at):
        d = defaults[i - 1]
        if i == 1 and "nbytes" in kw:
            d = kw.pop("nbytes")
        out.append(d)
    out.append(_socket.MSG_DONTWAIT)
    return out


def _coop_io(name: str, mode: str) -> _Any:
    orig = getattr(_socket.socket, name)

    def method(self: _Any, *args: _Any, **kw: _Any) -> _Any:
        if not _coop_applies(self):
            return orig(self, *args, **kw)
        call = _coop_args(name, args, kw)
        deadline = _coop_deadline(self)
        while True:
            try:
                return orig(self, *call, **kw)
            except BlockingIOError:
                pass
            _coop_wait(self, mode, deadline)
    method.__name__ = name
    method.__doc__ = orig.__doc__
    return method


def _coop_sendall(self: _Any, data: _Any, flags: int = 0) -> None:
    if not _coop_applies(self):
        _coop_saved["sendall"](self, data, flags)
        return
    send = _coop_saved["send"]
    view = memoryview(data).cast("B")
    deadline = _coop_deadline(self)
    off = 0
    while off < len(view):
        try:
            off += send(self, view[off:], flags | _socket.MSG_DONTWAIT)
            continue
        except BlockingIOError:
            pass
        _coop_wait(self, "w", deadline)


def _coop_accept(self: _Any) -> _Any:
    if not _coop_applies(self):
        return _coop_saved["accept"](self)
    deadline = _coop_deadline(self)
    while True:
        _coop_wait(self, "r", deadline)
        prev = self.gettimeout()
        self.setblocking(False)
        try:
            sock, addr = _coop_saved["accept"](self)
        except BlockingIOError:
            continue                        # another took it first
        finally:
            self.settimeout(prev)
        sock.settimeout(_socket.getdefaulttimeout())
        return sock, addr


def _coop_connect(self: _Any, address: _Any) -> None:
    if not _coop_applies(self):
        _coop_saved["connect"](self, address)
        return
    deadline = _coop_deadline(self)
    prev = self.gettimeout()
    self.setblocking(False)
    try:
        err = self.connect_ex(address)
    finally:
        self.settimeout(prev)
    while err in (_errno.EINPROGRESS, _errno.EALREADY, _errno.EAGAIN):
        _coop_wait(self, "w", deadline)
        err = self.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
    if err:
        raise OSError(err, _os.strerror(err))


def _coop_install(on: bool) -> None:
    global _coop_on
    if on == _coop_on:
        return
    if on:
        for name in _COOP_METHODS:
            _coop_saved[name] = _socket.socket.__dict__.get(
                name, getattr(_socket.socket, name))
        patched = {name: _coop_io(name, "r" if name.startswith("recv")
                                  else "w")
                   for name in ("recv", "recv_into", "recvfrom", "send",
                                "sendto")}
        patched.update(sendall=_coop_sendall, accept=_coop_accept,
                       connect=_coop_connect)
        for name, f in patched.items():
            setattr(_socket.socket, name, f)
    else:
        for name in _COOP_METHODS:
            if name in _SOCKET_OWN:
                setattr(_socket.socket, name, _coop_saved[name])
            else:
                delattr(_socket.socket, name)   # the inherited one shows
    _coop_on = on


# The methods socket.socket defines itself (accept, ...); the others are
# inherited from _socket.socket and are restored by deleting our override.
_SOCKET_OWN = frozenset(n for n in _COOP_METHODS
                        if n in _socket.socket.__dict__)


class cooperative:
    """Opt-in, for code you do not own (urllib, http.client, a database
    driver on plain sockets): while on, the blocking methods of
    socket.socket objects used inside a goroutine (connect, accept, recv,
    recv_into, recvfrom, send, sendall, sendto) park the goroutine on the
    netpoller instead of blocking its OS thread; in plain threads, and on
    non-blocking sockets, nothing changes.  A socket timeout still raises
    socket.timeout.

        with net.cooperative(): ...     # on for the block
        net.cooperative(True)           # on until cooperative(False)
    """

    __slots__ = ("_prev",)

    def __init__(self, on: _Optional[bool] = None) -> None:
        self._prev: _Optional[bool] = None
        if on is not None:
            _coop_install(bool(on))

    def __enter__(self) -> "cooperative":
        self._prev = _coop_on
        _coop_install(True)
        return self

    def __exit__(self, *exc: _Any) -> None:
        _coop_install(bool(self._prev))
