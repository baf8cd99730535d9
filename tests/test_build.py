"""The build explains itself when libuv is missing; the package refuses a
free-threaded interpreter with a clear ImportError."""
import os
import pathlib
import subprocess
import sys

from conftest import run_py

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_missing_libuv_stops_with_one_line_that_says_what_to_install(tmp_path):
    if not (ROOT / "setup.py").exists():
        import pytest
        pytest.skip("not running from a source checkout")
    env = dict(os.environ, PKG_CONFIG_LIBDIR=str(tmp_path),
               PKG_CONFIG_PATH=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-temp",
         str(tmp_path / "t"), "--build-lib", str(tmp_path / "l")],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "libuv1-dev" in proc.stderr
    assert "brew install libuv" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_free_threaded_interpreter_gets_a_clear_import_error():
    # No free-threaded CPython can be installed here: pose as one (its
    # ABI flags carry "t") and import the package.
    r = run_py("""
        import sys
        sys.abiflags += "t"
        try:
            import goroutine
        except ImportError as e:
            print(e)
        else:
            print("imported")
    """)
    assert r.returncode == 0, r.stderr
    assert "does not support free-threaded CPython" in r.stdout, r.stdout
    assert "3.10-3.15" in r.stdout
