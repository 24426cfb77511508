"""Interruption (issue 13): SIGKILL a run during training, during a metric, during a write and
at random moments; every rerun keeps what was finished, never takes a half-written cell for
a finished one, and the completed grid has the numbers of a run that was never interrupted.

The grid is small (a 32 px scene, bicubic and ``slowtoy`` × 2 seeds, plus the ``slowmetric``
metric: :mod:`reliability_support`), and the command is the real ``maxrf_bench.cli.main`` in
its own process with a registry of only these plugins (a process start costs ~1 s, not the
~6 s of loading every plugin), so the many kills and restarts stay within tens of seconds.
"""
from __future__ import annotations

import csv
import json
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import maxrf_bench as mb
from maxrf_bench.testing import registered_plugin, toy_scene

from reliability_support import TOY_PLUGIN, install_plugins, plugin_env, popen_cli, run_cli

METHODS = "bicubic,slowtoy,slowtoy+P"
METRICS = "psnr,rmse,slowmetric"
SEEDS = "0,1"
KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    plugins = install_plugins(root / "plugins", {"slowtoy_plugin": TOY_PLUGIN})
    scan = mb.save_scan(mb.make_scan(**toy_scene(32, 3, seed=5), title="toy"), root / "toy.zarr")
    import importlib
    import sys

    sys.path.insert(0, str(plugins))
    try:
        module = importlib.import_module("slowtoy_plugin")
        with registered_plugin(module, "slowtoy_plugin"):
            mb.run_grid(METHODS.split(","), [str(scan)], out=root / "reference",
                        metrics=METRICS.split(","), seeds=[0, 1])
    finally:
        sys.path.remove(str(plugins))
    return {"root": root, "plugins": plugins, "scan": scan, "ref": rows(root / "reference")}


def rows(run_dir: Path) -> dict:
    """``{(dataset, protocol, label, seed, truth, element, metric): value}`` without timings."""
    with open(run_dir / "results.csv", newline="") as f:
        return {tuple(r[k] for k in ("dataset", "protocol", "method", "seed", "truth", "element", "metric")):
                float(r["value"]) for r in csv.DictReader(f) if r["metric"] != "seconds"}


def cells(run_dir: Path) -> dict[str, Path]:
    return {str(p.parent.relative_to(run_dir)): p for p in run_dir.glob("cells/*/*/*/cell.json")}


def assert_consistent(out: Path, ref_dir: Path, ref: dict) -> None:
    """What a killed run left is whole: each finished cell reads and has the reference's
    numbers; results.csv and manifest.json parse; every recorded number is the reference's."""
    ref_cells = cells(ref_dir)
    for rel, path in cells(out).items():
        meta = json.loads(path.read_text())
        with xr.open_zarr(path.parent / "sr.zarr") as ds:
            assert ds["maps_norm"].shape == (3, 32, 32)
        assert meta["metrics"] == json.loads(ref_cells[rel].read_text())["metrics"], rel
    if (out / "results.csv").exists():
        got = rows(out)
        assert all(ref[k] == v for k, v in got.items()), "a recorded number differs"
    if (out / "manifest.json").exists():
        json.loads((out / "manifest.json").read_text())


def _args(setup, out):
    return ("run", "-q", "-m", METHODS, "-d", setup["scan"], "-o", out, "--metrics", METRICS,
            "--seeds", SEEDS)


def _env(setup, **kill):
    return plugin_env(setup["plugins"], setup["root"] / "cache", LIGHT_PLUGINS="slowtoy_plugin", **kill)


def test_sigkill_during_training_a_metric_and_writes_then_rerun(setup, tmp_path):
    out = tmp_path / "run"
    args = _args(setup, out)
    # 1. killed during training (step 3 of 6 of the first slowtoy run)
    res = run_cli(*args, env=_env(setup, TOY_KILL_AT_STEP=3), light=True)
    assert res.returncode == KILLED, res.stderr
    assert_consistent(out, setup["root"] / "reference", setup["ref"])
    finished = cells(out)
    assert list(finished) == ["cells/toy/bicubic/deterministic"]  # bicubic done, slowtoy not
    work = out / "cells/toy/slowtoy/seed-0/work"
    assert (work / "toy-checkpoint.npz").exists() and not (work.parent / "cell.json").exists()
    # 2. killed inside a metric of the resumed run: the training resumes from step 3 and ends,
    #    but the cell is not finished (its cell.json is written after the metrics)
    res = run_cli(*args, env=_env(setup, TOY_KILL_IN_METRIC=1), light=True)
    assert res.returncode == KILLED, res.stderr
    assert (work / "resumed-from").read_text() == "3"
    assert (work.parent / "sr.zarr").exists() and not (work.parent / "cell.json").exists()
    assert_consistent(out, setup["root"] / "reference", setup["ref"])
    # 3. killed at the 2nd, 5th, 9th, 14th atomic rename (during a write) of successive reruns
    for n in (2, 5, 9, 14):
        res = run_cli(*args, env=_env(setup, TOY_KILL_AT_REPLACE=n), light=True)
        assert res.returncode in (KILLED, 0), res.stderr
        assert_consistent(out, setup["root"] / "reference", setup["ref"])
    before = {rel: p.stat().st_mtime_ns for rel, p in cells(out).items()}
    # 4. the rerun completes the grid, recomputing only the unfinished cells
    res = run_cli(*args, env=_env(setup), light=True)
    assert res.returncode == 0, res.stderr
    assert rows(out) == setup["ref"]
    manifest = json.loads((out / "manifest.json").read_text())
    reused = {(t["method"], t["seed"]): t["reused"] for t in manifest["timings"]}
    for rel in cells(out):
        label, seed = rel.split("/")[2], rel.split("/")[3]
        key = (label, 0 if seed == "deterministic" else int(seed.split("-")[1]))
        assert reused[key] == (rel in before), (rel, reused)
    assert all(cells(out)[rel].stat().st_mtime_ns == t for rel, t in before.items())
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def test_sigkill_at_random_moments_then_rerun(setup, tmp_path):
    """Kill a slowed-down run at random moments (seeded, so reproducible) after it has taken
    the run directory, three times; then let it finish."""
    from maxrf_bench.lock import INFO_NAME

    out = tmp_path / "run"
    args = _args(setup, out)
    env = _env(setup, TOY_SLEEP=0.1, TOY_METRIC_SLEEP=0.05)
    rng = random.Random(13)
    progress = []
    for _ in range(3):
        proc = popen_cli(*args, env=env, light=True)
        t0 = time.time()
        while not (out / INFO_NAME).exists() or json.loads((out / INFO_NAME).read_text())["pid"] != proc.pid:
            assert proc.poll() is None and time.time() - t0 < 120, "the run did not start"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert_consistent(out, setup["root"] / "reference", setup["ref"])
        progress.append(len(cells(out)))
    res = run_cli(*args, env=env, light=True)
    assert res.returncode == 0, res.stderr
    assert rows(out) == setup["ref"]
    assert progress == sorted(progress)  # finished cells are never lost


