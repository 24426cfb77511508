"""Tests of the example plugin, as its author would write them with maxrf_bench.testing.

They pass whether or not the plugin is installed (``registered_plugin`` notices the entry
point's registration), in any order.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench.testing import check_method, registered_plugin, toy_scene

from maxrf_example import plugin
from maxrf_example.jbu import joint_bilateral_upsample

BIN = Path(sys.executable).parent


def test_jbu_beats_bicubic_on_the_toy_scene(tmp_path):
    with registered_plugin(plugin):
        gain = check_method("example-jbu", tmp_path)
    assert gain > 0.3  # dB: the photograph's edges help


def test_jbu_keeps_constants_and_follows_edges():
    rgb = np.zeros((3, 16, 16), np.float32)
    rgb[:, :, 8:] = 1.0  # a vertical edge in the photograph at x = 8
    lr = np.zeros((1, 4, 4), np.float32)
    lr[0, :, 2:] = 1.0  # the same edge in the maps
    out = joint_bilateral_upsample(lr, rgb, 4, sigma_range=0.1)
    assert out.shape == (1, 16, 16)
    assert out[0, :, :8].max() < 1e-3 and out[0, :, 8:].min() > 0.999  # sharp, no blur across
    flat = joint_bilateral_upsample(np.full((2, 4, 4), 0.3, np.float32), rgb, 4)
    np.testing.assert_allclose(flat, 0.3, rtol=1e-6)


def test_bad_defaults_would_be_refused():
    """The host refuses a typo in defaults at registration (here: a deliberately wrong copy)."""
    class Typo:
        @mb.hookimpl
        def maxrf_bench_register_methods(self, register):
            register(mb.Method("example-typo", plugin.run_jbu, "x", defaults={"radius": 2, "sigma_spacial": 1.0}))

    with pytest.raises(mb.PluginError, match="sigma_spacial"):
        with registered_plugin(Typo(), "typo"):
            pass


def _cli(*args, **env):
    res = subprocess.run([BIN / "maxrf-bench", *map(str, args)], capture_output=True, text=True,
                         env=dict(os.environ, **env))
    assert res.returncode == 0, res.stderr
    return res


@pytest.mark.skipif(not any(ep.name == "example" for ep in __import__("importlib.metadata").metadata
                            .entry_points(group="maxrf_bench")), reason="plugin not installed (pip install -e .)")
def test_installed_plugin_is_listed_runs_and_exports(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    env = {"MAXRF_BENCH_CACHE_DIR": str(tmp_path / "cache")}
    assert "example-jbu" in _cli("list", "methods", **env).stdout
    assert "example 0.1.0 (maxrf-bench-example)" in _cli("plugins", **env).stdout
    scene = toy_scene(32, elements=3, seed=1)
    scan = mb.save_scan(mb.make_scan(**scene, title="t"), tmp_path / "toy.zarr")
    _cli("run", "-m", "example-jbu,example-jbu+P,example-bilinear", "-d", scan, "-o", tmp_path / "run", "-q",
         **env)
    results = mb.read_results(tmp_path / "run")
    assert results.value("toy", "example-jbu+P", "consistency") < 1e-6  # the host projected it
    assert results.value("toy", "example-jbu", "consistency") > 1e-3
    assert results.value("toy", "example-jbu", "example-maxabs") > 0  # the plugin's metric ran too
    # ONNX: export the bilinear column and run it with the torch-free runtime
    _cli("export", "--run", tmp_path / "run", "-d", "toy", "-m", "example-bilinear", "-o", tmp_path / "m.onnx", **env)
    lr_scan = mb.save_scan(mb.make_scan(maps_lr=mb.block_mean(scene["maps"], 4), rgb=scene["rgb"],
                                        elements=scene["elements"]), tmp_path / "lr.zarr")
    _cli("infer", tmp_path / "m.onnx", lr_scan, "-o", tmp_path / "sharp.zarr", "--provider", "cpu",
         "--tile", "16", "-q", **env)
    import xarray as xr

    sharp = xr.open_zarr(tmp_path / "sharp.zarr")["maps"].values
    inputs = mb.load_inputs(tmp_path / "run", "toy")
    offset = np.asarray(inputs.attrs["offset"])[:, None, None]
    span = np.asarray(inputs.attrs["span"])[:, None, None]
    lr_norm = (mb.block_mean(scene["maps"], 4) - offset) / span
    expected = mb.upsample(lr_norm, 4, "bilinear") * span + offset
    np.testing.assert_allclose(sharp, expected, rtol=1e-5, atol=1e-3)  # tiles and all
