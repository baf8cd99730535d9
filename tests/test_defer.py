"""@func, defer, panic, recover: Go's rules, pygolang's API.

Tests goroutine/_defer.py.
"""
import gc
import inspect
import subprocess
import sys
import textwrap
import threading
import traceback
import weakref

import pytest

import goroutine
from goroutine import Panic, defer, func, panic, recover
from goroutine._defer import Goexit


def frame_names(exc):
    return [fs.name for fs in traceback.extract_tb(exc.__traceback__)]


# ---- Panic ------------------------------------------------------------------

def test_panic_raises_Panic_whose_arg_is_the_value_itself():
    value = object()
    with pytest.raises(Panic) as info:
        panic(value)
    assert info.value.arg is value
    assert info.value.args == (value,)


def test_Panic_str_is_str_of_arg_and_arg_is_args0():
    assert str(Panic("x")) == "x"
    assert str(Panic(42)) == "42"
    assert Panic(42).arg == 42
    assert Panic().arg is None


def test_runtime_panic_arg_is_go_message():
    # Runtime panics are raised from C with Go's message only.
    exc = Panic("send on closed channel")
    assert exc.arg == "send on closed channel" == str(exc)


def test_names_are_exported_from_the_package():
    for name in ("func", "defer", "panic", "recover"):
        assert name in goroutine.__all__
    assert goroutine.defer is defer and goroutine.recover is recover


# ---- defer ------------------------------------------------------------------

def test_deferred_calls_run_lifo_when_the_function_returns():
    v = []

    @func
    def f():
        defer(v.append, 1)
        defer(v.append, 2)
        defer(v.append, 3)
        v.append("body")
        return "result"

    assert f() == "result"
    assert v == ["body", 3, 2, 1]


def test_deferred_calls_get_arguments_evaluated_at_defer_time():
    # seed 6 (2): defer fmt.Println(i) prints the i of the defer statement.
    v = []

    @func
    def f():
        i = 0
        defer(v.append, i)
        i += 1
        defer(lambda x, *, label: v.append((label, x)), i, label="kw")
        i += 1

    f()
    assert v == [("kw", 1), 0]


def test_defer_in_a_loop_runs_in_reverse_order(capsys):
    # seed 6 (1): for i := 0; i < 4; i++ { defer fmt.Print(i, "\t") }
    @func
    def defer_test():
        for i in range(4):
            defer(print, i, end="\t")

    defer_test()
    assert capsys.readouterr().out == "3\t2\t1\t0\t"


def test_return_value_is_computed_before_the_deferred_calls_run():
    # seed 6 (3): Go's deferred closure can change a named result (prints 2).
    # Python has no named results: the returned object is fixed before the
    # deferred calls run, which may still mutate it.
    @func
    def rebinds_local():
        i = 1

        def incr():
            nonlocal i
            i += 1
        defer(incr)
        return i

    @func
    def mutates_result():
        res = {"i": 0}
        defer(lambda: res.update(i=res["i"] + 1))
        res["i"] = 1
        return res

    assert rebinds_local() == 1
    assert mutates_result() == {"i": 2}


def test_deferred_calls_run_when_the_function_raises():
    v = []

    @func
    def f():
        defer(v.append, 1)
        defer(v.append, 2)
        1 / 0

    with pytest.raises(ZeroDivisionError):
        f()
    assert v == [2, 1]


def test_only_defers_registered_before_the_panic_run(capsys):
    # seed 6 (4): bbbbbb, cccccc, then the deferred aaaaaa, then the panic.
    @func
    def main():
        defer(lambda: print("aaaaaa"))
        print("bbbbbb")
        print("cccccc")
        panic("hahahaha")
        print("ddddd")
        defer(lambda: print("eeeeeeee"))

    with pytest.raises(Panic, match="^hahahaha$"):
        main()
    assert capsys.readouterr().out == "bbbbbb\ncccccc\naaaaaa\n"


