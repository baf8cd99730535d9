"""pygolang code runs with an import change (issue 20.2): the names and
forms pygolang has, with pygolang's behaviour where docs/coming-from.md
does not list a deliberate difference.

Waiting for "blocked" uses the goroutine's state as runtime._goroutines()
reports it (parked in that operation), never a sleep.
"""
import asyncio
import sys

import pytest

from conftest import wait_until
from goroutine import (Panic, _core, chan, context, default, errors, go,
                       nilchan, select, sync, time)


def parked_in(state, n=1):
    """Wait until n goroutines are parked in `state`."""
    assert wait_until(lambda: sum(1 for _, s, _ in _core._goroutines()
                                  if s == state) >= n, timeout=10), state


def not_ready(ch):
    return select(ch.recv, default)[0] == 1


# ---- sync.RWMutex: pygolang's Go-cased names, UnlockToRLock ------------

def test_rwmutex_go_cased_names_are_the_lowercase_methods():
    rw = sync.RWMutex()
    rw.Lock()
    assert not rw.try_rlock() and not rw.try_lock()
    rw.Unlock()
    rw.RLock()
    rw.RLock()
    assert not rw.try_lock()
    rw.RUnlock()
    rw.RUnlock()
    assert rw.try_lock()
    rw.unlock()
    with pytest.raises(Panic, match="^sync: Unlock of unlocked RWMutex$"):
        rw.Unlock()
    with pytest.raises(Panic, match="^sync: RUnlock of unlocked RWMutex$"):
        rw.RUnlock()


def test_rwmutex_lock_blocks_another_lock_until_unlock():
    rw = sync.RWMutex()
    rw.Lock()
    got = chan(1)

    def w():
        rw.Lock()
        got.send("w")
        rw.Unlock()
    go(w)
    parked_in("sync.RWMutex.Lock")
    assert not_ready(got)
    rw.Unlock()
    assert got.recv() == "w"


def test_unlock_to_rlock_lets_queued_readers_in_and_keeps_a_read_lock():
    rw = sync.RWMutex()
    rw.Lock()
    n = 5
    inside, leave = chan(n), chan()

    def reader():
        rw.RLock()
        inside.send(1)
        leave.recv()
        rw.RUnlock()
    wg = sync.WaitGroup()
    for _ in range(n):
        wg.go(reader)
    parked_in("sync.RWMutex.RLock", n)
    assert not_ready(inside)
    rw.UnlockToRLock()
    for _ in range(n):
        inside.recv()           # every queued reader got in
    assert not rw.try_lock()    # and this caller still reads
    leave.close()
    wg.wait()
    assert not rw.try_lock()
    rw.RUnlock()
    assert rw.try_lock()
    rw.unlock()


def test_unlock_to_rlock_lets_no_waiting_writer_in_before_runlock():
    rw = sync.RWMutex()
    rw.lock()
    wrote = chan(1)

    def writer():
        rw.lock()
        wrote.send(1)
        rw.unlock()
    go(writer)
    parked_in("sync.RWMutex.Lock")
    rw.unlock_to_rlock()
    assert not_ready(wrote)
    # The writer waiting keeps new readers out, as after any unlock.
    assert not rw.try_rlock()
    rw.runlock()
    wrote.recv()


def test_unlock_to_rlock_of_unlocked_panics():
    rw = sync.RWMutex()
    with pytest.raises(Panic,
                       match="^sync: UnlockToRLock of unlocked RWMutex$"):
        rw.UnlockToRLock()
    rw.rlock()
    with pytest.raises(Panic,
                       match="^sync: UnlockToRLock of unlocked RWMutex$"):
        rw.unlock_to_rlock()
    rw.runlock()
    assert rw.try_lock()


# ---- sync.Sema and sync.WorkGroup as context managers ------------------

def test_sema_with_takes_and_gives_back_one_unit():
    s = sync.Sema(1)
    with s as entered:
        assert entered is s
        assert not s.try_acquire()
    assert s.try_acquire()
    s.release()
    with pytest.raises(KeyError):
        with s:
            raise KeyError
    assert s.try_acquire()      # given back on the way out of an error
    s.release()


def test_sema_with_blocks_until_the_holder_leaves():
    s = sync.Sema()
    got = chan(1)

    def g():
        with s:
            got.send(1)
    with s:
        go(g)
        parked_in("semacquire")
        assert not_ready(got)
    got.recv()


def test_workgroup_with_waits_for_its_goroutines():
    done = []
    release = chan()
    with sync.WorkGroup(context.background()) as wg:
        assert isinstance(wg, sync.WorkGroup)

        def f(ctx, i, k=None):
            release.recv()
            done.append((i, k))
        wg.go(f, 1, k=2)
        release.close()
    assert done == [(1, 2)]


