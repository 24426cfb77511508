"""Determinism and reproduction (issue 13): the same command with the same seeds gives the
same numbers on the same machine, and a cell rebuilt from its run directory's manifest alone
(``maxrf_bench.reproduce``, ``maxrf-bench rerun``) gives them again.
"""
from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import maxrf_bench as mb
from maxrf_bench.cli import cli
from maxrf_bench.reproduce import rerun_cell
from maxrf_bench.testing import registered_plugin, toy_scene

from reliability_support import TOY_PLUGIN, install_plugins

TINY = dict(pretrain_iterations=20, adversarial_iterations=8, batch_blocks=16, adv_batch_blocks=8,
            batch_size=2, patch_size=8, disc_width=4, disc_warmup=2, threads=1,
            checkpoint_seconds=0.0, atoms=8, layers=2)
METHODS = ["bicubic+P", "slowtoy", "slowtoy+PC", "proposed"]


def _label(run_dir, name):
    """The column label of ``name`` (``proposed[...]``: the label carries the TINY parameters)."""
    return next(m for m in mb.read_results(run_dir).methods if m.split("[")[0] == name)


def _rows(run_dir):
    with open(run_dir / "results.csv", newline="") as f:
        return sorted((r["dataset"], r["protocol"], r["method"], r["seed"], r["truth"], r["element"],
                       r["metric"], r["value"]) for r in csv.DictReader(f) if r["metric"] != "seconds")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("determinism")
    plugins = install_plugins(root / "plugins", {"slowtoy_plugin": TOY_PLUGIN})
    sys.path.insert(0, str(plugins))
    import importlib

    module = importlib.import_module("slowtoy_plugin")
    scan = mb.save_scan(mb.make_scan(**toy_scene(64, 3, seed=12), title="toy"), root / "toy.zarr")
    with registered_plugin(module, "slowtoy_plugin") as reg:
        for name in ("a", "b"):
            mb.run_grid(METHODS, [str(scan), "sim-demo"], out=root / name, seeds=[0, 1],
                        sets={"proposed": TINY}, metrics=["psnr", "rmse", "ssim", "consistency"],
                        protocols=["full", "reduced"], command=["test", name])
        yield {"root": root, "scan": scan, "a": root / "a", "b": root / "b", "registry": reg}
    sys.path.remove(str(plugins))


def test_same_command_same_numbers(runs):
    a, b = _rows(runs["a"]), _rows(runs["b"])
    assert len(a) > 200 and a == b  # every value, bit for bit (values are written with repr)
    for label in ("bicubic+P", "slowtoy+PC", _label(runs["a"], "proposed")):
        x = mb.load_maps(runs["a"], "toy", label)
        y = mb.load_maps(runs["b"], "toy", label)
        np.testing.assert_array_equal(x["maps"].values, y["maps"].values)
        np.testing.assert_array_equal(x["maps_std"].values, y["maps_std"].values)
    # the seed matters where the method uses it (so the comparison above is not vacuous)
    res = mb.read_results(runs["a"])
    assert res.value("toy", "slowtoy", "psnr", seed=0) != res.value("toy", "slowtoy", "psnr", seed=1)


def test_manifest_records_what_reproduces_a_cell(runs):
    m = json.loads((runs["a"] / "manifest.json").read_text())
    col = m["columns"]["slowtoy+PC"]
    assert col["method"] == "slowtoy" and col["variant"] == "PC" and col["params"]["steps"] == 6
    assert col["plugin"] == "slowtoy_plugin" and col["code_hash"]
    inputs = m["inputs"]["toy"]
    assert inputs["path"] == str(runs["scan"].resolve()) and len(inputs["fingerprint"]) == 20
    assert inputs["operator"] == {"name": "blockmean", "scale": 4} and inputs["saved"] == "inputs/toy.zarr"
    assert m["inputs"]["sim-demo@reduced"]["source"] == "dataset plugin 'sim-demo'"
    assert m["options"]["seeds"] == [0, 1] and m["options"]["device"] == "auto"
    assert {"numpy", "torch", "xarray", "zarr", "python"} <= set(m["versions"])
    assert "git_commit" in m and m["host"]["cpus"] >= 1
    assert m["environment"].get("OMP_NUM_THREADS", "unset") == __import__("os").environ.get("OMP_NUM_THREADS", "unset")


