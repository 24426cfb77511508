"""A ``proposed[register=lr]`` generator exports with its registration field, and the
torch-free runtime samples the photograph as the training did (issue 22, ours)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench.testing import toy_scene

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import maxrf_infer  # noqa: E402
from maxrf_infer.photo import (FieldError, field_record, margin_of, read_field,  # noqa: E402
                               registered_photo, registered_region)

BIN = Path(sys.executable).parent
LABEL = ("proposed[adversarial_iterations=0,atoms=8,kernel=5,layers=2,pretrain_iterations=40,"
         "register=lr,threads=1,use_adv=False]")


def _misregistered_scene(size=64):
    """A toy scan whose photograph is shifted by (1.5, −1) px plus a smooth wobble."""
    scene = toy_scene(size, elements=3, seed=4)
    yy, xx = np.mgrid[0:size, 0:size] / size
    d = np.stack([1.5 + 0.5 * np.sin(2 * np.pi * xx), -1.0 + 0.5 * np.cos(2 * np.pi * yy)])
    scene["rgb"] = mb.warp_photo(np.asarray(scene["rgb"], np.float32), d)
    return scene


@pytest.fixture(scope="module")
def register_run(tmp_path_factory):
    """A real `maxrf-bench run` of a register=lr column, exported, and the scan it ran on."""
    from maxrf_bench_plugins import onnx_commands

    tmp = tmp_path_factory.mktemp("register")
    scan = mb.save_scan(mb.make_scan(**_misregistered_scene(), title="toy"), tmp / "toy.zarr", chunk=24)
    mb.run_grid([LABEL], [str(scan)], out=tmp / "run", seeds=[0])
    model = onnx_commands.export_model(tmp / "run", tmp / "m.onnx", dataset="toy", method=LABEL)
    maps = mb.load_maps(tmp / "run", "toy", LABEL)["maps"].values
    return {"tmp": tmp, "scan": scan, "model": model, "maps": maps}


def _infer(run, out, **kw):
    maxrf_infer.infer(run["model"], run["scan"], out, provider="cpu", progress=False,
                      echo=lambda s: None, **kw)
    import xarray as xr

    with xr.open_zarr(out) as ds:
        return ds["maps"].values, dict(ds.attrs)


def test_the_exported_register_run_reproduces_the_runs_maps(register_run):
    info = maxrf_infer.read_model_info(register_run["model"])
    assert info.photo_field is not None and info.photo_field.shape == (2, 16, 16)
    assert np.abs(info.photo_field).max() > 0.5          # the field the run applied travels with it
    maps, attrs = _infer(register_run, register_run["tmp"] / "whole.zarr", tile=0)
    ref = register_run["maps"]
    assert maps.shape == ref.shape
    assert np.abs(maps - ref).max() <= 1e-5 * np.abs(ref).max()
    assert '"photo_field"' in attrs["model_metadata"] and '"data"' not in attrs["model_metadata"]
    # without the field the photograph is taken as given: the maps differ (the field matters)
    scan = mb.open_scan(register_run["scan"])
    off, span = info.offset[:, None, None], info.span[:, None, None]
    lr = (mb.block_mean(scan["maps"].values, 4) - off) / span
    sess = maxrf_infer.create_session(register_run["model"], "cpu")[0]
    as_given = maxrf_infer.run_model(sess, lr, scan["rgb"].values) * span + off
    assert np.abs(as_given - ref).max() > 1e-3 * np.abs(ref).max()
    # the Python API: registered_photo, then run_model
    photo = registered_photo(scan["rgb"].values, info.photo_field, info.scale)
    assert np.abs(maxrf_infer.run_model(sess, lr, photo) * span + off - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("tile, compute", [(16, 8), (24, None), (32, 16)])
def test_tiled_and_streamed_equal_the_whole_image(register_run, tile, compute):
    whole, _ = _infer(register_run, register_run["tmp"] / f"w{tile}.zarr", tile=0)
    tiled, _ = _infer(register_run, register_run["tmp"] / f"t{tile}.zarr", tile=tile, compute_tile=compute)
    assert np.abs(tiled - whole).max() <= 1e-6 * np.abs(whole).max()


def test_dask_threads_workers_and_int8_take_the_field_too(register_run):
    whole, _ = _infer(register_run, register_run["tmp"] / "seq.zarr", tile=16, workers=1)
    dask_maps, _ = _infer(register_run, register_run["tmp"] / "dask.zarr", tile=16, scheduler="threads")
    np.testing.assert_array_equal(dask_maps, whole)
    pool, _ = _infer(register_run, register_run["tmp"] / "pool.zarr", tile=16, workers=2)
    np.testing.assert_array_equal(pool, whole)
    pytest.importorskip("onnxruntime.quantization")
    int8, attrs = _infer(register_run, register_run["tmp"] / "int8.zarr", tile=16, precision="int8")
    assert attrs["precision"] == "int8"
    assert np.abs(int8 - whole).max() < 0.05 * np.abs(whole).max()   # an approximation of these maps


def test_a_scan_of_another_size_is_one_line_and_exit_2(register_run, tmp_path):
    scene = _misregistered_scene(48)
    other = mb.save_scan(mb.make_scan(**scene, title="other"), tmp_path / "other.zarr")
    res = subprocess.run([str(BIN / "maxrf-infer"), str(register_run["model"]), str(other), "-o",
                          str(tmp_path / "out.zarr"), "--provider", "cpu", "-q"], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "16×16 LR pixels" in res.stderr and "12×12 LR" in res.stderr and "register=lr" in res.stderr
    assert not (tmp_path / "out.zarr").exists()


def test_registered_regions_equal_the_whole_registered_photograph():
    """A region read with ``margin_of`` pixels around it gives the whole image's registered
    photograph there, also at the scan's edges, and equals the training's own sampling."""
    from maxrf_bench_plugins.proposed.photo_prep import lr_to_hr

    rng = np.random.default_rng(0)
    rgb = rng.random((3, 40, 56), dtype=np.float32)
    field = 2.5 * rng.standard_normal((2, 10, 14))
    whole = registered_photo(rgb, field, 4)
    # the host's bilinear warp with border values of the HR field: the same arithmetic
    np.testing.assert_array_equal(whole, mb.warp_photo(rgb, lr_to_hr(field, 4), order=1, mode="nearest"))
    m = margin_of(field)
    assert m == int(np.ceil(np.abs(field).max())) + 1
    for ys, xs in [(slice(0, 12), slice(0, 20)), (slice(8, 28), slice(16, 56)), (slice(36, 40), slice(4, 8))]:
        ry = slice(max(0, ys.start - m), min(40, ys.stop + m))
        rx = slice(max(0, xs.start - m), min(56, xs.stop + m))
        part = registered_region(rgb[:, ry, rx], (ry.start, rx.start), ys, xs, field, 4)
        np.testing.assert_array_equal(part, whole[:, ys, xs])
    # without the margin the region's edges sample the wrong pixels
    ys, xs = slice(8, 28), slice(16, 40)
    assert np.abs(registered_region(rgb[:, ys, xs], (8, 16), ys, xs, field, 4) - whole[:, ys, xs]).max() > 0.01


def test_field_record_round_trips_and_bad_records_are_refused():
    field = np.random.default_rng(1).standard_normal((2, 5, 7))
    rec = field_record(field)
    assert rec["format"] == "maxrf-photo-field/1" and rec["shape"] == [2, 5, 7]
    np.testing.assert_array_equal(read_field(rec), field)
    for bad, says in [({**rec, "format": "x/9"}, "format"), ({**rec, "shape": [3, 5, 7]}, "shape"),
                      ({**rec, "data": rec["data"][:-8]}, "bytes|base64"), ([1, 2], "format")]:
        with pytest.raises(FieldError, match=says):
            read_field(bad)
    with pytest.raises(FieldError, match="shape"):
        field_record(np.zeros((3, 4, 4)))
