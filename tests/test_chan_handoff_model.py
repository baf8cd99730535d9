"""Channels against a deque model while the operations hop between
goroutines and OS threads (hypothesis state machine).

One logical actor drives the channels; at generated points it hands over
to another executor: the main thread, a goroutine, a plain thread, a
goroutine started from a thread, or a fresh goroutine or thread for each
operation.  Each operation is one whose result does not depend on the
schedule, so the model is exact step by step:

  - non-blocking operations (select with default) and blocking ones the
    model knows will not block (send with room, recv with a value or on a
    closed channel, send on a closed channel, which panics);
  - rendezvous: a receive on one executor completed by a send from another
    (or the other way round): whatever the interleaving, the receiver gets
    the head of buffer + [value];
  - close waking a blocked party: a send on a full (or unbuffered) channel
    or a receive on an empty one, started on one executor, then a close
    from another: the send panics, the receive reports closed, whether the
    close came before or after the party blocked.

Hand-offs go through channels too, so each step happens-after the previous
one, as Go's memory model promises.  GOROUTINE_MODEL_EXAMPLES sets the
number of runs (default 80).
"""
import collections
import os
import threading

from hypothesis import event, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize,
                                 invariant, rule)

from goroutine import Panic, chan, default, go, nilchan, select, time

EXAMPLES = int(os.environ.get("GOROUTINE_MODEL_EXAMPLES", "80"))
HANG = 30.0

KINDS = ["main", "go", "thread", "go_from_thread", "fresh_go",
         "fresh_thread"]


class Executor:
    """Runs callables, one at a time, on one kind of executor; submit()
    returns at once, result() waits for the outcome (re-raising)."""

    def __init__(self, kind, hang):
        self.kind = kind
        self.hang = hang
        self.rep = chan(1)
        self.thread = None
        self.pending = 0
        if kind in ("go", "thread", "go_from_thread"):
            self.req = chan()
            if kind == "go":
                go(self._loop)
            elif kind == "thread":
                self.thread = threading.Thread(target=self._loop)
                self.thread.start()
            else:
                t = threading.Thread(target=go, args=(self._loop,))
                t.start()
                t.join()

    def _loop(self):
        for f in self.req:
            self.rep.send(self._call(f))

    @staticmethod
    def _call(f):
        try:
            return True, f()
        except BaseException as e:     # noqa: B902 - handed to result()
            return False, e

    def submit(self, f):
        assert self.kind != "main" and self.pending == 0
        self.pending = 1
        if self.kind == "fresh_go":
            go(lambda: self.rep.send(self._call(f)))
        elif self.kind == "fresh_thread":
            t = threading.Thread(target=lambda: self.rep.send(self._call(f)))
            t.start()
            self._t = t
        else:
            self.req.send(f)

    def result(self):
        self.pending = 0
        i, r = select(self.rep.recv, self.hang.recv)
        assert i == 0, "an executor's operation hangs"
        if self.kind == "fresh_thread":
            self._t.join()
        ok, v = r
        if not ok:
            raise v
        return v

    def run(self, f):
        if self.kind == "main":
            return f()
        self.submit(f)
        return self.result()

    def stop(self):
        if self.kind in ("go", "thread", "go_from_thread"):
            self.req.close()
        if self.thread is not None:
            self.thread.join(HANG)


def both(a, fa, b, fb):
    """Run fa on executor a and fb on executor b concurrently (a != b);
    return (result or exception of fa, result or exception of fb)."""
    if a.kind == "main":
        b.submit(fb)
        ra = Executor._call(fa)
        rb = Executor._call(b.result)
    else:
        a.submit(fa)
        rb = Executor._call(lambda: b.run(fb))
        ra = Executor._call(a.result)
    return ra, rb


def _where(e):
    return "thread" if "thread" in e.kind or e.kind == "main" else "goroutine"


class Model:
    def __init__(self, cap):
        self.cap, self.buf, self.closed = cap, collections.deque(), False


def _send_outcome(f):
    try:
        f()
        return "sent"
    except _Default:
        return "default"
    except Panic as e:
        assert str(e) == "send on closed channel", e
        return "panic"


