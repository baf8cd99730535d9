"""goroutine.time: API.md's time section, Go 1.23 timer semantics."""
import threading
import time as _t

import pytest

from goroutine import chan, default, go, runtime, select, time

from conftest import beyond_tsan_thread_limit, run_py


def elapsed(f):
    t0 = _t.monotonic()
    r = f()
    return _t.monotonic() - t0, r


def test_duration_constants_are_seconds():
    assert time.second == 1.0 and time.millisecond == 1e-3
    assert time.microsecond == 1e-6 and time.nanosecond == 1e-9
    assert time.minute == 60.0 and time.hour == 3600.0


def test_now_is_the_wall_clock():
    # Bracketed by two reads of Python's wall clock (CLOCK_REALTIME both):
    # a fixed 10 ms tolerance between two reads fails when the thread is
    # descheduled between them on a loaded machine.  The 1 us is for the
    # two float conversions.
    before = _t.time()
    now = time.now()
    after = _t.time()
    assert before - 1e-6 <= now <= after + 1e-6


def test_sleep_on_a_thread_blocks_for_the_duration():
    dt, _ = elapsed(lambda: time.sleep(0.05))
    assert 0.05 <= dt < 1.0


def test_sleep_zero_or_negative_returns_at_once():
    dt, _ = elapsed(lambda: (time.sleep(0), time.sleep(-1)))
    assert dt < 0.05


def test_sleep_in_a_goroutine_parks_only_the_goroutine():
    runtime.gomaxprocs()
    prev = runtime.gomaxprocs(1)     # one P: sleepers must not hold it
    try:
        out = chan(1)
        go(lambda: (time.sleep(0.3), out.send("slept")))
        pong = chan(1)
        go(lambda: pong.send("other ran"))
        t0 = _t.monotonic()
        assert pong.recv() == "other ran"
        assert _t.monotonic() - t0 < 0.2
        assert out.recv() == "slept"
    finally:
        runtime.gomaxprocs(prev)


@beyond_tsan_thread_limit
def test_ten_thousand_sleeping_goroutines_cost_no_threads():
    n = 10000
    done = chan(n)
    before = threading.active_count()
    for _ in range(n):
        go(lambda: (time.sleep(0.05), done.send(1)))
    ms = runtime.stats()["ms"]
    for _ in range(n):
        done.recv()
    assert threading.active_count() == before
    assert ms < 50


def test_after_delivers_the_time_once():
    t0 = time.now()
    c = time.after(0.02)
    v = c.recv()
    assert isinstance(v, float) and v >= t0 + 0.015
    assert select(c.recv, default) == (1, None)


def test_after_works_without_keeping_the_timer():
    c = time.after(0.01)
    import gc
    gc.collect()
    assert isinstance(c.recv(), float)


def test_timer_stop_before_fire_returns_true_and_nothing_is_sent():
    t = time.Timer(0.05)
    assert t.stop() is True
    _t.sleep(0.1)
    assert select(t.c.recv, default) == (1, None)
    assert t.stop() is False


def test_timer_stop_after_an_unreceived_fire_returns_true_go_1_23():
    # Go 1.23: timer channels are synchronous; a value nobody received
    # was not delivered, so stop() stops it and no stale value remains.
    # The classic idiom `if not t.stop(): t.c.recv()` must not block.
    t = time.Timer(0.01)
    _t.sleep(0.05)
    assert t.stop() is True
    assert select(t.c.recv, default) == (1, None)
    assert t.stop() is False


def test_timer_stop_after_its_value_was_received_returns_false():
    t = time.Timer(0.01)
    assert isinstance(t.c.recv(), float)
    assert t.stop() is False
    assert select(t.c.recv, default) == (1, None)


def test_timer_channels_are_unbuffered_len_and_cap_are_zero():
    t = time.Timer(0.01)
    tk = time.Ticker(0.01)
    c = time.after(0.01)
    for ch in (t.c, tk.c, c, t.c.recv_only()):
        assert len(ch) == 0 and ch.cap() == 0
    _t.sleep(0.05)          # all fired; nobody received
    for ch in (t.c, tk.c, c, t.c.recv_only()):
        assert len(ch) == 0 and ch.cap() == 0
        assert "len=0 cap=0" in repr(ch)
    assert isinstance(c.recv(), float)   # the value is still there
    assert t.stop() is True
    tk.stop()


