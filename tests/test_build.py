"""The build: it explains itself in one line when libuv is missing, needs
libuv only to compile (not for an sdist), picks the context switch by the
compiler's macros, and the package refuses a free-threaded interpreter with
a clear ImportError."""
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

from conftest import run_py

ROOT = pathlib.Path(__file__).resolve().parent.parent


def no_libuv_env(tmp_path):
    """The environment of a machine without libuv: pkg-config finds no
    libuv.pc (an empty search path)."""
    return dict(os.environ, PKG_CONFIG_LIBDIR=str(tmp_path),
                PKG_CONFIG_PATH=str(tmp_path))


def source_checkout():
    if not (ROOT / "setup.py").exists():
        import pytest
        pytest.skip("not running from a source checkout")


def test_missing_libuv_stops_with_one_line_that_says_what_to_install(tmp_path):
    source_checkout()
    proc = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-temp",
         str(tmp_path / "t"), "--build-lib", str(tmp_path / "l")],
        cwd=ROOT, env=no_libuv_env(tmp_path), capture_output=True, text=True)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if "libuv" in l]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: goroutine-runtime: libuv's")
    assert "apt-get install pkg-config libuv1-dev" in lines[0]
    assert "brew" not in proc.stderr        # macOS is not supported
    assert "Traceback" not in proc.stderr


def test_an_sdist_builds_without_libuv_and_carries_every_source(tmp_path):
    # pkg-config is asked only when the extension is compiled.
    source_checkout()
    proc = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir",
         str(tmp_path / "dist")],
        cwd=ROOT, env=no_libuv_env(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (sdist,) = (tmp_path / "dist").glob("goroutine_runtime-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = {"LICENSE", "licenses/libuv.txt", "CHANGELOG.md", "setup.py", "pyproject.toml",
                "src/switch.S", "src/switch_x86_64.S", "src/switch_aarch64.S",
                "goroutine/_version.py", "goroutine/__main__.py",
                "tests/conftest.py", "tests/c/test_switch.c"}
    expected |= {str(p.relative_to(ROOT)) for p in ROOT.glob("src/*.[ch]")}
    assert expected <= names, sorted(expected - names)


def test_the_switch_is_chosen_by_the_compilers_macros_not_the_host(tmp_path):
    # Preprocess src/switch.S as if for the other architecture: the
    # choice follows the target's macros whatever machine builds it.
    source_checkout()
    cc = shutil.which("cc")
    if cc is None:
        import pytest
        pytest.skip("no C compiler")

    def preprocess(*defs):
        return subprocess.run(
            [cc, "-E", "-P", "-U__x86_64__", "-U__aarch64__", *defs,
             "-I", str(ROOT / "src"), str(ROOT / "src" / "switch.S")],
            capture_output=True, text=True)

    x86 = preprocess("-D__x86_64__=1")
    arm = preprocess("-D__aarch64__=1")
    assert x86.returncode == 0 and arm.returncode == 0, x86.stderr + arm.stderr
    assert "pushq" in x86.stdout and "x19" not in x86.stdout
    assert "stp" in arm.stdout and "pushq" not in arm.stdout
    other = preprocess()
    assert other.returncode != 0
    assert "no context switch for this architecture" in other.stderr


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