def test_proposed_training_killed_at_a_checkpoint_resumes_to_the_same_numbers(tmp_path):
    """The real method: SIGKILL while it saves its second checkpoint, then rerun."""
    pytest.importorskip("torch")
    scan = mb.save_scan(mb.make_scan(**toy_scene(32, 2, seed=6), title="toy"), tmp_path / "toy.zarr")
    tiny = ("pretrain_iterations=30", "adversarial_iterations=12", "batch_blocks=32",
            "adv_batch_blocks=16", "batch_size=2", "patch_size=16", "disc_width=4", "disc_warmup=4",
            "threads=1", "checkpoint_seconds=0", "checkpoint_iterations=10", "atoms=8", "layers=2")
    sets = [x for t in tiny for x in ("--set", f"proposed.{t}")]
    env = plugin_env(None, tmp_path / "cache", LIGHT_PLUGINS="maxrf_bench_plugins.proposed")
    ref = run_cli("run", "-q", "-m", "proposed", "-d", scan, "-o", tmp_path / "ref", *sets,
                  "--metrics", "psnr,rmse", env=env, light=True)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "run"
    args = ("run", "-q", "-m", "proposed", "-d", scan, "-o", out, *sets, "--metrics", "psnr,rmse")
    # checkpoints at iterations 10, 20, 30 (end of pre-training), 40: killed at the 2nd
    killer = plugin_env(_kill_plugin(tmp_path), tmp_path / "cache", TOY_KILL_AT_TORCH_SAVE=2,
                        LIGHT_PLUGINS="maxrf_bench_plugins.proposed,slowtoy_plugin")
    killed = run_cli(*args, env=killer, light=True)
    assert killed.returncode == KILLED, killed.stderr
    torch = pytest.importorskip("torch")
    (cell,) = out.glob("cells/toy/proposed*/seed-0")  # the label carries the parameters
    ckpt = torch.load(cell / "work" / "checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == 10  # the first checkpoint; killed while saving the second
    assert not (cell / "cell.json").exists()
    res = run_cli(*args, env=env, light=True)
    assert res.returncode == 0, res.stderr
    assert rows(out) == rows(tmp_path / "ref")


def _kill_plugin(tmp_path: Path) -> Path:
    """A folder with the toy plugin, whose import arms TOY_KILL_AT_TORCH_SAVE (it must be loaded)."""
    return install_plugins(tmp_path / "killer", {"slowtoy_plugin": TOY_PLUGIN})


def test_a_rerun_killed_while_it_re_records_keeps_the_finished_rows(tmp_path):
    """A second run into a finished directory re-records every (reused) cell; killed after the
    first, its results table held only that cell's rows until the command ran again.  Now the
    rows of the cells it has not reached stay, and the finished re-run writes the same table."""
    import maxrf_bench as mb
    from maxrf_bench.cells import RunRecord
    from maxrf_bench.config import RunConfig
    from maxrf_bench.runner import Runner
    from maxrf_bench.testing import toy_scene

    path = mb.save_scan(mb.make_scan(**toy_scene(32)), tmp_path / "toy.zarr")
    cfg = dict(methods=["bicubic", "guided+P"], datasets=[str(path)], out=tmp_path / "run")
    mb.run_grid(**cfg)
    before = (tmp_path / "run" / "results.csv").read_text()
    runner = Runner(RunConfig(**cfg))
    plan = runner.check()
    record = RunRecord(runner, tmp_path / "run", plan)
    record.begin()
    record.record(0, runner.run_cell(tmp_path / "run", *record.cells[0]))   # then the kill
    rows = sorted((tmp_path / "run" / "results.csv").read_text().splitlines())
    assert rows == sorted(before.splitlines()) and len(rows) > 10
    mb.run_grid(**cfg)
    assert sorted((tmp_path / "run" / "results.csv").read_text().splitlines()) == sorted(before.splitlines())
