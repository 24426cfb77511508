import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr

import maxrf_bench as mb
from conftest import toy_scene


def test_round_trip_with_plain_xarray(tmp_path, toy_scan):
    path = tmp_path / "scan.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning may reach the user
        mb.save_scan(toy_scan, path)
        back = mb.open_scan(path)
    plain = xr.open_zarr(path)
    assert list(plain["element"].values) == ["Pb_L", "Hg_L", "Cu_K", "Ca_K"]
    assert plain["maps"].dims == ("element", "y", "x") and plain["rgb"].dims == ("band", "y", "x")
    assert list(plain["band"].values) == ["R", "G", "B"]
    assert plain.attrs["schema_version"] == mb.SCHEMA_VERSION
    np.testing.assert_array_equal(back["maps"].values, toy_scan["maps"].values)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp left behind


def test_saving_from_cli_process_prints_no_warning(tmp_path):
    code = (
        "import sys; sys.path.insert(0, 'tests'); from conftest import toy_scene; import maxrf_bench as mb;"
        f"mb.save_scan(mb.make_scan(**toy_scene()), r'{tmp_path / 's.zarr'}');"
        f"mb.open_scan(r'{tmp_path / 's.zarr'}')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""


def _scene(**changes):
    d = toy_scene()
    d.update(changes)
    return d


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["maps"].__setitem__((1, 3, 4), np.nan), r"'maps' must be finite, found 1 NaN/Inf values \(first at element=Hg_L, y=3, x=4\)"),
    (lambda d: d["maps"].__setitem__((0, 0, 0), -5), r"'maps' must be non-negative counts, found 1 negative"),
    (lambda d: d.__setitem__("rgb", d["rgb"][:, :30]), r"'rgb' must be on the maps grid 32×32, found 30×32"),
    (lambda d: d.__setitem__("rgb", d["rgb"][:2]), r"'rgb' must have 3 bands \(R, G, B\), found 2"),
    (lambda d: d.__setitem__("elements", ["Pb_L", "Pb_L", "Cu_K", "Ca_K"]), r"element names must be unique, found duplicates \['Pb_L'\]"),
    (lambda d: d.__setitem__("rgb", d["rgb"] * 3), r"'rgb' must lie in \[0, 1\]"),
])
def test_validation_names_each_problem(mutate, message):
    d = toy_scene()
    mutate(d)
    with pytest.raises(mb.ScanValidationError, match=message):
        mb.make_scan(**d)


def test_lr_grid_must_be_an_integer_fraction():
    d = toy_scene()
    with pytest.raises(mb.ScanValidationError, match="integer multiple"):
        mb.make_scan(rgb=d["rgb"], elements=d["elements"], maps_lr=np.ones((4, 5, 5)))


def test_lr_only_scan_gets_scale_and_lr_coordinates():
    d = toy_scene()
    lr = mb.BlockMean(4).down(d["maps"])
    scan = mb.make_scan(rgb=d["rgb"], elements=d["elements"], maps_lr=lr, pixel_size_mm=0.1)
    assert scan.attrs["scale"] == 4
    assert np.allclose(scan["y_lr"].values[:2], [0.2, 0.6])  # centres of 0.4 mm LR pixels
    assert np.allclose(scan["y"].values[:2], [0.05, 0.15])


def test_missing_and_corrupt_stores(tmp_path):
    with pytest.raises(mb.StoreError, match="does not exist"):
        mb.open_scan(tmp_path / "nope.zarr")
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / ".zgroup").write_text("{not json")
    with pytest.raises(mb.StoreError, match="cannot read scan store"):
        mb.open_scan(bad)


def test_normalise_maps_per_element():
    maps = np.stack([np.linspace(5, 10, 16).reshape(4, 4), np.full((4, 4), 3.0)])
    norm, lo, span = mb.normalise_maps(maps)
    assert norm[0].min() == 0 and norm[0].max() == 1
    assert np.all(norm[1] == 0) and span[1] == 1  # constant map: no division by zero
    assert np.allclose(norm * span[:, None, None] + lo[:, None, None], maps)
