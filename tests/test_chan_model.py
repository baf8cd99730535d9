"""Channels and select against a reference model in plain Python
(hypothesis state machine).  Operations are non-blocking (select with
default), so one thread can check every step; concurrency is covered by
test_chan_interleavings.py, test_chan_handoff_model.py and test_stress.py."""
import collections

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from goroutine import Panic, chan, default, select


class ModelChan:
    def __init__(self, cap):
        self.cap, self.buf, self.closed = cap, collections.deque(), False

    def can_send(self):
        return self.closed or len(self.buf) < self.cap   # closed: panics

    def can_recv(self):
        return bool(self.buf) or self.closed


class ChannelMachine(RuleBasedStateMachine):
    @initialize(caps=st.lists(st.integers(0, 3), min_size=1, max_size=4))
    def make(self, caps):
        self.real = [chan(c) for c in caps]
        self.model = [ModelChan(c) for c in caps]
        self.counter = 0

    def pick(self, i):
        i %= len(self.real)
        return self.real[i], self.model[i]

    @rule(i=st.integers(0, 3))
    def send(self, i):
        c, m = self.pick(i)
        self.counter += 1
        v = self.counter
        try:
            r = select((c.send, v), default)
        except Panic as e:
            assert m.closed and str(e) == "send on closed channel"
            return
        assert not m.closed
        if r[0] == 0:
            assert len(m.buf) < m.cap
            m.buf.append(v)
        else:
            assert len(m.buf) >= m.cap

    @rule(i=st.integers(0, 3), with_ok=st.booleans())
    def recv(self, i, with_ok):
        c, m = self.pick(i)
        i_, rx = select(c.recv_ if with_ok else c.recv, default)
        if i_ == 1:
            assert not m.can_recv()
            return
        if m.buf:
            want = (m.buf.popleft(), True)
        else:
            assert m.closed
            want = (None, False)
        assert rx == (want if with_ok else want[0])

    @rule(i=st.integers(0, 3))
    def close(self, i):
        c, m = self.pick(i)
        try:
            c.close()
        except Panic as e:
            assert m.closed and str(e) == "close of closed channel"
            return
        assert not m.closed
        m.closed = True

    @rule(picks=st.lists(st.tuples(st.integers(0, 3), st.booleans()),
                         min_size=1, max_size=5))
    def multi_select(self, picks):
        cases, meta = [], []
        for i, is_send in picks:
            c, m = self.pick(i)
            if is_send:
                self.counter += 1
                cases.append((c.send, self.counter))
                meta.append((m, True, self.counter))
            else:
                cases.append(c.recv_)
                meta.append((m, False, None))
        ready = [k for k, (m, s, _) in enumerate(meta)
                 if (m.can_send() if s else m.can_recv())]
        try:
            k, rx = select(*cases, default)
        except Panic as e:
            # Only a ready send case on a closed channel may panic.
            assert str(e) == "send on closed channel"
            assert any(meta[j][1] and meta[j][0].closed for j in ready)
            return
        if k == len(cases):
            assert ready == []
            return
        assert k in ready
        m, is_send, v = meta[k]
        if is_send:
            assert not m.closed
            m.buf.append(v)
        elif m.buf:
            assert rx == (m.buf.popleft(), True)
        else:
            assert m.closed and rx == (None, False)

    @rule(i=st.integers(0, 3))
    def length(self, i):
        c, m = self.pick(i)
        assert len(c) == len(m.buf) and c.cap() == m.cap


ChannelMachine.TestCase.settings = settings(max_examples=150,
                                            stateful_step_count=40,
                                            deadline=None)
test_channels_match_the_model = ChannelMachine.TestCase