def test_workgroup_with_raises_the_first_error_after_all_finished():
    finished = []

    def fails(ctx):
        raise ValueError("first")

    def waits(ctx):
        ctx.done().recv()       # cancelled by the first error
        finished.append(ctx.err())
    with pytest.raises(ValueError, match="^first$"):
        with sync.WorkGroup(context.background()) as wg:
            wg.go(waits)
            wg.go(fails)
    assert finished == [context.canceled]


def test_workgroup_with_an_error_in_the_block_cancels_and_chains():
    def waits(ctx):
        ctx.done().recv()
        raise KeyError("from goroutine")
    with pytest.raises(KeyError) as ei:
        with sync.WorkGroup(context.background()) as wg:
            wg.go(waits)
            raise ValueError("block")
    assert isinstance(ei.value.__context__, ValueError)


def test_workgroup_with_a_block_error_alone_propagates_it():
    with pytest.raises(ValueError, match="^block$"):
        with sync.WorkGroup(context.background()) as wg:
            wg.go(lambda ctx: ctx.done().recv())
            raise ValueError("block")


# ---- time: Timer(d, f=...), pygolang's dt= keyword ---------------------

def test_timer_f_keyword_runs_f_and_has_a_nil_channel():
    ran = chan(1)
    t = time.Timer(0.001, f=lambda: ran.send("f"))
    assert ran.recv() == "f"
    assert t.c is nilchan
    assert not t.stop()


def test_timer_f_keyword_stop_cancels_f():
    ran = chan(1)
    t = time.Timer(3600, f=lambda: ran.send("f"))
    assert t.stop()
    assert not_ready(ran)


def test_timer_and_ticker_take_pygolangs_dt_keyword():
    t = time.Timer(dt=0.001)
    assert isinstance(t.c.recv(), float)
    tx = time.Ticker(dt=0.001)
    tx.c.recv()
    tx.c.recv()
    tx.stop()
    with pytest.raises(ValueError, match="^non-positive interval"):
        time.Ticker(dt=0)


@pytest.mark.parametrize("make", [
    lambda: time.Timer(1, dt=1), lambda: time.Ticker(1, dt=1),
    lambda: time.Timer(), lambda: time.Ticker(),
    lambda: time.Timer(f=print)])
def test_timer_duration_given_twice_or_not_at_all_is_a_typeerror(make):
    with pytest.raises(TypeError, match="duration"):
        make()


# ---- chan(size, dtype=...) -------------------------------------------------

TYPES = [
    # dtype, a value of it, its zero value
    ("object", "abc", None),
    ("C.structZ", None, None),
    ("C.bool", True, False),
    ("C.int", 4, 0),
    ("C.double", 3.14, 0.0),
]


@pytest.mark.parametrize("dtype,obj,zero", TYPES)
def test_typed_chan_carries_its_type_and_closed_yields_its_zero(
        dtype, obj, zero):
    ch = chan(2, dtype=dtype)
    ch.send(obj)
    assert select((ch.send, obj)) == (0, None)
    for got in (ch.recv(), ch.recv_()[0]):
        assert type(got) is type(obj) and got == obj
    ch.close()
    for got in (ch.recv(), ch.recv_(), select(ch.recv)[1],
                select(ch.recv_)[1], asyncio.run(ch.recv_async_())):
        if isinstance(got, tuple):
            assert got[1] is False
            got = got[0]
        assert type(got) is type(zero) and got == zero
    assert list(ch) == []


@pytest.mark.parametrize("dtype,obj,zero", TYPES)
def test_typed_chan_refuses_another_type(dtype, obj, zero):
    ch = chan(1, dtype=dtype)
    for dtype2, obj2, _ in TYPES:
        if dtype == "object" or dtype2 == dtype:
            continue
        if (dtype2, dtype) == ("C.int", "C.double"):
            continue            # an int is a double (4 -> 4.0)
        msg = r"^cannot use .* as %s value in send" % dtype
        with pytest.raises(TypeError, match=msg):
            ch.send(obj2)
        with pytest.raises(TypeError, match=msg):
            select((ch.send, obj2), default)
        with pytest.raises(TypeError, match=msg):
            asyncio.run(ch.send_async(obj2))
    assert len(ch) == 0         # nothing got in


def test_typed_chan_conversions():
    d = chan(2, dtype="C.double")
    d.send(4)
    select((d.send, 5))
    assert [type(x) for x in (d.recv(), d.recv())] == [float, float]
    i = chan(3, dtype="C.int")
    i.send(3.0)                 # integral: pygolang takes it as 3
    with pytest.raises(TypeError, match="truncated"):
        i.send(3.5)
    with pytest.raises(TypeError):
        i.send(float("nan"))
    with pytest.raises(OverflowError, match=r"overflows"):
        i.send(2 ** 31)
    i.send(2 ** 31 - 1)
    i.send(-2 ** 31)
    assert (i.recv(), i.recv(), i.recv()) == (3, 2 ** 31 - 1, -2 ** 31)
    with pytest.raises(TypeError):
        chan(1, dtype="C.bool").send(1)
    with pytest.raises(TypeError):
        chan(1, dtype="C.double").send(True)


