"""The core's structure (issue 17): one process state initialised
all-or-nothing, a core that calls the package only through what the
package registered, and a C file graph without cycles."""
import glob
import os
import shutil
import subprocess
import sys
import textwrap
import types

import pytest

import goroutine
from goroutine import _core

from conftest import run_py, ROOT_DIR

# The steps of module.c's state_init, in order (GR_TEST_INIT_FAIL=n fails
# step n): exceptions, sched, chan, select, timer, sync, gomap, context, netpoll.
INIT_STEPS = 9

USE_RUNTIME = textwrap.dedent("""
    import asyncio, io, sys
    import goroutine as gr
    from goroutine import sync, time

    # channels, select, goroutines
    c = gr.chan(1)
    done = gr.chan()
    def worker():
        c.send(41)
        done.close()
    gr.go(worker)
    done.recv()
    assert c.recv() == 41
    assert gr.select(c.recv, gr.default) == (1, None)
    assert gr.nilchan is gr._core.nilchan
    # timers
    assert time.after(0.01).recv() is not None
    t = time.after_func(3600, lambda: None)
    assert t.c is gr.nilchan
    t.stop()
    # sync and Map
    mu, wg = sync.Mutex(), sync.WaitGroup()
    wg.add(1)
    gr.go(lambda: (mu.lock(), mu.unlock(), wg.done()))
    wg.wait()
    m = gr.Map()
    m[1] = 2
    assert dict(m.items()) == {1: 2}
    # the registered callbacks: the report of a goroutine's panic, the
    # asyncio bridge
    seen = gr.chan(1)
    gr.excepthook = lambda info: seen.send(info.exc_value)
    gr.go(gr.panic, "boom")
    exc = seen.recv()
    assert isinstance(exc, gr.Panic) and exc.arg == "boom", exc
    async def main():
        ch = gr.chan(1)
        await ch.send_async(5)
        return await ch.recv_async()
    assert asyncio.run(main()) == 5
    print("runtime ok")
""")


@pytest.mark.parametrize("step", range(1, INIT_STEPS + 1))
def test_a_failed_init_leaves_nothing_and_the_next_import_starts_clean(step):
    # Each step of the state's init fails once on purpose: the import
    # raises, and a second import in the same process (the variable
    # unset) builds the whole state and the runtime works.
    r = run_py(textwrap.dedent("""
        import os, sys
        os.environ["GR_TEST_INIT_FAIL"] = "%d"
        try:
            import goroutine
        except MemoryError as e:
            assert "init step %d failed on purpose" in str(e), e
        else:
            raise AssertionError("the import did not fail")
        del os.environ["GR_TEST_INIT_FAIL"]
        for name in [n for n in sys.modules
                     if n == "goroutine" or n.startswith("goroutine.")]:
            del sys.modules[name]
    """ % (step, step)) + USE_RUNTIME, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "runtime ok" in r.stdout


def test_the_state_is_made_once_per_process():
    # A second module object (the package imported afresh) shares the
    # process state: same types, same nilchan, same exceptions.
    r = run_py(textwrap.dedent("""
        import sys
        import goroutine
        first = goroutine._core
        for name in [n for n in sys.modules
                     if n == "goroutine" or n.startswith("goroutine.")]:
            del sys.modules[name]
        import goroutine as gr
        assert gr._core is not first
        for name in ("chan", "nilchan", "Panic", "Deadlock", "Goexit",
                     "default", "Map", "Mutex", "_timer"):
            assert getattr(gr._core, name) is getattr(first, name), name
    """) + USE_RUNTIME, timeout=120)
    assert r.returncode == 0, r.stderr


def test_a_goroutines_panic_goes_to_the_package_that_registered():
    # The core reports through the _report the package registered at
    # import, not by importing `goroutine` again: with the package gone
    # from sys.modules, the hook set on it still runs.
    r = run_py("""
        import sys
        import goroutine as gr
        got = gr.chan(1)
        gr.excepthook = lambda info: got.send(str(info.exc_value))
        del sys.modules["goroutine"]
        sys.modules["goroutine._async"] = None   # an import would fail
        gr.go(gr.panic, "reported")
        print(got.recv())
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "reported"
    assert r.stderr == ""


def test_async_methods_use_the_registered_bridge():
    # ch.recv_async() calls the goroutine._async the package registered;
    # it no longer imports that module on every call.
    r = run_py("""
        import asyncio, sys
        import goroutine as gr
        sys.modules["goroutine._async"] = None   # an import would fail
        async def main():
            ch = gr.chan(1)
            await ch.send_async(1)
            got = [await ch.recv_async()]
            await ch.send_async(2)
            got.append(await ch.recv_async_())
            ch.close()
            got += [v async for v in ch]
            return got
        print(asyncio.run(main()))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[1, (2, True)]"


def test_register_checks_its_arguments():
    f = lambda *a: None  # noqa: E731
    with pytest.raises(TypeError, match="send_async must be callable"):
        _core._register(report=f, send_async=1, recv_async=f,
                        recv_async_=f, aiter=f)
    with pytest.raises(TypeError):
        _core._register(f)


def test_panic_arg_is_defined_in_c():
    # A getset descriptor of the C type (a Python property would be a
    # `property` whose fget is a Python function).
    prop = vars(goroutine.Panic)["arg"]
    assert isinstance(prop, types.GetSetDescriptorType)
    assert goroutine.Panic(3).arg == 3
    assert goroutine.Panic().arg is None
    with pytest.raises(AttributeError):
        goroutine.Panic(3).arg = 4


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm")
def test_only_the_module_init_is_exported():
    out = subprocess.run(["nm", "-D", "--defined-only", _core.__file__],
                         check=True, capture_output=True, text=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert names == {"PyInit__core"}, sorted(names)


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm")
def test_the_c_files_layer_without_a_cycle(tmp_path):
    # tools/check_layers.py over this build's objects (`make check-layers`
    # runs it too); and it does fail on a cycle.
    # The objects of the newest build (plain or sanitized tree).
    objs = glob.glob(os.path.join(ROOT_DIR, "build", "**", "src",
                                  "state.o"), recursive=True)
    if not objs:
        pytest.skip("no object files under build/ (an installed package)")
    objdir = os.path.dirname(max(objs, key=os.path.getmtime))
    tool = os.path.join(ROOT_DIR, "tools", "check_layers.py")
    r = subprocess.run([sys.executable, tool, objdir], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    order = [line.split()[1] for line in r.stdout.splitlines()[1:]]
    assert order.index("state") < order.index("sched") < \
        order.index("module")
    assert order[-1] == "module"
    # Two objects that use each other: a cycle, named.
    for name, defines, uses in (("a", "fa", "fb"), ("b", "fb", "fa")):
        src = tmp_path / (name + ".c")
        src.write_text("void %s(void); void %s(void) { %s(); }\n"
                       % (uses, defines, uses))
        subprocess.run(["cc", "-c", str(src), "-o",
                        str(tmp_path / (name + ".o"))], check=True)
    r = subprocess.run([sys.executable, tool, str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "a -> b -> a" in r.stderr
