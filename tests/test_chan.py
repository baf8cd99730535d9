"""Channels: every rule of API.md's Channels section, plus Go's test/chan
programs re-expressed."""
import threading
import time

import pytest

from goroutine import Panic, chan, go, nilchan, select, default

from conftest import beyond_tsan_thread_limit, run_py


def test_unbuffered_send_blocks_until_received_and_hands_the_object_over():
    ch = chan()
    obj = object()
    done = chan()
    go(lambda: (ch.send(obj), done.send(True)))
    assert ch.recv() is obj
    assert done.recv() is True


def test_buffered_channel_reports_len_and_cap_and_is_fifo():
    ch = chan(3)
    assert (len(ch), ch.cap()) == (0, 3)
    for i in range(3):
        ch.send(i)
    assert len(ch) == 3
    assert [ch.recv() for _ in range(3)] == [0, 1, 2]
    assert len(ch) == 0


def test_unbuffered_and_nil_channels_have_zero_len_and_cap():
    assert (len(chan()), chan().cap()) == (0, 0)
    assert (len(nilchan), nilchan.cap()) == (0, 0)


def test_negative_size_is_a_makechan_error():
    with pytest.raises(ValueError, match="makechan: size out of range"):
        chan(-1)


def test_chan_accepts_a_type_parameter_for_typing():
    ch = chan[int](4)
    assert ch.cap() == 4


def test_recv_on_closed_drained_channel_returns_none_at_once():
    ch = chan(2)
    ch.send(1)
    ch.close()
    assert ch.recv_() == (1, True)
    assert ch.recv() is None
    assert ch.recv_() == (None, False)


def test_send_on_closed_channel_panics_with_gos_message():
    ch = chan(1)
    ch.close()
    with pytest.raises(Panic, match="^send on closed channel$"):
        ch.send(1)


def test_closing_twice_panics():
    ch = chan()
    ch.close()
    with pytest.raises(Panic) as e:
        ch.close()
    assert str(e.value) == "close of closed channel"


def test_closing_nilchan_panics():
    with pytest.raises(Panic) as e:
        nilchan.close()
    assert str(e.value) == "close of nil channel"


def test_close_wakes_every_blocked_receiver_goroutines_and_threads():
    ch = chan()
    results = chan(10)
    for _ in range(3):
        go(lambda: results.send(ch.recv_()))
    got = []
    ts = [threading.Thread(target=lambda: got.append(ch.recv_()))
          for _ in range(2)]
    for t in ts:
        t.start()
    time.sleep(0.05)
    ch.close()
    for t in ts:
        t.join(5)
    assert got == [(None, False)] * 2
    assert [results.recv() for _ in range(3)] == [(None, False)] * 3


def test_close_makes_every_blocked_sender_panic():
    ch = chan()
    results = chan(10)

    def sender():
        try:
            ch.send(1)
            results.send("sent")
        except Panic as e:
            results.send(str(e))
    for _ in range(3):
        go(sender)
    errors = []

    def tsender():
        try:
            ch.send(2)
        except Panic as e:
            errors.append(str(e))
    t = threading.Thread(target=tsender)
    t.start()
    time.sleep(0.05)
    ch.close()
    t.join(5)
    assert errors == ["send on closed channel"]
    assert [results.recv() for _ in range(3)] == ["send on closed channel"] * 3


def test_close_never_blocks_and_keeps_buffered_values():
    ch = chan(2)
    ch.send("a")
    ch.close()
    assert list(ch) == ["a"]


def test_iteration_receives_until_closed_and_drained():
    ch = chan()

    def produce():
        for i in range(100):
            ch.send(i)
        ch.close()
    go(produce)
    assert list(ch) == list(range(100))


def test_blocked_senders_are_served_fifo():
    ch = chan()
    order = chan(10)
    # Start senders one at a time so their queue order is known.
    for i in range(5):
        go(lambda i=i: (order.send(i), ch.send(i)))
        order.recv()
        time.sleep(0.01)
    assert [ch.recv() for _ in range(5)] == list(range(5))


def test_buffered_channel_refills_from_a_blocked_sender_in_order():
    ch = chan(2)
    ch.send(0)
    ch.send(1)
    go(ch.send, 2)
    time.sleep(0.02)
    assert [ch.recv() for _ in range(3)] == [0, 1, 2]


def test_directional_views_restrict_operations():
    ch = chan(1)
    tx, rx = ch.send_only(), ch.recv_only()
    tx.send(5)
    assert rx.recv() == 5
    with pytest.raises(TypeError):
        tx.recv()
    with pytest.raises(TypeError):
        rx.send(1)
    with pytest.raises(TypeError):
        rx.close()
    tx.close()
    assert rx.recv_() == (None, False)


def test_values_are_passed_by_reference_never_copied():
    data = [1, 2]
    ch = chan(1)
    ch.send(data)
    assert ch.recv() is data


def test_select_never_chooses_a_nilchan_case():
    # With default: default; with a ready case too: that case, every time.
    assert select(nilchan.recv, default) == (1, None)
    assert select((nilchan.send, 1), default) == (1, None)
    ready = chan(1)
    for _ in range(50):
        ready.send(7)
        assert select(nilchan.recv, (nilchan.send, 1), ready.recv) == (2, 7)


