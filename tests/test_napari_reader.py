"""The napari plugin (issue 24): the reader returns the expected layers (names, scales,
shapes, colormaps, contrast limits) for a scan and for a run directory, lazily; the npe2
manifest points at what exists.  napari itself is not needed (the reader returns
layer-data tuples); npe2 validates the manifest when it is installed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench.testing import toy_scene
from maxrf_bench_napari import _reader, napari_get_reader, read

MANIFEST = Path(_reader.__file__).with_name("napari.yaml")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("napari")
    d = toy_scene(32, 3, seed=5)
    scan = mb.save_scan(mb.make_scan(**d, title="toy", pixel_size_mm=0.25), root / "toy.zarr")
    lr = mb.save_scan(mb.make_scan(rgb=d["rgb"], elements=d["elements"],
                                   maps_lr=mb.block_mean(d["maps"], 4), title="lr"), root / "lr.zarr")
    run = root / "run"
    mb.run_grid(["bicubic", "guided+P"], [str(scan)], out=run, seeds=[0, 1])
    return {"scan": scan, "lr": lr, "run": run, "elements": d["elements"], "maps": d["maps"]}


def _by_name(layers):
    return {kw["name"]: (data, kw, kind) for data, kw, kind in layers}


def test_a_scan_gives_the_photograph_and_one_layer_per_element(stores):
    layers = read(stores["scan"])
    names = [kw["name"] for _, kw, _ in layers]
    assert names == ["toy: photograph", "Pb_L", "Hg_L", "Cu_K"]
    photo, kw, kind = layers[0]
    assert kind == "image" and kw["rgb"] and photo.shape == (32, 32, 3)
    assert kw["scale"] == (0.25, 0.25) and kw["units"] == ("mm", "mm")
    for i, (data, kw, kind) in enumerate(layers[1:]):
        assert data.shape == (32, 32) and kw["scale"] == (0.25, 0.25)
        assert hasattr(data, "dask"), "maps must stay lazy (dask)"
        lo, hi = kw["contrast_limits"]
        assert lo < hi and np.isclose(hi, np.percentile(stores["maps"][i], 99.5), rtol=1e-5)
        assert kw["visible"] == (i == 0) and kw["blending"] == "additive"
    assert [kw["colormap"] for _, kw, _ in layers[1:]] == ["gray", "red", "green"]  # Pb, Hg, Cu


def test_measured_lr_maps_lie_on_the_photographs_field_of_view(stores):
    layers = _by_name(read(stores["lr"]))
    data, kw, _ = layers["Pb_L (LR)"]
    assert data.shape == (8, 8)
    assert kw["scale"] == (4.0, 4.0) and kw["translate"] == (1.5, 1.5)  # pixel centres line up
    assert "units" not in kw  # no pixel size: pixels
    assert kw["visible"]


def test_a_short_dwell_scan_shows_its_hr_step_maps_first(tmp_path):
    d = toy_scene(32, 3, seed=5)
    path = mb.save_scan(mb.bin_short_dwell(mb.make_scan(**d, title="sd"), 4), tmp_path / "sd.zarr")
    layers = _by_name(read(path))
    assert layers["Pb_L (short dwell)"][0].shape == (32, 32) and layers["Pb_L (LR)"][0].shape == (8, 8)
    assert layers["Pb_L (short dwell)"][1]["visible"] and not layers["Pb_L (LR)"][1]["visible"]


def test_a_run_directory_gives_truth_columns_std_and_error(stores):
    layers = _by_name(read(stores["run"]))
    els = stores["elements"]
    expected = {"photograph", *(f"{e} truth" for e in els)}
    for col in ("bicubic", "guided+P"):
        expected |= {f"{e} {col}{s}" for e in els for s in ("", " std", " error")}
    assert set(layers) == expected
    sr = mb.load_maps(stores["run"], "toy", "guided+P")
    data, kw, _ = layers["Hg_L guided+P"]
    assert np.allclose(np.asarray(data), sr["maps"].values[1])
    assert kw["scale"] == (0.25, 0.25) and kw["colormap"] == "red" and not kw["visible"]
    truth = np.asarray(layers["Hg_L truth"][0])
    assert np.allclose(truth, stores["maps"][1], atol=1e-3 * stores["maps"][1].max())
    err, kw, _ = layers["Hg_L guided+P error"]
    assert np.allclose(np.asarray(err), sr["maps"].values[1] - truth, atol=1e-3)
    assert kw["colormap"] == "PiYG" and kw["contrast_limits"][0] == -kw["contrast_limits"][1]
    assert layers["Pb_L bicubic"][1]["visible"]  # the first column's first element shows
    std = np.asarray(layers["Hg_L bicubic std"][0])
    assert std.shape == (32, 32) and np.all(std == 0)  # deterministic: one run, no spread


def test_the_reader_says_no_to_what_it_cannot_read(tmp_path, stores):
    assert napari_get_reader(str(tmp_path)) is None
    (tmp_path / "x.txt").write_text("hi")
    assert napari_get_reader(str(tmp_path / "x.txt")) is None
    assert napari_get_reader([str(stores["scan"]), str(stores["lr"])]) is None
    reader = napari_get_reader(str(stores["scan"]))
    assert callable(reader) and len(reader(str(stores["scan"]))) == 4
    with pytest.raises(mb.StoreError, match="expected a maxrf-bench scan store"):
        read(tmp_path)


def test_contrast_limits_of_a_big_lazy_map_read_a_bounded_sample(monkeypatch):
    da = pytest.importorskip("dask.array")
    monkeypatch.setattr(_reader, "SAMPLE_LIMIT", 10_000)
    big = da.random.default_rng(0).random((1000, 1000), chunks=(50, 50))  # 400 chunks
    sample = _reader._sample(big)
    assert sample.size <= 10_000 and sample.size >= 2500
    lo, hi = _reader.contrast_limits(big)
    assert 0 <= lo < 0.02 and 0.98 < hi <= 1


def test_the_reader_does_not_import_napari():
    code = ("import sys, maxrf_bench_napari, maxrf_bench_napari._reader, maxrf_bench_napari._sample; "
            "print('napari' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_manifest_points_at_what_exists():
    import importlib

    yaml = pytest.importorskip("yaml", reason="PyYAML (npe2's dependency) is not installed")
    manifest = yaml.safe_load(MANIFEST.read_text())
    for cmd in manifest["contributions"]["commands"]:
        module, attr = cmd["python_name"].split(":")
        assert callable(getattr(importlib.import_module(module), attr)), cmd
    from importlib import metadata

    eps = {e.name: e.value for e in metadata.entry_points(group="napari.manifest")}
    assert eps.get("maxrf-bench") == "maxrf_bench_napari:napari.yaml"


def test_npe2_validates_the_manifest():
    npe2 = pytest.importorskip("npe2", reason="npe2 is not installed (pip install npe2)")
    m = npe2.PluginManifest.from_file(MANIFEST)
    assert m.name == "maxrf-bench"
    assert [r.command for r in m.contributions.readers] == ["maxrf-bench.get_reader"]
    assert [s.key for s in m.contributions.sample_data] == ["painting"]


def test_the_sample_data_is_the_default_painting():
    layers = _by_name(__import__("maxrf_bench_napari").sample_painting())
    default = next(n for n, d in mb.get_datasets().items() if d.default)
    scan = mb.get_dataset(default).load()
    elements = [str(e) for e in scan["element"].values]
    assert set(layers) == {f"{scan.attrs['title']}: photograph", *elements}
    data, kw, _ = layers[elements[0]]
    assert data.shape == scan["maps"].shape[1:]
    assert kw["scale"] == (scan.attrs["pixel_size_mm"],) * 2


def test_napari_opens_a_scan_and_a_run_directory_through_the_plugin(stores):
    """With napari installed (the extra .[napari]): its own plugin machinery (npe2 discovery,
    layer construction) opens both, headless (the ViewerModel needs no Qt or OpenGL)."""
    pytest.importorskip("napari", reason="napari is not installed (pip install -e '.[napari]')")
    import npe2
    from napari.components import ViewerModel

    npe2.PluginManager.instance().discover()  # what napari does when its window starts
    viewer = ViewerModel()
    viewer.open(str(stores["scan"]), plugin="maxrf-bench")
    assert [layer.name for layer in viewer.layers] == ["toy: photograph", "Pb_L", "Hg_L", "Cu_K"]
    assert tuple(viewer.layers["Hg_L"].scale) == (0.25, 0.25)
    assert viewer.layers["toy: photograph"].rgb
    viewer.open(str(stores["run"]), plugin="maxrf-bench")
    assert viewer.layers["Cu_K guided+P error"].data.shape == (32, 32)
    assert viewer.layers["Cu_K guided+P"].colormap.name == "green"
