"""import --control-points / --homography / --rotate / --flip (issue 24): the photograph is
warped onto the map grid through the homography the points determine, the residual is
reported, and everything is recorded in the scan's attributes.  The bad inputs (collinear
points, malformed CSV, wrong matrix) are in tests/test_bad_input.py."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

import maxrf_bench as mb
from maxrf_bench.cli import cli
from maxrf_bench.testing import toy_scene
from maxrf_bench_datasets import control_points as cp
from maxrf_bench_datasets.importers import import_source

#: photograph px → map px: a zoom of 1/3 with a tilt, a shear and a perspective term
H_TRUE = np.array([[0.35, 0.02, 3.0], [0.01, 0.323, -2.0], [1e-4, 5e-5, 1.0]])
POINTS = np.array([[10, 12], [200, 15], [25, 210], [205, 200], [110, 100], [60, 150]], float)


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    from skimage.transform import ProjectiveTransform, warp

    root = tmp_path_factory.mktemp("cp")
    d = toy_scene(64, 3, seed=1)
    folder = root / "maps"
    folder.mkdir()
    for i, el in enumerate(["Pb_L", "Hg_L", "Cu_K"]):
        tifffile.imwrite(folder / f"{el}.tif", d["maps"][i].astype(np.float32))
    # the photograph: the toy scene's RGB at 3× (map px m ↔ big px 3m + 1), seen through H_TRUE
    big = np.stack([np.kron(b, np.ones((3, 3))) for b in d["rgb"]])
    to_big = np.array([[3, 0, 1.0], [0, 3, 1.0], [0, 0, 1]])
    t = ProjectiveTransform(matrix=to_big @ H_TRUE)
    photo = np.stack([warp(b, t, output_shape=(220, 230), order=1, mode="edge") for b in big])
    Image.fromarray((photo.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(root / "photo.png")
    mp = cp.apply_homography(H_TRUE, POINTS)
    (root / "points.csv").write_text("label,photo_x,photo_y,map_x,map_y\n" + "".join(
        f"p{i},{a},{b},{c:.4f},{e:.4f}\n" for i, ((a, b), (c, e)) in enumerate(zip(POINTS, mp))))
    return {"root": root, "folder": folder, "photo": root / "photo.png", "rgb": d["rgb"],
            "points": root / "points.csv", "maps": d["maps"]}


def _interior_error(scan, rgb):
    return float(np.abs(scan["rgb"].values - rgb)[:, 8:-8, 8:-8].mean())


def test_control_points_put_the_photograph_on_the_maps(material):
    lines = []
    scan = import_source(material["folder"], material["photo"], control_points=material["points"],
                         echo=lines.append)
    plain = import_source(material["folder"], material["photo"])
    registered, unregistered = _interior_error(scan, material["rgb"]), _interior_error(plain, material["rgb"])
    assert registered < 0.015 and unregistered > 0.1, (registered, unregistered)
    h = np.asarray(scan.attrs["registration_homography"])
    assert np.allclose(h, H_TRUE, rtol=1e-3, atol=1e-6)
    assert scan.attrs["registration_method"] == "control-points (homography, least squares)"
    assert len(scan.attrs["registration_control_points"]) == 6
    assert scan.attrs["registration_residual_px_rms"] < 1e-3
    assert any("6 control-point pairs" in line and "residual at the points" in line for line in lines)
    assert any("outside the photograph" in line for line in lines)  # 8 % of the grid here


def test_a_homography_file_gives_the_same_photograph(material, tmp_path):
    by_points = import_source(material["folder"], material["photo"], control_points=material["points"])
    np.savetxt(tmp_path / "h.txt", np.asarray(by_points.attrs["registration_homography"]))
    by_matrix = import_source(material["folder"], material["photo"], homography=tmp_path / "h.txt")
    assert np.allclose(by_matrix["rgb"].values, by_points["rgb"].values, atol=1e-6)
    assert by_matrix.attrs["registration_method"] == "homography (given)"
    np.save(tmp_path / "h.npy", H_TRUE)
    assert np.allclose(cp.read_homography(tmp_path / "h.npy"), H_TRUE)


def test_a_bad_pair_is_reported_by_its_residual(material, tmp_path):
    text = material["points"].read_text().splitlines()
    fields = text[3].split(",")
    fields[3] = str(float(fields[3]) + 6)  # one map_x off by 6 px
    text[3] = ",".join(fields)
    (tmp_path / "p.csv").write_text("\n".join(text) + "\n")
    lines = []
    import_source(material["folder"], material["photo"], control_points=tmp_path / "p.csv",
                  echo=lines.append)
    assert any(line.startswith("warning: a control point lies") for line in lines), lines


def test_orientation_flags_turn_the_maps_and_are_recorded(material, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["import", str(material["folder"]), "--rgb", str(material["photo"]),
                              "--rotate", "90", "--flip", "horizontal", "-o", str(tmp_path / "s.zarr")])
    assert res.exit_code == 0, res.output
    scan = mb.open_scan(tmp_path / "s.zarr")
    expected = np.rot90(material["maps"][0], 1)[:, ::-1]
    assert np.allclose(scan["maps"].sel(element="Pb_L").values, expected)
    assert scan.attrs["orientation"] == "rotated 90° counter-clockwise, then mirrored left ↔ right"
    res = runner.invoke(cli, ["import", str(material["folder"]), "--rgb", str(material["photo"]),
                              "--control-points", str(material["points"]), "-o", str(tmp_path / "c.zarr")])
    assert res.exit_code == 0 and "residual at the points" in res.output, res.output
    assert "registration_method: control-points" in runner.invoke(cli, ["info", str(tmp_path / "c.zarr")]).output
