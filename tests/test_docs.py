"""The README's example and the examples/ scripts run as shown."""
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import source_tree_env

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(code_or_path, timeout=60, cwd=None):
    args = [sys.executable]
    args += [str(code_or_path)] if isinstance(code_or_path, pathlib.Path) \
        else ["-c", code_or_path]
    return subprocess.run(args, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=source_tree_env())


def test_readme_example_runs_and_prints_the_squares(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    r = run(code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str([i * i for i in range(10)])


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")),
                         ids=lambda p: p.name)
def test_example_runs_cleanly(script, tmp_path):
    r = run(script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "panic:" not in r.stderr