class HandoffMachine(RuleBasedStateMachine):
    @initialize(caps=st.lists(st.integers(0, 4), min_size=1, max_size=3),
                kinds=st.lists(st.sampled_from(KINDS), min_size=2,
                               max_size=4, unique=True))
    def make(self, caps, kinds):
        self.real = [chan(c) for c in caps]
        self.model = [Model(c) for c in caps]
        self.hang = time.Timer(HANG)    # one hang bound for the whole run
        self.execs = [Executor(k, self.hang.c) for k in kinds]
        self.cur = 0
        self.counter = 0

    def teardown(self):
        # After a failure an executor may still be blocked on a channel:
        # closing them all wakes it, so no goroutine or thread is left.
        for c in getattr(self, "real", []):
            try:
                c.close()
            except Panic:
                pass
        for e in getattr(self, "execs", []):
            e.stop()
        if hasattr(self, "hang"):
            self.hang.stop()

    def pick(self, i):
        i %= len(self.real)
        return self.real[i], self.model[i]

    def here(self, f):
        return self.execs[self.cur].run(f)

    def fresh(self):
        self.counter += 1
        return ("v", self.counter)

    @rule(k=st.integers(0, 3))
    def hop(self, k):
        self.cur = k % len(self.execs)

    @rule(i=st.integers(0, 2), blocking=st.booleans())
    def send(self, i, blocking):
        c, m = self.pick(i)
        v = self.fresh()
        want = ("panic" if m.closed else "sent" if len(m.buf) < m.cap
                else "default")
        if blocking and want != "default":
            out = self.here(lambda: _send_outcome(lambda: c.send(v)))
        else:
            out = self.here(lambda: _send_outcome(
                lambda: select((c.send, v), default)[0] == 0 or _default()))
        assert out == want, (out, want)
        if out == "sent":
            m.buf.append(v)

    @rule(i=st.integers(0, 2),
          how=st.sampled_from(["recv", "recv_", "select", "iter", "drain"]))
    def recv(self, i, how):
        c, m = self.pick(i)
        if how == "drain" and m.closed:
            got = self.here(lambda: list(c))
            assert got == list(m.buf), (got, m.buf)
            assert all(x is y for x, y in zip(got, m.buf))
            m.buf.clear()
            return
        ready = bool(m.buf) or m.closed
        if how == "iter" and m.buf:
            got = (self.here(lambda: next(iter(c))), True)
        elif how == "recv" and ready:
            v = self.here(c.recv)
            got = (v, v is not None)
        elif how == "recv_" and ready:
            got = self.here(c.recv_)
        else:
            i_, rx = self.here(lambda: select(c.recv_, default))
            if i_ == 1:
                assert not ready, "default while a value or close was ready"
                return
            got = rx
        assert ready, f"received {got} from an empty open channel"
        want = (m.buf.popleft(), True) if m.buf else (None, False)
        assert got == want, (got, want)
        assert got[0] is want[0]    # by reference, never copied

    @rule(i=st.integers(0, 2))
    def close(self, i):
        c, m = self.pick(i)

        def f():
            try:
                c.close()
                return "closed"
            except Panic as e:
                return str(e)
        out = self.here(f)
        if m.closed:
            assert out == "close of closed channel"
        else:
            assert out == "closed"
            m.closed = True

    @rule(i=st.integers(0, 2), other=st.integers(1, 3),
          recv_first=st.booleans(), via_select=st.booleans())
    def rendezvous(self, i, other, recv_first, via_select):
        """Receive here, send from another executor (or the reverse),
        plainly or as a blocking select (with a nil-channel case): both
        complete, whatever the interleaving."""
        c, m = self.pick(i)
        if m.closed:
            return
        a = self.execs[self.cur]
        b = self.execs[(self.cur + other) % len(self.execs)]
        if a is b:
            return
        v = self.fresh()
        if via_select:
            def fr():
                return select(nilchan.recv, c.recv_)[1]

            def fs():
                assert select((c.send, v), nilchan.recv) == (0, None)
        else:
            fr, fs = c.recv_, (lambda: c.send(v))
        if recv_first:
            (okr, got), (oks, sent) = both(a, fr, b, fs)
        else:
            (oks, sent), (okr, got) = both(a, fs, b, fr)
        assert okr and oks, (got, sent)
        m.buf.append(v)
        want = m.buf.popleft()
        assert got == (want, True) and got[0] is want, (got, want)
        event(f"rendezvous, {_where(a)} with {_where(b)}")

    @rule(i=st.integers(0, 2), other=st.integers(1, 3),
          send_side=st.booleans())
    def close_wakes(self, i, other, send_side):
        """Block a send on a full channel (or a receive on an empty one)
        here; close from another executor: it panics (reports closed)."""
        c, m = self.pick(i)
        if m.closed or (len(m.buf) < m.cap if send_side else m.buf):
            return
        a = self.execs[self.cur]
        b = self.execs[(self.cur + other) % len(self.execs)]
        if a is b:
            return
        v = self.fresh()
        blocked = ((lambda: _send_outcome(lambda: c.send(v))) if send_side
                   else c.recv_)
        (oka, out), (okb, _) = both(a, blocked, b, c.close)
        assert oka and okb, (out, _)
        assert out == ("panic" if send_side else (None, False)), out
        m.closed = True
        event(f"close wakes a {'send' if send_side else 'recv'} on a "
              f"{_where(a)}")

    @invariant()
    def lengths(self):
        if not hasattr(self, "real"):
            return
        for c, m in zip(self.real, self.model):
            assert len(c) == len(m.buf) and c.cap() == m.cap


class _Default(Exception):
    pass


def _default():
    raise _Default


HandoffMachine.TestCase.settings = settings(max_examples=EXAMPLES,
                                            stateful_step_count=30,
                                            deadline=None)
test_handoffs_match_the_model = HandoffMachine.TestCase