def test_timer_sends_the_time_it_was_due_even_when_delivered_late():
    # Go sends the time the timer was due.  Hold the GIL past the
    # deadline so the timer thread (which needs it to send) is late.
    import sys
    interval = sys.getswitchinterval()
    t0 = time.now()
    t = time.Timer(0.02)
    sys.setswitchinterval(5.0)
    try:
        while time.now() < t0 + 0.3:
            pass
    finally:
        sys.setswitchinterval(interval)
    v = t.c.recv()
    assert t0 + 0.02 - 0.002 <= v < t0 + 0.15


def test_timer_reset_after_an_unreceived_fire_returns_true_and_drops_it():
    t = time.Timer(0.01)
    _t.sleep(0.05)
    t0 = time.now()
    assert t.reset(0.05) is True
    assert select(t.c.recv, default) == (1, None)
    assert t.c.recv() >= t0 + 0.05 - 0.002      # the new setting's value
    assert t.stop() is False


def test_timer_reset_of_a_fired_timer_fires_again():
    t = time.Timer(0.01)
    t.c.recv()
    assert t.reset(0.02) is False
    dt, v = elapsed(t.c.recv)
    assert isinstance(v, float) and dt >= 0.015


def test_timer_reset_of_an_active_timer_postpones_it():
    # Well past the old deadline, long before the new one: with reset(0.2)
    # a loaded machine's sleep(0.05) once overshot the new deadline too.
    t = time.Timer(0.02)
    assert t.reset(30) is True
    _t.sleep(0.1)
    assert select(t.c.recv, default) == (1, None)
    assert t.stop() is True


def test_stop_racing_the_fire_never_leaves_a_stale_value():
    for _ in range(200):
        t = time.Timer(0.001)
        _t.sleep(0.001)
        t.stop()
        assert select(t.c.recv, default) == (1, None)


def test_ticker_ticks_and_drops_ticks_for_a_slow_receiver():
    tk = time.Ticker(0.01)
    a = tk.c.recv()
    b = tk.c.recv()
    # Ticks keep to their grid (as Go's): a tick delivered late under load
    # is followed by one on time, so the gap between the two values can be
    # well under the period (4.6 ms seen in a loaded 3.13 run).  Only the
    # order and a hang-catching bound are facts.
    assert 0 < b - a < 5
    _t.sleep(0.1)           # ten ticks elapse; at most one is queued
    assert len(tk.c) <= 1
    tk.stop()
    _t.sleep(0.03)
    assert select(tk.c.recv, default) == (1, None)


def test_ticker_reset_changes_the_period():
    tk = time.Ticker(1.0)
    tk.reset(0.01)
    dt, _ = elapsed(tk.c.recv)
    assert dt < 0.5
    tk.stop()


def test_ticker_reset_drops_a_tick_nobody_received():
    tk = time.Ticker(0.01)
    _t.sleep(0.05)          # a tick waits in the channel
    assert tk.reset(30) is None
    assert select(tk.c.recv, default) == (1, None)
    tk.stop()


def test_ticker_reset_restarts_a_stopped_ticker():
    tk = time.Ticker(0.01)
    tk.stop()
    tk.reset(0.01)
    assert isinstance(tk.c.recv(), float)
    tk.stop()


def test_non_positive_ticker_is_gos_error():
    with pytest.raises(ValueError, match="non-positive interval for NewTicker"):
        time.Ticker(0)
    with pytest.raises(ValueError):
        time.Ticker(-1)


def test_tick_of_non_positive_duration_is_nilchan():
    from goroutine import nilchan
    assert time.tick(0) is nilchan


def test_after_func_runs_f_in_its_own_goroutine():
    out = chan(1)
    t = time.after_func(0.01, lambda: out.send(runtime.goid()))
    assert out.recv() > 0
    assert t.stop() is False


