"""save-maps: every format is read back with a library that did not write it and compared
with the Zarr store (run directories and `maxrf-bench infer` output alike)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench.savemaps import save_maps
from maxrf_bench.testing import registered_plugin, toy_scene

BIN = Path(sys.executable).parent
PIXEL_MM = 0.25


class Jitter:
    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        def run(inputs, amount: float = 0.02):
            up = mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")
            return up + amount * np.random.default_rng(inputs.seed).standard_normal(up.shape)

        register(mb.Method("jitter-maps", run, "bilinear plus seeded noise", defaults={"amount": 0.02}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("savemaps")
    scene = toy_scene(32, elements=4, seed=5)
    scan = mb.save_scan(mb.make_scan(**scene, title="maps", pixel_size_mm=PIXEL_MM), tmp / "toy.zarr")
    with registered_plugin(Jitter(), "jitter-maps"):
        mb.run_grid(["bicubic", "jitter-maps"], [str(scan)], out=tmp / "run", seeds=[0, 1])
    return tmp / "run"


def _zarr(run_dir, label):
    ds = mb.load_maps(run_dir, "toy", label)
    return ds["maps"].values, ds["maps_std"].values, [str(e) for e in ds["element"].values]


def test_tiff_per_element_with_pixel_size(run_dir, tmp_path):
    from PIL import Image
    import tifffile

    maps, std, elements = _zarr(run_dir, "jitter-maps")
    paths = save_maps(run_dir, tmp_path / "tif", method="jitter-maps")
    names = {p.name for p in paths}
    assert {f"{e}.tif" for e in elements} | {f"{e}_std.tif" for e in elements} <= names
    for i, el in enumerate(elements):
        with Image.open(tmp_path / "tif" / f"{el}.tif") as im:  # PIL, not the writer
            assert im.mode == "F"
            arr = np.asarray(im, dtype=np.float32)
            np.testing.assert_array_equal(arr, maps[i])
            assert im.info["resolution"] == pytest.approx((1 / PIXEL_MM, 1 / PIXEL_MM))
        with Image.open(tmp_path / "tif" / f"{el}_std.tif") as im:
            np.testing.assert_array_equal(np.asarray(im, dtype=np.float32), std[i])
        assert float(std[i].max()) > 0  # two seeds of a seeded method differ
    # the ImageJ reading: pixels per unit in XResolution, the unit in the ImageJ description
    with tifffile.TiffFile(tmp_path / "tif" / f"{elements[0]}.tif") as tf:
        assert tf.is_imagej and tf.imagej_metadata["unit"] == "mm"
        xres = tf.pages[0].tags["XResolution"].value
        assert xres[1] / xres[0] == pytest.approx(PIXEL_MM)
    manifest = json.loads((tmp_path / "tif" / "save-maps.json").read_text())
    assert manifest["units"] == "counts" and manifest["method"] == "jitter-maps"
    assert manifest["pixel_size_mm"] == pytest.approx(PIXEL_MM)


def test_png_16bit_with_sidecar_scale(run_dir, tmp_path):
    import png  # pypng: a pure-Python reader, not the writer (PIL)

    maps, _, elements = _zarr(run_dir, "bicubic")
    save_maps(run_dir, tmp_path / "png", method="bicubic", fmt="png")
    for i, el in enumerate(elements):
        w, h, rows, info = png.Reader(filename=str(tmp_path / "png" / f"{el}.png")).read()
        assert info["bitdepth"] == 16 and info["greyscale"] and (h, w) == maps[i].shape
        q = np.vstack([np.asarray(r, dtype=np.float64) for r in rows])
        assert q.min() == 0 and q.max() == 65535  # the full 16 bits for viewing
        side = json.loads((tmp_path / "png" / f"{el}.json").read_text())
        back = side["offset"] + q * side["scale"]
        np.testing.assert_allclose(back, maps[i], atol=side["scale"] / 2 + 1e-6 * np.abs(maps[i]).max())
        assert info["physical"].unit_is_meter  # pHYs: pixels per metre
        assert info["physical"].x == pytest.approx(1000 / PIXEL_MM, rel=0.01)


def test_hdf5_in_the_pyxrf_layout(run_dir, tmp_path):
    import h5py

    maps, std, elements = _zarr(run_dir, "jitter-maps")
    save_maps(run_dir, tmp_path / "h5", method="jitter-maps", fmt="h5")
    with h5py.File(tmp_path / "h5" / "maps.h5", "r") as f:
        names = [n.decode() for n in f["xrfmap/detsum/xrf_fit_name"][()]]
        assert names == elements
        np.testing.assert_array_equal(f["xrfmap/detsum/xrf_fit"][()], maps)
        np.testing.assert_array_equal(f["maxrf_bench/maps_std"][()], std)
        assert [n.decode() for n in f["xrfmap/positions/name"][()]] == ["x_pos", "y_pos"]
        pos = f["xrfmap/positions/pos"][()]
        assert pos.shape == (2, 32, 32)
        assert pos[0, 0, 1] - pos[0, 0, 0] == pytest.approx(PIXEL_MM)  # x along columns, mm
        assert pos[1, 1, 0] - pos[1, 0, 0] == pytest.approx(PIXEL_MM)
        assert f["xrfmap/scan_metadata"].attrs["method"] == "jitter-maps"
    # and the project's own PyXRF importer (another reader of the layout) gets the same maps
    from maxrf_bench_datasets.importers import read_pyxrf_h5

    back, labels, skipped = read_pyxrf_h5(tmp_path / "h5" / "maps.h5")
    np.testing.assert_array_equal(back, maps)
    assert [lab.name for lab in labels] == elements and not skipped


def test_infer_output_is_saved_too(tmp_path):
    """A real `maxrf-bench infer` store: random generator → ONNX → maxrf_infer → save-maps."""
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from maxrf_bench_plugins import onnx_commands
    from maxrf_bench_plugins.proposed.model import Generator, save_generator
    from maxrf_infer.stream import infer
    from PIL import Image

    elements = ["Pb_L", "Cu_K", "Ca_K"]
    torch.manual_seed(0)
    g = Generator(len(elements)).eval()
    cell = tmp_path / "run" / "cells" / "toy" / "proposed" / "seed-0"
    (cell / "work").mkdir(parents=True)
    params = {"projection": True, "activation": "sigmoid", "synthesis": "sigmoid"}
    save_generator(g, cell / "work", {"elements": elements, "scale": 4, "operator": mb.BlockMean(4).to_dict(),
                                      "params": params, "projection": True})
    (cell / "cell.json").write_text(json.dumps({
        "key": "k", "dataset": "toy", "method": "proposed", "params": params, "seed": 0, "scale": 4,
        "operator": mb.BlockMean(4).to_dict(), "elements": elements,
        "normalisation": {"offset": [1.0, 2.0, 3.0], "span": [100.0, 50.0, 80.0]}, "metrics": {}}))
    model = onnx_commands.export_model(tmp_path / "run", tmp_path / "m.onnx", dataset="toy")
    scene = toy_scene(32, elements=3, seed=2)
    lr = mb.block_mean(scene["maps"], 4)
    scan = mb.save_scan(mb.make_scan(maps_lr=lr, rgb=scene["rgb"], elements=elements, pixel_size_mm=PIXEL_MM),
                        tmp_path / "new.zarr")
    infer(model, scan, tmp_path / "sharp.zarr", provider="cpu", progress=False, echo=lambda s: None)
    import xarray as xr

    expected = xr.open_zarr(tmp_path / "sharp.zarr")["maps"].values
    save_maps(tmp_path / "sharp.zarr", tmp_path / "out")
    for i, el in enumerate(elements):
        with Image.open(tmp_path / "out" / f"{el}.tif") as im:
            np.testing.assert_array_equal(np.asarray(im, dtype=np.float32), expected[i])
            # the runtime keeps no pixel size; the scan it read has it
            assert im.info["resolution"] == pytest.approx((1 / PIXEL_MM, 1 / PIXEL_MM))
    with pytest.raises(mb.ConfigError, match="apply to run directories only"):
        save_maps(tmp_path / "sharp.zarr", tmp_path / "x", method="proposed")


def test_bad_input_is_one_line_and_writes_nothing(run_dir, tmp_path):
    env = dict(os.environ, MAXRF_BENCH_CACHE_DIR=str(tmp_path / "cache"))

    def cli(*args):
        return subprocess.run([BIN / "maxrf-bench", "save-maps", *map(str, args)], capture_output=True,
                              text=True, env=env)

    for args, needle in [((run_dir, "-o", tmp_path / "a"), "expected --method LABEL"),
                         ((run_dir, "-m", "nope", "-o", tmp_path / "a"), "no maps of 'nope'"),
                         ((tmp_path / "missing", "-m", "bicubic", "-o", tmp_path / "a"), "does not exist"),
                         ((run_dir / "results.csv", "-o", tmp_path / "a"), "neither a run directory"),
                         ((run_dir, "-m", "bicubic", "-d", "other", "-o", tmp_path / "a"), "other")]:
        res = cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.count("\n") == 1 and needle in res.stderr, res.stderr
    assert not (tmp_path / "a").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".a.tmp")]
    res = cli(run_dir, "-m", "bicubic", "-o", tmp_path / "ok", "--format", "h5")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["maps.h5", "save-maps.json"]


def test_a_folder_of_other_files_is_refused_and_our_own_is_replaced(run_dir, tmp_path):
    """The ownership rule (issue 25): a folder of the user's files is never written into nor
    replaced; an earlier save-maps output is replaced as a whole, and a killed earlier
    call's temporary beside it is swept."""
    out = tmp_path / "lab"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(mb.OutputError, match="not a save-maps folder this tool wrote"):
        save_maps(run_dir, out, method="bicubic", fmt="png")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"
    ours = tmp_path / "ours"
    save_maps(run_dir, ours, method="bicubic", fmt="png")
    stale = tmp_path / ".ours.tmp-0123abcd"  # a killed call's temporary (old-style name)
    stale.mkdir()
    (stale / "Pb_L.png").write_bytes(b"half")
    save_maps(run_dir, ours, method="bicubic", fmt="tiff")
    names = sorted(p.name for p in ours.iterdir())
    assert "Pb_L.tif" in names and "Pb_L.png" not in names  # replaced, not merged
    assert not stale.exists()
    (ours / "notes.txt").write_text("added by the user")  # now not only ours: refused
    with pytest.raises(mb.OutputError):
        save_maps(run_dir, ours, method="bicubic", fmt="png")
    assert (ours / "notes.txt").exists()


def test_a_column_written_with_a_method_preset_is_found_by_that_spelling(tmp_path):
    """``save-maps``/``rerun``/``export`` take the column as the user wrote it for ``run``
    (``proposed+F[preset=ctx-quickscan]``): it resolves against the run's ``--preset`` to the
    label ``run`` gave it; an unknown preset stays as written (and is then not found)."""
    from maxrf_bench.rundir import column_label

    (tmp_path / "manifest.json").write_text(json.dumps({"options": {"preset": "fast"}}))
    for text in ("proposed+F[preset=ctx-quickscan]", "proposed[preset=ctx,projection=False]",
                 "guided+P[radius=2]"):
        want = mb.Runner(mb.RunConfig(methods=[text], preset="fast")).columns()[0].label
        assert column_label(tmp_path, text) == want
    assert column_label(tmp_path, "proposed+F[preset=ctx-quickscan]") != "proposed+F[preset=ctx-quickscan]"
    assert column_label(tmp_path, "proposed[preset=nope]") == "proposed[preset=nope]"
    assert column_label(tmp_path, "guided+P") == "guided+P"