def test_typed_chan_unbuffered_handoff_and_views():
    ch = chan(dtype="C.int")
    go(ch.send_only().send, 7.0)
    got = ch.recv_only().recv()
    assert type(got) is int and got == 7
    with pytest.raises(TypeError):
        ch.send_only().send("7")
    ch.close()
    assert ch.recv_only().recv() == 0


@pytest.mark.parametrize("bad", ["BadType", "int", int, 1, "C.float"])
def test_chan_invalid_dtype_is_a_typeerror(bad):
    with pytest.raises(TypeError, match=r"^chan: invalid dtype: "):
        chan(dtype=bad)
    with pytest.raises(TypeError, match=r"^chan: invalid dtype: "):
        chan.nil(bad)


def test_chan_default_dtype_spellings_are_untyped():
    for dt in ("object", object, None):
        ch = chan(1, dtype=dt)
        ch.send([1])
        ch.close()
        assert ch.recv() == [1] and ch.recv() is None


# ---- chan.nil(dtype) -------------------------------------------------------

@pytest.mark.parametrize("dtype", [t[0] for t in TYPES])
def test_chan_nil_is_one_nil_per_type_equal_to_nilchan(dtype):
    n = chan.nil(dtype)
    assert n is chan.nil(dtype)
    assert repr(n) == ("nilchan" if dtype == "object"
                       else "chan.nil(%r)" % dtype)
    assert (n is nilchan) == (dtype == "object")
    assert n == nilchan and nilchan == n and not n != nilchan
    assert hash(n) == hash(nilchan)
    assert len(n) == 0 and n.cap() == 0
    for dtype2, _, _ in TYPES:
        n2 = chan.nil(dtype2)
        same = dtype == dtype2 or "object" in (dtype, dtype2)
        assert (n == n2) is same and (n != n2) is (not same)
    ch = chan(dtype=dtype)
    assert ch != n and ch == ch and hash(ch) != hash(n)
    with pytest.raises(Panic, match="^close of nil channel$"):
        n.close()
    assert select(n.recv, default) == (1, None)


def test_typed_nil_send_checks_the_type_before_blocking():
    with pytest.raises(TypeError):
        chan.nil("C.int").send("x")
    with pytest.raises(TypeError):
        select((chan.nil("C.int").send, "x"), default)


# ---- select: a malformed case is a TypeError -------------------------------

@pytest.mark.parametrize("case", ["zzz", 1, (chan().recv, 1), chan(),
                                  (chan().send,), lambda: None])
def test_select_malformed_case_is_a_typeerror_not_attributeerror(case):
    # pygolang raises AttributeError for some of these (it reads
    # case.__self__); docs/api.md says why this package says TypeError.
    with pytest.raises(TypeError, match=r"^select: case 1 must be"):
        select(default, case)


# ---- errors: New, Is, Unwrap ---------------------------------------------

def test_errors_new_makes_distinct_errors():
    a, b = errors.New("boom"), errors.New("boom")
    assert isinstance(a, Exception) and str(a) == "boom" == a.Error()
    assert errors.Is(a, a) and not errors.Is(a, b)
    with pytest.raises(TypeError):
        errors.New(1)
    assert errors.new is errors.New


def test_errors_is_and_unwrap_follow_unwrap_and_cause():
    base = errors.New("base")

    class Wrap(Exception):
        def __init__(self, err):
            super().__init__("wrap: %s" % err)
            self.err = err

        def Unwrap(self):
            return self.err
    w = Wrap(base)
    assert errors.Unwrap(w) is base and errors.Is(w, base)
    try:
        try:
            raise w
        except Wrap as e:
            raise RuntimeError("outer") from e
    except RuntimeError as outer:
        assert errors.Unwrap(outer) is w
        assert errors.Is(outer, base)
        assert not errors.Is(outer, errors.New("base"))
    assert errors.Unwrap(base) is None and errors.Unwrap(None) is None
    assert errors.Is(None, None) and not errors.Is(base, None)
    # same type and ==: a value-like error matches an equal one
    assert errors.Is(Wrap(KeyError("k")), KeyError("k")) is False
    with pytest.raises(TypeError):
        errors.Is("x", base)
    with pytest.raises(TypeError):
        errors.Unwrap(1)


def test_errors_is_searches_every_branch_and_survives_cycles():
    base = errors.New("base")

    class Multi(Exception):
        def Unwrap(self):
            return [errors.New("other"), base]
    assert errors.Is(Multi(), base) and errors.Unwrap(Multi()) is None
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert not errors.Is(a, base)
    if sys.version_info >= (3, 11):
        g = ExceptionGroup("g", [ValueError("v"), base])  # noqa: F821
        assert errors.Is(g, base)


def test_errors_is_asks_the_error_itself():
    class Timeout(Exception):
        def Is(self, target):
            return target is context.deadlineExceeded
    assert errors.Is(Timeout(), context.deadlineExceeded)