@pytest.mark.parametrize("label, seed, protocol, from_source", [
    ("slowtoy+PC", 1, "full", False),
    ("slowtoy", 0, "reduced", True),
    ("bicubic+P", None, "full", True),
    ("proposed", 1, "full", False),
    ("bicubic+P", None, "reduced", True),
])
def test_a_cell_reruns_from_its_manifest_alone(runs, tmp_path, label, seed, protocol, from_source):
    dataset = "sim-demo" if label.startswith("bicubic") else "toy"
    label = _label(runs["a"], label) if label == "proposed" else label
    res = rerun_cell(runs["a"], dataset, label, seed, protocol, from_source=from_source)
    assert res.reproduced, res.differences
    assert res.stored and res.metrics["measured"]["psnr"] == res.stored["measured"]["psnr"]
    if label == "slowtoy+PC":  # the recomputed maps are the stored raw run's, post-processed
        import xarray as xr
        from maxrf_bench.variants import postprocess

        raw = mb.find_cell(runs["a"], dataset, label, seed=seed, protocol=protocol)
        lr = mb.load_inputs(runs["a"], dataset, protocol)["maps_lr"].values
        with xr.open_zarr(raw / "sr.zarr") as ds:
            stored = postprocess(ds["maps_norm"].values, "PC", mb.make_operator("blockmean", 4), lr)
        np.testing.assert_array_equal(res.sr, stored)


def test_rerun_command_reports_a_difference(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["a"], run)
    ok = CliRunner().invoke(cli, ["rerun", str(run), "-d", "toy", "-m", "slowtoy+PC", "--seed", "1"])
    assert ok.exit_code == 0, ok.output
    assert "toy / slowtoy+PC / seed 1: all " in ok.stdout and "reproduced exactly" in ok.stdout
    cell = mb.find_cell(run, "toy", "slowtoy", seed=1) / "cell.json"
    meta = json.loads(cell.read_text())
    meta["metrics"]["PC"]["measured"]["psnr"]["all"] += 0.5  # a recorded number that no run gives
    cell.write_text(json.dumps(meta))
    bad = CliRunner().invoke(cli, ["rerun", str(run), "-d", "toy", "-m", "slowtoy+PC", "--seed", "1"])
    assert bad.exit_code == 1
    assert "psnr (measured, all) recorded" in bad.stdout and "1 of " in bad.stderr


class ThreadCounted:
    """A method whose output depends on the torch thread count, as a trained method's may
    (sums in another order, amplified by training): ``cs2dips`` on 1 and 2 threads differs by
    up to 1.4 after 40 steps on a 64² toy scan."""

    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        def run(inputs):
            import torch

            up = mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "nearest")
            return up + 1e-3 * torch.get_num_threads()
        register(mb.Method("threadcounted", run, "nearest neighbour plus 1e-3 × torch threads"))


def test_rerun_replays_the_thread_count_the_cell_ran_with(tmp_path):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    scan = mb.save_scan(mb.make_scan(**toy_scene(32, 2, seed=4), title="toy"), tmp_path / "toy.zarr")
    try:
        with registered_plugin(ThreadCounted(), "threadcounted-test"):
            torch.set_num_threads(1)
            mb.run_grid(["threadcounted"], [str(scan)], out=tmp_path / "run", seeds=[0],
                        metrics=["psnr"], command=["test"])
            cell = mb.find_cell(tmp_path / "run", "toy", "threadcounted") / "cell.json"
            assert json.loads(cell.read_text())["threads"] == 1
            torch.set_num_threads(2)
            res = rerun_cell(tmp_path / "run", "toy", "threadcounted")
            assert res.reproduced, res.differences
            assert res.threads == 1 and not res.notes
            assert torch.get_num_threads() == 2  # restored afterwards
            # the replay is what reproduces it: told another count, the rerun differs
            meta = json.loads(cell.read_text())
            cell.write_text(json.dumps({**meta, "threads": 2}))
            assert not rerun_cell(tmp_path / "run", "toy", "threadcounted").reproduced
    finally:
        torch.set_num_threads(before)
