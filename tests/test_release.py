"""What a release promises: one version (goroutine.__version__ is the
installed distribution's), and `python -m goroutine` prints what a bug
report needs: version, CPython, GOMAXPROCS, libuv and the netpoller."""
import importlib.metadata
import os
import platform
import re
import subprocess
import sys

import pytest

import goroutine
from conftest import ROOT_DIR


def test_the_version_is_the_distributions():
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+|\.dev\d+)?",
                        goroutine.__version__)
    try:
        dist = importlib.metadata.version("goroutine-runtime")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("goroutine-runtime is not installed (a bare build)")
    assert dist == goroutine.__version__


def test_the_changelog_names_the_current_version():
    changelog = ROOT_DIR / "CHANGELOG.md"
    if not changelog.exists():
        pytest.skip("not running from a source checkout")
    assert f"## {goroutine.__version__} " in changelog.read_text()


def run_main(**env):
    pkg_parent = os.path.dirname(os.path.dirname(goroutine.__file__))
    e = dict(os.environ, PYTHONPATH=pkg_parent, **env)
    return subprocess.run([sys.executable, "-m", "goroutine"], env=e,
                          cwd=ROOT_DIR / "tests", capture_output=True,
                          text=True, timeout=60)


def test_python_m_goroutine_prints_what_a_bug_report_needs():
    r = run_main(GOMAXPROCS="3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"goroutine-runtime {goroutine.__version__} ")
    assert os.path.dirname(goroutine.__file__) in lines[0]
    assert f"CPython {platform.python_version()} " in lines[1]
    assert lines[2].startswith("GOMAXPROCS: 3 (CPUs: ")
    assert "GOMAXPROCS=3 in the environment" in lines[2]
    m = re.fullmatch(r"libuv: (\d+)\.(\d+)\.(\d+)(-\w+)? \((/.*libuv[^/]*)\)",
                     lines[3])
    assert m, lines[3]
    assert os.path.exists(m.group(5))
    assert lines[4].startswith("netpoller: epoll, in the scheduler")