def test_after_func_timer_channel_is_nilchan_and_never_fires():
    from goroutine import nilchan
    out = chan(1)
    t = time.after_func(0.01, lambda: out.send("ran"))
    assert t.c is nilchan
    i, _ = select(t.c.recv, time.after(0.1).recv)
    assert i == 1
    assert out.recv() == "ran"


def test_after_func_stop_cancels_it():
    out = chan(1)
    t = time.after_func(0.05, lambda: out.send("ran"))
    assert t.stop() is True
    _t.sleep(0.1)
    assert select(out.recv, default) == (1, None)


def test_after_func_runs_even_if_its_timer_is_dropped():
    import gc
    out = chan(1)
    time.after_func(0.05, lambda: out.send("ran"))
    gc.collect()
    assert out.recv() == "ran"


def test_select_with_timeout_pattern():
    c = chan()
    i, _ = select(c.recv, time.after(0.02).recv)
    assert i == 1


def test_pending_timer_prevents_a_false_deadlock():
    from conftest import run_py
    r = run_py("""
        from goroutine import chan, time
        c = chan()
        time.after_func(0.3, lambda: c.send("late"))
        print(c.recv())
    """)
    assert r.stdout.strip() == "late", r.stderr



def test_thousands_of_timers_stopped_at_random_fire_exactly_the_rest():
    # Random deadlines and random stops exercise the timer heap's
    # removal from every position; none is lost, none fires when stopped.
    import random
    rng = random.Random(7)
    # The deadline is taken before the timer is made: the value sent is
    # the time the timer was due (Go), which is after the timer was made.
    timers = [[None, None, _t.time() + d, d]
              for d in (rng.uniform(0, 0.2) for _ in range(3000))]
    for x in timers:
        x[0] = time.Timer(x.pop())
    for i in rng.sample(range(len(timers)), 1500):
        timers[i][1] = timers[i][0].stop()
    time.sleep(0.35)
    fired = 0
    for t, stopped, due in timers:
        idx, v = select(t.c.recv, default)
        if stopped is not None:
            # Stopped in time, or fired and drained by stop (Go 1.23).
            assert idx == 1, "a stopped timer left a value"
        else:
            assert idx == 0, "a timer that was not stopped never fired"
            assert v >= due - 0.002, "a timer fired early"
            fired += 1
    assert fired >= 1500


def test_a_nearer_timer_wakes_a_loop_armed_for_a_far_one():
    far = time.Timer(30)
    dt, _ = elapsed(lambda: time.sleep(0.05))
    assert 0.05 <= dt < 1.0
    far.stop()
    # The loop is still armed for the stopped far timer: a nearer one
    # added now must make it re-arm.
    dt, _ = elapsed(lambda: time.after(0.05).recv())  # clock starts first
    assert 0.05 <= dt < 1.0


