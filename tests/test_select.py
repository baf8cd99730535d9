"""select: API.md's rules and Go's select tests."""
import copy
import math
import pickle
import threading
import time

import pytest

from goroutine import Panic, chan, default, go, nilchan, select


def test_result_is_index_and_value_per_case_kind():
    a, b, c = chan(1), chan(1), chan(1)
    a.send("x")
    assert select(a.recv, default) == (0, "x")
    b.send("y")
    assert select(default, b.recv_) == (1, ("y", True))
    assert select((c.send, 1), default) == (0, None)
    assert select(a.recv, default) == (1, None)


def test_default_runs_only_when_nothing_is_ready():
    a = chan(1)
    assert select(a.recv, default) == (1, None)
    a.send(1)
    assert select(a.recv, default) == (0, 1)


def test_default_is_a_named_singleton():
    assert repr(default) == str(default) == "default"
    assert copy.copy(default) is default
    assert copy.deepcopy(default) is default
    assert pickle.loads(pickle.dumps(default)) is default
    with pytest.raises(TypeError):
        type(default)()
    with pytest.raises(TypeError, match="not 1$"):
        select(1)


def test_bad_cases_are_type_errors():
    a = chan()
    with pytest.raises(TypeError):
        select(a)
    with pytest.raises(TypeError):
        select(a.send)
    with pytest.raises(TypeError):
        select((a.recv, 1))
    with pytest.raises(TypeError):
        select(lambda: None)
    with pytest.raises(TypeError, match="multiple default"):
        select(default, default)


def test_recv_case_on_a_send_only_view_is_a_type_error():
    a = chan()
    with pytest.raises(TypeError):
        select(a.send_only().recv)
    with pytest.raises(TypeError):
        select((a.recv_only().send, 1))


def test_closed_channel_recv_case_is_ready_with_zero_value():
    a = chan()
    a.close()
    assert select(a.recv) == (0, None)
    assert select(a.recv_) == (0, (None, False))


def test_chosen_send_case_on_closed_channel_panics():
    a = chan(1)
    a.close()
    with pytest.raises(Panic, match="send on closed channel"):
        select((a.send, 1))


def test_blocked_send_case_panics_when_channel_is_closed():
    a = chan()
    got = chan(1)

    def f():
        try:
            select((a.send, 1))
        except Panic as e:
            got.send(str(e))
    go(f)
    time.sleep(0.02)
    a.close()
    assert got.recv() == "send on closed channel"


def test_nil_cases_are_never_chosen():
    b = chan(1)
    b.send(2)
    for _ in range(50):
        assert select(nilchan.recv, (nilchan.send, 1), b.recv_, default)[0] \
            in (2, 3)
    assert select(nilchan.recv, b.recv, default) == (2, None)


def test_blocking_select_wakes_on_any_case_from_goroutine_and_thread():
    a, b = chan(), chan()
    go(lambda: (time.sleep(0.02), b.send("from goroutine")))
    assert select(a.recv, b.recv) == (1, "from goroutine")
    t = threading.Thread(target=lambda: (time.sleep(0.02), a.send("thr")))
    t.start()
    assert select(a.recv, b.recv) == (0, "thr")
    t.join()


def test_select_inside_goroutine_blocks_only_the_goroutine():
    a, b, out = chan(), chan(), chan(1)
    go(lambda: out.send(select(a.recv, b.recv)))
    b.send(7)
    assert out.recv() == (1, 7)


def test_choice_among_ready_cases_is_uniform_within_10_sigma():
    n, k = 20000, 4
    chans = [chan(1) for _ in range(k)]
    counts = [0] * k
    cases = [c.recv for c in chans]
    for _ in range(n):
        for c in chans:
            if len(c) == 0:
                c.send(1)
        i, _ = select(*cases)
        counts[i] += 1
    p = 1 / k
    sigma = math.sqrt(n * p * (1 - p))
    for c in counts:
        assert abs(c - n * p) < 10 * sigma, counts


def test_select_never_matches_its_own_send_with_its_own_recv():
    a = chan()
    out = chan(1)
    go(lambda: out.send(select(a.recv, (a.send, "self"))))
    time.sleep(0.05)
    assert select(out.recv, default) == (1, None)   # still blocked
    a.send("other")
    assert out.recv() == (0, "other")


def test_losing_cases_are_unlinked_after_wake():
    # Go's test/chan/select6.go: a select that fired on one channel must
    # not leave a stale waiter on the other that swallows a later value.
    a, b = chan(), chan()
    done = chan()

    def f():
        select(a.recv, b.recv)
        done.send(1)
    go(f)
    time.sleep(0.02)
    a.send(1)
    done.recv()
    # The stale sudog on b must be gone: a plain recv gets b's value.
    go(b.send, 99)
    assert b.recv() == 99