def test_goroutines_blocked_on_nilchan_stay_parked_until_the_program_ends():
    # Go: a goroutine blocked on a nil channel never wakes; when main
    # returns the program ends normally, the goroutine abandoned.
    r = run_py("""
        import time as _t
        from goroutine import go, nilchan, runtime, select
        woke = []
        def recv():
            nilchan.recv(); woke.append("recv")
        def recv_():
            nilchan.recv_(); woke.append("recv_")
        def send():
            nilchan.send(1); woke.append("send")
        def sel():
            select(nilchan.recv, (nilchan.send, 1)); woke.append("select")
        for f in (recv, recv_, send, sel):
            go(f)
        deadline = _t.monotonic() + 30
        while runtime.stats()["parked"] < 4:
            assert _t.monotonic() < deadline, runtime.stack()
            _t.sleep(0.001)
        _t.sleep(0.2)
        st = runtime.stack()
        print(runtime.stats()["parked"], woke,
              st.count("[chan receive (nil chan)]:"),
              st.count("[chan send (nil chan)]:"), st.count("[select]:"))
    """)
    assert r.returncode == 0 and r.stderr == "", (r.returncode, r.stderr)
    assert r.stdout.split() == ["4", "[]", "2", "1", "1"], r.stdout


@pytest.mark.parametrize("op", ["nilchan.recv()", "nilchan.recv_()",
                                "nilchan.send(1)",
                                "select(nilchan.recv, (nilchan.send, 1))"])
def test_main_blocked_on_nilchan_is_a_deadlock(op):
    # Go: "fatal error: all goroutines are asleep - deadlock!" when main
    # blocks on a nil channel and every goroutine does too.
    r = run_py(f"""
        import goroutine
        from goroutine import go, nilchan, select
        go(nilchan.recv)
        try:
            {op}
        except goroutine.Deadlock as e:
            print("Deadlock:", e)
    """)
    assert r.stdout.strip() == \
        "Deadlock: all goroutines are asleep - deadlock!", (r.stdout, r.stderr)


def test_mixed_goroutine_and_thread_producers_and_consumers_lose_nothing():
    ch = chan(16)
    sums = chan(10)
    produced = chan(10)
    n_prod, per = 6, 500

    def produce(base):
        for i in range(per):
            ch.send(base + i)
        produced.send(1)

    def consume():
        s = 0
        for v in ch:
            s += v
        sums.send(s)
    for p in range(3):
        go(produce, p * per)
    threads = [threading.Thread(target=produce, args=(p * per,))
               for p in range(3, n_prod)]
    threads += [threading.Thread(target=consume) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(3):
        go(consume)
    for _ in range(n_prod):
        produced.recv()
    ch.close()
    for t in threads:
        t.join(10)
    total = sum(sums.recv() for _ in range(5))
    assert total == sum(range(n_prod * per))


# ---- Go's test/chan programs ------------------------------------------

def test_sieve_finds_the_first_primes():
    def generate(ch):
        i = 2
        while True:
            try:
                ch.send(i)
            except Panic:
                return
            i += 1

    def filter_(inp, out, prime):
        for i in inp:
            if i % prime != 0:
                try:
                    out.send(i)
                except Panic:
                    break

    chans = []
    ch = chan()
    chans.append(ch)
    go(generate, ch)
    primes = []
    for _ in range(100):
        prime = ch.recv()
        primes.append(prime)
        ch1 = chan()
        chans.append(ch1)
        go(filter_, ch, ch1, prime)
        ch = ch1
    assert primes[:10] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert primes[-1] == 541
    # Tear the pipeline down: closing each channel makes its sender panic
    # out of the loop (generate) or ends the filter's range.
    for c in chans:
        c.close()


@beyond_tsan_thread_limit
def test_daisy_chain_of_10000_goroutines():
    n = 10000
    leftmost = chan()
    right = leftmost
    left = leftmost
    for _ in range(n):
        right = chan()
        go(lambda l, r: l.send(1 + r.recv()), left, right)
        left = right
    go(right.send, 1)
    assert leftmost.recv() == n + 1


def test_doubleselect_delivers_every_value_exactly_once():
    # Go's test/chan/doubleselect.go: a sender selects over 4 channels,
    # several receivers per channel; nothing is lost or duplicated.
    n = 2000
    c1, c2, c3, c4 = chan(), chan(), chan(), chan()
    cmux = chan()

    def sender():
        for i in range(n):
            select((c1.send, i), (c2.send, i), (c3.send, i), (c4.send, i))
        for c in (c1, c2, c3, c4):
            c.close()

    def mux(c):
        for v in c:
            cmux.send(v)
        cmux.send(None)

    go(sender)
    for c in (c1, c2, c3, c4):
        go(mux, c)
        go(mux, c)
    seen = set()
    ends = 0
    while ends < 8:
        v = cmux.recv()
        if v is None:
            ends += 1
            continue
        assert v not in seen
        seen.add(v)
    assert seen == set(range(n))


def test_nonblocking_ops_with_default_never_block():
    # Go's test/chan/nonblock.go, condensed.
    for size in (0, 1, 8):
        c = chan(size)
        assert select(c.recv, default)[0] == 1
        for i in range(size):
            assert select((c.send, i), default)[0] == 0
        assert select((c.send, "x"), default)[0] == 1
        for i in range(size):
            assert select(c.recv, default) == (0, i)


def test_fifo_across_many_goroutines_each_sending_in_order():
    # Go's test/chan/fifo.go: per-sender order is preserved.
    c = chan(10)
    n, m = 10, 200

    def send(k):
        for i in range(m):
            c.send((k, i))
    for k in range(n):
        go(send, k)
    last = [-1] * n
    for _ in range(n * m):
        k, i = c.recv()
        assert i == last[k] + 1
        last[k] = i
