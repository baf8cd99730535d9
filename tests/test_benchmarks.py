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


def test_map_ops_prints_every_cell_with_loop_and_net(tmp_path):
    if not (ROOT / "benchmarks").is_dir():
        import pytest
        pytest.skip("not running from a source checkout")
    out = tmp_path / "m.json"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.map_ops", "--sizes", "16",
         "--repeat", "1", "--min-ops", "2000", "--json", str(out)],
        cwd=tmp_path, env=source_tree_env(), capture_output=True, text=True,
        timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    # 2 key kinds x 2 orders x 4 ops x 2 worker counts
    assert len(rows) == 32
    for row in rows:
        for impl in ("Map", "dict", "dict+Lock"):
            assert row[impl]["loop"] > 0
            assert row[impl]["loop"] >= row[impl]["net"]
    assert "Map/dict+Lock" in r.stdout


NEWER_PEERS = {
    "pyroutine": {"pingpong", "buffered_1p1c", "mpmc_4x4", "select_2",
                  "select_8", "spawn", "daisy_chain", "parked_memory",
                  "mutex_8", "ctx_cancel"},
    "pygoroutine": {"pingpong", "select_2", "spawn", "daisy_chain",
                    "parked_memory"},
}


def test_quick_run_gives_the_newer_go_style_peers_their_rows(tmp_path):
    """py-routine and pygoroutine (issue 16) each get a measured row in
    every workload they have the operation for, when installed."""
    import importlib.util
    import pytest
    if not (ROOT / "benchmarks").is_dir():
        pytest.skip("not running from a source checkout")
    impls = [m for m in NEWER_PEERS if importlib.util.find_spec(m)]
    if not impls:
        pytest.skip("neither py-routine nor pygoroutine is installed")
    wanted = set().union(*(NEWER_PEERS[m] for m in impls))
    out = tmp_path / "r.json"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-chart",
         "--only", ",".join(sorted(wanted)), "--impl", ",".join(impls),
         "--json", str(out)],
        cwd=tmp_path, env=source_tree_env(), capture_output=True, text=True,
        timeout=600)
    assert r.returncode == 0, r.stderr
    rows = {(x["workload"], x["impl"]): x
            for x in json.loads(out.read_text())["results"]}
    for m in impls:
        for w in NEWER_PEERS[m]:
            assert rows[(w, m)].get("value", 0) > 0, rows[(w, m)]
        assert {w for (w, i) in rows if i == m} == NEWER_PEERS[m]


def run_http_bench(tmp_path, env, *args):
    if not (ROOT / "benchmarks").is_dir():
        import pytest
        pytest.skip("not running from a source checkout")
    out = tmp_path / "h.json"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.http", "--duration", "1",
         "--idle", "20", "--impl", "goroutine,asyncio", "--json", str(out),
         *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r, {(x["bench"], x["impl"], x["conns"]): x
               for x in json.loads(out.read_text())["results"]}


def test_http_bench_rows_for_every_server_and_idle_memory(tmp_path):
    import shutil
    import pytest
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    r, rows = run_http_bench(tmp_path, source_tree_env(), "--conns", "10")
    for impl in ("goroutine", "asyncio"):
        load = rows[("http_load", impl, 10)]
        assert load["rps"] > 0 and load["p99_ms"] > 0, load
        assert load["errors"] == 0, load
        # 19 connections may fault no new page: only that it was measured.
        assert "bytes_per_conn" in rows[("http_idle", impl, 20)]
    assert "x asyncio" in r.stdout


def test_http_bench_without_wrk_skips_the_load_rows(tmp_path):
    env = dict(source_tree_env(), PATH=str(tmp_path))
    r, rows = run_http_bench(tmp_path, env, "--conns", "10")
    assert rows[("http_load", "goroutine", 10)]["error"] == \
        "wrk not installed: skipped"
    assert "bytes_per_conn" in rows[("http_idle", "goroutine", 20)]
    assert "wrk not installed" in r.stdout
