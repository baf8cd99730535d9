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


# ---- the C tree (src/context.c) ------------------------------------------

def test_a_child_made_after_the_parent_was_cancelled_is_done_at_once():
    p, cancel = context.with_cancel_cause(context.background())
    boom = ValueError("boom")
    cancel(boom)
    below = context.with_value(p, "k", "v")
    ran = chan(1)
    kids = [context.with_cancel(below)[0],
            context.with_cancel_cause(p)[0],
            context.with_timeout(below, 60)[0],
            context.with_deadline(p, time.now() + 60)[0],
            context.merge(context.background(), below)[0]]
    for c in kids:
        assert is_done(c) and c.err() is context.canceled, c
        assert context.cause(c) is boom
        assert c._children is None
    context.after_func(below, lambda: ran.send("ran"))
    assert ran.recv() == "ran"


def test_cancel_frees_the_deadline_timer_at_once_and_drops_the_context():
    import weakref
    before = runtime.stats()["timers"]
    parent, cancel_parent = context.with_cancel(context.background())
    ctx, cancel = context.with_timeout(context.background(), 60)
    child, _ = context.with_timeout(parent, 60)
    grandchild, _ = context.with_deadline(child, time.now() + 30)
    assert runtime.stats()["timers"] == before + 3
    cancel()
    assert runtime.stats()["timers"] == before + 2     # no waiting
    cancel_parent()                                    # two, from above
    assert runtime.stats()["timers"] == before
    # The timer held its context; once stopped, nothing does.
    refs = [weakref.ref(c) for c in (ctx, child, grandchild)]
    del ctx, cancel, child, grandchild, _
    gc.collect()
    assert [r() for r in refs] == [None] * 3


def test_a_fired_deadline_cancels_its_subtree_and_unlinks_it():
    parent, cancel_parent = context.with_cancel(context.background())
    ctx, _ = context.with_timeout(parent, 0.02)
    kid, _ = context.with_cancel(ctx)
    kid.done().recv()
    assert kid.err() is context.deadlineExceeded
    assert parent._children == [] and ctx._children is None
    cancel_parent()


def test_a_merged_context_is_unlinked_from_both_parents():
    a, ca = context.with_cancel(context.background())
    b, cb = context.with_cancel(context.background())
    m, cancel = context.merge(a, b)
    assert a._children == [m] and b._children == [m]
    ca()
    assert m.err() is context.canceled
    assert b._children == []        # a's cancel took it off b too
    m2, cancel2 = context.merge(b, context.with_value(b, "k", 1))
    assert b._children == [m2, m2]
    cancel2()
    assert b._children == []
    cb()


def test_an_unreachable_tree_that_was_never_cancelled_is_collected():
    import weakref
    p, _ = context.with_cancel(context.background())
    c, _ = context.with_timeout(p, 0)       # done at birth, no timer
    k, _ = context.with_cancel(p)
    refs = [weakref.ref(x) for x in (p, c, k)]
    del p, c, k, _
    gc.collect()
    assert [r() for r in refs] == [None] * 3


def test_concurrent_cancels_from_goroutines_and_threads_reach_every_node():
    # A tree built and cancelled at once by goroutines and threads: every
    # node below a cancelled one ends cancelled, with its done channel
    # closed, and no cancelled node stays on a live parent's list.
    for _round in range(3):
        root, cancel_root = context.with_cancel(context.background())
        nodes = chan(100000)
        nodes.send((root, cancel_root))
        mids = [context.with_cancel(root) for _ in range(8)]
        for m in mids:
            nodes.send(m)
        wg = sync.WaitGroup()
        lock = threading.Lock()

        def work(seed, in_thread):
            import random
            rng = random.Random(seed)
            for _ in range(200):
                parent = rng.choice(mids)[0]
                kind = rng.randrange(4)
                if kind == 0:
                    c = context.with_cancel(parent)
                elif kind == 1:
                    c = context.with_timeout(
                        context.with_value(parent, "k", seed), 60)
                elif kind == 2:
                    c = context.merge(parent, rng.choice(mids)[0])
                else:
                    m = rng.choice(mids)
                    m[1]()
                    continue
                c[0].done()     # some waited on, some not
                nodes.send(c)
                if rng.random() < 0.3:
                    c[1]()
            with lock:
                pass

        threads = [threading.Thread(target=work, args=(s, True))
                   for s in range(3)]
        for t in threads:
            t.start()
        for s in range(3, 6):
            wg.go(work, s, False)
        cancel_root()       # while they are running
        for t in threads:
            t.join()
        wg.wait()
        allc = [nodes.recv() for _ in range(len(nodes))]
        for c, _ in allc:
            assert c.err() is not None, c
            assert is_done(c)
            assert c._children is None
        for _, cancel in allc:
            cancel()
        assert runtime.stats()["timers"] < 100 or wait_timers()


def wait_timers():
    from conftest import wait_until
    return wait_until(lambda: runtime.stats()["timers"] < 100)