def test_select_with_no_cases_and_default_returns_default():
    assert select(default) == (0, None)


def test_many_cases_use_the_heap_path():
    chans = [chan(1) for _ in range(50)]
    chans[37].send("x")
    assert select(*[c.recv for c in chans]) == (37, "x")


def test_concurrent_selects_deliver_each_value_once():
    n = 3000
    a, b = chan(), chan()
    results = chan(8)

    def recv_all():
        got = 0
        while True:
            i, (v, ok) = select(a.recv_, b.recv_)
            if not ok:
                break
            got += v
        results.send(got)
    for _ in range(4):
        go(recv_all)
    for i in range(n):
        if i % 2:
            a.send(i)
        else:
            b.send(i)
    a.close()
    b.close()
    assert sum(results.recv() for _ in range(4)) == sum(range(n))


# ---- the lock-free first pass (select.c's fast pass) --------------------

def test_two_always_ready_cases_are_each_chosen_about_half_the_time():
    # A buffered channel with values and a closed one: the peek reads the
    # buffer count for one and the closed flag for the other; the random
    # poll order must reach the fast pass's choice.
    n = 4000
    buf = chan(n)
    for _ in range(n):
        buf.send("b")
    closed = chan()
    closed.close()
    counts = {"b": 0, None: 0}
    for _ in range(n):
        _, v = select(buf.recv, closed.recv)
        counts[v] += 1
    # Binomial(4000, 1/2): sigma 32; the margin is 12 sigma.
    assert abs(counts["b"] - n / 2) < 400, counts


def test_a_ready_send_and_a_ready_receive_are_both_chosen():
    out, inp = chan(10 ** 4), chan(10 ** 4)
    for _ in range(2000):
        inp.send(1)
    counts = [0, 0]
    for _ in range(2000):
        counts[select((out.send, 1), inp.recv)[0]] += 1
    assert min(counts) > 600, counts


def test_one_case_with_default_takes_a_value_from_a_parked_sender():
    c = chan()
    go(c.send, "v")
    deadline = time.monotonic() + 10
    while True:
        r = select(c.recv, default)
        if r != (1, None) or time.monotonic() > deadline:
            break
        time.sleep(0.001)
    assert r == (0, "v")


def test_closed_channels_are_ready_in_every_shape_of_select():
    a, b = chan(), chan(3)
    a.close()
    b.close()
    for sel in ((a.recv,), (a.recv, default), (nilchan.recv, a.recv),
                (b.recv, nilchan.recv, default)):
        i, v = select(*sel)
        assert sel[i] in (a.recv, b.recv) and v is None
    assert select(default, a.recv_) == (1, (None, False))
    for sel in (((a.send, 1),), ((a.send, 1), default),
                ((b.send, 1), nilchan.recv), ((b.send, 1), nilchan.recv,
                                              default)):
        with pytest.raises(Panic, match="^send on closed channel$"):
            select(*sel)


def test_a_closed_channel_wins_over_nil_cases_and_a_buffered_value_first():
    c = chan(1)
    c.send("last")
    c.close()
    assert select(nilchan.recv, c.recv_, default) == (1, ("last", True))
    assert select(nilchan.recv, c.recv_, default) == (1, (None, False))


def test_only_nil_cases_with_default_take_the_default():
    assert select(nilchan.recv, (nilchan.send, 1), default) == (2, None)


def test_concurrent_two_case_selects_and_closes_lose_nothing():
    # Receivers select over two channels while senders feed them and a
    # thread closes them at the end: every value sent is received once.
    a, b = chan(4), chan()
    n = 3000
    got = chan(4 * n)

    def recv():
        while True:
            i, (v, ok) = select(a.recv_, b.recv_)
            if not ok:
                return
            got.send(v)
    from goroutine import sync
    wg, rg = sync.WaitGroup(), sync.WaitGroup()
    for _ in range(3):
        rg.go(recv)
    for k in range(2):
        wg.go(lambda k=k: [a.send((k, i)) for i in range(n)])
        t = threading.Thread(target=lambda k=k: [b.send((k + 2, i))
                                                 for i in range(n)])
        t.start()
        wg.go(t.join)
    wg.wait()
    a.close()
    rg.wait()       # one receiver returns on a's close ...
    vals = sorted(got.recv() for _ in range(len(got)))
    assert vals == sorted((k, i) for k in range(4) for i in range(n))
    b.close()
