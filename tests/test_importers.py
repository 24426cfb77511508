"""Importers: labels, image folders, --lr, registration, PyXRF HDF5, raw cubes, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

import maxrf_bench as mb
from maxrf_bench_datasets import importers, real
from maxrf_bench_datasets.labels import LabelError, default_family, line_window_kev, parse_label
from maxrf_bench_datasets.registration import estimate_offset, resample_photo

from conftest import toy_scene


# --- labels -----------------------------------------------------------------------------

@pytest.mark.parametrize("label, name", [
    ("Pb-LB", "Pb_L"), ("Zn Kb", "Zn_K"), ("Hg_La", "Hg_L"), ("Pb L", "Pb_L"), ("Ca", "Ca_K"),
    ("As-KB", "As_K"), ("emap-Cu", "Cu_K"), ("sample3_Fe_K-L3", "Fe_K"), ("FeKa", "Fe_K"),
    ("pb_l", "Pb_L"), ("K", "K_K"), ("S_K", "S_K"), ("Pb_M", "Pb_M"), ("Fe_Ka_2", "Fe_K"),
    ("RP-T-1898-A-3689_emap-Ti", "Ti_K"), ("Sn", "Sn_K"), ("Sb", "Sb_L"), ("Ba", "Ba_L"),
    ("Au", "Au_L"), ("Hg", "Hg_L"), ("Pb", "Pb_L"),
])
def test_label_normalisation(label, name):
    lab = parse_label(label)
    assert lab.name == name
    assert lab.label == label


def test_bare_symbol_rule_follows_the_k_edge():
    # K up to Sn (K edge 29.2 keV), L from Sb (30.5 keV) on
    assert [default_family(s) for s in ("Na", "Ca", "Cu", "Cd", "Sn")] == ["K"] * 5
    assert [default_family(s) for s in ("Sb", "Ba", "W", "Au", "Hg", "Pb")] == ["L"] * 6


def test_line_windows_come_from_xraydb():
    lo, centre, hi = line_window_kev(parse_label("Pb-LB"))
    assert centre == pytest.approx(12.614, abs=0.002) and lo < 12.6 < hi
    lo, centre, hi = line_window_kev(parse_label("Fe"))  # Kα1/Kα2 centroid
    assert 6.39 < centre < 6.41 and (hi - lo) == pytest.approx(0.31, abs=0.03)
    assert parse_label("Pb_La").long_name == "Pb_La"


@pytest.mark.parametrize("label", ["VIS", "map", "x_12", "Ca_M"])
def test_unparseable_labels(label):
    with pytest.raises(LabelError):
        parse_label(label)


# --- an image folder ------------------------------------------------------------------------

def _write_folder(tmp_path, size=66, shift=(0.0, 0.0)):
    """Five maps in five formats and a 2× photograph (shifted by ``shift`` map pixels)."""
    sc = toy_scene(size=size, elements=5, seed=3)
    maps = sc["maps"]
    unit = maps / maps.max()
    folder = tmp_path / "maps"
    folder.mkdir()
    stored = {
        "Pb_L": (unit[0] * 255).astype(np.uint8),
        "Zn_K": (unit[1] * 65535).astype(np.uint16),
        "Hg_L": maps[2].astype(np.float32),
        "Ca_K": (unit[3] * 255).astype(np.uint8),
        "Cu_K": (unit[4] * 65535).astype(np.uint16),
    }
    tifffile.imwrite(folder / "sample_Pb-LB.tif", stored["Pb_L"])
    tifffile.imwrite(folder / "sample_Zn Kb.tif", stored["Zn_K"])
    tifffile.imwrite(folder / "sample_Hg_La.tiff", stored["Hg_L"])
    Image.fromarray(stored["Ca_K"]).save(folder / "Ca.png")
    Image.fromarray(stored["Cu_K"]).save(folder / "emap-Cu.png")
    (folder / "notes.txt").write_text("not a map")
    photo = _photo(sc, shift)
    photo_path = tmp_path / "photo.png"
    Image.fromarray((photo.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(photo_path)
    return folder, photo_path, stored


def _photo(sc, shift, factor=2):
    """A photograph that is not a linear function of the maps: gamma, hue changes, the
    hidden layer absent, ×factor pixels, content moved by ``shift`` map pixels."""
    rgb = np.clip(sc["rgb"], 0, 1) ** 0.6
    rgb = rgb[[1, 2, 0]] * np.array([1.0, 0.7, 0.9])[:, None, None]
    hr = np.stack([np.kron(c, np.ones((factor, factor))) for c in rgb])
    hr = np.stack([ndimage.shift(c, (factor * shift[0], factor * shift[1]), order=3,
                                 mode="nearest") for c in hr])
    return np.clip(hr, 0, 1)


def test_image_folder_import_and_run(tmp_path):
    folder, photo, stored = _write_folder(tmp_path)
    lines = []
    scan = importers.import_image_folder(folder, photo, echo=lines.append)
    assert sorted(scan["element"].values.tolist()) == ["Ca_K", "Cu_K", "Hg_L", "Pb_L", "Zn_K"]
    labels = dict(zip(scan["element"].values.tolist(), scan["element_label"].values.tolist()))
    assert labels == {"Pb_L": "sample_Pb-LB", "Zn_K": "sample_Zn Kb", "Hg_L": "sample_Hg_La",
                      "Ca_K": "Ca", "Cu_K": "emap-Cu"}
    # 66×66 → centre-cropped to 64×64 (rows/cols 1:65); values kept as stored
    assert scan["maps"].shape == (5, 64, 64) and scan["rgb"].shape == (3, 64, 64)
    for name, arr in stored.items():
        np.testing.assert_array_equal(scan["maps"].sel(element=name).values,
                                      arr[1:65, 1:65].astype(np.float32))
    assert scan.attrs["crop_px"] == [1, 1, 1, 1]
    assert any("centre-cropped" in line for line in lines)
    assert any("resampled" in line for line in lines)
    path = tmp_path / "scan.zarr"
    mb.save_scan(scan, path)
    res = mb.run_grid(["bicubic"], [str(path)], out=tmp_path / "run")
    psnr = res.value("scan", "bicubic", "psnr")
    assert 15 < psnr < 60


def test_lr_import_has_no_truth_and_gives_consistency_only(tmp_path):
    folder, photo, _ = _write_folder(tmp_path, size=32)
    lines = []
    scan = importers.import_image_folder(folder, photo, lr=True, echo=lines.append)
    assert "maps" not in scan and scan["maps_lr"].shape == (5, 32, 32)
    assert scan["rgb"].shape == (3, 64, 64) and scan.attrs["scale"] == 2
    assert any("scale ×2 inferred" in line for line in lines)
    path = tmp_path / "lr.zarr"
    mb.save_scan(scan, path)
    res = mb.run_grid(["bicubic"], [str(path)], out=tmp_path / "run")
    metrics = {r["metric"] for r in res.rows} - {"seconds"}
    assert metrics == {"consistency", "qnr", "d_lambda", "d_s"}  # no truth: no-reference metrics
    assert res.value("lr", "bicubic", "consistency") < 0.1
    sr = mb.load_maps(tmp_path / "run", "lr", "bicubic")
    assert sr["maps"].shape[-2:] == (64, 64)


def test_registration_recovers_a_cross_modal_shift(tmp_path):
    sc = toy_scene(size=96, elements=4, seed=1)
    photo = _photo(sc, (3.0, -2.0))
    on_grid = resample_photo(photo, sc["maps"].shape[1:])
    reg = estimate_offset(sc["maps"], on_grid)
    assert reg.offset == pytest.approx((3.0, -2.0), abs=0.5)
    assert reg.ncc_after > reg.ncc_before + 0.2
    # and through the importer: recorded in the attributes, photo aligned afterwards
    folder, photo_path, _ = _write_folder(tmp_path, size=64, shift=(3.0, -2.0))
    lines = []
    scan = importers.import_image_folder(folder, photo_path, register=True, echo=lines.append)
    dy, dx = scan.attrs["registration_shift_px"]
    assert abs(dy - 3.0) < 0.5 and abs(dx + 2.0) < 0.5
    assert scan.attrs["registration_method"].startswith("ncc-gradient-magnitude")
    assert any(line.startswith("registration") for line in lines)
    again = estimate_offset(scan["maps"].values, scan["rgb"].values)
    assert np.hypot(*again.offset) < 0.5


# --- PyXRF HDF5 ---------------------------------------------------------------------------

def test_pyxrf_h5_round_trip(tmp_path):
    import h5py

    rng = np.random.default_rng(0)
    fit = rng.gamma(2.0, 50.0, size=(4, 24, 32)).astype(np.float32)
    fit[1, 0, 0] = -3.0  # fits go slightly negative
    path = tmp_path / "scan2D_1.h5"
    with h5py.File(path, "w") as f:
        f["xrfmap/detsum/xrf_fit"] = fit
        f["xrfmap/detsum/xrf_fit_name"] = np.array([b"Ca_K", b"Pb_L", b"compton", b"Fe_K"])
    sc = toy_scene(size=48)
    photo_path = tmp_path / "p.png"
    Image.fromarray((sc["rgb"].transpose(1, 2, 0) * 255).astype(np.uint8)).save(photo_path)
    lines = []
    scan = importers.import_source(path, photo_path, multiple=1, echo=lines.append)
    assert scan["element"].values.tolist() == ["Ca_K", "Pb_L", "Fe_K"]
    np.testing.assert_array_equal(scan["maps"].values[[0, 2]], fit[[0, 3]])
    assert scan["maps"].values[1, 0, 0] == 0.0
    assert scan["rgb"].shape == (3, 24, 32)
    assert any("skipped non-element channels compton" in line for line in lines)


# --- raw spectral cubes ---------------------------------------------------------------------

def _write_rpl(path, cube, scale=0.02908, offset=-0.0145, units="keV"):
    from rsciio.ripple import file_writer

    h, w, n = cube.shape
    axes = [dict(name="height", size=h, scale=1.0, offset=0.0, units=None, navigate=True,
                 index_in_array=0),
            dict(name="width", size=w, scale=1.0, offset=0.0, units=None, navigate=True,
                 index_in_array=1),
            dict(name="Energy", size=n, scale=scale, offset=offset, units=units, navigate=False,
                 index_in_array=2)]
    file_writer(str(path), {"data": cube, "axes": axes,
                            "metadata": {"General": {"title": "cube"}, "Signal": {"signal_type": ""}}})


def test_raw_cube_matches_vinca_roi_maps(tmp_path, shared_data):
    with np.load(shared_data / "vinca_fresco" / "cubes_raw.npz") as z:
        cube = z["prova1_stacked"]
    with np.load(shared_data / "vinca_fresco" / "element_roi_maps.npz") as z:
        ref, names = z["prova1_stacked_roi"], [str(n) for n in z["element_names"]]
    _write_rpl(tmp_path / "prova1.rpl", cube)
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((60, 120, 3), 128, np.uint8)).save(photo)
    scan = importers.import_raw_cube(tmp_path / "prova1.rpl", photo, elements=names,
                                     background=False)
    # Hg_La → Hg_L; Pb_La and Pb_Lb share a family and keep their sub-lines
    assert scan["element"].values.tolist() == ["S_K", "K_K", "Ca_K", "Ti_K", "Mn_K", "Fe_K",
                                                "Cu_K", "Zn_K", "Hg_L", "Pb_La", "Pb_Lb", "Sr_K",
                                                "Sn_K"]
    mine = scan["maps"].values
    r = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(mine, ref)]
    assert min(r) > 0.97, dict(zip(names, np.round(r, 4)))
    # with the continuum subtracted the strong lines still agree
    bg = importers.import_raw_cube(tmp_path / "prova1.rpl", photo, elements="Ca,Fe,Pb_La")
    for i, j in ((0, 2), (1, 5), (2, 9)):
        assert np.corrcoef(bg["maps"].values[i].ravel(), ref[j].ravel())[0, 1] > 0.99
        assert bg["maps"].values[i].sum() < mine[j].sum()


def test_raw_cube_needs_a_calibration(tmp_path):
    rng = np.random.default_rng(1)
    cube = rng.poisson(3.0, size=(8, 12, 512)).astype(np.int32)
    _write_rpl(tmp_path / "c.rpl", cube, scale=1.0, offset=0.0, units=None)
    with pytest.raises(mb.ScanValidationError, match="no energy calibration"):
        importers.read_raw_cube(tmp_path / "c.raw")
    rc = importers.read_raw_cube(tmp_path / "c.rpl", calibration="0,0.04")
    assert rc.energy_kev[-1] == pytest.approx(511 * 0.04)
    rc = importers.read_raw_cube(tmp_path / "c.rpl", calibration="-10,40")  # eV
    assert rc.energy_kev[1] == pytest.approx(0.03)


# --- the miniature ------------------------------------------------------------------------

def test_miniature_registered_only_where_the_data_are(tmp_path, monkeypatch):
    monkeypatch.setenv("MAXRF_SHARED_DATA", str(tmp_path))
    found = []
    real.maxrf_bench_register_datasets(register=found.append)
    assert found == []


def test_miniature_scan(shared_data, monkeypatch):
    monkeypatch.setenv("MAXRF_SHARED_DATA", str(shared_data))
    found = []
    real.maxrf_bench_register_datasets(register=found.append)
    assert [d.name for d in found] == ["miniature", "miniature-unregistered"]
    scan = found[0].load()
    assert scan["maps"].shape == (2, 928, 784) and scan["rgb"].shape == (3, 928, 784)
    assert scan["element"].values.tolist() == ["As_K", "Cu_K"]
    assert scan["element_label"].values.tolist() == ["As-KB", "Cu"]
    dy, dx = scan.attrs["registration_shift_px"]
    assert 1.0 < np.hypot(dy, dx) < 4.0  # "about 3 px off"
    assert scan.attrs["registration_ncc_after"] > scan.attrs["registration_ncc_before"]


# --- bad input through the command line ---------------------------------------------------

@pytest.fixture(scope="module")
def cli():
    from maxrf_bench.cli import _install_plugin_commands, cli

    if "import" not in cli.commands:
        _install_plugin_commands()
    return cli


def _bad_inputs(tmp_path, case):
    folder, photo, _ = _write_folder(tmp_path, size=32)
    args = [str(folder), "--rgb", str(photo)]
    if case == "unreadable image":
        (folder / "Fe.tif").write_bytes(b"this is not a tiff")
        expect = "cannot read element map"
    elif case == "different sizes":
        tifffile.imwrite(folder / "Fe.tif", np.zeros((30, 32), np.uint16))
        expect = "one size"
    elif case == "unparseable label":
        tifffile.imwrite(folder / "overview.tif", np.zeros((32, 32), np.uint16))
        expect = "cannot read an element line from 'overview'"
    elif case == "grey photograph":
        grey = tmp_path / "grey.png"
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(grey)
        args[2] = str(grey)
        expect = "found 1 channel (grey)"
    elif case == "cube without calibration":
        _write_rpl(tmp_path / "c.rpl", np.ones((8, 8, 256), np.int32), scale=1.0, offset=0.0,
                   units=None)
        args = [str(tmp_path / "c.rpl"), "--rgb", str(photo), "--elements", "Fe,Cu"]
        expect = "no energy calibration"
    elif case == "cube without elements":
        _write_rpl(tmp_path / "c.rpl", np.ones((8, 8, 256), np.int32))
        args = [str(tmp_path / "c.rpl"), "--rgb", str(photo)]
        expect = "expected --elements"
    return args, expect


@pytest.mark.parametrize("case", ["unreadable image", "different sizes", "unparseable label",
                                  "grey photograph", "cube without calibration",
                                  "cube without elements"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, cli, case):
    from click.testing import CliRunner

    args, expect = _bad_inputs(tmp_path, case)
    out = tmp_path / "scan.zarr"
    result = CliRunner().invoke(cli, ["import", *args, "-o", str(out)])
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error:") and expect in err[0], result.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".scan.zarr")]


def test_cli_import_writes_a_scan(tmp_path, cli):
    from click.testing import CliRunner

    folder, photo, _ = _write_folder(tmp_path, size=32)
    out = tmp_path / "scan.zarr"
    result = CliRunner().invoke(cli, ["import", str(folder), "--rgb", str(photo), "-o", str(out),
                                      "--pixel-size", "0.5", "--title", "t"])
    assert result.exit_code == 0, result.output
    scan = mb.open_scan(out)
    assert scan.attrs["pixel_size_mm"] == 0.5 and scan.attrs["title"] == "t"
    assert scan["x"].values[:2].tolist() == [0.25, 0.75]
    assert "wrote" in result.stdout
