"""Subinterpreters: importing goroutine in one raises ImportError (issue 14.4).

The runtime is process-wide and bound to the main interpreter.  Before the
fix a legacy (shared-GIL) subinterpreter imported it, ran goroutines, and
destroying it aborted the process (3.12/3.13) or hung at exit (3.10/3.11).
Each case runs in a fresh interpreter with a timeout.
"""
import sys

import pytest

from conftest import run_py

MSG = "goroutine does not support subinterpreters"

# Runs inside the subinterpreter: report what the import did on stdout.
SUB = (
    "try:\n"
    "    import goroutine\n"
    "    from goroutine import go, chan\n"
    "    c = chan(1); go(c.send, 5)\n"
    "    print('IMPORTED', c.recv(), flush=True)\n"
    "except ImportError as e:\n"
    "    print('IMPORTERROR', e, flush=True)\n"
)


@pytest.mark.parametrize("used_in_main", [False, True])
def test_import_in_a_legacy_subinterpreter_raises_importerror(used_in_main):
    # _testcapi.run_in_subinterp makes a legacy subinterpreter with
    # Py_NewInterpreter (the mod_wsgi kind) on every version, runs the
    # code and ends it with Py_EndInterpreter.
    pre = ("from goroutine import go, chan\n"
           "c = chan(); go(c.send, 1); assert c.recv() == 1\n"
           if used_in_main else "")
    r = run_py(pre + "import _testcapi\n"
               f"rc = _testcapi.run_in_subinterp({SUB!r})\n"
               "print('RC', rc, flush=True)\n", timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "IMPORTERROR" in r.stdout and MSG in r.stdout, r.stdout
    assert "IMPORTED" not in r.stdout
    assert "RC 0" in r.stdout
    assert "Fatal Python error" not in r.stderr


def test_interpreters_module_legacy_and_isolated_can_be_destroyed():
    # The repro's path: _interpreters (3.13) / _xxsubinterpreters, legacy
    # config where there is a choice, then isolated where there is one.
    r = run_py(f"""
        import sys
        try:
            import _interpreters as I
        except ImportError:
            import _xxsubinterpreters as I
        kinds = ["legacy"]
        if hasattr(I, "new_config") or sys.version_info >= (3, 12):
            kinds.append("isolated")
        for kind in kinds:
            if hasattr(I, "new_config"):
                iid = I.create(I.new_config(kind))
            elif sys.version_info >= (3, 12):
                iid = I.create(isolated=(kind == "isolated"))
            else:
                iid = I.create()
            I.run_string(iid, {SUB!r})
            I.destroy(iid)
            print("destroyed", kind, flush=True)
    """, timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "IMPORTED" not in r.stdout
    assert r.stdout.count("IMPORTERROR") >= 1
    assert "destroyed legacy" in r.stdout
    if sys.version_info >= (3, 12):
        assert "destroyed isolated" in r.stdout
    # the main interpreter still imports and runs it afterwards
    r2 = run_py(f"""
        import _testcapi
        _testcapi.run_in_subinterp({SUB!r})
        from goroutine import go, chan
        c = chan(1); go(c.send, 3); print("main", c.recv())
    """, timeout=30)
    assert r2.returncode == 0, r2.stderr
    assert "main 3" in r2.stdout
