"""goroutine.context: API.md's context section."""
import gc
import threading
import time as _t

import pytest

from goroutine import chan, context, default, go, runtime, select, sync, time

from conftest import beyond_tsan_thread_limit


def is_done(ctx):
    return select(ctx.done().recv, default)[0] == 0


def test_background_and_todo_are_never_done():
    for ctx in (context.background(), context.todo()):
        assert ctx.err() is None and ctx.value("k") is None
        assert ctx.deadline() is None
        assert not is_done(ctx)


def test_errors_have_gos_classes_and_messages():
    assert str(context.canceled) == "context canceled"
    assert str(context.deadlineExceeded) == "context deadline exceeded"
    assert isinstance(context.canceled, context.Canceled)
    assert isinstance(context.deadlineExceeded, TimeoutError)


def test_nil_parent_is_a_type_error():
    for make in (context.with_cancel, context.without_cancel,
                 lambda p: context.with_timeout(p, 1),
                 lambda p: context.with_value(p, "k", 1)):
        with pytest.raises(TypeError, match="cannot create context from nil parent"):
            make(None)


def test_cancel_closes_done_sets_err_and_is_idempotent():
    ctx, cancel = context.with_cancel(context.background())
    assert ctx.err() is None and not is_done(ctx)
    cancel()
    cancel()
    assert is_done(ctx)
    assert ctx.err() is context.canceled


def test_cancelling_a_parent_cancels_descendants_but_never_ancestors():
    root, cancel_root = context.with_cancel(context.background())
    mid, cancel_mid = context.with_cancel(root)
    leaf = context.with_value(mid, "k", "v")
    leaf2, _ = context.with_cancel(leaf)
    cancel_mid()
    assert is_done(mid) and is_done(leaf2) and not is_done(root)
    assert leaf2.err() is context.canceled
    cancel_root()


def test_child_of_a_cancelled_parent_is_born_cancelled():
    p, cancel = context.with_cancel(context.background())
    cancel()
    c, _ = context.with_cancel(p)
    assert c.err() is context.canceled


def test_a_deep_chain_cancels_without_recursion_limits():
    root, cancel = context.with_cancel(context.background())
    ctx = root
    for _ in range(5000):
        ctx, _ = context.with_cancel(ctx)
    cancel()
    assert ctx.err() is context.canceled


def test_values_are_found_up_the_tree():
    ctx = context.with_value(context.background(), "a", 1)
    ctx, _ = context.with_cancel(ctx)
    ctx = context.with_value(ctx, "b", 2)
    assert (ctx.value("a"), ctx.value("b"), ctx.value("c")) == (1, 2, None)


def test_timeout_expires_with_deadline_exceeded():
    ctx, cancel = context.with_timeout(context.background(), 0.02)
    assert ctx.deadline() is not None
    ctx.done().recv()
    assert ctx.err() is context.deadlineExceeded
    cancel()


def test_past_deadline_is_done_at_once():
    ctx, _ = context.with_deadline(context.background(), time.now() - 1)
    assert ctx.err() is context.deadlineExceeded


def test_child_deadline_is_never_later_than_parents():
    p, _ = context.with_timeout(context.background(), 0.05)
    c, _ = context.with_timeout(p, 10)
    assert c.deadline() == p.deadline()
    c.done().recv()
    assert c.err() is context.deadlineExceeded


def test_cancel_before_deadline_reports_canceled_and_releases_the_timer():
    before = runtime.stats()["timers"]
    ctx, cancel = context.with_timeout(context.background(), 60)
    assert runtime.stats()["timers"] == before + 1
    cancel()
    assert ctx.err() is context.canceled
    _t.sleep(0.05)
    assert runtime.stats()["timers"] == before


def test_cancel_cause_is_reported_by_cause():
    ctx, cancel = context.with_cancel_cause(context.background())
    child, _ = context.with_cancel(ctx)
    assert context.cause(ctx) is None
    boom = ValueError("boom")
    cancel(boom)
    assert ctx.err() is context.canceled
    assert context.cause(ctx) is boom and context.cause(child) is boom
    plain, c2 = context.with_cancel(context.background())
    c2()
    assert context.cause(plain) is context.canceled


def test_after_func_runs_when_done_and_stop_prevents_it():
    ctx, cancel = context.with_cancel(context.background())
    out = chan(2)
    context.after_func(ctx, lambda: out.send("ran"))
    stop = context.after_func(ctx, lambda: out.send("stopped one ran"))
    assert stop() is True and stop() is False
    cancel()
    assert out.recv() == "ran"
    _t.sleep(0.02)
    assert len(out) == 0


def test_without_cancel_keeps_values_and_never_cancels():
    p, cancel = context.with_cancel(context.with_value(
        context.background(), "k", "v"))
    w = context.without_cancel(p)
    cancel()
    assert w.err() is None and not is_done(w) and w.value("k") == "v"


def test_merge_is_done_when_either_is():
    a, ca = context.with_cancel(context.with_value(context.background(), "x", 1))
    b, cb = context.with_cancel(context.with_value(context.background(), "y", 2))
    m, cancel = context.merge(a, b)
    assert (m.value("x"), m.value("y")) == (1, 2)
    cb()
    assert is_done(m) and m.err() is context.canceled and not is_done(a)
    ca()
    cancel()


@beyond_tsan_thread_limit
def test_cancelling_10000_goroutines_selecting_on_done():
    ctx, cancel = context.with_cancel(context.background())
    n = 10000
    out = chan(n)
    other = chan()
    for _ in range(n):
        go(lambda: out.send(select(other.recv, ctx.done().recv)[0]))
    _t.sleep(0.1)
    t0 = _t.monotonic()
    cancel()
    assert [out.recv() for _ in range(n)] == [1] * n
    assert _t.monotonic() - t0 < 5


def test_short_lived_children_do_not_grow_a_long_lived_parent():
    parent, cancel_parent = context.with_cancel(context.background())
    for _ in range(20000):
        c, cancel = context.with_timeout(parent, 60)
        cancel()
    assert len(parent._children) == 0
    # The timer thread processes the stops asynchronously: they settle.
    from conftest import wait_until
    assert wait_until(lambda: runtime.stats()["timers"] < 100)
    cancel_parent()


def test_a_foreign_context_type_is_watched():
    class Mine(context.Context):
        def __init__(self):
            self.c = chan()
            self.e = None

        def done(self):
            return self.c

        def err(self):
            return self.e

        def value(self, key):
            return "mine" if key == "who" else None

        def deadline(self):
            return None
    p = Mine()
    ctx, cancel = context.with_cancel(p)
    assert ctx.value("who") == "mine"
    p.e = context.canceled
    p.c.close()
    ctx.done().recv()
    assert ctx.err() is context.canceled


def test_thousands_of_deadlines_expiring_together_all_report_it():
    # The loop thread delivers every timer due at once under one GIL
    # hold; none may be skipped.
    bg = context.background()
    ctxs = [context.with_timeout(bg, 0.05) for _ in range(3000)]
    wg = sync.WaitGroup()
    for ctx, _ in ctxs:
        wg.go(ctx.done().recv)
    wg.wait()
    assert all(ctx.err() is context.deadlineExceeded for ctx, _ in ctxs)
    for _, cancel in ctxs:
        cancel()
    assert all(ctx.err() is context.deadlineExceeded for ctx, _ in ctxs)