def test_sleepers_wake_in_deadline_order():
    # Ten sleepers on one P (pinned), deadlines 10 ms apart after a common
    # start t0, armed in shuffled order.
    # The timer heap readies them in deadline order onto the global run
    # queue (the loop thread has no P: no runnext), and one P runs them in
    # that order: each sends its key without parking, so the sends come in
    # deadline order, exactly.
    #
    # Load can break only the setup, and a round whose setup broke is not
    # judged but run again (the start moves later each round):
    #   - every sleeper must be armed before the first deadline;
    #   - a deadline is relative (sleep(d)), so a sleeper that lost the CPU
    #     between reading the clock and arming sleeps until later than
    #     t0 + k * spacing.  On one P the next goroutine starts only after
    #     the previous one armed, so its start bounds that delay; the
    #     deadlines, so widened, must still be in key order;
    #   - the P must have stayed with one M (sysmon hands it to another M
    #     when a goroutine holds it over 5 ms, and two Ms can then race to
    #     their sends): runtime.stats()["handoffs"] unchanged.
    # So the verdict never depends on a quiet machine; a heap that fires
    # out of order fails the first judged round.
    spacing = 0.01
    r = run_py(f"""
        import time as _t
        from goroutine import chan, go, runtime, time
        ds = [9, 1, 7, 3, 5, 8, 2, 6, 4, 10]
        spacing = {spacing}
        for rnd in range(10):
            order, armed, resumed = chan(len(ds)), {{}}, {{}}
            handoffs = runtime.stats()["handoffs"]
            t0 = _t.monotonic() + 0.1 * (rnd + 1)
            def sleeper(k):
                now = _t.monotonic()
                armed[k] = now
                time.sleep(t0 + k * spacing - now)
                resumed[k] = _t.monotonic()
                order.send(k)
            for k in ds:
                go(sleeper, k)
            marker = chan(1)
            go(lambda: marker.send(_t.monotonic()))
            last = marker.recv()    # after every sleeper armed, unless
                                    # the P changed M (checked below)
            got = [order.recv() for _ in ds]
            early = [k for k in ds if resumed[k] < t0 + k * spacing]
            assert not early, ("woke early", early, resumed, t0)
            starts = [armed[k] for k in ds] + [last]
            if max(starts) != last:
                continue                    # the marker ran before one
                                            # armed (a hand-off, under
                                            # TSan at load 17): not judged
            if starts[-1] >= t0 + spacing:
                continue                    # armed late: not judged
            if runtime.stats()["handoffs"] != handoffs:
                continue                    # the P changed M: not judged
            latest = {{k: t0 + k * spacing + starts[i + 1] - starts[i]
                      for i, k in enumerate(ds)}}
            if any(latest[k] >= t0 + (k + 1) * spacing
                   for k in ds if k != max(ds)):
                continue                    # an arming was delayed
            assert got == sorted(ds), ("out of order", got, resumed, t0)
            print("JUDGED", rnd)
            break
        else:
            print("NEVER JUDGED")
    """, env={"GOMAXPROCS": "1"}, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    if r.stdout.startswith("NEVER JUDGED"):
        pytest.skip("10 rounds, each disturbed by load: nothing to judge")
    assert r.stdout.startswith("JUDGED"), (r.stdout, r.stderr)


def _live(types):
    import gc
    return sum(type(o) in types for o in gc.get_objects())


def test_dropped_tickers_and_timers_are_collected_go_1_23():
    # Go 1.23 collects a Timer or Ticker nothing references, stopped or
    # not: the heap must not keep it, its channel or its record alive.
    import gc
    import tracemalloc
    kinds = (time.Timer, time.Ticker)
    gc.collect()
    base_timers = runtime.stats()["timers"]
    base_live = _live(kinds)
    tracemalloc.start()
    gc.disable()            # each Timer and its channel form a cycle
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3000):
            time.Ticker(0.01)
            time.Timer(60)
            time.after(60)
            time.Ticker(0.01).reset(30)
        assert runtime.stats()["timers"] >= base_timers + 12000
        gc.enable()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        gc.enable()
        tracemalloc.stop()
    assert runtime.stats()["timers"] == base_timers
    assert _live(kinds) == base_live
    # 12,000 timers, each with a channel, are megabytes when kept.
    assert grown < 256 * 1024, grown


def test_a_timer_only_its_blocked_receivers_reference_still_fires():
    # Collection must never take a timer a goroutine or thread is
    # blocked on: the blocked receive holds the channel, which holds it.
    import gc
    done = threading.Event()

    def collector():
        while not done.is_set():
            gc.collect()
            _t.sleep(0.001)
    th = threading.Thread(target=collector)
    th.start()
    try:
        hang = chan()        # closed by a plain thread: a hang bound that
        guard = threading.Timer(10, hang.close)  # needs no runtime timer
        guard.start()
        out = chan(2)
        go(lambda: out.send(time.after(0.1).recv()))

        def ticks():
            for _ in zip(range(3), time.tick(0.02)):
                pass
            out.send("ticked")
        go(ticks)
        i, _ = select(time.after(0.1).recv, hang.recv)   # a thread
        assert i == 0, "a timer a thread was blocked on was lost"
        results = [select(out.recv, hang.recv) for _ in range(2)]
        assert sorted(i for i, _ in results) == [0, 0], "a timer was lost"
    finally:
        done.set()
        th.join()
        guard.cancel()
    gc.collect()
