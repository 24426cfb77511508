"""Concurrent runs (issue 13): one run per run directory.

A second ``maxrf-bench run`` on a directory in use stops at once (exit 3) with a message
naming the run that holds it, and changes nothing there; the first run finishes unharmed.
The lock dies with its process: after a SIGKILL the next run starts at once.
"""
from __future__ import annotations

import json
import signal
import threading
import time

import pytest

import maxrf_bench as mb
from maxrf_bench.lock import INFO_NAME, RunDirLockedError, run_dir_lock
from maxrf_bench.testing import toy_scene

from reliability_support import TOY_PLUGIN, install_plugins, plugin_env, popen_cli, run_cli, tree_state


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock")
    plugins = install_plugins(root / "plugins", {"slowtoy_plugin": TOY_PLUGIN})
    scan = mb.save_scan(mb.make_scan(**toy_scene(32, 3, seed=7), title="toy"), root / "toy.zarr")
    env = plugin_env(plugins, root / "cache", LIGHT_PLUGINS="slowtoy_plugin")
    return {"root": root, "scan": scan, "env": env}


def _args(setup, out):
    return ("run", "-q", "-m", "bicubic,slowtoy", "-d", setup["scan"], "-o", out)


def _wait_for_lock(out, proc, timeout=60.0):
    t0 = time.time()
    while not (out / INFO_NAME).exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() - t0 < timeout, "the first run never took the lock"
        time.sleep(0.05)
    return json.loads((out / INFO_NAME).read_text())


def test_second_run_stops_with_a_clear_message_and_the_first_finishes(setup, tmp_path):
    out = tmp_path / "run"
    go = tmp_path / "go"  # the first run holds its slowtoy cell until this file exists
    first = popen_cli(*_args(setup, out), env={**setup["env"], "TOY_WAIT_FOR": str(go)}, light=True)
    try:
        holder = _wait_for_lock(out, first)
        assert holder["pid"] == first.pid
        t0 = time.time()
        while not go.with_name("go.waiting").exists():  # bicubic done, slowtoy holding
            assert first.poll() is None and time.time() - t0 < 120, "the first run did not get there"
            time.sleep(0.05)
        before = tree_state(out)
        t0 = time.time()
        second = run_cli(*_args(setup, out), env=setup["env"], light=True)
        assert time.time() - t0 < 30  # it does not wait for the first
        assert second.returncode == 3, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: run directory "), second.stderr
        assert f"is in use by another maxrf-bench run (pid {first.pid} on " in lines[0]
        assert "slowtoy" in lines[0]  # the holder's command
        # nothing changed by the second run: only files the first one rewrote meanwhile
        assert tree_state(out) == before
    finally:
        go.write_text("go")
        first.wait(timeout=300)
    assert first.returncode == 0, first.stderr.read()
    results = mb.read_results(out)
    assert results.methods == ["bicubic", "slowtoy"]
    assert not (out / INFO_NAME).exists()
    # once the first has finished, the same command runs and reuses every cell
    again = run_cli(*_args(setup, out), env=setup["env"], light=True)
    assert again.returncode == 0, again.stderr
    assert all(t["reused"] for t in json.loads((out / "manifest.json").read_text())["timings"])


def test_a_killed_run_leaves_no_lock_that_blocks(setup, tmp_path):
    out = tmp_path / "run"
    first = popen_cli(*_args(setup, out), env={**setup["env"], "TOY_SLEEP": "2"}, light=True)
    _wait_for_lock(out, first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (out / INFO_NAME).exists()  # the stale note stays, and is not believed
    t0 = time.time()
    res = run_cli(*_args(setup, out), env=setup["env"], light=True)
    assert res.returncode == 0, res.stderr
    assert time.time() - t0 < 120
    assert mb.read_results(out).methods == ["bicubic", "slowtoy"]


def test_python_api_refuses_a_directory_in_use(setup, tmp_path):
    out = tmp_path / "run"
    held, release, errors = threading.Event(), threading.Event(), []

    def holder():
        with run_dir_lock(out, ["holder", "--out", str(out)]):
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(30)
        before = tree_state(out)
        with pytest.raises(RunDirLockedError, match="is in use by another maxrf-bench run") as info:
            mb.run_grid(["bicubic"], [str(setup["scan"])], out=out)
        assert isinstance(info.value, mb.MaxrfError) and info.value.exit_code == 3
        assert "holder --out" in str(info.value)
        assert tree_state(out) == before
    finally:
        release.set()
        t.join()
    mb.run_grid(["bicubic"], [str(setup["scan"])], out=out)  # free again
    assert mb.read_results(out).methods == ["bicubic"]
