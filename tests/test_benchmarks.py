"""The benchmark suite runs in quick mode, so it cannot rot.  No test here
asserts on speed."""
import json
import pathlib
import subprocess
import sys

from conftest import source_tree_env

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_quick_run_writes_rows_for_goroutine_and_the_standard_peers(tmp_path):
    if not (ROOT / "benchmarks").is_dir():
        import pytest
        pytest.skip("not running from a source checkout")
    out = tmp_path / "r.json"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-chart",
         "--only", "pingpong,spawn,mutex_8,timers,ctx_timeout,blocking_socket",
         "--impl", "goroutine,threading,asyncio,with_cancel",
         "--json", str(out)],
        cwd=tmp_path, env=source_tree_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    rows = {(x["workload"], x["impl"]): x for x in data["results"]}
    for w in ("pingpong", "spawn", "mutex_8", "timers", "ctx_timeout",
              "blocking_socket"):
        g = rows[(w, "goroutine")]
        assert g["value"] > 0 and g["unit"]
        assert (w, "asyncio") in rows
    assert rows[("ctx_timeout", "with_cancel")]["value"] > 0
    assert "vs goroutine" in r.stdout
