"""goroutine.time: API.md's time section, Go 1.23 timer semantics."""
import threading
import time as _t

import pytest

from goroutine import chan, default, go, runtime, select, time

from conftest import beyond_tsan_thread_limit


def elapsed(f):
    t0 = _t.monotonic()
    r = f()
    return _t.monotonic() - t0, r


def test_duration_constants_are_seconds():
    assert time.second == 1.0 and time.millisecond == 1e-3
    assert time.microsecond == 1e-6 and time.nanosecond == 1e-9
    assert time.minute == 60.0 and time.hour == 3600.0


def test_now_is_the_wall_clock():
    assert abs(time.now() - _t.time()) < 0.01


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


def test_timer_stop_after_fire_returns_false_and_drains_the_stale_value():
    t = time.Timer(0.01)
    _t.sleep(0.05)          # fired; the value sits in the channel
    assert t.stop() is False
    assert select(t.c.recv, default) == (1, None)


def test_timer_reset_of_a_fired_timer_fires_again():
    t = time.Timer(0.01)
    t.c.recv()
    assert t.reset(0.02) is False
    dt, v = elapsed(t.c.recv)
    assert isinstance(v, float) and dt >= 0.015


def test_timer_reset_of_an_active_timer_postpones_it():
    t = time.Timer(0.02)
    assert t.reset(0.2) is True
    _t.sleep(0.05)
    assert select(t.c.recv, default) == (1, None)
    t.stop()


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
    assert 0.005 < b - a < 0.1
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
    assert t.c is None


def test_after_func_stop_cancels_it():
    out = chan(1)
    t = time.after_func(0.05, lambda: out.send("ran"))
    assert t.stop() is True
    _t.sleep(0.1)
    assert select(out.recv, default) == (1, None)


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
    # `due` is read before the timer is made: read after, a preemption
    # between the two (a loaded machine) made a punctual timer "early".
    timers = []
    for d in (rng.uniform(0, 0.2) for _ in range(3000)):
        due = _t.time() + d
        timers.append([time.Timer(d), None, due])
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
    dt, _ = elapsed(time.after(0.05).recv)
    assert 0.049 <= dt < 1.0


def test_sleepers_wake_in_deadline_order():
    order = chan(100)
    ds = [0.09, 0.01, 0.07, 0.03, 0.05, 0.08, 0.02, 0.06, 0.04, 0.1]

    def sleeper(d):
        time.sleep(d)
        order.send(d)
    for d in ds:
        go(sleeper, d)
    assert [order.recv() for _ in ds] == sorted(ds)