def test_unrecovered_panic_ends_the_program_showing_its_value_and_raise_site(
        tmp_path):
    # seed 6 (4) as a whole program.
    prog = tmp_path / "panic_demo.py"
    prog.write_text(textwrap.dedent("""\
        from goroutine import func, defer, panic

        @func
        def main():
            defer(lambda: print("aaaaaa"))
            print("bbbbbb")
            print("cccccc")
            panic("hahahaha")

        main()
        """))
    r = subprocess.run([sys.executable, str(prog)], capture_output=True,
                       text=True, timeout=60)
    assert r.stdout == "bbbbbb\ncccccc\naaaaaa\n"
    assert r.returncode == 1
    assert r.stderr.rstrip().endswith("goroutine.Panic: hahahaha")
    assert 'panic("hahahaha")' in r.stderr
    assert "line 8, in main" in r.stderr


def test_defers_belong_to_their_own_call_in_recursion():
    v = []

    @func
    def f(n):
        defer(v.append, ("exit", n))
        if n:
            f(n - 1)
        v.append(("body", n))

    f(2)
    assert v == [("body", 0), ("exit", 0), ("body", 1), ("exit", 1),
                 ("body", 2), ("exit", 2)]


def test_nested_func_calls_keep_their_own_defers():
    v = []

    @func
    def inner():
        defer(v.append, "inner")

    @func
    def outer():
        defer(v.append, "outer")
        inner()
        v.append("after inner")

    outer()
    assert v == ["inner", "after inner", "outer"]


def test_defer_without_func_panics_with_pygolang_message():
    def nofunc():
        defer(print, "never")

    with pytest.raises(Panic) as info:
        nofunc()
    assert info.value.args == ("function nofunc uses defer, but not @func",)


def test_defer_at_module_level_panics():
    with pytest.raises(Panic, match="uses defer, but not @func"):
        exec("from goroutine import defer\ndefer(print)", {})


def test_defer_in_a_plain_helper_of_a_func_function_panics():
    # It must not attach silently to the caller's frame.
    v = []

    def helper():
        defer(v.append, "helper")

    @func
    def f():
        defer(v.append, "f")
        helper()

    with pytest.raises(Panic, match="^function helper uses defer"):
        f()
    assert v == ["f"]


def test_defer_in_a_deferred_function_needs_its_own_func():
    v = []

    def plain():
        defer(v.append, "plain")

    @func
    def decorated():
        defer(v.append, "decorated's own")
        v.append("decorated")

    @func
    def f():
        defer(plain)
        defer(decorated)

    with pytest.raises(Panic, match="^function plain uses defer"):
        f()
    assert v == ["decorated", "decorated's own"]


def test_defer_rejects_what_is_not_callable():
    @func
    def f():
        defer(42)

    with pytest.raises(TypeError, match="'int' object is not callable"):
        f()


def test_threads_keep_their_defers_apart():
    # Both threads are inside their @func call, deferring turn by turn; each
    # deferred call must run in the thread that deferred it, in its order.
    turns = threading.Barrier(2, timeout=30)
    ran = {"a": [], "b": []}

    def record(name, i):
        ran[name].append((i, threading.current_thread().name))

    @func
    def work(name):
        for i in range(3):
            defer(record, name, i)
            turns.wait()
        turns.wait()

    threads = [threading.Thread(target=work, args=(n,), name=n) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert ran == {n: [(2, n), (1, n), (0, n)] for n in "ab"}


def test_a_thread_started_inside_a_func_call_cannot_defer_into_it():
    errors = []

    def child():
        try:
            defer(print)
        except Panic as e:
            errors.append(e)

    @func
    def f():
        defer(print, end="")
        t = threading.Thread(target=child)
        t.start()
        t.join(30)

    f()
    assert len(errors) == 1


# ---- recover ----------------------------------------------------------------

def test_recover_in_a_deferred_call_stops_the_panic(capsys):
    # seed 6 (5)
    def run():
        panic("panic")

    @func
    def do():
        def handler():
            if recover() is not None:
                print("recover from run")
        defer(handler)
        run()

    do()
    assert capsys.readouterr().out == "recover from run\n"


def test_safe_close_recovers_the_close_of_closed_channel_panic():
    # seed 4 (1), SafeCloseChannel, with a stand-in for a channel's close.
    class Closer:
        closed = False

        def close(self):
            if self.closed:
                raise Panic("close of closed channel")
            self.closed = True

    @func
    def safe_close(ch):
        defer(lambda: recover())
        ch.close()
        return True

    ch = Closer()
    assert safe_close(ch) is True
    assert safe_close(ch) is None


def test_recovered_function_returns_none_and_later_defers_still_run():
    v = []

    @func
    def f():
        defer(v.append, 1)

        def handler():
            v.append(("recovered", recover()))
        defer(handler)
        defer(v.append, 3)
        panic("aaa")
        return "never"

    assert f() is None
    assert v == [3, ("recovered", "aaa"), 1]


def test_recover_returns_a_non_panic_exception_itself_with_its_traceback():
    got = []

    def raiser():
        raise KeyError("k")

    @func
    def f():
        defer(lambda: got.append(recover()))
        raiser()

    f()
    [exc] = got
    assert type(exc) is KeyError and exc.args == ("k",)
    assert frame_names(exc)[-2:] == ["f", "raiser"]


def test_recover_returns_the_message_of_a_runtime_panic():
    got = []

    @func
    def f():
        defer(lambda: got.append(recover()))
        raise Panic("close of closed channel")

    f()
    assert got == ["close of closed channel"]


def test_recover_of_panic_none_returns_none_but_stops_it():
    # pygolang's (and Go's before 1.21) behaviour: the value is nil.
    got = []

    @func
    def f():
        defer(lambda: got.append(recover()))
        panic(None)

    assert f() is None
    assert got == [None]


def test_recover_outside_a_deferred_call_returns_none():
    assert recover() is None

    @func
    def f():
        try:
            panic("in body")
        except Panic:
            return recover()

    assert f() is None


def test_recover_with_nothing_in_flight_returns_none():
    got = []

    @func
    def f():
        defer(lambda: got.append(recover()))
        return 1

    assert f() == 1
    assert got == [None]


def test_recover_not_called_directly_by_the_deferred_function_returns_none():
    # Go: recover only works called directly by a deferred function.
    v = []

    def helper():
        v.append(recover())

    @func
    def f():
        defer(lambda: helper())
        panic("zzz")

    with pytest.raises(Panic, match="^zzz$"):
        f()
    assert v == [None]


def test_recover_as_the_deferred_function_itself_does_not_stop_the_panic():
    # Go: `defer recover()` does not recover: recover is not called by a
    # deferred function, it is the deferred call.
    @func
    def f():
        defer(recover)
        panic("p")

    with pytest.raises(Panic, match="^p$"):
        f()


def test_recover_works_in_a_deferred_function_that_is_itself_func():
    v = []

    @func
    def handler():
        defer(v.append, "handler's defer")
        v.append(recover())

    @func
    def f():
        defer(handler)
        panic("p")

    assert f() is None
    assert v == ["p", "handler's defer"]


def test_recover_works_in_a_deferred_bound_method():
    class Guard:
        def __init__(self):
            self.got = None

        def stop(self):
            self.got = recover()

    g = Guard()

    @func
    def f():
        defer(g.stop)
        panic("p")

    f()
    assert g.got == "p"


def test_recover_twice_returns_none_the_second_time():
    got = []

    @func
    def f():
        defer(lambda: got.append(recover()))
        defer(lambda: got.append((recover(), recover())))
        panic("once")

    f()
    assert got == [("once", None), None]


def test_recover_sees_only_its_own_frames_panic():
    # A deferred call of a panicking frame calls a @func function whose
    # deferred call runs on a normal return: no panic in flight there.
    v = []

    @func
    def g():
        defer(lambda: v.append(("g's defer", recover())))

    @func
    def f():
        def handler():
            g()
            v.append(("handler", recover()))
        defer(handler)
        panic("outer")

    f()
    assert v == [("g's defer", None), ("handler", "outer")]


def test_panic_recovered_inside_a_deferred_call_leaves_the_outer_panic():
    v = []

    @func
    def g():
        defer(lambda: v.append(("g", recover())))
        panic("inner")

    @func
    def f():
        def handler():
            g()
            v.append(("f", recover()))
        defer(handler)
        panic("outer")

    f()
    assert v == [("g", "inner"), ("f", "outer")]


def test_recover_stops_an_exception_raised_by_a_deeper_func_call():
    v = []

    @func
    def inner():
        defer(v.append, "inner's defer")
        panic("deep")

    @func
    def outer():
        defer(lambda: v.append(recover()))
        inner()

    outer()
    assert v == ["inner's defer", "deep"]


# ---- panics in deferred calls -----------------------------------------------

def test_panic_in_a_deferred_call_replaces_the_panic_and_all_defers_run():
    v = []

    @func
    def f():
        defer(v.append, 1)
        defer(v.append, 2)
        defer(lambda: panic(3))
        defer(v.append, 4)
        panic("first")

    with pytest.raises(Panic) as info:
        f()
    assert v == [4, 2, 1]
    assert info.value.arg == 3
    # Raised where the deferred call raised it, each frame once.
    assert frame_names(info.value)[-4:] == [
        "gofunc", "_rundefers", "<lambda>", "panic"]
    assert info.value.__context__.arg == "first"


def test_recovered_then_a_later_deferred_call_panics_again():
    v = []

    @func
    def f():
        defer(v.append, 1)
        defer(lambda: panic(2))

        def handler():
            v.append(("recovered", recover()))
        defer(handler)
        defer(v.append, 3)
        panic("bbb")

    with pytest.raises(Panic) as info:
        f()
    assert info.value.args == (2,)
    assert v == [3, ("recovered", "bbb"), 1]


def test_panic_raised_in_a_deferred_call_can_be_recovered_by_an_earlier_one():
    v = []

    @func
    def f():
        defer(v.append, 1)
        defer(lambda: v.append(("recovered 2", recover())))
        defer(lambda: panic("ddd"))
        defer(lambda: v.append(("recovered 1", recover())))
        defer(v.append, 3)
        panic("ccc")

    assert f() is None
    assert v == [3, ("recovered 1", "ccc"), ("recovered 2", "ddd"), 1]


def test_recover_stops_a_panic_that_replaced_another_one():
    # Go: recovering the newest panic ends the aborted earlier one too.
    got = []

    @func
    def f():
        defer(lambda: got.append(recover()))
        defer(lambda: panic("second"))
        panic("first")

    assert f() is None
    assert got == ["second"]


def test_repanic_of_the_recovered_value_chains_to_the_original():
    @func
    def f():
        def rethrow():
            r = recover()
            panic(f"again: {r}")
        defer(rethrow)
        panic("original")

    with pytest.raises(Panic) as info:
        f()
    assert info.value.arg == "again: original"
    assert info.value.__context__.arg == "original"


def test_exceptions_of_deferred_calls_chain_in_the_order_they_were_raised():
    # pygolang's test_defer_excchain:
    # err <- d1 <- d2 <- d31 <- d32 <- d33 <- d4
    def d1():
        raise RuntimeError("d1")

    @func
    def d2():
        1 / 0

    @func
    def d3():
        def d31():
            raise RuntimeError("d31")

        def d32():
            raise RuntimeError("d32")

        def d33():
            raise RuntimeError("d33")
        defer(d33)
        defer(d32)
        defer(d31)

    def d4():
        raise RuntimeError("d4")

    @func
    def f():
        defer(d4)
        defer(d3)
        defer(d2)
        defer(d1)
        raise RuntimeError("err")

    with pytest.raises(RuntimeError) as info:
        f()
    chain = []
    e = info.value
    while e is not None:
        assert e.__cause__ is None
        chain.append((str(e), frame_names(e)[-1]))
        e = e.__context__
    assert chain == [
        ("d4", "d4"), ("d33", "d33"), ("d32", "d32"), ("d31", "d31"),
        ("division by zero", "d2"), ("d1", "d1"), ("err", "f"),
    ]


def test_recover_breaks_the_exception_chain():
    # pygolang's test_defer_excchain_vs_recover
    @func
    def f():
        def p1():
            raise RuntimeError(1)
        defer(p1)

        def p2():
            raise RuntimeError(2)
        defer(p2)
        defer(lambda: recover())
        defer(lambda: panic("aaa"))

    with pytest.raises(RuntimeError) as info:
        f()
    e1 = info.value
    assert e1.args == (1,)
    e2 = e1.__context__
    assert e2.args == (2,)
    assert e2.__context__ is None


def test_unrecovered_exception_keeps_its_raise_site_in_the_traceback():
    def raiser():
        raise ValueError("here")

    @func
    def f():
        defer(lambda: None)
        raiser()

    with pytest.raises(ValueError) as info:
        f()
    names = frame_names(info.value)
    assert names[-3:] == ["gofunc", "f", "raiser"]
    assert names.count("gofunc") == 1
    assert info.value.__context__ is None


def test_exception_without_defers_passes_through_unchanged():
    err = LookupError("x")

    @func
    def f():
        raise err

    with pytest.raises(LookupError) as info:
        f()
    assert info.value is err
    assert info.value.__context__ is None
    assert frame_names(err)[-2:] == ["gofunc", "f"]


def test_an_unrecovered_exception_is_freed_without_the_cycle_collector():
    # Its traceback holds the @func frame: that frame must not hold it back.
    class Boom(Exception):
        pass

    @func
    def f():
        defer(lambda: None)
        raise Boom()

    gc.disable()
    try:
        try:
            f()
        except Boom as e:
            ref = weakref.ref(e)
        assert ref() is None
    finally:
        gc.enable()


# ---- BaseException and Goexit ----------------------------------------------

@pytest.mark.parametrize("exc_type",
                         [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_run_defers_and_are_not_recovered(exc_type):
    v = []

    @func
    def f():
        defer(v.append, "cleanup")
        defer(lambda: v.append(recover()))
        raise exc_type()

    with pytest.raises(exc_type):
        f()
    assert v == [None, "cleanup"]


def test_goexit_runs_every_frames_defers_and_cannot_be_recovered():
    v = []

    @func
    def inner():
        defer(lambda: v.append(("inner", recover())))
        raise Goexit()

    @func
    def outer():
        defer(lambda: v.append(("outer", recover())))
        inner()
        v.append("not reached")

    with pytest.raises(Goexit):
        outer()
    assert v == [("inner", None), ("outer", None)]


def test_goexit_goes_on_after_recovering_a_panic_raised_during_it():
    # Go: a recovered panic raised by a deferred call during Goexit does not
    # stop the Goexit.
    v = []

    @func
    def f():
        defer(v.append, "last defer")
        defer(lambda: v.append(("recovered", recover())))
        defer(lambda: panic("in defer"))
        raise Goexit()

    with pytest.raises(Goexit):
        f()
    assert v == [("recovered", "in defer"), "last defer"]


def test_goexit_in_a_deferred_call_ends_the_panic():
    @func
    def f():
        def exit_():
            raise Goexit()
        defer(lambda: recover())
        defer(exit_)
        panic("p")

    with pytest.raises(Goexit) as info:
        f()
    assert info.value.__context__.arg == "p"


# ---- @func ------------------------------------------------------------------

def test_func_keeps_name_doc_and_signature():
    def f(a, b=2, *rest, c, **kw):
        """doc of f"""

    g = func(f)
    assert g.__name__ == "f" and g.__doc__ == "doc of f"
    assert g.__qualname__ == f.__qualname__ and g.__module__ == f.__module__
    assert inspect.signature(g) == inspect.signature(f)


def test_func_of_a_func_function_is_itself():
    g = func(lambda: None)
    assert func(g) is g


def test_func_rejects_generator_and_async_functions():
    def gen():
        yield

    async def coro():
        pass

    async def agen():
        yield

    for f in (gen, coro, agen):
        with pytest.raises(TypeError, match="generator or async"):
            func(f)


def test_func_rejects_what_is_not_callable():
    with pytest.raises(TypeError):
        func(42)


def test_func_works_on_methods_staticmethods_classmethods_and_properties():
    v = []

    class C:
        @func
        def method(self, x):
            defer(v.append, ("method", x))
            return self

        @func
        @staticmethod
        def static(x):
            defer(v.append, ("static", x))
            return x

        @func
        @classmethod
        def klass(cls):
            defer(v.append, "klass")
            return cls

        @func
        @property
        def prop(self):
            """prop doc"""
            defer(v.append, "get")
            return "value"

        @func
        @prop.setter
        def prop(self, value):
            defer(v.append, ("set", value))

        @func
        @prop.deleter
        def prop(self):
            defer(v.append, "del")

    c = C()
    assert c.method(1) is c
    assert C.static(2) == 2 and c.static(3) == 3
    assert C.klass() is C
    assert c.prop == "value"
    c.prop = 4
    del c.prop
    assert C.prop.__doc__ == "prop doc"
    assert v == [("method", 1), ("static", 2), ("static", 3), "klass",
                 "get", ("set", 4), "del"]


def test_func_cls_defines_a_method_with_defer():
    v = []

    class MyClass:
        pass

    @func(MyClass)
    def zzz(self, x):
        defer(v.append, 1)
        defer(v.append, 2)
        return x + 1

    assert MyClass().zzz(1) == 2
    assert v == [2, 1]
    assert MyClass.zzz.__name__ == "zzz"
    assert MyClass.zzz.__qualname__.endswith("zzz")


def test_func_cls_binds_the_method_name_only_when_it_was_unbound():
    class MyClass:
        def __init__(self, v):
            self.v = v

    zzz = "z"

    @func(MyClass)
    def zzz(self):
        return self.v

    @func(MyClass)
    def fresh(self):
        return -self.v

    assert zzz == "z"                 # pygolang: an existing name is kept
    assert fresh is MyClass.fresh     # unbound: the wrapped function
    assert MyClass(3).zzz() == 3 and MyClass(3).fresh() == -3


def test_func_cls_defines_staticmethod_classmethod_and_property():
    class MyClass:
        def __init__(self):
            self.v = 1

    mstatic = "keep"

    @func(MyClass)
    @staticmethod
    def mstatic(x):
        return x + 1

    @func(MyClass)
    @classmethod
    def mcls(cls):
        return cls

    @func(MyClass)
    @property
    def vprop(self):
        """vprop doc"""
        return self.v

    @func(MyClass)
    @MyClass.vprop.setter
    def _(self, value):
        self.v = value

    assert mstatic == "keep"
    assert MyClass.mstatic(1) == 2
    assert MyClass.mcls() is MyClass
    obj = MyClass()
    obj.vprop = 5
    assert obj.vprop == 5
    assert MyClass.vprop.__doc__ == "vprop doc"
    assert "_" not in vars(MyClass)


def test_func_cls_rejects_a_property_without_getter():
    class MyClass:
        pass

    with pytest.raises(ValueError, match="without a getter"):
        func(MyClass)(property(None, lambda self, v: None))
